//! Delivery of a scan's findings: one message per person, then the security
//! digest (last, so it can name every message that failed). Delivery is SES
//! v2, an outbox folder, or a dry run. One failed message never stops the
//! others; every message is recorded in the report's `notifications`.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use jiff::Timestamp;
use tracing::{info, warn};

use crate::aws::ses::{Identity, Ses};
use crate::aws::AwsError;
use crate::config::{NotifySettings, MAX_SEND_RATE, MIN_SEND_RATE};
use crate::core::enforce::EnforcePolicy;
use crate::core::ledger::{Cadence, Changes, Notice, Stage};
use crate::core::mime::{self, Attachment, Envelope};
use crate::core::model::EmailAddress;
use crate::core::notify::{
    digest_view, history_view, owner_view, plan_people, DeliveryFailure, DeliveryMode,
    DigestExtras, Memory, NotifyPolicy,
};
use crate::core::report::{
    DeliveryOutcome, Finding, MessageKind, Notification, Report, StageError,
};
use crate::core::templates::{Rendered, Templates};
use crate::scan::Deadline;
use crate::state::LedgerSession;

/// SES accepts at most 50 recipients per message.
pub const MAX_RECIPIENTS: usize = 50;

/// Where messages go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// SES v2 SendEmail.
    Ses,
    /// Render everything, send nothing.
    DryRun,
    /// Write each message as `.eml` plus an `.html` preview into this folder.
    Outbox(PathBuf),
}

/// A failure that stops notify before any message is sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("sender {sender} is not a verified SES identity in {region} (neither the address nor its domain); verify it in SES first (aws sesv2 create-email-identity --email-identity {sender})")]
    SenderMissing { sender: String, region: String },
    #[error("sender {sender}: the SES identity {identity} exists in {region} but is not verified for sending yet")]
    SenderNotVerified {
        sender: String,
        identity: String,
        region: String,
    },
    #[error("cannot check the sender identity: {0}")]
    Ses(AwsError),
    #[error("cannot use the outbox folder {path}: {reason}")]
    Outbox { path: PathBuf, reason: String },
}

/// Sends, writes or renders the messages of a run.
#[derive(Debug, Clone)]
pub struct Notifier {
    templates: Arc<Templates>,
    ses: Ses,
    sender: EmailAddress,
    security: Vec<EmailAddress>,
    reply_to: Vec<EmailAddress>,
    configuration_set: Option<String>,
    fallback_rate: f64,
    policy: NotifyPolicy,
    cadence: Cadence,
    enforce: EnforcePolicy,
}

/// Spaces sends out to a rate.
struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    /// Paces to `rate` messages per second, clamped to what keywarden accepts
    /// (SES's answer is data from outside: 1e-30 or NaN must not panic).
    fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / clamp_rate(rate)),
            next: tokio::time::Instant::now(),
        }
    }
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now().max(self.next) + self.interval;
    }
}

/// A send rate within [`MIN_SEND_RATE`, `MAX_SEND_RATE`]; NaN is the minimum.
fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        MIN_SEND_RATE
    } else {
        rate.clamp(MIN_SEND_RATE, MAX_SEND_RATE)
    }
}

fn file_safe(s: &str) -> String {
    s.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '@' | '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect()
}

impl Notifier {
    /// A notifier for these settings; `cadence` decides who is due.
    pub fn new(
        sdk_config: &SdkConfig,
        settings: &NotifySettings,
        cadence: Cadence,
        enforce: EnforcePolicy,
        templates: Templates,
    ) -> Self {
        Self {
            templates: Arc::new(templates),
            ses: Ses::new(sdk_config, settings.ses_region.as_deref()),
            sender: settings.sender.clone(),
            security: settings.security_recipients.clone(),
            reply_to: settings.reply_to.clone(),
            configuration_set: settings.configuration_set.clone(),
            fallback_rate: settings.max_send_rate,
            policy: NotifyPolicy {
                notify_account_owners: settings.notify_account_owners,
                ..NotifyPolicy::default()
            },
            cadence,
            enforce,
        }
    }

