//! The Step Functions workflow, for Organizations that outgrow one Lambda
//! invocation: the same binary, one step per invocation, the run's files
//! in the state bucket under `<organization>/workflow/<run>/`.
//!
//! - `plan`: identify, list the accounts in scope, write `accounts.json`
//!   (the scan map's ItemReader) and `plan.json`.
//! - `shard`: scan one batch of accounts (the map's ItemBatcher), write
//!   `shards/<first account>.json`. A retried shard whose file exists is done.
//! - `finish`: merge the shards (an account no shard reported is failed,
//!   named), bring the ledger up to date, enforce, export, post the chat
//!   summary, render every owner message into `mail/NNNNN.json` and the
//!   delivery map's `mail.json`, keep the ledger as `ledger.json` with the
//!   version it was read as; `report.json` last (a retried finish that
//!   finds it is done).
//! - `deliver`: send one mail batch at its share of the SES rate, write
//!   `sent/NNNNN.json`. A retried batch whose file exists is done.
//! - `close`: record what was delivered in the ledger, send the digest
//!   (naming every message not delivered, a batch that never ran included),
//!   save the ledger (conditional on the version `finish` read: a run that
//!   saved in between is a conflict, nothing is overwritten), archive the
//!   report, write `closed.json`.
//!
//! Nothing here decides what a finding is or who is told: `scan`, `run` and
//! `notify` do, exactly as in a single invocation, so the results are equal.

use std::collections::{BTreeMap, BTreeSet};

use futures::{StreamExt, TryStreamExt};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::aws::sts::Caller;
use crate::core::ledger::{Changes, Ledger, Stage};
use crate::core::model::{Account, AccountId};
use crate::core::report::{
    AccountOutcome, DeliveryOutcome, MessageKind, Notification, Report, ReportBuilder, StageError,
};
use crate::deadline::Deadline;
use crate::notify::{Delivery, Notifier, Outgoing};
use crate::run::Plan;
use crate::scan::{Identity, Mode, RunOptions, Scanner};
use crate::state::{LedgerSession, Store, StoreError, Version};

/// Owner messages per delivery batch (one `mail/NNNNN.json`).
pub const MAIL_BATCH: usize = 50;

/// One run of the workflow: what every step is told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunRef {
    /// `2026-11-30T101500Z`: the folder of this run's files.
    pub id: String,
    pub organization: String,
    pub evaluated_at: Timestamp,
    /// Render every message, send nothing, save nothing.
    #[serde(default)]
    pub dry_run: bool,
}

impl RunRef {
    fn folder(&self) -> String {
        format!("{}/workflow/{}", self.organization, self.id)
    }
    fn file(&self, name: &str) -> String {
        format!("{}/{name}", self.folder())
    }
    fn delivery(&self) -> Delivery {
        if self.dry_run {
            Delivery::DryRun
        } else {
            Delivery::Ses
        }
    }
}

/// What the execution was started with. The schedule passes
/// `{"source": "keywarden.schedule"}`: other fields are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct PlanInput {
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Only these accounts (within the configured scope).
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
    /// Refused when present: whoever can start an execution must not pick
    /// the clock the shared ledger and enforcement run by.
    #[serde(default)]
    pub now: Option<serde_json::Value>,
}

/// A mail batch, as the delivery map's ItemReader hands it over.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchRef {
    pub key: String,
}

/// One step's event.
#[derive(Debug, Deserialize)]
#[serde(tag = "step", rename_all = "snake_case")]
pub enum StepEvent {
    Plan {
        #[serde(default)]
        input: serde_json::Value,
        /// The scan map's batch size (the definition passes its
        /// ItemBatcher's): with it the plan writes each batch's share of the
        /// ledger. Without it (an older definition) each shard loads the
        /// ledger.
        #[serde(default)]
        accounts_per_batch: Option<usize>,
    },
    Shard {
        run: RunRef,
        accounts: Vec<Account>,
        /// How many shards run side by side (the map's MaxConcurrency).
        #[serde(default = "one")]
        shards: u32,
    },
    Finish {
        run: RunRef,
    },
    Deliver {
        run: RunRef,
        batch: BatchRef,
        /// How many batches send side by side (the map's MaxConcurrency).
        #[serde(default = "one")]
        senders: u32,
    },
    Close {
        run: RunRef,
    },
}

