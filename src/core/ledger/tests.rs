//! The lifecycle rules, one test per rule, with a fixed `now`.

use std::collections::BTreeMap;

use jiff::{SignedDuration, Timestamp};

use super::*;
use crate::core::checks::{CheckId, Severity};
use crate::core::model::{AccessKeyId, AccountId, EmailAddress, KeyStatus};
use crate::core::owners::Owner;
use crate::core::record::{finding_id, How, Lifecycle, Observed, ObservedKey};
use crate::core::report::{
    AccountEntry, AccountStatus, ExemptKey, ExemptionSource, ExemptionStatus, Finding, Report,
    Summary,
};

const ACCT: &str = "111122223333";
const OTHER: &str = "444455556666";
const KEY: &str = "AKIAAAAAAAAAAAAAAAAA";
const NEW_KEY: &str = "AKIABBBBBBBBBBBBBBBB";

fn t0() -> Timestamp {
    "2026-11-01T06:00:00Z".parse().unwrap()
}
fn day(n: i64) -> Timestamp {
    t0() + SignedDuration::from_hours(24 * n)
}
fn id(s: &str) -> AccountId {
    AccountId::parse(s).unwrap()
}
fn finding(account: &str, check: CheckId, due: Option<Timestamp>) -> Finding {
    Finding {
        check,
        severity: check.check().severity,
        account_id: id(account),
        account_name: "prod".into(),
        user_name: "ci".into(),
        user_arn: format!("arn:aws:iam::{account}:user/ci"),
        access_key_id: Some(AccessKeyId::parse(KEY).unwrap()),
        key_status: KeyStatus::Active,
        created_at: Some(day(-200)),
        age_days: Some(200),
        last_used_at: None,
        last_used_service: None,
        due_at: due,
        owner: Owner {
            email: Some(EmailAddress::parse("dev@example.com").unwrap()),
            rule: "user-tag:owner".into(),
            skipped: vec![],
        },
        remediation: String::new(),
        manager: None,
        finding_id: None,
        first_seen: None,
        lifecycle: None,
        notices: None,
        escalated_at: None,
        privilege: None,
        risk: None,
        usage: None,
        replace_with: None,
    }
}
fn account(account: &str, status: AccountStatus) -> AccountEntry {
    AccountEntry {
        account_id: id(account),
        name: "prod".into(),
        email: None,
        alias: None,
        status,
        source: None,
        users: 1,
        keys: 1,
        error: None,
        owner: None,
    }
}
fn report(now: Timestamp, accounts: Vec<AccountEntry>, findings: Vec<Finding>) -> Report {
    Report {
        schema: "keywarden.report/v1".into(),
        evaluated_at: now,
        policy: Default::default(),
        summary: Summary::default(),
        accounts,
        findings,
        exempt: vec![],
        notifications: vec![],
        errors: vec![],
        resolved: vec![],
        actions: vec![],
        actions_waiting: 0,
        unknown_accounts: vec![],
        observed: Observed::new(),
        account_tags_read: BTreeMap::new(),
        privileges_read: BTreeMap::new(),
        usage_read: BTreeMap::new(),
        usage_not_read: 0,
    }
}
fn scanned(account: &str) -> Vec<AccountEntry> {
    vec![super::tests::account(account, AccountStatus::Scanned)]
}
fn keys(list: &[(&str, KeyStatus, i64)]) -> Vec<ObservedKey> {
    list.iter()
        .map(|(k, s, created)| ObservedKey {
            access_key_id: Some(AccessKeyId::parse(k).unwrap()),
            status: *s,
            created_at: Some(day(*created)),
        })
        .collect()
}
fn observed(user_keys: Option<Vec<ObservedKey>>) -> Observed {
    let mut users = BTreeMap::new();
    if let Some(k) = user_keys {
        users.insert("ci".to_owned(), k);
    }
    BTreeMap::from([(id(ACCT), users)])
}
fn cadence() -> Cadence {
    Cadence::default()
}
/// A ledger that saw one finding on day 0.
fn seen_once(check: CheckId) -> (Ledger, String) {
    let mut ledger = Ledger::new("o-test");
    let mut r = report(
        day(0),
        scanned(ACCT),
        vec![finding(ACCT, check, Some(day(0)))],
    );
    reconcile(&mut ledger, &mut r, &Observed::new(), &cadence());
    let fid = r.findings[0].finding_id.clone().unwrap();
    (ledger, fid)
}

#[test]
fn finding_ids_name_account_key_or_root_and_check() {
    let key = AccessKeyId::parse(KEY).unwrap();
    assert_eq!(
        finding_id(&id(ACCT), Some(&key), CheckId::KeyUnused),
        format!("{ACCT}/{KEY}/key-unused")
    );
    assert_eq!(
        finding_id(&id(ACCT), None, CheckId::RootAccessKey),
        format!("{ACCT}/root/root-access-key")
    );
}

