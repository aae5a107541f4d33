//! IAM: the credential report (with its generation state machine), key and
//! tag look-ups for users that tripped a check, and API enumeration as the
//! fallback when the report cannot be had.

use std::collections::BTreeMap;
use std::time::Duration;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_iam::types::{ReportStateType, StatusType, SummaryKeyType};
use futures::{StreamExt, TryStreamExt};
use jiff::Timestamp;

use super::{classify, timestamp, unlimited_retries, AwsError};
use crate::core::credential_report::{self, ReportParseError, ROOT_USER};
use crate::core::model::{AccessKeyId, AccountId, KeyFacts, KeyStatus, UserFacts};
use crate::deadline::Budget;

/// Every action the scanner calls in an account (IAM's, and CloudTrail's
/// `LookupEvents`). The StackSet role and the Lambda's own role must grant
/// exactly these (tests hold them to it).
pub const IAM_ACTIONS: &[&str] = &[
    "iam:GenerateCredentialReport",
    "iam:GetCredentialReport",
    "iam:GetAccessKeyLastUsed",
    "iam:GetAccountSummary",
    "iam:ListAccessKeys",
    "iam:ListAccountAliases",
    "iam:ListUserTags",
    "iam:ListUsers",
    // key-exposed: which users an AWS quarantine policy reaches.
    "iam:ListPolicies",
    "iam:ListEntitiesForPolicy",
    "iam:GetGroup",
    // privilege: what the policies of a user with findings allow.
    "iam:GetUser",
    "iam:ListAttachedUserPolicies",
    "iam:ListUserPolicies",
    "iam:GetUserPolicy",
    "iam:ListGroupsForUser",
    "iam:ListAttachedGroupPolicies",
    "iam:ListGroupPolicies",
    "iam:GetGroupPolicy",
    "iam:GetPolicy",
    "iam:GetPolicyVersion",
    // usage: where a flagged key is used (CloudTrail's event history, read
    // with the same role; see aws::cloudtrail).
    "cloudtrail:LookupEvents",
];

/// A user's policy documents, each with how it reaches the user, and its
/// permissions boundary (label, document JSON as IAM returned it).
#[derive(Debug, Clone, Default)]
pub struct UserPolicies {
    pub identity: Vec<(String, String)>,
    pub boundary: Option<(String, String)>,
}

/// Policy documents read once: AWS managed ones once per run (the same in
/// every account), an account's own ones and its groups' once per account.
#[derive(Debug, Default)]
pub struct PolicyCache {
    /// Managed policy ARN → document.
    managed: std::sync::Mutex<BTreeMap<String, String>>,
    /// Group name → its (label, document) list.
    groups: std::sync::Mutex<BTreeMap<String, Vec<(String, String)>>>,
}

/// The name every AWS quarantine policy starts with: AWS attaches one to a
/// user when it finds one of the user's keys exposed in public.
pub const QUARANTINE_PREFIX: &str = "AWSCompromisedKeyQuarantine";

/// The quarantine policies AWS is known to have: used with the ones
/// ListPolicies finds (and instead of them when it cannot be read).
pub const KNOWN_QUARANTINE_POLICIES: &[&str] = &[
    "AWSCompromisedKeyQuarantine",
    "AWSCompromisedKeyQuarantineV2",
    "AWSCompromisedKeyQuarantineV3",
];

/// What the enforcement role may do (`KeywardenEnforceRole`, and the
/// management account's own role when enforcement is applied): re-read the
/// keys, deactivate one.
pub const ENFORCE_ACTIONS: &[&str] = &["iam:ListAccessKeys", "iam:UpdateAccessKey"];

/// Added to the enforcement role only when deletion is opted in.
pub const DELETE_ACTIONS: &[&str] = &["iam:DeleteAccessKey"];

/// How patiently to wait for a credential report.
#[derive(Debug, Clone, Copy)]
pub struct ReportPolling {
    pub initial_delay: Duration,
    pub max_delay: Duration,
    /// Give up (and fall back to API enumeration) after waiting this long.
    pub max_wait: Duration,
}

