//! `keywarden doctor`: the verdict on each part of a deployment, and how the
//! whole reads (one line per check, grouped, ✓ / ! / ✗ with a fix) and
//! exits. Pure: `crate::doctor` gathers the evidence with read-only calls
//! and hands it to the functions here.

use std::collections::BTreeMap;

use serde::Serialize;

use super::model::AccountId;

/// How a check came out, worst last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    /// A risk, or something that cannot be told from here.
    Warning,
    /// A run would fail, or mail nobody.
    Blocker,
}

impl Status {
    pub fn mark(self) -> &'static str {
        match self {
            Status::Ok => "✓",
            Status::Warning => "!",
            Status::Blocker => "✗",
        }
    }
}

/// The groups, in the order they print.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Group {
    Caller,
    MemberRole,
    Mail,
    State,
    OptIns,
}

impl Group {
    pub fn title(self) -> &'static str {
        match self {
            Group::Caller => "Caller and Organization",
            Group::MemberRole => "Member role coverage",
            Group::Mail => "Mail",
            Group::State => "State",
            Group::OptIns => "Opt-ins",
        }
    }
}

/// One check: what was looked at, what was found, and what to do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub group: Group,
    /// Short name (`sender`, `scan role`, …).
    pub check: String,
    pub status: Status,
    /// One line: what was found.
    pub detail: String,
    /// Further lines (accounts per reason, recipients that would bounce).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub more: Vec<String>,
    /// One line: how to fix it (absent when nothing is to be done).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
}

impl Check {
    pub fn new(group: Group, check: &str, status: Status, detail: impl Into<String>) -> Self {
        Self {
            group,
            check: check.to_owned(),
            status,
            detail: detail.into(),
            more: Vec::new(),
            fix: None,
        }
    }

    pub fn ok(group: Group, check: &str, detail: impl Into<String>) -> Self {
        Self::new(group, check, Status::Ok, detail)
    }

    pub fn warning(group: Group, check: &str, detail: impl Into<String>, fix: &str) -> Self {
        Self::new(group, check, Status::Warning, detail).with_fix(fix)
    }

    pub fn blocker(group: Group, check: &str, detail: impl Into<String>, fix: &str) -> Self {
        Self::new(group, check, Status::Blocker, detail).with_fix(fix)
    }

    pub fn with_fix(mut self, fix: &str) -> Self {
        self.fix = (!fix.is_empty()).then(|| fix.to_owned());
        self
    }

    pub fn with_more(mut self, more: Vec<String>) -> Self {
        self.more = more;
        self
    }
}

/// Every check of one `keywarden doctor`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Checkup {
    pub checks: Vec<Check>,
}

/// How many ids a grouped line names before "and N more".
pub const IDS_SHOWN: usize = 5;

impl Checkup {
    pub fn push(&mut self, check: Check) {
        self.checks.push(check);
    }

    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// 0 when nothing blocks, 3 with warnings only, 2 with any blocker.
    pub fn exit_code(&self) -> u8 {
        match self.checks.iter().map(|c| c.status).max() {
            Some(Status::Blocker) => 2,
            Some(Status::Warning) => 3,
            _ => 0,
        }
    }

    /// The one JSON document of `--format json` (and the Lambda's answer):
    /// the checks, the counts and the exit status they imply.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "checks": self.checks,
            "blockers": self.count(Status::Blocker),
            "warnings": self.count(Status::Warning),
            "exit_code": self.exit_code(),
        })
    }

    /// The screen: a heading per group, one line per check, its further
    /// lines and its fix indented under it, and a closing line.
    pub fn render_text(&self) -> String {
        let width = self
            .checks
            .iter()
            .map(|c| c.check.chars().count())
            .max()
            .unwrap_or(0);
        let mut groups: BTreeMap<Group, Vec<&Check>> = BTreeMap::new();
        for c in &self.checks {
            groups.entry(c.group).or_default().push(c);
        }
        let mut out = String::new();
        let pad = " ".repeat(width + 6);
        for (group, checks) in groups {
            out.push_str(group.title());
            out.push('\n');
            for c in checks {
                out.push_str(&format!(
                    "  {} {:<width$}  {}\n",
                    c.status.mark(),
                    c.check,
                    one_line(&c.detail)
                ));
                for m in &c.more {
                    out.push_str(&format!("{pad}{}\n", one_line(m)));
                }
                if let Some(fix) = &c.fix {
                    out.push_str(&format!("{pad}fix: {}\n", one_line(fix)));
                }
            }
            out.push('\n');
        }
        let (b, w) = (self.count(Status::Blocker), self.count(Status::Warning));
        let plural =
            |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
        out.push_str(&match (b, w) {
            (0, 0) => "Ready: nothing blocks a run (exit 0).\n".to_owned(),
            (0, w) => format!(
                "Nothing blocks a run; {} (exit 3).\n",
                plural(w, "warning", "warnings")
            ),
            (b, w) => format!(
                "Not ready: {}, {} (exit 2).\n",
                plural(b, "blocker", "blockers"),
                plural(w, "warning", "warnings")
            ),
        });
        out
    }
}

