//! `keywarden notify` end to end: the real binary against moto server (SES v2
//! with IAM policy enforcement on); what moto received is read back from
//! `/moto-api/data.json`.

use crate::mail;

use std::collections::{BTreeMap, BTreeSet};

use crate::support::{run, Moto, Seeded, NOW};
use mail::{sent, Mail};
use serde_json::{json, Value};

fn org_spec() -> Value {
    serde_json::from_str(include_str!("../fixtures/org.json")).expect("fixture is JSON")
}

/// An Organization of the management account alone, with these users.
fn management_only(users: Value) -> Value {
    json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "mgmt", "email": "root@example.com", "management": true, "users": users}
        ]
    })
}

fn notify(
    moto: &Moto,
    seeded: &Seeded,
    extra: &[&str],
    env: &[(&str, &str)],
) -> (i32, Value, String) {
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--format", "json", "--now", NOW])
        .args(extra)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env(
            "KEYWARDEN_SECURITY_RECIPIENTS",
            "security@example.com,ciso@example.com",
        )
        .env("KEYWARDEN_MAX_SEND_RATE", "100");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    let report = serde_json::from_str(&stdout).unwrap_or(Value::Null);
    (code, report, stderr)
}

#[test]
fn one_message_per_owner_with_their_keys_and_one_digest_naming_the_failed_account() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (code, report, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 3, "the sandbox account failed: incomplete\n{stderr}");

    let mails = sent(&moto);
    let by_to: BTreeMap<String, &Mail> = mails.iter().map(|m| (m.to.join(","), m)).collect();
    assert_eq!(
        by_to.len(),
        mails.len(),
        "one message per recipient: {:?}",
        mails.iter().map(|m| &m.to).collect::<Vec<_>>()
    );
    let expected: BTreeSet<&str> = [
        "alice@example.com",
        "dev@example.com",
        "ops@example.com",
        "prod-team@example.com",
        "sec-mgmt@example.com",
        "staging@example.com",
        "security@example.com,ciso@example.com",
    ]
    .into();
    assert_eq!(
        by_to.keys().map(String::as_str).collect::<BTreeSet<_>>(),
        expected
    );

    // Every owner's message names exactly the keys they must act on (own or as account owner).
    let key = |a: &str, u: &str| seeded.key(a, u, 0);
    let owns: &[(&str, Vec<String>)] = &[
        (
            "alice@example.com",
            vec![key("management", "alice@example.com")],
        ),
        ("dev@example.com", vec![key("prod", "ci-deploy")]),
        ("ops@example.com", vec![key("prod", "old-exempt")]),
        (
            "prod-team@example.com",
            vec![
                key("prod", "legacy-batch"),
                key("prod", "retired"),
                key("prod", "ci-deploy"),
                key("prod", "old-exempt"),
            ],
        ),
        (
            "sec-mgmt@example.com",
            vec![key("management", "alice@example.com")],
        ),
        ("staging@example.com", vec![key("staging", "bob")]),
    ];
    let all_keys: BTreeSet<String> = owns.iter().flat_map(|(_, k)| k.clone()).collect();
    for (to, keys) in owns {
        let m = by_to[*to];
        for k in keys {
            assert!(
                m.html.contains(k.as_str()) && m.text.contains(k.as_str()),
                "{to} should see {k}"
            );
        }
        for other in all_keys.iter().filter(|k| !keys.contains(k)) {
            assert!(
                !m.html.contains(other.as_str()),
                "{to} must not see {other}"
            );
        }
        assert!(m.subject.starts_with("Action required: "), "{}", m.subject);
        assert!(m.raw_headers.contains("Auto-Submitted: auto-generated"));
    }
    assert!(
        by_to["sec-mgmt@example.com"]
            .text
            .contains("root access key"),
        "the root key goes to the management account's owner"
    );
    assert!(
        by_to["prod-team@example.com"]
            .html
            .contains("Accounts you own")
            && by_to["prod-team@example.com"].html.contains("Your keys")
    );
    assert!(
        by_to["dev@example.com"]
            .subject
            .contains("1 AWS access key overdue for rotation"),
        "{}",
        by_to["dev@example.com"].subject
    );

    let digest = by_to["security@example.com,ciso@example.com"];
    let sandbox = seeded.account("sandbox");
    assert!(digest.subject.contains("INCOMPLETE"), "{}", digest.subject);
    assert!(
        digest.html.contains("Blind spots")
            && digest.html.contains(&sandbox)
            && digest.html.contains("AccessDenied")
    );
    assert!(
        digest.html.contains("Exemptions in force")
            && digest.html.contains("vendor contract renewal")
    );
    assert!(
        digest
            .text
            .contains("user-tag:email: Bob <bob@example.com>"),
        "invalid owner tag listed in the text part"
    );
    assert!(
        digest.html.contains("Bob &lt;bob@example.com&gt;"),
        "and escaped in the HTML part"
    );
    let (name, csv) = &digest.attachments[0];
    assert_eq!(name, "keywarden-findings.csv");
    assert_eq!(csv.lines().count(), 10, "header + 9 findings");

    let notes = report["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 7);
    assert!(
        notes
            .iter()
            .all(|n| n["outcome"] == "sent" && n["message_id"].is_string()),
        "{notes:?}"
    );
    assert_eq!(
        notes.last().unwrap()["kind"],
        "digest",
        "the digest goes last"
    );
}

