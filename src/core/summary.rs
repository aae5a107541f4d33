//! The run summary posted to chat (`webhook_url`): blind spots first, totals
//! by severity, what changed since the last run (with a ledger), the five most
//! urgent keys, and where the full report is. One [`RunSummary`] is built per
//! run and shaped for the target: Slack Block Kit, a Teams Adaptive Card, or
//! the summary itself as JSON.
//!
//! Pure: no clock, no I/O. Every value from IAM or Organizations goes into
//! chat as plain text: for Slack `&`, `<` and `>` are escaped (so no value can
//! make a link or a mention), for Teams every line is a `TextRun`, which
//! renders no Markdown (so no value can make a link).

use serde::Serialize;
use serde_json::{json, Value};

use super::checks::Severity;
use super::ledger::Changes;
use super::notify::blind_spots;
use super::plan::urgency;
use super::record::How;
use super::report::{Finding, Report};

/// How many keys the summary lists.
pub const MOST_URGENT: usize = 5;
/// How many blind spots a chat message lists (the digest and the report have all).
pub const MAX_BLIND_SPOTS: usize = 10;
/// Characters of one blind spot's error message in chat.
const MAX_MESSAGE_CHARS: usize = 200;
/// Slack refuses a section text over 3,000 characters.
const SLACK_SECTION_CHARS: usize = 2_900;
/// The longest line of a chat section (a key's line with long names).
const MAX_LINE_CHARS: usize = 400;

/// Which chat payload to post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatFormat {
    Slack,
    Teams,
    Json,
}

impl ChatFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatFormat::Slack => "slack",
            ChatFormat::Teams => "teams",
            ChatFormat::Json => "json",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        match value.trim().to_ascii_lowercase().as_str() {
            "slack" => Some(ChatFormat::Slack),
            "teams" => Some(ChatFormat::Teams),
            "json" => Some(ChatFormat::Json),
            _ => None,
        }
    }
}

/// An account the run could not see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryBlindSpot {
    pub account: String,
    pub code: String,
    pub message: String,
}

/// What changed since the last run (only with a ledger).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SummaryChanges {
    pub first_run: bool,
    pub new: usize,
    pub resolved: usize,
    pub escalated: usize,
}

/// Findings of one severity.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SeverityCount {
    pub severity: Severity,
    pub count: u64,
}

/// One of the most urgent keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UrgentKey {
    pub severity: Severity,
    pub check: String,
    pub account: String,
    pub user_name: String,
    /// `None` for the root user's key.
    pub access_key_id: Option<String>,
    /// `2026-11-02` or `overdue since 2026-11-02`; empty when there is no due date.
    pub due: String,
    pub owner: Option<String>,
}

/// The summary of one run, the `json` payload as is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunSummary {
    pub schema: &'static str,
    pub evaluated_at: String,
    pub complete: bool,
    pub blind_spots: Vec<SummaryBlindSpot>,
    pub accounts_total: u64,
    pub accounts_scanned: u64,
    pub keys: u64,
    pub findings: u64,
    /// critical, high, medium, low: every severity, zeros included.
    pub by_severity: Vec<SeverityCount>,
    pub changes: Option<SummaryChanges>,
    pub most_urgent: Vec<UrgentKey>,
    /// Where the full report is (the archive, or the file written), if anywhere.
    pub report: Option<String>,
}

/// The summary of `report`; `changes` with a ledger, `location` of the full report.
pub fn summarize(report: &Report, changes: Option<&Changes>, location: Option<&str>) -> RunSummary {
    let now = report.evaluated_at;
    let mut urgent: Vec<&Finding> = report.findings.iter().collect();
    urgent.sort_by(|a, b| urgency(a, b));
    // One line per key: a key's most urgent finding speaks for it.
    let mut seen = std::collections::BTreeSet::new();
    let most_urgent = urgent
        .into_iter()
        .filter(|f| {
            seen.insert((
                f.account_id.clone(),
                f.user_name.clone(),
                f.access_key_id.clone(),
            ))
        })
        .take(MOST_URGENT)
        .map(|f| UrgentKey {
            severity: f.severity,
            check: f.check.check().title.to_owned(),
            account: format!("{} ({})", f.account_name, f.account_id),
            user_name: f.user_name.clone(),
            access_key_id: f.access_key_id.as_ref().map(|k| k.to_string()),
            due: match f.due_at {
                Some(d) if d <= now => format!("overdue since {}", d.strftime("%Y-%m-%d")),
                Some(d) => format!("due {}", d.strftime("%Y-%m-%d")),
                None => String::new(),
            },
            owner: f.owner.email.as_ref().map(|e| e.to_string()),
        })
        .collect();
    let blind = blind_spots(report);
    RunSummary {
        schema: "keywarden.chat/v1",
        evaluated_at: now.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        complete: blind.is_empty(),
        blind_spots: blind
            .into_iter()
            .map(|b| SummaryBlindSpot {
                account: b.account,
                code: b.code,
                message: b.message,
            })
            .collect(),
        accounts_total: report.summary.accounts_total,
        accounts_scanned: report.summary.accounts_scanned,
        keys: report.summary.keys,
        findings: report.summary.findings,
        by_severity: Severity::ALL
            .iter()
            .map(|s| SeverityCount {
                severity: *s,
                count: report.summary.by_severity.get(s).copied().unwrap_or(0),
            })
            .collect(),
        changes: changes.map(|c| SummaryChanges {
            first_run: c.first_run,
            new: c.new.len(),
            resolved: report
                .resolved
                .iter()
                .filter(|r| r.how != How::Superseded)
                .count(),
            escalated: c.escalated.len(),
        }),
        most_urgent,
        report: location.map(str::to_owned),
    }
}

