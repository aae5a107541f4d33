//! The run report (`keywarden.report/v1`): serde types, a builder that keeps
//! only what the report needs from each account, and deterministic ordering.

use std::collections::BTreeMap;

use jiff::{civil::Date, Timestamp};
use serde::{Deserialize, Serialize};

use super::checks::{CheckId, Severity, CHECKS};
use super::model::{AccessKeyId, Account, AccountId, EmailAddress, KeyStatus, Policy};
use super::owners::Owner;
use super::privilege::Privilege;
use super::record::{ActionRecord, Outcome};
use super::record::{Lifecycle, Observed, ObservedKey, Resolved};
use super::risk::{self, Risk};
use super::usage::{ReplaceWith, Usage};

pub const SCHEMA: &str = "keywarden.report/v1";

/// How a requested account that the Organization does not have is shown.
pub const NOT_IN_ORGANIZATION: &str = "NotInOrganization";
pub const NOT_IN_ORGANIZATION_MESSAGE: &str =
    "requested (--accounts, include_accounts or the event) but not an ACTIVE account of the Organization";

/// One key that needs attention, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    pub check: CheckId,
    pub severity: Severity,
    pub account_id: AccountId,
    pub account_name: String,
    pub user_name: String,
    pub user_arn: String,
    /// `None` for the root user's key (the credential report does not carry it).
    pub access_key_id: Option<AccessKeyId>,
    pub key_status: KeyStatus,
    pub created_at: Option<Timestamp>,
    pub age_days: Option<i64>,
    pub last_used_at: Option<Timestamp>,
    pub last_used_service: Option<String>,
    pub due_at: Option<Timestamp>,
    pub owner: Owner,
    /// What to do, in a few words (the check's `fix`).
    #[serde(default)]
    pub remediation: String,
    /// A valid address from the user's `manager` tag: told on escalation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manager: Option<EmailAddress>,
    /// With a ledger: `<account_id>/<access_key_id or "root">/<check>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finding_id: Option<String>,
    /// With a ledger: when keywarden first saw this finding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_seen: Option<Timestamp>,
    /// With a ledger: `new` or `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle: Option<Lifecycle>,
    /// With a ledger: notices delivered for it before this run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notices: Option<u32>,
    /// With a ledger: when it escalated to the account owner.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalated_at: Option<Timestamp>,
    /// What the key can do, from its user's policies (users with findings only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub privilege: Option<Privilege>,
    /// Its place in the risk order (`rank` 1: fix it first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub risk: Option<Risk>,
    /// Where the key was used in the last 90 days (CloudTrail), for an
    /// active key used in that time; `unknown` with the reason when it
    /// could not be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<Usage>,
    /// What should replace the key, and why (`core::usage::advise`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replace_with: Option<ReplaceWith>,
}

/// Where an exemption came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemptionSource {
    /// The user's exemption tag.
    UserTag,
    /// `exempt_accounts` in the settings.
    ConfigAccount,
    /// `exempt_user_arns` in the settings.
    ConfigUserArn,
}

/// Whether an exemption suppressed findings.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExemptionStatus {
    /// In force: the key produced no findings.
    InForce,
    /// The end date has passed: ignored, findings reported.
    Expired,
    /// The tag value could not be read: ignored, findings reported.
    Invalid,
}

/// A key that tripped checks while an exemption applied (in force or not).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExemptKey {
    pub account_id: AccountId,
    pub account_name: String,
    pub user_name: String,
    pub user_arn: String,
    pub access_key_id: Option<AccessKeyId>,
    /// The checks that fired (and, when in force, were suppressed).
    pub checks: Vec<CheckId>,
    pub source: ExemptionSource,
    pub status: ExemptionStatus,
    pub until: Option<Date>,
    pub reason: Option<String>,
    /// The key's age in whole days, when known (exempt keys still count
    /// among the oldest keys).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age_days: Option<i64>,
}

/// How an account's keys were inventoried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InventorySource {
    CredentialReport,
    Api,
}

/// Whether an account was scanned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountStatus {
    Scanned,
    Failed,
}

/// Why an account could not be scanned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StageError {
    /// `assume_role`, `inventory`, `timeout`, `list_accounts`, …
    pub stage: String,
    /// The AWS error code (`AccessDenied`, `Throttling`, …) or a keywarden code.
    pub code: String,
    pub message: String,
}