fn one() -> u32 {
    1
}

/// What the plan step keeps for the finish step.
#[derive(Debug, Serialize, Deserialize)]
struct PlanFile {
    schema: String,
    run: RunRef,
    caller: Caller,
    management: Option<AccountId>,
    accounts: usize,
    errors: Vec<StageError>,
    unknown: Vec<AccountId>,
}

/// What the finish step keeps for the close step.
#[derive(Debug, Serialize, Deserialize)]
struct FinishFile {
    schema: String,
    report: Report,
    changes: Option<Changes>,
    /// Owner messages planned (the digest is numbered after them).
    owners: usize,
    batches: Vec<BatchRef>,
}

/// The ledger between finish and close.
#[derive(Debug, Serialize, Deserialize)]
struct LedgerFile {
    ledger: Ledger,
    /// The stored version finish read: close saves only over it.
    version: Version,
}

/// One owner message as its delivery batch fared.
#[derive(Debug, Serialize, Deserialize)]
struct Sent {
    note: Notification,
    notices: Vec<(String, Stage)>,
}

const SCHEMA: &str = "keywarden.workflow/v1";

/// A step that cannot go on.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error("the workflow keeps its files in S3: set `state` to s3://bucket/prefix (it is {0})")]
    NotS3(String),
    #[error("{location}: {reason}")]
    File { location: String, reason: String },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Scan(#[from] crate::scan::ScanError),
    #[error("event field `{field}`: {reason}")]
    Event { field: &'static str, reason: String },
}

/// What every step needs: built once per cold start.
pub struct Parts<'a> {
    pub scanner: &'a Scanner,
    pub notifier: &'a Notifier,
    pub store: &'a Store,
    pub cadence: crate::core::ledger::Cadence,
    pub enforcer: &'a crate::enforce::Enforcer,
    pub chat: Option<&'a crate::deliver::webhook::Chat>,
    pub securityhub: Option<&'a crate::deliver::securityhub::SecurityHubExport>,
}

/// Runs one step; its JSON output is the Lambda's result (the state
/// machine passes it on) and the CLI's `keywarden workflow` output. `close`
/// returns the run's [`Report`] too, for the caller's exit status.
pub async fn step(
    parts: &Parts<'_>,
    event: StepEvent,
    deadline: Option<Deadline>,
) -> Result<(serde_json::Value, Option<Report>), StepError> {
    let out = match event {
        StepEvent::Plan {
            input,
            accounts_per_batch,
        } => {
            let batching = accounts_per_batch
                .filter(|n| *n > 0)
                .map(|per_batch| Batching { per_batch });
            Box::pin(plan(parts, input, batching)).await?
        }
        StepEvent::Shard {
            run,
            accounts,
            shards,
        } => Box::pin(shard(parts, &run, accounts, shards, deadline)).await?,
        StepEvent::Finish { run } => Box::pin(finish(parts, &run, deadline)).await?,
        StepEvent::Deliver {
            run,
            batch,
            senders,
        } => Box::pin(deliver(parts, &run, &batch, senders, deadline)).await?,
        StepEvent::Close { run } => {
            return Box::pin(close(parts, &run))
                .await
                .map(|(v, r)| (v, Some(r)))
        }
    };
    Ok((out, None))
}

async fn read<T: for<'de> Deserialize<'de>>(
    store: &Store,
    key: &str,
) -> Result<Option<T>, StepError> {
    let (bytes, _) = store.load(key).await?;
    bytes
        .map(|b| {
            serde_json::from_slice(&b).map_err(|e| StepError::File {
                location: store.describe(key),
                reason: format!("not a file this version of keywarden wrote: {e}"),
            })
        })
        .transpose()
}

async fn need<T: for<'de> Deserialize<'de>>(store: &Store, key: &str) -> Result<T, StepError> {
    read(store, key).await?.ok_or_else(|| StepError::File {
        location: store.describe(key),
        reason: "missing (did the step before this one finish?)".to_owned(),
    })
}

