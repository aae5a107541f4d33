//! The view models the email templates render: one person's message (from
//! a [`PersonPlan`]) and the security digest, which gets everything else:
//! blind spots, unresolved owners, invalid addresses, exemptions, oldest
//! keys, the age histogram, delivery failures and, with a ledger, what
//! changed since the last run. Pure: `now` is the report's `evaluated_at`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::checks::{CheckId, Severity, CHECKS};
use super::enforce::{reactivate_command, Action, ActionRecord, Outcome};
use super::ledger::{exemption_key, is_overdue, median_days_to_fix, Changes, How, Ledger, Stage};
use super::model::{days_between, AccountId, KeyStatus};
use super::plan::urgency;
pub use super::plan::{plan_people, DueFinding, Memory, NotifyPolicy, PersonPlan};
use super::report::{AccountEntry, AccountStatus, ExemptKey, ExemptionStatus, Finding, Report};

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
}

fn date(t: Timestamp) -> String {
    t.strftime("%Y-%m-%d").to_string()
}

fn due_text(due: Option<Timestamp>, now: Timestamp) -> (String, bool) {
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
        access_key_id: f
            .access_key_id
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "root access key".to_owned()),
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
        told: f
            .owner
            .email
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "nobody: owner unresolved".to_owned()),
        owner_rule: f.owner.rule.clone(),
        badge: "",
        open_days: f.first_seen.map(|t| days_between(t, now)),
        exempt: false,
        enforcement: String::new(),
        action: f.remediation.clone(),
        problems: vec![check.title],
    }
}

/// The one coherent thing to do about a key, from every check it tripped:
/// a user with two active keys finishes the rotation onto the newer one (and
/// is never told to create a third).
pub fn key_action(checks: &[CheckId]) -> &'static str {
    let has = |c| checks.contains(&c);
    if has(CheckId::RootAccessKey) {
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
fn cards(rows: Vec<KeyRow>) -> Vec<KeyRow> {
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
            }
            None => {
                order.push(key.clone());
                groups.insert(key, (r.clone(), vec![r.check_title], vec![check]));
            }
        }
    }
    order
        .into_iter()
        .filter_map(|k| groups.remove(&k))
        .map(|(mut card, titles, checks)| {
            card.problems = titles;
            card.action = key_action(&checks).to_owned();
            card
        })
        .collect()
}

/// A row for an exempt key in force, for the oldest-keys list.
fn exempt_key_row(e: &ExemptKey) -> KeyRow {
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
        access_key_id: e
            .access_key_id
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "root access key".to_owned()),
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
    }
}

