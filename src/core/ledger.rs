//! The ledger (`keywarden.ledger/v1`): what earlier runs saw and sent, and the
//! pure lifecycle rules over it. A finding is `new` the first run it is seen,
//! `open` while it keeps being seen, and resolved (with how) the first run its
//! account is scanned without it. Findings of accounts that were not scanned
//! this run (failed, timed out, out of scope) are never touched.
//!
//! Pure: `now` and the cadence are arguments; loading and saving the ledger is
//! the store's job (`crate::state`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::checks::{CheckId, Severity};
use super::model::{days_between, AccessKeyId, AccountId, EmailAddress, KeyStatus};
use super::report::{AccountStatus, ExemptionStatus, Report};
use super::tag_cache::CachedTags;

pub const SCHEMA: &str = "keywarden.ledger/v1";

/// Resolved entries older than this are dropped.
pub const KEEP_RESOLVED_DAYS: i64 = 400;
/// Per-run totals kept for trends.
pub const KEEP_RUNS: usize = 400;

/// Why a ledger could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("it is not a keywarden ledger (JSON): {0}")]
    Parse(String),
    #[error("its schema is {found:?}; this keywarden reads only {SCHEMA:?} (was it written by a newer version?)")]
    Schema { found: String },
    #[error("it belongs to organization {found:?}, not {expected:?}")]
    Organization { found: String, expected: String },
}

/// The stable id of a finding: `<account_id>/<access_key_id or "root">/<check>`.
pub fn finding_id(account: &AccountId, key: Option<&AccessKeyId>, check: CheckId) -> String {
    format!(
        "{account}/{}/{}",
        key.map(AccessKeyId::as_str).unwrap_or("root"),
        check.as_str()
    )
}

/// Which notice of a finding's life a message was.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// The first notice of a new finding.
    First,
    /// A later notice at the reminder cadence.
    Reminder,
    /// The finding passed `escalate_after_days` overdue: the account owner
    /// (and a `manager` tag) are told.
    Escalation,
    /// The notice that names an enforcement date.
    Final,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::First => "first",
            Stage::Reminder => "reminder",
            Stage::Escalation => "escalation",
            Stage::Final => "final",
        }
    }
}

/// How a finding ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum How {
    /// The key (or its user) no longer exists.
    KeyDeleted,
    /// The key is inactive now.
    KeyDeactivated,
    /// The key is gone or inactive and its user has a newer active key.
    KeyRotated,
    /// An exemption is in force for the key now.
    Exempted,
    /// The key is still there and active, but the check no longer fires
    /// (used again, policy changed, the second key went away).
    Cleared,
    /// A `key-age-warning` that became `key-age-overdue` on the same key:
    /// nothing was fixed, the finding moved on (not counted as a fix).
    Superseded,
}

impl How {
    pub fn as_str(self) -> &'static str {
        match self {
            How::KeyDeleted => "key_deleted",
            How::KeyDeactivated => "key_deactivated",
            How::KeyRotated => "key_rotated",
            How::Exempted => "exempted",
            How::Cleared => "cleared",
            How::Superseded => "superseded",
        }
    }
}

/// One delivered notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub at: Timestamp,
    pub stage: Stage,
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
}

/// One finding's life.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub account_id: AccountId,
    pub account_name: String,
    pub user_name: String,
    pub access_key_id: Option<AccessKeyId>,
    pub check: CheckId,
    pub severity: Severity,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The key owner's address when last seen.
    pub owner: Option<String>,
    pub due_at: Option<Timestamp>,
    #[serde(default)]
    pub notices: Vec<Notice>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resolved_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub how: Option<How>,
}

impl Entry {
    pub fn is_open(&self) -> bool {
        self.resolved_at.is_none()
    }

    /// Ends the finding now, and says so for the report.
    pub fn resolve(&mut self, id: &str, now: Timestamp, how: How) -> Resolved {
        self.resolved_at = Some(now);
        self.how = Some(how);
        Resolved {
            finding_id: id.to_owned(),
            check: self.check,
            severity: self.severity,
            account_id: self.account_id.clone(),
            account_name: self.account_name.clone(),
            user_name: self.user_name.clone(),
            access_key_id: self.access_key_id.clone(),
            owner: self.owner.clone(),
            first_seen: self.first_seen,
            resolved_at: now,
            how,
            days_open: self.days_open(now),
        }
    }

    /// Whole days the finding was (or has been) open.
    pub fn days_open(&self, now: Timestamp) -> i64 {
        days_between(self.first_seen, self.resolved_at.unwrap_or(now))
    }

    fn last_notice(&self, stages: &[Stage]) -> Option<&Notice> {
        self.notices
            .iter()
            .filter(|n| stages.contains(&n.stage))
            .max_by_key(|n| n.at)
    }

    /// Whether a notice reached the key owner (any recipient when the owner
    /// is unknown): notices to account owners and managers do not warn the owner.
    pub fn reached_owner(&self, n: &Notice) -> bool {
        match &self.owner {
            Some(o) => n.recipients.iter().any(|r| r.eq_ignore_ascii_case(o)),
            None => true,
        }
    }

    /// The last notice of these stages that reached the key owner.
    fn last_owner_notice(&self, stages: &[Stage]) -> Option<&Notice> {
        self.notices
            .iter()
            .filter(|n| stages.contains(&n.stage) && self.reached_owner(n))
            .max_by_key(|n| n.at)
    }

    /// Delivered notices that reached the key owner.
    pub fn owner_notices(&self) -> usize {
        self.notices
            .iter()
            .filter(|n| self.reached_owner(n))
            .count()
    }
}

/// An exemption in force, remembered so the digest can say which are new.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExemptionSeen {
    pub first_seen: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<Date>,
}

