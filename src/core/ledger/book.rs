//! The ledger's records (`keywarden.ledger/v1`): one entry per finding with
//! every notice delivered for it, the exemptions seen, per-run totals and the
//! account tag cache, and how they are kept (resolved entries 400 days).

use std::collections::{BTreeMap, BTreeSet};

use jiff::civil::Date;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::core::checks::{CheckId, Severity};
use crate::core::model::{days_between, AccessKeyId, AccountId};
use crate::core::record::{How, Resolved};
use crate::core::tag_cache::CachedTags;

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

/// One delivered notice.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notice {
    pub at: Timestamp,
    pub stage: Stage,
    pub recipients: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    /// Whether the message went to the key's owner as they were when it was
    /// sent (not to an account owner or a manager). Kept with the notice, so
    /// re-tagging the key's user does not wipe the warnings already given:
    /// notices belong to the finding, not to today's address. `None` in
    /// ledgers written before it was kept: the recipients are compared with
    /// the current owner then.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_owner: Option<bool>,
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
    /// When keywarden's enforcement acted on the key (deactivated or
    /// deleted it): the daily cap counts these, across runs and retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enforced_at: Option<Timestamp>,
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

    pub(super) fn last_notice(&self, stages: &[Stage]) -> Option<&Notice> {
        self.notices
            .iter()
            .filter(|n| stages.contains(&n.stage))
            .max_by_key(|n| n.at)
    }

    /// Whether a notice reached the key's owner of its day (any recipient
    /// when the owner is unknown): notices to account owners and managers do
    /// not warn the owner. What enforcement counts: warnings given stay given
    /// when the owner tag changes.
    pub fn reached_owner(&self, n: &Notice) -> bool {
        match n.key_owner {
            Some(to_owner) => to_owner,
            None => self.told_current_owner(n),
        }
    }

    /// Whether a notice went to the owner as they are now: a new owner hears
    /// about the key at once, whatever an earlier owner was told.
    fn told_current_owner(&self, n: &Notice) -> bool {
        match &self.owner {
            Some(o) => n.recipients.iter().any(|r| r.eq_ignore_ascii_case(o)),
            None => true,
        }
    }

    /// The last notice of these stages that reached the current owner (the
    /// reminder cadence).
    pub(super) fn last_owner_notice(&self, stages: &[Stage]) -> Option<&Notice> {
        self.notices
            .iter()
            .filter(|n| stages.contains(&n.stage) && self.told_current_owner(n))
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
    /// What each flagged user can do as last read (`core::privilege::cache`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privileges: crate::core::privilege::cache::Cache,
    /// Where flagged keys were used, as last read (`core::usage`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage: crate::core::usage::Cache,
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
            privileges: BTreeMap::new(),
            usage: BTreeMap::new(),
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
        self.to_json_sized(0)
    }

    /// The JSON into a buffer of `size_hint` bytes and a little more: at
    /// 20,000 accounts the ledger is megabytes, and a buffer grown by
    /// doubling holds up to three times that at once while it grows.
    pub fn to_json_sized(&self, size_hint: usize) -> Vec<u8> {
        let mut out = Vec::with_capacity(size_hint + size_hint / 8);
        // Serializing plain data into a Vec cannot fail.
        if serde_json::to_writer(&mut out, self).is_err() {
            out.clear();
        }
        out
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

/// The ledger's key for an exemption in force.
pub fn exemption_key(account: &AccountId, user_arn: &str, key: Option<&AccessKeyId>) -> String {
    format!(
        "{account}/{user_arn}/{}",
        key.map(AccessKeyId::as_str).unwrap_or("root")
    )
}

/// Records a delivered notice on each of `finding_ids`.
pub fn record_notice(ledger: &mut Ledger, finding_ids: &[(String, Stage)], notice: &Notice) {
    for (id, stage) in finding_ids {
        if let Some(e) = ledger.entries.get_mut(id) {
            let mut n = Notice {
                stage: *stage,
                key_owner: None,
                ..notice.clone()
            };
            n.key_owner = Some(e.reached_owner(&n));
            e.notices.push(n);
        }
    }
}

/// [`record_notice`] for a delivery read back from the journal
/// (`state::LedgerSession`): a finding that already holds the notice (the
/// same run's time, stage and recipients: the ledger was saved after the
/// journal was written) does not get it twice.
pub fn fold_notice(ledger: &mut Ledger, finding_ids: &[(String, Stage)], notice: &Notice) {
    let missing: Vec<(String, Stage)> = finding_ids
        .iter()
        .filter(|(id, stage)| {
            ledger.entries.get(id).is_some_and(|e| {
                !e.notices.iter().any(|n| {
                    n.at == notice.at && n.stage == *stage && n.recipients == notice.recipients
                })
            })
        })
        .cloned()
        .collect();
    record_notice(ledger, &missing, notice);
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
