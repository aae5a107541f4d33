//! Opt-in enforcement: which keys may be deactivated (or, separately opted
//! in, deleted) this run, and when the others will be. Every precondition is
//! its own pure rule; a key is selected only when all of them hold, and never
//! a root key, an exempt key or the caller's own key. At most `max_per_day`
//! keys are selected, oldest first. Pure: the ledger, the report and `now`
//! are arguments; acting is `crate::enforce`'s job.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::checks::CheckId;
use super::ledger::{Entry, Ledger, Stage};
use super::model::{add_days, days_between, AccessKeyId, AccountId, KeyStatus};
use super::record::{finding_id, Action};
use super::report::{ExemptionStatus, Finding, Report};

/// `enforce`: off, plan (say what would be done), apply.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    Off,
    Plan,
    Apply,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Off => "off",
            Mode::Plan => "plan",
            Mode::Apply => "apply",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" => Some(Mode::Off),
            "plan" => Some(Mode::Plan),
            "apply" => Some(Mode::Apply),
            _ => None,
        }
    }
}

/// The enforcement settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnforcePolicy {
    pub mode: Mode,
    /// Whole days past due before a key may be deactivated (strictly more).
    pub deactivate_after_days: u32,
    /// Delivered notices the ledger must hold for the finding.
    pub min_notices: u32,
    /// The final notice (naming the date) went out at least this long before.
    pub final_notice_days: u32,
    /// Blast-radius cap per UTC day, counted from the ledger across runs
    /// and retries; the rest wait for the next day.
    pub max_per_day: u32,
    /// Delete keys inactive (as `inactive-key-stale`) this long; `None`: never.
    pub delete_inactive_after_days: Option<u32>,
}

impl Default for EnforcePolicy {
    fn default() -> Self {
        Self {
            mode: Mode::Off,
            deactivate_after_days: 30,
            min_notices: 3,
            final_notice_days: 7,
            max_per_day: 25,
            delete_inactive_after_days: None,
        }
    }
}

/// Why a key is not acted on (yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    Off,
    NotEnforceableCheck,
    RootKey,
    Exempt,
    CallersOwnKey,
    NotLongEnoughPastDue,
    TooFewNotices,
    NoFinalNotice,
    FinalNoticeTooRecent,
    NotReReadThisRun,
    NotActive,
    CreationDateChanged,
    NotLongEnoughInactive,
    DeletionOff,
}

/// The action a finding's check calls for, if any.
pub fn action_for(check: CheckId) -> Option<Action> {
    match check {
        CheckId::KeyAgeOverdue | CheckId::KeyUnused => Some(Action::Deactivate),
        CheckId::InactiveKeyStale => Some(Action::Delete),
        _ => None,
    }
}

/// The earliest instant the action is allowed by the time rules alone:
/// more than `deactivate_after_days` past due (deactivation), or inactive
/// and stale for `delete_inactive_after_days` since keywarden first saw it
/// (deletion).
pub fn eligible_at(entry: &Entry, policy: &EnforcePolicy) -> Option<Timestamp> {
    match action_for(entry.check)? {
        Action::Deactivate => {
            // "More than N days": the day after N whole days have passed.
            Some(add_days(
                entry.due_at.unwrap_or(entry.first_seen),
                policy.deactivate_after_days + 1,
            ))
        }
        Action::Delete => Some(add_days(
            entry.first_seen,
            policy.delete_inactive_after_days?,
        )),
    }
}

/// The delivered final notice (naming the date), if any.
pub fn final_notice(entry: &Entry) -> Option<Timestamp> {
    entry
        .notices
        .iter()
        .filter(|n| n.stage == Stage::Final && entry.reached_owner(n))
        .map(|n| n.at)
        .min()
}

/// When the key will be acted on: the eligible date, but never before
/// `final_notice_days` after the final notice (or after `now`, when it has
/// not gone out yet).
pub fn scheduled_for(entry: &Entry, policy: &EnforcePolicy, now: Timestamp) -> Option<Timestamp> {
    let eligible = eligible_at(entry, policy)?;
    let notice = final_notice(entry).unwrap_or(now);
    Some(eligible.max(add_days(notice, policy.final_notice_days)))
}

