//! Opt-in enforcement: which keys may be deactivated (or, separately opted
//! in, deleted) this run, and when the others will be. Every precondition is
//! its own pure rule; a key is selected only when all of them hold, and never
//! a root key, an exempt key or the caller's own key. At most `max_per_run`
//! keys are selected, oldest first. Pure: the ledger, the report and `now`
//! are arguments; acting is `crate::enforce`'s job.

use std::collections::BTreeSet;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::checks::CheckId;
use super::ledger::{finding_id, Entry, Ledger, Stage};
use super::model::{add_days, days_between, AccessKeyId, AccountId, KeyStatus};
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
    /// Blast-radius cap; the rest wait for the next run.
    pub max_per_run: u32,
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
            max_per_run: 25,
            delete_inactive_after_days: None,
        }
    }
}

/// What enforcement does to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// `UpdateAccessKey Status=Inactive`: reversible.
    Deactivate,
    /// `DeleteAccessKey`: irreversible.
    Delete,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Deactivate => "deactivate",
            Action::Delete => "delete",
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
        .filter(|n| n.stage == Stage::Final)
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
    policy.mode != Mode::Off
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
    if (facts.entry.notices.len() as u64) < u64::from(policy.min_notices) {
        return Err(Refusal::TooFewNotices);
    }
    let notice = final_notice(facts.entry).ok_or(Refusal::NoFinalNotice)?;
    if days_between(notice, now) < i64::from(policy.final_notice_days) {
        return Err(Refusal::FinalNoticeTooRecent);
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
    /// Oldest first, at most `max_per_run`.
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
    for f in &report.findings {
        let Some(key) = &f.access_key_id else {
            continue;
        };
        let id = finding_id(&f.account_id, Some(key), f.check);
        let Some(entry) = ledger.entries.get(&id).filter(|e| e.is_open()) else {
            continue;
        };
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
    let cap = policy.max_per_run as usize;
    let waiting = eligible.len().saturating_sub(cap);
    eligible.truncate(cap);
    Selection {
        selected: eligible,
        waiting,
    }
}

/// One enforcement action's outcome (report field `actions`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Planned,
    Done,
    Failed,
}

/// An action in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActionRecord {
    pub finding_id: String,
    pub action: Action,
    pub outcome: Outcome,
    pub account_id: AccountId,
    pub user_name: String,
    pub access_key_id: AccessKeyId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The command that undoes a deactivation.
pub fn reactivate_command(account: &AccountId, user: &str, key: &AccessKeyId) -> String {
    format!(
        "aws iam update-access-key --user-name '{}' --access-key-id {key} --status Active   # in account {account}",
        user.replace('\'', "'\\''")
    )
}
