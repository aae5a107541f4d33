//! The ledger end to end: the real binary against moto, several runs with
//! `--now` advancing over the same state directory. Who is told when, what
//! resolves and how, what an unreachable account keeps, escalation, and a
//! same-day re-run that sends nothing.

use crate::mail;
use crate::support;

use std::collections::BTreeSet;
use std::path::Path;

use crate::support::{run, Moto, Seeded};
use mail::sent;
use serde_json::{json, Value};

/// Day 0 of the scenario; the org's ages are relative to support::NOW, the same instant.
fn at(days: i64, hours: i64) -> String {
    let t: jiff::Timestamp = support::NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days + hours)).to_string()
}

fn spec() -> Value {
    json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "master@example.com", "management": true,
             "tags": {"security-contact": "sec@example.com"},
             "root_key": {"age_days": 400}},
            {"name": "prod", "email": "prod@example.com", "tags": {"owner": "prod-team@example.com"},
             "users": [
                {"name": "ci-deploy", "tags": {"owner": "dev@example.com"},
                 "keys": [{"age_days": 120, "last_used_days": 1}]},
                {"name": "legacy", "tags": {"owner": "legacy@example.com"},
                 "keys": [{"age_days": 60}]},
                {"name": "batch", "tags": {"owner": "batch@example.com"},
                 "keys": [{"age_days": 50}]}
             ]},
            {"name": "staging", "email": "staging@example.com", "tags": {"owner": "staging-team@example.com"},
             "users": [
                {"name": "old-svc", "tags": {"owner": "svc@example.com"},
                 "keys": [{"age_days": 200, "last_used_days": 2}]}
             ]}
        ]
    })
}

struct Scenario {
    moto: Moto,
    seeded: Seeded,
    state: tempfile::TempDir,
    /// Messages moto had received before the current run.
    seen: usize,
}

/// One run's outcome: exit code, report, and the recipients of the messages it sent.
struct Run {
    code: i32,
    report: Value,
    to: Vec<String>,
    texts: Vec<(String, String)>,
}

impl Scenario {
    fn new() -> Self {
        let moto = Moto::start();
        let seeded = moto.seed(&spec());
        Self {
            moto,
            seeded,
            state: tempfile::tempdir().unwrap(),
            seen: 0,
        }
    }

    fn notify(&mut self, now: &str) -> Run {
        let (ak, sk) = self.seeded.scanner();
        let mut cmd = self.moto.keywarden((&ak, &sk));
        cmd.args(["notify", "--format", "json", "--now", now, "--state"])
            .arg(self.state.path())
            .env("KEYWARDEN_SENDER", "keywarden@example.com")
            .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
            .env("KEYWARDEN_MAX_SEND_RATE", "100")
            .env("KEYWARDEN_ESCALATE_AFTER_DAYS", "4");
        let (code, stdout, stderr) = run(&mut cmd);
        let report: Value = serde_json::from_str(&stdout)
            .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
        let mails = sent(&self.moto);
        let new = &mails[self.seen..];
        self.seen = mails.len();
        Run {
            code,
            report,
            to: new.iter().map(|m| m.to.join(",")).collect(),
            texts: new
                .iter()
                .map(|m| (m.to.join(","), m.text.clone()))
                .collect(),
        }
    }

    fn ledger(&self) -> Value {
        let dir = only_subdir(self.state.path());
        serde_json::from_slice(&std::fs::read(dir.join("ledger.json")).unwrap()).unwrap()
    }
}

fn only_subdir(dir: &Path) -> std::path::PathBuf {
    let dirs: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "one organization folder: {dirs:?}");
    dirs[0].clone()
}

fn owners(run: &Run) -> BTreeSet<String> {
    run.to
        .iter()
        .filter(|t| *t != "security@example.com")
        .cloned()
        .collect()
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| s.to_string()).collect()
}

fn finding<'a>(report: &'a Value, user: &str, check: &str) -> &'a Value {
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user_name"] == user && f["check"] == check)
        .unwrap_or_else(|| panic!("no {check} finding for {user}"))
}

