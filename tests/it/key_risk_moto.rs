//! Which keys matter (issue 20), end to end: the real binary against moto
//! with AWS's managed policies loaded (`MOTO_IAM_LOAD_MANAGED_POLICIES`),
//! the shipped member-role template and IAM policy enforcement on.
//! `key-exposed`: a user AWS quarantined (the policy attached directly, or
//! through a group) has every active key flagged critical, an exemption does
//! not silence it, and its owner is told to rotate every key. `privilege`:
//! what each flagged key can do, from its user's policies, with evidence,
//! and one risk order over every finding.

use crate::support::{run, Moto, Seeded, NOW};
use serde_json::{json, Value};

const V2: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV2";
const V3: &str = "arn:aws:iam::aws:policy/AWSCompromisedKeyQuarantineV3";

fn moto() -> Moto {
    Moto::start_with(&[("MOTO_IAM_LOAD_MANAGED_POLICIES", "true")])
}

fn seed(moto: &Moto) -> Seeded {
    let fresh = json!([{"age_days": 5, "last_used_days": 1}]);
    moto.seed(&json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true,
             "users": [{"name": "admin", "tags": {"owner": "admin@example.com"}, "keys": fresh}]},
            {"name": "prod", "email": "prod@example.com", "scan_role": "stackset",
             "groups": [{"name": "quarantined-ops", "policies": [V3]}],
             "users": [
                 {"name": "leaky", "tags": {"owner": "leaky@example.com"}, "policies": [V2],
                  "keys": [{"age_days": 5, "last_used_days": 1}, {"age_days": 20, "last_used_days": 0}]},
                 {"name": "grouped", "tags": {"owner": "grouped@example.com"},
                  "groups": ["quarantined-ops"], "keys": fresh},
                 {"name": "vendor", "policies": [V3],
                  "tags": {"owner": "vendor@example.com",
                           "keywarden:exempt": "${now+60d} vendor integration (SEC-1)"},
                  "keys": [{"age_days": 200, "last_used_days": 1}]},
                 {"name": "clean", "tags": {"owner": "clean@example.com"}, "keys": fresh}
             ]}
        ]
    }))
}

fn scan(moto: &Moto, seeded: &Seeded) -> (i32, Value, String) {
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto.keywarden((&ak, &sk)).args([
        "scan",
        "--format",
        "json",
        "--no-state",
        "--now",
        NOW,
    ]));
    let report =
        serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}\n{stderr}"));
    (code, report, stderr)
}

