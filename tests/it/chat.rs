//! The chat summary end to end: the real binary (`notify`, SES in moto) posts
//! to a local HTTP server that records every request and answers as told:
//! fine, slowly, rate-limited with `Retry-After`, or failing. The webhook URL
//! is a secret: it must appear in no output, log line or report.

use crate::mail;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::{run, Moto, Seeded, NOW};
use mail::sent;
use serde_json::Value;

/// How the server answers one request.
#[derive(Clone, Copy)]
pub(crate) struct Answer {
    pub(crate) status: u16,
    pub(crate) retry_after: Option<u64>,
    pub(crate) delay: Duration,
}

const OK: Answer = Answer {
    status: 200,
    retry_after: None,
    delay: Duration::ZERO,
};

/// One request the server received.
#[derive(Debug, Clone)]
pub(crate) struct Posted {
    pub(crate) at: Instant,
    path: String,
    content_type: String,
    body: Value,
}

/// A webhook endpoint that answers from a script (the last answer repeats).
/// A failure's body echoes the request's path, as Express and many proxies
/// do ("Cannot POST /services/…"): the secret is in the path.
pub(crate) struct Endpoint {
    pub(crate) url: String,
    posted: Arc<Mutex<Vec<Posted>>>,
}

impl Endpoint {
    pub(crate) fn start(script: Vec<Answer>) -> Self {
        let server = tiny_http::Server::http("127.0.0.1:0").unwrap();
        let port = server.server_addr().to_ip().unwrap().port();
        let posted = Arc::new(Mutex::new(Vec::new()));
        let log = posted.clone();
        std::thread::spawn(move || {
            for (n, mut req) in server.incoming_requests().enumerate() {
                let mut body = String::new();
                req.as_reader().read_to_string(&mut body).unwrap();
                log.lock().unwrap().push(Posted {
                    at: Instant::now(),
                    path: req.url().to_owned(),
                    content_type: req
                        .headers()
                        .iter()
                        .find(|h| h.field.equiv("Content-Type"))
                        .map(|h| h.value.to_string())
                        .unwrap_or_default(),
                    body: serde_json::from_str(&body).unwrap_or(Value::Null),
                });
                let a = script[n.min(script.len() - 1)];
                std::thread::sleep(a.delay);
                let text = if a.status < 300 {
                    format!("answer {}", a.status)
                } else {
                    format!("answer {}: Cannot POST {}", a.status, req.url())
                };
                let mut resp = tiny_http::Response::from_string(text).with_status_code(a.status);
                if let Some(s) = a.retry_after {
                    resp.add_header(
                        tiny_http::Header::from_bytes("Retry-After", s.to_string()).unwrap(),
                    );
                }
                let _ = req.respond(resp);
            }
        });
        Self {
            // The path holds the "secret", as Slack's and Teams' URLs do.
            url: format!("http://127.0.0.1:{port}/services/T0/B0/SECRETTOKEN42"),
            posted,
        }
    }

    pub(crate) fn posted(&self) -> Vec<Posted> {
        self.posted.lock().unwrap().clone()
    }
}

fn org() -> (Moto, Seeded) {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    (moto, seeded)
}

/// Runs `notify` with the webhook; returns exit code, report, stdout + stderr.
fn notify(moto: &Moto, seeded: &Seeded, url: &str, format: &str) -> (i32, Value, String) {
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--format", "json", "--now", NOW])
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_MAX_SEND_RATE", "100")
        .env("KEYWARDEN_WEBHOOK_URL", url)
        .env("KEYWARDEN_LOG", "debug");
    if !format.is_empty() {
        cmd.env("KEYWARDEN_WEBHOOK_FORMAT", format);
    }
    let (code, stdout, stderr) = run(&mut cmd);
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stderr:\n{stderr}"));
    (code, report, format!("{stdout}\n{stderr}"))
}

