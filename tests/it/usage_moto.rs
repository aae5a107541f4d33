//! Where each flagged key is used and what should replace it (issue 21), end
//! to end: the real binary against moto with the shipped member-role
//! template and IAM enforcement on; CloudTrail's LookupEvents is served by
//! the test launcher in AWS's wire format (JSON 1.1, NextToken, 2 requests
//! per second per account and region) from events seeded per key.

use crate::support::{run, Moto, Seeded, NOW};
use serde_json::{json, Value};

const CLI: &str =
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off command/s3.ls";
const GHA: &str = "aws-sdk-js/3.540.0 ua/2.0 os/linux lang/js md/nodejs#20.11.1 api/sts#3.540.0 configure-aws-credentials-for-github-actions";
const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.40.0 aws-sdk-go-v2/1.25.2";

fn old_key(region: &str, events: Value) -> Value {
    json!([{"age_days": 120, "last_used_days": 1, "region": region, "events": events}])
}

fn spec(extra_prod: Value) -> Value {
    let mut prod = json!({"name": "prod", "email": "prod@example.com", "scan_role": "stackset",
    "users": [
        {"name": "laptop", "password": true, "tags": {"owner": "dev@example.com"},
         "keys": old_key("eu-west-1", json!([
             {"days_ago": 2, "ip": "203.0.113.7", "ua": CLI, "api": "s3:ListBuckets", "count": 3},
             {"days_ago": 9, "ip": "198.51.100.2", "ua": CLI, "api": "ec2:DescribeInstances"}]))},
        {"name": "ci", "tags": {"owner": "ci@example.com"},
         "keys": old_key("us-east-1", json!([
             {"days_ago": 1, "ip": "20.42.1.9", "ua": GHA, "api": "sts:GetCallerIdentity"}]))},
        {"name": "worker", "tags": {"owner": "ops@example.com"},
         "keys": old_key("eu-west-1", json!([
             {"days_ago": 1, "ip": "10.0.4.20", "ua": TERRAFORM, "api": "s3:PutObject", "vpce": "vpce-0a1b2c3d"}]))},
        {"name": "vendor", "tags": {"owner": "vendor@example.com"},
         "keys": old_key("eu-west-1", json!(
             (1..=20).map(|d| json!({"days_ago": d, "ip": "192.0.2.77", "ua": "Datadog/1.0", "api": "cloudwatch:GetMetricData"})).collect::<Vec<_>>()))},
        {"name": "busy", "tags": {"owner": "busy@example.com"},
         "keys": old_key("eu-west-1", json!([
             {"days_ago": 3, "ip": "198.51.100.9", "ua": TERRAFORM, "api": "s3:GetObject", "count": 120}]))},
        {"name": "idle", "tags": {"owner": "idle@example.com"},
         "keys": [{"age_days": 200, "last_used_days": 150}]}
    ]});
    if let Some(extra) = extra_prod.as_object() {
        prod.as_object_mut().unwrap().extend(extra.clone());
    }
    json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true},
            prod
        ]
    })
}

fn at(days: i64) -> String {
    let t: jiff::Timestamp = NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

/// A `notify` (into an outbox) as of `days` after NOW: the report and the
/// messages' text bodies.
fn notify(
    moto: &Moto,
    seeded: &Seeded,
    state: Option<&std::path::Path>,
    days: i64,
    env: &[(&str, &str)],
) -> (Value, Vec<(String, String)>) {
    let (ak, sk) = seeded.scanner();
    let outbox = tempfile::tempdir().unwrap();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--format", "json", "--now", &at(days), "--outbox"])
        .arg(outbox.path())
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com");
    match state {
        Some(s) => cmd.arg("--state").arg(s),
        None => cmd.arg("--no-state"),
    };
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    assert!(code == 0 || code == 3, "{stdout}\n{stderr}");
    let report: Value =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    let mail = crate::mail::outbox(outbox.path());
    (report, mail)
}

fn finding<'a>(report: &'a Value, user: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user_name"] == user && f["access_key_id"].is_string())
        .unwrap_or_else(|| panic!("no finding of {user}: {report}"))
}