fn to_json<T: Serialize>(store: &Store, key: &str, value: &T) -> Result<Vec<u8>, StepError> {
    serde_json::to_vec(value).map_err(|e| StepError::File {
        location: store.describe(key),
        reason: e.to_string(),
    })
}

/// Writes a run file a retried step may write again (with the same
/// content: a shard's, a batch's, `finish`'s before its `report.json`).
async fn write<T: Serialize>(store: &Store, key: &str, value: &T) -> Result<(), StepError> {
    let bytes = to_json(store, key, value)?;
    let version = store.load(key).await?.1;
    store.save(key, bytes, &version).await?;
    Ok(())
}

/// Writes a file that must not exist yet (a new run's): another execution
/// that planned a run with the same id is a conflict, never overwritten.
async fn create<T: Serialize>(store: &Store, key: &str, value: &T) -> Result<(), StepError> {
    let bytes = to_json(store, key, value)?;
    store.save(key, bytes, &Version::Absent).await?;
    Ok(())
}

fn object(store: &Store, key: &str) -> Result<serde_json::Value, StepError> {
    let (bucket, key) = store
        .s3_object(key)
        .ok_or_else(|| StepError::NotS3(store.describe("")))?;
    Ok(serde_json::json!({ "Bucket": bucket, "Key": key }))
}

async fn plan(
    parts: &Parts<'_>,
    input: serde_json::Value,
    batching: Option<Batching>,
) -> Result<serde_json::Value, StepError> {
    let input: PlanInput = match input {
        serde_json::Value::Null => PlanInput::default(),
        v => serde_json::from_value(v).map_err(|e| StepError::Event {
            field: "input",
            reason: e.to_string(),
        })?,
    };
    let store = parts.store;
    if store.s3_object("").is_none() {
        return Err(StepError::NotS3(store.describe("")));
    }
    let identity = parts.scanner.identify(Mode::Organization).await?;
    if input.now.is_some() {
        return Err(StepError::Event {
            field: "input.now",
            reason: "is refused: a run's clock is the wall clock (the shared ledger and enforcement depend on it)".to_owned(),
        });
    }
    let now = parts
        .scanner
        .settings()
        .clock_override
        .unwrap_or_else(Timestamp::now);
    let mut opts = RunOptions::new(Mode::Organization, now);
    if let Some(ids) = &input.accounts {
        opts.only_accounts = Some(
            ids.iter()
                .map(|id| AccountId::parse(id))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| StepError::Event {
                    field: "input.accounts",
                    reason: e.to_string(),
                })?,
        );
    }
    let dry_run = input.dry_run.unwrap_or(false);
    let id = now.strftime("%Y-%m-%dT%H%M%SZ").to_string();
    // One delivering run at a time, a workflow's or a single invocation's:
    // the lease is held from here to `close`; a plan that fails gives it back.
    let lease = if dry_run {
        None
    } else {
        Some(
            store
                .acquire_lease_for(
                    &identity.organization,
                    &workflow_holder(&id),
                    crate::state::WORKFLOW_LEASE_SECS,
                )
                .await?,
        )
    };
    let planned = Box::pin(plan_leased(
        parts, &identity, opts, id, now, dry_run, batching,
    ))
    .await;
    if let (Err(_), Some(lease)) = (&planned, &lease) {
        store.release_lease(&identity.organization, lease).await;
    }
    planned
}

/// What a workflow run's lease names as its holder.
fn workflow_holder(run_id: &str) -> String {
    format!(", workflow run {run_id}")
}

