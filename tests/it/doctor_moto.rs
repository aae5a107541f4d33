//! `keywarden doctor`, end to end: the real binary against moto with the
//! shipped member-role template deployed and IAM policy enforcement on. A
//! healthy Organization is all ✓ (exit 0); one with each first-day problem
//! seeded names each problem and its fix (exit 2). Where moto answers
//! otherwise than AWS (SES GetAccount, identity verification, AssumeRole of
//! a role that does not exist), the test launcher answers as AWS does.

use crate::support::{run, Moto, Seeded};
use serde_json::{json, Value};

const WEBHOOK: &str = "/keywarden/webhook";

fn user(name: &str, age: u32) -> Value {
    json!({"name": name, "tags": {"owner": format!("{name}@example.com")},
           "keys": [{"age_days": age, "last_used_days": 1}]})
}

fn scanner_actions() -> Vec<&'static str> {
    let mut actions: Vec<&str> = keywarden::aws::all_actions();
    actions.extend(keywarden::aws::securityhub::SECURITYHUB_ACTIONS);
    actions.extend(keywarden::aws::securityhub::SECURITYHUB_DOCTOR_ACTIONS);
    actions.extend(keywarden::aws::ssm::SSM_ACTIONS);
    actions
}

/// A member account with the StackSet's role (export and enforcement on
/// when `full`), and Security Hub on when `hub`.
fn member(name: &str, full: bool, hub: bool) -> Value {
    let params = if full {
        json!({"EnableSecurityHubExport": "true", "EnableEnforcement": "true"})
    } else {
        json!({"EnableSecurityHubExport": "true"})
    };
    json!({"name": name, "email": format!("{name}@example.com"), "scan_role": "stackset",
           "stackset_parameters": params, "securityhub": hub, "users": [user("ci", 120)]})
}

fn doctor(moto: &Moto, seeded: &Seeded, recipients: &str, format: &str) -> (i32, String, String) {
    let (ak, sk) = seeded.scanner();
    run(moto
        .keywarden((&ak, &sk))
        .args(["doctor", "--format", format])
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", recipients)
        .env("KEYWARDEN_STATE", "s3://keywarden-state/keywarden")
        .env("KEYWARDEN_SECURITYHUB_EXPORT", "true")
        .env("KEYWARDEN_ENFORCE", "apply")
        .env("KEYWARDEN_WEBHOOK_URL_PARAMETER", WEBHOOK))
}

fn ses(moto: &Moto, production: bool, verified: bool, dkim: bool) {
    moto.hook(
        "/_keywarden/ses-account",
        &json!({"account_id": "123456789012", "production_access": production,
                "max_24_hour_send": 50000, "max_send_rate": 14}),
    );
    moto.hook(
        "/_keywarden/ses-identity",
        &json!({"account_id": "123456789012", "identity": "example.com",
                "verified": verified, "dkim": dkim}),
    );
}

/// check name -> (status, the whole check).
fn by_check(doc: &Value) -> std::collections::BTreeMap<String, (String, Value)> {
    doc["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (
                c["check"].as_str().unwrap().to_owned(),
                (c["status"].as_str().unwrap().to_owned(), c.clone()),
            )
        })
        .collect()
}

#[test]
fn a_healthy_organization_is_all_ticks_and_exits_0() {
    let moto = Moto::start();
    let seeded = moto.seed(&json!({
        "scanner_user": true,
        "scanner_actions": scanner_actions(),
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "buckets": [{"name": "keywarden-state", "versioning": true, "encryption": "aws:kms"}],
        "parameters": [{"name": WEBHOOK, "type": "SecureString",
                        "value": "https://hooks.slack.com/services/T0/B0/secret"}],
        "trusted_services": [keywarden::aws::organizations::STACKSETS_PRINCIPAL],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "securityhub": true, "users": [user("admin", 100)]},
            member("prod", true, true),
            member("dev", true, true),
        ]
    }));
    ses(&moto, true, true, true);
    let (code, stdout, stderr) = doctor(&moto, &seeded, "security@example.com", "text");
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    for group in [
        "Caller and Organization",
        "Member role coverage",
        "Mail",
        "State",
        "Opt-ins",
    ] {
        assert!(stdout.contains(group), "{group}: {stdout}");
    }
    assert!(
        !stdout.contains(" ✗ ") && !stdout.contains(" ! "),
        "{stdout}"
    );
    for line in [
        "user/keywarden-scanner (account 123456789012)",
        ": this is its management account",
        "3 accounts in scope",
        "StackSets trusted access is on",
        "KeywardenScanRole assumed in all 2 member accounts in scope",
        "CloudTrail's event history is readable (LookupEvents) in all 3 accounts asked",
        "keywarden@example.com may send: its domain example.com is a verified SES identity",
        "DKIM signs mail from example.com",
        "out of the SES sandbox",
        "keywarden-state is versioned",
        "keywarden-state encrypts by default (aws:kms)",
        "no ledger yet",
        "no run holds the lease",
        "Security Hub is on in all 3 accounts in us-east-1",
        "the webhook URL is the SecureString parameter /keywarden/webhook",
        "KeywardenEnforceRole assumed in all 2 member accounts in scope",
        "Ready: nothing blocks a run (exit 0).",
    ] {
        assert!(stdout.contains(line), "{line:?} missing:\n{stdout}");
    }
    assert!(!stdout.contains("secret"), "the webhook URL is never shown");
    // Read-only: the probe's object is gone, nothing else was written.
    let (ak, sk) = seeded.scanner();
    let (_, listed, err) = run(std::process::Command::new(crate::support::python()).args([
        "-c",
        "import sys, boto3; s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', aws_access_key_id=sys.argv[2], aws_secret_access_key=sys.argv[3]); print([o['Key'] for o in s3.list_objects_v2(Bucket='keywarden-state').get('Contents', [])])",
        &moto.endpoint,
        &ak,
        &sk,
    ]));
    assert_eq!(listed.trim(), "[]", "doctor leaves nothing behind: {err}");
}

