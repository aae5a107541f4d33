//! `keywarden scan` end to end: the real binary against moto server, with
//! IAM policy enforcement on and a least-privilege scanner identity.

use crate::support;

use std::collections::BTreeSet;

use crate::support::{run, Moto, Seeded, NOW};
use serde_json::{json, Value};

fn org_spec() -> Value {
    serde_json::from_str(include_str!("../fixtures/org.json")).expect("fixture is JSON")
}

/// (account name, user, key id or "-" for root, check)
type Row = (String, String, String, String);

fn findings(report: &Value, seeded: &Seeded) -> BTreeSet<Row> {
    let names = seeded.names();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                names[f["account_id"].as_str().unwrap()].clone(),
                f["user_name"].as_str().unwrap().to_owned(),
                f["access_key_id"].as_str().unwrap_or("-").to_owned(),
                f["check"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn row(account: &str, user: &str, key: &str, check: &str) -> Row {
    (account.into(), user.into(), key.into(), check.into())
}

fn expected(s: &Seeded) -> BTreeSet<Row> {
    [
        row("management", "<root_account>", "-", "root-access-key"),
        row(
            "management",
            "alice@example.com",
            &s.key("management", "alice@example.com", 0),
            "key-age-overdue",
        ),
        row(
            "prod",
            "ci-deploy",
            &s.key("prod", "ci-deploy", 0),
            "key-age-overdue",
        ),
        row(
            "prod",
            "ci-deploy",
            &s.key("prod", "ci-deploy", 0),
            "two-active-keys",
        ),
        row(
            "prod",
            "legacy-batch",
            &s.key("prod", "legacy-batch", 0),
            "key-age-warning",
        ),
        row(
            "prod",
            "legacy-batch",
            &s.key("prod", "legacy-batch", 0),
            "key-unused",
        ),
        row(
            "prod",
            "old-exempt",
            &s.key("prod", "old-exempt", 0),
            "key-age-overdue",
        ),
        row(
            "prod",
            "retired",
            &s.key("prod", "retired", 0),
            "inactive-key-stale",
        ),
        row("staging", "bob", &s.key("staging", "bob", 0), "key-unused"),
    ]
    .into_iter()
    .collect()
}

fn scan_json(
    moto: &Moto,
    seeded: &Seeded,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, Value, String) {
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["scan", "--format", "json", "--now", NOW])
        .args(extra);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}\nstderr: {stderr}"));
    (code, report, stderr)
}

