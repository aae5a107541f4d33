//! The deployed application's parts, built once from settings: the scanner,
//! the notifier, the ledger's store, enforcement, the chat webhook and the
//! Security Hub export. The Lambda builds one per cold start and runs either
//! a whole run or one workflow step with it; `keywarden workflow` does the
//! same from the command line. Entry points stay thin: they parse their
//! input, call this, and report.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use jiff::Timestamp;

use crate::config::{ChatSettings, RawSettings, Settings};
use crate::core::ledger::Cadence;
use crate::core::model::AccountId;
use crate::core::report::Report;
use crate::core::templates::Templates;
use crate::deadline::Deadline;
use crate::deliver::securityhub::SecurityHubExport;
use crate::deliver::webhook::Chat;
use crate::enforce::Enforcer;
use crate::notify::{Delivery, Notifier};
use crate::run::{finished, Plan};
use crate::scan::{Mode, RunOptions, Scanner};
use crate::state::Store;
use crate::workflow::{Parts, StepEvent};

/// Built once per cold start (or per `keywarden workflow` step).
pub struct App {
    scanner: Scanner,
    notifier: Notifier,
    /// `deadline_reserve_secs`: time kept for delivery and saving.
    pub reserve: Duration,
    /// The ledger's store (`KEYWARDEN_STATE`, set by Terraform to the state bucket).
    store: Option<Store>,
    cadence: Cadence,
    enforcer: Enforcer,
    /// The chat webhook's settings; the URL is read from SSM per invocation.
    chat: Option<ChatSettings>,
    /// `securityhub_export`.
    securityhub: Option<SecurityHubExport>,
    sdk_config: aws_config::SdkConfig,
    /// `clock_override` (tests only).
    clock_override: Option<Timestamp>,
}

/// The deployed function's settings: defaults, the file (`config`, else
/// `KEYWARDEN_CONFIG`), then `KEYWARDEN_*` variables.
pub fn settings_from(config: Option<&Path>) -> anyhow::Result<Settings> {
    let mut raw = RawSettings::defaults();
    let from_env = std::env::var_os("KEYWARDEN_CONFIG").map(PathBuf::from);
    if let Some(path) = config.map(Path::to_path_buf).or(from_env) {
        raw.merge_file(&path)?;
    }
    raw.merge_env(std::env::vars())?;
    Ok(raw.validate()?)
}

impl App {
    /// Every part, from valid settings; a notify setting that is missing or
    /// a template that does not compile is an error here, before any run.
    pub async fn new(settings: Settings) -> anyhow::Result<App> {
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
        let store = match &settings.state {
            Some(location) => Some(Store::open(location, &sdk_config)?),
            None => {
                tracing::warn!("KEYWARDEN_STATE is not set: running without a ledger (every owner is told every run, nothing is remembered)");
                None
            }
        };
        let enforcer = Enforcer::new(
            &sdk_config,
            settings.enforce,
            &settings.enforce_role_name,
            settings.external_id.as_deref(),
        );
        let securityhub = settings.securityhub_export.then(|| {
            SecurityHubExport::new(
                &sdk_config,
                settings.securityhub_region.as_deref(),
                &settings.role_name,
                settings.external_id.as_deref(),
            )
        });
        Ok(App {
            securityhub,
            enforcer,
            chat: settings.chat.clone(),
            reserve: settings.deadline_reserve,
            clock_override: settings.clock_override,
            cadence: settings.cadence,
            sdk_config: sdk_config.clone(),
            scanner: Scanner::new(sdk_config, settings),
            notifier,
            store,
        })
    }

    /// One whole run of the Organization (or `only_accounts` of it), as of
    /// now, delivering through `delivery`.
    pub async fn run(
        &self,
        delivery: &Delivery,
        only_accounts: Option<BTreeSet<AccountId>>,
        deadline: Deadline,
    ) -> anyhow::Result<Report> {
        self.notifier.preflight(delivery).await?;
        let opts = RunOptions {
            only_accounts,
            deadline: Some(deadline),
            ..RunOptions::new(
                Mode::Organization,
                self.clock_override.unwrap_or_else(Timestamp::now),
            )
        };
        let chat = match &self.chat {
            Some(c) => Some(Chat::open(&self.sdk_config, c).await?),
            None => None,
        };
        let plan = Plan {
            notify: Some((&self.notifier, delivery)),
            state: self.store.clone(),
            cadence: self.cadence,
            enforcer: Some(&self.enforcer),
            chat: chat.as_ref(),
            securityhub: self.securityhub.as_ref(),
        };
        Ok(crate::run::execute(&self.scanner, plan, opts, &|_| {}).await?)
    }

    /// `keywarden doctor` with the function's settings and role: the
    /// checks as one JSON document (whatever they found: a blocker is an
    /// answer, not an invocation error).
    pub async fn doctor(&self) -> serde_json::Value {
        let settings = self.scanner.settings();
        crate::doctor::Doctor {
            sdk_config: &self.sdk_config,
            settings,
            mode: Mode::Organization,
            state: settings.state.as_deref(),
        }
        .examine()
        .await
        .to_json()
    }

    /// Runs one workflow step; `close` fails like an incomplete run when
    /// its run was incomplete.
    pub async fn workflow_step(
        &self,
        event: StepEvent,
        deadline: Option<Deadline>,
    ) -> anyhow::Result<serde_json::Value> {
        let store = self.store.as_ref().ok_or_else(|| {
            anyhow::anyhow!(
                "the workflow needs the state bucket: KEYWARDEN_STATE (s3://bucket/prefix) is not set"
            )
        })?;
        let chat = match (&event, &self.chat) {
            (StepEvent::Finish { .. }, Some(c)) => Some(Chat::open(&self.sdk_config, c).await?),
            _ => None,
        };
        let parts = Parts {
            scanner: &self.scanner,
            notifier: &self.notifier,
            store,
            cadence: self.cadence,
            enforcer: &self.enforcer,
            chat: chat.as_ref(),
            securityhub: self.securityhub.as_ref(),
        };
        let (out, report) = Box::pin(crate::workflow::step(&parts, event, deadline)).await?;
        match report {
            Some(report) => Ok(serde_json::to_value(finished(&report)?)?),
            None => Ok(out),
        }
    }
}

/// `keywarden workflow`: one workflow step from the command line, with the
/// Lambda's settings (`KEYWARDEN_*`, the config file); its output as JSON.
/// The local driver of the tests runs the state machine through this.
pub async fn step_cli(config: Option<PathBuf>, event: &str) -> anyhow::Result<String> {
    let event: StepEvent = serde_json::from_str(event)
        .map_err(|e| anyhow::anyhow!("the workflow step's event: {e}"))?;
    let app = App::new(settings_from(config.as_deref())?).await?;
    let out = app.workflow_step(event, None).await?;
    Ok(serde_json::to_string(&out)?)
}
