//! Core model types: newtypes parsed once at the edge, and the facts the
//! checks evaluate. Nothing here talks to AWS or reads the clock.

use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// Why a value from AWS or the user could not become a model type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("{0:?} is not a 12-digit AWS account id")]
    AccountId(String),
    #[error("{0:?} is not an access key id (16 to 128 upper-case letters and digits)")]
    AccessKeyId(String),
    #[error("{value:?} is not a single mailbox address: {reason}")]
    Email { value: String, reason: String },
}

/// A 12-digit AWS account id. Kept as a string: leading zeros are significant.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccountId(String);

impl AccountId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let v = value.trim();
        if v.len() == 12 && v.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(v.to_owned()))
        } else {
            Err(ParseError::AccountId(value.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for AccountId {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<AccountId> for String {
    fn from(value: AccountId) -> Self {
        value.0
    }
}
impl fmt::Display for AccountId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An IAM access key id (`AKIA…`). Never a secret: safe to log and mail.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct AccessKeyId(String);

impl AccessKeyId {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let ok = (16..=128).contains(&value.len())
            && value
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(ParseError::AccessKeyId(value.to_owned()))
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for AccessKeyId {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<AccessKeyId> for String {
    fn from(value: AccessKeyId) -> Self {
        value.0
    }
}
impl fmt::Display for AccessKeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One mailbox address, `local@domain`, validated so that it can go into a
/// mail header as is: no display name, no list, no comment, no CR/LF.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct EmailAddress(String);

impl EmailAddress {
    pub fn parse(value: &str) -> Result<Self, ParseError> {
        let fail = |reason: &str| ParseError::Email {
            value: value.to_owned(),
            reason: reason.to_owned(),
        };
        let v = value.trim();
        if v.is_empty() {
            return Err(fail("it is empty"));
        }
        if v.len() > 254 {
            return Err(fail("it is longer than 254 characters"));
        }
        if v.chars().any(|c| c.is_control()) {
            return Err(fail("it contains control characters (CR/LF?)"));
        }
        if v.chars().any(|c| {
            c.is_whitespace()
                || matches!(
                    c,
                    '<' | '>' | ',' | ';' | '"' | '(' | ')' | '\\' | '[' | ']' | ':'
                )
        }) {
            return Err(fail(
                "it must be a bare address without display name, list or comment",
            ));
        }
        if !v.is_ascii() {
            return Err(fail("non-ASCII addresses are not accepted"));
        }
        let Some((local, domain)) = v.rsplit_once('@') else {
            return Err(fail("it has no @"));
        };
        if local.is_empty() || local.contains('@') {
            return Err(fail(
                "it must have exactly one @ with a local part before it",
            ));
        }
        // `x%evil.example@example.com` and `evil.example!x@example.com` are
        // relayed by some mail servers to the host inside the local part
        // (the "percent hack" and bang paths): the allow-list of domains
        // would see example.com while the mail goes elsewhere.
        if local.contains(['%', '!']) {
            return Err(fail(
                "its local part contains % or !, which some mail servers route to another host",
            ));
        }
        if !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(fail("its domain must be a dotted host name"));
        }
        if !email_address::EmailAddress::is_valid(v) {
            return Err(fail("it is not a valid RFC 5321 address"));
        }
        Ok(Self(v.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for EmailAddress {
    type Error = ParseError;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}
impl From<EmailAddress> for String {
    fn from(value: EmailAddress) -> Self {
        value.0
    }
}
impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An account of the Organization, as listed (or as the caller's own account
/// in single-account mode).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    pub id: AccountId,
    pub name: String,
    /// The root email from Organizations: the last resort for an owner.
    pub email: Option<String>,
}

/// Whether an access key can be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum KeyStatus {
    Active,
    Inactive,
}

impl KeyStatus {
    /// IAM's spelling, as in the report, CSV and mail.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyStatus::Active => "Active",
            KeyStatus::Inactive => "Inactive",
        }
    }
}

/// One access key of a user, as far as the inventory could learn it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyFacts {
    /// `None` only for the root user's key: the credential report does not
    /// carry its id.
    pub access_key_id: Option<AccessKeyId>,
    pub status: KeyStatus,
    /// `None` only when IAM does not say (the root key seen through
    /// GetAccountSummary in API mode): such a key is never aged.
    pub created_at: Option<Timestamp>,
    /// `None` when the key has never been used.
    pub last_used_at: Option<Timestamp>,
    pub last_used_service: Option<String>,
    /// The region of the last use (the credential report's), where known.
    pub last_used_region: Option<String>,
}

/// A principal that holds keys: an IAM user or the account's root user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserFacts {
    pub user_name: String,
    pub arn: String,
    pub is_root: bool,
    pub keys: Vec<KeyFacts>,
    /// User tags, in the order IAM returned them. Empty when they were not
    /// fetched because no key of this user tripped a check.
    pub tags: Vec<(String, String)>,
    /// How an AWS quarantine policy (`AWSCompromisedKeyQuarantine*`) reaches
    /// the user ("AWSCompromisedKeyQuarantineV2 attached to the user",
    /// "… to its group ops"); empty when none does.
    pub quarantine: Vec<String>,
    /// The user has a console password (the credential report's
    /// `password_enabled`).
    pub console_password: bool,
}

impl UserFacts {
    pub fn tag(&self, key: &str) -> Option<&str> {
        self.tags
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn active_keys(&self) -> usize {
        self.keys
            .iter()
            .filter(|k| k.status == KeyStatus::Active)
            .count()
    }
}

/// The evaluation thresholds, all in whole days.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Policy {
    pub warn_age_days: u32,
    pub max_age_days: u32,
    pub unused_days: u32,
    pub stale_inactive_days: u32,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            warn_age_days: 75,
            max_age_days: 90,
            unused_days: 45,
            stale_inactive_days: 30,
        }
    }
}

/// Whole days elapsed from `from` to `now`; negative spans count as zero.
pub fn days_between(from: Timestamp, now: Timestamp) -> i64 {
    let secs = now.as_second() - from.as_second();
    if secs <= 0 {
        0
    } else {
        secs / 86_400
    }
}

/// `from` plus a whole number of days.
pub fn add_days(from: Timestamp, days: u32) -> Timestamp {
    from.checked_add(jiff::SignedDuration::from_hours(24 * i64::from(days)))
        .unwrap_or(Timestamp::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn account_ids_are_exactly_twelve_digits() {
        assert!(AccountId::parse("012345678901").is_ok());
        for bad in [
            "",
            "12345678901",
            "1234567890123",
            "12345678901a",
            "-12345678901",
        ] {
            assert!(AccountId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn email_addresses_must_be_bare_single_mailboxes() {
        assert_eq!(
            EmailAddress::parse(" dev.ops+iam@example.co.uk ")
                .unwrap()
                .as_str(),
            "dev.ops+iam@example.co.uk"
        );
        for bad in [
            "",
            "dev",
            "dev@",
            "@example.com",
            "dev@localhost",
            "Dev <dev@example.com>",
            "a@example.com,b@example.com",
            "a@example.com; b@example.com",
            "dev@example.com\r\nBcc: evil@example.com",
            "dev@example.com\nX",
            "dev@@example.com",
            "dev@exa mple.com",
            "dév@example.com",
            "dev@example..com",
            // Issue 22 item 13: routed to another host by some relays.
            "x%evil.example@example.com",
            "evil.example!x@example.com",
            "@evil.example:x@example.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn days_between_counts_whole_days_only() {
        let t0: Timestamp = "2026-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(days_between(t0, "2026-01-01T23:59:59Z".parse().unwrap()), 0);
        assert_eq!(days_between(t0, "2026-01-02T00:00:00Z".parse().unwrap()), 1);
        assert_eq!(days_between("2026-01-02T00:00:00Z".parse().unwrap(), t0), 0);
    }
}