/// How much longer each wait for the credential report is than the one
/// before. Doubling (the usual backoff) reads a report ready just after a
/// poll up to twice as late as it could be (ready at 1.05 s, read at 1.5 s;
/// at 3.6 s, read at 7.5 s); 1.25× keeps that within a quarter, for one or
/// two more GetCredentialReport calls on the account's own IAM budget.
pub const REPORT_POLL_GROWTH: f64 = 1.25;

/// The wait after the first poll once the run has learned how long reports
/// take ([`ReportClock`]): polls are close together where reports become
/// ready, and grow by [`REPORT_POLL_GROWTH`] from there.
pub const REPORT_POLL_STEP: Duration = Duration::from_millis(100);

/// The first poll waits this share of the quickest report of the run.
const FIRST_POLL_SHARE: f64 = 0.9;

/// How long credential reports of this run took, shared by every account:
/// AWS publishes no generation time, and a first poll at a fixed 0.5 s,
/// growing from there, read a report ready after 1.02 s at 1.13 s (plus
/// round trips): about 0.2 s of every account's ~1.3 s, which is accounts in
/// flight doing nothing. Once a report has been read, every later account's
/// first poll waits 90 % of the quickest seen, then polls every
/// [`REPORT_POLL_STEP`], growing.
#[derive(Debug)]
pub struct ReportClock {
    /// Milliseconds from GenerateCredentialReport's answer to the poll that
    /// brought the report, the smallest seen; `u64::MAX` before the first.
    quickest_ms: std::sync::atomic::AtomicU64,
}

impl Default for ReportClock {
    fn default() -> Self {
        Self {
            quickest_ms: std::sync::atomic::AtomicU64::new(u64::MAX),
        }
    }
}

impl ReportClock {
    /// The waits between polls: the first, then the ones after it.
    pub fn waits(&self, polling: &ReportPolling) -> (Duration, Duration) {
        match self.quickest_ms.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => (
                polling.initial_delay,
                polling.initial_delay.mul_f64(REPORT_POLL_GROWTH),
            ),
            ms => (
                Duration::from_millis(ms).mul_f64(FIRST_POLL_SHARE),
                REPORT_POLL_STEP.min(polling.max_delay),
            ),
        }
    }

    /// A report was read `after` its generation started.
    pub fn read_after(&self, after: Duration) {
        let ms = u64::try_from(after.as_millis()).unwrap_or(u64::MAX - 1);
        self.quickest_ms
            .fetch_min(ms, std::sync::atomic::Ordering::Relaxed);
    }

    /// The quickest report of the run, once one was read.
    pub fn quickest(&self) -> Option<Duration> {
        match self.quickest_ms.load(std::sync::atomic::Ordering::Relaxed) {
            u64::MAX => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }
}