/// One account's line in the report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountEntry {
    pub account_id: AccountId,
    pub name: String,
    pub email: Option<String>,
    pub alias: Option<String>,
    pub status: AccountStatus,
    pub source: Option<InventorySource>,
    pub users: u64,
    pub keys: u64,
    pub error: Option<StageError>,
    /// Who owns the account, resolved for accounts with findings only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<Owner>,
}

/// Active keys by age, for the digest's histogram.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgeBucket {
    pub label: String,
    pub min_days: i64,
    /// Inclusive; `None` for the last, open-ended bucket.
    pub max_days: Option<i64>,
    pub keys: u64,
}

/// Bucket bounds: (label, first day, last day).
pub const AGE_BUCKETS: [(&str, i64, Option<i64>); 6] = [
    ("0-29 days", 0, Some(29)),
    ("30-59 days", 30, Some(59)),
    ("60-89 days", 60, Some(89)),
    ("90-179 days", 90, Some(179)),
    ("180-364 days", 180, Some(364)),
    ("365+ days", 365, None),
];

/// What should replace a finding's key (`core::usage::advise`, with what
/// the finding knows of the key); a root
/// key: nothing, delete it.
pub fn replace_with(
    f: &Finding,
    console_password: bool,
    unused_days: u32,
    now: Timestamp,
) -> ReplaceWith {
    if f.check == crate::core::checks::CheckId::RootAccessKey {
        return ReplaceWith {
            kind: super::usage::Kind::Delete,
            reason: "a root user's key: AWS recommends none; use roles or IAM Identity Center for what it does".to_owned(),
        };
    }
    if f.key_status == crate::core::model::KeyStatus::Inactive {
        return ReplaceWith {
            kind: super::usage::Kind::Delete,
            reason: "it is inactive: nothing can use it".to_owned(),
        };
    }
    let unused = f.check == crate::core::checks::CheckId::KeyUnused
        || f.last_used_at
            .is_some_and(|t| crate::core::model::days_between(t, now) >= i64::from(unused_days));
    super::usage::advise(
        super::usage::KeyContext {
            unused,
            never_used: f.last_used_at.is_none(),
            console_password,
        },
        f.usage.as_ref(),
    )
}

/// Gives every finding its place in the risk order ([`risk`]) as of `now`.
pub fn rank_findings(findings: &mut [Finding], now: Timestamp) {
    let inputs: Vec<risk::Input<'_>> = findings
        .iter()
        .map(|f| risk::Input {
            check: f.check,
            severity: f.severity,
            class: f.privilege.as_ref().map(|p| p.class),
            due_at: f.due_at,
            account: &f.account_id,
            user: &f.user_name,
            key: f.access_key_id.as_ref(),
        })
        .collect();
    let risks = risk::rank(&inputs, now);
    for (f, r) in findings.iter_mut().zip(risks) {
        f.risk = Some(r);
    }
}

/// Counts active keys (with a known creation date) per [`AGE_BUCKETS`] entry.
pub fn key_age_histogram(
    users: &[super::model::UserFacts],
    now: Timestamp,
) -> [u64; AGE_BUCKETS.len()] {
    let mut counts = [0; AGE_BUCKETS.len()];
    for key in users.iter().flat_map(|u| &u.keys) {
        if key.status != KeyStatus::Active {
            continue;
        }
        if let Some(created) = key.created_at {
            let age = super::model::days_between(created, now);
            let i = AGE_BUCKETS
                .iter()
                .position(|(_, lo, hi)| age >= *lo && hi.is_none_or(|hi| age <= hi))
                .unwrap_or(AGE_BUCKETS.len() - 1);
            counts[i] += 1;
        }
    }
    counts
}

/// How a message fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    Sent,
    Failed,
    DryRun,
    Outbox,
}

impl DeliveryOutcome {
    /// The message reached its recipients (or the outbox): the ledger
    /// records it.
    pub fn delivered(self) -> bool {
        matches!(self, DeliveryOutcome::Sent | DeliveryOutcome::Outbox)
    }
}

/// Which kind of message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MessageKind {
    Owner,
    Digest,
    /// The run summary posted to a chat webhook.
    Chat,
    /// One account's findings imported into its Security Hub.
    #[serde(rename = "securityhub")]
    SecurityHub,
}