/// [`plan`] once the lease is held.
async fn plan_leased(
    parts: &Parts<'_>,
    identity: &Identity,
    opts: RunOptions,
    id: String,
    now: Timestamp,
    dry_run: bool,
    batching: Option<Batching>,
) -> Result<serde_json::Value, StepError> {
    let store = parts.store;
    let scope = parts.scanner.list_scope(&opts).await?;
    let run = RunRef {
        id,
        organization: identity.organization.clone(),
        evaluated_at: now,
        dry_run,
    };
    if let Some(batching) = batching {
        let session = LedgerSession::load(store.clone(), &run.organization, false).await?;
        let memory = Memories::of(session.ledger);
        // Each batch's share of the ledger, a few written at once. (The
        // manifest stays in listing order: dealing the accounts with the
        // most open findings round the first batches was measured and
        // gained nothing, docs/benchmarks.md.)
        let batches: Vec<Memory> = scope
            .accounts
            .chunks(batching.per_batch)
            .map(|chunk| memory.of_batch(chunk))
            .collect();
        let run = &run;
        futures::stream::iter(batches)
            .map(|m| async move {
                match m.accounts.first() {
                    Some(first) => create(store, &memory_key(run, first), &m).await,
                    None => Ok(()),
                }
            })
            .buffer_unordered(16)
            .try_collect::<Vec<()>>()
            .await?;
    }
    let manifest = run.file("accounts.json");
    create(store, &manifest, &scope.accounts).await?;
    write(
        store,
        &run.file("plan.json"),
        &PlanFile {
            schema: SCHEMA.to_owned(),
            run: run.clone(),
            caller: identity.caller.clone(),
            management: identity.management.clone(),
            accounts: scope.accounts.len(),
            errors: scope.errors,
            unknown: scope.unknown,
        },
    )
    .await?;
    info!(run = %run.id, accounts = scope.accounts.len(), "workflow planned");
    Ok(serde_json::json!({
        "run": run,
        "manifest": object(store, &manifest)?,
        "accounts": scope.accounts.len(),
    }))
}

/// How the scan map batches the manifest (see [`StepEvent::Plan`]).
#[derive(Debug, Clone, Copy)]
struct Batching {
    per_batch: usize,
}

/// A batch's share of the ledger, what its shard remembers (the plan
/// writes one per batch: a shard reads tens of kilobytes, not the whole
/// ledger).
#[derive(Debug, Default, Serialize, Deserialize)]
struct Memory {
    /// The batch's accounts: a shard with an account not here loads the
    /// ledger instead.
    accounts: Vec<AccountId>,
    open_users: BTreeMap<AccountId, BTreeSet<String>>,
    account_tags: BTreeMap<AccountId, crate::core::tag_cache::CachedTags>,
    privileges: crate::core::privilege::cache::Cache,
    usage: crate::core::usage::Cache,
}

/// The ledger's memory by account, to cut into batches.
struct Memories {
    open_users: BTreeMap<AccountId, BTreeSet<String>>,
    account_tags: BTreeMap<AccountId, crate::core::tag_cache::CachedTags>,
    privileges: crate::core::privilege::cache::Cache,
    /// Footprints by the account of their key (from the ledger's entries;
    /// a footprint whose key has no entry is left out, and read again if
    /// its key is flagged again).
    usage: BTreeMap<AccountId, crate::core::usage::Cache>,
}

impl Memories {
    fn of(mut ledger: Ledger) -> Self {
        let accounts: BTreeMap<crate::core::model::AccessKeyId, AccountId> = ledger
            .entries
            .values()
            .filter_map(|e| Some((e.access_key_id.clone()?, e.account_id.clone())))
            .collect();
        let mut usage: BTreeMap<AccountId, crate::core::usage::Cache> = BTreeMap::new();
        for (key, cached) in std::mem::take(&mut ledger.usage) {
            if let Some(account) = accounts.get(&key) {
                usage
                    .entry(account.clone())
                    .or_default()
                    .insert(key, cached);
            }
        }
        Self {
            open_users: ledger.open_users(),
            account_tags: std::mem::take(&mut ledger.account_tags),
            privileges: std::mem::take(&mut ledger.privileges),
            usage,
        }
    }

