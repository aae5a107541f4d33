//! One whole run, the same for the CLI and the Lambda: identify the caller
//! and the Organization, load the ledger, scan, bring the ledger up to date,
//! deliver what is due, save the ledger and archive the report. Failing to
//! scan at all or to read the ledger is fatal (nothing was sent); failing to
//! save it or archive the report is recorded in the report (incomplete run).

use jiff::Timestamp;
use serde::Serialize;
use tracing::{info, warn};

use crate::core::enforce::Mode as EnforceMode;
use crate::core::ledger::{reconcile, Cadence, Changes};
use crate::core::model::AccountId;
use crate::core::report::{
    AccountEntry, AccountStatus, DeliveryOutcome, MessageKind, Notification, Report, StageError,
    Summary,
};
use crate::core::summary::{payload, summarize};
use crate::deliver::outbox::write_chat;
use crate::deliver::securityhub::SecurityHubExport;
use crate::deliver::webhook::Chat;
use crate::enforce::Enforcer;
use crate::notify::{Delivery, Notifier};
use crate::scan::{Identity, Progress, RunOptions, ScanError, Scanner};
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
    /// The chat webhook for the run summary (notify only).
    pub chat: Option<&'a Chat>,
    /// The Security Hub export (notify only).
    pub securityhub: Option<&'a SecurityHubExport>,
}

impl Plan<'_> {
    /// Only a notify run that really delivers (not a dry run) writes state.
    pub fn writes_state(&self) -> bool {
        matches!(self.notify, Some((_, d)) if *d != Delivery::DryRun)
    }
}

/// Runs everything; see the module docs.
pub async fn execute(
    scanner: &Scanner,
    plan: Plan<'_>,
    opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
) -> Result<Report, RunError> {
    let identity = scanner.identify(opts.mode).await?;
    let writes = plan.writes_state();
    // One delivering run at a time per Organization: the lease is taken
    // before the ledger is read and given back once it is saved, so a second
    // run mails nobody and acts on nothing (exit 3, naming the holder).
    let leased = match &plan.state {
        Some(store) if writes => {
            store.check_writable(&identity.organization).await?;
            let lease = store.acquire_lease(&identity.organization).await?;
            Some((store.clone(), lease))
        }
        _ => None,
    };
    let result = Box::pin(execute_leased(
        scanner,
        plan,
        opts,
        progress,
        identity.clone(),
    ))
    .await;
    if let Some((store, lease)) = leased {
        store.release_lease(&identity.organization, &lease).await;
    }
    result
}

/// [`execute`] once the lease (for a delivering run) is held.
async fn execute_leased(
    scanner: &Scanner,
    plan: Plan<'_>,
    mut opts: RunOptions,
    progress: &(dyn Fn(Progress) + Sync),
    identity: Identity,
) -> Result<Report, RunError> {
    let writes = plan.writes_state();
    let mut session = match plan.state.clone() {
        Some(store) => Some(LedgerSession::load(store, &identity.organization, writes).await?),
        None => None,
    };
    // The ledger's caches are lent to the scan (not copied: at 20,000
    // accounts they are megabytes) and given back before anything is saved.
    if let Some(s) = &mut session {
        opts.open_users = std::sync::Arc::new(s.ledger.open_users());
        opts.account_tags = std::sync::Arc::new(std::mem::take(&mut s.ledger.account_tags));
        opts.privileges = std::sync::Arc::new(std::mem::take(&mut s.ledger.privileges));
        opts.usage = Some(std::sync::Arc::new(std::mem::take(&mut s.ledger.usage)));
    }
    let scanned = scanner.run_as(&identity, &opts, progress).await;
    if let Some(s) = &mut session {
        s.ledger.account_tags = give_back(std::mem::take(&mut opts.account_tags));
        s.ledger.privileges = give_back(std::mem::take(&mut opts.privileges));
        s.ledger.usage = opts.usage.take().map(give_back).unwrap_or_default();
    }
    let mut report = scanned?;
    let changes = Box::pin(settle(
        &plan,
        &identity,
        &mut report,
        session.as_mut(),
        opts.deadline,
        scanner.settings(),
    ))
    .await;

    if let Some((notifier, delivery)) = plan.notify {
        let archive_csv = archive_location(
            session.as_ref(),
            &identity.organization,
            report.evaluated_at,
            "csv",
        );
        notifier
            .deliver(
                &mut report,
                delivery,
                session.as_mut(),
                changes.as_ref(),
                opts.deadline,
                archive_csv,
            )
            .await;
    }
    conclude(session.as_mut(), &identity.organization, &mut report).await;
    Ok(report)
}

