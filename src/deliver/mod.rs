//! The delivery seam. A rendered message is data ([`Message`]: recipients,
//! subject, text and HTML parts, attachment), so it can be planned in one place
//! and sent in another (or stored and sent later); a transport only sends. One
//! file per transport: SES v2 ([`ses`]), an outbox folder ([`outbox`]), a dry
//! run ([`dry_run`]). MIME is built here, for the email transports only.
//!
//! May not: decide who gets what (that is `core::plan`), render templates, or
//! touch the ledger.

pub mod dry_run;
pub mod outbox;
pub mod securityhub;
pub mod ses;
pub mod webhook;

use std::path::PathBuf;
use std::time::Duration;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::aws::ses::Ses;
use crate::core::mime::{self, Attachment, Envelope};
use crate::core::model::EmailAddress;
use crate::core::report::{DeliveryOutcome, MessageKind};

/// Where messages go (what the user chose).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    /// SES v2 SendEmail.
    Ses,
    /// Render everything, send nothing.
    DryRun,
    /// Write each message as `.eml` plus an `.html` preview into this folder.
    Outbox(PathBuf),
}

/// A file attached to a message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attached {
    pub content_type: String,
    pub file_name: String,
    pub content: String,
}

/// One rendered message, ready for any transport.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub kind: MessageKind,
    /// Position in the run (1-based): names outbox files in sending order.
    pub seq: usize,
    pub from: EmailAddress,
    pub to: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    pub subject: String,
    pub text: String,
    pub html: String,
    pub attachment: Option<Attached>,
    /// How many findings the message covers (for the report).
    pub findings: usize,
    /// The run's `now`: the Date header and Message-ID come from it, so the
    /// same run renders the same bytes.
    pub date: Timestamp,
}

impl Message {
    /// The raw RFC 5322 message (text + HTML, the attachment if any).
    pub fn mime(&self) -> Result<Vec<u8>, String> {
        mime::build(&Envelope {
            from: &self.from,
            to: &self.to,
            reply_to: &self.reply_to,
            subject: &self.subject,
            text: &self.text,
            html: &self.html,
            attachment: self.attachment.as_ref().map(|a| Attachment {
                content_type: &a.content_type,
                file_name: &a.file_name,
                content: a.content.as_bytes(),
            }),
            date: self.date,
            message_id: mime::message_id(self.date, self.kind.as_str(), &self.to),
        })
        .map_err(|e| format!("cannot build the message: {e}"))
    }
}

/// What a transport did with a message it accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivered {
    pub outcome: DeliveryOutcome,
    pub message_id: Option<String>,
    pub file: Option<String>,
}

/// An open transport. A closed set, one file each; adding one is a variant
/// and a file.
#[derive(Debug)]
pub enum Transport {
    Ses(ses::SesTransport),
    Outbox(outbox::Outbox),
    DryRun(dry_run::DryRun),
}

impl Transport {
    /// Opens the transport `delivery` names. For SES this reads the account's
    /// send rate (or falls back to `fallback_rate`), so it is done once per run.
    /// `senders` transports send side by side (the workflow's delivery
    /// batches): each paces to its share of the rate.
    pub async fn open(
        delivery: &Delivery,
        ses: &Ses,
        configuration_set: Option<String>,
        fallback_rate: f64,
        senders: u32,
    ) -> Self {
        match delivery {
            Delivery::Ses => Transport::Ses(
                ses::SesTransport::open(ses.clone(), configuration_set, fallback_rate, senders)
                    .await,
            ),
            Delivery::Outbox(dir) => Transport::Outbox(outbox::Outbox::new(dir.clone())),
            Delivery::DryRun => Transport::DryRun(dry_run::DryRun),
        }
    }

    /// The longest one more message can take to go out (its pacing slot).
    pub fn turn(&self) -> Duration {
        match self {
            Transport::Ses(t) => t.interval(),
            Transport::Outbox(_) | Transport::DryRun(_) => Duration::ZERO,
        }
    }

    /// Sends one message; an error is the reason it was not delivered.
    pub async fn send(&mut self, message: &Message) -> Result<Delivered, String> {
        match self {
            Transport::Ses(t) => t.send(message).await,
            Transport::Outbox(t) => t.send(message),
            Transport::DryRun(t) => t.send(message),
        }
    }
}