/// The owner-facing sentence for a scheduled enforcement.
fn enforcement_text(on: Option<(Action, Timestamp)>) -> String {
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

fn enforced_row(f: &Finding, a: &ActionRecord) -> EnforcedRow {
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
fn badge(d: &DueFinding) -> &'static str {
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

fn how_to(checks: impl IntoIterator<Item = CheckId>) -> Vec<HowTo> {
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

fn phrase(check: CheckId, n: usize) -> String {
    let s = if n == 1 { "" } else { "s" };
    match check {
        CheckId::RootAccessKey => format!("{n} root access key{s} to delete"),
        CheckId::KeyAgeOverdue => format!("{n} AWS access key{s} overdue for rotation"),
        CheckId::KeyUnused => format!("{n} unused AWS access key{s} to deactivate"),
        CheckId::TwoActiveKeys => format!("{n} user{s} with two active access keys"),
        CheckId::KeyAgeWarning => format!("{n} AWS access key{s} due for rotation soon"),
        CheckId::InactiveKeyStale => format!("{n} inactive access key{s} to delete"),
    }
}

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

fn aliases(report: &Report) -> BTreeMap<&AccountId, Option<&str>> {
    report
        .accounts
        .iter()
        .map(|a| (&a.account_id, a.alias.as_deref()))
        .collect()
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
        total: due.len(),
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

/// A count with a label.
#[derive(Debug, Clone, Serialize)]
pub struct Count {
    pub id: String,
    pub title: String,
    pub severity: String,
    pub count: u64,
}

/// A row of the digest's account table.
#[derive(Debug, Clone, Serialize)]
pub struct AccountRow {
    pub account_id: String,
    pub name: String,
    pub alias: Option<String>,
    pub status: String,
    pub source: String,
    pub users: u64,
    pub keys: u64,
    pub findings: usize,
    pub owner: String,
}

/// An account (or the listing) that could not be scanned.
#[derive(Debug, Clone, Serialize)]
pub struct BlindSpot {
    pub account: String,
    pub stage: String,
    pub code: String,
    pub message: String,
}

/// What this run could not see, most specific first: failed accounts,
/// requested accounts outside the Organization, run-level errors.
pub fn blind_spots(report: &Report) -> Vec<BlindSpot> {
    let mut blind_spots: Vec<BlindSpot> = report
        .accounts
        .iter()
        .filter_map(|a| {
            a.error.as_ref().map(|e| BlindSpot {
                account: format!("{} ({})", a.name, a.account_id),
                stage: e.stage.clone(),
                code: e.code.clone(),
                message: e.message.clone(),
            })
        })
        .collect();
    blind_spots.extend(report.unknown_accounts.iter().map(|id| BlindSpot {
        account: id.to_string(),
        stage: "scope".to_owned(),
        code: super::report::NOT_IN_ORGANIZATION.to_owned(),
        message: super::report::NOT_IN_ORGANIZATION_MESSAGE.to_owned(),
    }));
    blind_spots.extend(report.errors.iter().map(|e| BlindSpot {
        account: "(account listing)".to_owned(),
        stage: e.stage.clone(),
        code: e.code.clone(),
        message: e.message.clone(),
    }));
    blind_spots
}

/// An address that failed validation.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, PartialOrd, Ord)]
pub struct InvalidAddress {
    pub account: String,
    pub user_name: String,
    pub rule: String,
    pub value: String,
    pub reason: String,
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
    /// In force with no end date, or ending more than 30 days from now.
    pub long: bool,
}

/// One histogram bar.
#[derive(Debug, Clone, Serialize)]
pub struct Bar {
    pub label: String,
    pub keys: u64,
    /// Width in percent of the longest bar (at least 1 when non-zero).
    pub pct: u64,
    /// Over the rotation limit: drawn in red.
    pub over_limit: bool,
}

/// A message that could not be delivered.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryFailure {
    pub recipients: String,
    pub error: String,
}

/// What the digest templates render.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    pub evaluated_at: String,
    pub subject_prefix: String,
    pub subject_summary: String,
    pub incomplete: bool,
    pub accounts_total: u64,
    pub accounts_scanned: u64,
    pub accounts_failed: u64,
    pub users: u64,
    pub keys: u64,
    pub findings: u64,
    pub by_severity: Vec<Count>,
    pub by_check: Vec<Count>,
    pub blind_spots: Vec<BlindSpot>,
    pub accounts: Vec<AccountRow>,
    /// Accounts scanned clean and not listed in `accounts`.
    pub clean_accounts: u64,
    pub unresolved: Vec<KeyRow>,
    pub invalid_addresses: Vec<InvalidAddress>,
    pub exemptions_in_force: Vec<ExemptRow>,
    pub exemptions_ignored: Vec<ExemptRow>,
    pub oldest: Vec<KeyRow>,
    pub histogram: Vec<Bar>,
    pub people_notified: usize,
    /// "3 people were sent their own message.", or what a dry run or an
    /// outbox run did instead (never "sent" when nothing was).
    pub people_line: String,
    pub delivery_failures: Vec<DeliveryFailure>,
    /// Accounts whose findings did not reach Security Hub (one line each).
    pub export_failures: Vec<DeliveryFailure>,
    pub max_age_days: u32,
    /// With a ledger: what changed since the last run.
    pub history: Option<HistoryView>,
    /// `off`, `plan` or `apply`.
    pub enforce_mode: String,
    /// Enforcement this run (planned, done, failed).
    pub actions: Vec<ActionRow>,
    /// Eligible keys beyond enforce_max_per_run: next run.
    pub actions_waiting: u64,
}

/// An enforcement action in the digest.
#[derive(Debug, Clone, Serialize)]
pub struct ActionRow {
    pub account: String,
    pub user_name: String,
    pub access_key_id: String,
    pub action: &'static str,
    /// "planned", "done" or "FAILED".
    pub outcome: &'static str,
    pub error: String,
    pub owner: String,
}

fn exempt_row(e: &ExemptKey, now: Timestamp, soon_days: u32) -> ExemptRow {
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
        access_key_id: e
            .access_key_id
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "root access key".into()),
        checks: e
            .checks
            .iter()
            .map(|c| c.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        source: match e.source {
            super::report::ExemptionSource::UserTag => "user tag",
            super::report::ExemptionSource::ConfigAccount => "exempt_accounts",
            super::report::ExemptionSource::ConfigUserArn => "exempt_user_arns",
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
const LONG_EXEMPTION_DAYS: i32 = 30;

/// Extra facts for the digest that only delivery and the ledger know.
#[derive(Debug, Clone, Default)]
pub struct DigestExtras {
    pub people_notified: usize,
    pub delivery_failures: Vec<DeliveryFailure>,
    /// Accounts whose findings did not reach Security Hub.
    pub export_failures: Vec<DeliveryFailure>,
    /// With a ledger: what changed since the last run.
    pub history: Option<HistoryView>,
    /// `off`, `plan` or `apply` (the digest says which).
    pub enforce_mode: &'static str,
    /// How messages went out this run.
    pub delivery: DeliveryMode,
}

/// How a run's messages go out, for the digest's wording.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum DeliveryMode {
    #[default]
    Sent,
    DryRun,
    Outbox,
}

fn people_line(n: usize, delivery: DeliveryMode) -> String {
    let people = if n == 1 {
        "1 person".to_owned()
    } else {
        format!("{n} people")
    };
    let messages = if n == 1 {
        "1 message".to_owned()
    } else {
        format!("{n} messages")
    };
    match delivery {
        DeliveryMode::Sent => format!(
            "{people} {} sent their own message.",
            if n == 1 { "was" } else { "were" }
        ),
        DeliveryMode::DryRun => format!("{messages} to owners rendered and not sent (dry run)."),
        DeliveryMode::Outbox => format!("{messages} to owners written to the outbox, not sent."),
    }
}

/// A finding that ended since the last run.
#[derive(Debug, Clone, Serialize)]
pub struct ResolvedRow {
    pub account: String,
    pub user_name: String,
    pub access_key_id: String,
    pub check: &'static str,
    pub check_title: &'static str,
    /// "key deleted", "key deactivated", "key rotated", "exempted", "cleared".
    pub how: String,
    pub days_open: i64,
    /// Who was responsible (the key owner when last seen).
    pub owner: String,
}

/// One run in the trend chart.
#[derive(Debug, Clone, Serialize)]
pub struct TrendRow {
    pub date: String,
    pub open: u64,
    pub overdue: u64,
    /// Bar widths in percent of the largest `open` in the chart.
    pub open_pct: u64,
    pub overdue_pct: u64,
}

/// An account's remediation figures.
#[derive(Debug, Clone, Serialize)]
pub struct AccountProgress {
    pub account: String,
    pub open: u64,
    pub overdue: u64,
    /// Median whole days from first seen to resolved over the last 90 days, or "-".
    pub median_days_to_fix: String,
    /// Open findings carried unchanged because the account failed this run.
    pub carried: u64,
}

/// The digest's "since the last run" part.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryView {
    pub first_run: bool,
    /// When the previous run was, if any.
    pub previous_run: Option<String>,
    pub new: usize,
    /// The most urgent new findings (at most 20).
    pub new_rows: Vec<KeyRow>,
    pub resolved: Vec<ResolvedRow>,
    pub escalated: Vec<KeyRow>,
    pub new_exemptions: Vec<ExemptRow>,
    /// Exemptions in force last run and not any more: "account user-ARN key".
    pub ended_exemptions: Vec<String>,
    /// The last 30 runs, oldest first.
    pub trend: Vec<TrendRow>,
    pub accounts: Vec<AccountProgress>,
    /// Open findings of failed accounts, carried unchanged.
    pub carried: u64,
}

/// How many new findings the digest lists by name.
const NEW_ROWS: usize = 20;
/// Runs in the trend chart.
const TREND_RUNS: usize = 30;
/// The window for the median days to fix.
const FIX_WINDOW_DAYS: i64 = 90;

/// What changed since the last run, for the digest. `ledger` is the ledger
/// after [`super::ledger::reconcile`] of this `report`.
pub fn history_view(
    report: &Report,
    ledger: &Ledger,
    changes: &Changes,
    policy: &NotifyPolicy,
    link: &dyn Fn(&Finding) -> String,
) -> HistoryView {
    let now = report.evaluated_at;
    let alias = aliases(report);
    let row = |f: &Finding| key_row(f, alias.get(&f.account_id).copied().flatten(), now, link);
    let by_id: BTreeMap<&str, &Finding> = report
        .findings
        .iter()
        .filter_map(|f| Some((f.finding_id.as_deref()?, f)))
        .collect();
    let mut new: Vec<&Finding> = changes
        .new
        .iter()
        .filter_map(|id| by_id.get(id.as_str()).copied())
        .collect();
    new.sort_by(|a, b| urgency(a, b));
    let mut escalated: Vec<&Finding> = changes
        .escalated
        .iter()
        .filter_map(|id| by_id.get(id.as_str()).copied())
        .collect();
    escalated.sort_by(|a, b| urgency(a, b));

    let runs = &ledger.runs;
    let trend_runs = &runs[runs.len().saturating_sub(TREND_RUNS)..];
    let max = trend_runs.iter().map(|r| r.open).max().unwrap_or(0);
    let pct = |n: u64| {
        if max == 0 || n == 0 {
            0
        } else {
            (n * 100 / max).max(1)
        }
    };

    let mut per_account: BTreeMap<&AccountId, (u64, u64)> = BTreeMap::new();
    for e in ledger.entries.values().filter(|e| e.is_open()) {
        let c = per_account.entry(&e.account_id).or_default();
        c.0 += 1;
        if is_overdue(e.severity) {
            c.1 += 1;
        }
    }
    let names: BTreeMap<&AccountId, &str> = report
        .accounts
        .iter()
        .map(|a| (&a.account_id, a.name.as_str()))
        .chain(
            ledger
                .entries
                .values()
                .map(|e| (&e.account_id, e.account_name.as_str())),
        )
        .collect();
    let mut accounts_with_history: BTreeSet<&AccountId> = per_account.keys().copied().collect();
    accounts_with_history.extend(
        ledger
            .entries
            .values()
            .filter(|e| {
                e.resolved_at
                    .is_some_and(|r| days_between(r, now) <= FIX_WINDOW_DAYS)
            })
            .map(|e| &e.account_id),
    );
    let accounts = accounts_with_history
        .into_iter()
        .map(|id| {
            let (open, overdue) = per_account.get(id).copied().unwrap_or_default();
            AccountProgress {
                account: format!("{} ({id})", names.get(id).copied().unwrap_or("")),
                open,
                overdue,
                median_days_to_fix: median_days_to_fix(ledger, id, now, FIX_WINDOW_DAYS)
                    .map(|d| d.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                carried: changes.carried.get(id).copied().unwrap_or(0),
            }
        })
        .collect();

    HistoryView {
        first_run: changes.first_run,
        previous_run: runs
            .len()
            .checked_sub(2)
            .map(|i| runs[i].at.strftime("%Y-%m-%d %H:%M UTC").to_string()),
        new: new.len(),
        new_rows: new.into_iter().take(NEW_ROWS).map(row).collect(),
        resolved: report
            .resolved
            .iter()
            .filter(|r| r.how != How::Superseded)
            .map(|r| ResolvedRow {
                account: format!("{} ({})", r.account_name, r.account_id),
                user_name: r.user_name.clone(),
                access_key_id: r
                    .access_key_id
                    .as_ref()
                    .map(|k| k.to_string())
                    .unwrap_or_else(|| "root access key".to_owned()),
                check: r.check.as_str(),
                check_title: r.check.check().title,
                how: r.how.as_str().replace('_', " "),
                days_open: r.days_open,
                owner: r.owner.clone().unwrap_or_else(|| "-".to_owned()),
            })
            .collect(),
        escalated: escalated.into_iter().map(row).collect(),
        new_exemptions: report
            .exempt
            .iter()
            .filter(|x| {
                changes.new_exemptions.contains(&exemption_key(
                    &x.account_id,
                    &x.user_arn,
                    x.access_key_id.as_ref(),
                ))
            })
            .map(|x| exempt_row(x, now, policy.expiring_within_days))
            .collect(),
        ended_exemptions: changes
            .ended_exemptions
            .iter()
            .map(|k| {
                // `<account>/<user ARN>/<key or "root">`: the ARN may hold slashes.
                let (account, rest) = k.split_once('/').unwrap_or((k.as_str(), ""));
                let (arn, key) = rest.rsplit_once('/').unwrap_or((rest, ""));
                format!("{account} {arn} {key}")
            })
            .collect(),
        trend: trend_runs
            .iter()
            .map(|r| TrendRow {
                date: r.at.strftime("%Y-%m-%d").to_string(),
                open: r.open,
                overdue: r.overdue,
                open_pct: pct(r.open),
                overdue_pct: pct(r.overdue),
            })
            .collect(),
        accounts,
        carried: changes.carried.values().sum(),
    }
}

/// The view for the security digest.
pub fn digest_view(
    report: &Report,
    policy: &NotifyPolicy,
    extras: DigestExtras,
    link: &dyn Fn(&Finding) -> String,
) -> DigestView {
    let now = report.evaluated_at;
    let alias = aliases(report);
    let row = |f: &Finding| key_row(f, alias.get(&f.account_id).copied().flatten(), now, link);
    let s = &report.summary;
    let all: Vec<&Finding> = report.findings.iter().collect();
    let (subject_prefix, subject_summary) = subject_parts(&all);

    let mut findings_per_account: BTreeMap<&AccountId, usize> = BTreeMap::new();
    for f in &report.findings {
        *findings_per_account.entry(&f.account_id).or_default() += 1;
    }
    let listed: Vec<&AccountEntry> = report
        .accounts
        .iter()
        .filter(|a| {
            a.status == AccountStatus::Failed || findings_per_account.contains_key(&a.account_id)
        })
        .collect();
    let blind_spots = blind_spots(report);

    let mut invalid: BTreeSet<InvalidAddress> = BTreeSet::new();
    for f in &report.findings {
        for sk in &f.owner.skipped {
            invalid.insert(InvalidAddress {
                account: format!("{} ({})", f.account_name, f.account_id),
                user_name: f.user_name.clone(),
                rule: sk.rule.clone(),
                value: sk.value.clone(),
                reason: sk.reason.clone(),
            });
        }
    }

    // Keys with findings and exempt keys in force alike: an exemption must
    // not make the oldest key in the Organization disappear from view.
    let mut oldest: Vec<(i64, KeyRow)> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut by_age: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.age_days.is_some())
        .collect();
    by_age.sort_by(|a, b| b.age_days.cmp(&a.age_days).then(urgency(a, b)));
    for f in by_age {
        if seen.insert((&f.account_id, &f.user_name, &f.access_key_id)) {
            oldest.push((f.age_days.unwrap_or(0), row(f)));
        }
    }
    for e in report
        .exempt
        .iter()
        .filter(|e| e.status == ExemptionStatus::InForce && e.age_days.is_some())
    {
        if seen.insert((&e.account_id, &e.user_name, &e.access_key_id)) {
            oldest.push((e.age_days.unwrap_or(0), exempt_key_row(e)));
        }
    }
    oldest.sort_by_key(|r| std::cmp::Reverse(r.0));
    oldest.truncate(policy.oldest_keys);

    let max = s.active_key_ages.iter().map(|b| b.keys).max().unwrap_or(0);
    let histogram = s
        .active_key_ages
        .iter()
        .map(|b| Bar {
            label: b.label.clone(),
            keys: b.keys,
            pct: if max == 0 || b.keys == 0 {
                0
            } else {
                (b.keys * 100 / max).max(1)
            },
            over_limit: b.min_days >= i64::from(report.policy.max_age_days)
                || b.max_days
                    .is_none_or(|hi| hi >= i64::from(report.policy.max_age_days)),
        })
        .collect();

    let (in_force, ignored): (Vec<&ExemptKey>, Vec<&ExemptKey>) = report
        .exempt
        .iter()
        .partition(|e| e.status == ExemptionStatus::InForce);
    let exempt_rows = |list: Vec<&ExemptKey>| -> Vec<ExemptRow> {
        list.into_iter()
            .map(|e| exempt_row(e, now, policy.expiring_within_days))
            .collect()
    };
    let mut unresolved: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.owner.email.is_none())
        .collect();
    unresolved.sort_by(|a, b| urgency(a, b));

    DigestView {
        evaluated_at: now.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        subject_prefix,
        subject_summary,
        incomplete: report.is_incomplete(),
        accounts_total: s.accounts_total,
        accounts_scanned: s.accounts_scanned,
        accounts_failed: s.accounts_failed,
        users: s.users,
        keys: s.keys,
        findings: s.findings,
        by_severity: Severity::ALL
            .iter()
            .map(|sev| Count {
                id: sev.as_str().to_owned(),
                title: sev.as_str().to_owned(),
                severity: sev.as_str().to_owned(),
                count: s.by_severity.get(sev).copied().unwrap_or(0),
            })
            .collect(),
        by_check: CHECKS
            .iter()
            .map(|c| Count {
                id: c.id_str.to_owned(),
                title: c.title.to_owned(),
                severity: c.severity.as_str().to_owned(),
                count: s.by_check.get(&c.id).copied().unwrap_or(0),
            })
            .collect(),
        blind_spots,
        clean_accounts: (report.accounts.len() - listed.len()) as u64,
        accounts: listed
            .into_iter()
            .map(|a| AccountRow {
                account_id: a.account_id.to_string(),
                name: a.name.clone(),
                alias: a.alias.clone(),
                status: match a.status {
                    AccountStatus::Scanned => "scanned",
                    AccountStatus::Failed => "FAILED",
                }
                .to_owned(),
                source: match a.source {
                    Some(super::report::InventorySource::CredentialReport) => "credential report",
                    Some(super::report::InventorySource::Api) => "API",
                    None => "-",
                }
                .to_owned(),
                users: a.users,
                keys: a.keys,
                findings: findings_per_account
                    .get(&a.account_id)
                    .copied()
                    .unwrap_or(0),
                owner: a
                    .owner
                    .as_ref()
                    .and_then(|o| o.email.as_ref())
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "-".into()),
            })
            .collect(),
        unresolved: unresolved.into_iter().map(row).collect(),
        invalid_addresses: invalid.into_iter().collect(),
        exemptions_in_force: exempt_rows(in_force),
        exemptions_ignored: exempt_rows(ignored),
        oldest: oldest.into_iter().map(|(_, r)| r).collect(),
        histogram,
        people_notified: extras.people_notified,
        people_line: people_line(extras.people_notified, extras.delivery),
        delivery_failures: extras.delivery_failures,
        export_failures: extras.export_failures,
        max_age_days: report.policy.max_age_days,
        history: extras.history,
        enforce_mode: extras.enforce_mode.to_owned(),
        actions: report
            .actions
            .iter()
            .map(|a| {
                let f = report.findings.iter().find(|f| {
                    f.account_id == a.account_id
                        && f.access_key_id.as_ref() == Some(&a.access_key_id)
                });
                ActionRow {
                    account: match f {
                        Some(f) => format!("{} ({})", f.account_name, a.account_id),
                        None => a.account_id.to_string(),
                    },
                    user_name: a.user_name.clone(),
                    access_key_id: a.access_key_id.to_string(),
                    action: a.action.as_str(),
                    outcome: match a.outcome {
                        Outcome::Planned => "planned",
                        Outcome::Done => "done",
                        Outcome::Failed => "FAILED",
                    },
                    error: a.error.clone().unwrap_or_default(),
                    owner: f
                        .and_then(|f| f.owner.email.as_ref())
                        .map(|e| e.to_string())
                        .unwrap_or_else(|| "-".to_owned()),
                }
            })
            .collect(),
        actions_waiting: report.actions_waiting,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::templates::SAMPLE_REPORT;

    #[test]
    fn the_digest_never_says_sent_when_nothing_was_and_counts_in_good_english() {
        assert_eq!(
            people_line(1, DeliveryMode::Sent),
            "1 person was sent their own message."
        );
        assert_eq!(
            people_line(3, DeliveryMode::Sent),
            "3 people were sent their own message."
        );
        for mode in [DeliveryMode::DryRun, DeliveryMode::Outbox] {
            assert!(!people_line(3, mode).contains("were sent"), "{mode:?}");
        }
        assert_eq!(
            people_line(1, DeliveryMode::Outbox),
            "1 message to owners written to the outbox, not sent."
        );
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let t = crate::core::templates::Templates::load(&Default::default(), None).unwrap();
        let mut one = report.clone();
        one.findings.truncate(1);
        one.summary.findings = 1;
        let view = digest_view(
            &one,
            &NotifyPolicy::default(),
            DigestExtras::default(),
            &|_| String::new(),
        );
        let rendered = t.digest(&view).unwrap();
        assert!(
            rendered.subject.contains(": 1 finding in "),
            "{}",
            rendered.subject
        );
        assert!(!rendered.text.contains("1 findings"), "{}", rendered.text);
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
    fn an_exempt_900_day_key_still_heads_the_oldest_keys_marked_exempt_and_long() {
        let mut report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let exempt = report
            .exempt
            .iter_mut()
            .find(|e| e.status == ExemptionStatus::InForce)
            .unwrap();
        exempt.age_days = Some(900);
        let user = exempt.user_name.clone();
        let view = digest_view(
            &report,
            &NotifyPolicy::default(),
            DigestExtras::default(),
            &|_| String::new(),
        );
        assert_eq!(view.oldest[0].user_name, user);
        assert!(view.oldest[0].exempt);
        assert_eq!(view.oldest[0].age_days, Some(900));
        assert!(view.oldest[1..].iter().all(|r| !r.exempt));
        // Its exemption ends 2027-01-31, 63 days after the report: long.
        let row = view
            .exemptions_in_force
            .iter()
            .find(|r| r.user_name == user)
            .unwrap();
        assert!(row.long);
    }
}