    fn of_batch(&self, batch: &[Account]) -> Memory {
        let mut m = Memory::default();
        for a in batch {
            let id = &a.id;
            m.accounts.push(id.clone());
            if let Some(v) = self.open_users.get(id) {
                m.open_users.insert(id.clone(), v.clone());
            }
            if let Some(v) = self.account_tags.get(id) {
                m.account_tags.insert(id.clone(), v.clone());
            }
            if let Some(v) = self.privileges.get(id) {
                m.privileges.insert(id.clone(), v.clone());
            }
            if let Some(v) = self.usage.get(id) {
                m.usage
                    .extend(v.iter().map(|(k, c)| (k.clone(), c.clone())));
            }
        }
        m.accounts.sort();
        m
    }
}

/// Where a batch's memory is: by its first (smallest) account id, as its
/// shard file is.
fn memory_key(run: &RunRef, first: &AccountId) -> String {
    run.file(&format!("memory/{first}.json"))
}

/// A shard's memory: its batch's share of the ledger when the plan wrote
/// one that covers every account of the shard, else the ledger itself.
async fn remembered_for(
    parts: &Parts<'_>,
    run: &RunRef,
    first: &AccountId,
    accounts: &[Account],
    opts: &mut RunOptions,
) -> Result<&'static str, StepError> {
    if let Some(m) = read::<Memory>(parts.store, &memory_key(run, first)).await? {
        let covered: BTreeSet<&AccountId> = m.accounts.iter().collect();
        if accounts.iter().all(|a| covered.contains(&a.id)) {
            opts.open_users = std::sync::Arc::new(m.open_users);
            opts.account_tags = std::sync::Arc::new(m.account_tags);
            opts.privileges = std::sync::Arc::new(m.privileges);
            opts.usage = Some(std::sync::Arc::new(m.usage));
            return Ok("batch");
        }
        warn!(
            first = %first,
            "the batch's memory does not cover this shard's accounts (the map batched differently): loading the ledger"
        );
    }
    remembered(parts, run, opts).await?;
    Ok("ledger")
}

/// The ledger's memory for the scan (read only): users with open findings
/// and the cached account tags.
async fn remembered(
    parts: &Parts<'_>,
    run: &RunRef,
    opts: &mut RunOptions,
) -> Result<(), StepError> {
    let mut session = LedgerSession::load(parts.store.clone(), &run.organization, false).await?;
    // A read-only copy for this shard: its caches are moved, not copied.
    opts.open_users = std::sync::Arc::new(session.ledger.open_users());
    opts.account_tags = std::sync::Arc::new(std::mem::take(&mut session.ledger.account_tags));
    opts.privileges = std::sync::Arc::new(std::mem::take(&mut session.ledger.privileges));
    opts.usage = Some(std::sync::Arc::new(std::mem::take(
        &mut session.ledger.usage,
    )));
    Ok(())
}

async fn shard(
    parts: &Parts<'_>,
    run: &RunRef,
    accounts: Vec<Account>,
    shards: u32,
    deadline: Option<Deadline>,
) -> Result<serde_json::Value, StepError> {
    let Some(first) = accounts.iter().map(|a| a.id.clone()).min() else {
        return Ok(serde_json::json!({ "accounts": 0 }));
    };
    let key = run.file(&format!("shards/{first}.json"));
    if let Some(done) = read::<Vec<AccountOutcome>>(parts.store, &key).await? {
        info!(key, "shard already scanned (a retry): kept");
        return Ok(shard_summary(&key, &done));
    }
    let plan: PlanFile = need(parts.store, &run.file("plan.json")).await?;
    let mut opts = RunOptions::new(Mode::Organization, run.evaluated_at);
    opts.deadline = deadline;
    let memory = remembered_for(parts, run, &first, &accounts, &mut opts).await?;
    let scanner = parts.scanner.share(shards);
    let outcomes = scanner.scan_accounts(&plan.caller, accounts, &opts).await;
    write(parts.store, &key, &outcomes).await?;
    let mut summary = shard_summary(&key, &outcomes);
    // Where the shard's memory came from: its batch's share of the ledger
    // (`memory/<first account>.json`) or the whole ledger.
    summary["memory"] = serde_json::json!(memory);
    Ok(summary)
}

fn shard_summary(key: &str, outcomes: &[AccountOutcome]) -> serde_json::Value {
    serde_json::json!({
        "key": key,
        "accounts": outcomes.len(),
        "failed": outcomes.iter().filter(|o| o.error.is_some()).count(),
    })
}