#[test]
fn an_unverified_sender_fails_cleanly_before_any_message() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (code, _, stderr) = notify(
        &moto,
        &seeded,
        &[],
        &[("KEYWARDEN_SENDER", "keywarden@unverified.example")],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("keywarden@unverified.example")
            && stderr.contains("not a verified SES identity"),
        "{stderr}"
    );
    assert!(sent(&moto).is_empty());
}

#[test]
fn notify_requires_sender_and_security_recipients() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (code, _, stderr) = notify(
        &moto,
        &seeded,
        &[],
        &[("KEYWARDEN_SECURITY_RECIPIENTS", "")],
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("`security_recipients`"), "{stderr}");
    let (code, _, stderr) = notify(&moto, &seeded, &[], &[("KEYWARDEN_SENDER", "")]);
    assert_eq!(code, 2);
    assert!(stderr.contains("`sender`"), "{stderr}");
    assert!(sent_count(&moto) == 0, "nothing was sent");
}

fn sent_count(moto: &Moto) -> usize {
    moto.data()["ses"]["RawMessage"]
        .as_array()
        .map_or(0, Vec::len)
}

#[test]
fn hostile_names_and_tags_are_escaped_and_never_reach_a_header() {
    let moto = Moto::start();
    let spec = json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "mgmt", "email": "root@example.com", "management": true},
            {"name": "Acme <script>alert(1)</script> \"prod\"", "email": "prod@example.com",
             "tags": {"owner": "team@example.com\r\nBcc: evil@example.com"},
             "users": [
                {"name": "ci+deploy=1,x.y@z_w-v", "tags": {"owner": "Dev <dev@example.com>, evil@example.com"},
                 "keys": [{"age_days": 120, "last_used_days": 1}]},
                {"name": "vendor", "tags": {"keywarden:exempt": "2026-12-05 <img src=x onerror=alert(1)> \"quoted\"\r\nX-Evil: 1"},
                 "keys": [{"age_days": 200, "last_used_days": 1}]}
             ]},
            {"name": format!("Équipe données 日本語 {}", "x".repeat(300)), "email": "data@example.com",
             "tags": {"owner": "ü".repeat(400)},
             "users": [{"name": "etl", "tags": {"keywarden:exempt": "2026-12-24 Überprüfung läuft — 審査中"},
                        "keys": [{"age_days": 95, "last_used_days": 1}]},
                       {"name": "svc", "keys": [{"age_days": 91, "last_used_days": 2}]}]}
        ]
    });
    let seeded = moto.seed(&spec);
    let (code, report, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 0, "{stderr}");

    let mails = sent(&moto);
    let recipients: BTreeSet<String> = mails.iter().flat_map(|m| m.to.clone()).collect();
    assert!(
        !recipients.iter().any(|r| r.contains("evil")),
        "{recipients:?}"
    );
    // Neither tag holds a valid address: the key falls back to the account email.
    assert!(recipients.contains("prod@example.com"), "{recipients:?}");
    for m in &mails {
        for raw in [
            "<script>alert(1)</script>",
            "<img src=x",
            "onerror=alert(1)>",
        ] {
            assert!(
                !m.html.contains(raw),
                "unescaped {raw:?} in the HTML to {:?}",
                m.to
            );
        }
        assert!(
            !m.raw_headers.to_ascii_lowercase().contains("bcc:"),
            "{}",
            m.raw_headers
        );
        assert!(!m.raw_headers.contains("X-Evil"), "{}", m.raw_headers);
    }
    let digest = mails
        .iter()
        .find(|m| m.to.contains(&"security@example.com".to_owned()))
        .unwrap();
    assert!(
        digest
            .html
            .contains("Acme &lt;script&gt;alert(1)&lt;/script&gt;"),
        "account name escaped"
    );
    assert!(
        digest
            .html
            .contains("&lt;img src&#x3D;x onerror&#x3D;alert(1)&gt; &quot;quoted&quot;"),
        "exemption reason escaped"
    );
    assert!(digest
        .html
        .contains("Owner addresses skipped: not valid, or outside the allowed domains"));
    // Non-ASCII and very long values arrive intact, in every part.
    assert!(
        digest.html.contains("Équipe données 日本語 xxx")
            && digest.text.contains("Überprüfung läuft — 審査中")
    );
    let data = mails
        .iter()
        .find(|m| m.to == ["data@example.com"])
        .expect("the long-named account's owner");
    assert!(data
        .html
        .contains(&format!("Équipe données 日本語 {}", "x".repeat(300))));
    assert!(
        data.subject
            .starts_with("Action required: 1 AWS access key overdue for rotation"),
        "{}",
        data.subject
    );
    assert_eq!(report["notifications"].as_array().unwrap().len(), 3);
}

