//! Golden files for every rendered template (HTML and text, subjects too),
//! from the fixed sample report `templates/sample-report.json`, which holds
//! hostile values (`<script>`, quotes, CR/LF) in IAM- and
//! Organizations-sourced fields. Regenerate after an intended change with
//! `UPDATE_GOLDEN=1 cargo test --test it golden` and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use keywarden::core::ledger::Cadence;
use keywarden::core::notify::{
    digest_view, history_view, owner_view, plan_people, DeliveryFailure, DigestExtras, FindingsCsv,
    Memory, NotifyPolicy,
};
use keywarden::core::report::{Finding, Report};
use keywarden::core::templates::{sample_memory, Templates, SAMPLE_REPORT};

fn check(name: &str, actual: &str) -> Option<String> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, actual).unwrap();
        return None;
    }
    match std::fs::read_to_string(&path) {
        Ok(expected) if expected == actual => None,
        Ok(_) => Some(format!(
            "{name} differs from its golden file (UPDATE_GOLDEN=1 to accept)"
        )),
        Err(_) => Some(format!(
            "{name} has no golden file (UPDATE_GOLDEN=1 to create)"
        )),
    }
}

#[test]
fn rendered_templates_match_their_golden_files() {
    let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
    let templates = Templates::load(&BTreeMap::new(), None).unwrap();
    let link = |f: &Finding| templates.link(f);
    let policy = NotifyPolicy::default();
    let people = plan_people(&report, &policy, None);
    let mut problems = Vec::new();
    let mut subjects = String::new();
    for person in &people {
        let r = templates
            .owner(&owner_view(&report, person, "security@example.com", &link))
            .unwrap();
        let stem = format!("owner-{}", person.recipient);
        problems.extend(check(&format!("{stem}.html"), &r.html));
        problems.extend(check(&format!("{stem}.txt"), &r.text));
        subjects.push_str(&format!("{}: {}\n", person.recipient, r.subject));
    }
    let extras = DigestExtras {
        findings_csv: Default::default(),
        people_notified: people.len() - 1,
        delivery_failures: vec![DeliveryFailure {
            recipients: "ops@example.com".into(),
            error: "MessageRejected: Email address is not verified.".into(),
        }],
        export_failures: vec![DeliveryFailure {
            recipients: "Security Hub of sandbox-with-a-long-account-name (444455556666) in eu-west-1".into(),
            error: "Security Hub is not enabled in account 444455556666 in eu-west-1: enable it there, or leave the account's findings to the digest".into(),
        }],
        history: None,
        enforce_mode: "off",
        delivery: Default::default(),
    };
    let r = templates
        .digest(&digest_view(&report, &policy, extras, &link))
        .unwrap();
    problems.extend(check("digest.html", &r.html));
    problems.extend(check("digest.txt", &r.text));
    subjects.push_str(&format!("digest: {}\n", r.subject));
    problems.extend(check("subjects.txt", &subjects));

    // Twenty days later with a ledger: reminders, escalations, a resolved
    // finding, the trend and the per-account table.
    let (later, ledger, changes) = sample_memory(&report);
    let memory = Memory {
        ledger: &ledger,
        cadence: Cadence::default(),
        enforce: keywarden::core::enforce::EnforcePolicy {
            mode: keywarden::core::enforce::Mode::Apply,
            ..Default::default()
        },
    };
    for person in plan_people(&later, &policy, Some(memory)) {
        let r = templates
            .owner(&owner_view(&later, &person, "security@example.com", &link))
            .unwrap();
        let stem = format!("ledger/owner-{}", person.recipient);
        problems.extend(check(&format!("{stem}.html"), &r.html));
        problems.extend(check(&format!("{stem}.txt"), &r.text));
    }
    let extras = DigestExtras {
        // A findings CSV too large to attach: where the archive keeps it.
        findings_csv: FindingsCsv::TooLarge {
            bytes: 14_383_119,
            archive: Some("s3://keywarden-state/keywarden/o-abc123def4/reports/year=2026/month=04/day=21/2026-04-21T060000Z.csv".into()),
        },
        people_notified: 3,
        history: Some(history_view(&later, &ledger, &changes, &policy, &link)),
        enforce_mode: "apply",
        ..DigestExtras::default()
    };
    let r = templates
        .digest(&digest_view(&later, &policy, extras, &link))
        .unwrap();
    problems.extend(check("ledger/digest.html", &r.html));
    problems.extend(check("ledger/digest.txt", &r.text));
    assert!(problems.is_empty(), "{problems:#?}");
}

