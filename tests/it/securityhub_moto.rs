//! Security Hub export, end to end: the real binary against moto, with the
//! shipped member-role template deployed in each member account and moto's
//! IAM policy enforcement on. Each account's findings go to its own Security
//! Hub with its own credentials; ids stay the same run after run; a finding
//! that ended is archived; exempt keys are never exported; an account
//! without Security Hub, and one whose role may not import, are each one
//! recorded failure (exit 3, named once in the digest), and the others are
//! exported all the same.

use crate::mail;

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{run, Moto, Seeded, NOW};
use serde_json::{json, Value};

fn at(days: i64) -> String {
    let t: jiff::Timestamp = NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

fn user(name: &str, age: u32) -> Value {
    json!({"name": name, "tags": {"owner": format!("{name}@example.com")},
           "keys": [{"age_days": age, "last_used_days": 1}]})
}

fn export_on() -> Value {
    json!({"EnableSecurityHubExport": "true"})
}

fn spec() -> Value {
    let mut actions: Vec<&str> = keywarden::aws::all_actions();
    actions.extend(keywarden::aws::securityhub::SECURITYHUB_ACTIONS);
    json!({
        "scanner_user": true,
        "scanner_actions": actions,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "securityhub": true, "users": [user("admin", 100)]},
            {"name": "prod", "email": "prod@example.com", "scan_role": "stackset",
             "stackset_parameters": export_on(), "securityhub": true,
             "users": [user("ci", 120), user("old", 200),
                       {"name": "vendor", "tags": {"owner": "vendor@example.com",
                                                   "keywarden:exempt": "${now+60d} vendor integration (SEC-1)"},
                        "keys": [{"age_days": 300, "last_used_days": 1}]}]},
            {"name": "no-hub", "email": "nohub@example.com", "scan_role": "stackset",
             "stackset_parameters": export_on(), "users": [user("etl", 150)]},
            {"name": "no-permission", "email": "noperm@example.com", "scan_role": "stackset",
             "securityhub": true, "users": [user("web", 95)]}
        ]
    })
}

fn notify(moto: &Moto, seeded: &Seeded, state: &std::path::Path, now: &str) -> (i32, Value) {
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["notify", "--format", "json", "--now", now, "--state"])
        .arg(state)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_MAX_SEND_RATE", "100")
        .env("KEYWARDEN_SECURITYHUB_EXPORT", "true"));
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, report)
}

/// Every finding in Security Hub: account -> id -> finding (us-east-1).
fn hub(moto: &Moto) -> BTreeMap<String, BTreeMap<String, Value>> {
    let all = moto.hook_get("/_keywarden/securityhub");
    all.as_object()
        .unwrap()
        .iter()
        .map(|(account, regions)| {
            let findings = regions["us-east-1"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|f| (f["Id"].as_str().unwrap().to_owned(), f))
                .collect();
            (account.clone(), findings)
        })
        .collect()
}

fn exports(report: &Value) -> BTreeMap<String, Value> {
    report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "securityhub")
        .map(|n| (n["recipients"][0].as_str().unwrap().to_owned(), n.clone()))
        .collect()
}

