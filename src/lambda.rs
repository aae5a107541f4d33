//! The scheduled Lambda: the same scan and notify as the CLI, under
//! `lambda_runtime`. Settings come from `KEYWARDEN_*` environment variables
//! (and `KEYWARDEN_CONFIG` if set); settings, SDK clients and templates are
//! built once per cold start. The event may override `dry_run` and narrow
//! `accounts`. The invocation deadline is honoured: no account is started
//! when less than `deadline_reserve_secs` are left, and the digest still goes
//! out, marked incomplete, listing the accounts not scanned. An incomplete
//! run ends in an invocation error (the function's Errors alarm) whose
//! message carries the run summary.

use std::collections::BTreeSet;
use std::time::SystemTime;

use jiff::Timestamp;
use lambda_runtime::{service_fn, LambdaEvent};
use serde::{Deserialize, Serialize};
use tracing::{error, info};

use crate::config::{RawSettings, Settings};
use crate::core::model::AccountId;
use crate::core::report::{AccountEntry, AccountStatus, Notification, Summary};
use crate::core::templates::Templates;
use crate::notify::{Delivery, Notifier};
use crate::scan::{Deadline, Mode, RunOptions, Scanner};

/// The invocation event. EventBridge's scheduled events carry other fields,
/// which are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct Event {
    /// Render every message but send nothing.
    #[serde(default)]
    pub dry_run: Option<bool>,
    /// Only these accounts (within the configured scope).
    #[serde(default)]
    pub accounts: Option<Vec<String>>,
}

/// What an invocation returns: the run summary.
#[derive(Debug, Serialize)]
pub struct RunSummary {
    pub schema: &'static str,
    pub evaluated_at: Timestamp,
    /// Some account was not scanned, or a message was not delivered.
    pub incomplete: bool,
    pub summary: Summary,
    pub failed_accounts: Vec<AccountEntry>,
    /// Requested account ids that are not ACTIVE accounts of the Organization.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub unknown_accounts: Vec<AccountId>,
    /// Run-level errors (listing, ledger, archive).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<crate::core::report::StageError>,
    pub notifications: Vec<Notification>,
}

/// How the error of an incomplete run starts; the run summary (JSON) follows.
pub const INCOMPLETE: &str = "keywarden run incomplete (an account was not scanned, a message was not delivered, or the ledger or report archive was not saved): ";

/// Built once per cold start.
struct State {
    scanner: Scanner,
    notifier: Notifier,
    reserve: std::time::Duration,
    /// The ledger's store (`KEYWARDEN_STATE`, set by Terraform to the state bucket).
    store: Option<crate::state::Store>,
    cadence: crate::core::ledger::Cadence,
    enforcer: crate::enforce::Enforcer,
    /// The chat webhook's settings; the URL is read from SSM per invocation.
    chat: Option<crate::config::ChatSettings>,
    /// `securityhub_export`.
    securityhub: Option<crate::deliver::securityhub::SecurityHubExport>,
    sdk_config: aws_config::SdkConfig,
}

fn settings_from(config: Option<&std::path::Path>) -> anyhow::Result<Settings> {
    let mut raw = RawSettings::defaults();
    let from_env = std::env::var_os("KEYWARDEN_CONFIG").map(std::path::PathBuf::from);
    if let Some(path) = config.map(std::path::Path::to_path_buf).or(from_env) {
        raw.merge_file(&path)?;
    }
    raw.merge_env(std::env::vars())?;
    Ok(raw.validate()?)
}