impl MessageKind {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Owner => "owner",
            MessageKind::Digest => "digest",
            MessageKind::Chat => "chat",
            MessageKind::SecurityHub => "securityhub",
        }
    }
}

/// One message of a `notify` run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    pub kind: MessageKind,
    pub recipients: Vec<String>,
    pub subject: String,
    /// Findings the message covers.
    pub findings: u64,
    pub outcome: DeliveryOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The `.eml` file written, with `--outbox`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
}

/// Totals for the whole run.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    pub accounts_total: u64,
    pub accounts_scanned: u64,
    pub accounts_failed: u64,
    pub users: u64,
    pub keys: u64,
    pub findings: u64,
    pub by_check: BTreeMap<CheckId, u64>,
    pub by_severity: BTreeMap<Severity, u64>,
    /// Active keys by age across every scanned account.
    #[serde(default)]
    pub active_key_ages: Vec<AgeBucket>,
}

/// The whole report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub schema: String,
    pub evaluated_at: Timestamp,
    pub policy: Policy,
    pub summary: Summary,
    pub accounts: Vec<AccountEntry>,
    pub findings: Vec<Finding>,
    pub exempt: Vec<ExemptKey>,
    /// Filled by `notify`; empty for `scan`.
    pub notifications: Vec<Notification>,
    /// Run-level failures that are not one account's (e.g. account listing
    /// broke off midway). Any entry makes the run incomplete.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<StageError>,
    /// With a ledger: findings gone since the last run, and how they ended.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resolved: Vec<Resolved>,
    /// Enforcement this run: planned, done or failed actions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub actions: Vec<ActionRecord>,
    /// Keys eligible for enforcement beyond what `enforce_max_per_day` leaves today.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub actions_waiting: u64,
    /// Account ids asked for (`--accounts`, `include_accounts`, the Lambda
    /// event) that are not ACTIVE accounts of the Organization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unknown_accounts: Vec<AccountId>,
    /// What the scan saw of the keys of users with findings (this run's or
    /// the ledger's open ones): how the lifecycle tells how a finding ended.
    /// Not part of the report's JSON.
    #[serde(skip)]
    pub observed: Observed,
    /// Account tags read from Organizations this run, for the ledger's tag
    /// cache. Not part of the report's JSON.
    #[serde(skip)]
    pub account_tags_read: BTreeMap<AccountId, Vec<(String, String)>>,
    /// What flagged users can do, as read (or re-read) this run, for the
    /// ledger's privilege cache. Not part of the report's JSON.
    #[serde(skip)]
    pub privileges_read: BTreeMap<AccountId, BTreeMap<String, Privilege>>,
    /// Footprints read this run, for the ledger's cache. Not part of the
    /// report's JSON.
    #[serde(skip)]
    pub usage_read: super::usage::Cache,
    /// Keys whose footprint was not read this run (at most 20 per account
    /// and run; `usage_max_keys_without_ledger` without a ledger).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage_not_read: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The outcome of one account, reduced to what the report keeps.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccountOutcome {
    pub account: Account,
    pub alias: Option<String>,
    /// `None` when the inventory could not be taken at all.
    pub source: Option<InventorySource>,
    pub users: u64,
    pub keys: u64,
    /// Findings, possibly partial when `error` is set.
    pub findings: Vec<Finding>,
    pub exempt: Vec<ExemptKey>,
    /// Set when the account could not be (fully) scanned: it is then `failed`.
    pub error: Option<StageError>,
    /// The account owner, when the account has findings.
    pub owner: Option<Owner>,
    /// Active keys per [`AGE_BUCKETS`] entry.
    pub key_ages: [u64; AGE_BUCKETS.len()],
    /// User name → keys, for users with findings now or open in the ledger.
    pub observed: BTreeMap<String, Vec<ObservedKey>>,
    /// The account's tags, when they were read from Organizations this run.
    pub tags_read: Option<Vec<(String, String)>>,
    /// User name → what the user can do, for each user whose policies were
    /// read this run (for the ledger's privilege cache).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub privileges_read: BTreeMap<String, Privilege>,
    /// Footprints read this run (for the ledger's usage cache).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub usage_read: super::usage::Cache,
    /// Footprints not read this run (the per-account cap, or the quota of a
    /// run without a ledger).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub usage_not_read: u64,
}

