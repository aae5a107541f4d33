//! Settings: built-in defaults, then a TOML file (`--config` or
//! `KEYWARDEN_CONFIG`), then `KEYWARDEN_<KEY>` environment variables (lists
//! comma-separated), then CLI flags; later wins. Everything is validated here,
//! before any AWS call, and every error names the key, where the value came
//! from and what is wrong. Nothing else in the crate reads settings sources.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::core::enforce::{EnforcePolicy, Mode as EnforceMode};
use crate::core::exempt::{ArnPattern, ExemptionRules};
use crate::core::ledger::Cadence;
use crate::core::model::{AccountId, EmailAddress, Policy};
use crate::core::owners::OwnerRules;
use crate::core::summary::ChatFormat;
use crate::deliver::webhook::WebhookUrl;

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
    ("concurrency", Some("128")),
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
    ("enforce_max_per_run", Some("25")),
    ("delete_inactive_after_days", None),
    ("enforce_role_name", Some("KeywardenEnforceRole")),
    ("webhook_url", None),
    ("webhook_url_parameter", None),
    ("webhook_format", None),
    ("securityhub_export", Some("false")),
    ("securityhub_region", None),
];

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
    /// The chat summary's webhook, if any.
    pub chat: Option<ChatSettings>,
    /// Import findings into Security Hub (`notify` runs that deliver).
    pub securityhub_export: bool,
    /// The Security Hub region; `None`: the run's own region.
    pub securityhub_region: Option<String>,
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

#[derive(Debug, Clone)]
enum Raw {
    Toml(toml::Value),
    Text(String),
}

#[derive(Debug, Clone)]
struct Value {
    raw: Raw,
    source: String,
}

/// Settings as gathered from all sources, not yet validated.
#[derive(Debug, Clone, Default)]
pub struct RawSettings {
    values: BTreeMap<String, Value>,
}

/// `KEYWARDEN_*` variables that are not settings.
const NOT_SETTINGS: &[&str] = &["CONFIG", "LOG"];

/// The known key nearest to `key` (edit distance).
fn closest_key(key: &str) -> &'static str {
    fn distance(a: &str, b: &str) -> usize {
        let b: Vec<char> = b.chars().collect();
        let mut row: Vec<usize> = (0..=b.len()).collect();
        for (i, ca) in a.chars().enumerate() {
            let mut prev = row[0];
            row[0] = i + 1;
            for (j, cb) in b.iter().enumerate() {
                let cur = row[j + 1];
                row[j + 1] = (prev + usize::from(ca != *cb)).min(row[j] + 1).min(cur + 1);
                prev = cur;
            }
        }
        row[b.len()]
    }
    KEYS.iter()
        .map(|(k, _)| *k)
        .min_by_key(|k| distance(key, k))
        .unwrap_or("role_name")
}

fn known_keys() -> String {
    KEYS.iter().map(|(k, _)| *k).collect::<Vec<_>>().join(", ")
}

impl RawSettings {
    /// Built-in defaults only.
    pub fn defaults() -> Self {
        let mut s = Self::default();
        for (key, default) in KEYS {
            if let Some(d) = default {
                s.set_text(key, d, "built-in default");
            }
        }
        s
    }

    fn set_text(&mut self, key: &str, value: &str, source: &str) {
        self.values.insert(
            key.to_owned(),
            Value {
                raw: Raw::Text(value.to_owned()),
                source: source.to_owned(),
            },
        );
    }

