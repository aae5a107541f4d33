//! Settings: built-in defaults, then a TOML file (`--config` or
//! `KEYWARDEN_CONFIG`), then `KEYWARDEN_<KEY>` environment variables (lists
//! comma-separated), then CLI flags; later wins. Everything is validated here,
//! before any AWS call, and every error names the key, where the value came
//! from and what is wrong. Nothing else in the crate reads settings sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use crate::core::enforce::EnforcePolicy;
use crate::core::exempt::ExemptionRules;
use crate::core::ledger::Cadence;
use crate::core::model::{AccountId, EmailAddress, Policy};
use crate::core::owners::OwnerRules;
use crate::core::summary::ChatFormat;

/// A settings value that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    File { path: PathBuf, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Toml { path: PathBuf, reason: String },
    #[error("unknown setting `{key}` in {source_name} ({known})")]
    UnknownKey {
        key: String,
        source_name: String,
        known: String,
    },
    #[error("invalid setting `{key}` (from {source_name}): {reason}")]
    Invalid {
        key: String,
        source_name: String,
        reason: String,
    },
    #[error("`{key}` is required for {purpose} (set it in the config file or KEYWARDEN_{upper})", upper = key.to_uppercase())]
    Missing {
        key: &'static str,
        purpose: &'static str,
    },
}

/// The slowest send rate keywarden paces to (messages per second).
pub const MIN_SEND_RATE: f64 = 0.0167;
/// The fastest send rate keywarden paces to (messages per second).
pub const MAX_SEND_RATE: f64 = 10_000.0;

/// Every key the settings accept, with its default as text (`None`: no default).
pub const KEYS: &[(&str, Option<&str>)] = &[
    ("role_name", Some("KeywardenScanRole")),
    ("external_id", None),
    ("warn_age_days", Some("75")),
    ("max_age_days", Some("90")),
    ("unused_days", Some("45")),
    ("stale_inactive_days", Some("30")),
    ("concurrency", Some("192")),
    ("account_timeout_secs", Some("120")),
    ("report_wait_secs", Some("60")),
    ("deadline_reserve_secs", Some("60")),
    ("include_accounts", Some("")),
    ("exclude_accounts", Some("")),
    ("include_ous", Some("")),
    ("exclude_ous", Some("")),
    ("exempt_accounts", Some("")),
    ("exempt_user_arns", Some("")),
    ("exempt_tag_key", Some("keywarden:exempt")),
    ("max_exemption_days", Some("90")),
    ("owner_tag_keys", Some("owner,email,contact")),
    ("account_tags_max_age_days", Some("7")),
    ("privilege_max_age_days", Some("7")),
    ("usage_max_pages", Some("5")),
    ("usage_refresh_days", Some("7")),
    ("usage_max_keys_without_ledger", Some("50")),
    ("account_owner_tag_keys", Some("owner,security-contact")),
    ("notify_account_owners", Some("true")),
    ("allowed_recipient_domains", Some("")),
    ("sender", None),
    ("security_recipients", Some("")),
    ("reply_to", Some("")),
    ("configuration_set", None),
    ("ses_region", None),
    ("max_send_rate", Some("1.0")),
    ("console_link_template", None),
    ("templates_dir", None),
    ("state", None),
    ("remind_every_days", Some("7")),
    ("overdue_remind_every_days", Some("3")),
    ("escalate_after_days", Some("14")),
    ("enforce", Some("off")),
    ("deactivate_after_days", Some("30")),
    ("enforce_min_notices", Some("3")),
    ("enforce_final_notice_days", Some("7")),
    ("enforce_max_per_day", Some("25")),
    // The old name of enforce_max_per_day (it was counted per run, so
    // retries multiplied it): still accepted, never with the new one.
    ("enforce_max_per_run", None),
    ("delete_inactive_after_days", None),
    ("enforce_role_name", Some("KeywardenEnforceRole")),
    ("webhook_url", None),
    ("webhook_url_parameter", None),
    ("webhook_format", None),
    ("securityhub_export", Some("false")),
    ("securityhub_region", None),
    ("clock_override", None),
];

/// Keys for tests only: the Terraform module never sets or accepts them.
pub const TEST_ONLY_KEYS: &[&str] = &["clock_override"];

/// Which accounts to scan.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scope {
    /// When non-empty, only these accounts.
    pub include_accounts: BTreeSet<AccountId>,
    pub exclude_accounts: BTreeSet<AccountId>,
    /// When non-empty, only accounts under these OUs (recursively).
    pub include_ous: Vec<String>,
    /// Accounts under these OUs (recursively) are skipped.
    pub exclude_ous: Vec<String>,
}