impl Default for ReportPolling {
    fn default() -> Self {
        // A report for thousands of users is usually ready in seconds.
        Self {
            initial_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(5),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// Why the credential report could not be used (the caller falls back to
/// API enumeration).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error(transparent)]
    Parse(#[from] ReportParseError),
    #[error("the credential report was still not ready after {0:?}")]
    NotReady(Duration),
}

/// IAM calls for one account.
#[derive(Debug, Clone)]
pub struct Iam {
    client: aws_sdk_iam::Client,
    polling: ReportPolling,
    clock: std::sync::Arc<ReportClock>,
}

impl Iam {
    /// IAM with the base configuration's own credentials.
    pub fn new(config: &SdkConfig) -> Self {
        let conf = aws_sdk_iam::config::Builder::from(config)
            .retry_partition(unlimited_retries("keywarden-iam-own".to_owned()))
            .build();
        Self::from_client(aws_sdk_iam::Client::from_conf(conf))
    }

    /// IAM with assumed-role credentials, keeping the base configuration's
    /// endpoint, region, retry and timeout settings. IAM throttles per
    /// account, so each account gets its own retry partition.
    pub fn with_credentials(
        config: &SdkConfig,
        credentials: Credentials,
        account: &AccountId,
    ) -> Self {
        let conf = aws_sdk_iam::config::Builder::from(config)
            .credentials_provider(credentials)
            .retry_partition(unlimited_retries(format!("keywarden-iam-{account}")))
            .build();
        Self::from_client(aws_sdk_iam::Client::from_conf(conf))
    }

    pub fn from_client(client: aws_sdk_iam::Client) -> Self {
        Self {
            client,
            polling: ReportPolling::default(),
            clock: std::sync::Arc::default(),
        }
    }

    pub fn with_polling(mut self, polling: ReportPolling) -> Self {
        self.polling = polling;
        self
    }

    /// Shares what reports took with the run's other accounts.
    pub fn with_clock(mut self, clock: std::sync::Arc<ReportClock>) -> Self {
        self.clock = clock;
        self
    }

    /// The names of AWS's quarantine policies (`ListPolicies`, scope AWS,
    /// names starting with [`QUARANTINE_PREFIX`]); read once per run.
    pub async fn quarantine_policies(&self) -> Result<Vec<String>, AwsError> {
        let op = "iam:ListPolicies";
        let mut names = Vec::new();
        let mut pages = self
            .client
            .list_policies()
            .scope(aws_sdk_iam::types::PolicyScopeType::Aws)
            .max_items(1000)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify(op, e))?;
            names.extend(
                page.policies()
                    .iter()
                    .filter_map(|p| p.policy_name())
                    .filter(|n| n.starts_with(QUARANTINE_PREFIX))
                    .map(str::to_owned),
            );
        }
        Ok(names)
    }

    /// The users the quarantine policies `names` reach, directly or through
    /// a group, each with how ("AWSCompromisedKeyQuarantineV2 attached to
    /// the user", "… to its group ops"). A policy this partition does not
    /// have reaches nobody.
    pub async fn quarantined_users(
        &self,
        partition: &str,
        names: &[String],
    ) -> Result<BTreeMap<String, Vec<String>>, AwsError> {
        let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
        for name in names {
            let arn = format!("arn:{partition}:iam::aws:policy/{name}");
            let mut marker: Option<String> = None;
            loop {
                let page = match self
                    .client
                    .list_entities_for_policy()
                    .policy_arn(&arn)
                    .set_marker(marker.clone())
                    .send()
                    .await
                {
                    Ok(p) => p,
                    Err(e) => {
                        let e = classify("iam:ListEntitiesForPolicy", e);
                        if e.code == "NoSuchEntity" {
                            break;
                        }
                        return Err(e);
                    }
                };
                for u in page.policy_users() {
                    if let Some(user) = u.user_name() {
                        out.entry(user.to_owned())
                            .or_default()
                            .push(format!("{name} attached to the user"));
                    }
                }
                for g in page.policy_groups() {
                    let Some(group) = g.group_name() else {
                        continue;
                    };
                    for user in self.group_members(group).await? {
                        out.entry(user)
                            .or_default()
                            .push(format!("{name} attached to its group {group}"));
                    }
                }
                marker = page
                    .marker()
                    .filter(|_| page.is_truncated())
                    .map(str::to_owned);
                if marker.is_none() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Reads what users of this account can do, at the account's own IAM
    /// pace (see [`PolicyReader`]); `run` caches AWS managed documents for
    /// the whole run.
    pub fn policy_reader<'a>(&self, run: &'a PolicyCache) -> PolicyReader<'a> {
        let once = self
            .client
            .config()
            .to_builder()
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        PolicyReader {
            client: aws_sdk_iam::Client::from_conf(once),
            gate: super::gate::Gate::new(POLICY_CALLS_IN_FLIGHT),
            run,
            account: PolicyCache::default(),
        }
    }

    /// The names of a group's members (GetGroup, paginated).
    async fn group_members(&self, group: &str) -> Result<Vec<String>, AwsError> {
        let mut users = Vec::new();
        let mut pages = self
            .client
            .get_group()
            .group_name(group)
            .into_paginator()
            .send();
        while let Some(page) = pages.next().await {
            let page = page.map_err(|e| classify("iam:GetGroup", e))?;
            users.extend(page.users().iter().map(|u| u.user_name().to_owned()));
        }
        Ok(users)
    }

    /// One page of one user (`keywarden doctor`): proves the caller may
    /// list the account's users, reading next to nothing.
    pub async fn probe_users(&self) -> Result<(), AwsError> {
        self.client
            .list_users()
            .max_items(1)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| classify("iam:ListUsers", e))
    }

    /// The account alias, if one is set.
    pub async fn account_alias(&self) -> Result<Option<String>, AwsError> {
        let out = self
            .client
            .list_account_aliases()
            .send()
            .await
            .map_err(|e| classify("iam:ListAccountAliases", e))?;
        Ok(out.account_aliases().first().cloned())
    }

    /// Generates (if needed), waits for and parses the credential report.
    ///
    /// GenerateCredentialReport starts a report (STARTED/INPROGRESS) or says a
    /// fresh one is COMPLETE; LimitExceeded means "ask again later". The wait
    /// is then done with GetCredentialReport itself, which answers
    /// ReportInProgress until the report is ready (one call less per account
    /// than polling Generate first), and ReportExpired or ReportNotPresent
    /// when generation must start again. Waits grow by [`REPORT_POLL_GROWTH`]
    /// up to `max_delay`, within `max_wait`.
    pub async fn credential_report(&self) -> Result<Vec<UserFacts>, ReportError> {
        self.credential_report_in(None)
            .await
            .map(|(users, _)| users)
    }

    /// [`Iam::credential_report`], where each GetCredentialReport is made
    /// holding one of `slots` (the scan's working slots): a poll answered
    /// ReportInProgress gives it back before its wait, the one that brings
    /// the report keeps it and returns it with the users. An account waiting
    /// for its report's generation holds no slot between polls, and its
    /// waits for one are given back to the account's `Budget` (and are not
    /// counted in `max_wait`).
    pub async fn credential_report_in<'s>(
        &self,
        slots: Option<(&'s tokio::sync::Semaphore, &Budget)>,
    ) -> Result<(Vec<UserFacts>, Option<tokio::sync::SemaphorePermit<'s>>), ReportError> {
        let started = tokio::time::Instant::now();
        // Time spent waiting for slots: neither the report's patience
        // (`max_wait`) nor its clock counts it.
        let mut queued_total = Duration::ZERO;
        let (mut delay, mut next_delay) = self.clock.waits(&self.polling);
        // When the report's generation started (GenerateCredentialReport
        // answered STARTED or INPROGRESS): what the clock learns from.
        let mut generating: Option<tokio::time::Instant> = None;
        let mut generate = true;
        loop {
            let mut wait = true;
            if generate {
                match self.client.generate_credential_report().send().await {
                    Ok(out) => {
                        generate = false;
                        // A fresh report is there already: fetch it at once.
                        wait = out.state() != Some(&ReportStateType::Complete);
                        generating = wait.then(tokio::time::Instant::now);
                    }
                    Err(e) => {
                        let e = classify("iam:GenerateCredentialReport", e);
                        if e.code != "LimitExceeded" {
                            return Err(e.into());
                        }
                    }
                }
            } else {
                // The wait for a slot is the scan's, not the report's: the
                // clock learns without it.
                let asked = tokio::time::Instant::now();
                let slot = match slots {
                    Some((slots, budget)) => Some(budget.slot(slots).await),
                    None => None,
                };
                let queued = asked.elapsed();
                queued_total += queued;
                match self.client.get_credential_report().send().await {
                    Ok(out) => {
                        if let Some(at) = generating {
                            self.clock.read_after(at.elapsed().saturating_sub(queued));
                        }
                        let content = out.content().map(|b| b.as_ref()).unwrap_or_default();
                        return Ok((credential_report::parse(content)?, slot));
                    }
                    Err(e) => {
                        let e = classify("iam:GetCredentialReport", e);
                        match e.code.as_str() {
                            "ReportInProgress" => {}
                            "ReportExpired" | "ReportNotPresent" => generate = true,
                            _ => return Err(e.into()),
                        }
                    }
                }
            }
            if wait {
                if started.elapsed().saturating_sub(queued_total) + delay > self.polling.max_wait {
                    return Err(ReportError::NotReady(self.polling.max_wait));
                }
                tokio::time::sleep(delay).await;
                delay = next_delay;
                next_delay = next_delay
                    .mul_f64(REPORT_POLL_GROWTH)
                    .min(self.polling.max_delay);
            }
        }
    }

    /// Every user with keys and last use, by API calls (no tags): the
    /// fallback when the credential report cannot be had. The root user is
    /// included when GetAccountSummary says it has a key.
    pub async fn enumerate_users(&self) -> Result<Vec<UserFacts>, AwsError> {
        let users: Vec<(String, String)> = self
            .client
            .list_users()
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify("iam:ListUsers", e))?
            .into_iter()
            .map(|u| (u.user_name().to_owned(), u.arn().to_owned()))
            .collect();
        // A few users in flight at once: each needs 1 + keys calls.
        let mut out: Vec<UserFacts> = futures::stream::iter(users)
            .map(|(name, arn)| async move {
                let keys = self.access_keys(&name, &[]).await?;
                Ok::<_, AwsError>(UserFacts {
                    user_name: name,
                    arn,
                    is_root: false,
                    keys,
                    tags: Vec::new(),
                    quarantine: Vec::new(),
                    console_password: false,
                })
            })
            .buffered(4)
            .try_collect()
            .await?;
        if let Some(root) = self.root_user().await? {
            out.insert(0, root);
        }
        Ok(out)
    }