async fn handle(state: &State, event: LambdaEvent<Event>) -> anyhow::Result<RunSummary> {
    let (event, ctx) = event.into_parts();
    let only_accounts = match event.accounts {
        None => None,
        Some(ids) => Some(
            ids.iter()
                .map(|id| AccountId::parse(id))
                .collect::<Result<BTreeSet<_>, _>>()
                .map_err(|e| anyhow::anyhow!("event field `accounts`: {e}"))?,
        ),
    };
    let delivery = if event.dry_run.unwrap_or(false) {
        Delivery::DryRun
    } else {
        Delivery::Ses
    };
    // The deadline as an Instant: how far away it is now, from now.
    let (deadline, left) = deadline(&ctx, state.reserve);
    info!(request_id = %ctx.request_id, time_left_ms = left.as_millis() as u64, ?delivery, "keywarden run");

    state.notifier.preflight(&delivery).await?;
    let opts = RunOptions {
        mode: Mode::Organization,
        now: Timestamp::now(),
        only_accounts,
        deadline: Some(deadline),
        open_users: Default::default(),
        account_tags: Default::default(),
    };
    let chat = match &state.chat {
        Some(c) => Some(crate::deliver::webhook::Chat::open(&state.sdk_config, c).await),
        None => None,
    };
    let plan = crate::run::Plan {
        notify: Some((&state.notifier, &delivery)),
        state: state.store.clone(),
        cadence: state.cadence,
        enforcer: Some(&state.enforcer),
        chat: chat.as_ref(),
        securityhub: state.securityhub.as_ref(),
    };
    let report = crate::run::execute(&state.scanner, plan, opts, &|_| {}).await?;
    finished(&report)
}

/// The run summary of a finished run; an error (carrying it) when the run
/// was incomplete, so the function's Errors alarm fires.
fn finished(report: &crate::core::report::Report) -> anyhow::Result<RunSummary> {
    let summary = RunSummary::of(report);
    info!(
        findings = summary.summary.findings,
        accounts_failed = summary.summary.accounts_failed,
        messages = summary.notifications.len(),
        incomplete = summary.incomplete,
        "keywarden run finished"
    );
    if summary.incomplete {
        // An error, after the digest went out, so the function's Errors
        // alarm fires; the whole summary travels in the message.
        let json = serde_json::to_string(&summary)?;
        anyhow::bail!("{INCOMPLETE}{json}");
    }
    Ok(summary)
}

impl RunSummary {
    /// The summary of a finished run.
    pub fn of(report: &crate::core::report::Report) -> Self {
        RunSummary {
            schema: "keywarden.summary/v1",
            evaluated_at: report.evaluated_at,
            incomplete: report.is_incomplete(),
            failed_accounts: report
                .accounts
                .iter()
                .filter(|a| a.status == AccountStatus::Failed)
                .cloned()
                .collect(),
            summary: report.summary.clone(),
            unknown_accounts: report.unknown_accounts.clone(),
            errors: report.errors.clone(),
            notifications: report.notifications.clone(),
        }
    }
}

/// One invocation: a workflow step when the event names one (`step`),
/// else the whole run.
async fn dispatch(
    state: &State,
    event: LambdaEvent<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let (payload, ctx) = event.into_parts();
    if payload.get("step").is_none() {
        let event: Event = serde_json::from_value(payload)
            .map_err(|e| anyhow::anyhow!("the invocation event is not a keywarden event: {e}"))?;
        let summary = Box::pin(handle(state, LambdaEvent::new(event, ctx))).await?;
        return Ok(serde_json::to_value(summary)?);
    }
    let event: crate::workflow::StepEvent = serde_json::from_value(payload)
        .map_err(|e| anyhow::anyhow!("the workflow step's event: {e}"))?;
    let (deadline, _) = deadline(&ctx, state.reserve);
    Box::pin(workflow_step(state, event, Some(deadline))).await
}