#[test]
fn scan_reports_exactly_the_expected_findings_and_the_failed_account() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (code, report, stderr) = scan_json(&moto, &seeded, &[], &[]);

    assert_eq!(
        findings(&report, &seeded),
        expected(&seeded),
        "stderr: {stderr}"
    );
    assert_eq!(code, 3, "an account failed and no --fail-on: incomplete");
    assert_eq!(report["schema"], "keywarden.report/v1");
    assert_eq!(report["evaluated_at"], NOW);

    let accounts = report["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 4);
    let sandbox = accounts
        .iter()
        .find(|a| a["account_id"] == seeded.account("sandbox").as_str())
        .unwrap();
    assert_eq!(sandbox["status"], "failed");
    assert_eq!(sandbox["error"]["stage"], "inventory");
    assert_eq!(sandbox["error"]["code"], "AccessDenied");
    let prod = accounts
        .iter()
        .find(|a| a["account_id"] == seeded.account("prod").as_str())
        .unwrap();
    assert_eq!(
        (prod["status"].as_str(), prod["source"].as_str()),
        (Some("scanned"), Some("credential_report"))
    );
    assert_eq!(
        (
            prod["alias"].as_str(),
            prod["users"].as_u64(),
            prod["keys"].as_u64()
        ),
        (Some("acme-prod"), Some(6), Some(8))
    );

    let summary = &report["summary"];
    assert_eq!(
        (
            summary["accounts_total"].as_u64(),
            summary["accounts_scanned"].as_u64(),
            summary["accounts_failed"].as_u64()
        ),
        (Some(4), Some(3), Some(1))
    );
    assert_eq!(summary["findings"], 9);
    assert_eq!(summary["by_check"]["key-age-overdue"], 3);
    assert_eq!(summary["by_severity"]["critical"], 1);

    let exempt: BTreeSet<(String, String)> = report["exempt"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["user_name"].as_str().unwrap().to_owned(),
                e["status"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        exempt,
        [
            ("old-exempt".to_owned(), "expired".to_owned()),
            ("vendor-sync".to_owned(), "in_force".to_owned())
        ]
        .into()
    );
}

#[test]
fn findings_carry_owner_rule_key_facts_and_due_dates() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (_, report, _) = scan_json(&moto, &seeded, &[], &[]);
    let find = |user: &str, check: &str| {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["user_name"] == user && f["check"] == check)
            .unwrap_or_else(|| panic!("no {check} for {user}"))
            .clone()
    };
    let ci = find("ci-deploy", "key-age-overdue");
    assert_eq!(ci["severity"], "high");
    assert_eq!(ci["owner"]["email"], "dev@example.com");
    assert_eq!(ci["owner"]["rule"], "user-tag:owner");
    assert_eq!(ci["age_days"], 120);
    assert_eq!(ci["created_at"], "2026-08-01T00:00:00Z");
    assert_eq!(ci["last_used_at"], "2026-11-26T00:00:00Z");
    assert_eq!(ci["last_used_service"], "s3");
    assert_eq!(
        ci["due_at"], "2026-10-30T00:00:00Z",
        "created + max_age_days"
    );
    assert_eq!(ci["key_status"], "Active");
    assert_eq!(ci["account_name"], "prod");

    assert_eq!(
        find("alice@example.com", "key-age-overdue")["owner"]["rule"],
        "user-name"
    );
    assert_eq!(
        find("legacy-batch", "key-unused")["owner"]["rule"],
        "account-tag:owner"
    );
    assert_eq!(
        find("legacy-batch", "key-unused")["last_used_at"],
        Value::Null
    );
    let bob = find("bob", "key-unused");
    assert_eq!(
        (
            bob["owner"]["email"].as_str(),
            bob["owner"]["rule"].as_str()
        ),
        (Some("staging@example.com"), Some("account-email"))
    );
    assert_eq!(bob["owner"]["skipped"][0]["rule"], "user-tag:email");
    let root = find("<root_account>", "root-access-key");
    assert_eq!(root["access_key_id"], Value::Null);
    assert_eq!(root["severity"], "critical");
    assert_eq!(root["owner"]["rule"], "account-tag:security-contact");
}

#[test]
fn fail_on_and_scope_set_the_exit_code() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (code, _, _) = scan_json(&moto, &seeded, &["--fail-on", "high"], &[]);
    assert_eq!(code, 1, "findings at or above high");

    // Staging alone: complete, its worst finding is medium.
    let staging = seeded.account("staging");
    let (code, report, _) = scan_json(
        &moto,
        &seeded,
        &["--accounts", &staging, "--fail-on", "high"],
        &[],
    );
    assert_eq!(code, 0);
    assert_eq!(report["summary"]["accounts_total"], 1);
    let (code, _, _) = scan_json(
        &moto,
        &seeded,
        &["--accounts", &staging, "--fail-on", "medium"],
        &[],
    );
    assert_eq!(code, 1);

    // Excluding the Workloads OU (recursively) and the sandbox by id leaves the management account.
    let (code, report, _) = scan_json(
        &moto,
        &seeded,
        &[],
        &[
            ("KEYWARDEN_EXCLUDE_OUS", &seeded.ou("Workloads")),
            ("KEYWARDEN_EXCLUDE_ACCOUNTS", &seeded.account("sandbox")),
        ],
    );
    assert_eq!(code, 0);
    let ids: Vec<&str> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [seeded.account("management").as_str()]);

    // Including the Workloads OU reaches the nested Prod and Staging OUs.
    let (_, report, _) = scan_json(
        &moto,
        &seeded,
        &[],
        &[("KEYWARDEN_INCLUDE_OUS", &seeded.ou("Workloads"))],
    );
    let ids: BTreeSet<&str> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    let (prod, staging) = (seeded.account("prod"), seeded.account("staging"));
    assert_eq!(ids, [prod.as_str(), staging.as_str()].into());
}

#[test]
fn a_malformed_credential_report_falls_back_to_api_enumeration_with_the_same_findings() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let prod = seeded.account("prod");
    moto.hook(
        "/_keywarden/report-fault",
        &serde_json::json!({"account_id": prod, "mode": "malformed"}),
    );
    let (_, report, stderr) = scan_json(&moto, &seeded, &[], &[]);
    let entry = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account_id"] == prod.as_str())
        .unwrap()
        .clone();
    assert_eq!(entry["status"], "scanned");
    assert_eq!(entry["source"], "api");
    assert_eq!(entry["users"], 6);
    assert_eq!(findings(&report, &seeded), expected(&seeded));
    assert!(
        stderr.contains("falling back to API enumeration"),
        "{stderr}"
    );
}

