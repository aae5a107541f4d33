//! Orchestration of one scan: list accounts page by page, fan out over them
//! with a bound, inventory each account, evaluate, and collect the outcomes.
//! No business rules here: those are in `core`. Every per-account failure
//! becomes data in the report; only failing to list accounts at all is fatal.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use futures::{SinkExt, StreamExt};
use jiff::Timestamp;
use tracing::{debug, info, warn, Instrument};

use crate::aws::cloudtrail::{Trail, GLOBAL_REGION};
use crate::aws::iam::{Iam, ReportClock, ReportPolling};
use crate::aws::organizations::{Listing, Organizations};
use crate::aws::sts::{Caller, Sts};
use crate::aws::AwsError;
use crate::config::Settings;
use crate::core::checks::{user_trips_a_check, CheckId};
use crate::core::evaluate::{evaluate_account, Rules};
use crate::core::model::AccessKeyId;
use crate::core::model::{Account, AccountId, UserFacts};
use crate::core::privilege::{self, Privilege};
use crate::core::record::ObservedKey;
use crate::core::report::{
    key_age_histogram, AccountOutcome, InventorySource, Report, ReportBuilder, StageError,
};
use crate::core::tag_cache::{self, CachedTags, TagSource};
use crate::core::usage::{self, Usage};
use crate::deadline::{Budget, Deadline};

/// A failure that stops the whole run before any account is scanned.
#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("cannot identify the caller: {}", caller_hint(.0))]
    Caller(AwsError),
    // The AWS error is part of the message, not a `source`: `{:#}` would print it twice.
    #[error("cannot list the Organization's accounts ({cause}).{hint}")]
    ListAccounts { cause: AwsError, hint: &'static str },
    #[error("cannot resolve the OUs in {key} ({cause})")]
    Ous { key: &'static str, cause: AwsError },
    #[error("no account of the Organization is in scope{}: check include_accounts/--accounts, include_ous and the exclusions", unknown_note(.unknown))]
    NothingInScope { unknown: Vec<AccountId> },
}

/// The caller error as one line: what went wrong says what to do.
fn caller_hint(e: &AwsError) -> String {
    match e.code.as_str() {
        "NoCredentials" | "ConnectionError" => e.message.clone(),
        _ => format!("{e}; check your AWS credentials"),
    }
}

fn unknown_note(unknown: &[AccountId]) -> String {
    if unknown.is_empty() {
        String::new()
    } else {
        let ids: Vec<&str> = unknown.iter().map(AccountId::as_str).collect();
        format!(
            " (requested but not ACTIVE accounts of the Organization: {})",
            ids.join(", ")
        )
    }
}

/// What a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Every in-scope account of the Organization.
    Organization,
    /// Only the caller's own account, without Organizations.
    SingleAccount,
}

/// What one run covers.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub mode: Mode,
    /// The instant findings are evaluated at.
    pub now: Timestamp,
    /// Only these accounts, on top of the settings' scope (a Lambda event's subset).
    pub only_accounts: Option<BTreeSet<AccountId>>,
    pub deadline: Option<Deadline>,
    /// Users with open findings in the ledger, per account: their keys are
    /// re-read even when they trip no check, to tell how a finding ended.
    pub open_users: Arc<BTreeMap<AccountId, BTreeSet<String>>>,
    /// Account tags remembered by the ledger (`core::tag_cache`).
    pub account_tags: Arc<BTreeMap<AccountId, CachedTags>>,
    /// What flagged users can do, remembered by the ledger
    /// (`core::privilege::cache`).
    pub privileges: Arc<privilege::cache::Cache>,
    /// Where flagged keys were used, remembered by the ledger
    /// (`core::usage`); `None` without a ledger (then at most
    /// `usage_max_keys_without_ledger` footprints are read).
    pub usage: Option<Arc<usage::Cache>>,
    /// Footprints a run without a ledger has read so far (shared by its
    /// accounts).
    pub usage_read: Arc<std::sync::atomic::AtomicU32>,
}

impl RunOptions {
    pub fn new(mode: Mode, now: Timestamp) -> Self {
        Self {
            mode,
            now,
            only_accounts: None,
            deadline: None,
            open_users: Arc::default(),
            account_tags: Arc::default(),
            privileges: Arc::default(),
            usage: None,
            usage_read: Arc::default(),
        }
    }
}

/// Who is running and over what: the caller, and the Organization id (the
/// caller's account id in single-account mode) that names the ledger.
#[derive(Debug, Clone)]
pub struct Identity {
    pub caller: Caller,
    pub organization: String,
    pub management: Option<AccountId>,
}

/// Progress events, for a progress bar or logs.
#[derive(Debug, Clone, Copy)]
pub enum Progress {
    /// More accounts were found to scan.
    Discovered(usize),
    /// One account finished (scanned or failed).
    Finished,
}

/// The accounts in scope, listed but not scanned (the workflow's plan).
#[derive(Debug, Clone)]
pub struct ScopeList {
    pub accounts: Vec<Account>,
    /// The listing broke off (the run is incomplete).
    pub errors: Vec<StageError>,
    /// Requested ids that are not ACTIVE accounts of the Organization.
    pub unknown: Vec<AccountId>,
    /// Accounts listed that are not ACTIVE (suspended, closing): never scanned.
    pub inactive: usize,
}

/// A listing whose first page was read.
struct OpenListing {
    excluded_by_ou: BTreeSet<AccountId>,
    listings: Vec<Listing>,
    pages: crate::aws::organizations::AccountPages,
    first: Option<crate::aws::organizations::AccountPage>,
}

/// A few slots, where urgent requests go before routine ones: a routine
/// request waits while any urgent one is waiting.
#[derive(Debug)]
pub struct PrioritySlots {
    slots: tokio::sync::Semaphore,
    urgent_waiting: std::sync::atomic::AtomicUsize,
    calm: tokio::sync::Notify,
}

/// Counts an urgent request as waiting until it holds its slot.
struct Waiting<'a>(&'a PrioritySlots);
impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        use std::sync::atomic::Ordering;
        if self.0.urgent_waiting.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.calm.notify_waiters();
        }
    }
}

impl PrioritySlots {
    pub fn new(slots: usize) -> Self {
        Self {
            slots: tokio::sync::Semaphore::new(slots),
            urgent_waiting: std::sync::atomic::AtomicUsize::new(0),
            calm: tokio::sync::Notify::new(),
        }
    }