#[test]
fn dry_run_and_outbox_send_nothing_and_record_every_message() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let (_, report, _) = notify(&moto, &seeded, &["--dry-run"], &[]);
    let notes = report["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 7);
    assert!(notes.iter().all(|n| n["outcome"] == "dry_run"));
    assert!(sent(&moto).is_empty());

    let dir = tempfile::tempdir().unwrap();
    let outbox = dir.path().join("outbox");
    let (_, report, stderr) = notify(&moto, &seeded, &["--outbox", outbox.to_str().unwrap()], &[]);
    assert!(sent(&moto).is_empty());
    let files: BTreeSet<String> = std::fs::read_dir(&outbox)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".eml")).count(),
        7,
        "{files:?}"
    );
    assert_eq!(
        files.iter().filter(|f| f.ends_with(".html")).count(),
        7,
        "{files:?}"
    );
    assert!(
        files.contains("007-digest.eml") && files.contains("002-owner-dev@example.com.html"),
        "{files:?}"
    );
    assert!(
        stderr.contains("007-digest.html"),
        "says where to open the digest: {stderr}"
    );
    let notes = report["notifications"].as_array().unwrap();
    assert!(notes
        .iter()
        .all(|n| n["outcome"] == "outbox" && n["file"].is_string()));
}

#[test]
fn a_rejected_recipient_is_recorded_the_others_are_delivered_and_throttling_is_retried() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    moto.hook(
        "/_keywarden/ses-fault",
        &json!({"reject": ["ops@example.com"], "throttle": 3}),
    );
    let (code, report, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 3, "{stderr}");

    let mails = sent(&moto);
    let to: BTreeSet<String> = mails.iter().map(|m| m.to.join(",")).collect();
    assert_eq!(mails.len(), 6, "all but the rejected one: {to:?}");
    assert!(!to.contains("ops@example.com"));

    let notes = report["notifications"].as_array().unwrap();
    let ops = notes
        .iter()
        .find(|n| n["recipients"][0] == "ops@example.com")
        .unwrap();
    assert_eq!(ops["outcome"], "failed");
    assert!(
        ops["error"]
            .as_str()
            .unwrap()
            .starts_with("MessageRejected"),
        "{ops}"
    );
    assert_eq!(notes.iter().filter(|n| n["outcome"] == "sent").count(), 6);

    let digest = mails
        .iter()
        .find(|m| m.to.contains(&"security@example.com".to_owned()))
        .unwrap();
    assert!(
        digest.html.contains("Undelivered messages (1)")
            && digest.html.contains("ops@example.com: MessageRejected")
    );
}