    /// Checks what must hold before anything is sent: a verified sender for
    /// SES, a writable folder for the outbox.
    pub async fn preflight(&self, delivery: &Delivery) -> Result<(), NotifyError> {
        match delivery {
            Delivery::DryRun => Ok(()),
            Delivery::Outbox(dir) => {
                std::fs::create_dir_all(dir).map_err(|e| NotifyError::Outbox {
                    path: dir.clone(),
                    reason: e.to_string(),
                })
            }
            Delivery::Ses => self.check_sender().await,
        }
    }

    async fn check_sender(&self) -> Result<(), NotifyError> {
        let sender = self.sender.as_str();
        let domain = sender.rsplit_once('@').map(|(_, d)| d).unwrap_or(sender);
        for identity in [sender, domain] {
            match self.ses.identity(identity).await {
                Ok(Identity::Verified) => return Ok(()),
                Ok(Identity::NotVerified) => {
                    return Err(NotifyError::SenderNotVerified {
                        sender: sender.to_owned(),
                        identity: identity.to_owned(),
                        region: self.ses.region().to_owned(),
                    })
                }
                Ok(Identity::Missing) => continue,
                Err(e) if e.is_access_denied() => {
                    warn!(error = %e, "may not read the SES identity; sending without checking the sender first");
                    return Ok(());
                }
                Err(e) => return Err(NotifyError::Ses(e)),
            }
        }
        Err(NotifyError::SenderMissing {
            sender: sender.to_owned(),
            region: self.ses.region().to_owned(),
        })
    }

    async fn send_rate(&self) -> f64 {
        match self.ses.max_send_rate().await {
            Ok(Some(reported)) => {
                let rate = clamp_rate(reported);
                if rate != reported {
                    warn!(
                        reported,
                        rate,
                        "SES reported a send rate out of range; pacing at the nearest sane rate"
                    );
                } else {
                    info!(rate, "pacing at the SES account's maximum send rate");
                }
                rate
            }
            Ok(None) => {
                warn!(
                    rate = self.fallback_rate,
                    "SES reported no send quota; pacing at max_send_rate"
                );
                self.fallback_rate
            }
            Err(e) => {
                warn!(error = %e, rate = self.fallback_rate, "cannot read the SES send quota (GetAccount); pacing at max_send_rate");
                self.fallback_rate
            }
        }
    }