#[test]
fn a_report_that_never_completes_falls_back_within_report_wait_secs() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let staging = seeded.account("staging");
    moto.hook(
        "/_keywarden/report-fault",
        &serde_json::json!({"account_id": staging, "mode": "stuck"}),
    );
    let (_, report, _) = scan_json(
        &moto,
        &seeded,
        &["--accounts", &staging],
        &[("KEYWARDEN_REPORT_WAIT_SECS", "2")],
    );
    assert_eq!(report["accounts"][0]["source"], "api");
    let users: BTreeSet<&str> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["user_name"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["bob"].into());
}

#[test]
fn other_formats_and_output_file() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (ak, sk) = seeded.scanner();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("findings.csv");
    let (code, stdout, _) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "csv", "--now", NOW, "--output"])
        .arg(&out));
    assert_eq!((code, stdout.as_str()), (3, ""));
    let csv = std::fs::read_to_string(&out).unwrap();
    assert_eq!(csv.lines().count(), 10, "header + 9 findings:\n{csv}");
    assert!(csv.starts_with("check,severity,account_id"));
    // Each finding says what to do, in every format.
    assert!(csv.lines().next().unwrap().ends_with(
        ",remediation,privilege,privilege_conditional,privilege_evidence,risk_rank,risk_reason,usage,replace_with,replace_with_reason"
    ));
    assert!(
        csv.contains(",delete the root access key,admin,false,the account's root user,"),
        "{csv}"
    );
    // Every finding has its place in the risk order; the root key's reason says why.
    assert!(
        csv.contains("a root user's key: it can do everything"),
        "{csv}"
    );
    let (_, report, _) = scan_json(&moto, &seeded, &[], &[]);
    for f in report["findings"].as_array().unwrap() {
        assert!(!f["remediation"].as_str().unwrap().is_empty(), "{f}");
    }

    let (_, table, _) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "table", "--now", NOW]));
    let summary_at = table
        .find("4 accounts (3 scanned, 1 failed)")
        .expect("summary first");
    let critical_at = table.find("CRITICAL (1)").expect("critical section");
    let low_at = table.find("LOW (2)").expect("low section");
    let failed_at = table.find("NOT SCANNED").expect("failed accounts last");
    assert!(
        summary_at < critical_at && critical_at < low_at && low_at < failed_at,
        "{table}"
    );
    assert!(table.contains("rotate the key"), "{table}");
}

#[test]
fn outside_an_organization_the_error_says_so_and_single_account_mode_scans_the_caller() {
    // A fresh server has no Organization (the seeder would create one).
    let bare = Moto::start();
    let (code, stdout, stderr) = run(bare
        .keywarden(("testing", "testing"))
        .args(["scan", "--format", "json"]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("cannot list the Organization's accounts")
            && stderr.contains("--single-account"),
        "{stderr}"
    );

    let (code, stdout, stderr) = run(bare.keywarden(("testing", "testing")).args([
        "scan",
        "--format",
        "json",
        "--single-account",
    ]));
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(report["accounts"][0]["account_id"], "123456789012");
    assert_eq!(report["accounts"][0]["status"], "scanned");
}

#[test]
fn invalid_settings_exit_2_naming_the_key_before_any_aws_call() {
    // Nothing listens on this endpoint: any AWS call would fail differently.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_keywarden"));
    support::isolate(&mut cmd);
    cmd.env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "x")
        .env("AWS_SECRET_ACCESS_KEY", "x");
    let cases: &[(&str, &str, &str)] = &[
        ("KEYWARDEN_WARN_AGE_DAYS", "abc", "`warn_age_days`"),
        ("KEYWARDEN_MAX_AGE_DAYS", "-5", "`max_age_days`"),
        (
            "KEYWARDEN_WARN_AGE_DAYS",
            "120",
            "must be smaller than max_age_days",
        ),
        ("KEYWARDEN_SENDER", "a@b.com\r\nBcc: x@y.com", "`sender`"),
        ("KEYWARDEN_CONCURRENCY", "many", "`concurrency`"),
    ];
    for (var, value, expect) in cases {
        let (code, _, stderr) = run(std::process::Command::new(env!("CARGO_BIN_EXE_keywarden"))
            .envs(
                cmd.get_envs()
                    .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v.to_owned()))),
            )
            .env(var, value)
            .args(["scan", "--format", "json"]));
        assert_eq!(code, 2, "{var}={value}: {stderr}");
        assert!(
            stderr.contains(expect) && stderr.contains(var),
            "{var}={value}: {stderr}"
        );
        assert!(
            !stderr.contains("ConnectionError") && !stderr.contains("caller"),
            "no AWS call was made: {stderr}"
        );
    }

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keywarden.toml");
    std::fs::write(&file, "max_age_days = \"ninety\"\n").unwrap();
    let (code, _, stderr) = run(cmd.args(["scan", "--config"]).arg(&file));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("`max_age_days`") && stderr.contains("keywarden.toml"),
        "{stderr}"
    );
}