/// IAM- and AWS-sourced text is data: one line, control characters shown as spaces.
fn one_line(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// `ids` (sorted), at most [`IDS_SHOWN`] of them, then "and N more".
pub fn some_ids(ids: &[AccountId]) -> String {
    let mut shown: Vec<&str> = ids.iter().take(IDS_SHOWN).map(AccountId::as_str).collect();
    shown.sort_unstable();
    let mut s = shown.join(", ");
    if ids.len() > IDS_SHOWN {
        s.push_str(&format!(" and {} more", ids.len() - IDS_SHOWN));
    }
    s
}

/// Why a role could not be assumed, in words; AWS answers AccessDenied
/// alike for a missing role and for a trust policy or an SCP that refuses.
pub fn assume_reason(code: &str, message: &str) -> String {
    match code {
        "AccessDenied" | "AccessDeniedException" => {
            "cannot assume: the StackSet is not there, or a trust/SCP refuses it".to_owned()
        }
        "Timeout" => "no answer within account_timeout_secs".to_owned(),
        "InvalidClientTokenId" | "ExpiredToken" => {
            "the role's credentials were refused (GetCallerIdentity)".to_owned()
        }
        _ => format!("{code}: {message}"),
    }
}

/// Failed accounts grouped by `reason(code, message)`, the largest group
/// first: "N accounts (reason): ids".
fn grouped(
    failures: &[(AccountId, String, String)],
    reason: impl Fn(&str, &str) -> String,
) -> Vec<String> {
    let mut by_reason: BTreeMap<String, Vec<AccountId>> = BTreeMap::new();
    for (id, code, message) in failures {
        by_reason
            .entry(reason(code, message))
            .or_default()
            .push(id.clone());
    }
    let mut groups: Vec<(String, Vec<AccountId>)> = by_reason.into_iter().collect();
    groups.sort_by(|a, b| b.1.len().cmp(&a.1.len()).then_with(|| a.0.cmp(&b.0)));
    groups
        .into_iter()
        .map(|(reason, mut ids)| {
            ids.sort();
            let n = ids.len();
            format!(
                "{n} {} ({reason}): {}",
                if n == 1 { "account" } else { "accounts" },
                some_ids(&ids)
            )
        })
        .collect()
}

/// The verdict on one role across the member accounts in scope: ✓ when
/// every account let it be assumed, else ✗ with the accounts grouped by
/// what AWS said.
pub fn role_coverage(
    group: Group,
    check: &str,
    role: &str,
    tried: usize,
    failures: &[(AccountId, String, String)],
    fix: &str,
) -> Check {
    if failures.is_empty() {
        let detail = match tried {
            0 => format!("no member account in scope to assume {role} in"),
            1 => format!("{role} assumed in the 1 member account in scope"),
            n => format!("{role} assumed in all {n} member accounts in scope"),
        };
        return Check::ok(group, check, detail);
    }
    let more = grouped(failures, assume_reason);
    Check::blocker(
        group,
        check,
        format!(
            "cannot assume {role} in {} of {tried} member accounts in scope",
            failures.len()
        ),
        fix,
    )
    .with_more(more)
}

/// The verdict on where flagged keys are used (`cloudtrail:LookupEvents`,
/// asked in `tried` accounts): ✓ when each answered; ! otherwise, the
/// accounts grouped by what AWS said (the scan works; their footprints are
/// `unknown`, and "replace it with" falls back to what else is known).
pub fn usage_access(group: Group, tried: usize, failures: &[(AccountId, String, String)]) -> Check {
    let check = "key usage";
    if failures.is_empty() {
        let detail = match tried {
            0 => "no account to ask for CloudTrail's event history".to_owned(),
            1 => "CloudTrail's event history is readable (LookupEvents) in the 1 account asked"
                .to_owned(),
            n => format!(
                "CloudTrail's event history is readable (LookupEvents) in all {n} accounts asked"
            ),
        };
        return Check::ok(group, check, detail);
    }
    let more = grouped(failures, |code, message| match code {
        "AccessDenied" | "AccessDeniedException" => {
            "no cloudtrail:LookupEvents: a member role older than this version, or an SCP"
                .to_owned()
        }
        "Timeout" => "no answer within account_timeout_secs".to_owned(),
        _ => format!("{code}: {}", one_line(message)),
    });
    Check::warning(
        group,
        check,
        format!(
            "CloudTrail's event history cannot be read in {} of {tried} accounts asked: their flagged keys' usage will be unknown",
            failures.len()
        ),
        "update the member-role StackSet (it grants cloudtrail:LookupEvents, read-only), or allow it in the SCP",
    )
    .with_more(more)
}

/// The verdict on the SES sandbox: out of it ✓; in it, ✗ when a recipient
/// keywarden knows would bounce (it is not a verified identity, nor is its
/// domain), else ! (the next new owner would).
pub fn sandbox(production_access: bool, unverified: &[String], checked: usize) -> Check {
    let g = Group::Mail;
    let fix = "request production access (SES console: Account dashboard, or aws sesv2 put-account-details --production-access-enabled ...), or verify each recipient";
    if production_access {
        return Check::ok(g, "sandbox", "out of the SES sandbox (production access)");
    }
    if unverified.is_empty() {
        return Check::warning(
            g,
            "sandbox",
            format!("SES is in its sandbox: the {checked} known recipients are verified, but mail to any other owner bounces"),
            fix,
        );
    }
    let mut shown: Vec<String> = unverified.iter().take(IDS_SHOWN).cloned().collect();
    if unverified.len() > IDS_SHOWN {
        shown.push(format!("and {} more", unverified.len() - IDS_SHOWN));
    }
    Check::blocker(
        g,
        "sandbox",
        format!(
            "SES is in its sandbox: {} of {checked} known recipients are not verified and would bounce",
            unverified.len()
        ),
        fix,
    )
    .with_more(vec![format!("would bounce: {}", shown.join(", "))])
}

/// SES's quota, as GetAccount gives it.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Quota {
    pub max_24_hour_send: f64,
    pub sent_last_24_hours: f64,
    pub max_send_rate: f64,
}

