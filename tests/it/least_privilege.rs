//! The shipped member-role template is enough, and no more than enough:
//! stacksets/member-role.yaml is deployed with CloudFormation into each
//! member account (as the StackSet would), moto's IAM policy enforcement is
//! on, and the scanner's own identity is allowed exactly the actions the
//! code lists (`keywarden::aws::all_actions`).

use crate::support::{run, Moto, NOW};
use serde_json::{json, Value};

fn user(name: &str, age: u32) -> Value {
    json!({"name": name, "tags": {"owner": format!("{name}@example.com")}, "keys": [{"age_days": age, "last_used_days": 1}]})
}

fn org(drop_in_c: &[&str]) -> Value {
    json!({
        "scanner_user": true,
        "scanner_actions": keywarden::aws::all_actions(),
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "buckets": ["keywarden-state"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true, "users": [user("admin", 100)]},
            {"name": "a", "email": "a@example.com", "scan_role": "stackset", "users": [user("ci", 120)]},
            {"name": "b", "email": "b@example.com", "scan_role": "stackset", "ou": "Sandbox", "users": [user("etl", 200)]},
            {"name": "c", "email": "c@example.com", "scan_role": "stackset", "drop_actions": drop_in_c, "users": [user("web", 95)]}
        ]
    })
}

#[test]
fn with_the_shipped_template_every_account_is_scanned_and_mailed() {
    let moto = Moto::start();
    let seeded = moto.seed(&org(&[]));
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["notify", "--format", "json"])
        .args(["--state", "s3://keywarden-state/keywarden"])
        .env("KEYWARDEN_CLOCK_OVERRIDE", NOW)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_MAX_SEND_RATE", "100"));
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    assert_eq!(code, 0, "complete, no --fail-on\n{stderr}");
    assert_eq!(
        report["summary"]["accounts_failed"], 0,
        "{}",
        report["accounts"]
    );
    assert_eq!(report["summary"]["accounts_scanned"], 4);
    assert!(report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .all(|a| a["source"] == "credential_report"));
    assert_eq!(report["summary"]["findings"], 4);
    let notes = report["notifications"].as_array().unwrap();
    assert_eq!(
        notes.len(),
        9,
        "four key owners, the four account owners, and the digest"
    );
    assert!(notes.iter().all(|n| n["outcome"] == "sent"), "{notes:?}");
    assert!(
        report.get("errors").is_none(),
        "the ledger and the archive were written to S3 with these actions: {}",
        report["errors"]
    );
}

#[test]
fn without_one_action_that_account_fails_with_access_denied() {
    let moto = Moto::start();
    let seeded = moto.seed(&org(&["iam:ListUserTags"]));
    let (ak, sk) = seeded.scanner();
    let (code, stdout, _) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "json", "--now", NOW]));
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(code, 3);
    let failed: Vec<&Value> = report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["status"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{}", report["accounts"]);
    assert_eq!(failed[0]["account_id"], seeded.account("c").as_str());
    assert_eq!(failed[0]["error"]["code"], "AccessDenied");
    assert!(failed[0]["error"]["message"]
        .as_str()
        .unwrap()
        .contains("iam:ListUserTags"));
}