    /// Layers a TOML file over what is there.
    pub fn merge_file(&mut self, path: &Path) -> Result<(), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
        self.merge_toml(&text, &path.display().to_string())
            .map_err(|e| match e {
                ConfigError::Toml { reason, .. } => ConfigError::Toml {
                    path: path.to_owned(),
                    reason,
                },
                other => other,
            })
    }

    /// Layers TOML text over what is there; `origin` names it in errors.
    pub fn merge_toml(&mut self, text: &str, origin: &str) -> Result<(), ConfigError> {
        let table: toml::Table = text
            .parse()
            .map_err(|e: toml::de::Error| ConfigError::Toml {
                path: PathBuf::from(origin),
                reason: e.to_string(),
            })?;
        for (key, value) in table {
            if !KEYS.iter().any(|(k, _)| *k == key) {
                return Err(ConfigError::UnknownKey {
                    known: format!(
                        "did you mean `{}`? known settings: {}",
                        closest_key(&key),
                        known_keys()
                    ),
                    key,
                    source_name: origin.to_owned(),
                });
            }
            self.values.insert(
                key.clone(),
                Value {
                    raw: Raw::Toml(value),
                    source: format!("{origin}, key {key}"),
                },
            );
        }
        Ok(())
    }

    /// Layers `KEYWARDEN_<KEY>` variables over what is there. A variable
    /// that names no setting is an error naming the closest one, like an
    /// unknown key in the file (`KEYWARDEN_CONFIG` is the file's path and
    /// `KEYWARDEN_LOG` the log filter: not settings, but known).
    pub fn merge_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), ConfigError> {
        for (name, value) in vars {
            let Some(key) = name.strip_prefix("KEYWARDEN_") else {
                continue;
            };
            if NOT_SETTINGS.contains(&key) {
                continue;
            }
            let key = key.to_ascii_lowercase();
            if KEYS.iter().any(|(k, _)| *k == key) {
                self.set_text(&key, &value, &format!("environment variable {name}"));
            } else {
                return Err(ConfigError::UnknownKey {
                    source_name: format!("environment variable {name}"),
                    known: format!(
                        "did you mean KEYWARDEN_{}? All settings are listed in the README",
                        closest_key(&key).to_uppercase()
                    ),
                    key,
                });
            }
        }
        Ok(())
    }

    /// Layers one command-line flag over what is there.
    pub fn set_flag(&mut self, key: &str, value: &str, flag: &str) {
        self.set_text(key, value, &format!("command-line flag {flag}"));
    }

    fn invalid(&self, key: &str, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid {
            key: key.to_owned(),
            source_name: self
                .values
                .get(key)
                .map(|v| v.source.clone())
                .unwrap_or_else(|| "built-in default".to_owned()),
            reason: reason.into(),
        }
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.values.get(key).map(|v| &v.raw) {
            None => Ok(None),
            Some(Raw::Text(t)) => Ok(Some(t.trim().to_owned()).filter(|t| !t.is_empty())),
            Some(Raw::Toml(toml::Value::String(s))) => {
                Ok(Some(s.trim().to_owned()).filter(|t| !t.is_empty()))
            }
            Some(Raw::Toml(other)) => {
                Err(self.invalid(key, format!("must be a string, got {}", other.type_str())))
            }
        }
    }

    /// The chat settings: a URL from the environment (a secret never sits in
    /// a file or on a command line) or an SSM parameter name, not both.
    fn chat(&self) -> Result<Option<ChatSettings>, ConfigError> {
        if matches!(
            self.values.get("webhook_url").map(|v| &v.raw),
            Some(Raw::Toml(_))
        ) {
            return Err(self.invalid(
                "webhook_url",
                "is a secret: set KEYWARDEN_WEBHOOK_URL in the environment (or webhook_url_parameter in the Lambda), not in a file",
            ));
        }
        let url = match self.opt_string("webhook_url")? {
            Some(u) => Some(WebhookUrl::parse(&u).map_err(|e| self.invalid("webhook_url", e))?),
            None => None,
        };
        let parameter = self.opt_string("webhook_url_parameter")?;
        let format = match self.opt_string("webhook_format")? {
            Some(f) => Some(ChatFormat::parse(&f).ok_or_else(|| {
                self.invalid(
                    "webhook_format",
                    format!("must be slack, teams or json, got {f:?}"),
                )
            })?),
            None => None,
        };
        let target = match (url, parameter) {
            (Some(_), Some(_)) => {
                return Err(self.invalid(
                    "webhook_url_parameter",
                    "set either webhook_url or webhook_url_parameter, not both",
                ))
            }
            (Some(url), None) => ChatTarget::Url(url),
            (None, Some(name)) => ChatTarget::Parameter(name),
            (None, None) if format.is_some() => {
                return Err(ConfigError::Missing {
                    key: "webhook_url",
                    purpose: "webhook_format (or webhook_url_parameter in the Lambda)",
                })
            }
            (None, None) => return Ok(None),
        };
        Ok(Some(ChatSettings { target, format }))
    }

    fn string(&self, key: &str) -> Result<String, ConfigError> {
        self.opt_string(key)?
            .ok_or_else(|| self.invalid(key, "must not be empty"))
    }

    fn list(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let items: Vec<String> = match self.values.get(key).map(|v| &v.raw) {
            None => Vec::new(),
            Some(Raw::Text(t)) => t.split(',').map(|s| s.trim().to_owned()).collect(),
            Some(Raw::Toml(toml::Value::String(s))) => {
                s.split(',').map(|s| s.trim().to_owned()).collect()
            }
            Some(Raw::Toml(toml::Value::Array(a))) => a
                .iter()
                .map(|v| match v {
                    toml::Value::String(s) => Ok(s.trim().to_owned()),
                    other => Err(self.invalid(
                        key,
                        format!("must be a list of strings, found a {}", other.type_str()),
                    )),
                })
                .collect::<Result<_, _>>()?,
            Some(Raw::Toml(other)) => {
                return Err(self.invalid(
                    key,
                    format!("must be a list of strings, got {}", other.type_str()),
                ))
            }
        };
        Ok(items.into_iter().filter(|s| !s.is_empty()).collect())
    }

    fn integer(&self, key: &str, min: i64, max: i64) -> Result<i64, ConfigError> {
        let n = match self.values.get(key).map(|v| &v.raw) {
            None => return Err(self.invalid(key, "has no value")),
            Some(Raw::Text(t)) => t
                .trim()
                .parse::<i64>()
                .map_err(|_| self.invalid(key, format!("must be a whole number, got {t:?}")))?,
            Some(Raw::Toml(toml::Value::Integer(i))) => *i,
            Some(Raw::Toml(other)) => {
                return Err(self.invalid(
                    key,
                    format!("must be a whole number, got {}", other.type_str()),
                ))
            }
        };
        if n < min || n > max {
            return Err(self.invalid(key, format!("must be between {min} and {max}, got {n}")));
        }
        Ok(n)
    }

    fn days(&self, key: &str, min: i64) -> Result<u32, ConfigError> {
        // 36,500 days: a century; anything larger is a typo.
        self.integer(key, min, 36_500).map(|n| n as u32)
    }

    fn float(&self, key: &str) -> Result<f64, ConfigError> {
        let f = match self.values.get(key).map(|v| &v.raw) {
            None => return Err(self.invalid(key, "has no value")),
            Some(Raw::Text(t)) => t
                .trim()
                .parse::<f64>()
                .map_err(|_| self.invalid(key, format!("must be a number, got {t:?}")))?,
            Some(Raw::Toml(toml::Value::Float(f))) => *f,
            Some(Raw::Toml(toml::Value::Integer(i))) => *i as f64,
            Some(Raw::Toml(other)) => {
                return Err(self.invalid(key, format!("must be a number, got {}", other.type_str())))
            }
        };
        // At least one message a minute and at most SES's largest quotas: a
        // value outside is a typo, and 1e-30 would be an interval of 1e30 s.
        if !f.is_finite() || !(MIN_SEND_RATE..=MAX_SEND_RATE).contains(&f) {
            return Err(self.invalid(
                key,
                format!("must be between {MIN_SEND_RATE} and {MAX_SEND_RATE} messages per second, got {f}"),
            ));
        }
        Ok(f)
    }

    fn boolean(&self, key: &str) -> Result<bool, ConfigError> {
        match self.values.get(key).map(|v| &v.raw) {
            None => Err(self.invalid(key, "has no value")),
            Some(Raw::Toml(toml::Value::Boolean(b))) => Ok(*b),
            Some(Raw::Text(t)) => match t.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Ok(true),
                "false" | "0" | "no" | "off" => Ok(false),
                _ => Err(self.invalid(key, format!("must be true or false, got {t:?}"))),
            },
            Some(Raw::Toml(other)) => Err(self.invalid(
                key,
                format!("must be true or false, got {}", other.type_str()),
            )),
        }
    }

    fn accounts(&self, key: &str) -> Result<BTreeSet<AccountId>, ConfigError> {
        self.list(key)?
            .iter()
            .map(|s| AccountId::parse(s).map_err(|e| self.invalid(key, e.to_string())))
            .collect()
    }

    fn emails(&self, key: &str) -> Result<Vec<EmailAddress>, ConfigError> {
        self.list(key)?
            .iter()
            .map(|s| EmailAddress::parse(s).map_err(|e| self.invalid(key, e.to_string())))
            .collect()
    }

    fn ous(&self, key: &str) -> Result<Vec<String>, ConfigError> {
        let ous = self.list(key)?;
        for ou in &ous {
            let ok_ou = ou.strip_prefix("ou-").is_some_and(|rest| {
                rest.split_once('-').is_some_and(|(a, b)| {
                    (4..=32).contains(&a.len())
                        && (8..=32).contains(&b.len())
                        && a.bytes()
                            .chain(b.bytes())
                            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                })
            });
            let ok_root = ou.strip_prefix("r-").is_some_and(|rest| {
                (4..=32).contains(&rest.len())
                    && rest
                        .bytes()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
            if !ok_ou && !ok_root {
                return Err(self.invalid(
                    key,
                    format!("{ou:?} is not an OU id (ou-xxxx-xxxxxxxx) or root id (r-xxxx)"),
                ));
            }
        }
        Ok(ous)
    }

    fn role(&self, key: &str) -> Result<String, ConfigError> {
        let name = self.string(key)?;
        if name.len() > 64
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "+=,.@_-".contains(c))
        {
            return Err(self.invalid(
                key,
                format!("{name:?} is not an IAM role name (1-64 of A-Z a-z 0-9 +=,.@_-)"),
            ));
        }
        Ok(name)
    }

    /// Validates everything into [`Settings`].
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let role_name = self.role("role_name")?;
        let external_id = self.opt_string("external_id")?;
        if let Some(x) = &external_id {
            if x.len() < 2
                || x.len() > 1224
                || !x
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+=,.@:/_-".contains(c))
            {
                return Err(self.invalid("external_id", "must be 2-1224 of A-Z a-z 0-9 +=,.@:/_-"));
            }
        }
        let policy = Policy {
            warn_age_days: self.days("warn_age_days", 1)?,
            max_age_days: self.days("max_age_days", 1)?,
            unused_days: self.days("unused_days", 1)?,
            stale_inactive_days: self.days("stale_inactive_days", 0)?,
        };
        if policy.warn_age_days >= policy.max_age_days {
            return Err(self.invalid(
                "warn_age_days",
                format!(
                    "must be smaller than max_age_days ({}), got {}",
                    policy.max_age_days, policy.warn_age_days
                ),
            ));
        }
        let concurrency = self.integer("concurrency", 1, 1024)? as usize;
        let account_timeout =
            // At most the assumed-role session (900 s, aws::sts::SESSION_SECS).
            Duration::from_secs(self.integer("account_timeout_secs", 1, 900)? as u64);
        let report_wait = Duration::from_secs(self.integer("report_wait_secs", 0, 3600)? as u64);
        let deadline_reserve =
            Duration::from_secs(self.integer("deadline_reserve_secs", 0, 900)? as u64);
        let scope = Scope {
            include_accounts: self.accounts("include_accounts")?,
            exclude_accounts: self.accounts("exclude_accounts")?,
            include_ous: self.ous("include_ous")?,
            exclude_ous: self.ous("exclude_ous")?,
        };
        let exempt_tag_key = self.string("exempt_tag_key")?;
        if exempt_tag_key.chars().count() > 128 {
            return Err(self.invalid("exempt_tag_key", "IAM tag keys are at most 128 characters"));
        }
        let exemptions = ExemptionRules {
            max_days: self.days("max_exemption_days", 1)?,
            tag_key: exempt_tag_key,
            accounts: self.accounts("exempt_accounts")?,
            user_arns: self
                .list("exempt_user_arns")?
                .iter()
                .map(|p| {
                    if p.starts_with("arn:") || p.starts_with('*') {
                        Ok(ArnPattern::new(p))
                    } else {
                        Err(self.invalid(
                            "exempt_user_arns",
                            format!("{p:?} is not an ARN pattern (arn:… with * and ? wildcards)"),
                        ))
                    }
                })
                .collect::<Result<_, _>>()?,
        };
        let mut owners = OwnerRules {
            owner_tag_keys: self.list("owner_tag_keys")?,
            account_owner_tag_keys: self.list("account_owner_tag_keys")?,
            allowed_domains: Vec::new(),
        };
        let mut allowed_domains = Vec::new();
        for d in self.list("allowed_recipient_domains")? {
            let d = d.trim_start_matches('@').to_ascii_lowercase();
            let ok = d.contains('.')
                && !d.starts_with(['.', '-'])
                && !d.ends_with(['.', '-'])
                && !d.contains("..")
                && d.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
            if !ok {
                return Err(self.invalid(
                    "allowed_recipient_domains",
                    format!("{d:?} is not a domain name such as example.com"),
                ));
            }
            allowed_domains.push(d);
        }
        let sender = match self.opt_string("sender")? {
            None => None,
            Some(s) => {
                Some(EmailAddress::parse(&s).map_err(|e| self.invalid("sender", e.to_string()))?)
            }
        };
        let security_recipients = self.emails("security_recipients")?;
        let ses_region = self.opt_string("ses_region")?;
        if let Some(r) = &ses_region {
            let ok = r.split('-').count() >= 3
                && r.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
            if !ok {
                return Err(self.invalid(
                    "ses_region",
                    format!("{r:?} is not an AWS region name such as eu-west-1"),
                ));
            }
        }
        let state = self.opt_string("state")?;
        if let Some(st) = &state {
            let ok = if st.starts_with("s3://") {
                crate::state::parse_s3_uri(st).is_some()
            } else {
                !st.contains("://")
            };
            if !ok {
                return Err(self.invalid(
                    "state",
                    format!("{st:?} is neither a directory path nor s3://bucket/prefix"),
                ));
            }
        }
        let cadence = Cadence {
            remind_every_days: self.days("remind_every_days", 1)?,
            overdue_remind_every_days: self.days("overdue_remind_every_days", 1)?,
            escalate_after_days: self.days("escalate_after_days", 1)?,
        };
        // Both or neither: a sender without digest recipients (or the other way
        // round) is a half-done notify configuration.
        let notify = match (sender, security_recipients.is_empty()) {
            (None, true) => None,
            (Some(_), true) => {
                return Err(ConfigError::Missing {
                    key: "security_recipients",
                    purpose: "notify when `sender` is set",
                })
            }
            (None, false) => {
                return Err(ConfigError::Missing {
                    key: "sender",
                    purpose: "notify when `security_recipients` is set",
                })
            }
            (Some(sender), false) => Some(NotifySettings {
                sender,
                security_recipients,
                reply_to: self.emails("reply_to")?,
                notify_account_owners: self.boolean("notify_account_owners")?,
                configuration_set: self.opt_string("configuration_set")?,
                ses_region,
                max_send_rate: self.float("max_send_rate")?,
                console_link_template: self.opt_string("console_link_template")?,
                templates_dir: self.opt_string("templates_dir")?.map(PathBuf::from),
            }),
        };
        // Owners' mail stays inside the Organization's own domains: by default
        // those of the sender and the security recipients.
        owners.allowed_domains = if !allowed_domains.is_empty() {
            allowed_domains
        } else {
            let mut derived: Vec<String> = notify
                .iter()
                .flat_map(|n| std::iter::once(&n.sender).chain(&n.security_recipients))
                .filter_map(|a| a.as_str().rsplit_once('@'))
                .map(|(_, d)| d.to_ascii_lowercase())
                .collect();
            derived.sort();
            derived.dedup();
            derived
        };
        if notify.is_none() {
            // Validated all the same: a typo must not wait for the first notify run.
            self.emails("reply_to")?;
            self.boolean("notify_account_owners")?;
            self.opt_string("configuration_set")?;
            self.float("max_send_rate")?;
            self.opt_string("console_link_template")?;
            self.opt_string("templates_dir")?;
        }
        let mode_text = self.string("enforce")?;
        let enforce = EnforcePolicy {
            mode: EnforceMode::parse(&mode_text).ok_or_else(|| {
                self.invalid(
                    "enforce",
                    format!("must be off, plan or apply, got {mode_text:?}"),
                )
            })?,
            deactivate_after_days: self.days("deactivate_after_days", 0)?,
            min_notices: self.integer("enforce_min_notices", 1, 100)? as u32,
            final_notice_days: self.days("enforce_final_notice_days", 1)?,
            max_per_run: self.integer("enforce_max_per_run", 1, 10_000)? as u32,
            delete_inactive_after_days: match self.opt_string("delete_inactive_after_days")? {
                None => None,
                Some(_) => Some(self.days("delete_inactive_after_days", 1)?),
            },
        };
        let enforce_role_name = self.role("enforce_role_name")?;
        let chat = self.chat()?;
        let account_tags_max_age_days = self.integer("account_tags_max_age_days", 0, 90)? as u32;
        let securityhub_export = self.boolean("securityhub_export")?;
        let securityhub_region = match self.opt_string("securityhub_region")? {
            Some(r) if !is_region(&r) => {
                return Err(self.invalid(
                    "securityhub_region",
                    format!("must be an AWS region such as eu-west-1, got {r:?}"),
                ))
            }
            Some(_) if !securityhub_export => {
                return Err(self.invalid(
                    "securityhub_region",
                    "is only used with securityhub_export = true",
                ))
            }
            r => r,
        };
        Ok(Settings {
            securityhub_export,
            securityhub_region,
            chat,
            account_tags_max_age_days,
            enforce,
            enforce_role_name,
            notify,
            state,
            cadence,
            role_name,
            external_id,
            policy,
            concurrency,
            account_timeout,
            report_wait,
            deadline_reserve,
            scope,
            exemptions,
            owners,
        })
    }
}