/// Whether the owner is due the final notice now: enforcement is on, the key
/// is enforceable, no final notice went out yet and the date is within
/// `final_notice_days`.
pub fn final_notice_due(entry: &Entry, policy: &EnforcePolicy, now: Timestamp) -> bool {
    // Only `apply` gives a final notice: in `plan` a date would be a promise
    // nothing keeps, and a notice that counted would let the first `apply`
    // act without real warning.
    policy.mode == Mode::Apply
        && entry.access_key_id.is_some()
        && final_notice(entry).is_none()
        && eligible_at(entry, policy)
            .is_some_and(|e| days_between(now, e) <= i64::from(policy.final_notice_days))
        && (action_for(entry.check) != Some(Action::Delete)
            || policy.delete_inactive_after_days.is_some())
}

/// The key as this run's ListAccessKeys saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    pub status: KeyStatus,
    pub created_at: Option<Timestamp>,
}

/// Everything the rules look at for one finding.
#[derive(Debug, Clone, Copy)]
pub struct Facts<'a> {
    pub finding: &'a Finding,
    pub entry: &'a Entry,
    /// The key as re-read this run; `None` when it was not.
    pub seen: Option<Seen>,
    /// An exemption (tag, account or user ARN) is in force for the key.
    pub exempt: bool,
    /// The key is the one this run is signed with.
    pub callers_own: bool,
}

/// Each precondition on its own; the first that fails says why.
pub fn check(facts: &Facts<'_>, policy: &EnforcePolicy, now: Timestamp) -> Result<Action, Refusal> {
    if policy.mode == Mode::Off {
        return Err(Refusal::Off);
    }
    let action = action_for(facts.finding.check).ok_or(Refusal::NotEnforceableCheck)?;
    if facts.finding.access_key_id.is_none() {
        return Err(Refusal::RootKey);
    }
    if facts.exempt {
        return Err(Refusal::Exempt);
    }
    if facts.callers_own {
        return Err(Refusal::CallersOwnKey);
    }
    if action == Action::Delete && policy.delete_inactive_after_days.is_none() {
        return Err(Refusal::DeletionOff);
    }
    let eligible = eligible_at(facts.entry, policy).ok_or(Refusal::NotEnforceableCheck)?;
    if now < eligible {
        return Err(match action {
            Action::Deactivate => Refusal::NotLongEnoughPastDue,
            Action::Delete => Refusal::NotLongEnoughInactive,
        });
    }
    if (facts.entry.owner_notices() as u64) < u64::from(policy.min_notices) {
        return Err(Refusal::TooFewNotices);
    }
    // `plan` lists what meets every other rule: `apply` would first give
    // those owners the final notice and act no sooner than
    // `final_notice_days` after it.
    if policy.mode == Mode::Apply {
        let notice = final_notice(facts.entry).ok_or(Refusal::NoFinalNotice)?;
        if days_between(notice, now) < i64::from(policy.final_notice_days) {
            return Err(Refusal::FinalNoticeTooRecent);
        }
    }
    let seen = facts.seen.ok_or(Refusal::NotReReadThisRun)?;
    let want = match action {
        Action::Deactivate => KeyStatus::Active,
        Action::Delete => KeyStatus::Inactive,
    };
    if seen.status != want {
        return Err(Refusal::NotActive);
    }
    if seen.created_at.is_none() || seen.created_at != facts.finding.created_at {
        return Err(Refusal::CreationDateChanged);
    }
    Ok(action)
}

/// A key selected for action this run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selected {
    pub finding_id: String,
    pub action: Action,
    pub account_id: AccountId,
    pub user_name: String,
    pub access_key_id: AccessKeyId,
    pub created_at: Timestamp,
    pub check: CheckId,
    pub owner: Option<String>,
}

/// What enforcement would do this run.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// Oldest first, at most what `max_per_day` leaves for today.
    pub selected: Vec<Selected>,
    /// Eligible but over the cap: they wait for the next run.
    pub waiting: usize,
}

