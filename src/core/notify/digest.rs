//! The security digest: everything no owner message covers (blind spots,
//! unresolved owners, invalid addresses, exemptions, the oldest keys, the age
//! histogram, delivery failures, enforcement).

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::history::HistoryView;
use super::owner::subject_parts;
use super::rows::{
    aliases, exempt_key_row, exempt_row, key_row, key_text, told_text, ExemptRow, KeyRow,
};
use crate::core::checks::{Severity, CHECKS};
use crate::core::model::{AccessKeyId, AccountId};
use crate::core::plan::{urgency, NotifyPolicy};
use crate::core::record::Outcome;
use crate::core::report::{
    AccountEntry, AccountStatus, ExemptKey, ExemptionStatus, Finding, Report,
};

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
        code: crate::core::report::NOT_IN_ORGANIZATION.to_owned(),
        message: crate::core::report::NOT_IN_ORGANIZATION_MESSAGE.to_owned(),
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

/// One line of "Fix these first".
#[derive(Debug, Clone, Serialize)]
pub struct FixFirst {
    /// 1, 2, 3 … in this list (one line per key).
    pub position: usize,
    pub rank: u32,
    pub reason: String,
    pub check: &'static str,
    pub severity: &'static str,
    pub account: String,
    pub user_name: String,
    /// The key id, or "root access key".
    pub access_key_id: String,
    pub owner: String,
    /// What the key can do, in a few words ("" when not worked out).
    pub can_do: &'static str,
}

/// How many findings "Fix these first" lists.
pub const FIX_FIRST: usize = 10;

/// The top of the risk order, one line per key (its most urgent finding).
pub fn fix_first(report: &Report) -> Vec<FixFirst> {
    let mut ranked: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.risk.is_some())
        .collect();
    ranked.sort_by_key(|f| f.risk.as_ref().map_or(u32::MAX, |r| r.rank));
    let mut keys = BTreeSet::new();
    ranked
        .into_iter()
        .filter(|f| keys.insert((&f.account_id, &f.user_name, &f.access_key_id)))
        .take(FIX_FIRST)
        .enumerate()
        .map(|(i, f)| {
            let risk = f.risk.as_ref();
            FixFirst {
                position: i + 1,
                rank: risk.map_or(0, |r| r.rank),
                reason: risk.map(|r| r.reason.clone()).unwrap_or_default(),
                check: f.check.as_str(),
                severity: f.severity.as_str(),
                account: format!("{} ({})", f.account_name, f.account_id),
                user_name: f.user_name.clone(),
                access_key_id: key_text(f.access_key_id.as_ref()),
                owner: told_text(&f.owner),
                can_do: f.privilege.as_ref().map_or("", |p| p.class.as_str()),
            }
        })
        .collect()
}

/// "31 keys could be Identity Center users": flagged keys counted by what
/// should replace them (`core::usage`), most first; keys to rotate last.
pub fn replace_counts(report: &Report) -> Vec<String> {
    let mut kinds: BTreeMap<
        crate::core::usage::Kind,
        BTreeSet<(&AccountId, Option<&AccessKeyId>)>,
    > = BTreeMap::new();
    for f in &report.findings {
        if let Some(r) = &f.replace_with {
            kinds
                .entry(r.kind)
                .or_default()
                .insert((&f.account_id, f.access_key_id.as_ref()));
        }
    }
    let mut counts: Vec<(crate::core::usage::Kind, usize)> =
        kinds.into_iter().map(|(k, keys)| (k, keys.len())).collect();
    counts.sort_by_key(|(k, n)| {
        (
            *k == crate::core::usage::Kind::Rotate,
            std::cmp::Reverse(*n),
            *k,
        )
    });
    counts.into_iter().map(|(k, n)| k.counted(n)).collect()
}

/// What the digest templates render.
#[derive(Debug, Clone, Serialize)]
pub struct DigestView {
    /// The top of the risk order: what to fix first, and why.
    pub fix_first: Vec<FixFirst>,
    /// Flagged keys by what should replace them.
    pub replace_counts: Vec<String>,
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
    /// Where every finding is as CSV: attached, or too large and where.
    pub csv_line: String,
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
    /// Eligible keys beyond what enforce_max_per_day leaves today: next day.
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
    /// Who still uses the key ("used 2 hours ago from 3 addresses by
    /// terraform/1: deactivating it will break them"), from its footprint.
    pub breaks: String,
}

/// The largest findings CSV the digest attaches (5 MiB): a larger one
/// makes a message mail gateways refuse (Gmail and Exchange Online take
/// 25 MB, base64 makes a file a third larger; SES takes 40 MB) and a run at
/// 20,000 accounts would hold it several times over while SES encodes it.
pub const CSV_ATTACH_MAX_BYTES: usize = 5 * 1024 * 1024;