/// Merges the shards into the run's report; an account of the manifest no
/// shard reported is failed, and says why.
async fn merge(parts: &Parts<'_>, run: &RunRef, plan: PlanFile) -> Result<Report, StepError> {
    let store = parts.store;
    let accounts: Vec<Account> = need(store, &run.file("accounts.json")).await?;
    let mut builder = ReportBuilder::new(run.evaluated_at, parts.scanner.settings().policy);
    let mut reported = BTreeSet::new();
    for key in store.list(&run.file("shards")).await? {
        let outcomes: Vec<AccountOutcome> = need(store, &key).await?;
        for o in outcomes {
            if reported.insert(o.account.id.clone()) {
                builder.add(o);
            }
        }
    }
    for account in accounts {
        if !reported.contains(&account.id) {
            warn!(account_id = %account.id, "no shard reported this account");
            builder.add(AccountOutcome::failed(
                account,
                StageError {
                    stage: "workflow".to_owned(),
                    code: "ShardNotFinished".to_owned(),
                    message: "not scanned: its shard of the workflow did not finish (see the execution's scan map run; the next run scans it)".to_owned(),
                },
            ));
        }
    }
    for e in plan.errors {
        builder.add_error(e);
    }
    builder.set_unknown_accounts(plan.unknown);
    Ok(builder.finish())
}

async fn finish(
    parts: &Parts<'_>,
    run: &RunRef,
    deadline: Option<Deadline>,
) -> Result<serde_json::Value, StepError> {
    let store = parts.store;
    let report_key = run.file("report.json");
    let finished = |owners: usize, batches: usize| -> Result<serde_json::Value, StepError> {
        Ok(serde_json::json!({
            "run": run,
            "mail": object(store, &run.file("mail.json"))?,
            "messages": owners,
            "batches": batches,
        }))
    };
    if let Some(done) = read::<FinishFile>(store, &report_key).await? {
        info!("run already finished (a retry): kept");
        return finished(done.owners, done.batches.len());
    }
    let plan: PlanFile = need(store, &run.file("plan.json")).await?;
    let identity = Identity {
        caller: plan.caller.clone(),
        organization: run.organization.clone(),
        management: plan.management.clone(),
    };
    let mut report = merge(parts, run, plan).await?;
    let delivery = run.delivery();
    let writes = !run.dry_run;
    let mut session = LedgerSession::load(store.clone(), &run.organization, writes).await?;
    let settle_plan = Plan {
        notify: Some((parts.notifier, &delivery)),
        state: Some(store.clone()),
        cadence: parts.cadence,
        enforcer: Some(parts.enforcer),
        chat: parts.chat,
        securityhub: parts.securityhub,
    };
    let changes = Box::pin(crate::run::settle(
        &settle_plan,
        &identity,
        &mut report,
        Some(&mut session),
        deadline,
        parts.scanner.settings(),
    ))
    .await;
    // Rendered a batch at a time (a first run at scale has thousands).
    let people = parts.notifier.plan(&report, Some(&session.ledger));
    let mut batches = Vec::new();
    for (i, chunk) in people.chunks(MAIL_BATCH).enumerate() {
        let outgoing: Vec<Outgoing> = chunk
            .iter()
            .enumerate()
            .map(|(j, person)| parts.notifier.render(&report, person, i * MAIL_BATCH + j))
            .collect();
        let key = run.file(&format!("mail/{:05}.json", i + 1));
        write(store, &key, &outgoing).await?;
        batches.push(BatchRef { key });
    }
    write(store, &run.file("mail.json"), &batches).await?;
    let (ledger, version) = session.snapshot();
    write(
        store,
        &run.file("ledger.json"),
        &LedgerFile {
            ledger: ledger.clone(),
            version: version.clone(),
        },
    )
    .await?;
    let owners = people.len();
    let count = batches.len();
    write(
        store,
        &report_key,
        &FinishFile {
            schema: SCHEMA.to_owned(),
            report,
            changes,
            owners,
            batches,
        },
    )
    .await?;
    info!(run = %run.id, messages = owners, batches = count, "workflow finished the scan");
    finished(owners, count)
}