#[test]
fn findings_reach_each_accounts_own_security_hub_and_follow_their_lifecycle() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec());
    let state = tempfile::tempdir().unwrap();
    let management = seeded.account("management");
    let prod = seeded.account("prod");

    // Day 0.
    let (code, report) = notify(&moto, &seeded, state.path(), NOW);
    assert_eq!(code, 3, "two accounts were not exported: incomplete");
    let notes = exports(&report);
    assert_eq!(notes.len(), 4, "one per account with findings: {notes:#?}");
    let by_name = |name: &str| -> &Value {
        let id = seeded.account(name);
        notes
            .iter()
            .find(|(label, _)| label.contains(&format!("({id})")))
            .map(|(_, n)| n)
            .unwrap_or_else(|| panic!("no export note for {name}: {notes:#?}"))
    };
    assert_eq!(by_name("management")["outcome"], "sent");
    assert_eq!(by_name("prod")["outcome"], "sent");
    assert_eq!(by_name("prod")["subject"], "2 active, 0 archived");
    let no_hub = by_name("no-hub");
    assert_eq!(no_hub["outcome"], "failed");
    assert!(
        no_hub["error"]
            .as_str()
            .unwrap()
            .starts_with("Security Hub is not enabled in account"),
        "{no_hub}"
    );
    let no_permission = by_name("no-permission");
    assert_eq!(no_permission["outcome"], "failed");
    assert!(
        no_permission["error"]
            .as_str()
            .unwrap()
            .contains("EnableSecurityHubExport=true"),
        "{no_permission}"
    );
    // Mail went out all the same; the digest names the two accounts once each.
    let sent = mail::sent(&moto);
    let digest = sent
        .iter()
        .find(|m| m.to == ["security@example.com"])
        .expect("the digest");
    assert!(
        digest.html.contains("Not in Security Hub (2 accounts)"),
        "{}",
        digest.text
    );
    assert_eq!(digest.text.matches("is not enabled in account").count(), 1);

    let day0 = hub(&moto);
    assert_eq!(
        day0.keys().cloned().collect::<BTreeSet<_>>(),
        BTreeSet::from([management.clone(), prod.clone()]),
        "only the accounts that may import, each into its own hub"
    );
    let prod_findings = &day0[&prod];
    assert_eq!(
        prod_findings.len(),
        2,
        "ci and old; never the exempt vendor key"
    );
    let vendor_key = seeded.key("prod", "vendor", 0);
    let old_key = seeded.key("prod", "old", 0);
    for (id, f) in prod_findings {
        assert!(id.starts_with(&format!("keywarden/{prod}/")), "{id}");
        assert_eq!(f["AwsAccountId"], prod.as_str());
        assert_eq!(
            f["ProductArn"],
            format!("arn:aws:securityhub:us-east-1:{prod}:product/{prod}/default")
        );
        assert_eq!(f["RecordState"], "ACTIVE");
        assert_eq!(f["Compliance"]["Status"], "FAILED");
        assert_eq!(f["GeneratorId"], f["ProductFields"]["keywarden/CheckId"]);
        assert!(!id.contains(&vendor_key));
        assert_eq!(f["Resources"][0]["Type"], "AwsIamAccessKey");
        assert_eq!(f["Resources"][1]["Type"], "AwsAccount");
    }
    let old_id = prod_findings
        .keys()
        .find(|id| id.contains(&old_key))
        .expect("the old key's finding")
        .clone();
    assert_eq!(
        prod_findings[&old_id]["Resources"][0]["Details"]["AwsIamAccessKey"]["PrincipalName"],
        "old"
    );

    // Day 1: the old key is deleted by its owner; run again.
    moto.hook(
        "/_keywarden/iam",
        &json!({"account_id": prod, "op": "delete_access_key", "user_name": "old",
                "access_key_id": old_key}),
    );
    let (_, report) = notify(&moto, &seeded, state.path(), &at(1));
    assert_eq!(
        exports(&report)
            .values()
            .find(|n| n["recipients"][0].as_str().unwrap().contains(&prod))
            .unwrap()["subject"],
        "1 active, 1 archived"
    );
    let day1 = hub(&moto);
    assert_eq!(
        day1[&prod].keys().collect::<Vec<_>>(),
        day0[&prod].keys().collect::<Vec<_>>(),
        "the same ids: updated, not duplicated"
    );
    let gone = &day1[&prod][&old_id];
    assert_eq!(gone["RecordState"], "ARCHIVED");
    assert_eq!(gone["Compliance"]["Status"], "PASSED");
    assert_eq!(gone["ProductFields"]["keywarden/Resolution"], "key_deleted");
    let still = day1[&prod]
        .iter()
        .find(|(id, _)| **id != old_id)
        .map(|(_, f)| f)
        .unwrap();
    assert_eq!(still["RecordState"], "ACTIVE");
    assert_eq!(
        still["FirstObservedAt"],
        day0[&prod][still["Id"].as_str().unwrap()]["FirstObservedAt"],
        "first seen stays"
    );
    assert_ne!(
        still["UpdatedAt"],
        day0[&prod][still["Id"].as_str().unwrap()]["UpdatedAt"]
    );
}

#[test]
fn throttled_imports_are_retried_and_an_outbox_run_writes_what_would_be_imported() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec());
    let state = tempfile::tempdir().unwrap();
    moto.hook(
        "/_keywarden/api-fault",
        &json!({"throttle_pct": 50, "services": ["securityhub"], "seed": 7}),
    );
    let (_, report) = notify(&moto, &seeded, state.path(), NOW);
    let throttled = moto.hook_get("/_keywarden/api-fault")["throttled"]
        .as_u64()
        .unwrap();
    assert!(throttled > 0, "the fault was injected");
    let notes = exports(&report);
    let prod = seeded.account("prod");
    let prod_note = notes
        .values()
        .find(|n| n["recipients"][0].as_str().unwrap().contains(&prod))
        .unwrap();
    assert_eq!(prod_note["outcome"], "sent", "{prod_note}");
    assert_eq!(hub(&moto)[&prod].len(), 2);
    moto.hook("/_keywarden/api-fault", &json!({}));

    // --outbox: nothing imported, the ASFF written per account.
    let outbox = tempfile::tempdir().unwrap();
    let (ak, sk) = seeded.scanner();
    let (_, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args([
            "notify",
            "--format",
            "json",
            "--no-state",
            "--now",
            NOW,
            "--outbox",
        ])
        .arg(outbox.path())
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_SECURITYHUB_EXPORT", "true"));
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert!(exports(&report).values().all(|n| n["outcome"] == "outbox"));
    let written: Value = serde_json::from_str(
        &std::fs::read_to_string(outbox.path().join(format!("000-securityhub-{prod}.json")))
            .unwrap(),
    )
    .unwrap();
    let written = written.as_array().unwrap();
    assert_eq!(written.len(), 2);
    assert_eq!(written[0]["SchemaVersion"], "2018-10-08");
    assert_eq!(written[0]["AwsAccountId"], prod.as_str());
}