/// Where the digest's reader finds every finding as CSV.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum FindingsCsv {
    /// Attached to the digest (`keywarden-findings.csv`).
    #[default]
    Attached,
    /// Larger than [`CSV_ATTACH_MAX_BYTES`]: not attached; where the run's
    /// archive keeps it (`None`: this run archives nothing).
    TooLarge {
        bytes: usize,
        archive: Option<String>,
    },
}

impl FindingsCsv {
    /// Attached when `bytes` is at most [`CSV_ATTACH_MAX_BYTES`].
    pub fn for_size(bytes: usize, archive: Option<String>) -> Self {
        if bytes <= CSV_ATTACH_MAX_BYTES {
            Self::Attached
        } else {
            Self::TooLarge { bytes, archive }
        }
    }

    /// The digest's sentence about it.
    pub fn line(&self) -> String {
        match self {
            Self::Attached => "All findings are attached as CSV.".to_owned(),
            Self::TooLarge { bytes, archive } => {
                let size = format!(
                    "The findings CSV ({:.1} MB) is too large to attach (more than {} MB)",
                    *bytes as f64 / 1_048_576.0,
                    CSV_ATTACH_MAX_BYTES / 1_048_576
                );
                match archive {
                    Some(at) => format!("{size}: it is in this run's archive, {at}"),
                    None => format!(
                        "{size}, and this run archives nothing: `keywarden scan --format csv` writes it."
                    ),
                }
            }
        }
    }
}

/// Extra facts for the digest that only delivery and the ledger know.
#[derive(Debug, Clone, Default)]
pub struct DigestExtras {
    /// Whether the findings CSV is attached, or where it is.
    pub findings_csv: FindingsCsv,
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
                    Some(crate::core::report::InventorySource::CredentialReport) => {
                        "credential report"
                    }
                    Some(crate::core::report::InventorySource::Api) => "API",
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
        fix_first: fix_first(report),
        replace_counts: replace_counts(report),
        unresolved: unresolved.into_iter().map(row).collect(),
        invalid_addresses: invalid.into_iter().collect(),
        exemptions_in_force: exempt_rows(in_force),
        exemptions_ignored: exempt_rows(ignored),
        oldest: oldest.into_iter().map(|(_, r)| r).collect(),
        histogram,
        people_notified: extras.people_notified,
        people_line: people_line(extras.people_notified, extras.delivery),
        csv_line: extras.findings_csv.line(),
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
                    breaks: match f.and_then(|f| f.usage.as_ref()) {
                        Some(crate::core::usage::Usage::Known(u)) => {
                            crate::core::usage::breaks_line(u, report.evaluated_at)
                        }
                        _ => String::new(),
                    },
                }
            })
            .collect(),
        actions_waiting: report.actions_waiting,
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_findings_csv_is_attached_up_to_its_bound_else_the_digest_says_where_it_is() {
        assert_eq!(
            FindingsCsv::for_size(CSV_ATTACH_MAX_BYTES, None),
            FindingsCsv::Attached
        );
        assert_eq!(
            FindingsCsv::Attached.line(),
            "All findings are attached as CSV."
        );
        let archived = FindingsCsv::for_size(
            CSV_ATTACH_MAX_BYTES + 1,
            Some("s3://b/p/run.csv".to_owned()),
        );
        assert_eq!(
            archived.line(),
            "The findings CSV (5.0 MB) is too large to attach (more than 5 MB): it is in this run's archive, s3://b/p/run.csv"
        );
        let nowhere = FindingsCsv::for_size(12 * 1_048_576, None);
        assert_eq!(
            nowhere.line(),
            "The findings CSV (12.0 MB) is too large to attach (more than 5 MB), and this run archives nothing: `keywarden scan --format csv` writes it."
        );
    }

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
    fn the_enforcement_plan_says_who_still_uses_each_key_and_keys_are_counted_by_replacement() {
        let mut report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        // ci-deploy's key: used by GitHub Actions runners, the last on 2026-11-26.
        let ci = report
            .findings
            .iter()
            .find(|f| f.user_name == "ci-deploy")
            .unwrap()
            .clone();
        report.actions.push(crate::core::record::ActionRecord {
            finding_id: "x".into(),
            action: crate::core::record::Action::Deactivate,
            outcome: Outcome::Planned,
            account_id: ci.account_id.clone(),
            user_name: ci.user_name.clone(),
            access_key_id: ci.access_key_id.clone().unwrap(),
            error: None,
        });
        let view = digest_view(
            &report,
            &NotifyPolicy::default(),
            DigestExtras::default(),
            &|_| String::new(),
        );
        assert_eq!(
            view.actions[0].breaks,
            "used 2 days ago from 14 addresses by terraform/1, aws-sdk-js/3: deactivating it will break them"
        );
        assert_eq!(
            view.replace_counts,
            [
                "5 keys could be deleted (nothing uses them)",
                "1 key could be an Identity Center user",
                "1 CI key could use OIDC",
                "1 vendor key could be a cross-account role",
            ]
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