#[test]
fn first_sighting_is_new_and_the_next_run_is_open_with_first_seen_kept() {
    let mut ledger = Ledger::new("o-test");
    let mut r = report(
        day(0),
        scanned(ACCT),
        vec![finding(ACCT, CheckId::KeyAgeOverdue, None)],
    );
    let changes = reconcile(&mut ledger, &mut r, &Observed::new(), &cadence());
    assert!(changes.first_run);
    assert_eq!(changes.new.len(), 1);
    assert_eq!(r.findings[0].lifecycle, Some(Lifecycle::New));
    assert_eq!(r.findings[0].first_seen, Some(day(0)));

    let mut r = report(
        day(1),
        scanned(ACCT),
        vec![finding(ACCT, CheckId::KeyAgeOverdue, None)],
    );
    let changes = reconcile(&mut ledger, &mut r, &Observed::new(), &cadence());
    assert!(!changes.first_run);
    assert!(changes.new.is_empty());
    assert_eq!(r.findings[0].lifecycle, Some(Lifecycle::Open));
    assert_eq!(r.findings[0].first_seen, Some(day(0)));
    assert_eq!(ledger.runs.len(), 2);
}

#[test]
fn a_finding_gone_from_a_scanned_account_is_resolved_and_says_how() {
    use crate::core::model::KeyStatus::{Active, Inactive};
    let cases: Vec<(&str, CheckId, Observed, Vec<ExemptKey>, How)> = vec![
        (
            "user deleted",
            CheckId::KeyAgeOverdue,
            observed(None),
            vec![],
            How::KeyDeleted,
        ),
        (
            "key deleted, no other key",
            CheckId::KeyAgeOverdue,
            observed(Some(vec![])),
            vec![],
            How::KeyDeleted,
        ),
        (
            "key deleted, newer key",
            CheckId::KeyAgeOverdue,
            observed(Some(keys(&[(NEW_KEY, Active, 3)]))),
            vec![],
            How::KeyRotated,
        ),
        (
            "key deactivated",
            CheckId::KeyUnused,
            observed(Some(keys(&[(KEY, Inactive, -200)]))),
            vec![],
            How::KeyDeactivated,
        ),
        (
            "key deactivated, newer key",
            CheckId::KeyAgeOverdue,
            observed(Some(keys(&[(KEY, Inactive, -200), (NEW_KEY, Active, 2)]))),
            vec![],
            How::KeyRotated,
        ),
        (
            "key used again",
            CheckId::KeyUnused,
            observed(Some(keys(&[(KEY, Active, -200)]))),
            vec![],
            How::Cleared,
        ),
        (
            "inactive key deleted",
            CheckId::InactiveKeyStale,
            observed(Some(vec![])),
            vec![],
            How::KeyDeleted,
        ),
        (
            "exemption in force",
            CheckId::KeyAgeOverdue,
            observed(Some(keys(&[(KEY, Active, -200)]))),
            vec![ExemptKey {
                account_id: id(ACCT),
                account_name: "prod".into(),
                user_name: "ci".into(),
                user_arn: format!("arn:aws:iam::{ACCT}:user/ci"),
                access_key_id: Some(AccessKeyId::parse(KEY).unwrap()),
                checks: vec![CheckId::KeyAgeOverdue],
                source: ExemptionSource::UserTag,
                status: ExemptionStatus::InForce,
                until: None,
                reason: None,
                age_days: None,
            }],
            How::Exempted,
        ),
    ];
    for (name, check, obs, exempt, want) in cases {
        let (mut ledger, fid) = seen_once(check);
        let mut r = report(day(5), scanned(ACCT), vec![]);
        r.exempt = exempt;
        reconcile(&mut ledger, &mut r, &obs, &cadence());
        assert_eq!(r.resolved.len(), 1, "{name}");
        assert_eq!(r.resolved[0].how, want, "{name}");
        assert_eq!(r.resolved[0].days_open, 5, "{name}");
        assert_eq!(ledger.entries[&fid].how, Some(want), "{name}");
        assert_eq!(ledger.entries[&fid].resolved_at, Some(day(5)), "{name}");
    }
}