#[test]
fn a_template_error_stops_notify_at_start_up_naming_the_file() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("owner.html.hbs"),
        "<p>{{#each your_keys}}{{acount_name}}{{/each}}</p>",
    )
    .unwrap();
    let (code, _, stderr) = notify(
        &moto,
        &seeded,
        &[],
        &[("KEYWARDEN_TEMPLATES_DIR", dir.path().to_str().unwrap())],
    );
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("owner.html.hbs") && stderr.contains("acount_name"),
        "{stderr}"
    );
    assert!(sent(&moto).is_empty());

    // A correct override is used.
    std::fs::write(
        dir.path().join("owner.subject.hbs"),
        "Keys to fix: {{total}}",
    )
    .unwrap();
    std::fs::remove_file(dir.path().join("owner.html.hbs")).unwrap();
    let (_, report, stderr) = notify(
        &moto,
        &seeded,
        &["--dry-run"],
        &[("KEYWARDEN_TEMPLATES_DIR", dir.path().to_str().unwrap())],
    );
    let subjects: Vec<&str> = report["notifications"]
        .as_array()
        .unwrap_or_else(|| panic!("{stderr}"))
        .iter()
        .map(|n| n["subject"].as_str().unwrap())
        .collect();
    assert!(subjects.contains(&"Keys to fix: 2"), "{subjects:?}");
}

#[test]
fn owners_outside_the_allowed_domains_get_no_mail_and_the_digest_names_them() {
    let moto = Moto::start();
    let seeded = moto.seed(&management_only(json!([
        {"name": "ci", "tags": {"owner": "someone@gmail.com"}, "keys": [{"age_days": 120, "last_used_days": 1}]},
        {"name": "boss@evil.example", "keys": [{"age_days": 120, "last_used_days": 1}]}
    ])));
    let (code, report, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    let to: Vec<String> = sent(&moto).iter().map(|m| m.to.join(",")).collect();
    assert!(
        to.iter()
            .all(|t| !t.contains("gmail.com") && !t.contains("evil.example")),
        "{to:?}"
    );
    for f in report["findings"].as_array().unwrap() {
        assert_eq!(f["owner"]["rule"], "account-email", "the next rule: {f:#}");
        assert!(f["owner"]["skipped"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("allowed_recipient_domains"));
    }
    let digest = sent(&moto)
        .into_iter()
        .find(|m| m.to.contains(&"security@example.com".to_owned()))
        .unwrap();
    assert!(digest.text.contains("someone@gmail.com") && digest.text.contains("boss@evil.example"));
}

#[test]
fn a_rejected_digest_makes_an_otherwise_complete_run_incomplete() {
    let moto = Moto::start();
    let spec = json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "mgmt", "email": "root@example.com", "management": true,
             "users": [{"name": "ci", "tags": {"owner": "dev@example.com"}, "keys": [{"age_days": 120, "last_used_days": 1}]}]}
        ]
    });
    let seeded = moto.seed(&spec);
    let (code, _, _) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 0, "complete when everything is delivered");
    moto.hook(
        "/_keywarden/ses-fault",
        &json!({"reject": ["security@example.com"]}),
    );
    let (code, report, stderr) = notify(&moto, &seeded, &["--no-state"], &[]);
    assert_eq!(
        code, 3,
        "the security team was not told: incomplete\n{stderr}"
    );
    let digest = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["kind"] == "digest")
        .unwrap();
    assert_eq!(digest["outcome"], "failed", "{digest}");
}

