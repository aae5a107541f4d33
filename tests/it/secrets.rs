//! No credential ever reaches the logs: a full CLI run (scan and notify) at
//! the most verbose level, every line captured, searched for the scanner's
//! secret access key and for any STS session token moto issued.

use crate::support::{run, Moto, NOW};
use serde_json::Value;

/// moto's STS session tokens all start with this.
const SESSION_TOKEN_PREFIX: &str = "FQoGZXIvYXdzEBYaD";

#[test]
fn a_full_run_at_trace_level_logs_no_secret_key_and_no_session_token() {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    for command in ["scan", "notify"] {
        let (code, stdout, stderr) = run(moto
            .keywarden((&ak, &sk))
            .args([command, "--format", "json", "--now", NOW])
            .env("KEYWARDEN_LOG", "trace")
            .env("KEYWARDEN_SENDER", "keywarden@example.com")
            .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
            .env("KEYWARDEN_MAX_SEND_RATE", "100"));
        assert_eq!(code, 3, "{command}: {stderr}");
        let all = format!("{stdout}\n{stderr}");
        assert!(
            all.lines().count() > 100 && stderr.contains("DEBUG"),
            "{command}: the run really logged verbosely"
        );
        assert!(
            stderr.contains("AssumeRole"),
            "{command}: assumed-role credentials were used"
        );
        assert!(
            !all.contains(&sk),
            "{command}: the secret access key is in the output"
        );
        assert!(
            !all.contains(SESSION_TOKEN_PREFIX),
            "{command}: a session token is in the output"
        );
    }
}

#[test]
fn per_target_trace_filters_sensitive_bodies_and_template_debug_are_capped_too() {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    let (code, stdout, stderr) = run(moto
        .keywarden((&ak, &sk))
        .args(["notify", "--dry-run", "--format", "json", "--now", NOW])
        .env(
            "KEYWARDEN_LOG",
            "aws_smithy_runtime::client::orchestrator=trace,aws_sigv4=trace,handlebars=trace,keywarden=debug",
        )
        .env("LOG_SENSITIVE_BODIES", "true")
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com"));
    assert_eq!(code, 3, "{stderr}");
    let all = format!("{stdout}\n{stderr}");
    assert!(
        stderr.contains("DEBUG"),
        "the filter was honoured where it is safe"
    );
    assert!(!all.contains(&sk), "the secret access key is in the output");
    assert!(
        !all.contains(SESSION_TOKEN_PREFIX),
        "a session token is in the output"
    );
    assert!(!stderr.contains("TRACE"), "no wire-level TRACE line");
    assert!(
        !stderr.contains("Rendering") && !stderr.contains("handlebars"),
        "no template contexts in the logs"
    );
    assert!(
        !stderr.contains("SecretAccessKey") && !stderr.contains("<SessionToken>"),
        "no response body with credentials"
    );
}
