//! Renders a [`Report`] as JSON (the `keywarden.report/v1` contract), CSV
//! (one row per finding), OCSF (one Detection Finding per line) or a table
//! for people (summary, findings by severity, failed accounts).

use std::io::IsTerminal;

use comfy_table::{
    presets::UTF8_FULL_CONDENSED, Cell, ColumnConstraint, ContentArrangement, Table, Width,
};

use crate::core::checks::Severity;
use crate::core::report::{AccountStatus, DeliveryOutcome, ExemptionStatus, Finding, Report};
use crate::core::report::{NOT_IN_ORGANIZATION, NOT_IN_ORGANIZATION_MESSAGE};

/// Output formats of `scan` and `notify`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
    /// OCSF 1.5 Detection Findings (class 2004), one JSON object per line.
    Ocsf,
}

/// Errors while rendering.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error("cannot write JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("cannot write CSV: {0}")]
    Csv(#[from] csv::Error),
    #[error("cannot write: {0}")]
    Io(#[from] std::io::Error),
}

/// Writes `report` in `format` to `w` as it is rendered (JSON is streamed,
/// never held whole in memory).
pub fn write_report(
    report: &Report,
    format: Format,
    w: &mut dyn std::io::Write,
) -> Result<(), RenderError> {
    match format {
        Format::Json => {
            serde_json::to_writer_pretty(&mut *w, report)?;
            w.write_all(b"\n")?;
        }
        other => w.write_all(render(report, other)?.as_bytes())?,
    }
    Ok(())
}

pub fn render(report: &Report, format: Format) -> Result<String, RenderError> {
    match format {
        Format::Json => Ok(serde_json::to_string_pretty(report)? + "\n"),
        Format::Csv => findings_csv(&report.findings),
        Format::Table => Ok(table(report)),
        Format::Ocsf => ocsf_lines(report),
    }
}

/// Every OCSF event of `report`, one JSON object per line.
pub fn ocsf_lines(report: &Report) -> Result<String, RenderError> {
    let mut out = String::new();
    for event in crate::core::ocsf::events(report, env!("CARGO_PKG_VERSION")) {
        out.push_str(&serde_json::to_string(&event)?);
        out.push('\n');
    }
    Ok(out)
}

fn ts(t: Option<jiff::Timestamp>) -> String {
    t.map(|t| t.strftime("%Y-%m-%d").to_string())
        .unwrap_or_default()
}

/// A text cell from IAM or Organizations, neutralised for spreadsheets: a
/// value starting with `=`, `+`, `-`, `@`, a tab or a carriage return is a
/// formula to Excel, LibreOffice and Google Sheets (`=HYPERLINK(...)` in an
/// account name), so it is prefixed with `'` (OWASP's CSV injection advice).
pub fn cell(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    }
}

