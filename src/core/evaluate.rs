//! Turns one account's inventory into findings and exemption entries:
//! checks, then exemptions, then owners. Pure: `now` is an argument.

use jiff::Timestamp;

use super::checks::{evaluate_key, CheckId, Subject};
use super::exempt::{parse_exempt_tag, ExemptionRules};
use super::model::{days_between, Account, Policy, UserFacts};

/// The user tag naming who is told, besides the account owner, when a
/// finding escalates.
pub const MANAGER_TAG: &str = "manager";
use super::owners::{account_owner, key_owner, Owner, OwnerRules};
use super::report::{ExemptKey, ExemptionSource, ExemptionStatus, Finding};

/// Everything evaluation needs besides the facts.
#[derive(Debug, Clone)]
pub struct Rules {
    pub policy: Policy,
    pub exemptions: ExemptionRules,
    pub owners: OwnerRules,
}

/// One account's findings and exemption entries.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Evaluation {
    pub findings: Vec<Finding>,
    pub exempt: Vec<ExemptKey>,
    /// The account owner (account tags, then the account email).
    pub account_owner: Option<Owner>,
}

struct AppliedExemption {
    source: ExemptionSource,
    status: ExemptionStatus,
    until: Option<jiff::civil::Date>,
    reason: Option<String>,
}

fn exemption_for(
    account: &Account,
    user: &UserFacts,
    rules: &ExemptionRules,
    now: Timestamp,
) -> Option<AppliedExemption> {
    if rules.accounts.contains(&account.id) {
        return Some(AppliedExemption {
            source: ExemptionSource::ConfigAccount,
            status: ExemptionStatus::InForce,
            until: None,
            reason: Some("account listed in exempt_accounts".to_owned()),
        });
    }
    if let Some(p) = rules.user_arns.iter().find(|p| p.matches(&user.arn)) {
        return Some(AppliedExemption {
            source: ExemptionSource::ConfigUserArn,
            status: ExemptionStatus::InForce,
            until: None,
            reason: Some(format!(
                "user ARN matches exempt_user_arns pattern {:?}",
                p.as_str()
            )),
        });
    }
    let value = user.tag(&rules.tag_key)?;
    Some(match parse_exempt_tag(value) {
        Ok(tag) if tag.days_left(now) > i64::from(rules.max_days) => AppliedExemption {
            source: ExemptionSource::UserTag,
            status: ExemptionStatus::Invalid,
            until: Some(tag.until),
            reason: Some(format!(
                "ends {}, more than max_exemption_days ({}) away: ignored, the findings stand{}",
                tag.until,
                rules.max_days,
                tag.reason
                    .as_deref()
                    .map(|r| format!(" (reason given: {r})"))
                    .unwrap_or_default()
            )),
        },
        Ok(tag) => AppliedExemption {
            source: ExemptionSource::UserTag,
            status: if tag.in_force(now) {
                ExemptionStatus::InForce
            } else {
                ExemptionStatus::Expired
            },
            until: Some(tag.until),
            reason: tag.reason,
        },
        Err(e) => AppliedExemption {
            source: ExemptionSource::UserTag,
            status: ExemptionStatus::Invalid,
            until: None,
            reason: Some(e.to_string()),
        },
    })
}

