//! The scheduled Lambda: the same scan and notify as the CLI, under
//! `lambda_runtime`. Settings come from `KEYWARDEN_*` environment variables
//! (and `KEYWARDEN_CONFIG` if set); the application's parts ([`App`]) are
//! built once per cold start. The event may override `dry_run` and narrow
//! `accounts`, name a workflow `step`, or ask for `{"doctor": true}` (the
//! checks of `keywarden doctor` as JSON). The invocation deadline is
//! honoured: no account is started when less than `deadline_reserve_secs`
//! are left, and the digest still goes out, marked incomplete, listing the
//! accounts not scanned. An incomplete run ends in an invocation error (the
//! function's Errors alarm) whose message carries the run summary.
//!
//! Only the Runtime API lives here: what a run does is [`crate::app`]'s.

use std::collections::BTreeSet;
use std::time::SystemTime;

use lambda_runtime::{service_fn, LambdaEvent};
use serde::Deserialize;
use tracing::{error, info};

use crate::app::{settings_from, App};
use crate::core::model::AccountId;
use crate::deadline::Deadline;
use crate::notify::Delivery;
use crate::run::{finished, RunSummary};

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
    /// Refused when present: whoever can invoke the function must not pick
    /// the clock the shared ledger and enforcement run by.
    #[serde(default)]
    pub now: Option<serde_json::Value>,
}

/// Why an event with `now` is refused.
pub const NOW_REFUSED: &str = "the event field `now` is refused: a run's clock is the wall clock (the shared ledger and enforcement depend on it); replay a day with the CLI and a local --state directory instead";

async fn handle(app: &App, event: LambdaEvent<Event>) -> anyhow::Result<RunSummary> {
    let (event, ctx) = event.into_parts();
    if event.now.is_some() {
        anyhow::bail!("{NOW_REFUSED}");
    }
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
    let (deadline, left) = deadline(&ctx, app.reserve);
    info!(request_id = %ctx.request_id, time_left_ms = left.as_millis() as u64, ?delivery, "keywarden run");
    let report = app.run(&delivery, only_accounts, deadline).await?;
    finished(&report)
}

/// One invocation: a workflow step when the event names one (`step`),
/// else the whole run.
async fn dispatch(
    app: &App,
    event: LambdaEvent<serde_json::Value>,
) -> anyhow::Result<serde_json::Value> {
    let (payload, ctx) = event.into_parts();
    if payload.get("doctor") == Some(&serde_json::Value::Bool(true)) {
        return Ok(app.doctor().await);
    }
    if payload.get("step").is_none() {
        let event: Event = serde_json::from_value(payload)
            .map_err(|e| anyhow::anyhow!("the invocation event is not a keywarden event: {e}"))?;
        let summary = Box::pin(handle(app, LambdaEvent::new(event, ctx))).await?;
        return Ok(serde_json::to_value(summary)?);
    }
    let event: crate::workflow::StepEvent = serde_json::from_value(payload)
        .map_err(|e| anyhow::anyhow!("the workflow step's event: {e}"))?;
    let (deadline, _) = deadline(&ctx, app.reserve);
    Box::pin(app.workflow_step(event, Some(deadline))).await
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
    let app = match settings_from(None) {
        Ok(settings) => App::new(settings).await,
        Err(e) => Err(e),
    };
    let app = match app {
        Ok(app) => app,
        Err(e) => {
            // An init error stops the cold start; the message is in the logs and the error metric.
            error!(error = format!("{e:#}"), "keywarden cannot start");
            return Err(e.into());
        }
    };
    let app = &app;
    lambda_runtime::run(service_fn(
        move |event: LambdaEvent<serde_json::Value>| async move {
            dispatch(app, event).await.map_err(|e| {
                error!(error = format!("{e:#}"), "keywarden run failed");
                lambda_runtime::Error::from(format!("{e:#}"))
            })
        },
    ))
    .await
}