/// What was lent to the scan, back (a copy only if something still holds it).
fn give_back<T: Clone>(lent: std::sync::Arc<T>) -> T {
    std::sync::Arc::try_unwrap(lent).unwrap_or_else(|still| (*still).clone())
}

/// Everything between the scan and the mail: the ledger brought up to date
/// (lifecycle, account-tag cache), enforcement, the Security Hub export and
/// the chat summary. Returns what changed since the last run (with a ledger).
pub async fn settle(
    plan: &Plan<'_>,
    identity: &Identity,
    report: &mut Report,
    mut session: Option<&mut LedgerSession>,
    deadline: Option<crate::deadline::Deadline>,
    settings: &crate::config::Settings,
) -> Option<Changes> {
    let writes = plan.writes_state();
    // Read before reconcile stamps this run's time on the ledger.
    let saved_at = session.as_deref().and_then(|s| s.ledger.updated_at);
    let observed = std::mem::take(&mut report.observed);
    let changes = session
        .as_deref_mut()
        .map(|s| reconcile(&mut s.ledger, report, &observed, &plan.cadence));
    if let Some(s) = session.as_deref_mut() {
        crate::core::tag_cache::remember(
            &mut s.ledger.account_tags,
            &std::mem::take(&mut report.account_tags_read),
            report.evaluated_at,
            settings.account_tags_max_age_days,
        );
        crate::core::privilege::cache::remember(
            &mut s.ledger.privileges,
            &std::mem::take(&mut report.privileges_read),
            report.evaluated_at,
            settings.privilege_max_age_days,
        );
        crate::core::usage::remember(
            &mut s.ledger.usage,
            &std::mem::take(&mut report.usage_read),
            report.evaluated_at,
            settings.usage.refresh_days,
        );
    }
    report.observed = observed;

    // Enforcement comes before delivery, so the owner's message this run
    // says what was done. Only a delivering notify run acts; scan and
    // --dry-run say what `apply` would do.
    if let Some(enforcer) = plan.enforcer {
        let consistent = crate::core::enforce::clock_consistent(saved_at, report.evaluated_at);
        match (session.as_deref_mut(), consistent) {
            (Some(_), Err(message)) if enforcer.policy().mode != EnforceMode::Off => {
                warn!(error = %message, "enforcement refused");
                report.errors.push(StageError {
                    stage: "enforce".to_owned(),
                    code: "LedgerInconsistent".to_owned(),
                    message,
                });
            }
            (Some(s), _) => {
                let acting = enforcer.for_run(writes);
                acting.run(report, &mut s.ledger, &identity.caller).await;
            }
            (None, _) if enforcer.policy().mode != EnforceMode::Off => {
                warn!("enforcement needs the ledger (the notices delivered): nothing is enforced without state");
            }
            (None, _) => {}
        }
    }

    // Security Hub, then the chat summary, go out before the mail, so the
    // digest can name an account not exported or a failed post. Findings
    // resolved this run are archived there (they are in the report).
    if let (Some((_, delivery)), Some(export)) = (plan.notify, plan.securityhub) {
        let notes = export
            .export(report, delivery, &identity.caller, deadline)
            .await;
        report.notifications.extend(notes);
    }

    if let (Some((_, delivery)), Some(chat)) = (plan.notify, plan.chat) {
        let location = archive_location(
            session.as_deref(),
            &identity.organization,
            report.evaluated_at,
            "json",
        );
        let until = deadline.map(|d| d.at - d.reserve);
        let note = post_summary(chat, delivery, report, changes.as_ref(), location, until).await;
        report.notifications.push(note);
    }
    changes
}

/// Where [`conclude`] will archive this run's report as `ext` (`json`,
/// `csv`): only a writable session archives.
pub fn archive_location(
    session: Option<&LedgerSession>,
    organization: &str,
    evaluated_at: jiff::Timestamp,
    ext: &str,
) -> Option<String> {
    session.filter(|s| s.writable()).map(|s| {
        s.store().describe(&format!(
            "{}.{ext}",
            crate::state::archive_stem(organization, evaluated_at)
        ))
    })
}

