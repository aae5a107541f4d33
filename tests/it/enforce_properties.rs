//! A property test over random ledgers and findings: enforcement never
//! selects a key that fails any precondition, never more than the cap, never
//! a key twice, and takes the oldest first. The invariants are checked here
//! from the facts, not by calling the rule that selected them. The ledgers
//! are hostile too (issue 22): notices dated after the run, notices no run
//! recorded, notices never delivered through SES, and owners that changed
//! since the notices went out.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use keywarden::core::checks::CheckId;
use keywarden::core::enforce::{select, EnforcePolicy, Mode};
use keywarden::core::ledger::{Entry, Ledger, Notice, RunTotals, Stage};
use keywarden::core::model::{AccessKeyId, AccountId, KeyStatus};
use keywarden::core::owners::Owner;
use keywarden::core::record::Action;
use keywarden::core::record::{finding_id, ObservedKey};
use keywarden::core::report::{
    ExemptKey, ExemptionSource, ExemptionStatus, Finding, Report, Summary,
};
use proptest::prelude::*;

fn day(n: i64) -> Timestamp {
    "2026-06-01T06:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * n)
}

const CHECKS: [CheckId; 6] = [
    CheckId::KeyAgeOverdue,
    CheckId::KeyUnused,
    CheckId::InactiveKeyStale,
    CheckId::KeyAgeWarning,
    CheckId::TwoActiveKeys,
    CheckId::RootAccessKey,
];

/// One random finding with its ledger entry and what the scan saw.
#[derive(Debug, Clone)]
struct Case {
    key: u8,
    account: u8,
    check: usize,
    root: bool,
    created: i64,
    due: i64,
    first_seen: i64,
    /// (day, final, recorded by a run of the ledger, delivered through SES,
    /// to the key's owner of its day)
    notices: Vec<(i64, bool, bool, bool, bool)>,
    /// The owner tag changed since: the current owner is someone else.
    churned: bool,
    seen: Option<(bool, i64)>,
    exempt: bool,
}

fn case() -> impl Strategy<Value = Case> {
    (
        (
            0u8..12,
            0u8..3,
            0usize..CHECKS.len(),
            prop::bool::weighted(0.1),
        ),
        (-400i64..0, -100i64..100, -100i64..100),
        prop::collection::vec(
            (
                -100i64..100,
                prop::bool::ANY,
                prop::bool::weighted(0.85),
                prop::bool::weighted(0.85),
                prop::bool::weighted(0.85),
            ),
            0..6,
        ),
        prop::option::weighted(0.9, (prop::bool::weighted(0.8), prop::bool::weighted(0.9))),
        (prop::bool::weighted(0.15), prop::bool::weighted(0.3)),
    )
        .prop_map(
            |(
                (key, account, check, root),
                (created, due, first_seen),
                notices,
                seen,
                (exempt, churned),
            )| {
                Case {
                    key,
                    account,
                    check,
                    root,
                    created,
                    due,
                    first_seen,
                    notices,
                    seen: seen
                        .map(|(active, same)| (active, if same { created } else { created + 1 })),
                    exempt,
                    churned,
                }
            },
        )
}

fn key_id(n: u8) -> AccessKeyId {
    AccessKeyId::parse(&format!("AKIATEST{n:012}")).unwrap()
}
fn account_id(n: u8) -> AccountId {
    AccountId::parse(&format!("{:012}", 100000000000u64 + u64::from(n))).unwrap()
}