fn chat_note(report: &Value) -> Value {
    let notes: Vec<&Value> = report["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "chat")
        .collect();
    assert_eq!(notes.len(), 1, "one chat summary per run: {notes:?}");
    notes[0].clone()
}

#[test]
fn slack_gets_one_block_kit_summary_with_blind_spots_first_and_the_url_is_never_shown() {
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![OK]);
    let (code, report, output) = notify(&moto, &seeded, &hook.url, "slack");
    assert_eq!(code, 3, "sandbox cannot be scanned: the run is incomplete");
    let posted = hook.posted();
    assert_eq!(posted.len(), 1);
    assert_eq!(posted[0].path, "/services/T0/B0/SECRETTOKEN42");
    assert!(posted[0].content_type.starts_with("application/json"));
    let body = &posted[0].body;
    let blocks = body["blocks"].as_array().expect("Block Kit blocks");
    assert_eq!(blocks[0]["type"], "header");
    assert!(body["text"].as_str().unwrap().contains("INCOMPLETE"));
    let first_section = blocks[1]["text"]["text"].as_str().unwrap();
    assert!(
        first_section.contains("Blind spots") && first_section.contains("sandbox"),
        "blind spots come first: {first_section}"
    );
    let all = body.to_string();
    assert!(all.contains("critical 1"), "totals by severity: {all}");
    assert!(all.contains("Most urgent keys"), "{all}");
    let urgent_lines = blocks
        .iter()
        .filter_map(|b| b["text"]["text"].as_str())
        .find(|t| t.starts_with("*Most urgent keys:*"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(urgent_lines, 5, "the five most urgent keys");
    assert!(all.contains("CRITICAL · Root user has an active access key"));
    let note = chat_note(&report);
    assert_eq!(note["outcome"], "sent");
    assert_eq!(note["recipients"][0], "webhook (slack)");
    // The secret appears nowhere: not in the report, not in any log line (at debug).
    assert!(
        !output.contains("SECRETTOKEN42"),
        "the webhook URL leaked:\n{output}"
    );
}

#[test]
fn teams_gets_an_adaptive_card_and_the_format_is_inferred_when_not_set() {
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![OK]);
    let (_, report, _) = notify(&moto, &seeded, &hook.url, "teams");
    let card = &hook.posted()[0].body;
    assert_eq!(card["type"], "message");
    let content = &card["attachments"][0]["content"];
    assert_eq!(
        card["attachments"][0]["contentType"],
        "application/vnd.microsoft.card.adaptive"
    );
    assert_eq!(content["type"], "AdaptiveCard");
    for element in content["body"].as_array().unwrap() {
        // Plain-text runs only: no value from IAM can become Markdown or a link.
        assert_eq!(element["type"], "RichTextBlock");
        assert!(element["inlines"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["type"] == "TextRun"));
    }
    assert_eq!(chat_note(&report)["recipients"][0], "webhook (teams)");

    // No format and a loopback URL: plain JSON, the run summary as is.
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![OK]);
    let (_, report, _) = notify(&moto, &seeded, &hook.url, "");
    let summary = &hook.posted()[0].body;
    assert_eq!(summary["schema"], "keywarden.chat/v1");
    assert_eq!(summary["complete"], false);
    assert_eq!(summary["most_urgent"].as_array().unwrap().len(), 5);
    assert_eq!(chat_note(&report)["recipients"][0], "webhook (json)");
}

#[test]
fn a_rate_limited_or_slow_webhook_is_waited_for() {
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![
        Answer {
            status: 429,
            retry_after: Some(2),
            delay: Duration::ZERO,
        },
        Answer {
            status: 200,
            retry_after: None,
            delay: Duration::from_secs(3),
        },
    ]);
    let (_, report, _) = notify(&moto, &seeded, &hook.url, "json");
    let posted = hook.posted();
    assert_eq!(posted.len(), 2, "one retry after the 429");
    assert!(
        posted[1].at.duration_since(posted[0].at) >= Duration::from_secs(2),
        "Retry-After was honoured"
    );
    assert_eq!(posted[0].body, posted[1].body, "the same summary again");
    assert_eq!(
        chat_note(&report)["outcome"],
        "sent",
        "the slow answer counts"
    );
}

