//! Email templates: handlebars, an HTML and a plain-text part plus a subject
//! for each message kind, embedded at build time and overridable file by
//! file. Strict mode, and a render of a built-in sample report at load time,
//! turn a typo in a template into an error at start-up instead of an empty
//! cell in someone's inbox. HTML templates escape every value; subjects are
//! folded to one line.

use std::collections::BTreeMap;

use handlebars::Handlebars;
use serde::Serialize;

use super::enforce::action_for;

use super::ledger::{reconcile, record_notice, Cadence, Changes, Ledger, Notice, Stage};
use super::notify::{
    digest_view, history_view, owner_view, plan_people, DeliveryFailure, DigestExtras, DigestView,
    Memory, NotifyPolicy, OwnerView,
};
use super::record::Observed;
use super::record::{Action, ActionRecord, Outcome};
use super::report::{Finding, Report};

/// Template files, by name: what `templates_dir` may override.
pub const FILES: &[(&str, &str)] = &[
    (
        "owner.subject.hbs",
        include_str!("../../templates/owner.subject.hbs"),
    ),
    (
        "owner.html.hbs",
        include_str!("../../templates/owner.html.hbs"),
    ),
    (
        "owner.txt.hbs",
        include_str!("../../templates/owner.txt.hbs"),
    ),
    (
        "digest.subject.hbs",
        include_str!("../../templates/digest.subject.hbs"),
    ),
    (
        "digest.html.hbs",
        include_str!("../../templates/digest.html.hbs"),
    ),
    (
        "digest.txt.hbs",
        include_str!("../../templates/digest.txt.hbs"),
    ),
    (
        "key_card.html.hbs",
        include_str!("../../templates/key_card.html.hbs"),
    ),
];

/// A report with every section filled (and hostile values), rendered at load
/// time to prove the templates work; also the golden tests' input.
pub const SAMPLE_REPORT: &str = include_str!("../../templates/sample-report.json");

/// The default console link: the user's security credentials page (the
/// root user's own page for root keys).
pub const DEFAULT_CONSOLE_LINK: &str = "https://console.aws.amazon.com/iam/home#/{{#if is_root}}security_credentials{{else}}users/details/{{urlencode user_name}}?section=security_credentials{{/if}}";

/// Why templates could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template {name}: {message}")]
    Template { name: String, message: String },
    #[error("templates_dir has {0:?}, which is not a keywarden template (expected one of: {1})")]
    UnknownFile(String, String),
    #[error("console_link_template: {0}")]
    Link(String),
}

/// A rendered message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub html: String,
    pub text: String,
}

/// Compiled templates.
#[derive(Debug)]
pub struct Templates {
    html: Handlebars<'static>,
    text: Handlebars<'static>,
    link: Handlebars<'static>,
}

handlebars::handlebars_helper!(urlencode: |s: str| {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect::<String>()
});

// `{{plural n "finding"}}`: "1 finding", "3 findings" (English -s plurals only).
handlebars::handlebars_helper!(plural: |n: i64, word: str| {
    if n == 1 { format!("1 {word}") } else { format!("{n} {word}s") }
});

fn registry(escape: bool) -> Handlebars<'static> {
    let mut hb = Handlebars::new();
    hb.set_strict_mode(true);
    hb.register_helper("urlencode", Box::new(urlencode));
    hb.register_helper("plural", Box::new(plural));
    if !escape {
        hb.register_escape_fn(fold_controls);
    }
    hb
}

/// The text templates' "escape": no HTML escaping, but every control
/// character (CR, LF, tab, …) and U+2028/U+2029 in a value becomes a space,
/// so no tag or name can start a new line in a text part.
pub fn fold_controls(value: &str) -> String {
    value
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') {
                ' '
            } else {
                c
            }
        })
        .collect()
}

/// What a console link template can use.
#[derive(Debug, Serialize)]
struct LinkContext<'a> {
    account_id: &'a str,
    account_name: &'a str,
    user_name: &'a str,
    access_key_id: &'a str,
    is_root: bool,
    /// The default link, for templates that wrap it (IAM Identity Center).
    console_url: String,
}