#[test]
fn a_warning_that_turns_overdue_is_superseded_not_fixed() {
    let (mut ledger, fid) = seen_once(CheckId::KeyAgeWarning);
    let mut r = report(
        day(20),
        scanned(ACCT),
        vec![finding(ACCT, CheckId::KeyAgeOverdue, Some(day(15)))],
    );
    reconcile(
        &mut ledger,
        &mut r,
        &observed(Some(keys(&[(KEY, KeyStatus::Active, -200)]))),
        &cadence(),
    );
    assert_eq!(ledger.entries[&fid].how, Some(How::Superseded));
    assert_eq!(
        ledger.runs.last().unwrap().resolved,
        0,
        "not a fix in the trend"
    );
    assert_eq!(median_days_to_fix(&ledger, &id(ACCT), day(20), 90), None);
}

#[test]
fn exemptions_are_new_the_run_they_appear_and_ended_the_run_they_stop() {
    let exempt = ExemptKey {
        account_id: id(ACCT),
        account_name: "prod".into(),
        user_name: "ci".into(),
        user_arn: format!("arn:aws:iam::{ACCT}:user/ci"),
        access_key_id: Some(AccessKeyId::parse(KEY).unwrap()),
        checks: vec![CheckId::KeyAgeOverdue],
        source: ExemptionSource::UserTag,
        status: ExemptionStatus::InForce,
        until: None,
        reason: None,
        age_days: None,
    };
    let mut ledger = Ledger::new("o-test");
    reconcile(
        &mut ledger,
        &mut report(day(0), scanned(ACCT), vec![]),
        &Observed::new(),
        &cadence(),
    );
    let mut r = report(day(1), scanned(ACCT), vec![]);
    r.exempt = vec![exempt.clone()];
    let changes = reconcile(&mut ledger, &mut r, &Observed::new(), &cadence());
    assert_eq!(changes.new_exemptions.len(), 1);
    let changes = reconcile(
        &mut ledger,
        &mut report(day(2), scanned(ACCT), vec![]),
        &Observed::new(),
        &cadence(),
    );
    assert_eq!(changes.ended_exemptions.len(), 1);
    assert!(ledger.exemptions.is_empty());
}

#[test]
fn findings_of_failed_or_unscanned_accounts_are_never_resolved() {
    let (mut ledger, fid) = seen_once(CheckId::KeyAgeOverdue);
    let before = ledger.entries[&fid].clone();
    let mut failed = report(day(1), vec![account(ACCT, AccountStatus::Failed)], vec![]);
    let changes = reconcile(&mut ledger, &mut failed, &Observed::new(), &cadence());
    assert!(failed.resolved.is_empty());
    assert_eq!(changes.carried.get(&id(ACCT)), Some(&1));
    assert_eq!(
        ledger.entries[&fid], before,
        "untouched, not even last_seen"
    );

    let mut out_of_scope = report(day(2), scanned(OTHER), vec![]);
    reconcile(&mut ledger, &mut out_of_scope, &Observed::new(), &cadence());
    assert!(out_of_scope.resolved.is_empty());
    assert_eq!(ledger.entries[&fid], before);
}

#[test]
fn a_finding_back_after_resolution_starts_a_new_life() {
    let (mut ledger, fid) = seen_once(CheckId::KeyUnused);
    reconcile(
        &mut ledger,
        &mut report(day(3), scanned(ACCT), vec![]),
        &observed(None),
        &cadence(),
    );
    let mut r = report(
        day(9),
        scanned(ACCT),
        vec![finding(ACCT, CheckId::KeyUnused, Some(day(9)))],
    );
    let changes = reconcile(&mut ledger, &mut r, &Observed::new(), &cadence());
    assert_eq!(changes.new, vec![fid.clone()]);
    assert_eq!(ledger.entries[&fid].first_seen, day(9));
    assert!(ledger.entries[&fid].is_open());
}

#[test]
fn resolved_entries_are_dropped_after_400_days() {
    let (mut ledger, fid) = seen_once(CheckId::KeyUnused);
    reconcile(
        &mut ledger,
        &mut report(day(1), scanned(ACCT), vec![]),
        &observed(None),
        &cadence(),
    );
    reconcile(
        &mut ledger,
        &mut report(day(401), scanned(ACCT), vec![]),
        &observed(None),
        &cadence(),
    );
    assert!(ledger.entries.contains_key(&fid));
    reconcile(
        &mut ledger,
        &mut report(day(402), scanned(ACCT), vec![]),
        &observed(None),
        &cadence(),
    );
    assert!(!ledger.entries.contains_key(&fid));
}

fn entry(severity: Severity, notices: &[(i64, Stage)]) -> Entry {
    Entry {
        account_id: id(ACCT),
        account_name: "prod".into(),
        user_name: "ci".into(),
        access_key_id: None,
        check: CheckId::KeyUnused,
        severity,
        first_seen: day(0),
        last_seen: day(0),
        owner: Some("dev@example.com".into()),
        due_at: Some(day(0)),
        notices: notices
            .iter()
            .map(|(d, stage)| Notice {
                at: day(*d),
                stage: *stage,
                recipients: vec!["dev@example.com".into()],
                message_id: None,
                key_owner: None,
            })
            .collect(),
        escalated_at: None,
        resolved_at: None,
        how: None,
        enforced_at: None,
    }
}