/// Text for Slack `mrkdwn`: `&`, `<` and `>` escaped (Slack's rule: links and
/// mentions need `<`), control characters folded.
fn slack_text(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            c if c.is_control() => " ".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

/// Text for a Teams `TextRun` (plain text): control characters folded.
fn teams_text(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_owned()
    } else {
        let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
        out.push('…');
        out
    }
}

/// The blind spots chat shows, and how many more there are.
fn shown_blind_spots(s: &RunSummary) -> (&[SummaryBlindSpot], usize) {
    let shown = &s.blind_spots[..s.blind_spots.len().min(MAX_BLIND_SPOTS)];
    (shown, s.blind_spots.len() - shown.len())
}

/// A Slack section: the title, then as many (escaped) lines as fit in
/// `budget` characters, and, when any are left out (or `more` were never
/// listed), the "… and N more" line, counted so that it always fits.
fn budgeted(title: &str, lines: Vec<String>, more: usize, budget: usize) -> String {
    let total = lines.len() + more;
    let mut text = title.to_owned();
    let mut used = text.chars().count();
    let mut shown = 0;
    for line in &lines {
        let left_after = total - shown - 1;
        let tail = if left_after > 0 {
            1 + more_line(left_after).chars().count()
        } else {
            0
        };
        let need = 1 + line.chars().count();
        if used + need + tail > budget {
            break;
        }
        text.push('\n');
        text.push_str(line);
        used += need;
        shown += 1;
    }
    if total > shown {
        text.push('\n');
        text.push_str(&more_line(total - shown));
    }
    text
}

fn more_line(more: usize) -> String {
    format!(
        "… and {more} more {} (all in the digest and the report)",
        if more == 1 { "account" } else { "accounts" }
    )
}

fn headline(s: &RunSummary) -> String {
    format!(
        "keywarden: {} {} in {} of {} accounts{}",
        s.findings,
        if s.findings == 1 {
            "finding"
        } else {
            "findings"
        },
        s.accounts_scanned,
        s.accounts_total,
        if s.complete { "" } else { " (INCOMPLETE)" }
    )
}

fn totals_line(s: &RunSummary) -> String {
    s.by_severity
        .iter()
        .map(|c| format!("{} {}", c.severity.as_str(), c.count))
        .collect::<Vec<_>>()
        .join(" · ")
}

fn changes_line(c: &SummaryChanges) -> String {
    if c.first_run {
        "First run with a ledger: every finding is new.".to_owned()
    } else {
        format!(
            "Since the last run: {} new, {} resolved, {} escalated.",
            c.new, c.resolved, c.escalated
        )
    }
}

fn key_line(k: &UrgentKey, text: fn(&str) -> String) -> String {
    let key = k.access_key_id.as_deref().unwrap_or("root access key");
    let mut line = format!(
        "{} · {} · {} · {} · {}",
        k.severity.as_str().to_uppercase(),
        text(&k.check),
        text(key),
        text(&k.user_name),
        text(&k.account)
    );
    if !k.due.is_empty() {
        line.push_str(&format!(" · {}", k.due));
    }
    if let Some(owner) = &k.owner {
        line.push_str(&format!(" · {}", text(owner)));
    }
    line
}

