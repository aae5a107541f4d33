//! Turns one account's inventory into findings and exemption entries:
//! checks, then exemptions, then owners. Pure: `now` is an argument.

use jiff::Timestamp;

use super::checks::{evaluate_key, CheckId, Subject};
use super::exempt::{parse_exempt_tag, ExemptionRules};
use super::model::{days_between, Account, Policy, UserFacts};
use super::owners::{account_owner, key_owner, OwnerRules};
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
    let mut out = Evaluation::default();
    for user in users {
        let exemption = exemption_for(account, user, &rules.exemptions, now);
        let mut owner = None;
        for key in &user.keys {
            let hits = evaluate_key(Subject { user, key }, &rules.policy, now);
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
                });
                if ex.status == ExemptionStatus::InForce {
                    continue;
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
                });
            }
        }
    }
    out
}