/// `eu-west-1`, `us-gov-west-1`, `cn-north-1`: letters, dashes, a final digit.
fn is_region(r: &str) -> bool {
    let parts: Vec<&str> = r.split('-').collect();
    parts.len() >= 3
        && parts
            .iter()
            .take(parts.len() - 1)
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_lowercase()))
        && parts
            .last()
            .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_match_the_design() {
        let s = RawSettings::defaults().validate().unwrap();
        assert_eq!(s.role_name, "KeywardenScanRole");
        assert_eq!(s.policy, Policy::default());
        assert_eq!(s.concurrency, 128);
        assert_eq!(s.account_timeout, Duration::from_secs(120));
        assert_eq!(s.exemptions.tag_key, "keywarden:exempt");
        assert_eq!(s.owners.owner_tag_keys, ["owner", "email", "contact"]);
        assert_eq!(
            s.owners.account_owner_tag_keys,
            ["owner", "security-contact"]
        );
        assert!(s.notify.is_none(), "no sender, no recipients: scan only");
        let mut raw = RawSettings::defaults();
        raw.merge_env(env(&[
            ("KEYWARDEN_SENDER", "kw@example.com"),
            ("KEYWARDEN_SECURITY_RECIPIENTS", "sec@example.com"),
        ]))
        .unwrap();
        let n = raw.validate().unwrap().notify.unwrap();
        assert!(n.notify_account_owners);
        assert_eq!(n.max_send_rate, 1.0);
        let c = RawSettings::defaults().validate().unwrap().cadence;
        assert_eq!(
            (
                c.remind_every_days,
                c.overdue_remind_every_days,
                c.escalate_after_days
            ),
            (7, 3, 14)
        );
        assert_eq!(RawSettings::defaults().validate().unwrap().state, None);
    }

    #[test]
    fn later_sources_win_file_then_env_then_flags() {
        let mut raw = RawSettings::defaults();
        raw.merge_toml(
            "warn_age_days = 10\nmax_age_days = 20\ninclude_accounts = [\"111122223333\"]",
            "test.toml",
        )
        .unwrap();
        raw.merge_env(env(&[
            ("KEYWARDEN_MAX_AGE_DAYS", "30"),
            ("KEYWARDEN_LOG", "debug"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        raw.set_flag(
            "include_accounts",
            "222233334444, 333344445555",
            "--accounts",
        );
        let s = raw.validate().unwrap();
        assert_eq!((s.policy.warn_age_days, s.policy.max_age_days), (10, 30));
        assert_eq!(s.scope.include_accounts.len(), 2);
    }

    #[test]
    fn invalid_values_name_the_key_and_the_source() {
        let cases: &[(&str, &str, &str)] = &[
            ("KEYWARDEN_WARN_AGE_DAYS", "-1", "warn_age_days"),
            ("KEYWARDEN_MAX_AGE_DAYS", "ninety", "max_age_days"),
            ("KEYWARDEN_WARN_AGE_DAYS", "90", "warn_age_days"),
            ("KEYWARDEN_CONCURRENCY", "0", "concurrency"),
            ("KEYWARDEN_SENDER", "Security <sec@example.com>", "sender"),
            (
                "KEYWARDEN_SECURITY_RECIPIENTS",
                "a@example.com,not-an-address",
                "security_recipients",
            ),
            ("KEYWARDEN_INCLUDE_ACCOUNTS", "12345", "include_accounts"),
            ("KEYWARDEN_INCLUDE_OUS", "engineering", "include_ous"),
            (
                "KEYWARDEN_NOTIFY_ACCOUNT_OWNERS",
                "maybe",
                "notify_account_owners",
            ),
            ("KEYWARDEN_MAX_SEND_RATE", "0", "max_send_rate"),
            ("KEYWARDEN_ROLE_NAME", "bad role", "role_name"),
            ("KEYWARDEN_EXEMPT_USER_ARNS", "ci-*", "exempt_user_arns"),
        ];
        for (var, value, key) in cases {
            let mut raw = RawSettings::defaults();
            raw.merge_env(env(&[(var, value)])).unwrap();
            let err = raw.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains(var),
                "{var}={value}: {err}"
            );
        }
    }

    #[test]
    fn an_unknown_keywarden_variable_is_an_error_naming_the_closest_setting() {
        let err = RawSettings::defaults()
            .merge_env(env(&[("KEYWARDEN_MAX_AGE", "90")]))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("KEYWARDEN_MAX_AGE")
                && err.contains("did you mean KEYWARDEN_MAX_AGE_DAYS?"),
            "{err}"
        );
        let err = RawSettings::defaults()
            .merge_toml("sendr = \"a@example.com\"", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("did you mean `sender`?"), "{err}");
    }

    #[test]
    fn toml_type_errors_and_unknown_keys_are_reported() {
        let mut raw = RawSettings::defaults();
        raw.merge_toml("max_age_days = \"90\"", "c.toml").unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(
            err.contains("`max_age_days`") && err.contains("c.toml"),
            "{err}"
        );
        let err = RawSettings::defaults()
            .merge_toml("max_age_dayz = 3", "c.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_age_dayz"), "{err}");
        assert!(RawSettings::defaults()
            .merge_toml("= broken", "c.toml")
            .is_err());
    }

    #[test]
    fn every_key_with_a_wrong_type_is_an_error_naming_it() {
        for (key, _) in KEYS {
            let mut raw = RawSettings::defaults();
            raw.merge_toml(&format!("{key} = {{ nested = 1 }}"), "c.toml")
                .unwrap();
            let err = raw.validate().unwrap_err().to_string();
            assert!(
                err.contains(&format!("`{key}`")) && err.contains("c.toml"),
                "{key}: {err}"
            );
        }
    }

    #[test]
    fn every_number_out_of_range_is_an_error_naming_it() {
        let numeric = [
            "warn_age_days",
            "max_age_days",
            "unused_days",
            "stale_inactive_days",
            "concurrency",
            "account_timeout_secs",
            "report_wait_secs",
            "deadline_reserve_secs",
            "max_send_rate",
            "remind_every_days",
            "overdue_remind_every_days",
            "escalate_after_days",
            "max_exemption_days",
            "deactivate_after_days",
            "enforce_min_notices",
            "enforce_final_notice_days",
            "enforce_max_per_run",
        ];
        for key in numeric {
            for bad in ["-1", "99999999", "1e400", "1e-30", "NaN", ""] {
                let mut raw = RawSettings::defaults();
                raw.set_flag(key, bad, "--test");
                match raw.validate() {
                    Err(e) => assert!(
                        e.to_string().contains(&format!("`{key}`")),
                        "{key}={bad}: {e}"
                    ),
                    Ok(_) => panic!("{key}={bad:?} accepted"),
                }
            }
        }
    }

    #[test]
    fn notify_needs_sender_and_recipients_and_half_of_them_is_an_error() {
        let s = RawSettings::defaults().validate().unwrap();
        assert!(s.notify().unwrap_err().to_string().contains("`sender`"));
        for (var, missing) in [
            ("KEYWARDEN_SENDER", "`security_recipients`"),
            ("KEYWARDEN_SECURITY_RECIPIENTS", "`sender`"),
        ] {
            let mut raw = RawSettings::defaults();
            raw.merge_env(env(&[(var, "someone@example.com")])).unwrap();
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.contains(missing), "{var}: {err}");
        }
    }

    #[test]
    fn allowed_recipient_domains_default_to_the_sender_and_security_recipients() {
        let mut raw = RawSettings::defaults();
        raw.merge_env(env(&[
            ("KEYWARDEN_SENDER", "kw@Acme.example"),
            (
                "KEYWARDEN_SECURITY_RECIPIENTS",
                "sec@acme.example,ciso@corp.example",
            ),
        ]))
        .unwrap();
        let s = raw.validate().unwrap();
        assert_eq!(s.owners.allowed_domains, ["acme.example", "corp.example"]);
        raw.set_flag(
            "allowed_recipient_domains",
            "eu.acme.example, @other.example",
            "--test",
        );
        let s = raw.validate().unwrap();
        assert_eq!(
            s.owners.allowed_domains,
            ["eu.acme.example", "other.example"]
        );
        raw.set_flag("allowed_recipient_domains", "not a domain", "--test");
        assert!(raw
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`allowed_recipient_domains`"));
        assert!(RawSettings::defaults()
            .validate()
            .unwrap()
            .owners
            .allowed_domains
            .is_empty());
    }

    #[test]
    fn enforcement_settings_default_off_and_are_validated() {
        let s = RawSettings::defaults().validate().unwrap();
        assert_eq!(s.enforce, EnforcePolicy::default());
        assert_eq!(s.enforce_role_name, "KeywardenEnforceRole");
        for (key, bad) in [
            ("enforce", "yes"),
            ("delete_inactive_after_days", "-1"),
            ("delete_inactive_after_days", "0"),
            ("enforce_role_name", "bad role"),
        ] {
            let mut raw = RawSettings::defaults();
            raw.set_flag(key, bad, "--test");
            let err = raw.validate().unwrap_err().to_string();
            assert!(err.contains(&format!("`{key}`")), "{key}={bad}: {err}");
        }
        let mut raw = RawSettings::defaults();
        raw.set_flag("enforce", "Apply", "--test");
        raw.set_flag("delete_inactive_after_days", "60", "--test");
        let s = raw.validate().unwrap();
        assert_eq!(s.enforce.mode, EnforceMode::Apply);
        assert_eq!(s.enforce.delete_inactive_after_days, Some(60));
    }

    #[test]
    fn state_must_be_a_directory_or_an_s3_uri() {
        for (value, ok) in [
            ("/var/lib/keywarden", true),
            ("relative/dir", true),
            ("s3://my-bucket/keywarden", true),
            ("s3://my-bucket", true),
            ("s3://My_Bucket/x", false),
            ("s3://", false),
            ("https://example.com/x", false),
        ] {
            let mut raw = RawSettings::defaults();
            raw.set_flag("state", value, "--state");
            match raw.validate() {
                Ok(s) => assert!(ok, "{value} accepted: {:?}", s.state),
                Err(e) => assert!(!ok && e.to_string().contains("`state`"), "{value}: {e}"),
            }
        }
    }

    #[test]
    fn securityhub_export_is_off_by_default_and_its_region_is_validated() {
        let s = RawSettings::defaults().validate().unwrap();
        assert!(!s.securityhub_export);
        assert_eq!(s.securityhub_region, None);
        for (export, region, ok) in [
            ("true", "eu-west-1", true),
            ("true", "us-gov-west-1", true),
            ("true", "EU-WEST-1", false),
            ("true", "eu-west", false),
            ("true", "west-1", false),
            ("false", "eu-west-1", false),
        ] {
            let mut raw = RawSettings::defaults();
            raw.set_flag("securityhub_export", export, "--test");
            raw.set_flag("securityhub_region", region, "--test");
            match raw.validate() {
                Ok(s) => {
                    assert!(ok, "{export} {region} accepted");
                    assert_eq!(s.securityhub_region.as_deref(), Some(region));
                }
                Err(e) => assert!(
                    !ok && e.to_string().contains("`securityhub_region`"),
                    "{export} {region}: {e}"
                ),
            }
        }
        let mut raw = RawSettings::defaults();
        raw.set_flag("securityhub_export", "maybe", "--test");
        assert!(raw
            .validate()
            .unwrap_err()
            .to_string()
            .contains("`securityhub_export`"));
    }
}
