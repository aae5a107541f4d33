//! One whole run, the same for the CLI and the Lambda: identify the caller
//! and the Organization, load the ledger, scan, bring the ledger up to date,
//! deliver what is due, save the ledger and archive the report. Failing to
//! scan at all or to read the ledger is fatal (nothing was sent); failing to
//! save it or archive the report is recorded in the report (incomplete run).

use tracing::warn;

use crate::core::enforce::Mode as EnforceMode;
use crate::core::ledger::{reconcile, Cadence};
use crate::core::report::{Report, StageError};
use crate::enforce::Enforcer;
use crate::notify::{Delivery, Notifier};
use crate::scan::{Progress, RunOptions, ScanError, Scanner};
use crate::state::{LedgerSession, Store, StoreError};

/// A failure that stops the run before anything was sent or saved.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Scan(#[from] ScanError),
    #[error(transparent)]
    State(#[from] StoreError),
}

/// What a run does besides scanning.
pub struct Plan<'a> {
    /// `notify`: the notifier and where messages go; `None` for `scan`.
    pub notify: Option<(&'a Notifier, &'a Delivery)>,
    /// Where the ledger lives; `None` for a run without memory.
    pub state: Option<Store>,
    pub cadence: Cadence,
    /// Opt-in enforcement (it needs the ledger: the notices delivered).
    pub enforcer: Option<&'a Enforcer>,
}

impl Plan<'_> {
    /// Only a notify run that really delivers (not a dry run) writes state.
    fn writes_state(&self) -> bool {
        matches!(self.notify, Some((_, d)) if *d != Delivery::DryRun)
    }
}

/// Runs everything; see the module docs.
pub async fn execute(
    scanner: &Scanner,
    plan: Plan<'_>,
    mut opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, RunError> {
    let identity = scanner.identify(opts.mode).await?;
    let writes = plan.writes_state();
    let mut session = match plan.state {
        Some(store) => {
            if writes {
                store.check_writable()?;
            }
            Some(LedgerSession::load(store, &identity.organization, writes).await?)
        }
        None => None,
    };
    if let Some(s) = &session {
        opts.open_users = std::sync::Arc::new(s.ledger.open_users());
    }
    let mut report = scanner.run_as(&identity, &opts, progress).await?;
    let observed = std::mem::take(&mut report.observed);
    let changes = session
        .as_mut()
        .map(|s| reconcile(&mut s.ledger, &mut report, &observed, &plan.cadence));
    report.observed = observed;

    // Enforcement comes before delivery, so the owner's message this run
    // says what was done. Only a delivering notify run acts; scan and
    // --dry-run say what `apply` would do.
    if let Some(enforcer) = plan.enforcer {
        match session.as_mut() {
            Some(s) => {
                let acting = enforcer.for_run(writes);
                acting
                    .run(&mut report, &mut s.ledger, &identity.caller)
                    .await;
            }
            None if enforcer.policy().mode != EnforceMode::Off => {
                warn!("enforcement needs the ledger (the notices delivered): nothing is enforced without state");
            }
            None => {}
        }
    }

    if let Some((notifier, delivery)) = plan.notify {
        notifier
            .deliver(
                &mut report,
                delivery,
                session.as_mut(),
                changes.as_ref(),
                opts.deadline,
            )
            .await;
    }

    if let Some(s) = session.as_mut().filter(|s| s.writable()) {
        if let Err(e) = s.save().await {
            report.errors.push(StageError {
                stage: "state".to_owned(),
                code: "LedgerNotSaved".to_owned(),
                message: e.to_string(),
            });
        }
        archive(s.store(), &identity.organization, &mut report).await;
    }
    Ok(report)
}

/// Writes the run's JSON report and findings CSV under Hive-style
/// partitions; a failure is recorded in the report.
async fn archive(store: &Store, organization: &str, report: &mut Report) {
    // One JSON object on one line: what Athena's JSON SerDe reads.
    let mut json = serde_json::to_vec(&*report).unwrap_or_default();
    json.push(b'\n');
    let result = match crate::output::findings_csv(&report.findings) {
        Ok(csv) => crate::state::archive(
            store,
            organization,
            report.evaluated_at,
            json,
            csv.into_bytes(),
        )
        .await
        .map_err(|e| e.to_string()),
        Err(e) => Err(format!("cannot render the findings CSV: {e}")),
    };
    if let Err(message) = result {
        warn!(error = %message, "report not archived");
        report.errors.push(StageError {
            stage: "state".to_owned(),
            code: "ReportNotArchived".to_owned(),
            message,
        });
    }
}