/// All findings as CSV, one row each (also the digest's attachment). Every
/// IAM- or Organizations-sourced cell goes through [`cell`].
pub fn findings_csv(findings: &[Finding]) -> Result<String, RenderError> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "check",
        "severity",
        "account_id",
        "account_name",
        "user_name",
        "user_arn",
        "access_key_id",
        "key_status",
        "created_at",
        "age_days",
        "last_used_at",
        "last_used_service",
        "due_at",
        "owner_email",
        "owner_rule",
        "remediation",
        "privilege",
        "privilege_conditional",
        "privilege_evidence",
        "risk_rank",
        "risk_reason",
        "usage",
        "replace_with",
        "replace_with_reason",
    ])?;
    for f in findings {
        w.write_record([
            f.check.as_str().to_owned(),
            f.severity.as_str().to_owned(),
            f.account_id.to_string(),
            cell(&f.account_name),
            cell(&f.user_name),
            cell(&f.user_arn),
            f.access_key_id
                .as_ref()
                .map(|k| k.to_string())
                .unwrap_or_default(),
            f.key_status.as_str().to_owned(),
            f.created_at.map(|t| t.to_string()).unwrap_or_default(),
            f.age_days.map(|d| d.to_string()).unwrap_or_default(),
            f.last_used_at.map(|t| t.to_string()).unwrap_or_default(),
            cell(f.last_used_service.as_deref().unwrap_or_default()),
            f.due_at.map(|t| t.to_string()).unwrap_or_default(),
            f.owner
                .email
                .as_ref()
                .map(|e| cell(e.as_str()))
                .unwrap_or_default(),
            cell(&f.owner.rule),
            f.remediation.clone(),
            f.privilege
                .as_ref()
                .map(|p| p.class.as_str().to_owned())
                .unwrap_or_default(),
            f.privilege
                .as_ref()
                .map(|p| p.conditional.to_string())
                .unwrap_or_default(),
            // Evidence names IAM policies and users: data, neutralised.
            f.privilege
                .as_ref()
                .map(|p| cell(&p.evidence.join("; ")))
                .unwrap_or_default(),
            f.risk
                .as_ref()
                .map(|r| r.rank.to_string())
                .unwrap_or_default(),
            f.risk
                .as_ref()
                .map(|r| r.reason.clone())
                .unwrap_or_default(),
            // Addresses and user agents come from CloudTrail: data, neutralised.
            f.usage
                .as_ref()
                .map(|u| cell(&crate::core::notify::rows::used(u)))
                .unwrap_or_default(),
            f.replace_with
                .as_ref()
                .map(|r| r.kind.as_str().to_owned())
                .unwrap_or_default(),
            f.replace_with
                .as_ref()
                .map(|r| cell(&r.reason))
                .unwrap_or_default(),
        ])?;
    }
    let bytes = w
        .into_inner()
        .map_err(|e| csv::Error::from(e.into_error()))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

/// One finding as a table row.
fn finding_row(f: &Finding) -> Vec<String> {
    vec![
        f.check.as_str().to_owned(),
        format!("{} ({})", f.account_name, f.account_id),
        f.user_name.clone(),
        f.access_key_id
            .as_ref()
            .map(|k| k.to_string())
            .unwrap_or_else(|| "-".into()),
        f.age_days
            .map(|d| format!("{d} d"))
            .unwrap_or_else(|| "-".into()),
        match (&f.last_used_at, &f.last_used_service) {
            (Some(t), Some(svc)) => format!("{} {svc}", ts(Some(*t))),
            (Some(t), None) => ts(Some(*t)),
            _ => "never".to_owned(),
        },
        ts(f.due_at),
        f.owner
            .email
            .as_ref()
            .map(|e| e.to_string())
            .unwrap_or_else(|| "UNRESOLVED".into()),
        f.remediation.clone(),
    ]
}

/// One finding as a few short lines, for narrow terminals.
fn finding_card(f: &Finding) -> String {
    let key = f
        .access_key_id
        .as_ref()
        .map(|k| k.to_string())
        .unwrap_or_else(|| "root access key".into());
    let used = match (&f.last_used_at, &f.last_used_service) {
        (Some(t), Some(svc)) => format!("{} {svc}", ts(Some(*t))),
        (Some(t), None) => ts(Some(*t)),
        _ => "never".to_owned(),
    };
    let owner = f
        .owner
        .email
        .as_ref()
        .map(|e| e.to_string())
        .unwrap_or_else(|| "UNRESOLVED".into());
    format!(
        "- {check}  {account} ({id})\n    user {user}\n    key  {key}  age {age}  last used {used}\n    due  {due}  owner {owner}\n    to do: {todo}\n",
        check = f.check.as_str(),
        account = f.account_name,
        id = f.account_id,
        user = f.user_name,
        age = f.age_days.map(|d| format!("{d} d")).unwrap_or_else(|| "-".into()),
        due = ts(f.due_at),
        todo = f.remediation,
    )
}

/// Columns narrower than this are not worth wrapping text into.
const MIN_TEXT_COLUMN: usize = 12;

