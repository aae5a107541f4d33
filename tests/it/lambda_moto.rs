//! The real binary as a Lambda function: a minimal Lambda Runtime API (the
//! invocation protocol the real service speaks) hands it one event, the
//! binary scans moto and mails through moto's SES, and its response is read
//! back from the Runtime API.

use crate::support;

use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::support::{Moto, Seeded};
use serde_json::{json, Value};

fn org_spec() -> Value {
    serde_json::from_str(include_str!("../fixtures/org.json")).expect("fixture is JSON")
}

/// What the function answered, and everything it logged.
struct Invocation {
    /// `Ok(response)` or `Err(error body)`.
    result: Result<Value, Value>,
    logs: String,
}

/// Serves one invocation of `event` with the deadline `deadline_in` from now.
fn invoke(
    moto: &Moto,
    seeded: &Seeded,
    event: Value,
    deadline_in: Duration,
    env: &[(&str, &str)],
) -> Invocation {
    let server = tiny_http::Server::http("127.0.0.1:0").expect("bind the Runtime API");
    let port = server.server_addr().to_ip().expect("an IP address").port();
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{port}"))
        .env("AWS_LAMBDA_FUNCTION_NAME", "keywarden")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "256")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_FORMAT", "JSON")
        .env("AWS_LAMBDA_LOG_LEVEL", "INFO")
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_MAX_SEND_RATE", "100");
    // Logs go to files: a full pipe would block the function mid-run.
    let log_dir = tempfile::tempdir().unwrap();
    let (out_path, err_path) = (log_dir.path().join("stdout"), log_dir.path().join("stderr"));
    cmd.stdout(Stdio::from(std::fs::File::create(&out_path).unwrap()))
        .stderr(Stdio::from(std::fs::File::create(&err_path).unwrap()));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child: Child = cmd.spawn().expect("start the function");
    let deadline_ms = (SystemTime::now() + deadline_in)
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis();
    let mut result = None;
    let started = std::time::Instant::now();
    while result.is_none() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the function never answered"
        );
        let Some(mut req) = server
            .recv_timeout(Duration::from_secs(1))
            .expect("Runtime API")
        else {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the function exited before answering"
            );
            continue;
        };
        let url = req.url().to_owned();
        let mut body = String::new();
        req.as_reader().read_to_string(&mut body).unwrap();
        let header =
            |k: &str, v: String| tiny_http::Header::from_bytes(k.as_bytes(), v.as_bytes()).unwrap();
        if url.ends_with("/runtime/invocation/next") {
            let resp = tiny_http::Response::from_string(event.to_string())
                .with_header(header("Lambda-Runtime-Aws-Request-Id", "req-1".into()))
                .with_header(header(
                    "Lambda-Runtime-Deadline-Ms",
                    deadline_ms.to_string(),
                ))
                .with_header(header(
                    "Lambda-Runtime-Invoked-Function-Arn",
                    "arn:aws:lambda:us-east-1:123456789012:function:keywarden".into(),
                ))
                .with_header(header("Content-Type", "application/json".into()));
            req.respond(resp).unwrap();
        } else if url.ends_with("/runtime/invocation/req-1/response") {
            result = Some(Ok(
                serde_json::from_str(&body).expect("the response is JSON")
            ));
            req.respond(tiny_http::Response::empty(202)).unwrap();
        } else if url.ends_with("/error") {
            result = Some(Err(
                serde_json::from_str(&body).unwrap_or(Value::String(body))
            ));
            req.respond(tiny_http::Response::empty(202)).unwrap();
        } else {
            req.respond(tiny_http::Response::empty(404)).unwrap();
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    Invocation {
        result: result.unwrap(),
        logs: format!(
            "{}{}",
            std::fs::read_to_string(&out_path).unwrap_or_default(),
            std::fs::read_to_string(&err_path).unwrap_or_default()
        ),
    }
}

/// The run summary: the result of a complete run, or the JSON carried by
/// the error of an incomplete one.
fn summary_of(inv: &Invocation) -> Value {
    match &inv.result {
        Ok(v) => v.clone(),
        Err(e) => {
            let message = e["errorMessage"]
                .as_str()
                .unwrap_or_else(|| panic!("{e}\n{}", inv.logs));
            let json = message
                .strip_prefix(keywarden::run::INCOMPLETE)
                .unwrap_or_else(|| panic!("not an incomplete-run error: {message}\n{}", inv.logs));
            serde_json::from_str(json).unwrap()
        }
    }
}