#[test]
fn an_account_slower_than_its_timeout_fails_with_stage_timeout_and_the_rest_complete() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let staging = seeded.account("staging");
    moto.hook(
        "/_keywarden/report-fault",
        &serde_json::json!({"account_id": staging, "mode": "slow"}),
    );
    let (code, report, _) = scan_json(
        &moto,
        &seeded,
        &[],
        &[("KEYWARDEN_ACCOUNT_TIMEOUT_SECS", "2")],
    );
    assert_eq!(code, 3);
    let entry = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account_id"] == staging.as_str())
        .unwrap()
        .clone();
    assert_eq!(
        (entry["status"].as_str(), entry["error"]["stage"].as_str()),
        (Some("failed"), Some("timeout"))
    );
    assert_eq!(entry["error"]["code"], "Timeout");
    // Everything outside staging is still there.
    let rest: BTreeSet<Row> = expected(&seeded)
        .into_iter()
        .filter(|r| r.0 != "staging")
        .collect();
    assert_eq!(findings(&report, &seeded), rest);
}

#[test]
fn requested_accounts_the_organization_does_not_have_are_named_and_make_the_run_incomplete() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let staging = seeded.account("staging");
    let (code, report, stderr) = scan_json(
        &moto,
        &seeded,
        &["--accounts", &format!("{staging},999999999999")],
        &[],
    );
    assert_eq!(code, 3, "one requested account does not exist: incomplete");
    // Issue 26: in JSON mode an incomplete run says so on stderr in one line.
    assert!(
        stderr
            .lines()
            .any(|l| l.starts_with("keywarden: run incomplete (exit 3): ")
                && l.contains("1 requested account not in the Organization")),
        "{stderr}"
    );
    // Issue 26: the log names the ids as ids, not Rust's debug output.
    assert!(
        stderr.contains("unknown=999999999999") && !stderr.contains("AccountId("),
        "{stderr}"
    );
    assert_eq!(report["unknown_accounts"], json!(["999999999999"]));
    assert_eq!(report["summary"]["accounts_total"], 1);

    // Nothing in scope at all is not a clean run: exit 2, naming the ids.
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto.keywarden((&ak, &sk)).args([
        "scan",
        "--format",
        "json",
        "--now",
        NOW,
        "--accounts",
        "999999999999",
    ]));
    assert_eq!(code, 2, "{stdout}");
    assert!(
        stderr.contains("no account of the Organization is in scope")
            && stderr.contains("999999999999"),
        "{stderr}"
    );
    let (code, _, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "json", "--now", NOW])
        .env("KEYWARDEN_EXCLUDE_OUS", seeded.ou("Workloads"))
        .env("KEYWARDEN_INCLUDE_OUS", seeded.ou("Workloads")));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn account_tags_that_cannot_be_read_are_an_error_on_the_account_not_a_silent_fallback() {
    let moto = Moto::start();
    let mut spec = org_spec();
    let actions: Vec<Value> = keywarden::aws::all_actions()
        .into_iter()
        .filter(|a| *a != "organizations:ListTagsForResource")
        .map(|a| json!(a))
        .collect();
    spec["scanner_actions"] = Value::Array(actions);
    let seeded = moto.seed(&spec);
    let (code, report, _) = scan_json(&moto, &seeded, &[], &[]);
    assert_eq!(code, 3);
    let prod = seeded.account("prod");
    let account = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account_id"] == prod.as_str())
        .unwrap();
    assert_eq!(account["error"]["stage"], "account_tags", "{account:#}");
    assert_eq!(account["error"]["code"], "AccessDenied");
    // Its findings stay, and nobody is mailed at the account's root email by guesswork.
    let prod_findings: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["account_id"] == prod.as_str())
        .collect();
    assert!(!prod_findings.is_empty());
    assert!(prod_findings
        .iter()
        .all(|f| f["owner"]["rule"] != "account-email"));
}