    /// Builds and delivers every message due for `report` and records them
    /// in `report.notifications`. With a ledger session, every delivered
    /// message is recorded against its findings and the ledger is
    /// checkpointed as delivery goes, so a crash re-sends little.
    pub async fn deliver(
        &self,
        report: &mut Report,
        delivery: &Delivery,
        mut session: Option<&mut LedgerSession>,
        changes: Option<&Changes>,
        deadline: Option<Deadline>,
    ) {
        let link = |f: &Finding| self.templates.link(f);
        // Owner mail stops in time for the digest (and the ledger save): the
        // digest always goes out, naming whoever was not reached.
        let stop_at = deadline.map(|d| d.at - (d.reserve / 3).min(Duration::from_secs(20)));
        let memory = session.as_deref().map(|s| Memory {
            ledger: &s.ledger,
            cadence: self.cadence,
            enforce: self.enforce,
        });
        let people = plan_people(report, &self.policy, memory);
        let contact = self
            .security
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ");
        let mut checkpoint_failed = false;
        let mut pacer = match delivery {
            Delivery::Ses => Some(Pacer::new(self.send_rate().await)),
            _ => None,
        };
        let mut notes = Vec::new();
        let mut failures = Vec::new();
        for (i, person) in people.iter().enumerate() {
            let view = owner_view(report, person, &contact, &link);
            let to = std::slice::from_ref(&person.recipient);
            // This message waits for its turn (the pacer) and the digest for one
            // more: both must fit before `stop_at`.
            let turn = pacer.as_ref().map_or(Duration::ZERO, |p| p.interval * 2);
            let out_of_time =
                stop_at.is_some_and(|stop| tokio::time::Instant::now() + turn >= stop);
            let note = match self.templates.owner(&view) {
                _ if out_of_time => failed(
                    MessageKind::Owner,
                    to,
                    String::new(),
                    person.finding_count(),
                    "not sent this run: the invocation deadline was near (it goes out on the next run)"
                        .to_owned(),
                ),
                Ok(rendered) => {
                    self.dispatch(
                        MessageKind::Owner,
                        i + 1,
                        to,
                        &rendered,
                        None,
                        person.finding_count(),
                        report.evaluated_at,
                        delivery,
                        pacer.as_mut(),
                    )
                    .await
                }
                Err(e) => failed(
                    MessageKind::Owner,
                    to,
                    String::new(),
                    person.finding_count(),
                    format!("cannot render the message: {e}"),
                ),
            };
            if note.outcome == DeliveryOutcome::Failed {
                failures.push(DeliveryFailure {
                    recipients: note.recipients.join(", "),
                    error: note.error.clone().unwrap_or_default(),
                });
            }
            if let Some(s) = session.as_deref_mut() {
                if matches!(
                    note.outcome,
                    DeliveryOutcome::Sent | DeliveryOutcome::Outbox
                ) {
                    s.record(
                        &person.notices(),
                        &Notice {
                            at: report.evaluated_at,
                            stage: Stage::First,
                            recipients: note.recipients.clone(),
                            message_id: note.message_id.clone(),
                        },
                    );
                }
                if let Err(e) = s.checkpoint().await {
                    if !checkpoint_failed {
                        checkpoint_failed = true;
                        report.errors.push(StageError {
                            stage: "state".to_owned(),
                            code: "LedgerNotSaved".to_owned(),
                            message: format!("checkpoint during delivery: {e}"),
                        });
                    }
                }
            }
            notes.push(note);
        }

        let extras = DigestExtras {
            people_notified: notes
                .iter()
                .filter(|n| n.outcome != DeliveryOutcome::Failed)
                .count(),
            delivery_failures: failures,
            history: match (session.as_deref(), changes) {
                (Some(s), Some(c)) => Some(history_view(report, &s.ledger, c, &self.policy, &link)),
                _ => None,
            },
            enforce_mode: self.enforce.mode.as_str(),
            delivery: match delivery {
                Delivery::Ses => DeliveryMode::Sent,
                Delivery::DryRun => DeliveryMode::DryRun,
                Delivery::Outbox(_) => DeliveryMode::Outbox,
            },
        };
        let view = digest_view(report, &self.policy, extras, &link);
        let csv = crate::output::findings_csv(&report.findings)
            .unwrap_or_else(|e| format!("error: {e}\n"));
        let attachment = Attachment {
            content_type: "text/csv",
            file_name: "keywarden-findings.csv",
            content: csv.as_bytes(),
        };
        let total = report.findings.len();
        match self.templates.digest(&view) {
            Ok(rendered) => {
                for (j, chunk) in self.security.chunks(MAX_RECIPIENTS).enumerate() {
                    let n = people.len() + j + 1;
                    notes.push(
                        self.dispatch(
                            MessageKind::Digest,
                            n,
                            chunk,
                            &rendered,
                            Some(attachment.clone()),
                            total,
                            report.evaluated_at,
                            delivery,
                            pacer.as_mut(),
                        )
                        .await,
                    );
                }
            }
            Err(e) => notes.push(failed(
                MessageKind::Digest,
                &self.security,
                String::new(),
                total,
                format!("cannot render the message: {e}"),
            )),
        }
        report.notifications = notes;
    }

