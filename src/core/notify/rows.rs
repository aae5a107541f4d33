//! One key's row and card, as every message shows it: dates, what is due,
//! the one action a key needs, badges and how-to sections. Shared by the
//! owner message and the digest.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::core::checks::{CheckId, Severity, CHECKS};
use crate::core::enforce::reactivate_command;
use crate::core::ledger::Stage;
use crate::core::model::{days_between, AccountId, KeyStatus};
use crate::core::plan::DueFinding;
use crate::core::record::{Action, ActionRecord};
use crate::core::report::{ExemptKey, ExemptionStatus, Finding, Report};

/// One key row, as every template shows it.
#[derive(Debug, Clone, Serialize)]
pub struct KeyRow {
    pub check: &'static str,
    pub check_title: &'static str,
    pub severity: &'static str,
    /// The severity's colour in the HTML templates.
    pub severity_color: &'static str,
    pub account_id: String,
    pub account_name: String,
    pub account_alias: Option<String>,
    pub user_name: String,
    /// The key id, or "root access key".
    pub access_key_id: String,
    pub key_status: String,
    pub age_days: Option<i64>,
    pub created: Option<String>,
    /// "2026-11-20 (s3)", "2026-11-20" or "never".
    pub last_used: String,
    /// "due 2026-12-04 (in 5 days)", "12 days overdue", "act now".
    pub due: String,
    pub overdue: bool,
    pub console_link: String,
    /// Who was told about this key ("nobody: owner unresolved" when nobody).
    pub told: String,
    pub owner_rule: String,
    /// With a ledger: "new", "reminder", "escalated", "final notice" (empty
    /// without one, or for a key listed as still open).
    pub badge: &'static str,
    /// With a ledger: whole days since keywarden first saw the finding.
    pub open_days: Option<i64>,
    /// An exempt key (the oldest-keys list shows them too, marked).
    pub exempt: bool,
    /// With enforcement on: "will be deactivated on 2026-12-10 unless fixed".
    pub enforcement: String,
    /// In owner messages, one card per key: the one thing to do about it,
    /// whatever combination of checks it tripped.
    pub action: String,
    /// Every problem of the key (check titles), most urgent first.
    pub problems: Vec<&'static str>,
    /// What the key can do, with the evidence ("give itself more rights
    /// (privilege escalation): inline policy deploy allows …"); empty when
    /// not worked out.
    pub can_do: String,
    /// The finding's place in the risk order (1: fix first).
    pub risk_rank: Option<u32>,
    /// Why it ranks there.
    pub risk_reason: String,
    /// Where the key was used in the last 90 days (CloudTrail), in a line;
    /// empty when not read.
    pub used: String,
    /// What should replace the key, and why; empty when not worked out.
    pub replace_with: String,
}

/// A key's id for messages: the id, or "root access key".
pub(super) fn key_text(key: Option<&crate::core::model::AccessKeyId>) -> String {
    key.map(|k| k.to_string())
        .unwrap_or_else(|| "root access key".to_owned())
}

/// Who was told: the owner's address, or why nobody.
pub(super) fn told_text(owner: &crate::core::owners::Owner) -> String {
    owner
        .email
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "nobody: owner unresolved".to_owned())
}

/// "What this key can do", in words, with its evidence.
pub fn can_do(p: &crate::core::privilege::Privilege) -> String {
    let mut s = p.class.words().to_owned();
    if !p.evidence.is_empty() {
        s.push_str(": ");
        s.push_str(&p.evidence.join("; "));
    }
    s
}

pub(super) fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

pub(super) fn due_text(due: Option<Timestamp>, now: Timestamp) -> (String, bool) {
    match due {
        None => ("act now".to_owned(), true),
        Some(d) if d <= now => {
            let days = days_between(d, now);
            (
                match days {
                    0 => "due today".to_owned(),
                    1 => "1 day overdue".to_owned(),
                    n => format!("{n} days overdue"),
                },
                true,
            )
        }
        Some(d) => {
            let days = (d.as_second() - now.as_second() + 86_399) / 86_400;
            let when = if days == 1 {
                "tomorrow".to_owned()
            } else {
                format!("in {days} days")
            };
            (format!("due {} ({when})", date(d)), false)
        }
    }
}

