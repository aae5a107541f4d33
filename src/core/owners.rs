//! Who must act on a finding. Key owner: user tags (in `owner_tag_keys`
//! order) → a user name that is an address → the account owner →
//! unresolved. Account owner: account tags (`account_owner_tag_keys`) → the
//! account's Organizations email. Every candidate is validated; an invalid
//! one is recorded and the next rule is tried.

use serde::{Deserialize, Serialize};

use super::model::{Account, EmailAddress, UserFacts};

/// The resolved owner and how it was found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub email: Option<EmailAddress>,
    /// `user-tag:<key>`, `user-name`, `account-tag:<key>`, `account-email` or `unresolved`.
    pub rule: String,
    /// Candidates that were not valid addresses, in the order tried.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<SkippedAddress>,
}

/// A candidate address that failed validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedAddress {
    pub rule: String,
    pub value: String,
    pub reason: String,
}

/// Which tags name owners, and where mail may go.
#[derive(Debug, Clone, Default)]
pub struct OwnerRules {
    pub owner_tag_keys: Vec<String>,
    pub account_owner_tag_keys: Vec<String>,
    /// Lower-case domains an owner's address must be in (or under); empty:
    /// any domain.
    pub allowed_domains: Vec<String>,
}

impl OwnerRules {
    /// A valid address in an allowed domain, or why not.
    pub fn check(&self, value: &str) -> Result<EmailAddress, String> {
        let email = EmailAddress::parse(value).map_err(|e| e.to_string())?;
        if self.allowed_domains.is_empty() {
            return Ok(email);
        }
        let domain = email
            .as_str()
            .rsplit_once('@')
            .map(|(_, d)| d.to_ascii_lowercase())
            .unwrap_or_default();
        let allowed = self.allowed_domains.iter().any(|d| {
            domain == *d
                || domain
                    .strip_suffix(d.as_str())
                    .is_some_and(|rest| rest.ends_with('.'))
        });
        if allowed {
            Ok(email)
        } else {
            Err(format!(
                "{domain} is not in allowed_recipient_domains ({})",
                self.allowed_domains.join(", ")
            ))
        }
    }
}

fn first_valid<'a>(
    candidates: impl IntoIterator<Item = (String, &'a str)>,
    rules: &OwnerRules,
    skipped: &mut Vec<SkippedAddress>,
) -> Option<(EmailAddress, String)> {
    for (rule, value) in candidates {
        match rules.check(value) {
            Ok(email) => return Some((email, rule)),
            Err(reason) => skipped.push(SkippedAddress {
                rule,
                value: value.to_owned(),
                reason,
            }),
        }
    }
    None
}

fn tag<'a>(tags: &'a [(String, String)], key: &str) -> Option<&'a str> {
    tags.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

/// The account owner: account tags, then the account's email.
pub fn account_owner(
    account: &Account,
    account_tags: &[(String, String)],
    rules: &OwnerRules,
) -> Owner {
    let mut skipped = Vec::new();
    let candidates = rules
        .account_owner_tag_keys
        .iter()
        .filter_map(|k| tag(account_tags, k).map(|v| (format!("account-tag:{k}"), v)))
        .chain(
            account
                .email
                .as_deref()
                .map(|e| ("account-email".to_owned(), e)),
        );
    match first_valid(candidates, rules, &mut skipped) {
        Some((email, rule)) => Owner {
            email: Some(email),
            rule,
            skipped,
        },
        None => Owner {
            email: None,
            rule: "unresolved".to_owned(),
            skipped,
        },
    }
}