/// `notify` into an outbox: every message as (recipient, text body), in
/// file order (the digest last).
fn notify_outbox(moto: &Moto, seeded: &Seeded) -> Vec<(String, String)> {
    let (ak, sk) = seeded.scanner();
    let outbox = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(moto
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
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    crate::mail::outbox(outbox.path())
}

#[test]
fn every_active_key_of_a_quarantined_user_is_exposed_whatever_the_exemption_says() {
    let moto = moto();
    let seeded = seed(&moto);
    let (code, report, stderr) = scan(&moto, &seeded);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["summary"]["accounts_failed"], 0, "{report}");
    let exposed: Vec<(String, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["check"] == "key-exposed")
        .map(|f| {
            assert_eq!(f["severity"], "critical");
            (
                f["user_name"].as_str().unwrap().to_owned(),
                f["access_key_id"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let mut expected = vec![
        ("grouped".to_owned(), seeded.key("prod", "grouped", 0)),
        ("leaky".to_owned(), seeded.key("prod", "leaky", 0)),
        ("leaky".to_owned(), seeded.key("prod", "leaky", 1)),
        ("vendor".to_owned(), seeded.key("prod", "vendor", 0)),
    ];
    expected.sort();
    let mut got = exposed.clone();
    got.sort();
    assert_eq!(
        got, expected,
        "both of leaky's keys, grouped's through its group, vendor's despite the exemption"
    );
    // The exemption silences vendor's overdue key, not its exposure; it is still listed.
    let vendor: Vec<&Value> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["user_name"] == "vendor")
        .collect();
    assert_eq!(vendor.len(), 1, "only key-exposed: {vendor:?}");
    let listed = report["exempt"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["user_name"] == "vendor")
        .expect("vendor is listed as exempt");
    assert_eq!(listed["checks"], json!(["key-exposed", "key-age-overdue"]));
    // A clean user and the management account: nothing.
    assert!(report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .all(|f| f["user_name"] != "clean" && f["user_name"] != "admin"));
}

#[test]
fn the_owner_is_told_to_rotate_every_key_and_the_digest_opens_with_the_exposure() {
    let moto = moto();
    let seeded = seed(&moto);
    let mail = notify_outbox(&moto, &seeded);
    let leaky = mail
        .iter()
        .find(|(to, _)| to == "leaky@example.com")
        .expect("leaky is mailed");
    assert!(
        leaky.1.contains("rotate every key of this user now"),
        "{}",
        leaky.1
    );
    assert!(
        leaky.1.contains("keep the quarantine policy attached"),
        "{}",
        leaky.1
    );
    let digest = &mail.last().unwrap().1;
    let exposed = digest
        .find("key-exposed")
        .expect("the digest names the exposure");
    let overdue = digest.find("key-age-overdue").unwrap_or(usize::MAX);
    assert!(exposed < overdue, "exposure first:\n{digest}");
    assert!(
        digest.contains("(EXEMPT BUT EXPOSED: AWS quarantined this user, key-exposed stands): vendor integration (SEC-1) (user tag; suppresses key-age-overdue)"),
        "{digest}"
    );
}

const ADMIN: &str = "arn:aws:iam::aws:policy/AdministratorAccess";

fn allow(action: Value) -> Value {
    json!({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": action, "Resource": "*"}]})
}

fn seed_privileges(moto: &Moto) -> Seeded {
    let old = |name: &str, extra: Value| {
        let mut u = json!({"name": name, "tags": {"owner": format!("{name}@example.com")},
                           "keys": [{"age_days": 120, "last_used_days": 1}]});
        u.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        u
    };
    moto.seed(&json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "root@example.com", "management": true},
            {"name": "prod", "email": "prod@example.com", "scan_role": "stackset",
             "groups": [{"name": "admins", "policies": [ADMIN]}],
             "users": [
                 old("grp-admin", json!({"groups": ["admins"]})),
                 old("star", json!({"inline": {"all": allow(json!("*"))}})),
                 old("deployer", json!({"inline": {"deploy": allow(json!(["iam:PassRole", "lambda:CreateFunction"]))}})),
                 old("reader", json!({"inline": {"read": allow(json!(["s3:Get*", "s3:List*"]))}})),
                 old("power", json!({"inline": {"most": {"Version": "2012-10-17", "Statement": [
                     {"Effect": "Allow", "NotAction": ["iam:*", "organizations:*", "lambda:*", "glue:*"], "Resource": "*"}]}}})),
                 old("denied", json!({"inline": {
                     "all": allow(json!("*")),
                     "guard": {"Version": "2012-10-17", "Statement": [{"Effect": "Deny", "Action": "*", "Resource": "*"}]}}}))
             ]},
            // A member role from before this release: it may not read policies.
            {"name": "old-role", "email": "old@example.com", "scan_role": "stackset",
             "drop_actions": ["iam:GetUser", "iam:ListAttachedUserPolicies", "iam:ListUserPolicies",
                              "iam:GetUserPolicy", "iam:ListGroupsForUser", "iam:ListAttachedGroupPolicies",
                              "iam:ListGroupPolicies", "iam:GetGroupPolicy", "iam:GetPolicy", "iam:GetPolicyVersion"],
             "users": [old("legacy", json!({"inline": {"all": allow(json!("*"))}}))]}
        ]
    }))
}

#[test]
fn each_flagged_key_says_what_it_can_do_with_evidence_and_the_findings_are_ranked() {
    let moto = moto();
    let seeded = seed_privileges(&moto);
    let (code, report, stderr) = scan(&moto, &seeded);
    assert_eq!(code, 0, "{stderr}\n{report}");
    assert_eq!(
        report["summary"]["accounts_failed"], 0,
        "no account is lost: {report}"
    );
    let by_user = |u: &str| -> Value {
        report["findings"]
            .as_array()
            .unwrap()
            .iter()
            .find(|f| f["user_name"] == u && f["check"] == "key-age-overdue")
            .unwrap_or_else(|| panic!("no overdue finding of {u}: {report}"))
            .clone()
    };
    let expect = [
        (
            "grp-admin",
            "admin",
            "AdministratorAccess attached to group admins allows every action on every resource",
        ),
        (
            "star",
            "admin",
            "inline policy all allows every action on every resource",
        ),
        (
            "deployer",
            "escalation",
            "inline policy deploy allows iam:PassRole and lambda:CreateFunction on *",
        ),
        ("power", "write", "inline policy most allows "),
        (
            "reader",
            "read",
            "inline policy read allows only read and list actions",
        ),
        ("denied", "none", "no policy allows it any action"),
        (
            "legacy",
            "unknown",
            "its policies could not be read (iam:GetUser: AccessDenied)",
        ),
    ];
    for (user, class, evidence) in expect {
        let f = by_user(user);
        assert_eq!(f["privilege"]["class"], class, "{user}: {f}");
        let ev = f["privilege"]["evidence"].to_string();
        assert!(ev.contains(evidence), "{user}: {ev}");
        assert_eq!(f["privilege"]["conditional"], false);
    }
    // One risk order: overdue keys that can do everything, then the rest by
    // what they can do (the unknown one between write and read).
    let mut ranked: Vec<(u64, String)> = report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["risk"]["rank"].as_u64().unwrap(),
                f["user_name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    ranked.sort();
    let order: Vec<&str> = ranked.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(
        order,
        [
            "grp-admin",
            "star",
            "deployer",
            "power",
            "legacy",
            "reader",
            "denied"
        ],
        "{report}"
    );
    assert_eq!(ranked[0].0, 1);
    let top = by_user("grp-admin");
    assert_eq!(
        top["risk"]["reason"],
        "overdue for rotation (30 days past due), and it can do everything (administrator)"
    );
}

#[test]
fn the_digest_opens_with_fix_these_first_and_cards_say_what_the_key_can_do() {
    let moto = moto();
    let seeded = seed_privileges(&moto);
    let mail = notify_outbox(&moto, &seeded);
    let digest = &mail.last().unwrap().1;
    let fix = digest
        .find("FIX THESE FIRST")
        .expect("the digest has Fix these first");
    let findings = digest.find("FINDINGS").unwrap();
    assert!(fix < findings, "it comes before the counts:\n{digest}");
    assert!(
        digest.contains("1. key-age-overdue [high, admin]: prod ("),
        "{digest}"
    );
    assert!(digest.contains("grp-admin"), "{digest}");
    assert!(digest.contains("Why: overdue for rotation (30 days past due), and it can do everything (administrator)"), "{digest}");
    let deployer = &mail
        .iter()
        .find(|(to, _)| to == "deployer@example.com")
        .expect("deployer is mailed")
        .1;
    assert!(deployer.contains(
        "What this key can do: give itself more rights (privilege escalation): inline policy deploy allows iam:PassRole and lambda:CreateFunction on *"
    ), "{deployer}");
}

/// What `reader` (prod) can do, and when it was read, in a `notify` with a
/// ledger as of `days` after [`NOW`].
fn reader_privilege(moto: &Moto, seeded: &Seeded, state: &std::path::Path, days: i64) -> Value {
    let (ak, sk) = seeded.scanner();
    let now = at(days);
    let (code, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["notify", "--format", "json", "--now", &now, "--outbox"])
        .arg(state.join("outbox"))
        .arg("--state")
        .arg(state)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com"));
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    report["findings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["user_name"] == "reader")
        .unwrap_or_else(|| panic!("reader has a finding: {report}"))["privilege"]
        .clone()
}

fn at(days: i64) -> String {
    let t: jiff::Timestamp = NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

#[test]
fn what_a_user_can_do_is_remembered_and_read_again_on_the_accounts_refresh_day() {
    let moto = moto();
    let seeded = seed_privileges(&moto);
    let state = tempfile::tempdir().unwrap();
    let (quiet, refresh) =
        crate::cycle::quiet_and_refresh_days(&seeded.account("prod"), |d| at(d).parse().unwrap());

    let first = reader_privilege(&moto, &seeded, state.path(), 0);
    assert_eq!(first["class"], "read", "{first}");
    assert_eq!(first["read_at"], at(0), "{first}");

    // The user is made an administrator behind the scanner's back.
    moto.hook(
        "/_keywarden/iam",
        &json!({"account_id": seeded.account("prod"), "op": "attach_user_policy",
                "user_name": "reader", "policy_arn": ADMIN}),
    );
    let remembered = reader_privilege(&moto, &seeded, state.path(), quiet);
    assert_eq!(
        remembered, first,
        "day {quiet}: what the ledger remembers, read on day 0"
    );
    let reread = reader_privilege(&moto, &seeded, state.path(), refresh);
    assert_eq!(reread["class"], "admin", "day {refresh}: {reread}");
    assert_eq!(reread["read_at"], at(refresh));
    assert!(
        reread["evidence"]
            .to_string()
            .contains("AdministratorAccess attached to the user"),
        "{reread}"
    );
}