/// Slack Block Kit (an incoming webhook's `blocks`, with `text` as the
/// notification fallback).
pub fn slack(s: &RunSummary) -> Value {
    let mut blocks = vec![json!({
        "type": "header",
        "text": {"type": "plain_text", "text": headline(s)}
    })];
    if !s.complete {
        let (shown, more) = shown_blind_spots(s);
        let lines: Vec<String> = shown
            .iter()
            .map(|b| {
                format!(
                    "• {}: `{}` {}",
                    slack_text(&b.account),
                    slack_text(&b.code),
                    slack_text(&clip(&b.message, MAX_MESSAGE_CHARS))
                )
            })
            .collect();
        let text = budgeted(
            ":warning: *Blind spots: keys in these accounts were not checked.*",
            lines,
            more,
            SLACK_SECTION_CHARS,
        );
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": text}
        }));
    }
    blocks.push(json!({
        "type": "section",
        "text": {"type": "mrkdwn", "text": format!("*Findings by severity:* {}\n{} keys checked ({})", totals_line(s), s.keys, s.evaluated_at)}
    }));
    if let Some(c) = &s.changes {
        blocks
            .push(json!({"type": "section", "text": {"type": "mrkdwn", "text": changes_line(c)}}));
    }
    if !s.most_urgent.is_empty() {
        let lines: Vec<String> = s
            .most_urgent
            .iter()
            .map(|k| format!("• {}", clip(&key_line(k, slack_text), MAX_LINE_CHARS)))
            .collect();
        let text = budgeted("*Most urgent keys:*", lines, 0, SLACK_SECTION_CHARS);
        blocks.push(json!({
            "type": "section",
            "text": {"type": "mrkdwn", "text": text}
        }));
    }
    if let Some(r) = &s.report {
        blocks.push(json!({
            "type": "context",
            "elements": [{"type": "mrkdwn", "text": format!("Full report: `{}`", slack_text(r))}]
        }));
    }
    json!({"text": headline(s), "blocks": blocks})
}

/// A Teams Adaptive Card, as a Workflows ("Post to a channel when a webhook
/// request is received") webhook expects it: a message with one attachment.
pub fn teams(s: &RunSummary) -> Value {
    // A RichTextBlock of one TextRun: TextRuns render no Markdown.
    let block = |text: String, style: Value| {
        let mut run = json!({"type": "TextRun", "text": text});
        if let (Some(run), Some(style)) = (run.as_object_mut(), style.as_object()) {
            run.extend(style.clone());
        }
        json!({"type": "RichTextBlock", "inlines": [run]})
    };
    let mut body = vec![block(
        headline(s),
        json!({"size": "Large", "weight": "Bolder"}),
    )];
    if !s.complete {
        body.push(block(
            "Blind spots: keys in these accounts were not checked.".to_owned(),
            json!({"color": "Attention", "weight": "Bolder"}),
        ));
        let (shown, more) = shown_blind_spots(s);
        for b in shown {
            body.push(block(
                format!(
                    "- {}: {} {}",
                    teams_text(&b.account),
                    teams_text(&b.code),
                    teams_text(&clip(&b.message, MAX_MESSAGE_CHARS))
                ),
                json!({"color": "Attention"}),
            ));
        }
        if more > 0 {
            body.push(block(more_line(more), json!({"color": "Attention"})));
        }
    }
    body.push(block(
        format!(
            "Findings by severity: {}. {} keys checked ({}).",
            totals_line(s),
            s.keys,
            s.evaluated_at
        ),
        json!({}),
    ));
    if let Some(c) = &s.changes {
        body.push(block(changes_line(c), json!({})));
    }
    if !s.most_urgent.is_empty() {
        body.push(block(
            "Most urgent keys".to_owned(),
            json!({"weight": "Bolder"}),
        ));
        for k in &s.most_urgent {
            body.push(block(format!("- {}", key_line(k, teams_text)), json!({})));
        }
    }
    if let Some(r) = &s.report {
        body.push(block(
            format!("Full report: {}", teams_text(r)),
            json!({"isSubtle": true}),
        ));
    }
    json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            }
        }]
    })
}