    async fn root_user(&self) -> Result<Option<UserFacts>, AwsError> {
        let out = self
            .client
            .get_account_summary()
            .send()
            .await
            .map_err(|e| classify("iam:GetAccountSummary", e))?;
        let present = out
            .summary_map()
            .and_then(|m| m.get(&SummaryKeyType::AccountAccessKeysPresent))
            .copied()
            .unwrap_or(0);
        Ok((present > 0).then(|| UserFacts {
            user_name: ROOT_USER.to_owned(),
            arn: String::new(),
            is_root: true,
            // GetAccountSummary says only that a root key exists, not when it was made or used.
            keys: vec![KeyFacts {
                access_key_id: None,
                status: KeyStatus::Active,
                created_at: None,
                last_used_at: None,
                last_used_service: None,
                last_used_region: None,
            }],
            tags: Vec::new(),
            quarantine: Vec::new(),
            console_password: false,
        }))
    }

    /// The user's keys with ids and exact creation dates. Last use is taken
    /// from `known` (the credential report's keys) when a key there has the
    /// same creation time, and asked of GetAccessKeyLastUsed otherwise.
    pub async fn access_keys(
        &self,
        user_name: &str,
        known: &[KeyFacts],
    ) -> Result<Vec<KeyFacts>, AwsError> {
        let listed = self.list_keys(user_name).await?;
        let mut keys = Vec::with_capacity(listed.len());
        for (id, status, created_at) in listed {
            let twin = known.iter().find(|k| match (k.created_at, created_at) {
                (Some(a), Some(b)) => (a.as_second() - b.as_second()).abs() <= 1,
                _ => false,
            });
            let (last_used_at, last_used_service, last_used_region) = match twin {
                Some(k) => (
                    k.last_used_at,
                    k.last_used_service.clone(),
                    k.last_used_region.clone(),
                ),
                None => self.last_used(&id).await?,
            };
            keys.push(KeyFacts {
                access_key_id: Some(id),
                status,
                created_at,
                last_used_at,
                last_used_service,
                last_used_region,
            });
        }
        Ok(keys)
    }

