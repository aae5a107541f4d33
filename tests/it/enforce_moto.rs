//! Enforcement end to end: the real binary against moto with IAM policy
//! enforcement on, member accounts deployed from the shipped StackSet
//! template (scan role and, where enabled, the enforcement role). Runs over
//! several days build up the notices; `plan` changes nothing; `apply`
//! deactivates exactly the eligible keys, honours the cap, leaves exempt keys,
//! keys with too few notices and a user's newer key alone, and records a
//! failure where the enforcement role may not write.

use crate::mail;
use crate::support;

use std::collections::BTreeMap;

use crate::support::{run, Moto, Seeded};
use serde_json::{json, Value};

fn at(days: i64, hours: i64) -> String {
    let t: jiff::Timestamp = support::NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days + hours)).to_string()
}

fn spec() -> Value {
    let mut actions = keywarden::aws::all_actions();
    // The management account is enforced with the caller's own identity.
    actions.push("iam:UpdateAccessKey");
    json!({
        "scanner_user": true,
        "scanner_actions": actions,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "users": [{"name": "mgmt-ci", "tags": {"owner": "mgmt@example.com"},
                        "keys": [{"age_days": 250, "last_used_days": 1}]}]},
            {"name": "a", "email": "a@example.com", "scan_role": "stackset",
             "stackset_parameters": {"EnableEnforcement": "true"},
             "users": [
                {"name": "ci", "tags": {"owner": "ci@example.com"}, "keys": [{"age_days": 150, "last_used_days": 1}]},
                {"name": "rotating", "tags": {"owner": "rot@example.com"},
                 "keys": [{"age_days": 300, "last_used_days": 1}, {"age_days": 10, "last_used_days": 1}]},
                {"name": "exempt-svc", "tags": {"owner": "svc@example.com", "keywarden:exempt": "2026-12-31 vendor"},
                 "keys": [{"age_days": 350, "last_used_days": 1}]},
                {"name": "fine", "tags": {"owner": "fine@example.com"}, "keys": [{"age_days": 5, "last_used_days": 1}]}
             ]},
            {"name": "nobody-acct", "email": "nobody@outside.example", "scan_role": "stackset",
             "stackset_parameters": {"EnableEnforcement": "true"},
             "users": [{"name": "orphan", "keys": [{"age_days": 500, "last_used_days": 1}]}]},
            {"name": "b", "email": "b@example.com", "scan_role": "stackset",
             "stackset_parameters": {"EnableEnforcement": "true"},
             "users": [{"name": "web", "tags": {"owner": "web@example.com"}, "keys": [{"age_days": 400, "last_used_days": 1}]}]}
        ]
    })
}

struct Org {
    moto: Moto,
    seeded: Seeded,
    state: tempfile::TempDir,
}

impl Org {
    /// The Organization of `spec()` in a fresh moto, with an empty ledger.
    fn new() -> Self {
        let moto = Moto::start();
        let seeded = moto.seed(&spec());
        Org {
            moto,
            seeded,
            state: tempfile::tempdir().unwrap(),
        }
    }

    fn notify(&self, now: &str, mode: &str, env: &[(&str, &str)]) -> (i32, Value, String) {
        let (ak, sk) = self.seeded.scanner();
        let mut cmd = self.moto.keywarden((&ak, &sk));
        cmd.args(["notify", "--format", "json", "--now", now, "--state"])
            .arg(self.state.path())
            .env("KEYWARDEN_SENDER", "keywarden@example.com")
            .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
            .env("KEYWARDEN_MAX_SEND_RATE", "100")
            .env("KEYWARDEN_ENFORCE", mode)
            .env("KEYWARDEN_DEACTIVATE_AFTER_DAYS", "0")
            .env("KEYWARDEN_ENFORCE_MIN_NOTICES", "2")
            .env("KEYWARDEN_ENFORCE_FINAL_NOTICE_DAYS", "2")
            .env("KEYWARDEN_OVERDUE_REMIND_EVERY_DAYS", "1");
        for (k, v) in env {
            cmd.env(k, v);
        }
        let (code, stdout, stderr) = run(&mut cmd);
        let report =
            serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("no report ({e}):\n{stderr}"));
        (code, report, stderr)
    }

    /// Every user key in moto: (account name, user, key index) → status.
    fn statuses(&self) -> BTreeMap<String, String> {
        let keys = self.moto.hook_get("/_keywarden/keys");
        let names = self.seeded.names();
        let mut out = BTreeMap::new();
        for (account, users) in keys.as_object().unwrap() {
            let Some(name) = names.get(account) else {
                continue;
            };
            for (user, ks) in users.as_object().unwrap() {
                if user == "keywarden-scanner" {
                    continue;
                }
                for (key, status) in ks.as_object().unwrap() {
                    out.insert(
                        format!("{name}/{user}/{key}"),
                        status.as_str().unwrap().to_owned(),
                    );
                }
            }
        }
        out
    }

    fn key(&self, account: &str, user: &str, i: usize) -> String {
        format!("{account}/{user}/{}", self.seeded.key(account, user, i))
    }
}