fn sent_to(moto: &Moto) -> Vec<String> {
    moto.data()["ses"]["RawMessage"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["destinations"][0].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn a_scheduled_invocation_scans_mails_and_returns_the_run_summary() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    // EventBridge's scheduled event: fields keywarden does not use are ignored.
    let event = json!({"version": "0", "source": "aws.events", "detail-type": "Scheduled Event", "detail": {}});
    let inv = invoke(&moto, &seeded, event, Duration::from_secs(300), &[]);
    assert!(
        inv.result.is_err(),
        "an incomplete run is an invocation error, so the alarm fires"
    );
    let summary = summary_of(&inv);

    assert_eq!(summary["schema"], "keywarden.summary/v1");
    assert_eq!(summary["summary"]["findings"], 9);
    assert_eq!(summary["incomplete"], true, "the sandbox account failed");
    let failed: Vec<&str> = summary["failed_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["account_id"].as_str().unwrap())
        .collect();
    assert_eq!(failed, [seeded.account("sandbox").as_str()]);
    let notes = summary["notifications"].as_array().unwrap();
    assert_eq!(notes.len(), 7);
    assert!(notes.iter().all(|n| n["outcome"] == "sent"));
    assert_eq!(sent_to(&moto).len(), 7);

    // Structured JSON logs, and no credential anywhere in them.
    let json_lines = inv
        .logs
        .lines()
        .filter(|l| serde_json::from_str::<Value>(l).is_ok())
        .count();
    assert!(json_lines >= 2, "JSON log lines expected:\n{}", inv.logs);
    let (_, secret) = seeded.scanner();
    assert!(
        !inv.logs.contains(&secret),
        "the secret access key leaked into the logs"
    );
}

#[test]
fn near_the_deadline_no_account_is_started_and_the_digest_still_goes_out_incomplete() {
    let moto = Moto::start();
    // Four more accounts, listed after the fixture's four.
    let mut spec = org_spec();
    for n in 1..=4 {
        spec["accounts"].as_array_mut().unwrap().push(json!({
            "name": format!("later-{n}"), "email": format!("later-{n}@example.com"),
            "ou": "Sandbox", "users": []
        }));
    }
    let seeded = moto.seed(&spec);
    // The accounts are listed in this order. With `concurrency` 1, four
    // accounts are started at once (the working slot, and three times as
    // many waiting for AWS): management, prod and staging, whose credential
    // reports are slow, and sandbox, which fails at once (its role may not
    // read IAM); later-1, slow too, takes its place, and these four hold up
    // the rest.
    for name in ["management", "prod", "staging", "later-1"] {
        moto.hook(
            "/_keywarden/report-fault",
            &json!({"account_id": seeded.account(name), "mode": "slow"}),
        );
    }
    let inv = invoke(
        &moto,
        &seeded,
        json!({"dry_run": true}),
        Duration::from_secs(7),
        &[
            ("KEYWARDEN_CONCURRENCY", "1"),
            ("KEYWARDEN_DEADLINE_RESERVE_SECS", "3"),
        ],
    );
    assert!(inv.result.is_err(), "incomplete: an invocation error");
    let summary = summary_of(&inv);

    assert_eq!(summary["incomplete"], true);
    let stages: Vec<(String, String)> = summary["failed_accounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["account_id"].as_str().unwrap().to_owned(),
                a["error"]["stage"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    for name in ["management", "prod", "staging", "later-1"] {
        assert!(
            stages.contains(&(seeded.account(name), "timeout".to_owned())),
            "{name}: {stages:?}"
        );
    }
    for n in 2..=4 {
        let name = format!("later-{n}");
        assert!(
            stages.contains(&(seeded.account(&name), "deadline".to_owned())),
            "{name}: {stages:?}"
        );
    }
    let notes = summary["notifications"].as_array().unwrap();
    let digest = notes.last().unwrap();
    assert_eq!(
        (digest["kind"].as_str(), digest["outcome"].as_str()),
        (Some("digest"), Some("dry_run"))
    );
    assert!(
        digest["subject"].as_str().unwrap().contains("INCOMPLETE"),
        "{digest}"
    );
    assert!(
        sent_to(&moto).is_empty(),
        "dry_run from the event: nothing sent"
    );
}

/// Issue 22 item 5: a webhook answering 429 `Retry-After: 30` was posted
/// 50.8 s after a 40 s deadline; in AWS the function would have been killed
/// before the owner mail, the digest and the ledger save. The post gives up
/// at the deadline less the reserve, and everything else still goes out.
#[test]
fn a_rate_limited_webhook_never_holds_the_run_past_its_deadline() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let hook = crate::chat::Endpoint::start(vec![crate::chat::Answer {
        status: 429,
        retry_after: Some(30),
        delay: Duration::ZERO,
    }]);
    let started = std::time::Instant::now();
    let inv = invoke(
        &moto,
        &seeded,
        json!({}),
        Duration::from_secs(40),
        &[
            ("KEYWARDEN_DEADLINE_RESERVE_SECS", "20"),
            ("KEYWARDEN_WEBHOOK_URL", hook.url.as_str()),
            ("KEYWARDEN_WEBHOOK_FORMAT", "json"),
        ],
    );
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(40),
        "answered after {took:?}\n{}",
        inv.logs
    );
    let summary = summary_of(&inv);
    let notes = summary["notifications"].as_array().unwrap();
    let chat = notes
        .iter()
        .find(|n| n["kind"] == "chat")
        .expect("the chat note");
    assert_eq!(chat["outcome"], "failed", "{chat}");
    assert!(
        chat["error"]
            .as_str()
            .unwrap()
            .contains("deadline was near"),
        "{chat}"
    );
    assert_eq!(
        hook.posted().len(),
        1,
        "no retry that could not finish in time"
    );
    let digest = notes.last().unwrap();
    assert_eq!(
        (digest["kind"].as_str(), digest["outcome"].as_str()),
        (Some("digest"), Some("sent")),
        "{digest}"
    );
    assert!(
        sent_to(&moto).len() > 1,
        "owners and the digest were mailed"
    );
}

#[test]
fn a_bad_event_is_an_invocation_error_naming_the_field() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let inv = invoke(
        &moto,
        &seeded,
        json!({"accounts": ["not-an-account"]}),
        Duration::from_secs(60),
        &[],
    );
    let err = inv.result.expect_err("an error response");
    assert!(
        err.to_string().contains("accounts") && err.to_string().contains("not-an-account"),
        "{err}"
    );
}

#[test]
fn at_trace_level_the_function_logs_no_secret_key_and_no_session_token() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let inv = invoke(
        &moto,
        &seeded,
        json!({"dry_run": true}),
        Duration::from_secs(300),
        &[("AWS_LAMBDA_LOG_LEVEL", "TRACE")],
    );
    assert_eq!(
        summary_of(&inv)["schema"],
        "keywarden.summary/v1",
        "the run finished"
    );
    assert!(
        inv.logs.lines().count() > 100,
        "the run really logged at TRACE"
    );
    let (_, secret) = seeded.scanner();
    assert!(!inv.logs.contains(&secret));
    assert!(
        !inv.logs.contains("FQoGZXIvYXdzEBYaD"),
        "a session token is in the logs"
    );
}