#[test]
fn every_first_day_problem_is_named_with_its_fix_and_exits_2() {
    let moto = Moto::start();
    // A member role from before key usage: no cloudtrail:LookupEvents.
    let mut no_hub = member("no-hub", false, false);
    no_hub["drop_actions"] = json!(["cloudtrail:LookupEvents"]);
    let seeded = moto.seed(&json!({
        "scanner_user": true,
        "scanner_actions": scanner_actions(),
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "buckets": ["keywarden-state"],
        "parameters": [{"name": WEBHOOK, "type": "String",
                        "value": "https://hooks.slack.com/services/T0/B0/secret"}],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "securityhub": true, "users": [user("admin", 100)]},
            member("prod", false, true),
            no_hub,
            {"name": "lost", "email": "lost@example.com", "scan_role": "none",
             "users": [user("etl", 150)]},
        ]
    }));
    ses(&moto, false, true, false);
    let (code, stdout, stderr) = doctor(
        &moto,
        &seeded,
        "security@example.com,soc@partner.org",
        "json",
    );
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"));
    assert_eq!(doc["exit_code"], 2);
    let checks = by_check(&doc);
    let status = |name: &str| checks[name].0.as_str();
    let text = |name: &str| checks[name].1.to_string();

    // The role missing in one account: a blocker naming the account.
    let lost = seeded.account("lost");
    assert_eq!(status("scan role"), "blocker");
    assert!(text("scan role").contains("cannot assume KeywardenScanRole in 1 of 3"));
    assert!(text("scan role").contains(&format!(
        "1 account (cannot assume: the StackSet is not there, or a trust/SCP refuses it): {lost}"
    )));
    assert!(text("scan role").contains("deploy the member-role StackSet"));
    // SES in its sandbox: the unverified recipient would bounce.
    assert_eq!(status("sandbox"), "blocker");
    assert!(text("sandbox").contains("would bounce: soc@partner.org"));
    assert!(text("sandbox").contains("production access"));
    assert!(!text("sandbox").contains("security@example.com"));
    assert_eq!(status("dkim"), "warning");
    assert!(text("dkim").contains("DKIM is not on for example.com"));
    // The bucket: not versioned, no default encryption (warnings).
    assert_eq!(status("versioning"), "warning");
    assert!(text("versioning").contains("put-bucket-versioning --bucket keywarden-state"));
    assert_eq!(status("encryption"), "warning");
    assert_eq!(status("write probe"), "ok");
    // Security Hub off in one account.
    assert_eq!(status("security hub"), "blocker");
    let no_hub = seeded.account("no-hub");
    assert!(
        text("security hub").contains(&format!("off: {no_hub}")),
        "{}",
        text("security hub")
    );
    // A String parameter.
    assert_eq!(status("webhook"), "blocker");
    assert!(text("webhook").contains("not a SecureString"));
    assert!(text("webhook").contains("--type SecureString"));
    assert!(!stdout.contains("secret"), "the webhook URL is never shown");
    // Enforcement on without its role.
    assert_eq!(status("enforce role"), "blocker");
    assert!(text("enforce role").contains("cannot assume KeywardenEnforceRole in 3 of 3"));
    assert!(text("enforce role").contains("EnableEnforcement=true"));
    // Key usage unreadable in one account: a warning naming it.
    assert_eq!(status("key usage"), "warning");
    assert!(
        text("key usage").contains("cannot be read in 1 of 3 accounts asked"),
        "{}",
        text("key usage")
    );
    assert!(text("key usage").contains(&format!(
        "1 account (no cloudtrail:LookupEvents: a member role older than this version, or an SCP): {no_hub}"
    )));
    assert!(text("key usage").contains("update the member-role StackSet"));
    // StackSets trusted access off: a warning.
    assert_eq!(status("stacksets"), "warning");
    assert!(text("stacksets").contains("enable-aws-service-access"));
    // What is fine stays fine.
    assert_eq!(status("sender"), "ok");
    assert_eq!(status("organization"), "ok");
    // Every problem has a fix.
    for (name, (s, c)) in &checks {
        if s != "ok" && name != "lease" {
            assert!(c["fix"].is_string(), "{name} has no fix: {c}");
        }
    }
}

#[test]
fn an_unverified_sender_blocks_and_an_unreadable_organization_stops_the_member_checks() {
    let moto = Moto::start();
    let seeded = moto.seed(&json!({
        "scanner_user": true,
        // No Organizations actions at all.
        "scanner_actions": ["ses:GetAccount", "ses:GetEmailIdentity"],
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "users": [user("admin", 100)]},
            member("prod", false, true),
        ]
    }));
    ses(&moto, true, false, true);
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["doctor", "--state"])
        .arg(tempfile::tempdir().unwrap().path().join("state"))
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com"));
    assert_eq!(code, 2, "{stdout}\n{stderr}");
    assert!(
        stdout.contains("✗ organization  may not read the Organization (organizations:DescribeOrganization: AccessDenied"),
        "{stdout}"
    );
    assert!(
        stdout.contains(
            "✗ sender        example.com is an SES identity in us-east-1 but not verified"
        ),
        "{stdout}"
    );
    assert!(
        stdout.contains("does not exist yet: the first run creates it"),
        "{stdout}"
    );
    assert!(
        !stdout.contains("scan role"),
        "no member check without the Organization: {stdout}"
    );
    assert!(stdout.contains("Not ready: "), "{stdout}");
}