fn actions(report: &Value) -> Vec<(String, String, String)> {
    report["actions"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|x| {
                    (
                        x["user_name"].as_str().unwrap().to_owned(),
                        x["action"].as_str().unwrap().to_owned(),
                        x["outcome"].as_str().unwrap().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn plan_changes_nothing_and_apply_deactivates_exactly_the_eligible_keys_after_fair_warning() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec());
    // In account b the enforcement role exists but may not write.
    moto.hook(
        "/_keywarden/iam",
        &json!({"account_id": seeded.account("b"), "op": "strip_role", "role_name": "KeywardenEnforceRole"}),
    );
    let org = Org {
        moto,
        seeded,
        state: tempfile::tempdir().unwrap(),
    };
    let before = org.statuses();
    assert!(before.values().all(|s| s == "Active"));

    // Day 0: everyone is told, and the date is named (the final notice).
    let (_, report, stderr) = org.notify(&at(0, 6), "apply", &[]);
    assert!(
        actions(&report).is_empty(),
        "one notice is not fair warning: {:?}\n{stderr}",
        actions(&report)
    );
    let mails = mail::sent(&org.moto);
    let ci = mails
        .iter()
        .find(|m| m.to == ["ci@example.com"])
        .expect("ci's owner told");
    assert!(
        ci.text.contains("will be deactivated on 2026-12-01"),
        "{}",
        ci.text
    );

    // Day 1: a reminder (the second notice). Still too early: the final notice is a day old.
    let (_, report, _) = org.notify(&at(1, 6), "apply", &[]);
    assert!(actions(&report).is_empty(), "{:?}", actions(&report));

    // Day 2, plan: says exactly what apply would do, changes nothing.
    let (_, report, _) = org.notify(&at(2, 6), "plan", &[]);
    let planned = actions(&report);
    let users: Vec<&str> = planned.iter().map(|(u, _, _)| u.as_str()).collect();
    assert_eq!(
        users,
        ["web", "rotating", "mgmt-ci", "ci"],
        "oldest first: {planned:?}"
    );
    assert!(planned
        .iter()
        .all(|(_, a, o)| a == "deactivate" && o == "planned"));
    assert_eq!(org.statuses(), before, "plan changes nothing in IAM");

    // Day 2 again, apply with a cap of 2: the two oldest; the rest wait.
    let (code, report, stderr) = org.notify(
        &at(2, 8),
        "apply",
        &[("KEYWARDEN_ENFORCE_MAX_PER_RUN", "2")],
    );
    assert_eq!(
        code, 3,
        "a failed action makes the run incomplete\n{stderr}"
    );
    let done = actions(&report);
    assert_eq!(
        done,
        [
            (
                "web".to_owned(),
                "deactivate".to_owned(),
                "failed".to_owned()
            ),
            (
                "rotating".to_owned(),
                "deactivate".to_owned(),
                "done".to_owned()
            ),
        ],
        "{stderr}"
    );
    assert_eq!(report["actions_waiting"], 2);
    let web = &report["actions"][0];
    assert!(
        web["error"].as_str().unwrap().contains("AccessDenied"),
        "{web}"
    );
    let after = org.statuses();
    assert_eq!(after[&org.key("a", "rotating", 0)], "Inactive");
    assert_eq!(
        after[&org.key("a", "rotating", 1)],
        "Active",
        "the newer key of the same user stays"
    );

    // The owner is told what was done and how to undo it.
    let mails = mail::sent(&org.moto);
    let rot = mails
        .iter()
        .rev()
        .find(|m| m.to == ["rot@example.com"])
        .unwrap();
    assert!(rot.subject.contains("deactivated"), "{}", rot.subject);
    assert!(
        rot.text
            .contains("aws iam update-access-key --user-name 'rotating' --access-key-id")
            && rot.text.contains("--status Active"),
        "{}",
        rot.text
    );
    let digest = mails
        .iter()
        .rev()
        .find(|m| m.to == ["security@example.com"])
        .unwrap();
    assert!(
        digest.text.contains("DEACTIVATED THIS RUN: 2 MORE WAITING"),
        "{}",
        digest.text
    );

    // Issue 22 item 9: the cap is per UTC day, counted from the ledger, so
    // a retried invocation the same day (Lambda's async retries) adds no
    // action beyond it: one key was done today, a cap of 1 leaves none.
    let (_, report, stderr) = org.notify(
        &at(2, 9),
        "apply",
        &[("KEYWARDEN_ENFORCE_MAX_PER_DAY", "1")],
    );
    assert!(
        actions(&report).is_empty(),
        "{:?}\n{stderr}",
        actions(&report)
    );
    assert_eq!(report["actions_waiting"], 3, "{stderr}");
    assert_eq!(org.statuses(), after, "nothing more changed today");

    // Day 3: the rest.
    let (_, report, _) = org.notify(&at(3, 6), "apply", &[]);
    let done: Vec<(String, String)> = actions(&report)
        .into_iter()
        .map(|(u, _, o)| (u, o))
        .collect();
    assert_eq!(
        done,
        [
            ("web".to_owned(), "failed".to_owned()),
            ("mgmt-ci".to_owned(), "done".to_owned()),
            ("ci".to_owned(), "done".to_owned()),
        ]
    );

    // Exactly these keys changed, no other key in the Organization.
    let mut expected = before.clone();
    for k in [
        org.key("a", "rotating", 0),
        org.key("management", "mgmt-ci", 0),
        org.key("a", "ci", 0),
    ] {
        expected.insert(k, "Inactive".to_owned());
    }
    assert_eq!(org.statuses(), expected);

    // The ledger recorded it.
    let org_dir = std::fs::read_dir(org.state.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let ledger: Value =
        serde_json::from_slice(&std::fs::read(org_dir.join("ledger.json")).unwrap()).unwrap();
    let id = format!(
        "{}/{}/key-age-overdue",
        org.seeded.account("a"),
        org.seeded.key("a", "ci", 0)
    );
    assert_eq!(ledger["entries"][&id]["how"], "key_deactivated");
}

/// Issue 22 item 15: in `plan` owners were told "This key will be
/// deactivated on DATE", a date nothing kept, and those notices counted as
/// the final notice once `apply` was switched on. Now `plan` names no date
/// to owners and gives no final notice; the first `apply` run gives the
/// real one and acts no sooner than enforce_final_notice_days after it.
#[test]
fn plan_promises_owners_no_date_and_apply_acts_only_after_its_own_final_notice() {
    let org = Org::new();
    for day in 0..3 {
        let (_, report, stderr) = org.notify(&at(day, 6), "plan", &[]);
        assert!(
            actions(&report).iter().all(|(_, _, o)| o == "planned"),
            "{stderr}"
        );
    }
    let mails = mail::sent(&org.moto);
    let ci: Vec<&mail::Mail> = mails
        .iter()
        .filter(|m| m.to == ["ci@example.com"])
        .collect();
    assert!(!ci.is_empty());
    for m in &ci {
        assert!(
            !m.text.contains("will be deactivated") && !m.html.contains("will be deactivated"),
            "plan named a date: {}",
            m.text
        );
    }
    // The first apply: the final notice, naming a date two days on; no action.
    let before = mail::sent(&org.moto).len();
    let (_, report, stderr) = org.notify(&at(3, 6), "apply", &[]);
    assert!(
        actions(&report).is_empty(),
        "{:?}\n{stderr}",
        actions(&report)
    );
    let mails = mail::sent(&org.moto);
    let ci = mails[before..]
        .iter()
        .find(|m| m.to == ["ci@example.com"])
        .expect("the final notice");
    assert!(
        ci.text.contains("will be deactivated on 2026-12-04"),
        "{}",
        ci.text
    );
    let (_, report, _) = org.notify(&at(4, 6), "apply", &[]);
    assert!(actions(&report).is_empty(), "{:?}", actions(&report));
    let (_, report, _) = org.notify(&at(5, 6), "apply", &[]);
    assert!(
        actions(&report).contains(&("ci".to_owned(), "deactivate".to_owned(), "done".to_owned())),
        "{:?}",
        actions(&report)
    );
}

/// Issue 22 item 4: re-tagging the key's user every few days postponed
/// enforcement forever (each new owner started from zero notices). Notices
/// belong to the key: the warnings given to earlier owners count, and the
/// new owner still hears about the key at once.
#[test]
fn changing_the_owner_tag_does_not_postpone_enforcement() {
    let org = Org::new();
    let retag = |owner: &str| {
        org.moto.hook(
            "/_keywarden/iam",
            &json!({"account_id": org.seeded.account("a"), "op": "tag_user",
                    "user_name": "ci", "tags": {"owner": owner}}),
        );
    };
    let mut told = Vec::new();
    for (day, owner) in [
        (0, "ci@example.com"),
        (1, "ci2@example.com"),
        (2, "ci3@example.com"),
    ] {
        retag(owner);
        let before = mail::sent(&org.moto).len();
        let (_, report, stderr) = org.notify(&at(day, 6), "apply", &[]);
        let done = actions(&report);
        if day < 2 {
            assert!(done.is_empty(), "day {day}: {done:?}\n{stderr}");
        } else {
            assert!(
                done.contains(&("ci".to_owned(), "deactivate".to_owned(), "done".to_owned())),
                "two notices and a final notice two days ago, to whoever owned the key: {done:?}\n{stderr}"
            );
        }
        told.extend(
            mail::sent(&org.moto)[before..]
                .iter()
                .filter(|m| m.to == [owner])
                .map(|m| m.to[0].clone()),
        );
    }
    assert_eq!(
        told,
        ["ci@example.com", "ci2@example.com", "ci3@example.com"],
        "each new owner is told at once"
    );
}

/// Issue 22 item 2: a forged ledger claiming notices nobody sent let the
/// first run deactivate a key; a rolled-back one (saved "in the future")
/// was used as it was. Forged notices count for nothing, and a ledger saved
/// after the run's clock stops enforcement for the run (exit 3, named).
#[test]
fn a_forged_or_rolled_back_ledger_is_no_fair_warning() {
    let org = Org::new();
    let (_, report, stderr) = org.notify(&at(0, 6), "plan", &[]);
    assert!(
        report["findings"].as_array().is_some_and(|f| !f.is_empty()),
        "{stderr}"
    );
    let org_dir = std::fs::read_dir(org.state.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let path = org_dir.join("ledger.json");
    let ledger: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let ci = format!(
        "{}/{}/key-age-overdue",
        org.seeded.account("a"),
        org.seeded.key("a", "ci", 0)
    );
    // Three reminders and a final notice, weeks old, "delivered" by SES.
    let mut forged = ledger.clone();
    let notices = forged["entries"][&ci]["notices"].as_array_mut().unwrap();
    for (d, stage) in [(-30, "reminder"), (-20, "reminder"), (-10, "final")] {
        notices.push(json!({"at": at(d, 6), "stage": stage,
                            "recipients": ["ci@example.com"], "message_id": format!("forged-{d}")}));
    }
    std::fs::write(&path, serde_json::to_vec(&forged).unwrap()).unwrap();
    let (_, report, stderr) = org.notify(&at(1, 6), "apply", &[]);
    assert!(
        !actions(&report)
            .iter()
            .any(|(u, _, o)| u == "ci" && o == "done"),
        "acted on forged notices: {:?}\n{stderr}",
        actions(&report)
    );

    // Rolled back: saved later than this run's clock.
    let mut rolled: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    rolled["updated_at"] = json!(at(30, 0));
    std::fs::write(&path, serde_json::to_vec(&rolled).unwrap()).unwrap();
    let before = org.statuses();
    let (code, report, stderr) = org.notify(&at(20, 6), "apply", &[]);
    assert_eq!(code, 3, "{stderr}");
    assert!(actions(&report).is_empty(), "{:?}", actions(&report));
    let errors = report["errors"].as_array().unwrap();
    assert!(
        errors.iter().any(|e| e["code"] == "LedgerInconsistent"),
        "{errors:?}"
    );
    assert_eq!(org.statuses(), before);
}

#[test]
fn the_scan_role_may_not_write_even_where_the_enforcement_role_exists() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec());
    let (ak, sk) = seeded.scanner();
    let account = seeded.account("a");
    let key = seeded.key("a", "ci", 0);
    let try_as = |role: &str| -> String {
        let out = std::process::Command::new(support::python())
            .args([
                "-c",
                r#"
import sys, boto3, botocore
ep, ak, sk, account, role, key = sys.argv[1:7]
sts = boto3.client("sts", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=ak, aws_secret_access_key=sk)
c = sts.assume_role(RoleArn=f"arn:aws:iam::{account}:role/{role}", RoleSessionName="test")["Credentials"]
iam = boto3.client("iam", endpoint_url=ep, region_name="us-east-1", aws_access_key_id=c["AccessKeyId"],
                   aws_secret_access_key=c["SecretAccessKey"], aws_session_token=c["SessionToken"])
try:
    iam.update_access_key(UserName="ci", AccessKeyId=key, Status="Active")
    print("allowed")
except botocore.exceptions.ClientError as e:
    print(e.response["Error"]["Code"])
"#,
                &moto.endpoint,
                &ak,
                &sk,
                &account,
                role,
                &key,
            ])
            .output()
            .expect("python");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        )
    };
    assert_eq!(
        try_as("KeywardenScanRole"),
        "AccessDenied",
        "the scan role is read-only"
    );
    assert_eq!(
        try_as("KeywardenEnforceRole"),
        "allowed",
        "the enforcement role may"
    );
}