#[test]
fn with_a_slow_send_rate_owner_mail_stops_in_time_and_the_digest_names_who_was_not_reached() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    // Four seconds a message, six owners: they cannot all be told before the deadline.
    let inv = invoke(
        &moto,
        &seeded,
        json!({}),
        Duration::from_secs(14),
        &[
            ("KEYWARDEN_MAX_SEND_RATE", "0.25"),
            ("KEYWARDEN_DEADLINE_RESERVE_SECS", "6"),
        ],
    );
    let summary = summary_of(&inv);
    let notes = summary["notifications"].as_array().unwrap();
    let not_reached: Vec<&Value> = notes
        .iter()
        .filter(|n| {
            n["kind"] == "owner"
                && n["error"]
                    .as_str()
                    .is_some_and(|e| e.contains("deadline was near"))
        })
        .collect();
    assert!(!not_reached.is_empty(), "{notes:#?}\n{}", inv.logs);
    let digest = notes.last().unwrap();
    assert_eq!(
        (digest["kind"].as_str(), digest["outcome"].as_str()),
        (Some("digest"), Some("sent"))
    );
    let sent = sent_to(&moto);
    assert!(sent.contains(&"security@example.com".to_owned()));
    for n in &not_reached {
        assert!(!sent.contains(&n["recipients"][0].as_str().unwrap().to_owned()));
    }
    assert!(inv.result.is_err(), "incomplete: the alarm fires");
}