/// The keys whose findings pass every precondition, oldest first, capped.
/// One key is acted on once even if several of its findings qualify.
pub fn select(
    report: &Report,
    ledger: &Ledger,
    policy: &EnforcePolicy,
    callers_key: Option<&AccessKeyId>,
) -> Selection {
    let now = report.evaluated_at;
    let mut eligible: Vec<Selected> = Vec::new();
    let mut keys = BTreeSet::new();
    let runs: BTreeSet<Timestamp> = ledger.runs.iter().map(|r| r.at).collect();
    // A user AWS found exposed is for a human to handle (deactivating a key
    // mid-incident may break production): none of that user's keys is acted on.
    let exposed: BTreeSet<(&AccountId, &str)> = report
        .findings
        .iter()
        .filter(|f| f.check == CheckId::KeyExposed)
        .map(|f| (&f.account_id, f.user_name.as_str()))
        .collect();
    for f in &report.findings {
        let Some(key) = &f.access_key_id else {
            continue;
        };
        if exposed.contains(&(&f.account_id, f.user_name.as_str())) {
            continue;
        }
        let id = finding_id(&f.account_id, Some(key), f.check);
        let Some(entry) = ledger.entries.get(&id).filter(|e| e.is_open()) else {
            continue;
        };
        let entry = &trusted(entry, &runs, now);
        let seen = report
            .observed
            .get(&f.account_id)
            .and_then(|users| users.get(&f.user_name))
            .and_then(|ks| ks.iter().find(|k| k.access_key_id.as_ref() == Some(key)))
            .map(|k| Seen {
                status: k.status,
                created_at: k.created_at,
            });
        let exempt = report.exempt.iter().any(|x| {
            x.status == ExemptionStatus::InForce
                && x.account_id == f.account_id
                && x.user_name == f.user_name
                && x.access_key_id.as_ref() == Some(key)
        });
        let facts = Facts {
            finding: f,
            entry,
            seen,
            exempt,
            callers_own: callers_key == Some(key),
        };
        if let Ok(action) = check(&facts, policy, now) {
            if keys.insert((f.account_id.clone(), key.clone())) {
                eligible.push(Selected {
                    finding_id: id,
                    action,
                    account_id: f.account_id.clone(),
                    user_name: f.user_name.clone(),
                    access_key_id: key.clone(),
                    created_at: f.created_at.unwrap_or(now),
                    check: f.check,
                    owner: f.owner.email.as_ref().map(|e| e.to_string()),
                });
            }
        }
    }
    eligible.sort_by(|a, b| {
        a.created_at
            .cmp(&b.created_at)
            .then(a.account_id.cmp(&b.account_id))
            .then(a.access_key_id.cmp(&b.access_key_id))
    });
    let cap = (policy.max_per_day as usize).saturating_sub(enforced_on(ledger, now));
    let waiting = eligible.len().saturating_sub(cap);
    eligible.truncate(cap);
    Selection {
        selected: eligible,
        waiting,
    }
}

/// The finding's entry with only the notices enforcement may count: the
/// ledger is an input (a file in a bucket, or on a disk) and a forged or
/// rolled-back one must not stand in for fair warning. A notice counts when
/// it is not dated after this run's clock, was delivered through SES (it has
/// SES's message id: an outbox or dry run delivers nothing), and was sent by
/// a run the ledger itself recorded (its time is one of the ledger's runs).
pub fn trusted(entry: &Entry, runs: &BTreeSet<Timestamp>, now: Timestamp) -> Entry {
    let mut e = entry.clone();
    e.notices
        .retain(|n| n.at <= now && n.message_id.is_some() && runs.contains(&n.at));
    e
}

/// A ledger last saved after this run's clock was rolled back or forged
/// (or the clock is wrong): enforcement must not act on it.
pub fn clock_consistent(
    ledger_updated_at: Option<Timestamp>,
    now: Timestamp,
) -> Result<(), String> {
    match ledger_updated_at {
        Some(saved) if saved > now => Err(format!(
            "the ledger was last saved at {saved}, after this run's clock ({now}): a clock that went back, or a ledger that is not what keywarden saved; nothing is enforced this run"
        )),
        _ => Ok(()),
    }
}