fn build(cases: &[Case], now: Timestamp) -> (Report, Ledger) {
    let mut report = Report {
        schema: "keywarden.report/v1".into(),
        evaluated_at: now,
        policy: Default::default(),
        summary: Summary::default(),
        accounts: vec![],
        findings: vec![],
        exempt: vec![],
        notifications: vec![],
        errors: vec![],
        resolved: vec![],
        actions: vec![],
        actions_waiting: 0,
        unknown_accounts: vec![],
        observed: BTreeMap::new(),
        account_tags_read: BTreeMap::new(),
        privileges_read: Default::default(),
        usage_read: Default::default(),
        usage_not_read: 0,
    };
    let mut ledger = Ledger::new("o-prop");
    // One key has one creation date and one user, whatever the generator drew.
    let mut first_created: BTreeMap<(u8, u8), i64> = BTreeMap::new();
    for c in cases {
        let check = CHECKS[c.check];
        let key = (!c.root).then(|| key_id(c.key));
        let account = account_id(c.account);
        if ledger
            .entries
            .contains_key(&finding_id(&account, key.as_ref(), check))
        {
            continue;
        }
        let mut c = c.clone();
        let created = *first_created.entry((c.account, c.key)).or_insert(c.created);
        if let Some((_, seen)) = &mut c.seen {
            *seen += created - c.created;
        }
        c.created = created;
        let c = &c;
        let user = format!("user-{}", c.key);
        let f = Finding {
            check,
            severity: check.check().severity,
            account_id: account.clone(),
            account_name: "acct".into(),
            user_name: user.clone(),
            user_arn: format!("arn:aws:iam::{account}:user/{user}"),
            access_key_id: key.clone(),
            key_status: KeyStatus::Active,
            created_at: Some(day(c.created)),
            age_days: None,
            last_used_at: None,
            last_used_service: None,
            due_at: Some(day(c.due)),
            owner: Owner {
                email: None,
                rule: "unresolved".into(),
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
        };
        let id = finding_id(&account, key.as_ref(), check);
        ledger.entries.insert(
            id,
            Entry {
                account_id: account.clone(),
                account_name: "acct".into(),
                user_name: user.clone(),
                access_key_id: key.clone(),
                check,
                severity: f.severity,
                first_seen: day(c.first_seen),
                last_seen: now,
                owner: Some(
                    if c.churned {
                        "new@example.com"
                    } else {
                        "old@example.com"
                    }
                    .into(),
                ),
                due_at: Some(day(c.due)),
                notices: c
                    .notices
                    .iter()
                    .map(|(d, is_final, _, sent, to_owner)| Notice {
                        at: day(*d),
                        stage: if *is_final {
                            Stage::Final
                        } else {
                            Stage::Reminder
                        },
                        recipients: vec![if *to_owner {
                            "old@example.com"
                        } else {
                            "acct-owner@example.com"
                        }
                        .into()],
                        message_id: sent.then(|| format!("ses-{d}")),
                        key_owner: Some(*to_owner),
                    })
                    .collect(),
                escalated_at: None,
                resolved_at: None,
                how: None,
                enforced_at: None,
            },
        );
        for (d, _, recorded, _, _) in &c.notices {
            if *recorded && !ledger.runs.iter().any(|r| r.at == day(*d)) {
                ledger.runs.push(RunTotals {
                    at: day(*d),
                    open: 0,
                    overdue: 0,
                    new: 0,
                    resolved: 0,
                    accounts_scanned: 0,
                    accounts_failed: 0,
                });
            }
        }
        if let Some((active, created)) = c.seen {
            report
                .observed
                .entry(account.clone())
                .or_default()
                .entry(user.clone())
                .or_default()
                .push(ObservedKey {
                    access_key_id: key.clone(),
                    status: if active {
                        KeyStatus::Active
                    } else {
                        KeyStatus::Inactive
                    },
                    created_at: Some(day(created)),
                });
        }
        if c.exempt {
            report.exempt.push(ExemptKey {
                account_id: account.clone(),
                account_name: "acct".into(),
                user_name: user.clone(),
                user_arn: f.user_arn.clone(),
                access_key_id: key.clone(),
                checks: vec![check],
                source: ExemptionSource::UserTag,
                status: ExemptionStatus::InForce,
                until: None,
                reason: None,
                age_days: None,
            });
        }
        report.findings.push(f);
    }
    (report, ledger)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn no_key_failing_a_precondition_is_ever_selected(
        cases in prop::collection::vec(case(), 0..40),
        cap in 1u32..6,
        deletion in prop::option::of(1u32..60),
        callers in 0u8..12,
    ) {
        let now = day(0);
        let policy = EnforcePolicy {
            mode: Mode::Apply,
            deactivate_after_days: 30,
            min_notices: 3,
            final_notice_days: 7,
            max_per_day: cap,
            delete_inactive_after_days: deletion,
        };
        let (report, ledger) = build(&cases, now);
        let callers_key = key_id(callers);
        let sel = select(&report, &ledger, &policy, Some(&callers_key));
        prop_assert!(sel.selected.len() <= cap as usize);
        let mut keys = BTreeSet::new();
        for s in &sel.selected {
            prop_assert!(keys.insert((s.account_id.clone(), s.access_key_id.clone())), "a key twice");
            prop_assert_ne!(&s.access_key_id, &callers_key, "the caller's own key");
            let e = &ledger.entries[&s.finding_id];
            prop_assert!(e.access_key_id.is_some(), "a root key");
            let exempt = report.exempt.iter().any(|x| {
                x.account_id == s.account_id && x.access_key_id.as_ref() == Some(&s.access_key_id)
                    && x.user_name == s.user_name
            });
            prop_assert!(!exempt, "an exempt key");
            // Only notices a recorded run delivered through SES to the key's
            // owner of the day, not dated after now, are warnings.
            let warnings: Vec<&Notice> = e
                .notices
                .iter()
                .filter(|n| {
                    n.at <= now
                        && n.message_id.is_some()
                        && n.key_owner == Some(true)
                        && ledger.runs.iter().any(|r| r.at == n.at)
                })
                .collect();
            prop_assert!(warnings.len() >= 3, "too few notices");
            let final_at = warnings.iter().filter(|n| n.stage == Stage::Final).map(|n| n.at).min();
            prop_assert!(final_at.is_some_and(|t| now.duration_since(t) >= SignedDuration::from_hours(24 * 7)), "final notice");
            let seen = report.observed[&s.account_id][&s.user_name]
                .iter()
                .find(|k| k.access_key_id.as_ref() == Some(&s.access_key_id))
                .expect("re-read this run");
            let f = report.findings.iter().find(|f| {
                f.account_id == s.account_id && f.access_key_id.as_ref() == Some(&s.access_key_id) && f.check == e.check
            }).unwrap();
            prop_assert_eq!(seen.created_at, f.created_at, "same creation date");
            match s.action {
                Action::Deactivate => {
                    prop_assert!(matches!(e.check, CheckId::KeyAgeOverdue | CheckId::KeyUnused));
                    prop_assert_eq!(seen.status, KeyStatus::Active);
                    prop_assert!(now.duration_since(e.due_at.unwrap()) > SignedDuration::from_hours(24 * 30), "not past due long enough");
                }
                Action::Delete => {
                    prop_assert_eq!(e.check, CheckId::InactiveKeyStale);
                    prop_assert_eq!(seen.status, KeyStatus::Inactive);
                    let days = deletion.expect("deletion opted in");
                    prop_assert!(now.duration_since(e.first_seen) >= SignedDuration::from_hours(24 * i64::from(days)));
                }
            }
        }
        // Oldest first, and nothing older left waiting.
        for w in sel.selected.windows(2) {
            prop_assert!(w[0].created_at <= w[1].created_at);
        }
        prop_assert!(sel.waiting == 0 || sel.selected.len() == cap as usize, "waiting only past the cap");
    }
}

#[test]
fn the_cap_takes_the_oldest_keys_and_the_rest_wait() {
    let qualifying = |key: u8, created: i64| Case {
        key,
        account: 0,
        check: 0,
        root: false,
        created,
        due: -60,
        first_seen: -60,
        notices: vec![
            (-50, false, true, true, true),
            (-40, false, true, true, true),
            (-20, true, true, true, true),
        ],
        seen: Some((true, created)),
        exempt: false,
        churned: true,
    };
    let cases = vec![
        qualifying(1, -200),
        qualifying(2, -400),
        qualifying(3, -300),
        qualifying(4, -100),
    ];
    let (report, ledger) = build(&cases, day(0));
    let policy = EnforcePolicy {
        mode: Mode::Apply,
        max_per_day: 2,
        ..EnforcePolicy::default()
    };
    let sel = select(&report, &ledger, &policy, None);
    let picked: Vec<AccessKeyId> = sel
        .selected
        .iter()
        .map(|s| s.access_key_id.clone())
        .collect();
    assert_eq!(picked, [key_id(2), key_id(3)], "oldest first");
    assert_eq!(sel.waiting, 2);
    // Issue 20: a user AWS found exposed is for a human: none of its keys
    // is acted on, however eligible (the next ones move up).
    let mut exposed = report.clone();
    let mut f = report
        .findings
        .iter()
        .find(|f| f.access_key_id.as_ref() == Some(&key_id(2)))
        .unwrap()
        .clone();
    f.check = CheckId::KeyExposed;
    f.severity = CheckId::KeyExposed.check().severity;
    exposed.findings.push(f);
    let picked: Vec<AccessKeyId> = select(&exposed, &ledger, &policy, None)
        .selected
        .iter()
        .map(|s| s.access_key_id.clone())
        .collect();
    assert_eq!(picked, [key_id(3), key_id(1)]);
    // The same facts with a key too recently told are left out, not the next one instead.
    let sel = select(
        &report,
        &ledger,
        &EnforcePolicy {
            final_notice_days: 30,
            ..policy
        },
        None,
    );
    assert!(sel.selected.is_empty());
}

/// Issue 22 item 2: a ledger that claimed three notices for a key whose
/// owner was never mailed let the first run deactivate it. The same facts
/// with the notices forged (no run recorded them), dated in the future, or
/// never delivered through SES select nothing.
#[test]
fn forged_future_or_undelivered_notices_are_no_warning() {
    let qualifying = |notices: Vec<(i64, bool, bool, bool, bool)>| Case {
        key: 1,
        account: 0,
        check: 0,
        root: false,
        created: -200,
        due: -60,
        first_seen: -60,
        notices,
        seen: Some((true, -200)),
        exempt: false,
        churned: false,
    };
    let policy = EnforcePolicy {
        mode: Mode::Apply,
        ..EnforcePolicy::default()
    };
    let fair = vec![
        (-50, false, true, true, true),
        (-40, false, true, true, true),
        (-20, true, true, true, true),
    ];
    let (report, ledger) = build(&[qualifying(fair.clone())], day(0));
    assert_eq!(
        select(&report, &ledger, &policy, None).selected.len(),
        1,
        "the control"
    );
    for (what, forge) in [
        (
            "no run recorded them",
            (|n: &mut (i64, bool, bool, bool, bool)| n.2 = false) as fn(&mut _),
        ),
        ("never delivered through SES", |n| n.3 = false),
        ("to someone else than the key's owner", |n| n.4 = false),
        ("dated after the run", |n| n.0 += 100),
    ] {
        let mut notices = fair.clone();
        notices.iter_mut().for_each(forge);
        let (report, ledger) = build(&[qualifying(notices)], day(0));
        assert!(
            select(&report, &ledger, &policy, None).selected.is_empty(),
            "{what}"
        );
    }
}