/// Totals of one run, for trends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunTotals {
    pub at: Timestamp,
    pub open: u64,
    pub overdue: u64,
    pub new: u64,
    pub resolved: u64,
    pub accounts_scanned: u64,
    pub accounts_failed: u64,
}

/// The whole ledger of one Organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ledger {
    pub schema: String,
    /// The Organization id (the account id in single-account mode).
    pub organization: String,
    pub updated_at: Option<Timestamp>,
    /// By finding id.
    pub entries: BTreeMap<String, Entry>,
    /// In-force exemptions by `<account>/<user arn>/<key or "root">`.
    #[serde(default)]
    pub exemptions: BTreeMap<String, ExemptionSeen>,
    /// Oldest first; at most [`KEEP_RUNS`].
    #[serde(default)]
    pub runs: Vec<RunTotals>,
    /// Each account's Organizations tags as last read (`core::tag_cache`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub account_tags: BTreeMap<AccountId, CachedTags>,
}

impl Ledger {
    /// An empty ledger: the first run.
    pub fn new(organization: &str) -> Self {
        Self {
            schema: SCHEMA.to_owned(),
            organization: organization.to_owned(),
            updated_at: None,
            entries: BTreeMap::new(),
            exemptions: BTreeMap::new(),
            runs: Vec::new(),
            account_tags: BTreeMap::new(),
        }
    }

    /// Parses a stored ledger, checking the schema before anything else.
    pub fn parse(bytes: &[u8], organization: &str) -> Result<Self, LedgerError> {
        #[derive(Deserialize)]
        struct Head {
            schema: Option<String>,
        }
        let head: Head =
            serde_json::from_slice(bytes).map_err(|e| LedgerError::Parse(e.to_string()))?;
        match head.schema.as_deref() {
            Some(SCHEMA) => {}
            other => {
                return Err(LedgerError::Schema {
                    found: other.unwrap_or("(none)").to_owned(),
                })
            }
        }
        let ledger: Ledger =
            serde_json::from_slice(bytes).map_err(|e| LedgerError::Parse(e.to_string()))?;
        if ledger.organization != organization {
            return Err(LedgerError::Organization {
                found: ledger.organization,
                expected: organization.to_owned(),
            });
        }
        Ok(ledger)
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing plain data into a Vec cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Users with open findings per account: the scan re-reads their keys
    /// even when they no longer trip a check, to learn how a finding ended.
    pub fn open_users(&self) -> BTreeMap<AccountId, BTreeSet<String>> {
        let mut out: BTreeMap<AccountId, BTreeSet<String>> = BTreeMap::new();
        for e in self.entries.values().filter(|e| e.is_open()) {
            out.entry(e.account_id.clone())
                .or_default()
                .insert(e.user_name.clone());
        }
        out
    }
}

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

/// A key as the scan saw it this run, for telling how a finding ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObservedKey {
    pub access_key_id: Option<AccessKeyId>,
    pub status: KeyStatus,
    pub created_at: Option<Timestamp>,
}

/// Per scanned account: user name → that user's keys, for every user that
/// tripped a check or had an open finding. A user missing from a scanned
/// account's map does not exist any more. The root user is `<root_account>`.
pub type Observed = BTreeMap<AccountId, BTreeMap<String, Vec<ObservedKey>>>;

/// A finding that ended this run, for the report and the digest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub finding_id: String,
    pub check: CheckId,
    pub severity: Severity,
    pub account_id: AccountId,
    pub account_name: String,
    pub user_name: String,
    pub access_key_id: Option<AccessKeyId>,
    pub owner: Option<String>,
    pub first_seen: Timestamp,
    pub resolved_at: Timestamp,
    pub how: How,
    pub days_open: i64,
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

/// The ledger's key for an exemption in force.
pub fn exemption_key(account: &AccountId, user_arn: &str, key: Option<&AccessKeyId>) -> String {
    format!(
        "{account}/{user_arn}/{}",
        key.map(AccessKeyId::as_str).unwrap_or("root")
    )
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

/// A finding's place in its life this run (report field `lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    New,
    Open,
}

/// Records a delivered notice on each of `finding_ids`.
pub fn record_notice(ledger: &mut Ledger, finding_ids: &[(String, Stage)], notice: &Notice) {
    for (id, stage) in finding_ids {
        if let Some(e) = ledger.entries.get_mut(id) {
            e.notices.push(Notice {
                stage: *stage,
                ..notice.clone()
            });
        }
    }
}

/// Median whole days to fix, over findings of `account` resolved within
/// `window_days` of `now`.
pub fn median_days_to_fix(
    ledger: &Ledger,
    account: &AccountId,
    now: Timestamp,
    window_days: i64,
) -> Option<i64> {
    let mut days: Vec<i64> = ledger
        .entries
        .values()
        .filter(|e| &e.account_id == account && e.how != Some(How::Superseded))
        .filter_map(|e| {
            let r = e.resolved_at?;
            (days_between(r, now) <= window_days).then(|| e.days_open(now))
        })
        .collect();
    if days.is_empty() {
        return None;
    }
    days.sort_unstable();
    let n = days.len();
    Some(if n % 2 == 1 {
        days[n / 2]
    } else {
        (days[n / 2 - 1] + days[n / 2]) / 2
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::owners::Owner;
    use crate::core::report::{AccountEntry, ExemptKey, ExemptionSource, Finding, Summary};
    use jiff::SignedDuration;

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
        use KeyStatus::{Active, Inactive};
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
                })
                .collect(),
            escalated_at: None,
            resolved_at: None,
            how: None,
        }
    }

    #[test]
    fn owners_are_reminded_at_the_cadence_of_the_severity_and_never_twice_a_day() {
        use Severity::*;
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
}