/// Validated settings for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Member-account role to assume.
    pub role_name: String,
    /// Optional ExternalId for AssumeRole.
    pub external_id: Option<String>,
    pub policy: Policy,
    /// Accounts in flight at once.
    pub concurrency: usize,
    /// Budget for one account, from AssumeRole to the last IAM call.
    pub account_timeout: Duration,
    /// How long to wait for a credential report before falling back to API enumeration.
    pub report_wait: Duration,
    /// Lambda: stop starting accounts when the invocation deadline is this close
    /// (the time kept for sending the mail).
    pub deadline_reserve: Duration,
    pub scope: Scope,
    pub exemptions: ExemptionRules,
    pub owners: OwnerRules,
    /// What notify needs: present when `sender` and `security_recipients` are set.
    pub notify: Option<NotifySettings>,
    /// Where the ledger and the report archive live (a directory or
    /// `s3://bucket/prefix`); `None`: the caller's default (the CLI's XDG
    /// state directory; no ledger in the Lambda).
    pub state: Option<String>,
    /// Reminder and escalation cadence.
    pub cadence: Cadence,
    /// Opt-in enforcement.
    pub enforce: EnforcePolicy,
    /// Member-account role holding the write actions (only with enforcement).
    pub enforce_role_name: String,
    /// How long account tags read from Organizations are reused (with a
    /// ledger); 0: read every run.
    pub account_tags_max_age_days: u32,
    /// How long what a flagged user can do (read from its policies) is
    /// reused (with a ledger); 0: read every run.
    pub privilege_max_age_days: u32,
    /// Where flagged keys are used (CloudTrail): pages of 50 events read
    /// per key, how long a footprint is reused (with a ledger; 0: every
    /// run), and how many keys a run without a ledger reads.
    pub usage: UsageSettings,
    /// The chat summary's webhook, if any.
    pub chat: Option<ChatSettings>,
    /// Import findings into Security Hub (`notify` runs that deliver).
    pub securityhub_export: bool,
    /// The Security Hub region; `None`: the run's own region.
    pub securityhub_region: Option<String>,
    /// For tests only: the run's clock, with any state (the emulator has no
    /// clock, so tests of the S3 ledger and the workflow simulate days with
    /// it). `--now` and event fields cannot reach the shared S3 ledger; this
    /// setting can, so the Terraform module never sets or accepts it.
    pub clock_override: Option<jiff::Timestamp>,
}

/// How keywarden reads where flagged keys are used (`core::usage`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UsageSettings {
    pub max_pages: u32,
    pub refresh_days: u32,
    pub max_keys_without_ledger: u32,
}

/// Where the run summary is posted.
#[derive(Debug, Clone)]
pub struct ChatSettings {
    pub target: ChatTarget,
    /// `None`: inferred from the URL's host.
    pub format: Option<ChatFormat>,
}

/// The webhook URL, or where to read it.
#[derive(Debug, Clone)]
pub enum ChatTarget {
    /// From `KEYWARDEN_WEBHOOK_URL` (the CLI).
    Url(WebhookUrl),
    /// The name of an SSM SecureString parameter holding it (the Lambda).
    Parameter(String),
}

/// The settings of `notify` (and the Lambda): who sends, who gets the
/// digest, SES options and templates.
#[derive(Debug, Clone)]
pub struct NotifySettings {
    /// Verified SES identity the mail comes from.
    pub sender: EmailAddress,
    /// Digest recipients; never empty.
    pub security_recipients: Vec<EmailAddress>,
    pub reply_to: Vec<EmailAddress>,
    /// Account owners also get their accounts' findings.
    pub notify_account_owners: bool,
    pub configuration_set: Option<String>,
    pub ses_region: Option<String>,
    /// Messages per second when the SES quota cannot be read.
    pub max_send_rate: f64,
    /// Handlebars template for the per-key console link.
    pub console_link_template: Option<String>,
    /// Overrides the embedded templates file by file.
    pub templates_dir: Option<PathBuf>,
}

impl Settings {
    /// What notify needs, or which key is missing for it.
    pub fn notify(&self) -> Result<&NotifySettings, ConfigError> {
        self.notify.as_ref().ok_or(ConfigError::Missing {
            key: "sender",
            purpose: "notify (with security_recipients)",
        })
    }
}

impl NotifySettings {
    /// Reads the `*.hbs` files of `templates_dir` (file name → source).
    pub fn template_overrides(&self) -> Result<BTreeMap<String, String>, ConfigError> {
        let mut out = BTreeMap::new();
        let Some(dir) = &self.templates_dir else {
            return Ok(out);
        };
        let fail = |reason: String| ConfigError::Invalid {
            key: "templates_dir".to_owned(),
            source_name: dir.display().to_string(),
            reason,
        };
        let entries =
            std::fs::read_dir(dir).map_err(|e| fail(format!("cannot read the folder: {e}")))?;
        for entry in entries {
            let path = entry.map_err(|e| fail(e.to_string()))?.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            if name.ends_with(".hbs") {
                let source = std::fs::read_to_string(&path)
                    .map_err(|e| fail(format!("cannot read {name}: {e}")))?;
                out.insert(name.to_owned(), source);
            }
        }
        Ok(out)
    }
}

mod raw;
#[cfg(test)]
mod tests;
mod webhook_url;

pub use raw::RawSettings;
pub use webhook_url::WebhookUrl;