/// The verdict on the quota against the messages a run needs (`needed`:
/// from the ledger's last run, `None` before the first): ✗ when the daily
/// quota cannot hold them, ! when today's remainder cannot, else ✓ with
/// how long sending takes at the rate keywarden will pace to.
pub fn quota(q: Quota, needed: Option<usize>, configured_rate: f64) -> Check {
    let g = Group::Mail;
    let rate = configured_rate.min(q.max_send_rate).max(f64::MIN_POSITIVE);
    let base = format!(
        "{} messages a day ({} sent in the last 24 h), {}/s",
        q.max_24_hour_send, q.sent_last_24_hours, q.max_send_rate
    );
    let Some(needed) = needed else {
        return Check::ok(
            g,
            "quota",
            format!("{base}; how many messages a run needs is known after the first run"),
        );
    };
    let fix = "ask AWS for a higher SES sending quota (Service Quotas: Amazon SES, Sending quota)";
    if needed as f64 > q.max_24_hour_send {
        return Check::blocker(
            g,
            "quota",
            format!("{base}: the last run needed {needed} messages, more than a day's quota"),
            fix,
        );
    }
    if needed as f64 > q.max_24_hour_send - q.sent_last_24_hours {
        return Check::warning(
            g,
            "quota",
            format!(
                "{base}: the last run needed {needed} messages, more than is left of today's quota"
            ),
            fix,
        );
    }
    let secs = (needed as f64 / rate).ceil() as u64;
    Check::ok(
        g,
        "quota",
        format!(
            "{base}: the last run needed {needed} messages, about {} at {}/s",
            duration(secs),
            trim(rate)
        ),
    )
}

fn trim(x: f64) -> String {
    let s = format!("{x:.2}");
    s.trim_end_matches('0').trim_end_matches('.').to_owned()
}

