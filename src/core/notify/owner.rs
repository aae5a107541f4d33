//! One person's message: the subject's words, their keys grouped by
//! account as cards (due first), and what enforcement did or will do.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::rows::{
    aliases, badge, cards, enforced_row, enforcement_text, how_to, key_row, phrase, EnforcedRow,
    HowTo, KeyRow,
};
use crate::core::checks::{CheckId, Severity};
use crate::core::plan::{DueFinding, PersonPlan};
use crate::core::report::{Finding, Report};

/// The subject's words: what to do and how much, most severe first, e.g.
/// ("Action required: ", "2 AWS access keys overdue for rotation and 1 unused AWS access key to deactivate").
pub fn subject_parts(findings: &[&Finding]) -> (String, String) {
    let mut counts: BTreeMap<(std::cmp::Reverse<Severity>, CheckId), usize> = BTreeMap::new();
    for f in findings {
        *counts
            .entry((std::cmp::Reverse(f.severity), f.check))
            .or_default() += 1;
    }
    let phrases: Vec<String> = counts.iter().map(|((_, c), n)| phrase(*c, *n)).collect();
    // Every kind is named: at most six checks, never a vague "and 1 more".
    let summary = match phrases.split_last() {
        None => "no findings".to_owned(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} and {last}", rest.join(", ")),
    };
    let urgent = findings.iter().any(|f| f.severity >= Severity::Medium);
    let prefix = if urgent {
        "Action required: "
    } else {
        "Heads-up: "
    };
    (prefix.to_owned(), summary)
}

/// An account section of a person's message.
#[derive(Debug, Clone, Serialize)]
pub struct AccountSection {
    pub account_id: String,
    pub account_name: String,
    pub account_alias: Option<String>,
    pub rows: Vec<KeyRow>,
}

/// What the owner templates render.
#[derive(Debug, Clone, Serialize)]
pub struct OwnerView {
    pub recipient: String,
    pub evaluated_at: String,
    pub subject_prefix: String,
    pub subject_summary: String,
    /// Keys (not findings) that need the recipient's attention.
    pub total: usize,
    pub your_keys: Vec<KeyRow>,
    /// The recipient's other open findings, not due this run.
    pub still_open: Vec<KeyRow>,
    pub accounts: Vec<AccountSection>,
    /// Escalated findings of people this recipient manages.
    pub managed: Vec<KeyRow>,
    /// Keys of this recipient that enforcement acted on this run.
    pub enforced: Vec<EnforcedRow>,
    pub how_to: Vec<HowTo>,
    pub max_age_days: u32,
    pub unused_days: u32,
    /// Only the root key is due: the rotation preamble does not apply.
    pub only_root: bool,
    /// Whom to write for help or an exemption (the security recipients).
    pub contact: String,
}

