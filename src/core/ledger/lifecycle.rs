//! The pure lifecycle rules over the ledger: a finding is `new` the first
//! run it is seen, `open` while it keeps being seen, and resolved (with how)
//! the first run its account is scanned without it; when it is due for its
//! owner, when it escalates. Findings of accounts that were not scanned this
//! run (failed, timed out, out of scope) are never touched.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::book::{
    exemption_key, Entry, ExemptionSeen, Ledger, RunTotals, Stage, KEEP_RESOLVED_DAYS, KEEP_RUNS,
};
use crate::core::checks::{CheckId, Severity};
use crate::core::model::{days_between, AccountId, EmailAddress, KeyStatus};
use crate::core::record::{finding_id, How, Lifecycle, Observed};
use crate::core::report::{AccountStatus, ExemptionStatus, Report};

/// When owners are reminded and findings escalated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cadence {
    pub remind_every_days: u32,
    pub overdue_remind_every_days: u32,
    pub escalate_after_days: u32,
}

impl Default for Cadence {
    fn default() -> Self {
        Self {
            remind_every_days: 7,
            overdue_remind_every_days: 3,
            escalate_after_days: 14,
        }
    }
}

/// High and critical findings are overdue: they count in the trend's
/// "overdue" line and are reminded at `overdue_remind_every_days`.
pub fn is_overdue(severity: Severity) -> bool {
    severity >= Severity::High
}

/// What one run changed, for the digest's "since the last run".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changes {
    /// Finding ids seen for the first time (or again after being resolved).
    pub new: Vec<String>,
    /// Finding ids that escalated this run.
    pub escalated: Vec<String>,
    /// Exemptions in force that were not in force last run.
    pub new_exemptions: BTreeSet<String>,
    /// Exemptions in force last run that are not any more (ended, removed,
    /// or the key no longer trips a check), in scanned accounts.
    pub ended_exemptions: BTreeSet<String>,
    /// Open findings of accounts that failed this run, carried unchanged.
    pub carried: BTreeMap<AccountId, u64>,
    /// True when this is the first run with this ledger.
    pub first_run: bool,
}

/// How an open finding that was not seen again ended.
fn how_it_ended(entry: &Entry, report: &Report, observed: &Observed) -> How {
    let exempted = report.exempt.iter().any(|x| {
        x.status == ExemptionStatus::InForce
            && x.account_id == entry.account_id
            && x.user_name == entry.user_name
            && x.access_key_id == entry.access_key_id
    });
    if exempted {
        return How::Exempted;
    }
    let keys = observed
        .get(&entry.account_id)
        .and_then(|users| users.get(&entry.user_name));
    let Some(keys) = keys else {
        return How::KeyDeleted;
    };
    let this = keys.iter().find(|k| k.access_key_id == entry.access_key_id);
    let newer_active = |created: Option<Timestamp>| {
        keys.iter().any(|k| {
            k.status == KeyStatus::Active
                && k.access_key_id != entry.access_key_id
                && match (k.created_at, created) {
                    (Some(new), Some(old)) => new > old,
                    (Some(new), None) => new >= entry.first_seen,
                    _ => false,
                }
        })
    };
    let active_check = entry.check != CheckId::InactiveKeyStale;
    match this {
        None if entry.access_key_id.is_none() => How::KeyDeleted,
        None => {
            if active_check && entry.access_key_id.is_some() && newer_active(None) {
                How::KeyRotated
            } else {
                How::KeyDeleted
            }
        }
        Some(k) if active_check && k.status == KeyStatus::Inactive => {
            if newer_active(k.created_at) {
                How::KeyRotated
            } else {
                How::KeyDeactivated
            }
        }
        Some(_) => How::Cleared,
    }
}