/// Folds a rendered subject to one clean line: no header injection.
fn one_line(s: &str) -> String {
    let folded: String = s
        .split(|c: char| c.is_control() || c.is_whitespace())
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    folded.chars().take(250).collect()
}

impl Templates {
    /// Compiles the embedded templates with `overrides` (file name → source)
    /// in their place, and renders the sample report once.
    pub fn load(
        overrides: &BTreeMap<String, String>,
        console_link_template: Option<&str>,
    ) -> Result<Self, TemplateError> {
        let known = || FILES.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ");
        if let Some(unknown) = overrides
            .keys()
            .find(|k| !FILES.iter().any(|(n, _)| n == k))
        {
            return Err(TemplateError::UnknownFile(unknown.clone(), known()));
        }
        let mut html = registry(true);
        let mut text = registry(false);
        for (file, default) in FILES {
            let source = overrides.get(*file).map(String::as_str).unwrap_or(default);
            let name = file.trim_end_matches(".hbs");
            let fail = |e: handlebars::TemplateError| TemplateError::Template {
                name: (*file).to_owned(),
                message: e.to_string(),
            };
            if name.ends_with(".html") {
                if name == "key_card.html" {
                    html.register_partial("key_card", source).map_err(fail)?;
                } else {
                    html.register_template_string(name, source).map_err(fail)?;
                }
            } else {
                text.register_template_string(name, source).map_err(fail)?;
            }
        }
        let mut link = registry(false);
        link.register_template_string("default", DEFAULT_CONSOLE_LINK)
            .map_err(|e| TemplateError::Link(e.to_string()))?;
        link.register_template_string(
            "link",
            console_link_template.unwrap_or(DEFAULT_CONSOLE_LINK),
        )
        .map_err(|e| TemplateError::Link(e.to_string()))?;
        let templates = Self { html, text, link };
        templates.self_test()?;
        Ok(templates)
    }

    fn self_test(&self) -> Result<(), TemplateError> {
        let report: Report =
            serde_json::from_str(SAMPLE_REPORT).map_err(|e| TemplateError::Template {
                name: "sample-report.json".into(),
                message: e.to_string(),
            })?;
        for f in &report.findings {
            let url = self.try_link(f).map_err(TemplateError::Link)?;
            if !url.starts_with("https://") {
                return Err(TemplateError::Link(format!(
                    "must produce an https:// URL, produced {url:?}"
                )));
            }
        }
        let policy = NotifyPolicy::default();
        let link = |f: &Finding| self.link(f);
        for person in plan_people(&report, &policy, None) {
            self.owner(&owner_view(&report, &person, "security@example.com", &link))?;
        }
        let extras = DigestExtras {
            findings_csv: Default::default(),
            people_notified: 1,
            delivery_failures: vec![DeliveryFailure {
                recipients: "someone@example.com".into(),
                error: "MessageRejected".into(),
            }],
            export_failures: vec![DeliveryFailure {
                recipients: "Security Hub of dev (222222222222) in us-east-1".into(),
                error: "Security Hub is not enabled in account 222222222222 in us-east-1".into(),
            }],
            history: None,
            enforce_mode: "off",
            delivery: Default::default(),
        };
        self.digest(&digest_view(&report, &policy, extras, &link))?;
        // Again with a ledger, so every lifecycle section is rendered once.
        let (later, ledger, changes) = sample_memory(&report);
        let memory = Memory {
            ledger: &ledger,
            cadence: Cadence::default(),
            enforce: crate::core::enforce::EnforcePolicy {
                mode: crate::core::enforce::Mode::Apply,
                ..Default::default()
            },
        };
        for person in plan_people(&later, &policy, Some(memory)) {
            self.owner(&owner_view(&later, &person, "security@example.com", &link))?;
        }
        let extras = DigestExtras {
            history: Some(history_view(&later, &ledger, &changes, &policy, &link)),
            enforce_mode: "apply",
            ..DigestExtras::default()
        };
        self.digest(&digest_view(&later, &policy, extras, &link))?;
        Ok(())
    }