/// The view for one person's message.
pub fn owner_view(
    report: &Report,
    person: &PersonPlan,
    contact: &str,
    link: &dyn Fn(&Finding) -> String,
) -> OwnerView {
    let now = report.evaluated_at;
    let alias = aliases(report);
    let row = |f: &Finding| key_row(f, alias.get(&f.account_id).copied().flatten(), now, link);
    let due_row = |d: &DueFinding| KeyRow {
        badge: badge(d),
        enforcement: enforcement_text(d.enforce_on),
        ..row(&d.finding)
    };
    let due: Vec<&Finding> = person
        .own
        .iter()
        .chain(person.accounts.iter().flat_map(|(_, f)| f))
        .chain(&person.managed)
        .map(|d| &d.finding)
        .collect();
    // The subject counts the recipient's own keys; keys in accounts they own
    // and keys of people they manage are counted separately.
    let own: Vec<&Finding> = person.own.iter().map(|d| &d.finding).collect();
    let (subject_prefix, mut subject_summary) =
        subject_parts(if own.is_empty() { &due } else { &own });
    let keys_of = |findings: &mut dyn Iterator<Item = &Finding>| -> usize {
        findings
            .map(|f| (&f.account_id, &f.user_name, &f.access_key_id))
            .collect::<BTreeSet<_>>()
            .len()
    };
    let in_accounts = keys_of(
        &mut person
            .accounts
            .iter()
            .flat_map(|(_, f)| f)
            .map(|d| &d.finding),
    );
    let managed = keys_of(&mut person.managed.iter().map(|d| &d.finding));
    let plural_keys = |n: usize| {
        if n == 1 {
            "1 key".to_owned()
        } else {
            format!("{n} keys")
        }
    };
    if !own.is_empty() {
        if in_accounts > 0 {
            subject_summary = format!(
                "{subject_summary}, and {} in accounts you own",
                plural_keys(in_accounts)
            );
        }
        if managed > 0 {
            subject_summary = format!(
                "{subject_summary}, and {} escalated to you",
                plural_keys(managed)
            );
        }
    } else if in_accounts > 0 || managed > 0 {
        let mut parts = Vec::new();
        if in_accounts > 0 {
            parts.push(format!("{} in accounts you own", plural_keys(in_accounts)));
        }
        if managed > 0 {
            parts.push(format!("{} escalated to you", plural_keys(managed)));
        }
        let verb = if in_accounts + managed == 1 {
            "needs"
        } else {
            "need"
        };
        subject_summary = format!("{} {verb} attention", parts.join(" and "));
    }
    let only_root = !due.is_empty() && due.iter().all(|f| f.check == CheckId::RootAccessKey);
    if !person.enforced.is_empty() {
        let n = person.enforced.len();
        let done = format!(
            "{n} access key{} deactivated by keywarden",
            if n == 1 { "" } else { "s" }
        );
        subject_summary = if due.is_empty() {
            done
        } else {
            format!("{done}; {subject_summary}")
        };
    }
    OwnerView {
        recipient: person.recipient.to_string(),
        evaluated_at: now.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        subject_prefix,
        subject_summary,
        // Keys, like the subject and the cards: a key with two problems is
        // one thing to fix (issue 26: "10 findings" beside 8 keys).
        total: keys_of(&mut due.iter().copied()),
        your_keys: cards(person.own.iter().map(due_row).collect()),
        still_open: cards(person.own_open.iter().map(row).collect()),
        accounts: person
            .accounts
            .iter()
            .map(|(a, f)| AccountSection {
                account_id: a.account_id.to_string(),
                account_name: a.name.clone(),
                account_alias: a.alias.clone(),
                rows: cards(f.iter().map(due_row).collect()),
            })
            .collect(),
        managed: cards(person.managed.iter().map(due_row).collect()),
        enforced: person
            .enforced
            .iter()
            .map(|(f, a)| enforced_row(f, a))
            .collect(),
        how_to: how_to(
            due.iter()
                .map(|f| f.check)
                .chain(person.own_open.iter().map(|f| f.check)),
        ),
        max_age_days: report.policy.max_age_days,
        unused_days: report.policy.unused_days,
        only_root,
        contact: contact.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::super::rows::key_action;
    use super::*;
    use crate::core::plan::{plan_people, NotifyPolicy};
    use crate::core::templates::SAMPLE_REPORT;

    #[test]
    fn subjects_count_the_recipients_own_keys_and_the_rest_separately() {
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let plans = plan_people(&report, &NotifyPolicy::default(), None);
        let sec = plans
            .iter()
            .find(|p| p.recipient.as_str() == "sec-mgmt@example.com")
            .unwrap();
        let view = owner_view(&report, sec, "security@example.com", &|_| String::new());
        assert_eq!(
            view.subject_summary,
            "1 root access key to delete, and 1 key in accounts you own"
        );
        assert!(!view.only_root, "another key is due too");
        let mut root_only = sec.clone();
        root_only.accounts.clear();
        let view = owner_view(&report, &root_only, "security@example.com", &|_| {
            String::new()
        });
        assert!(
            view.only_root,
            "the 90-day preamble does not apply to a root key"
        );
        assert_eq!(view.contact, "security@example.com");
        let mut accounts_only = sec.clone();
        accounts_only.own.clear();
        let view = owner_view(&report, &accounts_only, "", &|_| String::new());
        assert_eq!(
            view.subject_summary,
            "1 key in accounts you own needs attention"
        );
    }

    #[test]
    fn one_card_per_key_with_every_problem_and_one_coherent_action() {
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let plans = plan_people(&report, &NotifyPolicy::default(), None);
        let dev = plans
            .iter()
            .find(|p| p.recipient.as_str() == "dev@example.com")
            .unwrap();
        assert_eq!(dev.own.len(), 2, "two findings on one key");
        let view = owner_view(&report, dev, "", &|_| String::new());
        assert_eq!(view.your_keys.len(), 1, "one card for the key");
        assert_eq!(
            view.total, 1,
            "the body counts keys, like the subject (issue 26)"
        );
        let card = &view.your_keys[0];
        assert_eq!(
            card.problems,
            [
                "Access key overdue for rotation",
                "User has two active access keys"
            ]
        );
        assert!(
            card.action.starts_with("Finish the rotation"),
            "{}",
            card.action
        );
        assert!(
            !card.action.contains("second key"),
            "never a third key for a user with two"
        );
        assert_eq!(
            key_action(&[
                CheckId::KeyAgeOverdue,
                CheckId::KeyUnused,
                CheckId::TwoActiveKeys
            ]),
            key_action(&[CheckId::TwoActiveKeys])
        );
        assert!(key_action(&[CheckId::KeyAgeOverdue]).contains("create a second key"));
    }
}