#[test]
fn an_event_naming_a_workflow_step_runs_that_step_and_returns_its_output() {
    let moto = Moto::start();
    let mut spec = org_spec();
    spec["buckets"] = json!(["kw-state"]);
    spec["enforce_auth"] = json!(false);
    let seeded = moto.seed(&spec);
    // The day to run as is the test-only setting: events cannot set it.
    let state = [
        ("KEYWARDEN_STATE", "s3://kw-state/flow"),
        ("KEYWARDEN_CLOCK_OVERRIDE", support::NOW),
    ];
    let plan = invoke(
        &moto,
        &seeded,
        json!({"step": "plan", "input": {"source": "keywarden.schedule"}}),
        Duration::from_secs(300),
        &state,
    );
    let out = plan.result.unwrap_or_else(|e| panic!("{e}\n{}", plan.logs));
    assert_eq!(out["accounts"], 4, "{out}");
    assert_eq!(out["manifest"]["Bucket"], "kw-state");
    assert!(
        out["manifest"]["Key"]
            .as_str()
            .unwrap()
            .starts_with("flow/o-"),
        "{out}"
    );
    assert_eq!(out["run"]["evaluated_at"], support::NOW);
    assert!(sent_to(&moto).is_empty(), "planning sends nothing");

    // A step's event that is not one: the invocation fails and says why.
    let bad = invoke(
        &moto,
        &seeded,
        json!({"step": "finish"}),
        Duration::from_secs(60),
        &state,
    );
    let e = bad.result.expect_err("a finish without its run");
    assert!(
        e["errorMessage"]
            .as_str()
            .unwrap()
            .contains("missing field `run`"),
        "{e}"
    );

    // Issue 22 item 3: whoever can invoke the function cannot pick the clock
    // the shared ledger and enforcement run by, for a run or a plan.
    for event in [
        json!({"now": "2030-01-01T00:00:00Z"}),
        json!({"step": "plan", "input": {"now": "2030-01-01T00:00:00Z"}}),
    ] {
        let refused = invoke(
            &moto,
            &seeded,
            event.clone(),
            Duration::from_secs(60),
            &state,
        );
        let e = refused.result.expect_err("an event with `now`");
        let message = e["errorMessage"].as_str().unwrap();
        assert!(
            message.contains("now") && message.contains("refused"),
            "{event}: {e}"
        );
    }
    assert!(sent_to(&moto).is_empty(), "a refused event sends nothing");
}

#[test]
fn a_doctor_event_answers_the_checks_as_json_and_sends_nothing() {
    let moto = Moto::start();
    let seeded = moto.seed(&org_spec());
    let inv = invoke(
        &moto,
        &seeded,
        json!({"doctor": true}),
        Duration::from_secs(120),
        &[],
    );
    let doc = inv
        .result
        .as_ref()
        .unwrap_or_else(|e| {
            panic!(
                "a doctor's findings are an answer, not an invocation error: {e}\n{}",
                inv.logs
            )
        })
        .clone();
    let checks = doc["checks"].as_array().expect("checks");
    let find = |name: &str| {
        checks
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} check: {doc}"))
    };
    assert_eq!(find("caller")["status"], "ok");
    assert_eq!(find("scan role")["status"], "ok", "{doc}");
    // The function without KEYWARDEN_STATE: a warning that names the fix.
    assert_eq!(find("location")["status"], "warning");
    assert!(find("location")["fix"]
        .as_str()
        .unwrap()
        .contains("KEYWARDEN_STATE"));
    let has = |status: &str| checks.iter().any(|c| c["status"] == status);
    let expected = if has("blocker") {
        2
    } else if has("warning") {
        3
    } else {
        0
    };
    assert_eq!(doc["exit_code"], expected);
    assert!(
        moto.data()["ses"]["RawMessage"]
            .as_array()
            .is_none_or(|m| m.is_empty()),
        "doctor sends nothing"
    );
}
