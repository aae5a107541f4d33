//! Guard against drift between the synthetic endpoint and AWS as moto
//! emulates it: the same small generated Organization, scanned once through
//! the synthetic endpoint and once after loading it into moto, gives
//! identical findings and the same unreachable accounts.

mod common;
#[path = "../../tests/support/mod.rs"]
mod support;

use common::{command, json, UNIFORM};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use support::{run, Moto, NOW};

const ORG: [&str; 10] = [
    "--accounts",
    "6",
    "--users",
    "12",
    "--flagged-pct",
    "25",
    "--unreachable-every",
    "4",
    "--seed",
    "11",
];

/// (account name, user, check)
fn findings(
    report: &Value,
    name_of: &BTreeMap<String, String>,
) -> BTreeSet<(String, String, String)> {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                name_of[f["account_id"].as_str().unwrap()].clone(),
                f["user_name"].as_str().unwrap().to_owned(),
                f["check"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn failed(report: &Value, name_of: &BTreeMap<String, String>) -> BTreeSet<String> {
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "failed")
        .map(|a| name_of[a["account_id"].as_str().unwrap()].clone())
        .collect()
}

#[test]
fn the_synthetic_endpoint_and_moto_agree_on_the_same_organization() {
    // Through the synthetic endpoint: the runner keeps the report for us.
    let dir = tempfile_dir();
    let report_path = dir.join("synthetic.json");
    json(
        command()
            .arg("run")
            .args(ORG)
            .args(UNIFORM)
            .args([
                "--latency-ms",
                "1",
                "--jitter-ms",
                "0",
                "--report-delay-ms",
                "0",
                "--keep-report",
            ])
            .arg(&report_path)
            .arg("--keywarden")
            .arg(support::keywarden_bin()),
    );
    let synthetic: Value = serde_json::from_slice(&std::fs::read(&report_path).unwrap()).unwrap();
    let synthetic_names: BTreeMap<String, String> = (0..6)
        .map(|i| {
            (
                format!("{:012}", 100_000_000_000u64 + i),
                format!("account-{i:05}"),
            )
        })
        .collect();

    // Through moto: the same Organization, loaded by the seeder.
    let spec = json(command().arg("spec").args(ORG).args(UNIFORM));
    let moto = Moto::start();
    let seeded = moto.seed(&spec);
    let moto_names: BTreeMap<String, String> = seeded.0["accounts"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(name, id)| (id.as_str().unwrap().to_owned(), name.clone()))
        .collect();
    let (ak, sk) = seeded.scanner();
    let (_, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "json", "--now", NOW]));
    let via_moto: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stderr}"));

    let a = findings(&synthetic, &synthetic_names);
    assert!(a.len() >= 5, "the organization has findings: {a:?}");
    assert_eq!(a, findings(&via_moto, &moto_names));
    assert_eq!(
        failed(&synthetic, &synthetic_names),
        failed(&via_moto, &moto_names)
    );
    assert_eq!(
        failed(&synthetic, &synthetic_names).len(),
        1,
        "account 4 is unreachable"
    );
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("keywarden-drift-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