/// Brings the ledger up to date with this run's report and annotates the
/// report (finding ids, first seen, lifecycle, notices, resolved). Accounts
/// not scanned this run keep their entries exactly as they were.
pub fn reconcile(
    ledger: &mut Ledger,
    report: &mut Report,
    observed: &Observed,
    cadence: &Cadence,
) -> Changes {
    let now = report.evaluated_at;
    let mut changes = Changes {
        first_run: ledger.updated_at.is_none(),
        ..Changes::default()
    };
    let scanned: BTreeSet<&AccountId> = report
        .accounts
        .iter()
        .filter(|a| a.status == AccountStatus::Scanned)
        .map(|a| &a.account_id)
        .collect();
    let failed: BTreeSet<AccountId> = report
        .accounts
        .iter()
        .filter(|a| a.status == AccountStatus::Failed)
        .map(|a| a.account_id.clone())
        .collect();

    let mut seen_now = BTreeSet::new();
    for f in &mut report.findings {
        let id = finding_id(&f.account_id, f.access_key_id.as_ref(), f.check);
        seen_now.insert(id.clone());
        let owner = f.owner.email.as_ref().map(EmailAddress::to_string);
        let entry = match ledger.entries.get_mut(&id) {
            Some(e) if e.is_open() => {
                e.last_seen = now;
                e.severity = f.severity;
                e.owner = owner;
                e.due_at = f.due_at;
                e.account_name = f.account_name.clone();
                e.user_name = f.user_name.clone();
                f.lifecycle = Some(Lifecycle::Open);
                e
            }
            _ => {
                // New, or back after it was resolved: a new life.
                changes.new.push(id.clone());
                f.lifecycle = Some(Lifecycle::New);
                ledger.entries.insert(
                    id.clone(),
                    Entry {
                        account_id: f.account_id.clone(),
                        account_name: f.account_name.clone(),
                        user_name: f.user_name.clone(),
                        access_key_id: f.access_key_id.clone(),
                        check: f.check,
                        severity: f.severity,
                        first_seen: now,
                        last_seen: now,
                        owner,
                        due_at: f.due_at,
                        notices: Vec::new(),
                        escalated_at: None,
                        resolved_at: None,
                        how: None,
                        enforced_at: None,
                    },
                );
                ledger.entries.get_mut(&id).expect("just inserted")
            }
        };
        if entry.escalated_at.is_none() && escalates(entry, now, cadence) {
            entry.escalated_at = Some(now);
            changes.escalated.push(id.clone());
        }
        f.finding_id = Some(id);
        f.first_seen = Some(entry.first_seen);
        f.notices = Some(entry.notices.len() as u32);
        f.escalated_at = entry.escalated_at;
    }

    let mut resolved = Vec::new();
    for (id, e) in ledger.entries.iter_mut() {
        if !e.is_open() || seen_now.contains(id) {
            continue;
        }
        if failed.contains(&e.account_id) {
            *changes.carried.entry(e.account_id.clone()).or_default() += 1;
            continue;
        }
        if !scanned.contains(&e.account_id) {
            continue;
        }
        let superseded = e.check == CheckId::KeyAgeWarning
            && seen_now.contains(&finding_id(
                &e.account_id,
                e.access_key_id.as_ref(),
                CheckId::KeyAgeOverdue,
            ));
        let how = if superseded {
            How::Superseded
        } else {
            how_it_ended(e, report, observed)
        };
        resolved.push(e.resolve(id, now, how));
    }
    ledger.entries.retain(|_, e| {
        e.resolved_at
            .is_none_or(|r| days_between(r, now) <= KEEP_RESOLVED_DAYS)
    });

    // Exemptions: remember those in force; the ones not seen before are new.
    let mut exemptions = BTreeMap::new();
    for x in report
        .exempt
        .iter()
        .filter(|x| x.status == ExemptionStatus::InForce)
    {
        let key = exemption_key(&x.account_id, &x.user_arn, x.access_key_id.as_ref());
        let seen = match ledger.exemptions.get(&key) {
            Some(s) => ExemptionSeen {
                first_seen: s.first_seen,
                until: x.until,
            },
            None => {
                if !changes.first_run {
                    changes.new_exemptions.insert(key.clone());
                }
                ExemptionSeen {
                    first_seen: now,
                    until: x.until,
                }
            }
        };
        exemptions.insert(key, seen);
    }
    // Exemptions of accounts not scanned this run are kept as they were.
    for (key, seen) in &ledger.exemptions {
        let account = key.split('/').next().unwrap_or_default();
        if !scanned.iter().any(|a| a.as_str() == account) {
            exemptions
                .entry(key.clone())
                .or_insert_with(|| seen.clone());
        } else if !exemptions.contains_key(key) {
            changes.ended_exemptions.insert(key.clone());
        }
    }
    ledger.exemptions = exemptions;

    let open: Vec<&Entry> = ledger.entries.values().filter(|e| e.is_open()).collect();
    ledger.runs.push(RunTotals {
        at: now,
        open: open.len() as u64,
        overdue: open.iter().filter(|e| is_overdue(e.severity)).count() as u64,
        new: changes.new.len() as u64,
        resolved: resolved.iter().filter(|r| r.how != How::Superseded).count() as u64,
        accounts_scanned: scanned.len() as u64,
        accounts_failed: failed.len() as u64,
    });
    if ledger.runs.len() > KEEP_RUNS {
        let extra = ledger.runs.len() - KEEP_RUNS;
        ledger.runs.drain(..extra);
    }
    ledger.updated_at = Some(now);
    report.resolved = resolved;
    changes
}