#[test]
fn owners_are_reminded_at_the_cadence_of_the_severity_and_never_twice_a_day() {
    use crate::core::checks::Severity::*;
    let told = [(0, Stage::First)];
    let cases = [
        (Medium, &[][..], 0, Some(Stage::First)),
        (Medium, &told[..], 0, None),
        (Critical, &told[..], 0, None),
        (Critical, &told[..], 1, Some(Stage::Reminder)),
        (High, &told[..], 2, None),
        (High, &told[..], 3, Some(Stage::Reminder)),
        (Medium, &told[..], 6, None),
        (Medium, &told[..], 7, Some(Stage::Reminder)),
        (Low, &told[..], 7, Some(Stage::Reminder)),
    ];
    for (severity, notices, on_day, want) in cases {
        // Late in the day: calendar days count, not 24-hour spans.
        let now = day(on_day) + SignedDuration::from_hours(17);
        assert_eq!(
            owner_due(&entry(severity, notices), now, &cadence()),
            want,
            "{severity:?} on day {on_day}"
        );
    }
    // A notice to someone else (the account owner) does not count as the owner's.
    let mut e = entry(Medium, &told);
    e.notices[0].recipients = vec!["boss@example.com".into()];
    assert_eq!(owner_due(&e, day(1), &cadence()), Some(Stage::First));
}

#[test]
fn escalation_waits_for_escalate_after_days_past_due_and_first_sighting() {
    let mut e = entry(Severity::Medium, &[]);
    e.due_at = Some(day(-100));
    assert!(
        !escalates(&e, day(13), &cadence()),
        "found long overdue: the owner still gets 14 days"
    );
    assert!(escalates(&e, day(14), &cadence()));
    e.due_at = Some(day(10));
    assert!(!escalates(&e, day(23), &cadence()));
    assert!(escalates(&e, day(24), &cadence()));
    let low = entry(Severity::Low, &[]);
    assert!(
        !escalates(&low, day(365), &cadence()),
        "low findings never escalate"
    );
}

#[test]
fn account_owners_hear_of_new_findings_and_escalations_only() {
    let mut e = entry(Severity::High, &[]);
    assert_eq!(account_owner_due(&e), Some(Stage::First));
    e = entry(Severity::High, &[(0, Stage::First)]);
    assert_eq!(account_owner_due(&e), None);
    e.escalated_at = Some(day(14));
    assert_eq!(account_owner_due(&e), Some(Stage::Escalation));
    assert_eq!(owner_due(&e, day(14), &cadence()), Some(Stage::Escalation));
    e.notices.push(Notice {
        at: day(14),
        stage: Stage::Escalation,
        recipients: vec!["boss@example.com".into()],
        message_id: None,
        key_owner: None,
    });
    assert_eq!(account_owner_due(&e), None);
}

#[test]
fn ledgers_of_unknown_schema_or_not_json_or_another_org_are_refused() {
    let good = Ledger::new("o-test").to_json();
    assert!(Ledger::parse(&good, "o-test").is_ok());
    assert!(matches!(
        Ledger::parse(b"{not json", "o-test"),
        Err(LedgerError::Parse(_))
    ));
    let v2 = br#"{"schema":"keywarden.ledger/v2","organization":"o-test"}"#;
    assert!(matches!(
        Ledger::parse(v2, "o-test"),
        Err(LedgerError::Schema { .. })
    ));
    assert!(matches!(
        Ledger::parse(b"[]", "o-test"),
        Err(LedgerError::Parse(_))
    ));
    assert!(matches!(
        Ledger::parse(&good, "o-other"),
        Err(LedgerError::Organization { .. })
    ));
}

#[test]
fn median_days_to_fix_covers_the_window_only() {
    let mut ledger = Ledger::new("o-test");
    for (i, (first, resolved)) in [(0, 4), (0, 10), (0, 30), (-300, -200)].iter().enumerate() {
        let mut e = entry(Severity::High, &[]);
        e.first_seen = day(*first);
        e.resolved_at = Some(day(*resolved));
        ledger.entries.insert(i.to_string(), e);
    }
    assert_eq!(
        median_days_to_fix(&ledger, &id(ACCT), day(30), 90),
        Some(10)
    );
    assert_eq!(median_days_to_fix(&ledger, &id(OTHER), day(30), 90), None);
}