/// Runs one workflow step with this cold start's parts; `close` fails like
/// an incomplete run when its run was incomplete.
async fn workflow_step(
    state: &State,
    event: crate::workflow::StepEvent,
    deadline: Option<Deadline>,
) -> anyhow::Result<serde_json::Value> {
    let store = state.store.as_ref().ok_or_else(|| {
        anyhow::anyhow!(
            "the workflow needs the state bucket: KEYWARDEN_STATE (s3://bucket/prefix) is not set"
        )
    })?;
    let chat = match (&event, &state.chat) {
        (crate::workflow::StepEvent::Finish { .. }, Some(c)) => {
            Some(crate::deliver::webhook::Chat::open(&state.sdk_config, c).await)
        }
        _ => None,
    };
    let parts = crate::workflow::Parts {
        scanner: &state.scanner,
        notifier: &state.notifier,
        store,
        cadence: state.cadence,
        enforcer: &state.enforcer,
        chat: chat.as_ref(),
        securityhub: state.securityhub.as_ref(),
    };
    let (out, report) = Box::pin(crate::workflow::step(&parts, event, deadline)).await?;
    match report {
        Some(report) => Ok(serde_json::to_value(finished(&report)?)?),
        None => Ok(out),
    }
}

/// `keywarden workflow`: one workflow step from the command line, with the
/// Lambda's settings (`KEYWARDEN_*`, the config file); prints its output.
/// The local driver of the tests runs the state machine through this.
pub async fn step_cli(config: Option<std::path::PathBuf>, event: &str) -> anyhow::Result<String> {
    let event: crate::workflow::StepEvent = serde_json::from_str(event)
        .map_err(|e| anyhow::anyhow!("the workflow step's event: {e}"))?;
    let state = init_with(settings_from(config.as_deref())?).await?;
    let out = workflow_step(&state, event, None).await?;
    Ok(serde_json::to_string(&out)?)
}

/// The invocation's deadline as an Instant (how far away it is now, from
/// now), and how far away that is.
fn deadline(
    ctx: &lambda_runtime::Context,
    reserve: std::time::Duration,
) -> (Deadline, std::time::Duration) {
    let left = ctx
        .deadline()
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    let deadline = Deadline {
        at: tokio::time::Instant::now() + left,
        reserve,
    };
    (deadline, left)
}

/// Runs the Lambda runtime loop; returns when the runtime stops.
pub async fn run() -> Result<(), lambda_runtime::Error> {
    crate::logging::init_lambda();
    let state = match init().await {
        Ok(state) => state,
        Err(e) => {
            // An init error stops the cold start; the message is in the logs and the error metric.
            error!(error = format!("{e:#}"), "keywarden cannot start");
            return Err(e.into());
        }
    };
    let state = &state;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            dispatch(state, event).await.map_err(|e| {
                error!(error = format!("{e:#}"), "keywarden run failed");
                lambda_runtime::Error::from(format!("{e:#}"))
            })
        },
    ))
    .await
}

async fn init() -> anyhow::Result<State> {
    init_with(settings_from(None)?).await
}

async fn init_with(settings: Settings) -> anyhow::Result<State> {
    let ns = settings.notify()?;
    let templates = Templates::load(
        &ns.template_overrides()?,
        ns.console_link_template.as_deref(),
    )?;
    let sdk_config = crate::aws::load_sdk_config().await;
    let notifier = Notifier::new(
        &sdk_config,
        ns,
        settings.cadence,
        settings.enforce,
        templates,
    );
    let reserve = settings.deadline_reserve;
    let store = match &settings.state {
        Some(location) => Some(crate::state::Store::open(location, &sdk_config)?),
        None => {
            tracing::warn!("KEYWARDEN_STATE is not set: running without a ledger (every owner is told every run, nothing is remembered)");
            None
        }
    };
    let cadence = settings.cadence;
    let enforcer = crate::enforce::Enforcer::new(
        &sdk_config,
        settings.enforce,
        &settings.enforce_role_name,
        settings.external_id.as_deref(),
    );
    let securityhub = settings.securityhub_export.then(|| {
        crate::deliver::securityhub::SecurityHubExport::new(
            &sdk_config,
            settings.securityhub_region.as_deref(),
            &settings.role_name,
            settings.external_id.as_deref(),
        )
    });
    Ok(State {
        securityhub,
        enforcer,
        chat: settings.chat.clone(),
        sdk_config: sdk_config.clone(),
        scanner: Scanner::new(sdk_config, settings),
        notifier,
        reserve,
        store,
        cadence,
    })
}