/// What the chat webhook receives, in each format, for the later (ledger)
/// run of the sample (README shows them).
#[test]
fn chat_payloads_match_their_golden_files() {
    use keywarden::core::summary::{payload, summarize, ChatFormat};
    let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
    let (later, _, changes) = sample_memory(&report);
    let summary = summarize(
        &later,
        Some(&changes),
        Some("s3://keywarden-state/keywarden/o-sample/reports/year=2026/month=11/day=29/000000Z.json"),
    );
    let mut problems = Vec::new();
    for (name, format) in [
        ("slack", ChatFormat::Slack),
        ("teams", ChatFormat::Teams),
        ("json", ChatFormat::Json),
    ] {
        let text = serde_json::to_string_pretty(&payload(&summary, format)).unwrap() + "\n";
        problems.extend(check(&format!("chat-{name}.json"), &text));
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// What Security Hub receives for the later (ledger) run of the sample: one
/// open finding of each kind and a resolved one, ARCHIVED (README shows it).
#[test]
fn security_hub_findings_match_their_golden_file() {
    use keywarden::core::asff::{findings, ComplianceStatus, RecordState, Target};
    let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
    let (later, _, _) = sample_memory(&report);
    let target = Target {
        partition: "aws".to_owned(),
        region: "eu-west-1".to_owned(),
    };
    let by_account = findings(&later, &target, "0.0.0-golden");
    let all: Vec<_> = by_account.values().flatten().collect();
    assert_eq!(all.len(), later.findings.len() + later.resolved.len());
    assert!(
        !later.resolved.is_empty(),
        "the sample has a resolved finding"
    );
    for (account, list) in &by_account {
        for f in list {
            assert_eq!(
                f.aws_account_id,
                account.as_str(),
                "imported from its own account"
            );
            assert!(f
                .product_arn
                .ends_with(&format!(":{account}:product/{account}/default")));
            let archived = f.record_state == RecordState::Archived;
            assert_eq!(archived, f.compliance.status == ComplianceStatus::Passed);
            assert!(f.title.chars().count() <= 256 && f.description.chars().count() <= 1024);
            assert!(f.remediation.recommendation.text.chars().count() <= 512);
        }
    }
    let json = serde_json::to_string_pretty(&all).unwrap() + "\n";
    let problems: Vec<String> = check("securityhub.json", &json).into_iter().collect();
    assert!(problems.is_empty(), "{problems:#?}");
}

#[test]
fn hostile_sample_values_are_escaped_in_every_html_part() {
    let report: Report = serde_json::from_str(SAMPLE_REPORT).unwrap();
    let templates = Templates::load(&BTreeMap::new(), None).unwrap();
    let link = |f: &Finding| templates.link(f);
    let policy = NotifyPolicy::default();
    let mut html = Vec::new();
    for person in plan_people(&report, &policy, None) {
        html.push(
            templates
                .owner(&owner_view(&report, &person, "security@example.com", &link))
                .unwrap()
                .html,
        );
    }
    html.push(
        templates
            .digest(&digest_view(
                &report,
                &policy,
                DigestExtras::default(),
                &link,
            ))
            .unwrap()
            .html,
    );
    let all = html.join("\n");
    assert!(
        all.contains("&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;"),
        "the hostile account name is there, escaped"
    );
    for raw in [
        "<script>",
        "<img src=x",
        "onerror=alert",
        "<b>not authorized</b>",
        "href=\"javascript:",
    ] {
        assert!(!all.contains(raw), "{raw:?} unescaped");
    }
}