#[test]
fn a_week_of_runs_reminds_at_the_cadence_resolves_escalates_and_keeps_blind_spots_open() {
    let mut s = Scenario::new();

    // Day 0: everyone is told once, account owners included; everything is new.
    let day0 = s.notify(&at(0, 6));
    assert_eq!(day0.code, 0, "{:#}", day0.report);
    assert_eq!(
        owners(&day0),
        set(&[
            "sec@example.com",
            "dev@example.com",
            "legacy@example.com",
            "batch@example.com",
            "svc@example.com",
            "prod-team@example.com",
            "staging-team@example.com",
        ])
    );
    assert!(
        day0.to.contains(&"security@example.com".to_owned()),
        "the digest goes out"
    );
    let root = finding(&day0.report, "<root_account>", "root-access-key");
    assert_eq!(root["lifecycle"], "new");
    assert_eq!(root["notices"], 0);
    let prod_id = s.seeded.account("prod");
    let legacy_key = s.seeded.key("prod", "legacy", 0);
    assert_eq!(
        finding(&day0.report, "legacy", "key-unused")["finding_id"],
        format!("{prod_id}/{legacy_key}/key-unused")
    );

    // The run's report is archived under Hive-style partitions.
    let org_dir = only_subdir(s.state.path());
    let day_dir = org_dir.join("reports/year=2026/month=11/day=29");
    let archived: BTreeSet<String> = std::fs::read_dir(&day_dir)
        .unwrap_or_else(|e| panic!("{}: {e}", day_dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        archived,
        set(&["2026-11-29T060000Z.csv", "2026-11-29T060000Z.json"])
    );
    let archived_report: Value =
        serde_json::from_slice(&std::fs::read(day_dir.join("2026-11-29T060000Z.json")).unwrap())
            .unwrap();
    assert_eq!(archived_report["findings"], day0.report["findings"]);

    // The same day again (a retried invocation): only the digest.
    let retry = s.notify(&at(0, 8));
    assert_eq!(retry.code, 0);
    assert_eq!(
        owners(&retry),
        set(&[]),
        "nothing is sent twice on the same day"
    );
    assert_eq!(retry.to, ["security@example.com"]);
    assert_eq!(
        finding(&retry.report, "<root_account>", "root-access-key")["lifecycle"],
        "open"
    );

    // Day 1: only the critical root key is re-sent.
    let day1 = s.notify(&at(1, 6));
    assert_eq!(owners(&day1), set(&["sec@example.com"]));
    assert_eq!(
        finding(&day1.report, "<root_account>", "root-access-key")["notices"],
        1
    );

    // Day 3: the overdue (high) keys come round too; the medium one does not yet.
    let day3 = s.notify(&at(3, 6));
    assert_eq!(
        owners(&day3),
        set(&["sec@example.com", "dev@example.com", "svc@example.com"])
    );
    let (_, dev_text) = day3
        .texts
        .iter()
        .find(|(to, _)| to == "dev@example.com")
        .unwrap();
    assert!(dev_text.contains("reminder"), "{dev_text}");

    // Between day 3 and 4 legacy's key is deleted.
    s.moto.hook(
        "/_keywarden/iam",
        &json!({"account_id": prod_id, "op": "delete_access_key", "user_name": "legacy", "access_key_id": legacy_key}),
    );
    // Day 4: it is resolved (key deleted, 4 days open); ci-deploy's key escalates to the account owner.
    let day4 = s.notify(&at(4, 6));
    assert_eq!(day4.code, 0, "{:#}", day4.report);
    let resolved = day4.report["resolved"]
        .as_array()
        .expect("resolved findings");
    assert_eq!(resolved.len(), 1, "{resolved:#?}");
    assert_eq!(resolved[0]["user_name"], "legacy");
    assert_eq!(resolved[0]["how"], "key_deleted");
    assert_eq!(resolved[0]["days_open"], 4);
    let ci = finding(&day4.report, "ci-deploy", "key-age-overdue");
    assert!(ci["escalated_at"].is_string(), "{ci:#}");
    assert!(
        owners(&day4).contains("prod-team@example.com"),
        "{:?}",
        day4.to
    );
    let (_, team_text) = day4
        .texts
        .iter()
        .find(|(to, _)| to == "prod-team@example.com")
        .unwrap();
    assert!(
        team_text.contains(&s.seeded.key("prod", "ci-deploy", 0))
            && team_text.contains("escalated")
    );
    let (_, digest) = day4
        .texts
        .iter()
        .find(|(to, _)| to == "security@example.com")
        .unwrap();
    assert!(digest.contains("key deleted after 4 days"), "{digest}");
    assert!(digest.contains("Escalated to account owners: "), "{digest}");

    // Day 5: staging cannot be read any more; its finding stays open, untouched.
    let staging_id = s.seeded.account("staging");
    let before = s.ledger();
    s.moto.hook(
        "/_keywarden/iam",
        &json!({"account_id": staging_id, "op": "strip_role", "role_name": "KeywardenScanRole"}),
    );
    let day5 = s.notify(&at(5, 6));
    assert_eq!(day5.code, 3, "an account failed: incomplete");
    assert!(day5.report["resolved"]
        .as_array()
        .is_none_or(|r| r.is_empty()));
    let svc_id = format!(
        "{staging_id}/{}/key-age-overdue",
        s.seeded.key("staging", "old-svc", 0)
    );
    let after = s.ledger();
    assert_eq!(
        after["entries"][&svc_id], before["entries"][&svc_id],
        "kept exactly as it was"
    );
    assert!(after["entries"][&svc_id]["resolved_at"].is_null());
    let (_, digest) = day5
        .texts
        .iter()
        .find(|(to, _)| to == "security@example.com")
        .unwrap();
    assert!(digest.contains("carried unchanged"), "{digest}");
    assert_eq!(after["runs"].as_array().unwrap().len(), 6);
}

#[test]
fn a_dry_run_reads_the_ledger_and_saves_nothing_and_no_state_tells_everyone_again() {
    let mut s = Scenario::new();
    assert_eq!(s.notify(&at(0, 6)).code, 0);
    let ledger = s.ledger();

    let (ak, sk) = s.seeded.scanner();
    let mut cmd = s.moto.keywarden((&ak, &sk));
    cmd.args([
        "notify",
        "--dry-run",
        "--format",
        "json",
        "--now",
        &at(1, 6),
        "--state",
    ])
    .arg(s.state.path())
    .env("KEYWARDEN_SENDER", "keywarden@example.com")
    .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com");
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let owners_planned: Vec<&Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "owner")
        .collect();
    assert_eq!(
        owners_planned.len(),
        1,
        "the dry run plans what is due: the root key only"
    );
    assert_eq!(s.ledger(), ledger, "a dry run saves nothing");

    let mut cmd = s.moto.keywarden((&ak, &sk));
    cmd.args([
        "notify",
        "--no-state",
        "--format",
        "json",
        "--now",
        &at(1, 7),
    ])
    .env("KEYWARDEN_SENDER", "keywarden@example.com")
    .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
    .env("KEYWARDEN_MAX_SEND_RATE", "100");
    let (code, stdout, _) = run(&mut cmd);
    assert_eq!(code, 0);
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(
        report["notifications"].as_array().unwrap().len(),
        8,
        "without state every owner (7) and the digest"
    );
    assert!(report["findings"][0].get("lifecycle").is_none());
    assert_eq!(s.ledger(), ledger, "--no-state saves nothing");
}