    async fn last_used(
        &self,
        id: &AccessKeyId,
    ) -> Result<(Option<Timestamp>, Option<String>, Option<String>), AwsError> {
        let out = self
            .client
            .get_access_key_last_used()
            .access_key_id(id.as_str())
            .send()
            .await
            .map_err(|e| classify("iam:GetAccessKeyLastUsed", e))?;
        Ok(match out.access_key_last_used() {
            Some(u) => (
                u.last_used_date().and_then(timestamp),
                Some(u.service_name())
                    .filter(|s| !s.is_empty() && *s != "N/A")
                    .map(str::to_owned),
                Some(u.region())
                    .filter(|s| !s.is_empty() && *s != "N/A")
                    .map(str::to_owned),
            ),
            None => (None, None, None),
        })
    }

    /// The user's tags, all pages.
    pub async fn user_tags(&self, user_name: &str) -> Result<Vec<(String, String)>, AwsError> {
        let op = "iam:ListUserTags";
        let tags = self
            .client
            .list_user_tags()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(tags
            .into_iter()
            .map(|t| (t.key().to_owned(), t.value().to_owned()))
            .collect())
    }

    /// The user's keys as ListAccessKeys says now: id, status and exact
    /// creation date only (no other calls: the enforcement role may do no more).
    pub async fn list_keys(
        &self,
        user_name: &str,
    ) -> Result<Vec<(AccessKeyId, KeyStatus, Option<Timestamp>)>, AwsError> {
        let op = "iam:ListAccessKeys";
        let listed: Vec<_> = self
            .client
            .list_access_keys()
            .user_name(user_name)
            .into_paginator()
            .items()
            .send()
            .try_collect()
            .await
            .map_err(|e| classify(op, e))?;
        listed
            .into_iter()
            .map(|meta| {
                let id = AccessKeyId::parse(meta.access_key_id().unwrap_or_default())
                    .map_err(|e| AwsError::new(op, "InvalidResponse", e.to_string()))?;
                let status = match meta.status() {
                    Some(StatusType::Active) => KeyStatus::Active,
                    _ => KeyStatus::Inactive,
                };
                Ok((id, status, meta.create_date().and_then(timestamp)))
            })
            .collect()
    }