/// A table of `rows` under `header`, or, when the terminal is too narrow for
/// it without splitting a word of a `protected` column (key ids, account
/// ids, dates, addresses), the same rows as cards (`card(i)` renders row i).
/// The columns are sized from `sizing` (`rows`, or every row of tables that
/// show one list in parts, so the parts agree on widths and on cards).
/// Whatever the width, no protected word is split.
fn grid(
    header: &[&str],
    rows: &[Vec<String>],
    sizing: &[Vec<String>],
    protected: &[usize],
    card: &dyn Fn(usize) -> String,
) -> String {
    let longest_word = |i: usize| -> usize {
        std::iter::once(header[i].to_owned())
            .chain(sizing.iter().map(|r| r[i].clone()))
            .flat_map(|cell| {
                cell.split_whitespace()
                    .map(|w| w.chars().count())
                    .collect::<Vec<_>>()
            })
            .max()
            .unwrap_or(1)
    };
    let bounds: Vec<usize> = (0..header.len())
        .map(|i| {
            if protected.contains(&i) {
                longest_word(i)
            } else {
                longest_word(i).min(MIN_TEXT_COLUMN)
            }
        })
        .collect();
    // Each column: its content plus a space either side and a border.
    let needed = 1 + bounds.iter().map(|b| b + 3).sum::<usize>();
    let terminal = Table::new().width().map(usize::from);
    if terminal.is_some_and(|w| needed > w) {
        return (0..rows.len()).map(card).collect();
    }
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().map(Cell::new));
    // Without a terminal to measure, wrap long cells (error messages) at a readable width.
    if !std::io::stdout().is_terminal() {
        t.set_width(160.max(needed as u16));
    }
    for r in rows {
        t.add_row(r.clone());
    }
    for &i in protected {
        if let Some(c) = t.column_mut(i) {
            // comfy-table's widths include the column's padding (one space
            // either side).
            c.set_constraint(ColumnConstraint::LowerBoundary(Width::Fixed(
                bounds[i] as u16 + 2,
            )));
        }
    }
    format!("{t}\n")
}

/// A row as a card: the first cell, then `header: value` lines.
fn plain_card(header: &[&str], row: &[String]) -> String {
    let mut out = format!("- {}\n", row[0]);
    for (h, v) in header.iter().zip(row).skip(1) {
        if !v.is_empty() {
            out.push_str(&format!("    {h}: {v}\n"));
        }
    }
    out
}