/// Builds rows; `link` renders the console link for a finding.
pub fn key_row(
    f: &Finding,
    alias: Option<&str>,
    now: Timestamp,
    link: &dyn Fn(&Finding) -> String,
) -> KeyRow {
    let check = f.check.check();
    let (due, overdue) = due_text(f.due_at, now);
    KeyRow {
        check: check.id_str,
        check_title: check.title,
        severity: f.severity.as_str(),
        severity_color: match f.severity {
            Severity::Critical => "#82071e",
            Severity::High => "#cf222e",
            Severity::Medium => "#bf8700",
            Severity::Low => "#57606a",
        },
        account_id: f.account_id.to_string(),
        account_name: f.account_name.clone(),
        account_alias: alias.map(str::to_owned),
        user_name: f.user_name.clone(),
        access_key_id: key_text(f.access_key_id.as_ref()),
        key_status: f.key_status.as_str().to_owned(),
        age_days: f.age_days,
        created: f.created_at.map(date),
        last_used: match (f.last_used_at, &f.last_used_service) {
            (Some(t), Some(s)) => format!("{} ({s})", date(t)),
            (Some(t), None) => date(t),
            (None, _) => "never".to_owned(),
        },
        due,
        overdue,
        console_link: link(f),
        told: told_text(&f.owner),
        owner_rule: f.owner.rule.clone(),
        badge: "",
        open_days: f.first_seen.map(|t| days_between(t, now)),
        exempt: false,
        enforcement: String::new(),
        action: f.remediation.clone(),
        problems: vec![check.title],
        can_do: f.privilege.as_ref().map(can_do).unwrap_or_default(),
        risk_rank: f.risk.as_ref().map(|r| r.rank),
        risk_reason: f
            .risk
            .as_ref()
            .map(|r| r.reason.clone())
            .unwrap_or_default(),
        used: f.usage.as_ref().map(used).unwrap_or_default(),
        replace_with: f
            .replace_with
            .as_ref()
            .map(|r| format!("{} (because {})", r.kind.advice(), r.reason))
            .unwrap_or_default(),
    }
}

/// "Used in the last 90 days: …", in a line.
pub fn used(u: &crate::core::usage::Usage) -> String {
    match u {
        crate::core::usage::Usage::Known(f) => crate::core::usage::used_line(f),
        crate::core::usage::Usage::Unknown { reason } => format!("not known ({reason})"),
    }
}

/// The one coherent thing to do about a key, from every check it tripped:
/// a user with two active keys finishes the rotation onto the newer one (and
/// is never told to create a third).
pub fn key_action(checks: &[CheckId]) -> &'static str {
    let has = |c| checks.contains(&c);
    if has(CheckId::KeyExposed) {
        "AWS found a key of this user exposed in public: rotate every key of this user now (create a new key, move every consumer, delete the old ones), check CloudTrail for calls you do not recognise, and keep the quarantine policy attached until the support case says otherwise."
    } else if has(CheckId::RootAccessKey) {
        "Delete the root user's access key (deactivate it first if anything may still use it) and use IAM roles instead."
    } else if has(CheckId::TwoActiveKeys) {
        "Finish the rotation: move everything that uses this key to the user's newer key, then deactivate this one and delete it after a quiet period."
    } else if has(CheckId::KeyAgeOverdue) && has(CheckId::KeyUnused) {
        "Nothing seems to use this old key: deactivate it now, and delete it after a quiet period."
    } else if has(CheckId::KeyAgeOverdue) {
        "Rotate it: create a second key, move every consumer to it, deactivate this one, then delete it."
    } else if has(CheckId::KeyUnused) {
        "Deactivate it; delete it after a quiet period if nothing complains."
    } else if has(CheckId::InactiveKeyStale) {
        "Delete this inactive key; create a new one if it is ever needed again."
    } else {
        "Plan the rotation before the due date: create a second key, move consumers, retire this one."
    }
}

