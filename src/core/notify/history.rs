//! The digest's "since the last run": new and resolved findings, the trend
//! of open and overdue findings, and per account the median days to fix.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use super::rows::{aliases, exempt_row, key_row, key_text, ExemptRow, KeyRow};
use crate::core::ledger::{exemption_key, is_overdue, median_days_to_fix, Changes, Ledger};
use crate::core::model::{days_between, AccountId};
use crate::core::plan::{urgency, NotifyPolicy};
use crate::core::record::How;
use crate::core::report::{Finding, Report};

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
/// after [`crate::core::ledger::reconcile`] of this `report`.
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
                access_key_id: key_text(r.access_key_id.as_ref()),
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