    #[allow(clippy::too_many_arguments)]
    async fn dispatch(
        &self,
        kind: MessageKind,
        n: usize,
        to: &[EmailAddress],
        rendered: &Rendered,
        attachment: Option<Attachment<'_>>,
        findings: usize,
        now: Timestamp,
        delivery: &Delivery,
        pacer: Option<&mut Pacer>,
    ) -> Notification {
        let kind_str = kind.as_str();
        let raw = match mime::build(&Envelope {
            from: &self.sender,
            to,
            reply_to: &self.reply_to,
            subject: &rendered.subject,
            text: &rendered.text,
            html: &rendered.html,
            attachment,
            date: now,
            message_id: mime::message_id(now, kind_str, to),
        }) {
            Ok(raw) => raw,
            Err(e) => {
                return failed(
                    kind,
                    to,
                    rendered.subject.clone(),
                    findings,
                    format!("cannot build the message: {e}"),
                )
            }
        };
        let mut note = Notification {
            kind,
            recipients: to.iter().map(|a| a.to_string()).collect(),
            subject: rendered.subject.clone(),
            findings: findings as u64,
            outcome: DeliveryOutcome::DryRun,
            message_id: None,
            error: None,
            file: None,
        };
        match delivery {
            Delivery::DryRun => {}
            Delivery::Outbox(dir) => {
                let stem = match kind {
                    MessageKind::Owner => format!("{n:03}-owner-{}", file_safe(to[0].as_str())),
                    MessageKind::Digest => format!("{n:03}-digest"),
                };
                match write_outbox(dir, &stem, &raw, &rendered.html) {
                    Ok(path) => {
                        note.outcome = DeliveryOutcome::Outbox;
                        note.file = Some(path.display().to_string());
                    }
                    Err(e) => {
                        note.outcome = DeliveryOutcome::Failed;
                        note.error = Some(e);
                    }
                }
            }
            Delivery::Ses => {
                let mut pacer = pacer;
                let mut backoff = Duration::from_secs(1);
                let mut attempts = 0;
                let result = loop {
                    if let Some(p) = pacer.as_deref_mut() {
                        p.wait().await;
                    }
                    attempts += 1;
                    match self
                        .ses
                        .send_raw(
                            &self.sender,
                            to,
                            raw.clone(),
                            self.configuration_set.as_deref(),
                        )
                        .await
                    {
                        Err(e) if e.is_throttling() && attempts < 4 => {
                            warn!(error = %e, "SES throttled sending; backing off");
                            tokio::time::sleep(backoff).await;
                            backoff *= 2;
                        }
                        other => break other,
                    }
                };
                match result {
                    Ok(id) => {
                        note.outcome = DeliveryOutcome::Sent;
                        note.message_id = Some(id);
                    }
                    Err(e) => {
                        warn!(error = %e, recipients = ?note.recipients, "message not delivered");
                        note.outcome = DeliveryOutcome::Failed;
                        note.error = Some(format!("{}: {}", e.code, e.message));
                    }
                }
            }
        }
        note
    }
}

fn failed(
    kind: MessageKind,
    to: &[EmailAddress],
    subject: String,
    findings: usize,
    error: String,
) -> Notification {
    // `error` says what failed: rendering or building the message.
    warn!(error, "message not delivered");
    Notification {
        kind,
        recipients: to.iter().map(|a| a.to_string()).collect(),
        subject,
        findings: findings as u64,
        outcome: DeliveryOutcome::Failed,
        message_id: None,
        error: Some(error),
        file: None,
    }
}

fn write_outbox(dir: &Path, stem: &str, raw: &[u8], html: &str) -> Result<PathBuf, String> {
    let eml = dir.join(format!("{stem}.eml"));
    std::fs::write(&eml, raw).map_err(|e| format!("cannot write {}: {e}", eml.display()))?;
    let preview = dir.join(format!("{stem}.html"));
    std::fs::write(&preview, html)
        .map_err(|e| format!("cannot write {}: {e}", preview.display()))?;
    Ok(eml)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_send_rate_from_ses_or_settings_becomes_a_usable_interval() {
        for rate in [1e-30, 0.0, -5.0, f64::NAN, f64::INFINITY, 1e300, 14.0] {
            let p = Pacer::new(rate);
            assert!(
                p.interval >= Duration::from_secs_f64(1.0 / MAX_SEND_RATE)
                    && p.interval <= Duration::from_secs_f64(1.0 / MIN_SEND_RATE),
                "{rate}: {:?}",
                p.interval
            );
        }
        assert_eq!(
            Pacer::new(14.0).interval,
            Duration::from_secs_f64(1.0 / 14.0)
        );
    }
}