/// Whether a finding is far enough past due to escalate: medium and above,
/// `escalate_after_days` whole days after its due date or after keywarden
/// first saw it, whichever is later: a key found long overdue on the first
/// run gives its owner the same time to act as any other.
pub fn escalates(entry: &Entry, now: Timestamp, cadence: &Cadence) -> bool {
    let clock = entry
        .due_at
        .map_or(entry.first_seen, |d| d.max(entry.first_seen));
    entry.severity >= Severity::Medium
        && days_between(clock, now) >= i64::from(cadence.escalate_after_days)
}

/// Whole calendar days (UTC) from `from` to `to`.
fn calendar_days(from: Timestamp, to: Timestamp) -> i64 {
    let day = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).date();
    (day(to) - day(from)).get_days().into()
}

/// Whether the key owner is due a notice about this finding now, and which.
/// Nothing is ever sent twice on the same calendar day (UTC), so a retried
/// run sends nothing new.
pub fn owner_due(entry: &Entry, now: Timestamp, cadence: &Cadence) -> Option<Stage> {
    let all = [
        Stage::First,
        Stage::Reminder,
        Stage::Escalation,
        Stage::Final,
    ];
    let Some(latest) = entry.last_owner_notice(&all) else {
        return Some(Stage::First);
    };
    if calendar_days(latest.at, now) < 1 {
        return None;
    }
    if entry.escalated_at.is_some() && entry.last_notice(&[Stage::Escalation]).is_none() {
        return Some(Stage::Escalation);
    }
    // The reminder cadence runs from the last regular notice: an escalation
    // is news for others, not a reason to remind the owner later.
    let last = entry
        .last_owner_notice(&[Stage::First, Stage::Reminder, Stage::Final])
        .unwrap_or(latest);
    let days = calendar_days(last.at, now);
    let every = match entry.severity {
        Severity::Critical => 1,
        s if is_overdue(s) => cadence.overdue_remind_every_days,
        _ => cadence.remind_every_days,
    };
    (days >= i64::from(every.max(1))).then_some(Stage::Reminder)
}

/// Whether the account owner (and a manager) are due a notice: a new
/// finding in their account, or an escalation not yet delivered.
pub fn account_owner_due(entry: &Entry) -> Option<Stage> {
    if entry.notices.is_empty() {
        return Some(Stage::First);
    }
    if entry.escalated_at.is_some() && entry.last_notice(&[Stage::Escalation]).is_none() {
        return Some(Stage::Escalation);
    }
    None
}