/// Issue 22 item 13: `x%evil.example@example.com` passed the allow-list of
/// domains (example.com) while some relays deliver it to evil.example.
#[test]
fn percent_hack_and_bang_path_owner_addresses_are_refused() {
    let moto = Moto::start();
    let seeded = moto.seed(&management_only(json!([
        {"name": "ci", "tags": {"owner": "x%evil.example@example.com"}, "keys": [{"age_days": 120, "last_used_days": 1}]},
        {"name": "etl", "tags": {"owner": "evil.example!x@example.com"}, "keys": [{"age_days": 120, "last_used_days": 1}]}
    ])));
    let (code, report, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    let to: Vec<String> = sent(&moto).iter().map(|m| m.to.join(",")).collect();
    assert!(to.iter().all(|t| !t.contains("evil")), "{to:?}");
    for f in report["findings"].as_array().unwrap() {
        assert_eq!(f["owner"]["rule"], "account-email", "the next rule: {f:#}");
        assert!(
            f["owner"]["skipped"][0]["reason"]
                .as_str()
                .unwrap()
                .contains("% or !"),
            "{f:#}"
        );
    }
}

/// Issue 22 item 11: an account named `=HYPERLINK(...)` and a user named
/// `=1+2` became live formulas in the digest's CSV attachment and in
/// `--format csv`. Such cells start with `'` now.
#[test]
fn spreadsheet_formulas_from_iam_and_organizations_are_neutralised_in_csv() {
    let moto = Moto::start();
    let spec = json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "mgmt", "email": "root@example.com", "management": true},
            {"name": "=HYPERLINK(\"http://evil.example\",\"click\")", "email": "prod@example.com",
             "users": [
                {"name": "=1+2", "keys": [{"age_days": 120, "last_used_days": 1}]},
                {"name": "@SUM", "keys": [{"age_days": 120, "last_used_days": 1}]},
                {"name": "-cmd", "keys": [{"age_days": 120, "last_used_days": 1}]},
                {"name": "+x", "keys": [{"age_days": 120, "last_used_days": 1}]}
             ]}
        ]
    });
    let seeded = moto.seed(&spec);
    let (code, _, stderr) = notify(&moto, &seeded, &[], &[]);
    assert_eq!(code, 0, "{stderr}");
    let digest = sent(&moto)
        .into_iter()
        .find(|m| m.to.contains(&"security@example.com".to_owned()))
        .unwrap();
    let (_, attachment) = digest
        .attachments
        .iter()
        .find(|(name, _)| name.ends_with(".csv"))
        .expect("the digest's CSV");
    let (ak, sk) = seeded.scanner();
    let (_, csv_out, _) = run(moto
        .keywarden((&ak, &sk))
        .args(["scan", "--format", "csv", "--now", NOW]));
    for csv in [attachment.as_str(), csv_out.as_str()] {
        let mut rows = csv::Reader::from_reader(csv.as_bytes());
        let headers = rows.headers().unwrap().clone();
        let col = |name: &str| headers.iter().position(|h| h == name).unwrap();
        let mut users = BTreeSet::new();
        for row in rows.records() {
            let row = row.unwrap();
            for cell in row.iter() {
                assert!(
                    !cell.starts_with(['=', '+', '-', '@']),
                    "live formula {cell:?}: {row:?}"
                );
            }
            assert!(row[col("account_name")].starts_with("'=HYPERLINK("));
            users.insert(row[col("user_name")].to_owned());
        }
        assert_eq!(
            users,
            BTreeSet::from(["'=1+2", "'@SUM", "'-cmd", "'+x"].map(str::to_owned)),
            "{csv}"
        );
    }
}

/// Issue 22 item 14: `notify --outbox` saved its notices in the default
/// ledger real runs share, so a real send the same day mailed no owner and
/// outbox-only notices counted towards enforcement. Without an explicit
/// state location, an outbox run keeps no ledger.
#[test]
fn an_outbox_run_does_not_change_what_a_real_run_sends() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let home = tempfile::tempdir().unwrap();
    let xdg = [("XDG_STATE_HOME", home.path().to_str().unwrap())];
    let outbox = home.path().join("outbox");
    let (_, report, stderr) = notify(
        &moto,
        &seeded,
        &["--outbox", outbox.to_str().unwrap()],
        &xdg,
    );
    assert!(
        report["notifications"]
            .as_array()
            .is_some_and(|n| n.len() > 1),
        "{stderr}"
    );
    assert!(
        !home.path().join("keywarden").exists(),
        "no ledger in the default state directory"
    );
    let (_, report, stderr) = notify(&moto, &seeded, &[], &xdg);
    let owners = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "owner" && n["outcome"] == "sent")
        .count();
    assert_eq!(
        owners, 6,
        "every owner is told by the first real run: {stderr}"
    );
    assert!(
        home.path().join("keywarden").exists(),
        "the real run keeps its ledger"
    );
}