/// Rows merged into one card per key (rows are most urgent first; a key's
/// card takes the place of its most urgent finding): every problem named,
/// one action.
pub(super) fn cards(rows: Vec<KeyRow>) -> Vec<KeyRow> {
    /// Account, user, key.
    type KeyOf = (String, String, String);
    /// The card so far, its problems and its checks.
    type Card = (KeyRow, Vec<&'static str>, Vec<CheckId>);
    let mut order: Vec<KeyOf> = Vec::new();
    let mut groups: BTreeMap<KeyOf, Card> = BTreeMap::new();
    for r in rows {
        let key = (
            r.account_id.clone(),
            r.user_name.clone(),
            r.access_key_id.clone(),
        );
        let check = CHECKS
            .iter()
            .find(|c| c.id_str == r.check)
            .map(|c| c.id)
            .unwrap_or(CheckId::KeyAgeWarning);
        match groups.get_mut(&key) {
            Some((card, titles, checks)) => {
                titles.push(r.check_title);
                checks.push(check);
                if card.badge.is_empty() {
                    card.badge = r.badge;
                }
                if card.enforcement.is_empty() {
                    card.enforcement = r.enforcement;
                }
                // The card ranks as its most urgent finding.
                if r.risk_rank
                    .is_some_and(|n| card.risk_rank.is_none_or(|c| n < c))
                {
                    card.risk_rank = r.risk_rank;
                    card.risk_reason = r.risk_reason;
                }
            }
            None => {
                order.push(key.clone());
                groups.insert(key, (r.clone(), vec![r.check_title], vec![check]));
            }
        }
    }
    let mut cards: Vec<KeyRow> = order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|(mut card, titles, checks)| {
            card.problems = titles;
            card.action = key_action(&checks).to_owned();
            card
        })
        .collect();
    // In risk order (stable: rows without a rank keep their place, last).
    cards.sort_by_key(|c| c.risk_rank.unwrap_or(u32::MAX));
    cards
}

/// A row for an exempt key in force, for the oldest-keys list.
pub(super) fn exempt_key_row(e: &ExemptKey) -> KeyRow {
    let check = e
        .checks
        .first()
        .copied()
        .unwrap_or(CheckId::KeyAgeOverdue)
        .check();
    KeyRow {
        check: check.id_str,
        check_title: check.title,
        severity: check.severity.as_str(),
        severity_color: "#57606a",
        account_id: e.account_id.to_string(),
        account_name: e.account_name.clone(),
        account_alias: None,
        user_name: e.user_name.clone(),
        access_key_id: key_text(e.access_key_id.as_ref()),
        key_status: KeyStatus::Active.as_str().to_owned(),
        age_days: e.age_days,
        created: None,
        last_used: "-".to_owned(),
        due: "exempt".to_owned(),
        overdue: false,
        console_link: String::new(),
        told: match e.until {
            Some(d) => format!("exempt until {d}"),
            None => "exempt (no end date)".to_owned(),
        },
        owner_rule: String::new(),
        badge: "",
        open_days: None,
        exempt: true,
        enforcement: String::new(),
        action: String::new(),
        problems: vec![check.title],
        can_do: String::new(),
        risk_rank: None,
        risk_reason: String::new(),
        used: String::new(),
        replace_with: String::new(),
    }
}

/// The owner-facing sentence for a scheduled enforcement.
pub(super) fn enforcement_text(on: Option<(Action, Timestamp)>) -> String {
    match on {
        Some((Action::Deactivate, t)) => {
            format!(
                "This key will be deactivated on {} unless it is fixed or exempted.",
                date(t)
            )
        }
        Some((Action::Delete, t)) => {
            format!(
                "This inactive key will be deleted on {} unless it is exempted.",
                date(t)
            )
        }
        None => String::new(),
    }
}

/// A key enforcement acted on, for the owner and the digest.
#[derive(Debug, Clone, Serialize)]
pub struct EnforcedRow {
    pub account: String,
    pub user_name: String,
    pub access_key_id: String,
    /// "deactivated" or "deleted".
    pub done: &'static str,
    /// The check that made it eligible.
    pub why: &'static str,
    /// How to undo a deactivation (empty for a deletion: it cannot be undone).
    pub undo: String,
}

pub(super) fn enforced_row(f: &Finding, a: &ActionRecord) -> EnforcedRow {
    EnforcedRow {
        account: format!("{} ({})", f.account_name, f.account_id),
        user_name: f.user_name.clone(),
        access_key_id: a.access_key_id.to_string(),
        done: match a.action {
            Action::Deactivate => "deactivated",
            Action::Delete => "deleted",
        },
        why: f.check.check().title,
        undo: match a.action {
            Action::Deactivate => reactivate_command(&a.account_id, &a.user_name, &a.access_key_id),
            Action::Delete => String::new(),
        },
    }
}

/// The badge a due finding carries in a message; none without a ledger.
pub(super) fn badge(d: &DueFinding) -> &'static str {
    if d.finding.finding_id.is_none() {
        return "";
    }
    match d.stage {
        Stage::First => "new",
        Stage::Reminder => "reminder",
        Stage::Escalation => "escalated",
        Stage::Final => "final notice",
    }
}

