//! Who hears about what, and the view models the email templates render.
//! One person, one message: a key owner who also owns accounts gets a single
//! message with both sections. The security digest gets everything else:
//! blind spots, unresolved owners, invalid addresses, exemptions, oldest
//! keys, the age histogram and delivery failures. Pure: `now` is the report's
//! `evaluated_at`.

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use super::checks::{CheckId, Severity, CHECKS};
use super::model::{days_between, AccountId, EmailAddress};
use super::report::{AccountEntry, AccountStatus, ExemptKey, ExemptionStatus, Finding, Report};

/// Knobs for planning.
#[derive(Debug, Clone, Copy)]
pub struct NotifyPolicy {
    /// Account owners also hear about their accounts' findings.
    pub notify_account_owners: bool,
    /// Exemptions ending within this many days are flagged in the digest.
    pub expiring_within_days: u32,
    /// How many of the oldest keys the digest lists.
    pub oldest_keys: usize,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        Self {
            notify_account_owners: true,
            expiring_within_days: 14,
            oldest_keys: 10,
        }
    }
}

/// Everything one person hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonPlan {
    pub recipient: EmailAddress,
    /// Findings on keys this person owns.
    pub own: Vec<Finding>,
    /// Accounts this person owns, with the findings on other people's keys there.
    pub accounts: Vec<(AccountEntry, Vec<Finding>)>,
}

impl PersonPlan {
    pub fn finding_count(&self) -> usize {
        self.own.len() + self.accounts.iter().map(|(_, f)| f.len()).sum::<usize>()
    }
}

fn urgency(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then(
            a.due_at
                .unwrap_or(Timestamp::MIN)
                .cmp(&b.due_at.unwrap_or(Timestamp::MIN)),
        )
        .then(a.account_id.cmp(&b.account_id))
        .then(a.user_name.cmp(&b.user_name))
        .then(a.access_key_id.cmp(&b.access_key_id))
        .then(a.check.cmp(&b.check))
}

fn same_address(a: &EmailAddress, b: &EmailAddress) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

/// One plan per distinct recipient (addresses compared case-insensitively),
/// ordered by address; findings most urgent first.
pub fn plan_people(report: &Report, policy: &NotifyPolicy) -> Vec<PersonPlan> {
    let mut people: BTreeMap<String, PersonPlan> = BTreeMap::new();
    fn entry<'a>(
        people: &'a mut BTreeMap<String, PersonPlan>,
        email: &EmailAddress,
    ) -> &'a mut PersonPlan {
        people
            .entry(email.as_str().to_ascii_lowercase())
            .or_insert_with(|| PersonPlan {
                recipient: email.clone(),
                own: Vec::new(),
                accounts: Vec::new(),
            })
    }
    for f in &report.findings {
        if let Some(email) = &f.owner.email {
            entry(&mut people, email).own.push(f.clone());
        }
    }
    if policy.notify_account_owners {
        for account in &report.accounts {
            let Some(owner) = account.owner.as_ref().and_then(|o| o.email.as_ref()) else {
                continue;
            };
            let others: Vec<Finding> = report
                .findings
                .iter()
                .filter(|f| f.account_id == account.account_id)
                .filter(|f| {
                    !f.owner
                        .email
                        .as_ref()
                        .is_some_and(|e| same_address(e, owner))
                })
                .cloned()
                .collect();
            if !others.is_empty() {
                entry(&mut people, owner)
                    .accounts
                    .push((account.clone(), others));
            }
        }
    }
    let mut out: Vec<PersonPlan> = people.into_values().collect();
    for p in &mut out {
        p.own.sort_by(urgency);
        for (_, f) in &mut p.accounts {
            f.sort_by(urgency);
        }
    }
    out
}

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
        key_status: format!("{:?}", f.key_status),
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
    let summary = match phrases.len() {
        0 => "no findings".to_owned(),
        1 => phrases[0].clone(),
        2 => format!("{} and {}", phrases[0], phrases[1]),
        n => format!("{}, {} and {} more", phrases[0], phrases[1], n - 2),
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
    pub accounts: Vec<AccountSection>,
    pub how_to: Vec<HowTo>,
    pub max_age_days: u32,
    pub unused_days: u32,
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
    link: &dyn Fn(&Finding) -> String,
) -> OwnerView {
    let now = report.evaluated_at;
    let alias = aliases(report);
    let row = |f: &Finding| key_row(f, alias.get(&f.account_id).copied().flatten(), now, link);
    let all: Vec<&Finding> = person
        .own
        .iter()
        .chain(person.accounts.iter().flat_map(|(_, f)| f))
        .collect();
    let (subject_prefix, subject_summary) = subject_parts(&all);
    OwnerView {
        recipient: person.recipient.to_string(),
        evaluated_at: now.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        subject_prefix,
        subject_summary,
        total: all.len(),
        your_keys: person.own.iter().map(row).collect(),
        accounts: person
            .accounts
            .iter()
            .map(|(a, f)| AccountSection {
                account_id: a.account_id.to_string(),
                account_name: a.name.clone(),
                account_alias: a.alias.clone(),
                rows: f.iter().map(row).collect(),
            })
            .collect(),
        how_to: how_to(all.iter().map(|f| f.check)),
        max_age_days: report.policy.max_age_days,
        unused_days: report.policy.unused_days,
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
    pub delivery_failures: Vec<DeliveryFailure>,
    pub max_age_days: u32,
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
    }
}

/// Extra facts for the digest that only delivery knows.
#[derive(Debug, Clone, Default)]
pub struct DigestExtras {
    pub people_notified: usize,
    pub delivery_failures: Vec<DeliveryFailure>,
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
    blind_spots.extend(report.errors.iter().map(|e| BlindSpot {
        account: "(account listing)".to_owned(),
        stage: e.stage.clone(),
        code: e.code.clone(),
        message: e.message.clone(),
    }));

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

    let mut oldest: Vec<&Finding> = Vec::new();
    let mut seen = BTreeSet::new();
    let mut by_age: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.age_days.is_some())
        .collect();
    by_age.sort_by(|a, b| b.age_days.cmp(&a.age_days).then(urgency(a, b)));
    for f in by_age {
        if seen.insert((&f.account_id, &f.user_name, &f.access_key_id)) {
            oldest.push(f);
        }
        if oldest.len() == policy.oldest_keys {
            break;
        }
    }

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

    let exempt_rows: Vec<ExemptRow> = report
        .exempt
        .iter()
        .map(|e| exempt_row(e, now, policy.expiring_within_days))
        .collect();
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
        exemptions_in_force: exempt_rows
            .iter()
            .filter(|e| e.status == "in force")
            .cloned()
            .collect(),
        exemptions_ignored: exempt_rows
            .into_iter()
            .filter(|e| e.status != "in force")
            .collect(),
        oldest: oldest.into_iter().map(row).collect(),
        histogram,
        people_notified: extras.people_notified,
        delivery_failures: extras.delivery_failures,
        max_age_days: report.policy.max_age_days,
    }
}