/// The key owner: user tags, then the user name, then the account owner.
pub fn key_owner(user: &UserFacts, account_owner: &Owner, rules: &OwnerRules) -> Owner {
    let mut skipped = Vec::new();
    let candidates = rules
        .owner_tag_keys
        .iter()
        .filter_map(|k| user.tag(k).map(|v| (format!("user-tag:{k}"), v)))
        // A user name is only a candidate when it looks like it means to be an address.
        .chain(
            (!user.is_root && user.user_name.contains('@'))
                .then(|| ("user-name".to_owned(), user.user_name.as_str())),
        );
    if let Some((email, rule)) = first_valid(candidates, rules, &mut skipped) {
        return Owner {
            email: Some(email),
            rule,
            skipped,
        };
    }
    skipped.extend(account_owner.skipped.iter().cloned());
    Owner {
        email: account_owner.email.clone(),
        rule: account_owner.rule.clone(),
        skipped,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccountId;

    fn rules() -> OwnerRules {
        OwnerRules {
            owner_tag_keys: vec!["owner".into(), "email".into()],
            account_owner_tag_keys: vec!["owner".into(), "security-contact".into()],
            allowed_domains: vec![],
        }
    }
    fn account(email: Option<&str>) -> Account {
        Account {
            id: AccountId::parse("111122223333").unwrap(),
            name: "prod".into(),
            email: email.map(str::to_owned),
        }
    }
    fn user(name: &str, tags: &[(&str, &str)]) -> UserFacts {
        UserFacts {
            user_name: name.into(),
            arn: format!("arn:aws:iam::111122223333:user/{name}"),
            is_root: false,
            keys: vec![],
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            quarantine: Vec::new(),
            console_password: false,
        }
    }

    #[test]
    fn first_valid_user_tag_wins_and_invalid_ones_are_recorded() {
        let acct = account_owner(&account(Some("root@example.com")), &[], &rules());
        let o = key_owner(
            &user(
                "ci",
                &[
                    ("email", "dev@example.com"),
                    ("owner", "Dev <dev@example.com>"),
                ],
            ),
            &acct,
            &rules(),
        );
        assert_eq!(o.email.unwrap().as_str(), "dev@example.com");
        assert_eq!(o.rule, "user-tag:email");
        assert_eq!(o.skipped.len(), 1);
        assert_eq!(o.skipped[0].rule, "user-tag:owner");
    }

    #[test]
    fn user_name_address_then_account_tag_then_account_email() {
        let acct_tagged = account_owner(
            &account(Some("root@example.com")),
            &[("security-contact".into(), "sec@example.com".into())],
            &rules(),
        );
        assert_eq!(
            key_owner(&user("ann@example.com", &[]), &acct_tagged, &rules()).rule,
            "user-name"
        );
        let o = key_owner(&user("ci", &[]), &acct_tagged, &rules());
        assert_eq!(
            (o.email.unwrap().as_str(), o.rule.as_str()),
            ("sec@example.com", "account-tag:security-contact")
        );
        let acct_plain = account_owner(&account(Some("root@example.com")), &[], &rules());
        assert_eq!(
            key_owner(&user("ci", &[]), &acct_plain, &rules()).rule,
            "account-email"
        );
    }

    #[test]
    fn addresses_outside_the_allowed_domains_are_skipped_and_the_next_rule_tried() {
        let mut r = rules();
        r.allowed_domains = vec!["example.com".into()];
        let acct = account_owner(&account(Some("root@example.com")), &[], &r);
        let o = key_owner(
            &user(
                "boss@evil.example",
                &[
                    ("owner", "someone@gmail.com"),
                    ("email", "dev@eu.example.com"),
                ],
            ),
            &acct,
            &r,
        );
        assert_eq!(
            (o.email.unwrap().as_str(), o.rule.as_str()),
            ("dev@eu.example.com", "user-tag:email"),
            "subdomains are in"
        );
        assert_eq!(o.skipped.len(), 1);
        assert!(o.skipped[0].reason.contains("allowed_recipient_domains"));
        let o = key_owner(&user("boss@evil.example", &[]), &acct, &r);
        assert_eq!(
            o.rule, "account-email",
            "a user named like an outside address falls through"
        );
        assert_eq!(o.skipped[0].rule, "user-name");
        assert!(
            r.check("x@notexample.com").is_err(),
            "a suffix is not a subdomain"
        );
        let outside = account_owner(&account(Some("aws+prod@gmail.com")), &[], &r);
        assert_eq!(outside.email, None);
    }

    #[test]
    fn nothing_valid_is_unresolved() {
        let acct = account_owner(&account(Some("not an address")), &[], &rules());
        let o = key_owner(
            &user("ci", &[("owner", "a@example.com\r\nBcc: x@example.com")]),
            &acct,
            &rules(),
        );
        assert_eq!(o.email, None);
        assert_eq!(o.rule, "unresolved");
        assert_eq!(o.skipped.len(), 2);
    }
}