    /// A slot; `urgent` ones are served before any routine one waiting.
    pub async fn acquire(&self, urgent: bool) -> tokio::sync::SemaphorePermit<'_> {
        use std::sync::atomic::Ordering;
        if urgent {
            self.urgent_waiting.fetch_add(1, Ordering::SeqCst);
            let _waiting = Waiting(self);
            return self.slots.acquire().await.expect("never closed");
        }
        loop {
            let calm = self.calm.notified();
            tokio::pin!(calm);
            calm.as_mut().enable();
            if self.urgent_waiting.load(Ordering::SeqCst) == 0 {
                let permit = self.slots.acquire().await.expect("never closed");
                if self.urgent_waiting.load(Ordering::SeqCst) == 0 {
                    return permit;
                }
                // An urgent request arrived while this one queued: let it go first.
                drop(permit);
                continue;
            }
            calm.await;
        }
    }
}

/// What the ledger remembers about one account, for its scan.
#[derive(Debug, Clone, Copy)]
struct Remembered<'a> {
    /// Users with open findings: their keys are re-read.
    open_users: Option<&'a BTreeSet<String>>,
    /// The account's tags as last read.
    tags: Option<&'a CachedTags>,
    /// What the account's flagged users could do as last read.
    privileges: Option<&'a BTreeMap<String, Privilege>>,
    /// Footprints as last read; `None` without a ledger.
    usage: Option<&'a usage::Cache>,
    /// Footprints read so far by a run without a ledger.
    usage_read: &'a std::sync::atomic::AtomicU32,
}

/// How many accounts are started per working slot (`concurrency`): the
/// others wait for AWS (AssumeRole's turn at the STS gate, their credential
/// report's generation: seconds in large accounts) holding no slot, so the
/// budgets, not a count of accounts that are merely waiting, set the pace.
/// A waiting account holds its credentials and clients, no report (issue 24).
pub const IN_FLIGHT_PER_SLOT: usize = 4;

/// Clients and settings for a run; build once, share across accounts.
#[derive(Debug, Clone)]
pub struct Scanner {
    sdk_config: SdkConfig,
    settings: Arc<Settings>,
    rules: Arc<Rules>,
    orgs: Organizations,
    sts: Sts,
    own_iam: Iam,
    polling: ReportPolling,
    /// How long this run's credential reports take (every account's polls).
    report_clock: Arc<ReportClock>,
    /// Account-tag look-ups in flight at once.
    org_tag_slots: Arc<PrioritySlots>,
    /// Accounts worked on (`concurrency`): their credential reports in
    /// memory, their users read. An account waiting for AWS holds none
    /// ([`IN_FLIGHT_PER_SLOT`]).
    working: Arc<tokio::sync::Semaphore>,
    /// Calls of accounts waiting for AWS that need no working slot (the
    /// quarantine look-up beside the report's generation), `concurrency`
    /// at once: what bounds the connections a run holds.
    waiting_calls: Arc<tokio::sync::Semaphore>,
    /// AWS's quarantine policies, listed once per run.
    quarantine_names: Arc<tokio::sync::OnceCell<Vec<String>>>,
    /// AWS managed policy documents, read once per run.
    aws_policies: Arc<crate::aws::iam::PolicyCache>,
}

impl Scanner {
    /// The settings this scanner runs with.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Accounts started at once: `concurrency` worked on, and several
    /// times as many waiting for AWS ([`IN_FLIGHT_PER_SLOT`]).
    fn in_flight(&self) -> usize {
        self.settings.concurrency.max(1) * IN_FLIGHT_PER_SLOT
    }

    pub fn new(sdk_config: SdkConfig, settings: Settings) -> Self {
        let rules = Rules {
            policy: settings.policy,
            exemptions: settings.exemptions.clone(),
            owners: settings.owners.clone(),
        };
        let polling = ReportPolling {
            max_wait: settings.report_wait,
            ..ReportPolling::default()
        };
        let report_clock = Arc::new(ReportClock::default());
        let settings_concurrency = settings.concurrency.max(1);
        Self {
            orgs: Organizations::new(&sdk_config),
            sts: Sts::with_ceiling(&sdk_config, settings.concurrency),
            own_iam: Iam::new(&sdk_config)
                .with_polling(polling)
                .with_clock(report_clock.clone()),
            report_clock,
            sdk_config,
            settings: Arc::new(settings),
            rules: Arc::new(rules),
            polling,
            org_tag_slots: Arc::new(PrioritySlots::new(4)),
            working: Arc::new(tokio::sync::Semaphore::new(settings_concurrency)),
            waiting_calls: Arc::new(tokio::sync::Semaphore::new(settings_concurrency)),
            quarantine_names: Arc::default(),
            aws_policies: Arc::default(),
        }
    }

    /// The names of AWS's quarantine policies: the known ones and whatever
    /// else ListPolicies finds with their prefix, once per run.
    async fn quarantine_names(&self) -> &[String] {
        self.quarantine_names
            .get_or_init(|| async {
                let mut names: BTreeSet<String> = crate::aws::iam::KNOWN_QUARANTINE_POLICIES
                    .iter()
                    .map(|n| (*n).to_owned())
                    .collect();
                match self.own_iam.quarantine_policies().await {
                    Ok(found) => names.extend(found),
                    Err(e) => {
                        warn!(error = %e, "cannot list AWS's quarantine policies: looking for the known ones only")
                    }
                }
                names.into_iter().collect()
            })
            .await
    }

    /// This scanner for one of `shards` workflow shards that run side by
    /// side: its ceiling is its share of `concurrency` (at least 1); the
    /// adaptive gates find the rest.
    pub fn share(&self, shards: u32) -> Scanner {
        let mut settings = (*self.settings).clone();
        settings.concurrency = (settings.concurrency / shards.max(1) as usize).max(1);
        Scanner::new(self.sdk_config.clone(), settings)
    }

    /// Identifies the caller and, for an Organization run, the Organization.
    pub async fn identify(&self, mode: Mode) -> Result<Identity, ScanError> {
        let caller = self.sts.caller().await.map_err(ScanError::Caller)?;
        match mode {
            Mode::SingleAccount => Ok(Identity {
                organization: caller.account.to_string(),
                management: None,
                caller,
            }),
            Mode::Organization => {
                let (organization, management) =
                    self.orgs.describe().await.map_err(list_accounts_error)?;
                info!(organization, management = ?management, "organization found");
                Ok(Identity {
                    caller,
                    organization,
                    management,
                })
            }
        }
    }