    /// `UpdateAccessKey Status=Inactive`: reversible.
    pub async fn deactivate_key(&self, user_name: &str, key: &AccessKeyId) -> Result<(), AwsError> {
        self.client
            .update_access_key()
            .user_name(user_name)
            .access_key_id(key.as_str())
            .status(StatusType::Inactive)
            .send()
            .await
            .map_err(|e| classify("iam:UpdateAccessKey", e))?;
        Ok(())
    }

    /// `DeleteAccessKey`: irreversible.
    pub async fn delete_key(&self, user_name: &str, key: &AccessKeyId) -> Result<(), AwsError> {
        self.client
            .delete_access_key()
            .user_name(user_name)
            .access_key_id(key.as_str())
            .send()
            .await
            .map_err(|e| classify("iam:DeleteAccessKey", e))?;
        Ok(())
    }
}

/// The name at the end of a policy ARN.
fn policy_name(arn: &str) -> &str {
    arn.rsplit('/').next().unwrap_or(arn)
}

/// Policy look-ups in flight at once in one account: one user's four (each
/// call in flight holds a connection, and 128 accounts scan at once).
const POLICY_CALLS_IN_FLIGHT: usize = 4;

/// Reads users' policy documents in one account. Its calls go through a
/// gate of their own (`aws::gate`: one attempt per call, paced by additive
/// increase and multiplicative decrease): IAM's budget is per account, and
/// four users at a time with four look-ups each otherwise draw throttling
/// storms in large accounts. The account's own managed policies and its
/// groups' documents are read once per reader.
#[derive(Debug)]
pub struct PolicyReader<'a> {
    client: aws_sdk_iam::Client,
    gate: super::gate::Gate,
    run: &'a PolicyCache,
    account: PolicyCache,
}