/// The payload for `format`.
pub fn payload(s: &RunSummary, format: ChatFormat) -> Value {
    match format {
        ChatFormat::Slack => slack(s),
        ChatFormat::Teams => teams(s),
        ChatFormat::Json => serde_json::to_value(s).unwrap_or(Value::Null),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::templates::SAMPLE_REPORT;

    fn sample() -> Report {
        serde_json::from_str(SAMPLE_REPORT).unwrap()
    }

    fn texts(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::String(s) => out.push(s.clone()),
            Value::Array(a) => a.iter().for_each(|x| texts(x, out)),
            Value::Object(o) => o.values().for_each(|x| texts(x, out)),
            _ => {}
        }
    }

    #[test]
    fn the_summary_lists_blind_spots_totals_and_at_most_five_distinct_keys() {
        let report = sample();
        let s = summarize(&report, None, Some("s3://bucket/org/reports/x.json"));
        assert!(
            !s.complete && !s.blind_spots.is_empty(),
            "the sample has a failed account"
        );
        assert_eq!(s.by_severity.len(), 4);
        assert_eq!(
            s.by_severity.iter().map(|c| c.count).sum::<u64>(),
            report.summary.findings
        );
        assert!(s.most_urgent.len() <= MOST_URGENT);
        let keys: std::collections::BTreeSet<_> = s
            .most_urgent
            .iter()
            .map(|k| (&k.account, &k.user_name, &k.access_key_id))
            .collect();
        assert_eq!(keys.len(), s.most_urgent.len(), "one line per key");
        assert!(s
            .most_urgent
            .windows(2)
            .all(|w| w[0].severity >= w[1].severity));
        assert_eq!(s.report.as_deref(), Some("s3://bucket/org/reports/x.json"));
    }

    #[test]
    fn no_value_from_iam_can_make_a_link_or_a_mention_in_slack_or_teams() {
        let mut report = sample();
        report.findings[0].user_name =
            "<!channel> <https://evil.example|click> [x](https://evil.example)".into();
        report.findings[0].severity = Severity::Critical;
        let s = summarize(&report, None, None);
        let mut slack_texts = Vec::new();
        texts(&slack(&s), &mut slack_texts);
        for t in &slack_texts {
            assert!(
                !t.contains('<') && !t.contains('>'),
                "unescaped in Slack: {t}"
            );
        }
        assert!(slack_texts.iter().any(|t| t.contains("&lt;!channel&gt;")));
        let card = teams(&s);
        let body = card["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap();
        for element in body {
            assert_eq!(element["type"], "RichTextBlock");
            for inline in element["inlines"].as_array().unwrap() {
                assert_eq!(inline["type"], "TextRun", "TextRuns render no Markdown");
            }
        }
        let mut teams_texts = Vec::new();
        texts(&card, &mut teams_texts);
        assert!(teams_texts
            .iter()
            .all(|t| !t.contains('\n') && !t.contains('\r')));
    }

    #[test]
    fn many_long_blind_spots_stay_within_slack_limits_and_say_how_many_more() {
        let mut s = summarize(&sample(), None, None);
        s.blind_spots = (0..40)
            .map(|i| SummaryBlindSpot {
                account: format!("account-{i} (1111222233{i:02})"),
                code: "AccessDenied".into(),
                message: "x".repeat(5_000),
            })
            .collect();
        let body = slack(&s);
        let blind = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(blind.chars().count() <= 3_000, "{}", blind.chars().count());
        assert!(blind.contains("… and 30 more accounts"), "{blind}");
        let card = teams(&s);
        let lines = card["attachments"][0]["content"]["body"]
            .as_array()
            .unwrap();
        assert!(lines.iter().any(|l| l["inlines"][0]["text"]
            .as_str()
            .unwrap()
            .contains("30 more accounts")));
        assert!(card.to_string().len() < 28_000, "Teams' card size limit");
    }

    /// Issue 22 item 17: escaping (`&` is five characters in Slack) could
    /// push a section past Slack's 3,000 characters, and cutting the text
    /// lost the "… and N more" line. Sections are built against a budget in
    /// which that line always fits and counts what was left out.
    #[test]
    fn escaped_names_never_push_a_section_past_slack_limits_or_lose_the_count() {
        let mut s = summarize(&sample(), None, None);
        s.blind_spots = (0..MAX_BLIND_SPOTS + 3)
            .map(|i| SummaryBlindSpot {
                account: format!("{} ({i})", "&".repeat(60)),
                code: "<AccessDenied>".into(),
                message: "&".repeat(MAX_MESSAGE_CHARS * 2),
            })
            .collect();
        let body = slack(&s);
        let blind = body["blocks"][1]["text"]["text"].as_str().unwrap();
        assert!(blind.chars().count() <= 3_000, "{}", blind.chars().count());
        let shown = blind.lines().filter(|l| l.starts_with('•')).count();
        let last = blind.lines().last().unwrap();
        assert_eq!(
            last,
            more_line(MAX_BLIND_SPOTS + 3 - shown),
            "the count of what was left out is the last line"
        );
        for b in body["blocks"].as_array().unwrap() {
            if let Some(text) = b["text"]["text"].as_str() {
                assert!(text.chars().count() <= 3_000);
            }
        }
    }

    #[test]
    fn each_format_has_its_payload() {
        let s = summarize(&sample(), None, None);
        assert!(payload(&s, ChatFormat::Slack)["blocks"].is_array());
        assert_eq!(
            payload(&s, ChatFormat::Teams)["attachments"][0]["content"]["type"],
            "AdaptiveCard"
        );
        assert_eq!(payload(&s, ChatFormat::Json)["schema"], "keywarden.chat/v1");
        for f in ["slack", "TEAMS", " json "] {
            assert!(ChatFormat::parse(f).is_some(), "{f}");
        }
        assert!(ChatFormat::parse("discord").is_none());
    }
}