/// The name of a mail batch's outcome file.
fn sent_key(run: &RunRef, batch: &BatchRef) -> Result<String, StepError> {
    let name = batch
        .key
        .strip_prefix(&run.file("mail/"))
        .filter(|n| !n.is_empty() && !n.contains('/'))
        .ok_or_else(|| StepError::Event {
            field: "batch.key",
            reason: format!("{:?} is not a mail batch of run {}", batch.key, run.id),
        })?;
    Ok(run.file(&format!("sent/{name}")))
}

async fn deliver(
    parts: &Parts<'_>,
    run: &RunRef,
    batch: &BatchRef,
    senders: u32,
    deadline: Option<Deadline>,
) -> Result<serde_json::Value, StepError> {
    let store = parts.store;
    let key = sent_key(run, batch)?;
    let summary = |sent: &[Sent]| {
        serde_json::json!({
            "key": key,
            "messages": sent.len(),
            "failed": sent.iter().filter(|s| s.note.outcome == DeliveryOutcome::Failed).count(),
        })
    };
    if let Some(done) = read::<Vec<Sent>>(store, &key).await? {
        info!(key, "batch already delivered (a retry): not sent again");
        return Ok(summary(&done));
    }
    let outgoing: Vec<Outgoing> = need(store, &batch.key).await?;
    let mut transport = parts.notifier.transport(&run.delivery(), senders).await;
    // Keep the last seconds for writing what was sent.
    let stop_at = deadline.map(|d| d.at - d.reserve.min(std::time::Duration::from_secs(10)));
    let mut sent = Vec::with_capacity(outgoing.len());
    let rules = &parts.scanner.settings().owners;
    for out in outgoing {
        let note = match parts.notifier.verified(&out, rules) {
            Ok(safe) => {
                parts
                    .notifier
                    .send_owner(&mut transport, &safe, stop_at)
                    .await
            }
            Err(why) => {
                warn!(recipient = %out.recipient, error = %why, "owner message refused");
                Notification {
                    kind: MessageKind::Owner,
                    recipients: vec![out.recipient.to_string()],
                    subject: String::new(),
                    findings: out.findings as u64,
                    outcome: DeliveryOutcome::Failed,
                    message_id: None,
                    error: Some(why),
                    file: None,
                }
            }
        };
        sent.push(Sent {
            note,
            notices: out.notices,
        });
    }
    write(store, &key, &sent).await?;
    Ok(summary(&sent))
}