    fn try_link(&self, f: &Finding) -> Result<String, String> {
        let mut ctx = LinkContext {
            account_id: f.account_id.as_str(),
            account_name: &f.account_name,
            user_name: &f.user_name,
            access_key_id: f.access_key_id.as_ref().map(|k| k.as_str()).unwrap_or(""),
            is_root: f.access_key_id.is_none()
                && f.user_name == super::credential_report::ROOT_USER,
            console_url: String::new(),
        };
        ctx.console_url = self
            .link
            .render("default", &ctx)
            .map_err(|e| e.to_string())?;
        self.link
            .render("link", &ctx)
            .map(|s| s.trim().to_owned())
            .map_err(|e| e.to_string())
    }

    /// The console link for a finding (validated at load time; falls back
    /// to the IAM console's home page should a value still break it).
    pub fn link(&self, f: &Finding) -> String {
        self.try_link(f)
            .ok()
            .filter(|u| u.starts_with("https://"))
            .unwrap_or_else(|| "https://console.aws.amazon.com/iam/home".to_owned())
    }

    fn render<T: Serialize>(&self, kind: &str, view: &T) -> Result<Rendered, TemplateError> {
        let fail = |part: &str, e: handlebars::RenderError| TemplateError::Template {
            name: format!("{kind}.{part}.hbs"),
            message: e.to_string(),
        };
        Ok(Rendered {
            subject: one_line(
                &self
                    .text
                    .render(&format!("{kind}.subject"), view)
                    .map_err(|e| fail("subject", e))?,
            ),
            html: self
                .html
                .render(&format!("{kind}.html"), view)
                .map_err(|e| fail("html", e))?,
            text: self
                .text
                .render(&format!("{kind}.txt"), view)
                .map_err(|e| fail("txt", e))?,
        })
    }

    pub fn owner(&self, view: &OwnerView) -> Result<Rendered, TemplateError> {
        self.render("owner", view)
    }

    pub fn digest(&self, view: &DigestView) -> Result<Rendered, TemplateError> {
        self.render("digest", view)
    }
}