/// Saves the ledger and archives the report (a writable session only); a
/// failure of either is recorded in the report.
pub async fn conclude(
    session: Option<&mut LedgerSession>,
    organization: &str,
    report: &mut Report,
) {
    if let Some(s) = session.filter(|s| s.writable()) {
        if let Err(e) = s.save().await {
            report.errors.push(StageError {
                stage: "state".to_owned(),
                code: "LedgerNotSaved".to_owned(),
                message: e.to_string(),
            });
        }
        archive(s.store(), organization, report).await;
    }
}

/// Posts (or, for an outbox or a dry run, writes or skips) the run summary.
async fn post_summary(
    chat: &Chat,
    delivery: &Delivery,
    report: &Report,
    changes: Option<&Changes>,
    location: Option<String>,
    until: Option<tokio::time::Instant>,
) -> Notification {
    let summary = summarize(report, changes, location.as_deref());
    let mut note = Notification {
        kind: MessageKind::Chat,
        recipients: vec![],
        subject: format!(
            "{} findings in {} of {} accounts",
            summary.findings, summary.accounts_scanned, summary.accounts_total
        ),
        findings: summary.findings,
        outcome: DeliveryOutcome::DryRun,
        message_id: None,
        error: None,
        file: None,
    };
    let webhook = match chat {
        Chat::Ready(w) => w,
        Chat::Broken { label, error } => {
            warn!(error = %error, target = %label, "chat summary not delivered");
            note.recipients = vec![label.clone()];
            note.outcome = DeliveryOutcome::Failed;
            note.error = Some(error.clone());
            return note;
        }
    };
    note.recipients = vec![webhook.label()];
    let body = payload(&summary, webhook.format);
    let result = match delivery {
        Delivery::DryRun => Ok(()),
        Delivery::Outbox(dir) => write_chat(dir, webhook.format.as_str(), &body).map(|path| {
            note.outcome = DeliveryOutcome::Outbox;
            note.file = Some(path.display().to_string());
        }),
        Delivery::Ses => webhook.post(&body, until).await.map(|()| {
            note.outcome = DeliveryOutcome::Sent;
        }),
    };
    if let Err(e) = result {
        warn!(error = %e, target = %webhook.label(), "chat summary not delivered");
        note.outcome = DeliveryOutcome::Failed;
        note.error = Some(e);
    }
    note
}

/// Writes the run's JSON report and findings CSV under Hive-style
/// partitions, and its OCSF events in a parallel tree; a failure is recorded
/// in the report.
async fn archive(store: &Store, organization: &str, report: &mut Report) {
    let r: &Report = report;
    // One JSON object on one line: what Athena's JSON SerDe reads. Each file
    // is rendered when it is written and dropped after.
    let json = || {
        let mut out = Vec::with_capacity(r.findings.len() * 1_500 + r.accounts.len() * 300);
        serde_json::to_writer(&mut out, r)
            .map_err(|e| format!("cannot render the report JSON: {e}"))?;
        out.push(b'\n');
        Ok(out)
    };
    let csv = || {
        crate::output::findings_csv(&r.findings)
            .map(String::into_bytes)
            .map_err(|e| format!("cannot render the findings CSV: {e}"))
    };
    let ocsf = || {
        crate::output::ocsf_lines(r)
            .map(String::into_bytes)
            .map_err(|e| format!("cannot render the OCSF events: {e}"))
    };
    let result = crate::state::archive(
        store,
        organization,
        r.evaluated_at,
        crate::state::Archived {
            json: &json,
            csv: &csv,
            ocsf: &ocsf,
        },
    )
    .await
    .map_err(|e| e.to_string());
    if let Err(message) = result {
        warn!(error = %message, "report not archived");
        report.errors.push(StageError {
            stage: "state".to_owned(),
            code: "ReportNotArchived".to_owned(),
            message,
        });
    }
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
    pub errors: Vec<StageError>,
    pub notifications: Vec<Notification>,
}

/// How the error of an incomplete run starts; the run summary (JSON) follows.
pub const INCOMPLETE: &str = "keywarden run incomplete (an account was not scanned, a message was not delivered, or the ledger or report archive was not saved): ";

impl RunSummary {
    /// The summary of a finished run.
    pub fn of(report: &Report) -> Self {
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

/// The run summary of a finished run; an error (carrying it) when the run
/// was incomplete, so the function's Errors alarm fires.
pub fn finished(report: &Report) -> anyhow::Result<RunSummary> {
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