/// A check's "how to fix it", shown once per check present in a message.
#[derive(Debug, Clone, Serialize)]
pub struct HowTo {
    pub check: &'static str,
    pub title: &'static str,
    pub severity: &'static str,
    pub risk: &'static str,
    pub remediation: &'static str,
    pub references: Vec<&'static str>,
}

pub(super) fn how_to(checks: impl IntoIterator<Item = CheckId>) -> Vec<HowTo> {
    let present: BTreeSet<CheckId> = checks.into_iter().collect();
    CHECKS
        .iter()
        .filter(|c| present.contains(&c.id))
        .map(|c| HowTo {
            check: c.id_str,
            title: c.title,
            severity: c.severity.as_str(),
            risk: c.risk,
            remediation: c.remediation,
            references: c.references.to_vec(),
        })
        .collect()
}

pub(super) fn phrase(check: CheckId, n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    match check {
        CheckId::KeyExposed => format!("{n} exposed access key{s} to rotate now"),
        CheckId::RootAccessKey => format!("{n} root access key{s} to delete"),
        CheckId::KeyAgeOverdue => format!("{n} AWS access key{s} overdue for rotation"),
        CheckId::KeyUnused => format!("{n} unused AWS access key{s} to deactivate"),
        CheckId::TwoActiveKeys => format!("{n} user{s} with two active access keys"),
        CheckId::KeyAgeWarning => format!("{n} AWS access key{s} due for rotation soon"),
        CheckId::InactiveKeyStale => format!("{n} inactive access key{s} to delete"),
    }
}

pub(super) fn exempt_row(e: &ExemptKey, now: Timestamp, soon_days: u32) -> ExemptRow {
    let soon_limit = now + SignedDuration::from_hours(24 * i64::from(soon_days));
    let expiring_soon = e.status == ExemptionStatus::InForce
        && e.until.is_some_and(|d| {
            d.to_zoned(jiff::tz::TimeZone::UTC)
                .map(|z| z.timestamp() <= soon_limit)
                .unwrap_or(false)
        });
    ExemptRow {
        account: format!("{} ({})", e.account_name, e.account_id),
        user_name: e.user_name.clone(),
        access_key_id: key_text(e.access_key_id.as_ref()),
        // What the exemption suppresses: never key-exposed (its finding stands).
        checks: e
            .checks
            .iter()
            .filter(|c| **c != CheckId::KeyExposed)
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        exposed: e.checks.contains(&CheckId::KeyExposed),
        source: match e.source {
            crate::core::report::ExemptionSource::UserTag => "user tag",
            crate::core::report::ExemptionSource::ConfigAccount => "exempt_accounts",
            crate::core::report::ExemptionSource::ConfigUserArn => "exempt_user_arns",
        }
        .to_owned(),
        status: match e.status {
            ExemptionStatus::InForce => "in force",
            ExemptionStatus::Expired => "expired",
            ExemptionStatus::Invalid => "invalid",
        }
        .to_owned(),
        until: e
            .until
            .map(|d| d.to_string())
            .unwrap_or_else(|| "no end date".into()),
        reason: e.reason.clone().unwrap_or_default(),
        expiring_soon,
        long: e.status == ExemptionStatus::InForce
            && e.until.is_none_or(|d| {
                (d - now.to_zoned(jiff::tz::TimeZone::UTC).date()).get_days() > LONG_EXEMPTION_DAYS
            }),
    }
}

/// An exemption in force ending further away than this is flagged "long".
pub(super) const LONG_EXEMPTION_DAYS: i32 = 30;

pub(super) fn aliases(report: &Report) -> BTreeMap<&AccountId, Option<&str>> {
    report
        .accounts
        .iter()
        .map(|a| (&a.account_id, a.alias.as_deref()))
        .collect()
}

/// An exemption line.
#[derive(Debug, Clone, Serialize)]
pub struct ExemptRow {
    pub account: String,
    pub user_name: String,
    pub access_key_id: String,
    pub checks: String,
    pub source: String,
    pub status: String,
    pub until: String,
    pub reason: String,
    pub expiring_soon: bool,
    /// AWS quarantined the user: exempt but exposed (key-exposed stands).
    pub exposed: bool,
    /// In force with no end date, or ending more than 30 days from now.
    pub long: bool,
}