/// A two-run history of a report: every finding first seen (and its owner
/// told) 20 days before it, the last finding gone since (its key deleted). Returns the later run
/// reconciled, the ledger and what changed: the template self-test and the
/// golden files render every lifecycle section from it.
pub fn sample_memory(report: &Report) -> (Report, Ledger, Changes) {
    let mut ledger = Ledger::new("o-sample");
    let mut earlier = report.clone();
    earlier.evaluated_at = report.evaluated_at - jiff::SignedDuration::from_hours(24 * 20);
    reconcile(
        &mut ledger,
        &mut earlier,
        &Observed::new(),
        &Cadence::default(),
    );
    // Every key owner was told that day.
    for f in &earlier.findings {
        if let (Some(id), Some(owner)) = (&f.finding_id, &f.owner.email) {
            let notice = Notice {
                at: earlier.evaluated_at,
                stage: Stage::First,
                recipients: vec![owner.to_string()],
                message_id: None,
                key_owner: None,
            };
            record_notice(&mut ledger, &[(id.clone(), Stage::First)], &notice);
        }
    }
    let mut later = report.clone();
    later.findings.pop();
    let changes = reconcile(
        &mut ledger,
        &mut later,
        &Observed::new(),
        &Cadence::default(),
    );
    // Enforcement acted on the first deactivatable key and failed on the next.
    let mut acted = later
        .findings
        .iter()
        .filter(|f| f.access_key_id.is_some() && action_for(f.check) == Some(Action::Deactivate));
    for outcome in [Outcome::Done, Outcome::Failed] {
        if let Some(f) = acted.next() {
            later.actions.push(ActionRecord {
                finding_id: f.finding_id.clone().unwrap_or_default(),
                action: Action::Deactivate,
                outcome,
                account_id: f.account_id.clone(),
                user_name: f.user_name.clone(),
                access_key_id: f.access_key_id.clone().expect("filtered"),
                error: (outcome == Outcome::Failed).then(|| {
                    "AccessDenied: not authorized to perform iam:UpdateAccessKey".to_owned()
                }),
            });
        }
    }
    later.actions_waiting = 2;
    (later, ledger, changes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_templates_load_and_render_the_sample() {
        Templates::load(&BTreeMap::new(), None).unwrap();
    }

    #[test]
    fn a_typo_in_a_template_is_an_error_at_load_time() {
        let overrides = BTreeMap::from([(
            "owner.html.hbs".to_owned(),
            "<p>{{recipent}}</p>".to_owned(),
        )]);
        let err = Templates::load(&overrides, None).unwrap_err().to_string();
        assert!(
            err.contains("owner.html.hbs") && err.contains("recipent"),
            "{err}"
        );
        let unknown = BTreeMap::from([("owner.htm.hbs".to_owned(), "x".to_owned())]);
        assert!(matches!(
            Templates::load(&unknown, None),
            Err(TemplateError::UnknownFile(..))
        ));
        let broken = BTreeMap::from([("digest.txt.hbs".to_owned(), "{{#each}}".to_owned())]);
        assert!(Templates::load(&broken, None).is_err());
    }

    #[test]
    fn console_links_must_be_https_and_encode_the_user_name() {
        assert!(Templates::load(&BTreeMap::new(), Some("javascript:alert(1)")).is_err());
        assert!(Templates::load(&BTreeMap::new(), Some("https://x/{{nope}}")).is_err());
        let sso = "https://acme.awsapps.com/start/#/console?account_id={{account_id}}&role_name=SecurityAudit&destination={{urlencode console_url}}";
        let t = Templates::load(&BTreeMap::new(), Some(sso)).unwrap();
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let f = report
            .findings
            .iter()
            .find(|f| f.access_key_id.is_some())
            .unwrap();
        let link = t.link(f);
        assert!(
            link.starts_with(&format!(
                "https://acme.awsapps.com/start/#/console?account_id={}",
                f.account_id
            )),
            "{link}"
        );
        assert!(
            link.contains("destination=https%3A%2F%2Fconsole.aws.amazon.com%2Fiam"),
            "{link}"
        );
    }

    #[test]
    fn values_in_text_parts_cannot_start_a_new_line() {
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let t = Templates::load(&BTreeMap::new(), None).unwrap();
        let link = |f: &Finding| t.link(f);
        let policy = NotifyPolicy::default();
        let text = t
            .digest(&digest_view(
                &report,
                &policy,
                DigestExtras::default(),
                &link,
            ))
            .unwrap()
            .text;
        // The sample's exemption reason, error message and owner tag carry CR/LF + a header.
        for injected in ["Bcc: attacker@example.com", "X-Injected: yes"] {
            assert!(
                text.contains(injected),
                "the hostile value is there: {injected}"
            );
            assert!(
                !text.lines().any(|l| l.starts_with(injected)),
                "{injected:?} starts a line:\n{text}"
            );
        }
        assert_eq!(fold_controls("a\r\nb\tc\u{2028}d"), "a  b c d");
    }

    #[test]
    fn subjects_are_one_line() {
        assert_eq!(
            one_line("a\r\nBcc: x@example.com\t b"),
            "a Bcc: x@example.com b"
        );
    }

    #[test]
    fn the_sample_reports_risk_order_is_the_one_keywarden_computes() {
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let mut ranked = report.findings.clone();
        crate::core::report::rank_findings(&mut ranked, report.evaluated_at);
        if std::env::var_os("PRINT_SAMPLE_RISK").is_some() {
            let risks: Vec<_> = ranked.iter().map(|f| f.risk.clone()).collect();
            println!("RISKS={}", serde_json::to_string(&risks).unwrap());
        }
        for (stored, computed) in report.findings.iter().zip(&ranked) {
            assert_eq!(stored.risk, computed.risk, "{}", stored.user_name);
        }
    }

    #[test]
    fn the_sample_reports_replace_with_is_the_one_keywarden_computes() {
        let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
        let computed: Vec<_> = report
            .findings
            .iter()
            .map(|f| {
                crate::core::report::replace_with(
                    f,
                    false,
                    report.policy.unused_days,
                    report.evaluated_at,
                )
            })
            .collect();
        if std::env::var_os("PRINT_SAMPLE_REPLACE").is_some() {
            println!("REPLACE={}", serde_json::to_string(&computed).unwrap());
        }
        for (stored, computed) in report.findings.iter().zip(&computed) {
            assert_eq!(
                stored.replace_with.as_ref(),
                Some(computed),
                "{}",
                stored.user_name
            );
        }
    }
}
