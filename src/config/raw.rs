//! Settings as gathered from every source (defaults, the TOML file,
//! `KEYWARDEN_*` variables, flags), each value with where it came from, and
//! their validation into [`Settings`](super::Settings).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::{
    ChatSettings, ChatTarget, ConfigError, NotifySettings, Scope, Settings, WebhookUrl, KEYS,
    MAX_SEND_RATE, MIN_SEND_RATE,
};
use crate::core::enforce::{EnforcePolicy, Mode as EnforceMode};
use crate::core::exempt::{ArnPattern, ExemptionRules};
use crate::core::ledger::Cadence;
use crate::core::model::{AccountId, EmailAddress, Policy};
use crate::core::owners::OwnerRules;
use crate::core::summary::ChatFormat;

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
                        "did you mean `{}`? All settings are listed in docs/using.md (Settings)",
                        closest_key(&key)
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
                        "did you mean KEYWARDEN_{}? All settings are listed in docs/using.md (Settings)",
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

    /// `enforce_max_per_day`, or its old name `enforce_max_per_run` (never both).
    fn max_per_day(&self) -> Result<u32, ConfigError> {
        let explicit = |key: &str| {
            self.values
                .get(key)
                .is_some_and(|v| v.source != "built-in default")
        };
        match (
            explicit("enforce_max_per_day"),
            explicit("enforce_max_per_run"),
        ) {
            (true, true) => Err(self.invalid(
                "enforce_max_per_run",
                "is the old name of enforce_max_per_day: set only enforce_max_per_day",
            )),
            (false, true) => Ok(self.integer("enforce_max_per_run", 1, 10_000)? as u32),
            _ => Ok(self.integer("enforce_max_per_day", 1, 10_000)? as u32),
        }
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
        let clock_override = match self.opt_string("clock_override")? {
            None => None,
            Some(v) => Some(v.parse::<jiff::Timestamp>().map_err(|e| {
                self.invalid(
                    "clock_override",
                    format!("{v:?} is not an RFC 3339 instant such as 2026-11-29T00:00:00Z: {e}"),
                )
            })?),
        };
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
            max_per_day: self.max_per_day()?,
            delete_inactive_after_days: match self.opt_string("delete_inactive_after_days")? {
                None => None,
                Some(_) => Some(self.days("delete_inactive_after_days", 1)?),
            },
        };
        let enforce_role_name = self.role("enforce_role_name")?;
        let chat = self.chat()?;
        let account_tags_max_age_days = self.integer("account_tags_max_age_days", 0, 90)? as u32;
        let privilege_max_age_days = self.integer("privilege_max_age_days", 0, 90)? as u32;
        let usage = super::UsageSettings {
            max_pages: self.integer("usage_max_pages", 1, 50)? as u32,
            refresh_days: self.integer("usage_refresh_days", 0, 90)? as u32,
            max_keys_without_ledger: self.integer("usage_max_keys_without_ledger", 0, 10_000)?
                as u32,
        };
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
            clock_override,
            account_tags_max_age_days,
            privilege_max_age_days,
            usage,
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