impl AccountOutcome {
    /// An account that could not be scanned at all.
    pub fn failed(account: Account, error: StageError) -> Self {
        Self {
            account,
            alias: None,
            source: None,
            users: 0,
            keys: 0,
            findings: Vec::new(),
            exempt: Vec::new(),
            error: Some(error),
            owner: None,
            key_ages: [0; AGE_BUCKETS.len()],
            observed: BTreeMap::new(),
            tags_read: None,
            privileges_read: BTreeMap::new(),
            usage_read: BTreeMap::new(),
            usage_not_read: 0,
        }
    }
}

/// Collects account outcomes as they finish, in any order.
#[derive(Debug)]
pub struct ReportBuilder {
    evaluated_at: Timestamp,
    policy: Policy,
    accounts: Vec<AccountEntry>,
    findings: Vec<Finding>,
    exempt: Vec<ExemptKey>,
    errors: Vec<StageError>,
    key_ages: [u64; AGE_BUCKETS.len()],
    observed: Observed,
    tags_read: BTreeMap<AccountId, Vec<(String, String)>>,
    privileges_read: BTreeMap<AccountId, BTreeMap<String, Privilege>>,
    usage_read: super::usage::Cache,
    usage_not_read: u64,
    unknown_accounts: Vec<AccountId>,
}

impl ReportBuilder {
    pub fn new(evaluated_at: Timestamp, policy: Policy) -> Self {
        Self {
            evaluated_at,
            policy,
            accounts: Vec::new(),
            findings: Vec::new(),
            exempt: Vec::new(),
            errors: Vec::new(),
            key_ages: [0; AGE_BUCKETS.len()],
            observed: Observed::new(),
            tags_read: BTreeMap::new(),
            privileges_read: BTreeMap::new(),
            usage_read: BTreeMap::new(),
            usage_not_read: 0,
            unknown_accounts: Vec::new(),
        }
    }

    pub fn add(&mut self, mut o: AccountOutcome) {
        if let Some(tags) = o.tags_read {
            self.tags_read.insert(o.account.id.clone(), tags);
        }
        self.usage_read.extend(std::mem::take(&mut o.usage_read));
        self.usage_not_read += o.usage_not_read;
        if !o.privileges_read.is_empty() {
            self.privileges_read
                .insert(o.account.id.clone(), o.privileges_read);
        }
        if o.error.is_none() {
            self.observed.insert(o.account.id.clone(), o.observed);
        }
        self.accounts.push(AccountEntry {
            account_id: o.account.id,
            name: o.account.name,
            email: o.account.email,
            alias: o.alias,
            status: if o.error.is_some() {
                AccountStatus::Failed
            } else {
                AccountStatus::Scanned
            },
            source: o.source,
            users: o.users,
            keys: o.keys,
            error: o.error,
            owner: o.owner,
        });
        for (total, n) in self.key_ages.iter_mut().zip(o.key_ages) {
            *total += n;
        }
        self.findings.extend(o.findings);
        self.exempt.extend(o.exempt);
    }

    pub fn add_error(&mut self, error: StageError) {
        self.errors.push(error);
    }

    /// No account was added.
    pub fn is_empty(&self) -> bool {
        self.accounts.is_empty()
    }

    pub fn set_unknown_accounts(&mut self, unknown: Vec<AccountId>) {
        self.unknown_accounts = unknown;
    }