async fn close(parts: &Parts<'_>, run: &RunRef) -> Result<(serde_json::Value, Report), StepError> {
    let store = parts.store;
    let closed_key = run.file("closed.json");
    if let Some(report) = read::<Report>(store, &closed_key).await? {
        info!("run already closed (a retry): the digest is not sent again");
        return Ok((
            serde_json::to_value(crate::run::RunSummary::of(&report)).unwrap_or_default(),
            report,
        ));
    }
    let FinishFile {
        mut report,
        changes,
        owners,
        batches,
        ..
    } = need(store, &run.file("report.json")).await?;
    let LedgerFile { ledger, version } = need(store, &run.file("ledger.json")).await?;
    let mut session = LedgerSession::resume(store.clone(), ledger, version, !run.dry_run);
    for batch in &batches {
        let sent: Vec<Sent> = match read(store, &sent_key(run, batch)?).await? {
            Some(sent) => sent,
            None => {
                warn!(batch = %batch.key, "a mail batch was not delivered: its messages are named in the digest");
                let outgoing: Vec<Outgoing> = need(store, &batch.key).await?;
                outgoing
                    .into_iter()
                    .map(|out| Sent {
                        note: Notification {
                            kind: MessageKind::Owner,
                            recipients: vec![out.recipient.to_string()],
                            subject: out.message.as_ref().map(|m| m.subject.clone()).unwrap_or_default(),
                            findings: out.findings as u64,
                            outcome: DeliveryOutcome::Failed,
                            message_id: None,
                            error: Some("not sent this run: its delivery batch of the workflow did not finish (it goes out on the next run)".to_owned()),
                            file: None,
                        },
                        notices: out.notices,
                    })
                    .collect()
            }
        };
        for s in sent {
            if s.note.outcome.delivered() {
                let notice = crate::core::ledger::Notice {
                    at: report.evaluated_at,
                    stage: Stage::First,
                    recipients: s.note.recipients.clone(),
                    message_id: s.note.message_id.clone(),
                    key_owner: None,
                };
                session.record(&s.notices, &notice);
            }
            report.notifications.push(s.note);
        }
    }
    let delivery = run.delivery();
    let mut transport = parts.notifier.transport(&delivery, 1).await;
    let archive_csv = crate::run::archive_location(
        Some(&session),
        &run.organization,
        report.evaluated_at,
        "csv",
    );
    parts
        .notifier
        .send_digest(
            &mut report,
            &delivery,
            &mut transport,
            crate::notify::DigestRun {
                ledger: Some(&session.ledger),
                changes: changes.as_ref(),
                owners,
                archive_csv,
            },
        )
        .await;
    crate::run::conclude(Some(&mut session), &run.organization, &mut report).await;
    if let Err(e) = write(store, &closed_key, &report).await {
        warn!(error = %e, "cannot mark the run closed: a retried close would send the digest again");
    }
    // The lease `plan` took: the next run may start.
    if !run.dry_run {
        let mine = workflow_holder(&run.id);
        store
            .release_lease_if(&run.organization, |held| held.holder.contains(&mine))
            .await;
    }
    info!(run = %run.id, findings = report.findings.len(), "workflow closed");
    let summary = serde_json::to_value(crate::run::RunSummary::of(&report)).unwrap_or_default();
    Ok((summary, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accounts(n: usize) -> Vec<Account> {
        (0..n)
            .map(|i| Account {
                id: AccountId::parse(&format!("{:012}", 100_000_000_000u64 + i as u64)).unwrap(),
                name: format!("a{i}"),
                email: None,
            })
            .collect()
    }

    #[test]
    fn a_batch_remembers_its_own_accounts_only() {
        let all = accounts(4);
        let mut ledger = Ledger::new("o-test");
        let key = |n: u8| {
            crate::core::model::AccessKeyId::parse(&format!("AKIAEXAMPLE0000000{n:02}")).unwrap()
        };
        let footprint = || -> crate::core::usage::Cached {
            serde_json::from_value(serde_json::json!({"footprint": {
                "read_at": "2026-11-29T00:00:00Z", "complete": true, "events": 0,
                "first": null, "last": null, "apis": [], "addresses": [], "address_count": 0,
                "aws_services": [], "via_vpc_endpoint": 0, "tools": [], "exec_env": [],
                "ci": [], "regions": []}}))
            .unwrap()
        };
        for (i, a) in all.iter().enumerate() {
            let k = key(i as u8);
            let entry = serde_json::from_value(serde_json::json!({
                "account_id": a.id, "account_name": a.name, "user_name": format!("user{i}"),
                "access_key_id": k, "check": "key-age-overdue", "severity": "high",
                "first_seen": "2026-11-29T00:00:00Z", "last_seen": "2026-11-29T00:00:00Z",
                "owner": null, "due_at": null}))
            .unwrap();
            ledger
                .entries
                .insert(format!("{}/{k}/key-age-overdue", a.id), entry);
            ledger.usage.insert(k.clone(), footprint());
        }
        // A footprint whose key has no entry (pruned) is in no batch.
        ledger.usage.insert(key(99), footprint());
        let memories = Memories::of(ledger);
        let m = memories.of_batch(&all[1..3]);
        assert_eq!(m.accounts, vec![all[1].id.clone(), all[2].id.clone()]);
        assert_eq!(
            m.open_users.keys().collect::<Vec<_>>(),
            vec![&all[1].id, &all[2].id]
        );
        assert_eq!(
            m.usage.keys().cloned().collect::<Vec<_>>(),
            vec![key(1), key(2)]
        );
    }
}