fn calls(moto: &Moto) -> u64 {
    let v = moto.hook_get("/_keywarden/cloudtrail");
    v["calls"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum()
}

#[test]
fn each_flagged_key_says_where_it_is_used_and_what_should_replace_it() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(json!({})));
    let (report, mail) = notify(&moto, &seeded, None, 0, &[]);
    assert_eq!(report["summary"]["accounts_failed"], 0, "{report}");
    let expect = [
        (
            "laptop",
            "identity-center",
            "the user signs in to the console",
        ),
        (
            "ci",
            "oidc",
            "its user agent names the CI system GitHub Actions",
        ),
        (
            "worker",
            "compute-role",
            "1 calls came through a VPC endpoint",
        ),
        ("vendor", "vendor-role", "by Datadog, not an AWS tool"),
        (
            "idle",
            "delete",
            "has not been used within the unused threshold",
        ),
    ];
    for (user, kind, reason) in expect {
        let f = finding(&report, user);
        assert_eq!(f["replace_with"]["kind"], kind, "{user}: {f}");
        assert!(
            f["replace_with"]["reason"]
                .as_str()
                .unwrap()
                .contains(reason),
            "{user}: {f}"
        );
    }
    let laptop = &finding(&report, "laptop")["usage"];
    assert_eq!(laptop["state"], "known");
    assert_eq!(laptop["complete"], true);
    assert_eq!(laptop["events"], 4);
    assert_eq!(laptop["address_count"], 2);
    assert_eq!(laptop["tools"][0]["name"], "aws-cli/2");
    assert_eq!(
        laptop["apis"][0],
        json!({"name": "s3:ListBuckets", "count": 3})
    );
    // The idle key was not used in 90 days: no CloudTrail call for it, and
    // the report says why.
    let idle = &finding(&report, "idle")["usage"];
    assert_eq!(idle["state"], "unknown");
    assert!(
        idle["reason"]
            .as_str()
            .unwrap()
            .starts_with("last used more than 90 days ago"),
        "{idle}"
    );
    // More events than the page limit (5 pages of 50 by default; 2 here): "at least".
    let busy = &finding(&report, "busy")["usage"];
    assert_eq!(busy["complete"], true, "120 events fit 5 pages: {busy}");
    let (cut, _) = notify(
        &moto,
        &seeded,
        None,
        0,
        &[("KEYWARDEN_USAGE_MAX_PAGES", "2")],
    );
    let busy = &finding(&cut, "busy")["usage"];
    assert_eq!(busy["complete"], false, "{busy}");
    assert_eq!(busy["events"], 100);
    // Never a request parameter in what is kept.
    assert!(!report.to_string().contains("never read by keywarden"));

    let card = &mail
        .iter()
        .find(|(to, _)| to == "dev@example.com")
        .expect("the laptop's owner is mailed")
        .1;
    assert!(
        card.contains("Used in the last 90 days: 4 calls from 203.0.113.7, 198.51.100.2 with aws-cli/2 mostly s3:ListBuckets, ec2:DescribeInstances"),
        "{card}"
    );
    assert!(
        card.contains("Replace it with: an IAM Identity Center user"),
        "{card}"
    );
    let digest = &mail.last().unwrap().1;
    assert!(
        digest.contains("1 key could be an Identity Center user"),
        "{digest}"
    );
    assert!(digest.contains("1 CI key could use OIDC"), "{digest}");
}

#[test]
fn a_throttled_or_denied_lookup_is_unknown_and_the_findings_stand() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(json!({})));
    moto.hook(
        "/_keywarden/cloudtrail",
        &json!({"account_id": seeded.account("prod"), "region": "eu-west-1", "throttle": true}),
    );
    let (report, _) = notify(&moto, &seeded, None, 0, &[]);
    let laptop = finding(&report, "laptop");
    assert_eq!(laptop["check"], "key-age-overdue");
    assert_eq!(laptop["usage"]["state"], "unknown", "{laptop}");
    assert!(
        laptop["usage"]["reason"]
            .as_str()
            .unwrap()
            .contains("Throttling"),
        "{laptop}"
    );
    // Unknown usage, but the console password still says "a person".
    assert_eq!(laptop["replace_with"]["kind"], "identity-center");
    // us-east-1 was not throttled: the CI key's footprint is there.
    assert_eq!(finding(&report, "ci")["usage"]["state"], "known");

    // A member role without cloudtrail:LookupEvents.
    let moto = Moto::start();
    let seeded = moto.seed(&spec(json!({"drop_actions": ["cloudtrail:LookupEvents"]})));
    let (report, _) = notify(&moto, &seeded, None, 0, &[]);
    assert_eq!(report["summary"]["accounts_failed"], 0, "{report}");
    let ci = finding(&report, "ci");
    assert_eq!(ci["usage"]["state"], "unknown");
    assert!(
        ci["usage"]["reason"]
            .as_str()
            .unwrap()
            .contains("cloudtrail:LookupEvents: AccessDenied"),
        "{ci}"
    );
    assert_eq!(ci["replace_with"]["kind"], "rotate");
}

#[test]
fn a_footprint_is_reused_from_the_ledger_and_read_again_on_the_accounts_refresh_day() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(json!({})));
    let (quiet, refresh) =
        crate::cycle::quiet_and_refresh_days(&seeded.account("prod"), |d| at(d).parse().unwrap());
    let state = tempfile::tempdir().unwrap();
    let (first, _) = notify(&moto, &seeded, Some(state.path()), 0, &[]);
    let read = calls(&moto);
    assert!(read > 0);
    let (remembered, _) = notify(&moto, &seeded, Some(state.path()), quiet, &[]);
    assert_eq!(calls(&moto), read, "day {quiet} reads no CloudTrail event");
    assert_eq!(
        finding(&remembered, "laptop")["usage"],
        finding(&first, "laptop")["usage"]
    );
    let (later, _) = notify(&moto, &seeded, Some(state.path()), refresh, &[]);
    assert!(calls(&moto) > read, "day {refresh}: read again");
    assert_eq!(finding(&later, "laptop")["usage"]["read_at"], at(refresh));
}