/// Keys enforcement acted on during `now`'s UTC day, by any run (a retried
/// invocation included): the daily cap's count.
pub fn enforced_on(ledger: &Ledger, now: Timestamp) -> usize {
    let day = now.to_zoned(jiff::tz::TimeZone::UTC).date();
    ledger
        .entries
        .values()
        .filter_map(|e| e.enforced_at)
        .filter(|at| at.to_zoned(jiff::tz::TimeZone::UTC).date() == day)
        .count()
}

/// The command that undoes a deactivation.
pub fn reactivate_command(account: &AccountId, user: &str, key: &AccessKeyId) -> String {
    format!(
        "aws iam update-access-key --user-name '{}' --access-key-id {key} --status Active   # in account {account}",
        user.replace('\'', "'\\''")
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Notice;
    use crate::core::owners::Owner;
    use jiff::SignedDuration;

    const KEY: &str = "AKIAAAAAAAAAAAAAAAAA";

    fn day(n: i64) -> Timestamp {
        "2026-11-01T06:00:00Z".parse::<Timestamp>().unwrap() + SignedDuration::from_hours(24 * n)
    }
    fn policy() -> EnforcePolicy {
        EnforcePolicy {
            mode: Mode::Apply,
            deactivate_after_days: 30,
            min_notices: 3,
            final_notice_days: 7,
            max_per_day: 25,
            delete_inactive_after_days: None,
        }
    }
    fn finding(check: CheckId) -> Finding {
        Finding {
            check,
            severity: check.check().severity,
            account_id: AccountId::parse("111122223333").unwrap(),
            account_name: "prod".into(),
            user_name: "ci".into(),
            user_arn: "arn:aws:iam::111122223333:user/ci".into(),
            access_key_id: Some(AccessKeyId::parse(KEY).unwrap()),
            key_status: KeyStatus::Active,
            created_at: Some(day(-300)),
            age_days: Some(300),
            last_used_at: None,
            last_used_service: None,
            due_at: Some(day(0)),
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
        }
    }
    /// Due on day 0, told on days 0, 3 and 6 (the last one the final notice).
    fn entry(check: CheckId) -> Entry {
        let f = finding(check);
        Entry {
            account_id: f.account_id.clone(),
            account_name: f.account_name.clone(),
            user_name: f.user_name.clone(),
            access_key_id: f.access_key_id.clone(),
            check,
            severity: f.severity,
            first_seen: day(0),
            last_seen: day(0),
            owner: None,
            due_at: Some(day(0)),
            notices: [(0, Stage::First), (3, Stage::Reminder), (6, Stage::Final)]
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
    fn active() -> Option<Seen> {
        Some(Seen {
            status: KeyStatus::Active,
            created_at: Some(day(-300)),
        })
    }
    fn verdict(
        f: &Finding,
        e: &Entry,
        seen: Option<Seen>,
        now: Timestamp,
    ) -> Result<Action, Refusal> {
        check(
            &Facts {
                finding: f,
                entry: e,
                seen,
                exempt: false,
                callers_own: false,
            },
            &policy(),
            now,
        )
    }

    #[test]
    fn every_precondition_holds_more_than_30_days_past_due_after_3_notices_and_a_week_old_final_notice(
    ) {
        let (f, e) = (
            finding(CheckId::KeyAgeOverdue),
            entry(CheckId::KeyAgeOverdue),
        );
        assert_eq!(verdict(&f, &e, active(), day(31)), Ok(Action::Deactivate));
        assert_eq!(
            verdict(&f, &e, active(), day(30)),
            Err(Refusal::NotLongEnoughPastDue),
            "30 days is not more than 30"
        );
        let f = finding(CheckId::KeyUnused);
        assert_eq!(
            verdict(&f, &entry(CheckId::KeyUnused), active(), day(31)),
            Ok(Action::Deactivate)
        );
    }

    #[test]
    fn each_precondition_refuses_on_its_own() {
        let f = finding(CheckId::KeyAgeOverdue);
        let e = entry(CheckId::KeyAgeOverdue);
        let now = day(31);
        let mut two = e.clone();
        two.notices.remove(1);
        assert_eq!(
            verdict(&f, &two, active(), now),
            Err(Refusal::TooFewNotices)
        );
        let mut no_final = e.clone();
        no_final.notices[2].stage = Stage::Reminder;
        assert_eq!(
            verdict(&f, &no_final, active(), now),
            Err(Refusal::NoFinalNotice)
        );
        let mut late_final = e.clone();
        late_final.notices[2].at = day(25);
        assert_eq!(
            verdict(&f, &late_final, active(), now),
            Err(Refusal::FinalNoticeTooRecent)
        );
        assert_eq!(verdict(&f, &e, None, now), Err(Refusal::NotReReadThisRun));
        let inactive = Some(Seen {
            status: KeyStatus::Inactive,
            created_at: Some(day(-300)),
        });
        assert_eq!(verdict(&f, &e, inactive, now), Err(Refusal::NotActive));
        let recreated = Some(Seen {
            status: KeyStatus::Active,
            created_at: Some(day(-2)),
        });
        assert_eq!(
            verdict(&f, &e, recreated, now),
            Err(Refusal::CreationDateChanged)
        );
        for check in [
            CheckId::KeyAgeWarning,
            CheckId::TwoActiveKeys,
            CheckId::RootAccessKey,
        ] {
            assert_eq!(
                verdict(&finding(check), &entry(check), active(), now),
                Err(Refusal::NotEnforceableCheck),
                "{check:?}"
            );
        }
        let mut root = f.clone();
        root.access_key_id = None;
        assert_eq!(verdict(&root, &e, active(), now), Err(Refusal::RootKey));
        let facts = |exempt, callers_own| Facts {
            finding: &f,
            entry: &e,
            seen: active(),
            exempt,
            callers_own,
        };
        assert_eq!(
            check(&facts(true, false), &policy(), now),
            Err(Refusal::Exempt)
        );
        assert_eq!(
            check(&facts(false, true), &policy(), now),
            Err(Refusal::CallersOwnKey)
        );
        let off = EnforcePolicy {
            mode: Mode::Off,
            ..policy()
        };
        assert_eq!(check(&facts(false, false), &off, now), Err(Refusal::Off));
    }

    #[test]
    fn deleting_needs_its_own_opt_in_and_an_inactive_key() {
        let mut f = finding(CheckId::InactiveKeyStale);
        f.key_status = KeyStatus::Inactive;
        let e = entry(CheckId::InactiveKeyStale);
        let inactive = Some(Seen {
            status: KeyStatus::Inactive,
            created_at: Some(day(-300)),
        });
        assert_eq!(
            verdict(&f, &e, inactive, day(100)),
            Err(Refusal::DeletionOff)
        );
        let on = EnforcePolicy {
            delete_inactive_after_days: Some(60),
            ..policy()
        };
        let facts = |seen| Facts {
            finding: &f,
            entry: &e,
            seen,
            exempt: false,
            callers_own: false,
        };
        assert_eq!(
            check(&facts(inactive), &on, day(59)),
            Err(Refusal::NotLongEnoughInactive)
        );
        assert_eq!(check(&facts(inactive), &on, day(60)), Ok(Action::Delete));
        assert_eq!(
            check(&facts(active()), &on, day(60)),
            Err(Refusal::NotActive),
            "an active key is never deleted"
        );
    }

    #[test]
    fn the_date_waits_for_the_final_notice_and_the_final_notice_comes_a_week_ahead() {
        let mut e = entry(CheckId::KeyAgeOverdue);
        e.notices.truncate(2);
        let p = policy();
        assert_eq!(eligible_at(&e, &p), Some(day(31)));
        // Not yet told the date: the earliest is a week after today.
        assert_eq!(scheduled_for(&e, &p, day(28)), Some(day(35)));
        assert!(
            !final_notice_due(&e, &p, day(23)),
            "eight days ahead: not yet"
        );
        assert!(final_notice_due(&e, &p, day(24)));
        e.notices.push(Notice {
            at: day(24),
            stage: Stage::Final,
            recipients: vec![],
            message_id: None,
            key_owner: None,
        });
        assert!(!final_notice_due(&e, &p, day(25)), "once");
        assert_eq!(scheduled_for(&e, &p, day(25)), Some(day(31)));
        assert!(!final_notice_due(
            &e,
            &EnforcePolicy {
                mode: Mode::Off,
                ..p
            },
            day(24)
        ));
    }
}