fn duration(secs: u64) -> String {
    if secs < 120 {
        format!("{secs} s")
    } else {
        format!("{} min", secs.div_ceil(60))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> AccountId {
        AccountId::parse(&format!("{n:012}")).unwrap()
    }

    #[test]
    fn the_exit_code_is_the_worst_status() {
        let mut c = Checkup::default();
        assert_eq!(c.exit_code(), 0);
        c.push(Check::ok(Group::Caller, "caller", "me"));
        assert_eq!(c.exit_code(), 0);
        c.push(Check::warning(
            Group::State,
            "versioning",
            "off",
            "turn it on",
        ));
        assert_eq!(c.exit_code(), 3);
        c.push(Check::blocker(
            Group::Mail,
            "sender",
            "unverified",
            "verify",
        ));
        assert_eq!(c.exit_code(), 2);
        assert_eq!(c.to_json()["exit_code"], 2);
        assert_eq!(c.to_json()["blockers"], 1);
        assert_eq!(c.to_json()["warnings"], 1);
    }

    #[test]
    fn the_screen_groups_checks_in_order_with_their_fixes() {
        let mut c = Checkup::default();
        c.push(Check::blocker(
            Group::Mail,
            "sender",
            "not verified",
            "verify it",
        ));
        c.push(Check::ok(Group::Caller, "caller", "arn:aws:iam::1:user/x"));
        let text = c.render_text();
        let caller = text.find("Caller and Organization").unwrap();
        let mail = text.find("Mail").unwrap();
        assert!(caller < mail, "{text}");
        assert!(text.contains("  ✗ sender  not verified\n"), "{text}");
        assert!(text.contains("fix: verify it"), "{text}");
        assert!(text.ends_with("Not ready: 1 blocker, 0 warnings (exit 2).\n"));
    }

    #[test]
    fn control_characters_never_reach_the_screen() {
        let mut c = Checkup::default();
        c.push(Check::ok(Group::Caller, "caller", "a\nb\x1b[31m"));
        assert!(!c.render_text().contains('\x1b'));
        assert!(c.render_text().contains("a b [31m"));
    }

    #[test]
    fn role_failures_are_grouped_by_what_aws_said() {
        let failures = vec![
            (id(3), "AccessDenied".to_owned(), "no".to_owned()),
            (id(1), "AccessDenied".to_owned(), "no".to_owned()),
            (
                id(2),
                "RegionDisabledException".to_owned(),
                "STS is off".to_owned(),
            ),
        ];
        let c = role_coverage(Group::MemberRole, "scan role", "R", 10, &failures, "deploy");
        assert_eq!(c.status, Status::Blocker);
        assert_eq!(
            c.detail,
            "cannot assume R in 3 of 10 member accounts in scope"
        );
        assert_eq!(
            c.more,
            vec![
                "2 accounts (cannot assume: the StackSet is not there, or a trust/SCP refuses it): 000000000001, 000000000003".to_owned(),
                "1 account (RegionDisabledException: STS is off): 000000000002".to_owned(),
            ]
        );
        let ok = role_coverage(Group::MemberRole, "scan role", "R", 10, &[], "deploy");
        assert_eq!(ok.status, Status::Ok);
        assert!(ok.detail.contains("all 10"));
    }

    #[test]
    fn unreadable_key_usage_is_a_warning_grouped_by_reason() {
        let failures = vec![
            (id(2), "AccessDeniedException".to_owned(), "no".to_owned()),
            (id(1), "AccessDeniedException".to_owned(), "no".to_owned()),
            (id(3), "Timeout".to_owned(), String::new()),
        ];
        let c = usage_access(Group::MemberRole, 7, &failures);
        assert_eq!(c.status, Status::Warning);
        assert!(
            c.detail.contains("in 3 of 7 accounts asked"),
            "{}",
            c.detail
        );
        assert_eq!(
            c.more,
            vec![
                "2 accounts (no cloudtrail:LookupEvents: a member role older than this version, or an SCP): 000000000001, 000000000002".to_owned(),
                "1 account (no answer within account_timeout_secs): 000000000003".to_owned(),
            ]
        );
        assert_eq!(usage_access(Group::MemberRole, 7, &[]).status, Status::Ok);
        assert!(usage_access(Group::MemberRole, 1, &[])
            .detail
            .contains("the 1 account"));
    }

    #[test]
    fn long_id_lists_are_cut_with_a_count() {
        let ids: Vec<AccountId> = (1..=8).map(id).collect();
        assert_eq!(
            some_ids(&ids),
            "000000000001, 000000000002, 000000000003, 000000000004, 000000000005 and 3 more"
        );
    }

    #[test]
    fn the_sandbox_blocks_only_when_a_known_recipient_would_bounce() {
        assert_eq!(sandbox(true, &[], 3).status, Status::Ok);
        assert_eq!(sandbox(false, &[], 3).status, Status::Warning);
        let c = sandbox(false, &["a@x.com".to_owned()], 3);
        assert_eq!(c.status, Status::Blocker);
        assert_eq!(c.more, vec!["would bounce: a@x.com".to_owned()]);
        assert!(c.detail.contains("1 of 3"));
    }

    #[test]
    fn the_quota_is_held_against_the_last_run() {
        let q = Quota {
            max_24_hour_send: 200.0,
            sent_last_24_hours: 150.0,
            max_send_rate: 1.0,
        };
        assert_eq!(quota(q, None, 1.0).status, Status::Ok);
        assert_eq!(quota(q, Some(201), 1.0).status, Status::Blocker);
        assert_eq!(quota(q, Some(51), 1.0).status, Status::Warning);
        let ok = quota(q, Some(50), 14.0);
        assert_eq!(ok.status, Status::Ok);
        // Paced to the slower of the setting and the account's rate.
        assert!(ok.detail.ends_with("about 50 s at 1/s"), "{}", ok.detail);
        assert!(quota(q, Some(50), 0.25)
            .detail
            .ends_with("about 4 min at 0.25/s"));
    }
}