    /// Identifies, then scans.
    pub async fn run(
        &self,
        opts: &RunOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Report, ScanError> {
        let identity = self.identify(opts.mode).await?;
        self.run_as(&identity, opts, progress).await
    }

    /// Runs the scan for an identified caller.
    pub async fn run_as(
        &self,
        identity: &Identity,
        opts: &RunOptions,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<Report, ScanError> {
        let caller = &identity.caller;
        let mut builder = ReportBuilder::new(opts.now, self.settings.policy);
        match opts.mode {
            Mode::SingleAccount => {
                let account = Account {
                    id: caller.account.clone(),
                    name: caller.account.to_string(),
                    email: None,
                };
                progress(Progress::Discovered(1));
                let outcome = self.start_account(caller, account, opts, false).await;
                progress(Progress::Finished);
                builder.add(outcome);
            }
            Mode::Organization => {
                self.run_organization(caller, opts, &mut builder, progress)
                    .await?
            }
        }
        Ok(builder.finish())
    }

    async fn run_organization(
        &self,
        caller: &Caller,
        opts: &RunOptions,
        builder: &mut ReportBuilder,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> Result<(), ScanError> {
        let listing = self.open_listing().await?;
        let (tx, rx) = futures::channel::mpsc::channel::<Account>(self.settings.concurrency * 2);
        // With a ledger, the accounts it remembers as the largest start
        // first; without one, in listing order.
        let queue = if opts.open_users.is_empty() {
            rx.left_stream()
        } else {
            largest_first(rx, opts.open_users.clone()).right_stream()
        };
        let consumer = queue
            .map(|account| self.start_account(caller, account, opts, true))
            .buffer_unordered(self.in_flight())
            .for_each(|outcome| {
                progress(Progress::Finished);
                builder.add(outcome);
                futures::future::ready(())
            });
        let ((errors, listed, _), ()) =
            futures::join!(self.produce(listing, opts, tx, progress), consumer);
        let unknown = self.unknown(opts, &errors, &listed);
        if builder.is_empty() && errors.is_empty() {
            return Err(ScanError::NothingInScope { unknown });
        }
        for e in errors {
            builder.add_error(e);
        }
        builder.set_unknown_accounts(unknown);
        Ok(())
    }

    /// Lists the accounts in scope without scanning them (the workflow's
    /// plan): what [`Scanner::run_as`] would scan, with the listing's errors
    /// and the requested ids that are not ACTIVE accounts.
    pub async fn list_scope(&self, opts: &RunOptions) -> Result<ScopeList, ScanError> {
        let listing = self.open_listing().await?;
        let (tx, rx) = futures::channel::mpsc::channel::<Account>(self.settings.concurrency * 2);
        let ((errors, listed, inactive), accounts) = futures::join!(
            self.produce(listing, opts, tx, &|_| {}),
            rx.collect::<Vec<Account>>()
        );
        let unknown = self.unknown(opts, &errors, &listed);
        if accounts.is_empty() && errors.is_empty() {
            return Err(ScanError::NothingInScope { unknown });
        }
        Ok(ScopeList {
            accounts,
            errors,
            unknown,
            inactive,
        })
    }

    /// Scans these accounts of the Organization (a workflow shard), at most
    /// `concurrency` at once, each within its budget; never fails. Those
    /// with the most users with open findings in the ledger start first
    /// (as in a single run: [`largest_first`]).
    pub async fn scan_accounts(
        &self,
        caller: &Caller,
        mut accounts: Vec<Account>,
        opts: &RunOptions,
    ) -> Vec<AccountOutcome> {
        accounts.sort_by_key(|a| {
            std::cmp::Reverse(opts.open_users.get(&a.id).map_or(0, BTreeSet::len))
        });
        futures::stream::iter(accounts)
            .map(|account| self.start_account(caller, account, opts, true))
            .buffer_unordered(self.in_flight())
            .collect()
            .await
    }

    /// Resolves the scope's OUs and reads the first page of the listing:
    /// failing to list at all is fatal (no permission), and says so clearly.
    async fn open_listing(&self) -> Result<OpenListing, ScanError> {
        let scope = &self.settings.scope;
        let excluded_by_ou: BTreeSet<AccountId> = if scope.exclude_ous.is_empty() {
            BTreeSet::new()
        } else {
            self.orgs
                .accounts_under(&scope.exclude_ous)
                .await
                .map_err(|cause| ScanError::Ous {
                    key: "exclude_ous",
                    cause,
                })?
        };
        let listings: Vec<Listing> = if scope.include_ous.is_empty() {
            vec![Listing::All]
        } else {
            self.orgs
                .subtree(&scope.include_ous)
                .await
                .map_err(|cause| ScanError::Ous {
                    key: "include_ous",
                    cause,
                })?
                .into_iter()
                .map(Listing::Parent)
                .collect()
        };
        let mut pages = self.orgs.pages(listings[0].clone());
        let first = next_page_patiently(&mut pages)
            .await
            .map_err(list_accounts_error)?;
        Ok(OpenListing {
            excluded_by_ou,
            listings,
            pages,
            first,
        })
    }

    /// Sends every in-scope ACTIVE account of the listing to `tx`, page by
    /// page; returns the listing's errors and every id listed.
    async fn produce(
        &self,
        listing: OpenListing,
        opts: &RunOptions,
        mut tx: futures::channel::mpsc::Sender<Account>,
        progress: &(dyn Fn(Progress) + Sync),
    ) -> (Vec<StageError>, BTreeSet<AccountId>, usize) {
        let scope = &self.settings.scope;
        let OpenListing {
            excluded_by_ou,
            listings,
            mut pages,
            first,
        } = listing;
        let in_scope = |a: &Account| {
            (scope.include_accounts.is_empty() || scope.include_accounts.contains(&a.id))
                && opts
                    .only_accounts
                    .as_ref()
                    .is_none_or(|only| only.contains(&a.id))
                && !scope.exclude_accounts.contains(&a.id)
                && !excluded_by_ou.contains(&a.id)
        };
        let mut errors = Vec::new();
        let mut seen = BTreeSet::new();
        let mut listed = BTreeSet::new();
        let mut inactive = 0;
        let mut page = first;
        let mut rest = listings.into_iter().skip(1);
        loop {
            match page.take() {
                Some(p) => {
                    inactive += p.inactive;
                    if p.inactive > 0 {
                        info!(skipped = p.inactive, "accounts not ACTIVE are not scanned");
                    }
                    listed.extend(p.active.iter().map(|a| a.id.clone()));
                    let accounts: Vec<Account> = p
                        .active
                        .into_iter()
                        .filter(|a| in_scope(a) && seen.insert(a.id.clone()))
                        .collect();
                    progress(Progress::Discovered(accounts.len()));
                    for a in accounts {
                        if tx.send(a).await.is_err() {
                            return (errors, listed, inactive);
                        }
                    }
                }
                None => match rest.next() {
                    Some(l) => pages = self.orgs.pages(l),
                    None => return (errors, listed, inactive),
                },
            }
            match next_page_patiently(&mut pages).await {
                Ok(p) => page = p,
                Err(e) => {
                    warn!(error = %e, "account listing broke off: the run is incomplete");
                    errors.push(StageError {
                        stage: "list_accounts".to_owned(),
                        code: e.code,
                        message: format!("{}: {}", e.operation, e.message),
                    });
                    // Try the next listing (OU), if any; pages of this one are lost.
                    match rest.next() {
                        Some(l) => pages = self.orgs.pages(l),
                        None => return (errors, listed, inactive),
                    }
                }
            }
        }
    }

    /// Ids asked for by name that the listing never showed. With an OU
    /// scope only the scoped part was listed, and a broken listing proves
    /// nothing: then none is called unknown.
    fn unknown(
        &self,
        opts: &RunOptions,
        errors: &[StageError],
        listed: &BTreeSet<AccountId>,
    ) -> Vec<AccountId> {
        let scope = &self.settings.scope;
        if !errors.is_empty() || !scope.include_ous.is_empty() {
            return Vec::new();
        }
        let requested: BTreeSet<&AccountId> = scope
            .include_accounts
            .iter()
            .chain(opts.only_accounts.iter().flatten())
            .collect();
        let unknown: Vec<AccountId> = requested
            .into_iter()
            .filter(|id| !listed.contains(*id))
            .cloned()
            .collect();
        if !unknown.is_empty() {
            let ids = unknown
                .iter()
                .map(AccountId::as_str)
                .collect::<Vec<_>>()
                .join(", ");
            warn!(unknown = %ids, "requested accounts are not ACTIVE accounts of the Organization");
        }
        unknown
    }

    /// Scans one account within its time budget, or records that the
    /// deadline left no time to start it; never fails.
    async fn start_account(
        &self,
        caller: &Caller,
        account: Account,
        opts: &RunOptions,
        in_org: bool,
    ) -> AccountOutcome {
        let budget = match opts.deadline {
            None => self.settings.account_timeout,
            Some(d) => match d.budget(self.settings.account_timeout) {
                Some(b) => b,
                None => {
                    return AccountOutcome::failed(
                        account,
                        StageError {
                            stage: "deadline".to_owned(),
                            code: "NotStarted".to_owned(),
                            message: format!(
                                "not scanned: the invocation deadline was less than {} s away (deadline_reserve_secs)",
                                d.reserve.as_secs()
                            ),
                        },
                    )
                }
            },
        };
        let memory = Remembered {
            open_users: opts.open_users.get(&account.id),
            tags: opts.account_tags.get(&account.id),
            privileges: opts.privileges.get(&account.id),
            usage: opts.usage.as_deref(),
            usage_read: &opts.usage_read,
        };
        // The budget counts the account's own work, not its waits for a
        // working slot (accounts are started ahead of their slots), up to
        // the invocation's usable time and the scan session's lifetime.
        let session =
            tokio::time::Instant::now() + Duration::from_secs(crate::aws::sts::SESSION_SECS as u64);
        let cap = opts
            .deadline
            .map_or(session, |d| d.usable_until().min(session));
        let clock = Budget::new(budget, cap);
        self.scan_account(caller, account, opts.now, in_org, clock, memory)
            .await
    }

    /// Scans one account within its `clock`; never fails.
    async fn scan_account(
        &self,
        caller: &Caller,
        account: Account,
        now: Timestamp,
        in_org: bool,
        clock: Budget,
        memory: Remembered<'_>,
    ) -> AccountOutcome {
        let span = tracing::info_span!("account", account_id = %account.id);
        match clock
            .run(self.scan_account_inner(caller, &account, now, in_org, memory, &clock))
            .instrument(span)
            .await
        {
            Some(outcome) => outcome,
            None => AccountOutcome::failed(
                account,
                StageError {
                    stage: "timeout".to_owned(),
                    code: "Timeout".to_owned(),
                    message: format!(
                        "the account was not scanned within its time budget ({} s of work, waits for a working slot not counted; account_timeout_secs, or less when the invocation deadline was near)",
                        clock.budget().as_secs()
                    ),
                },
            ),
        }
    }

    async fn scan_account_inner(
        &self,
        caller: &Caller,
        account: &Account,
        now: Timestamp,
        in_org: bool,
        memory: Remembered<'_>,
        clock: &Budget,
    ) -> AccountOutcome {
        // Where an account's time goes (debug): what decides how many
        // accounts must be in flight to keep the STS budget busy.
        let started = tokio::time::Instant::now();
        let (iam, trail) = if account.id == caller.account {
            (self.own_iam.clone(), Trail::new(&self.sdk_config, None))
        } else {
            let role_arn = format!(
                "arn:{}:iam::{}:role/{}",
                caller.partition, account.id, self.settings.role_name
            );
            match self
                .sts
                .assume_role(
                    &role_arn,
                    crate::aws::sts::SCAN_SESSION,
                    self.settings.external_id.as_deref(),
                )
                .await
            {
                Ok(creds) => (
                    Iam::with_credentials(&self.sdk_config, creds.clone(), &account.id)
                        .with_polling(self.polling)
                        .with_clock(self.report_clock.clone()),
                    Trail::new(&self.sdk_config, Some(creds)),
                ),
                Err(e) => {
                    warn!(error = %e, role_arn, "cannot assume the scan role");
                    return AccountOutcome::failed(account.clone(), stage_error("assume_role", &e));
                }
            }
        };
        let assumed_ms = ms(started);
        let inventory_started = tokio::time::Instant::now();
        // Who AWS quarantined is asked while the credential report is
        // generated. Waiting for the report holds no working slot (an
        // account waiting for AWS spends no budget and holds no report):
        // the poll that brings the report takes one, and the rest of the
        // account keeps it.
        let names = self.quarantine_names().await;
        // The look-up holds one of `concurrency` call slots of its own:
        // every call in flight holds an HTTP connection (tens of KiB, more
        // with TLS), so the accounts waiting for AWS must not each hold one.
        let quarantine = async {
            let _call = self.waiting_calls.acquire().await.expect("never closed");
            iam.quarantined_users(&caller.partition, names).await
        };
        let (report, quarantine) = futures::join!(
            iam.credential_report_in(Some((&self.working, clock))),
            quarantine
        );
        let (report, slot) = match report {
            Ok((users, slot)) => (Ok(users), slot),
            Err(e) => (Err(e), None),
        };
        let _working = match slot {
            Some(s) => s,
            None => clock.slot(&self.working).await,
        };
        let inventory = match report {
            Ok(users) => Ok((users, InventorySource::CredentialReport)),
            Err(report_err) => {
                warn!(error = %report_err, "credential report unavailable; falling back to API enumeration");
                match iam.enumerate_users().await {
                    Ok(users) => Ok((users, InventorySource::Api)),
                    Err(e) => {
                        let mut err = stage_error("inventory", &e);
                        err.message = format!("{} (credential report: {report_err})", err.message);
                        Err(err)
                    }
                }
            }
        };
        let (mut users, source) = match inventory {
            Ok(found) => found,
            Err(err) => return AccountOutcome::failed(account.clone(), err),
        };
        let mut error = None;
        match quarantine {
            Ok(quarantined) => {
                for user in users.iter_mut().filter(|u| !u.is_root) {
                    if let Some(how) = quarantined.get(&user.user_name) {
                        user.quarantine = how.clone();
                    }
                }
            }
            Err(e) => {
                // Whether AWS found a key exposed is unknown here: the account
                // is not fully checked (the run says so), the rest stands.
                warn!(error = %e, "cannot tell which users AWS quarantined");
                error = Some(stage_error("quarantine", &e));
            }
        }
        let found = Inventoried {
            iam,
            trail,
            users,
            source,
            error,
            started,
            assumed_ms,
            inventory_ms: ms(inventory_started),
        };
        // The rest, boxed: an account waiting for AWS above holds a pointer
        // to it, not its state (the scan starts several times `concurrency`
        // accounts; most of them wait).
        // What waits inside the account (the tag look-up's patience) ends a
        // little before the budget, so the findings are kept, not timed out;
        // the account waits for no more slots from here.
        let until = clock
            .end()
            .checked_sub(TAGS_MARGIN)
            .unwrap_or_else(tokio::time::Instant::now);
        Box::pin(self.examine(account, now, in_org, memory, until, found)).await
    }

    /// What an account's users with findings are (keys, tags, what they can
    /// do, where they were used) and the account's owner, from its
    /// inventory; never fails.
    async fn examine(
        &self,
        account: &Account,
        now: Timestamp,
        in_org: bool,
        memory: Remembered<'_>,
        until: tokio::time::Instant,
        found: Inventoried,
    ) -> AccountOutcome {
        let Inventoried {
            iam,
            trail,
            mut users,
            source,
            mut error,
            started,
            assumed_ms,
            inventory_ms,
        } = found;
        let open_users = memory.open_users;
        let details_started = tokio::time::Instant::now();
        let user_count = users.iter().filter(|u| !u.is_root).count() as u64;
        let key_ages = key_age_histogram(&users, now);
        let key_count = users.iter().map(|u| u.keys.len() as u64).sum();

        // Users with findings open in the ledger that trip no check now:
        // their keys tell how those findings ended (deleted, deactivated, rotated).
        let mut observed = BTreeMap::new();
        for user in users
            .iter()
            .filter(|u| open_users.is_some_and(|o| o.contains(&u.user_name)))
            .filter(|u| !user_trips_a_check(u, &self.settings.policy, now))
        {
            let keys = if user.is_root || source == InventorySource::Api {
                Ok(user.keys.clone())
            } else {
                iam.access_keys(&user.user_name, &user.keys).await
            };
            match keys {
                Ok(keys) => {
                    observed.insert(user.user_name.clone(), observe(&keys));
                }
                Err(e) => {
                    warn!(error = %e, user = %user.user_name, "cannot re-read the keys of a user with open findings");
                    error.get_or_insert_with(|| stage_error("inventory", &e));
                }
            }
        }
        // Only users that tripped a check are worth more calls; the rest are dropped here.
        users.retain(|u| user_trips_a_check(u, &self.settings.policy, now));
        // The alias only shows next to findings: a clean account costs no call for it.
        let alias = if users.is_empty() {
            None
        } else {
            match iam.account_alias().await {
                Ok(a) => a,
                Err(e) => {
                    warn!(error = %e, "cannot read the account alias; continuing without it");
                    None
                }
            }
        };
        for user in users.iter_mut() {
            if !user.is_root {
                if let Err(e) = self.enrich(&iam, user, source).await {
                    warn!(error = %e, user = %user.user_name, "cannot read the user's keys or tags");
                    // Keep what the report said: the findings stay, the account is marked failed.
                    error.get_or_insert_with(|| stage_error("inventory", &e));
                }
            }
            observed.insert(user.user_name.clone(), observe(&user.keys));
        }
        let details_ms = ms(details_started);
        let context_started = tokio::time::Instant::now();
        // What each user with findings can do, beside the account's tags
        // (which decide its owner): both within the account's budget; what
        // cannot be read is `unknown` (or what an earlier run read), the
        // findings stand.
        let privileges = self.privileges(&iam, &account.id, &users, memory.privileges, now, until);
        // Where each flagged key was used: its CloudTrail events, beside
        // both, within the same budget.
        let footprints = self.footprints(&trail, account, &users, memory, now, until);
        let mut tags_read = None;
        let account_tags = async {
            if in_org
                && !users.is_empty()
                && !self.settings.owners.account_owner_tag_keys.is_empty()
            {
                match tag_cache::source(
                    memory.tags,
                    &account.id,
                    now,
                    self.settings.account_tags_max_age_days,
                ) {
                    TagSource::Cached(c) => Some(c.tags.clone()),
                    TagSource::Read { fallback } => {
                        // Few at a time: Organizations' budget is small and shared with the
                        // listing; as patient as the listing, since the owner depends on it.
                        // Accounts with no usable tags (never read, or stale past twice the
                        // max age: the owner is unknown without them) go before routine
                        // refreshes.
                        // Within the account's budget: waiting out throttling
                        // must never cost the findings (issue 22 item 10).
                        let read = tokio::time::timeout_at(until, async {
                        let _permit = self.org_tag_slots.acquire(fallback.is_none()).await;
                        patiently(|| self.orgs.account_tags(&account.id)).await
                    })
                    .await
                    .unwrap_or_else(|_| {
                        Err(AwsError::new(
                            "organizations:ListTagsForResource",
                            "Timeout",
                            "the account's tags could not be read within its time budget (Organizations is throttling)",
                        ))
                    });
                        match read {
                            Ok(t) => {
                                tags_read = Some(t.clone());
                                Some(t)
                            }
                            Err(e) => match fallback {
                                Some(c) => {
                                    warn!(error = %e, read_at = %c.read_at, "cannot read the account's tags; using the ones read earlier");
                                    Some(c.tags.clone())
                                }
                                None => {
                                    warn!(error = %e, "cannot read the account's tags: its owner is unresolved this run");
                                    error.get_or_insert_with(|| stage_error("account_tags", &e));
                                    None
                                }
                            },
                        }
                    }
                }
            } else {
                Some(Vec::new())
            }
        };
        let ((privileges, privileges_read), account_tags, footprints) =
            futures::join!(privileges, account_tags, footprints);
        debug!(
            total_ms = ms(started),
            assumed_ms,
            inventory_ms,
            details_ms,
            context_ms = ms(context_started),
            users = user_count,
            flagged = users.len(),
            "account scanned"
        );
        // Without its tags the account owner is unknown: falling back to the
        // account email could mail the wrong person, so nobody is assumed.
        let evaluation = match &account_tags {
            Some(tags) => evaluate_account(account, tags, &users, &self.rules, now),
            None => {
                let unknown = Account {
                    email: None,
                    ..account.clone()
                };
                let mut ev = evaluate_account(&unknown, &[], &users, &self.rules, now);
                for f in &mut ev.findings {
                    f.account_name = account.name.clone();
                }
                ev
            }
        };
        let mut evaluation = evaluation;
        let console: BTreeSet<&str> = users
            .iter()
            .filter(|u| u.console_password)
            .map(|u| u.user_name.as_str())
            .collect();
        for f in &mut evaluation.findings {
            f.privilege = if f.check == CheckId::RootAccessKey {
                Some(Privilege::root())
            } else {
                privileges.get(&f.user_name).cloned()
            };
            f.usage = f
                .access_key_id
                .as_ref()
                .and_then(|k| footprints.usage.get(k))
                .cloned();
            f.replace_with = Some(crate::core::report::replace_with(
                f,
                console.contains(f.user_name.as_str()),
                self.settings.policy.unused_days,
                now,
            ));
        }
        AccountOutcome {
            account: account.clone(),
            alias,
            source: Some(source),
            users: user_count,
            keys: key_count,
            owner: evaluation
                .account_owner
                .filter(|_| !evaluation.findings.is_empty()),
            findings: evaluation.findings,
            exempt: evaluation.exempt,
            tags_read,
            privileges_read,
            usage_read: footprints.read,
            usage_not_read: footprints.not_read,
            error,
            key_ages,
            observed,
        }
    }

    /// Where each flagged key was used (`core::usage`): for every active
    /// key with a finding (not exempt) used in the last
    /// [`usage::WINDOW_DAYS`] days, its CloudTrail events in the region of
    /// its last use and in us-east-1 (global services), summarised. A
    /// footprint the ledger holds and is not due costs no call; one that
    /// cannot be read by `until` is `unknown` with the reason (or what an
    /// earlier run read); a run without a ledger reads at most
    /// `usage_max_keys_without_ledger` of them.
    async fn footprints(
        &self,
        trail: &Trail,
        account: &Account,
        users: &[UserFacts],
        memory: Remembered<'_>,
        now: Timestamp,
        until: tokio::time::Instant,
    ) -> Footprints {
        let settings = self.settings.usage;
        let mut out = Footprints::default();
        // The keys with findings now (exemptions do not depend on the
        // account's tags, so the owner can wait).
        let flagged = evaluate_account(account, &[], users, &self.rules, now);
        let window_start = now - jiff::SignedDuration::from_hours(24 * usage::WINDOW_DAYS);
        let mut seen = BTreeSet::new();
        let mut due = Vec::new();
        for f in &flagged.findings {
            let Some(key) = f.access_key_id.as_ref() else {
                continue;
            };
            if f.key_status != crate::core::model::KeyStatus::Active || !seen.insert(key.clone()) {
                continue;
            }
            let Some(last_used) = f.last_used_at else {
                continue;
            };
            if last_used < window_start {
                out.usage.insert(
                    key.clone(),
                    Usage::Unknown {
                        reason: format!(
                            "last used more than {} days ago: CloudTrail's event history keeps {} days",
                            usage::WINDOW_DAYS,
                            usage::WINDOW_DAYS
                        ),
                    },
                );
                continue;
            }
            let cached = memory.usage.and_then(|c| c.get(key));
            if due.len() >= FOOTPRINTS_PER_ACCOUNT
                && usage::due(
                    cached,
                    Some(last_used),
                    &account.id,
                    now,
                    settings.refresh_days,
                )
            {
                out.not_read += 1;
                out.usage.insert(
                    key.clone(),
                    match cached {
                        Some(c) => Usage::Known(c.footprint.clone()),
                        None => Usage::Unknown {
                            reason: format!(
                                "not read this run: at most {FOOTPRINTS_PER_ACCOUNT} keys per account and run (with a ledger the rest are read on the next runs)"
                            ),
                        },
                    },
                );
                continue;
            }
            match memory.usage {
                Some(_)
                    if !usage::due(
                        cached,
                        Some(last_used),
                        &account.id,
                        now,
                        settings.refresh_days,
                    ) =>
                {
                    if let Some(c) = cached {
                        out.usage
                            .insert(key.clone(), Usage::Known(c.footprint.clone()));
                    }
                    continue;
                }
                Some(_) => {}
                None => {
                    let n = memory
                        .usage_read
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if n >= settings.max_keys_without_ledger {
                        out.not_read += 1;
                        out.usage.insert(
                            key.clone(),
                            Usage::Unknown {
                                reason: format!(
                                    "not read: a run without a ledger reads at most {} footprints (usage_max_keys_without_ledger)",
                                    settings.max_keys_without_ledger
                                ),
                            },
                        );
                        continue;
                    }
                }
            }
            let region = users
                .iter()
                .flat_map(|u| u.keys.iter())
                .find(|k| k.access_key_id.as_ref() == Some(key))
                .and_then(|k| k.last_used_region.clone())
                .filter(|r| {
                    !r.is_empty()
                        && r.len() <= 32
                        && r.chars()
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                });
            due.push((key.clone(), region, last_used, cached));
        }
        if due.is_empty() {
            return out;
        }
        let pages = settings.max_pages;
        let mut read: BTreeMap<AccessKeyId, Result<usage::Footprint, String>> =
            futures::stream::iter(due.iter())
                .map(|(key, region, _, _)| async move {
                    let mut regions = vec![region.clone().unwrap_or_else(|| GLOBAL_REGION.to_owned())];
                    if regions[0] != GLOBAL_REGION {
                        regions.push(GLOBAL_REGION.to_owned());
                    }
                    let mut events = Vec::new();
                    let mut complete = true;
                    for r in &regions {
                        match trail
                            .key_events(r, key.as_str(), window_start, now, pages)
                            .await
                        {
                            Ok(found) => {
                                complete &= found.complete;
                                events.extend(found.events);
                            }
                            Err(e) => {
                                warn!(error = %e, key = %key, region = %r, "cannot read where the key was used");
                                return (key.clone(), Err(format!("{}: {} in {r}", e.operation, e.code)));
                            }
                        }
                    }
                    (key.clone(), Ok(usage::summarize(&events, complete, now)))
                })
                .buffer_unordered(4)
                .take_until(tokio::time::sleep_until(until))
                .collect()
                .await;
        for (key, _, last_used, cached) in &due {
            let result = read
                .remove(key)
                .unwrap_or_else(|| Err("not read within the account's time budget".to_owned()));
            let u = match result {
                Ok(footprint) => {
                    // One copy, shared by the findings and the ledger.
                    let footprint = Arc::new(footprint);
                    out.read.insert(
                        key.clone(),
                        usage::Cached {
                            footprint: footprint.clone(),
                            last_used_at: Some(*last_used),
                        },
                    );
                    Usage::Known(footprint)
                }
                Err(reason) => match cached {
                    // An earlier reading, while the cache still keeps it.
                    Some(c) => Usage::Known(c.footprint.clone()),
                    None => Usage::Unknown { reason },
                },
            };
            out.usage.insert(key.clone(), u);
        }
        out
    }

    /// What each (non-root) user can do, from its policies, and what was
    /// read this run (for the ledger). A user whose privilege the ledger
    /// holds and is not due (`core::privilege::cache`) costs no call; the
    /// others are read through the account's own IAM pace, by `until`. A
    /// user whose policies cannot be read keeps what an earlier run read
    /// (not too old), else is `unknown`, saying why.
    async fn privileges(
        &self,
        iam: &Iam,
        account: &AccountId,
        users: &[UserFacts],
        remembered: Option<&BTreeMap<String, Privilege>>,
        now: Timestamp,
        until: tokio::time::Instant,
    ) -> (BTreeMap<String, Privilege>, BTreeMap<String, Privilege>) {
        let max_age = self.settings.privilege_max_age_days;
        let mut known = BTreeMap::new();
        let mut due = Vec::new();
        for user in users.iter().filter(|u| !u.is_root) {
            let cached = remembered.and_then(|r| r.get(&user.user_name));
            match privilege::cache::source(cached, account, now, max_age) {
                privilege::cache::Source::Cached(p) => {
                    known.insert(user.user_name.clone(), p.clone());
                }
                privilege::cache::Source::Read { fallback } => due.push((user, fallback)),
            }
        }
        if due.is_empty() {
            return (known, BTreeMap::new());
        }
        let reader = iam.policy_reader(&self.aws_policies);
        let table = privilege::table::Table::shipped();
        // A few users at a time (the reader paces the calls), until the
        // account's budget ends: what was read by then is kept.
        let mut read: BTreeMap<String, Result<Privilege, String>> = futures::stream::iter(
            due.iter(),
        )
        .map(|(user, _)| async {
            let p = match reader.user_policies(&user.user_name).await {
                Ok(up) => {
                    let mut p = privilege::of_user(table, &up.identity, up.boundary.as_ref());
                    p.read_at = Some(now);
                    Ok(p)
                }
                Err(e) => {
                    warn!(error = %e, user = %user.user_name, "cannot read the user's policies");
                    Err(format!(
                        "its policies could not be read ({}: {})",
                        e.operation, e.code
                    ))
                }
            };
            (user.user_name.clone(), p)
        })
        .buffer_unordered(4)
        .take_until(tokio::time::sleep_until(until))
        .collect()
        .await;
        for (user, _) in &due {
            read.entry(user.user_name.clone()).or_insert_with(|| {
                Err("its policies were not read within the account's time budget".to_owned())
            });
        }
        let fallbacks: BTreeMap<&str, Option<&Privilege>> = due
            .iter()
            .map(|(u, f)| (u.user_name.as_str(), *f))
            .collect();
        let mut fresh = BTreeMap::new();
        for (user, p) in read {
            let p = match p {
                Ok(p) => {
                    fresh.insert(user.clone(), p.clone());
                    p
                }
                Err(why) => match fallbacks.get(user.as_str()).copied().flatten() {
                    Some(earlier) => earlier.clone(),
                    None => Privilege::unknown(why),
                },
            };
            known.insert(user, p);
        }
        (known, fresh)
    }

    /// Adds key ids, exact creation dates and tags to a user that tripped a check.
    async fn enrich(
        &self,
        iam: &Iam,
        user: &mut UserFacts,
        source: InventorySource,
    ) -> Result<(), AwsError> {
        if source == InventorySource::CredentialReport {
            user.keys = iam.access_keys(&user.user_name, &user.keys).await?;
        }
        user.tags = iam.user_tags(&user.user_name).await?;
        Ok(())
    }
}

/// The accounts as listed, except that of those listed and not yet started
/// the one with the most users with open findings in the ledger starts
/// first (ties in listing order): a large account started last would hold
/// the run's end alone (its credential report, its policies and footprints
/// take longest), and the ledger knows which accounts are large. Reading
/// everything listed so far lets the listing run ahead of the scan (the
/// accounts are small; the listing's pages are few).
fn largest_first(
    rx: futures::channel::mpsc::Receiver<Account>,
    open_users: Arc<BTreeMap<AccountId, BTreeSet<String>>>,
) -> impl futures::Stream<Item = Account> {
    struct Queued(usize, std::cmp::Reverse<u64>, Account);
    impl PartialEq for Queued {
        fn eq(&self, other: &Self) -> bool {
            (self.0, self.1) == (other.0, other.1)
        }
    }
    impl Eq for Queued {}
    impl PartialOrd for Queued {
        fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
            Some(self.cmp(other))
        }
    }
    impl Ord for Queued {
        fn cmp(&self, other: &Self) -> std::cmp::Ordering {
            (self.0, self.1).cmp(&(other.0, other.1))
        }
    }
    let state = (rx, std::collections::BinaryHeap::new(), 0u64, false);
    futures::stream::unfold(state, move |(mut rx, mut heap, mut n, mut closed)| {
        let open_users = open_users.clone();
        async move {
            let queue =
                |heap: &mut std::collections::BinaryHeap<Queued>, a: Account, n: &mut u64| {
                    let weight = open_users.get(&a.id).map_or(0, BTreeSet::len);
                    heap.push(Queued(weight, std::cmp::Reverse(*n), a));
                    *n += 1;
                };
            // Everything listed so far; wait only when nothing is queued.
            loop {
                match rx.try_recv() {
                    Ok(a) => queue(&mut heap, a, &mut n),
                    Err(futures::channel::mpsc::TryRecvError::Closed) => {
                        closed = true;
                        break;
                    }
                    Err(_) => break,
                }
            }
            if !closed && heap.is_empty() {
                match rx.next().await {
                    Some(a) => queue(&mut heap, a, &mut n),
                    None => closed = true,
                }
            }
            heap.pop().map(|q| (q.2, (rx, heap, n, closed)))
        }
    })
}

/// Footprints read per account and run at most: LookupEvents allows 2
/// requests a second per account and region, so an account with hundreds
/// of flagged keys would otherwise hold its slot for minutes. With a ledger
/// the rest are read on the next runs (what was read is not due again).
const FOOTPRINTS_PER_ACCOUNT: usize = 20;

/// An account's inventory, read: what [`Scanner::examine`] starts from.
struct Inventoried {
    iam: Iam,
    trail: Trail,
    users: Vec<UserFacts>,
    source: InventorySource,
    /// The first stage that failed so far (the findings stand).
    error: Option<StageError>,
    started: tokio::time::Instant,
    assumed_ms: u64,
    inventory_ms: u64,
}

/// Milliseconds since `since`.
fn ms(since: tokio::time::Instant) -> u64 {
    since.elapsed().as_millis() as u64
}

/// A stage's error, as the report shows it.
fn stage_error(stage: &str, e: &AwsError) -> StageError {
    StageError {
        stage: stage.to_owned(),
        code: e.code.clone(),
        message: format!("{}: {}", e.operation, e.message),
    }
}

/// What [`Scanner::footprints`] found in one account.
#[derive(Debug, Default)]
struct Footprints {
    /// Every flagged key's usage (known or unknown).
    usage: BTreeMap<AccessKeyId, Usage>,
    /// Read this run (for the ledger).
    read: usage::Cache,
    /// Not read: the run without a ledger had read its quota.
    not_read: u64,
}

/// How long the account listing (and an account-tag look-up) keeps asking
/// when throttled: every account of the Organization depends on the listing,
/// and the right recipient on the tags.
const LISTING_PATIENCE: Duration = Duration::from_secs(600);

/// The tag look-up gives up this long before the account's budget ends, so
/// the account's findings are reported (owner unresolved) instead of lost
/// to a timeout.
const TAGS_MARGIN: Duration = Duration::from_secs(2);

/// Calls `op` again on throttling and service errors (beyond the SDK's own
/// attempts), with backoff, for up to [`LISTING_PATIENCE`].
async fn patiently<T, F, Fut>(op: F) -> Result<T, AwsError>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<T, AwsError>>,
{
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        match op().await {
            Err(e) if e.is_retryable() && started.elapsed() + delay < LISTING_PATIENCE => {
                warn!(error = %e, "throttled; asking again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// The next page of accounts, retrying throttling and service errors (beyond
/// the SDK's own attempts) with backoff for up to [`LISTING_PATIENCE`]: the
/// Organizations budget is shared with the account-tag look-ups, and a page
/// given up on would drop every account after it.
async fn next_page_patiently(
    pages: &mut crate::aws::organizations::AccountPages,
) -> Result<Option<crate::aws::organizations::AccountPage>, AwsError> {
    let started = tokio::time::Instant::now();
    let mut delay = Duration::from_secs(1);
    loop {
        match pages.next_page().await {
            Err(e) if e.is_retryable() && started.elapsed() + delay < LISTING_PATIENCE => {
                warn!(error = %e, "account listing throttled; asking again");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(30));
            }
            other => return other,
        }
    }
}

/// Failing to describe or list the Organization is fatal, with a hint when
/// the caller is outside an Organization or may not read it.
fn list_accounts_error(cause: AwsError) -> ScanError {
    ScanError::ListAccounts {
        hint: if cause.is_access_denied() || cause.code == "AWSOrganizationsNotInUseException" {
            " The caller is not in an Organization or may not list it: run with --single-account to scan only the caller's own account, or use credentials of the management or a delegated administrator account."
        } else {
            ""
        },
        cause,
    }
}

fn observe(keys: &[crate::core::model::KeyFacts]) -> Vec<ObservedKey> {
    keys.iter()
        .map(|k| ObservedKey {
            access_key_id: k.access_key_id.clone(),
            status: k.status,
            created_at: k.created_at,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u64) -> Account {
        Account {
            id: AccountId::parse(&format!("{n:012}")).unwrap(),
            name: format!("a{n}"),
            email: None,
        }
    }

    #[tokio::test]
    async fn of_the_accounts_listed_the_largest_in_the_ledger_start_first() {
        let open: BTreeMap<AccountId, BTreeSet<String>> = [(2, 5), (3, 2), (5, 9)]
            .into_iter()
            .map(|(a, users)| {
                let names = (0..users).map(|u| format!("u{u}")).collect();
                (account(a).id, names)
            })
            .collect();
        let (mut tx, rx) = futures::channel::mpsc::channel::<Account>(16);
        for a in 1..=4 {
            tx.send(account(a)).await.unwrap();
        }
        let mut queue = Box::pin(largest_first(rx, Arc::new(open)));
        // Of 1..4 listed: 2 (5 users with open findings), 3 (2), then 1, 4
        // as listed; 5 arrives later and jumps the queue.
        assert_eq!(queue.next().await.unwrap().name, "a2");
        assert_eq!(queue.next().await.unwrap().name, "a3");
        tx.send(account(5)).await.unwrap();
        tx.send(account(6)).await.unwrap();
        drop(tx);
        let rest: Vec<String> = queue.map(|a| a.name).collect().await;
        assert_eq!(rest, ["a5", "a1", "a4", "a6"]);
    }

    #[tokio::test]
    async fn urgent_requests_get_slots_before_routine_ones_waiting() {
        let slots = Arc::new(PrioritySlots::new(1));
        let held = slots.acquire(false).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (i, urgent) in [(0, false), (1, false), (2, true), (3, true)] {
            let (slots, order) = (slots.clone(), order.clone());
            tasks.push(tokio::spawn(async move {
                let _p = slots.acquire(urgent).await;
                order.lock().unwrap().push(i);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }));
            // Queue them in this order.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        drop(held);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        assert_eq!(&order[..2], &[2, 3], "the urgent ones first: {order:?}");
        let mut rest = order[2..].to_vec();
        rest.sort();
        assert_eq!(rest, [0, 1], "then every routine one: {order:?}");
    }
}