fn table(r: &Report) -> String {
    let s = &r.summary;
    let mut out = format!(
        "keywarden scan as of {}\n{} accounts ({} scanned, {} failed), {} users, {} keys, {} findings\n",
        r.evaluated_at.strftime("%Y-%m-%d %H:%M UTC"),
        s.accounts_total,
        s.accounts_scanned,
        s.accounts_failed,
        s.users,
        s.keys,
        s.findings
    );
    let by_sev: Vec<String> = Severity::ALL
        .iter()
        .filter_map(|sev| {
            s.by_severity
                .get(sev)
                .filter(|n| **n > 0)
                .map(|n| format!("{n} {}", sev.as_str()))
        })
        .collect();
    if !by_sev.is_empty() {
        out.push_str(&format!("by severity: {}\n", by_sev.join(", ")));
    }
    let by_check: Vec<String> = s
        .by_check
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(c, n)| format!("{n} {}", c.as_str()))
        .collect();
    if !by_check.is_empty() {
        out.push_str(&format!("by check: {}\n", by_check.join(", ")));
    }

    // Each table becomes cards when the terminal is too narrow for it
    // without splitting a key id, an account id, a date or an address.
    // Every severity's table is sized from all findings: one layout throughout.
    let all_rows: Vec<Vec<String>> = r.findings.iter().map(finding_row).collect();
    for sev in Severity::ALL {
        let findings: Vec<&Finding> = r.findings.iter().filter(|f| f.severity == sev).collect();
        if findings.is_empty() {
            continue;
        }
        let header = [
            "check",
            "account",
            "user",
            "access key",
            "age",
            "last used",
            "due",
            "owner",
            "to do",
        ];
        let rows: Vec<Vec<String>> = findings.iter().map(|f| finding_row(f)).collect();
        out.push_str(&format!(
            "\n{} ({})\n",
            sev.as_str().to_uppercase(),
            findings.len()
        ));
        let protected = [0, 1, 2, 3, 4, 5, 6, 7];
        out.push_str(&grid(&header, &rows, &all_rows, &protected, &|row| {
            finding_card(findings[row])
        }));
    }

    if !r.exempt.is_empty() {
        let header = ["account", "user", "access key", "status", "until", "reason"];
        let rows: Vec<Vec<String>> = r
            .exempt
            .iter()
            .map(|e| {
                vec![
                    format!("{} ({})", e.account_name, e.account_id),
                    e.user_name.clone(),
                    e.access_key_id
                        .as_ref()
                        .map(|k| k.to_string())
                        .unwrap_or_else(|| "-".into()),
                    match e.status {
                        ExemptionStatus::InForce => "in force",
                        ExemptionStatus::Expired => "EXPIRED",
                        ExemptionStatus::Invalid => "INVALID",
                    }
                    .to_owned(),
                    e.until.map(|d| d.to_string()).unwrap_or_default(),
                    e.reason.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&format!("\nEXEMPTIONS ({})\n", r.exempt.len()));
        out.push_str(&grid(&header, &rows, &rows, &[0, 1, 2, 4], &|i| {
            plain_card(&header, &rows[i])
        }));
    }

    if r.usage_not_read > 0 {
        out.push_str(&format!(
            "\nWhere {} flagged key{} {} used was not read this run (at most 20 keys per account and run, and usage_max_keys_without_ledger without a ledger); with a ledger the rest are read on the next runs.\n",
            r.usage_not_read,
            if r.usage_not_read == 1 { "" } else { "s" },
            if r.usage_not_read == 1 { "is" } else { "are" },
        ));
    }
    let failed: Vec<_> = r
        .accounts
        .iter()
        .filter(|a| a.status == AccountStatus::Failed)
        .collect();
    if !failed.is_empty() || !r.errors.is_empty() || !r.unknown_accounts.is_empty() {
        let header = ["account", "stage", "code", "message"];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for id in &r.unknown_accounts {
            rows.push(vec![
                id.to_string(),
                "scope".to_owned(),
                NOT_IN_ORGANIZATION.to_owned(),
                NOT_IN_ORGANIZATION_MESSAGE.to_owned(),
            ]);
        }
        for a in failed {
            if let Some(e) = &a.error {
                rows.push(vec![
                    format!("{} ({})", a.name, a.account_id),
                    e.stage.clone(),
                    e.code.clone(),
                    e.message.clone(),
                ]);
            }
        }
        for e in &r.errors {
            rows.push(vec![
                "-".to_owned(),
                e.stage.clone(),
                e.code.clone(),
                e.message.clone(),
            ]);
        }
        out.push_str("\nNOT SCANNED: the report is incomplete\n");
        out.push_str(&grid(&header, &rows, &rows, &[0, 1, 2], &|i| {
            plain_card(&header, &rows[i])
        }));
    }
    if !r.notifications.is_empty() {
        let header = ["kind", "recipients", "subject", "findings", "outcome"];
        let rows: Vec<Vec<String>> = r
            .notifications
            .iter()
            .map(|n| {
                let outcome = match (&n.outcome, &n.error, &n.file) {
                    (DeliveryOutcome::Sent, _, _) => {
                        format!("sent {}", n.message_id.as_deref().unwrap_or(""))
                    }
                    (DeliveryOutcome::Failed, e, _) => {
                        format!("FAILED: {}", e.as_deref().unwrap_or(""))
                    }
                    (DeliveryOutcome::Outbox, _, Some(f)) => format!("written to {f}"),
                    (DeliveryOutcome::Outbox, _, None) => "written".to_owned(),
                    (DeliveryOutcome::DryRun, _, _) => "dry run: not sent".to_owned(),
                };
                vec![
                    n.kind.as_str().to_owned(),
                    n.recipients.join(", "),
                    n.subject.clone(),
                    n.findings.to_string(),
                    outcome,
                ]
            })
            .collect();
        out.push_str(&format!("\nNOTIFICATIONS ({})\n", r.notifications.len()));
        out.push_str(&grid(&header, &rows, &rows, &[0, 1, 3], &|i| {
            plain_card(&header, &rows[i])
        }));
    }
    if s.findings == 0 && !r.is_incomplete() {
        out.push_str("\nNo findings.\n");
    }
    out
}