/// Evaluates every key of every user of one account.
///
/// `users` should carry tags for every user that trips a check (the
/// inventory fetches them for exactly those users).
pub fn evaluate_account(
    account: &Account,
    account_tags: &[(String, String)],
    users: &[UserFacts],
    rules: &Rules,
    now: Timestamp,
) -> Evaluation {
    let acct_owner = account_owner(account, account_tags, &rules.owners);
    let mut out = Evaluation {
        account_owner: Some(acct_owner.clone()),
        ..Evaluation::default()
    };
    for user in users {
        let exemption = exemption_for(account, user, &rules.exemptions, now);
        let mut owner = None;
        for key in &user.keys {
            let mut hits = evaluate_key(Subject { user, key }, &rules.policy, now);
            if hits.is_empty() {
                continue;
            }
            if let Some(ex) = &exemption {
                out.exempt.push(ExemptKey {
                    account_id: account.id.clone(),
                    account_name: account.name.clone(),
                    user_name: user.user_name.clone(),
                    user_arn: user.arn.clone(),
                    access_key_id: key.access_key_id.clone(),
                    checks: hits.iter().map(|(id, _)| *id).collect(),
                    source: ex.source,
                    status: ex.status,
                    until: ex.until,
                    reason: ex.reason.clone(),
                    age_days: key.created_at.map(|c| days_between(c, now)),
                });
                if ex.status == ExemptionStatus::InForce {
                    // An exemption never silences an exposed key (it is listed
                    // as exempt, and the key-exposed finding stands).
                    hits.retain(|(id, _)| *id == CheckId::KeyExposed);
                    if hits.is_empty() {
                        continue;
                    }
                }
            }
            let owner = owner.get_or_insert_with(|| key_owner(user, &acct_owner, &rules.owners));
            for (check, hit) in hits {
                out.findings.push(Finding {
                    check,
                    severity: CheckId::check(check).severity,
                    account_id: account.id.clone(),
                    account_name: account.name.clone(),
                    user_name: user.user_name.clone(),
                    user_arn: user.arn.clone(),
                    access_key_id: key.access_key_id.clone(),
                    key_status: key.status,
                    created_at: key.created_at,
                    age_days: key.created_at.map(|c| days_between(c, now)),
                    last_used_at: key.last_used_at,
                    last_used_service: key.last_used_service.clone(),
                    due_at: hit.due_at,
                    owner: owner.clone(),
                    remediation: CheckId::check(check).fix.to_owned(),
                    manager: user
                        .tag(MANAGER_TAG)
                        .and_then(|m| rules.owners.check(m).ok()),
                    finding_id: None,
                    first_seen: None,
                    lifecycle: None,
                    notices: None,
                    escalated_at: None,
                    privilege: None,
                    risk: None,
                    usage: None,
                    replace_with: None,
                });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::exempt::ArnPattern;
    use crate::core::model::{AccessKeyId, AccountId, KeyFacts, KeyStatus};

    fn now() -> Timestamp {
        "2026-11-29T12:00:00Z".parse().unwrap()
    }
    fn rules() -> Rules {
        Rules {
            policy: Policy::default(),
            exemptions: ExemptionRules {
                tag_key: "keywarden:exempt".into(),
                ..Default::default()
            },
            owners: OwnerRules {
                owner_tag_keys: vec!["owner".into()],
                account_owner_tag_keys: vec!["owner".into()],
                allowed_domains: vec![],
            },
        }
    }
    fn account() -> Account {
        Account {
            id: AccountId::parse("111122223333").unwrap(),
            name: "prod".into(),
            email: Some("prod@example.com".into()),
        }
    }
    fn old_key_user(name: &str, tags: &[(&str, &str)]) -> UserFacts {
        UserFacts {
            user_name: name.into(),
            arn: format!("arn:aws:iam::111122223333:user/{name}"),
            is_root: false,
            keys: vec![KeyFacts {
                access_key_id: Some(AccessKeyId::parse("AKIAAAAAAAAAAAAAAAAA").unwrap()),
                status: KeyStatus::Active,
                created_at: Some(now() - jiff::SignedDuration::from_hours(24 * 100)),
                last_used_at: Some(now()),
                last_used_service: Some("s3".into()),
                last_used_region: None,
            }],
            tags: tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            quarantine: Vec::new(),
            console_password: false,
        }
    }

    #[test]
    fn exemption_in_force_suppresses_findings_and_is_listed() {
        let users = [old_key_user(
            "ci",
            &[("keywarden:exempt", "2026-12-31 vendor lock-in")],
        )];
        let e = evaluate_account(&account(), &[], &users, &rules(), now());
        assert!(e.findings.is_empty());
        assert_eq!(e.exempt.len(), 1);
        assert_eq!(e.exempt[0].status, ExemptionStatus::InForce);
        assert_eq!(e.exempt[0].reason.as_deref(), Some("vendor lock-in"));
        assert_eq!(e.exempt[0].checks, vec![CheckId::KeyAgeOverdue]);
    }

    #[test]
    fn an_exemption_never_silences_an_exposed_key() {
        let mut user = old_key_user("ci", &[("keywarden:exempt", "2026-12-31 vendor lock-in")]);
        user.quarantine = vec!["AWSCompromisedKeyQuarantineV3 attached to the user".into()];
        let e = evaluate_account(&account(), &[], &[user], &rules(), now());
        let checks: Vec<CheckId> = e.findings.iter().map(|f| f.check).collect();
        assert_eq!(
            checks,
            vec![CheckId::KeyExposed],
            "the overdue finding stays exempt"
        );
        assert_eq!(
            e.findings[0].severity,
            crate::core::checks::Severity::Critical
        );
        assert_eq!(e.exempt.len(), 1, "still listed as exempt");
        assert_eq!(
            e.exempt[0].checks,
            vec![CheckId::KeyExposed, CheckId::KeyAgeOverdue]
        );
    }

    #[test]
    fn expired_or_unreadable_exemptions_are_ignored_and_reported() {
        for (value, status) in [
            ("2026-11-28", ExemptionStatus::Expired),
            ("forever", ExemptionStatus::Invalid),
        ] {
            let users = [old_key_user("ci", &[("keywarden:exempt", value)])];
            let e = evaluate_account(&account(), &[], &users, &rules(), now());
            assert_eq!(e.findings.len(), 1, "{value}");
            assert_eq!(e.exempt[0].status, status, "{value}");
        }
    }

    #[test]
    fn an_exemption_ending_beyond_max_exemption_days_is_invalid_and_the_findings_stand() {
        // now() is 2026-11-29: 90 days on is 2027-02-27.
        for (value, status, findings) in [
            ("2027-02-27 vendor", ExemptionStatus::InForce, 0),
            ("2027-02-28 vendor", ExemptionStatus::Invalid, 1),
            ("9999-12-31 forever", ExemptionStatus::Invalid, 1),
        ] {
            let users = [old_key_user("ci", &[("keywarden:exempt", value)])];
            let e = evaluate_account(&account(), &[], &users, &rules(), now());
            assert_eq!(e.findings.len(), findings, "{value}");
            assert_eq!(e.exempt[0].status, status, "{value}");
        }
        let users = [old_key_user(
            "ci",
            &[("keywarden:exempt", "9999-12-31 forever")],
        )];
        let e = evaluate_account(&account(), &[], &users, &rules(), now());
        let reason = e.exempt[0].reason.as_deref().unwrap();
        assert!(
            reason.contains("max_exemption_days (90)") && reason.contains("forever"),
            "{reason}"
        );
    }

    #[test]
    fn config_exemptions_cover_accounts_and_user_arn_patterns() {
        let mut r = rules();
        r.exemptions.user_arns = vec![ArnPattern::new("arn:aws:iam::*:user/break-glass*")];
        let users = [old_key_user("break-glass-1", &[]), old_key_user("ci", &[])];
        let e = evaluate_account(&account(), &[], &users, &r, now());
        assert_eq!(
            e.findings
                .iter()
                .map(|f| f.user_name.as_str())
                .collect::<Vec<_>>(),
            ["ci"]
        );
        assert_eq!(e.exempt[0].source, ExemptionSource::ConfigUserArn);

        r.exemptions.accounts.insert(account().id);
        let e = evaluate_account(&account(), &[], &users, &r, now());
        assert!(e.findings.is_empty());
        assert_eq!(e.exempt.len(), 2);
    }

    #[test]
    fn findings_carry_owner_and_key_facts() {
        let users = [old_key_user("ci", &[("owner", "dev@example.com")])];
        let e = evaluate_account(
            &account(),
            &[("owner".into(), "team@example.com".into())],
            &users,
            &rules(),
            now(),
        );
        let f = &e.findings[0];
        assert_eq!(f.owner.email.as_ref().unwrap().as_str(), "dev@example.com");
        assert_eq!(f.owner.rule, "user-tag:owner");
        assert_eq!(f.age_days, Some(100));
        assert_eq!(f.account_name, "prod");
        let users = [old_key_user("ci", &[])];
        let e = evaluate_account(
            &account(),
            &[("owner".into(), "team@example.com".into())],
            &users,
            &rules(),
            now(),
        );
        assert_eq!(e.findings[0].owner.rule, "account-tag:owner");
    }
}