#[test]
fn a_failing_webhook_is_undelivered_named_in_the_digest_and_the_run_still_mails_everyone() {
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![Answer {
        status: 503,
        retry_after: None,
        delay: Duration::ZERO,
    }]);
    let (code, report, output) = notify(&moto, &seeded, &hook.url, "slack");
    assert_eq!(code, 3);
    assert_eq!(hook.posted().len(), 4, "the first try and three retries");
    let note = chat_note(&report);
    assert_eq!(note["outcome"], "failed");
    let error = note["error"].as_str().unwrap();
    assert!(
        error.contains("HTTP 503") && error.contains("4 attempts"),
        "{error}"
    );
    // Issue 22 item 12: the endpoint echoed the path ("Cannot POST
    // /services/T0/B0/SECRETTOKEN42"); no part of it may be kept.
    assert!(
        !output.contains("SECRETTOKEN42") && !output.contains("/services/T0"),
        "the webhook URL leaked:\n{output}"
    );
    assert!(error.contains("Cannot POST <redacted>"), "{error}");
    // Every owner and the digest still went out; the digest names the failure.
    let mails = sent(&moto);
    assert!(
        mails.iter().all(|m| !m.text.contains("SECRETTOKEN42")
            && !m.html.contains("SECRETTOKEN42")
            && m.attachments.iter().all(|a| !a.1.contains("SECRETTOKEN42"))),
        "the webhook URL leaked into mail"
    );
    let digest = mails
        .iter()
        .find(|m| m.to.contains(&"security@example.com".to_owned()))
        .expect("the digest");
    assert!(
        digest.text.contains("webhook (slack): HTTP 503"),
        "{}",
        digest.text
    );
    assert!(mails.len() > 1, "owners were mailed too");

    // A 4xx other than 429 is final: one attempt.
    let (moto, seeded) = org();
    let hook = Endpoint::start(vec![Answer {
        status: 404,
        retry_after: None,
        delay: Duration::ZERO,
    }]);
    let (code, report, _) = notify(&moto, &seeded, &hook.url, "slack");
    assert_eq!(code, 3);
    assert_eq!(hook.posted().len(), 1);
    assert!(chat_note(&report)["error"]
        .as_str()
        .unwrap()
        .starts_with("HTTP 404"));
}

#[test]
fn the_webhook_url_is_refused_in_a_file_and_over_plain_http_to_another_host() {
    let (moto, seeded) = org();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("keywarden.toml");
    std::fs::write(
        &config,
        "webhook_url = \"https://hooks.slack.com/services/T0/B0/SECRETTOKEN42\"\n",
    )
    .unwrap();
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--dry-run", "--config"])
        .arg(&config)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com");
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("webhook_url") && stderr.contains("KEYWARDEN_WEBHOOK_URL"),
        "{stderr}"
    );
    assert!(!format!("{stdout}{stderr}").contains("SECRETTOKEN42"));

    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--dry-run"])
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env(
            "KEYWARDEN_WEBHOOK_URL",
            "http://chat.example.com/SECRETTOKEN42",
        );
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 2);
    assert!(stderr.contains("https://"), "{stderr}");
    assert!(!format!("{stdout}{stderr}").contains("SECRETTOKEN42"));
}

/// Issue 22 item 13: a webhook URL in a plain `String` parameter (readable
/// by anyone with ssm:GetParameter, stored in clear) was accepted. It is an
/// invalid setting: the run does not start (exit 2, naming SecureString),
/// nothing is posted and nobody is mailed; a SecureString works.
#[test]
fn a_webhook_parameter_that_is_not_a_securestring_stops_the_run_at_start() {
    let hook = Endpoint::start(vec![OK]);
    let moto = Moto::start();
    let mut spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    spec["parameters"] = serde_json::json!([
        {"name": "/keywarden/plain", "type": "String", "value": hook.url},
        {"name": "/keywarden/secure", "type": "SecureString", "value": hook.url},
    ]);
    let actions: Vec<Value> = keywarden::aws::all_actions()
        .into_iter()
        .chain(keywarden::aws::ssm::SSM_ACTIONS.iter().copied())
        .map(Value::from)
        .collect();
    spec["scanner_actions"] = Value::Array(actions);
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    let notify = |parameter: &str| {
        let mut cmd = moto.keywarden((&ak, &sk));
        cmd.args(["notify", "--format", "json", "--now", NOW])
            .env("KEYWARDEN_SENDER", "keywarden@example.com")
            .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
            .env("KEYWARDEN_MAX_SEND_RATE", "100")
            .env("KEYWARDEN_WEBHOOK_URL_PARAMETER", parameter);
        run(&mut cmd)
    };
    let (code, _, stderr) = notify("/keywarden/plain");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("/keywarden/plain") && stderr.contains("not a SecureString"),
        "{stderr}"
    );
    assert!(!stderr.contains("SECRETTOKEN42"), "{stderr}");
    assert!(hook.posted().is_empty(), "nothing posted");
    assert!(sent(&moto).is_empty(), "nobody mailed");

    let (code, stdout, stderr) = notify("/keywarden/secure");
    assert!(code == 0 || code == 3, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(chat_note(&report)["outcome"], "sent");
    assert_eq!(hook.posted().len(), 1);
}
