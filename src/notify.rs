//! Delivery of a scan's findings: one message per person, then the security
//! digest (last, so it can name every message that failed). Delivery is SES
//! v2, an outbox folder, or a dry run. One failed message never stops the
//! others; every message is recorded in the report's `notifications`.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use aws_config::SdkConfig;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use tracing::warn;

use crate::aws::ses::{Identity, Ses};
use crate::aws::AwsError;
use crate::config::NotifySettings;
use crate::core::enforce::EnforcePolicy;
use crate::core::ledger::{Cadence, Changes, Ledger, Notice, Stage};
use crate::core::model::EmailAddress;
use crate::core::notify::{
    digest_view, history_view, owner_view, plan_people, DeliveryFailure, DeliveryMode,
    DigestExtras, FindingsCsv, Memory, NotifyPolicy, PersonPlan,
};
use crate::core::owners::OwnerRules;
use crate::core::report::{
    DeliveryOutcome, Finding, MessageKind, Notification, Report, StageError,
};
use crate::core::templates::{Rendered, Templates};
use crate::deadline::Deadline;
use crate::deliver::{Attached, Message, Transport};
use crate::state::LedgerSession;

/// SES accepts at most 50 recipients per message.
pub const MAX_RECIPIENTS: usize = 50;

pub use crate::deliver::Delivery;

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
        archive_csv: Option<String>,
    ) {
        // Owner mail stops in time for the digest (and the ledger save): the
        // digest always goes out, naming whoever was not reached.
        let stop_at = deadline.map(|d| d.at - (d.reserve / 3).min(Duration::from_secs(20)));
        let people = self.plan(report, session.as_deref().map(|s| &s.ledger));
        let mut transport = self.transport(delivery, 1).await;
        // Anything delivered before the mail (the chat summary) stays, and a
        // failure there is named in the digest too.
        let mut notes = std::mem::take(&mut report.notifications);
        let mut checkpoint_failed = false;
        let owners = people.len();
        // Each person's plan is dropped once its message is sent.
        for (i, person) in people.into_iter().enumerate() {
            // Rendered one at a time, dropped once sent.
            let out = self.render(report, &person, i);
            let note = self.send_owner(&mut transport, &out, stop_at).await;
            if let Some(s) = session.as_deref_mut() {
                if note.outcome.delivered() {
                    s.record(&out.notices, &out.notice(report.evaluated_at, &note));
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
        report.notifications = notes;
        let ledger = session.as_deref().map(|s| &s.ledger);
        let digest = DigestRun {
            ledger,
            changes,
            owners,
            archive_csv,
        };
        self.send_digest(report, delivery, &mut transport, digest)
            .await;
    }

    /// A transport for `delivery`; `senders` transports send side by side
    /// and share the send rate.
    pub async fn transport(&self, delivery: &Delivery, senders: u32) -> Transport {
        Transport::open(
            delivery,
            &self.ses,
            self.configuration_set.clone(),
            self.fallback_rate,
            senders,
        )
        .await
    }

    /// Everyone due a message for `report` (with the ledger's memory, when
    /// there is one), in sending order. Render each with [`Notifier::render`]
    /// just before it goes: at 20,000 accounts a first run has some 15,000
    /// messages, too many to hold rendered at once.
    pub fn plan(&self, report: &Report, ledger: Option<&Ledger>) -> Vec<PersonPlan> {
        let memory = ledger.map(|ledger| Memory {
            ledger,
            cadence: self.cadence,
            enforce: self.enforce,
        });
        plan_people(report, &self.policy, memory)
    }

    /// The message of the `i`-th person (from 0) of [`Notifier::plan`], or
    /// why it could not be rendered.
    pub fn render(&self, report: &Report, person: &PersonPlan, i: usize) -> Outgoing {
        let link = |f: &Finding| self.templates.link(f);
        let view = owner_view(report, person, &self.contact(), &link);
        let to = std::slice::from_ref(&person.recipient);
        let findings = person.finding_count();
        Outgoing {
            recipient: person.recipient.clone(),
            findings,
            notices: person.notices(),
            message: self
                .templates
                .owner(&view)
                .map(|rendered| {
                    self.message(
                        MessageKind::Owner,
                        i + 1,
                        to,
                        rendered,
                        None,
                        findings,
                        report.evaluated_at,
                    )
                })
                .map_err(|e| format!("cannot render the message: {e}")),
        }
    }

    fn contact(&self) -> String {
        self.security
            .iter()
            .map(|a| a.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Sends one prepared owner message, unless it could not be rendered
    /// or its turn would come after `stop_at`.
    pub async fn send_owner(
        &self,
        transport: &mut Transport,
        out: &Outgoing,
        stop_at: Option<tokio::time::Instant>,
    ) -> Notification {
        let to = std::slice::from_ref(&out.recipient);
        // This message waits for its turn (the pacer) and the digest for one
        // more: both must fit before `stop_at`.
        let turn = transport.turn();
        let out_of_time = stop_at.is_some_and(|stop| tokio::time::Instant::now() + turn >= stop);
        match &out.message {
            _ if out_of_time => failed(
                MessageKind::Owner,
                to,
                String::new(),
                out.findings,
                "not sent this run: the invocation deadline was near (it goes out on the next run)"
                    .to_owned(),
            ),
            Ok(message) => send(transport, message).await,
            Err(e) => failed(
                MessageKind::Owner,
                to,
                String::new(),
                out.findings,
                e.clone(),
            ),
        }
    }

    /// Renders and sends the security digest last, naming every failure in
    /// `report.notifications` (owner mail, chat, Security Hub), and appends
    /// it there.
    pub async fn send_digest(
        &self,
        report: &mut Report,
        delivery: &Delivery,
        transport: &mut Transport,
        digest: DigestRun<'_>,
    ) {
        let DigestRun {
            ledger,
            changes,
            owners,
            archive_csv,
        } = digest;
        let link = |f: &Finding| self.templates.link(f);
        let failure = |n: &Notification| DeliveryFailure {
            recipients: n.recipients.join(", "),
            error: n.error.clone().unwrap_or_default(),
        };
        let notes = std::mem::take(&mut report.notifications);
        let failed_notes = notes
            .iter()
            .filter(|n| n.outcome == DeliveryOutcome::Failed);
        // Every finding as CSV, attached unless too large for mail (then
        // the digest says where the run's archive keeps it).
        let csv = crate::output::findings_csv(&report.findings)
            .unwrap_or_else(|e| format!("error: {e}\n"));
        let findings_csv = FindingsCsv::for_size(csv.len(), archive_csv);
        let attachment = (findings_csv == FindingsCsv::Attached).then(|| Attached {
            content_type: "text/csv".to_owned(),
            file_name: "keywarden-findings.csv".to_owned(),
            content: csv,
        });
        let extras = DigestExtras {
            findings_csv,
            people_notified: notes
                .iter()
                .filter(|n| n.kind == MessageKind::Owner && n.outcome != DeliveryOutcome::Failed)
                .count(),
            delivery_failures: failed_notes
                .clone()
                .filter(|n| n.kind != MessageKind::SecurityHub)
                .map(failure)
                .collect(),
            export_failures: failed_notes
                .filter(|n| n.kind == MessageKind::SecurityHub)
                .map(failure)
                .collect(),
            history: match (ledger, changes) {
                (Some(l), Some(c)) => Some(history_view(report, l, c, &self.policy, &link)),
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
        let total = report.findings.len();
        let mut notes = notes;
        match self.templates.digest(&view) {
            Ok(rendered) => {
                let chunks = self.security.chunks(MAX_RECIPIENTS).count();
                let (mut rendered, mut attachment) = (Some(rendered), attachment);
                for (j, chunk) in self.security.chunks(MAX_RECIPIENTS).enumerate() {
                    // Copies only for a digest split over several messages.
                    let (r, a) = if j + 1 == chunks {
                        (rendered.take(), attachment.take())
                    } else {
                        (rendered.clone(), attachment.clone())
                    };
                    let Some(r) = r else { break };
                    let message = self.message(
                        MessageKind::Digest,
                        owners + j + 1,
                        chunk,
                        r,
                        a,
                        total,
                        report.evaluated_at,
                    );
                    notes.push(send(transport, &message).await);
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

    /// An owner message read back from the workflow's mail batch (a file in
    /// the state bucket: an input, not a fact), made safe to send: From and
    /// Reply-To come from this notifier's settings again, the one recipient
    /// must be the message's own and pass `rules` (the allowed domains), and
    /// an owner message never carries an attachment. `Err` says why the
    /// message is refused.
    pub fn verified(&self, out: &Outgoing, rules: &OwnerRules) -> Result<Outgoing, String> {
        let refuse = |why: String| {
            Err(format!(
                "refused: the workflow's mail batch does not verify ({why}); nothing was sent"
            ))
        };
        let Ok(message) = &out.message else {
            return Ok(out.clone());
        };
        if message.kind != MessageKind::Owner {
            return refuse(format!("a {:?} message in an owner batch", message.kind));
        }
        if message.to != [out.recipient.clone()] {
            return refuse(format!(
                "it is addressed to {} instead of {}",
                message
                    .to
                    .iter()
                    .map(|a| a.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                out.recipient
            ));
        }
        if let Err(e) = rules.check(out.recipient.as_str()) {
            return refuse(e);
        }
        if message.attachment.is_some() {
            return refuse("an owner message with an attachment".to_owned());
        }
        let mut safe = out.clone();
        if let Ok(m) = &mut safe.message {
            m.from = self.sender.clone();
            m.reply_to = self.reply_to.clone();
        }
        Ok(safe)
    }

    /// A rendered message as data, from this notifier's sender.
    #[allow(clippy::too_many_arguments)]
    fn message(
        &self,
        kind: MessageKind,
        seq: usize,
        to: &[EmailAddress],
        rendered: Rendered,
        attachment: Option<Attached>,
        findings: usize,
        now: Timestamp,
    ) -> Message {
        Message {
            kind,
            seq,
            from: self.sender.clone(),
            to: to.to_vec(),
            reply_to: self.reply_to.clone(),
            subject: rendered.subject,
            text: rendered.text,
            html: rendered.html,
            attachment,
            findings,
            date: now,
        }
    }
}

/// What the digest needs besides the report: the ledger and what changed
/// (with a ledger), how many owner messages were planned (the digest's
/// number follows theirs), and where this run's archive will keep the
/// findings CSV (named when it is too large to attach).
pub struct DigestRun<'a> {
    pub ledger: Option<&'a Ledger>,
    pub changes: Option<&'a Changes>,
    pub owners: usize,
    pub archive_csv: Option<String>,
}

/// One owner message of a run, planned and rendered but not sent yet: what
/// the workflow's finish step stores and its delivery batches send.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outgoing {
    pub recipient: EmailAddress,
    /// How many findings the message shows.
    pub findings: usize,
    /// The due findings it carries, with their stage: recorded in the ledger
    /// once it is delivered.
    pub notices: Vec<(String, Stage)>,
    /// The message, or why it could not be rendered.
    pub message: Result<Message, String>,
}

impl Outgoing {
    /// The ledger's record of this message, delivered as `note` says.
    pub fn notice(&self, at: Timestamp, note: &Notification) -> Notice {
        Notice {
            at,
            stage: Stage::First,
            recipients: note.recipients.clone(),
            message_id: note.message_id.clone(),
            key_owner: None,
        }
    }
}

/// Sends `message` and records how it fared.
async fn send(transport: &mut Transport, message: &Message) -> Notification {
    let mut note = Notification {
        kind: message.kind,
        recipients: message.to.iter().map(|a| a.to_string()).collect(),
        subject: message.subject.clone(),
        findings: message.findings as u64,
        outcome: DeliveryOutcome::Failed,
        message_id: None,
        error: None,
        file: None,
    };
    match transport.send(message).await {
        Ok(done) => {
            note.outcome = done.outcome;
            note.message_id = done.message_id;
            note.file = done.file;
        }
        Err(e) => {
            warn!(error = %e, recipients = %note.recipients.join(", "), "message not delivered");
            note.error = Some(e);
        }
    }
    note
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