    pub fn finish(mut self) -> Report {
        self.accounts
            .sort_by(|a, b| a.account_id.cmp(&b.account_id));
        self.findings.sort_by(|a, b| {
            (&a.account_id, &a.user_name, &a.access_key_id, a.check).cmp(&(
                &b.account_id,
                &b.user_name,
                &b.access_key_id,
                b.check,
            ))
        });
        self.exempt.sort_by(|a, b| {
            (&a.account_id, &a.user_name, &a.access_key_id).cmp(&(
                &b.account_id,
                &b.user_name,
                &b.access_key_id,
            ))
        });
        rank_findings(&mut self.findings, self.evaluated_at);
        let mut summary = Summary {
            accounts_total: self.accounts.len() as u64,
            by_check: CHECKS.iter().map(|c| (c.id, 0)).collect(),
            by_severity: Severity::ALL.iter().map(|s| (*s, 0)).collect(),
            active_key_ages: AGE_BUCKETS
                .iter()
                .zip(self.key_ages)
                .map(|((label, lo, hi), keys)| AgeBucket {
                    label: (*label).to_owned(),
                    min_days: *lo,
                    max_days: *hi,
                    keys,
                })
                .collect(),
            ..Summary::default()
        };
        for a in &self.accounts {
            match a.status {
                AccountStatus::Scanned => summary.accounts_scanned += 1,
                AccountStatus::Failed => summary.accounts_failed += 1,
            }
            summary.users += a.users;
            summary.keys += a.keys;
        }
        for f in &self.findings {
            summary.findings += 1;
            *summary.by_check.entry(f.check).or_default() += 1;
            *summary.by_severity.entry(f.severity).or_default() += 1;
        }
        Report {
            schema: SCHEMA.to_owned(),
            evaluated_at: self.evaluated_at,
            policy: self.policy,
            summary,
            accounts: self.accounts,
            findings: self.findings,
            exempt: self.exempt,
            notifications: Vec::new(),
            errors: self.errors,
            resolved: Vec::new(),
            actions: Vec::new(),
            actions_waiting: 0,
            unknown_accounts: self.unknown_accounts,
            observed: self.observed,
            account_tags_read: self.tags_read,
            privileges_read: self.privileges_read,
            usage_read: self.usage_read,
            usage_not_read: self.usage_not_read,
        }
    }
}

impl Report {
    /// True when some account (or the account listing) could not be
    /// scanned, a message (the digest included) was not delivered, or
    /// state could not be saved.
    pub fn is_incomplete(&self) -> bool {
        self.summary.accounts_failed > 0
            || !self.errors.is_empty()
            || !self.unknown_accounts.is_empty()
            || self.actions.iter().any(|a| a.outcome == Outcome::Failed)
            || self
                .notifications
                .iter()
                .any(|n| n.outcome == DeliveryOutcome::Failed)
    }

    /// The most severe finding, if any.
    pub fn worst_severity(&self) -> Option<Severity> {
        self.findings.iter().map(|f| f.severity).max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(id: &str) -> Account {
        Account {
            id: AccountId::parse(id).unwrap(),
            name: format!("acct-{id}"),
            email: None,
        }
    }
    fn scanned(id: &str, users: u64, keys: u64, ages: [u64; AGE_BUCKETS.len()]) -> AccountOutcome {
        AccountOutcome {
            source: Some(InventorySource::CredentialReport),
            users,
            keys,
            key_ages: ages,
            observed: BTreeMap::from([("ci".to_owned(), Vec::new())]),
            error: None,
            ..AccountOutcome::failed(
                account(id),
                StageError {
                    stage: String::new(),
                    code: String::new(),
                    message: String::new(),
                },
            )
        }
    }

    #[test]
    fn finish_orders_accounts_and_totals_everything_whatever_the_arrival_order() {
        let mut b = ReportBuilder::new(Timestamp::UNIX_EPOCH, Policy::default());
        b.add(scanned("333333333333", 2, 3, [1, 0, 0, 0, 0, 2]));
        b.add(AccountOutcome::failed(
            account("222222222222"),
            StageError {
                stage: "assume_role".into(),
                code: "AccessDenied".into(),
                message: "no".into(),
            },
        ));
        b.add(scanned("111111111111", 5, 4, [0, 1, 0, 0, 3, 0]));
        b.add_error(StageError {
            stage: "list_accounts".into(),
            code: "Throttling".into(),
            message: "page 3".into(),
        });
        let r = b.finish();
        let ids: Vec<&str> = r.accounts.iter().map(|a| a.account_id.as_str()).collect();
        assert_eq!(ids, ["111111111111", "222222222222", "333333333333"]);
        assert_eq!(
            (
                r.summary.accounts_total,
                r.summary.accounts_scanned,
                r.summary.accounts_failed
            ),
            (3, 2, 1)
        );
        assert_eq!((r.summary.users, r.summary.keys), (7, 7));
        let ages: Vec<u64> = r.summary.active_key_ages.iter().map(|b| b.keys).collect();
        assert_eq!(ages, [1, 1, 0, 0, 3, 2]);
        assert_eq!(
            r.summary.by_check.len(),
            CHECKS.len(),
            "every check has a count, zero or not"
        );
        assert!(r.is_incomplete());
        assert_eq!(
            r.observed.len(),
            2,
            "only scanned accounts' observations are kept"
        );
        assert!(!r
            .observed
            .contains_key(&AccountId::parse("222222222222").unwrap()));
    }
}