impl PolicyReader<'_> {
    /// Every policy document of `user` (attached and inline, its own and
    /// its groups'), and its permissions boundary.
    pub async fn user_policies(&self, user: &str) -> Result<UserPolicies, AwsError> {
        let c = &self.client;
        let mut out = UserPolicies::default();
        // The four look-ups at once: one round trip, not four.
        let (me, attached, inline, groups) = futures::join!(
            self.gate.call(|| async {
                c.get_user()
                    .user_name(user)
                    .send()
                    .await
                    .map_err(|e| classify("iam:GetUser", e))
            }),
            self.gate.call(|| async {
                c.list_attached_user_policies()
                    .user_name(user)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("iam:ListAttachedUserPolicies", e))
            }),
            self.gate.call(|| async {
                c.list_user_policies()
                    .user_name(user)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("iam:ListUserPolicies", e))
            }),
            self.gate.call(|| async {
                c.list_groups_for_user()
                    .user_name(user)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("iam:ListGroupsForUser", e))
            }),
        );
        if let Some(arn) = me?
            .user()
            .and_then(|u| u.permissions_boundary())
            .and_then(|b| b.permissions_boundary_arn())
        {
            let doc = self.managed_document(arn).await?;
            out.boundary = Some((policy_name(arn).to_owned(), doc));
        }
        for p in attached? {
            let (Some(name), Some(arn)) = (p.policy_name(), p.policy_arn()) else {
                continue;
            };
            let doc = self.managed_document(arn).await?;
            out.identity
                .push((format!("{name} attached to the user"), doc));
        }
        for name in inline? {
            let doc = self
                .gate
                .call(|| async {
                    c.get_user_policy()
                        .user_name(user)
                        .policy_name(&name)
                        .send()
                        .await
                        .map_err(|e| classify("iam:GetUserPolicy", e))
                })
                .await?
                .policy_document()
                .to_owned();
            out.identity.push((format!("inline policy {name}"), doc));
        }
        for group in groups? {
            let group = group.group_name();
            let cached = self
                .account
                .groups
                .lock()
                .ok()
                .and_then(|g| g.get(group).cloned());
            let docs = match cached {
                Some(d) => d,
                None => {
                    let d = self.group_policies(group).await?;
                    if let Ok(mut g) = self.account.groups.lock() {
                        g.insert(group.to_owned(), d.clone());
                    }
                    d
                }
            };
            out.identity.extend(docs);
        }
        Ok(out)
    }

    async fn group_policies(&self, group: &str) -> Result<Vec<(String, String)>, AwsError> {
        let c = &self.client;
        let mut out = Vec::new();
        let (attached, inline) = futures::join!(
            self.gate.call(|| async {
                c.list_attached_group_policies()
                    .group_name(group)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("iam:ListAttachedGroupPolicies", e))
            }),
            self.gate.call(|| async {
                c.list_group_policies()
                    .group_name(group)
                    .into_paginator()
                    .items()
                    .send()
                    .try_collect()
                    .await
                    .map_err(|e| classify("iam:ListGroupPolicies", e))
            }),
        );
        for p in attached? {
            let (Some(name), Some(arn)) = (p.policy_name(), p.policy_arn()) else {
                continue;
            };
            let doc = self.managed_document(arn).await?;
            out.push((format!("{name} attached to group {group}"), doc));
        }
        for name in inline? {
            let doc = self
                .gate
                .call(|| async {
                    c.get_group_policy()
                        .group_name(group)
                        .policy_name(&name)
                        .send()
                        .await
                        .map_err(|e| classify("iam:GetGroupPolicy", e))
                })
                .await?
                .policy_document()
                .to_owned();
            out.push((format!("inline policy {name} of group {group}"), doc));
        }
        Ok(out)
    }

    /// A managed policy's default version, from the cache where it is: AWS
    /// managed policies (`arn:…:iam::aws:policy/…`) in the run's, the
    /// account's own in the reader's.
    async fn managed_document(&self, arn: &str) -> Result<String, AwsError> {
        let cache = if arn.contains(":iam::aws:policy/") {
            self.run
        } else {
            &self.account
        };
        if let Some(d) = cache.managed.lock().ok().and_then(|m| m.get(arn).cloned()) {
            return Ok(d);
        }
        let c = &self.client;
        let version = self
            .gate
            .call(|| async {
                c.get_policy()
                    .policy_arn(arn)
                    .send()
                    .await
                    .map_err(|e| classify("iam:GetPolicy", e))
            })
            .await?
            .policy()
            .and_then(|p| p.default_version_id())
            .unwrap_or("v1")
            .to_owned();
        let doc = self
            .gate
            .call(|| async {
                c.get_policy_version()
                    .policy_arn(arn)
                    .version_id(&version)
                    .send()
                    .await
                    .map_err(|e| classify("iam:GetPolicyVersion", e))
            })
            .await?
            .policy_version()
            .and_then(|v| v.document())
            .unwrap_or_default()
            .to_owned();
        if let Ok(mut m) = cache.managed.lock() {
            m.insert(arn.to_owned(), doc.clone());
        }
        Ok(doc)
    }
}
