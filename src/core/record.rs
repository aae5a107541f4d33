//! What the report records about a finding beyond its checks: its stable id,
//! its place in its life, how it ended, the keys the scan saw, and what
//! enforcement did. The report, the ledger and enforcement all speak these
//! types, so they live below all three (model → checks → record → report →
//! ledger → enforcement). Pure data: no rules here.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::checks::{CheckId, Severity};
use super::model::{AccessKeyId, AccountId, KeyStatus};

/// The stable id of a finding: `<account_id>/<access_key_id or "root">/<check>`.
pub fn finding_id(account: &AccountId, key: Option<&AccessKeyId>, check: CheckId) -> String {
    format!(
        "{account}/{}/{}",
        key.map(AccessKeyId::as_str).unwrap_or("root"),
        check.as_str()
    )
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

/// A finding's place in its life this run (report field `lifecycle`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Lifecycle {
    New,
    Open,
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
