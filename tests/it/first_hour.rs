//! What a new user meets first, without any AWS: no credentials, an unknown
//! profile, an unreachable endpoint, a typo in a variable, an output folder
//! that does not exist. Each is one clear line and exit 2, quickly.

use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{isolate, keywarden_bin, run};

fn keywarden() -> Command {
    let mut cmd = Command::new(keywarden_bin());
    isolate(&mut cmd);
    cmd.env("HOME", "/nonexistent/keywarden-home")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .args(["scan", "--no-state", "--format", "json"]);
    cmd
}

fn one_clear_line(stderr: &str) -> &str {
    let last = stderr.lines().last().unwrap_or_default();
    for dump in [
        "Some(",
        "ConnectorError",
        "CredentialsNotLoaded",
        "ProviderChainError",
        "{ kind",
    ] {
        assert!(!stderr.contains(dump), "debug dump {dump:?} in:\n{stderr}");
    }
    last
}

#[test]
fn no_credentials_says_what_to_do() {
    let (code, _, stderr) = run(&mut keywarden());
    assert_eq!(code, 2);
    let line = one_clear_line(&stderr);
    assert!(
        line.contains("no AWS credentials found") && line.contains("AWS_PROFILE"),
        "{line}"
    );
}

#[test]
fn an_unknown_profile_is_named() {
    let (code, _, stderr) = run(keywarden().env("AWS_PROFILE", "no-such-profile"));
    assert_eq!(code, 2);
    let line = one_clear_line(&stderr);
    assert!(
        line.contains("profile `no-such-profile`") && line.contains("aws sso login"),
        "{line}"
    );
}

#[test]
fn an_unreachable_endpoint_is_named_within_seconds() {
    let started = Instant::now();
    let (code, _, stderr) = run(keywarden()
        .env("AWS_ACCESS_KEY_ID", "AKIAEXAMPLEEXAMPLE00")
        .env("AWS_SECRET_ACCESS_KEY", "x")
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9"));
    assert_eq!(code, 2);
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    let line = one_clear_line(&stderr);
    assert!(
        line.contains("cannot reach the endpoint http://127.0.0.1:9"),
        "{line}"
    );
    assert!(
        !line.contains("credentials"),
        "not a credentials problem: {line}"
    );
}

#[test]
fn a_typo_in_a_variable_names_the_setting_meant() {
    let (code, _, stderr) = run(keywarden().env("KEYWARDEN_MAX_AGE", "90"));
    assert_eq!(code, 2);
    assert!(stderr.contains("KEYWARDEN_MAX_AGE_DAYS"), "{stderr}");
}

#[test]
fn an_output_folder_that_does_not_exist_fails_before_scanning() {
    let started = Instant::now();
    let (code, _, stderr) = run(keywarden().args(["--output", "/nonexistent/dir/report.json"]));
    assert_eq!(code, 2);
    assert!(
        stderr.contains("the folder /nonexistent/dir does not exist"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("credentials"),
        "it failed before any AWS call: {stderr}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
}

/// Issue 26: `notify --help` did not say what notify cannot run without.
#[test]
fn notify_help_names_the_settings_it_needs() {
    let mut cmd = Command::new(keywarden_bin());
    isolate(&mut cmd);
    let (code, stdout, _) = run(cmd.args(["notify", "--help"]));
    assert_eq!(code, 0);
    assert!(
        stdout.contains("KEYWARDEN_SENDER") && stdout.contains("KEYWARDEN_SECURITY_RECIPIENTS"),
        "{stdout}"
    );
}

/// Issue 26 item 1: the emulated Organization can be kept running and used
/// with the printed environment; Ctrl-C stops it.
#[test]
fn the_emulator_keeps_the_organization_running_for_your_own_commands() {
    use std::io::{BufRead, BufReader};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let mut emulator = Command::new(root.join("scripts/emulator"));
    isolate(&mut emulator);
    let mut emulator = emulator
        .arg("--no-build")
        .env("KEYWARDEN_EMULATOR_DIR", dir.path())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("scripts/emulator starts");
    let mut printed = String::new();
    let mut lines = BufReader::new(emulator.stdout.take().unwrap()).lines();
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(120) {
        let Some(Ok(line)) = lines.next() else { break };
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("Ctrl-C stops the emulator") {
            break;
        }
    }
    assert!(
        printed.contains("export AWS_ENDPOINT_URL=http://127.0.0.1:"),
        "{printed}"
    );
    let env: Vec<(String, String)> = std::fs::read_to_string(dir.path().join("emulator.env"))
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let mut scan = Command::new(keywarden_bin());
    isolate(&mut scan);
    scan.args(["scan", "--format", "json"]).envs(env.clone());
    let (code, stdout, stderr) = run(&mut scan);
    assert_eq!(code, 3, "sandbox-ml fails on purpose: {stderr}");
    let report: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(
        report["findings"].as_array().is_some_and(|f| f.len() > 10),
        "{stdout}"
    );

    let _ = Command::new("kill")
        .args(["-INT", &emulator.id().to_string()])
        .status();
    let status = emulator.wait().unwrap();
    assert!(status.success(), "Ctrl-C is a clean stop: {status:?}");
    let endpoint = &env.iter().find(|(k, _)| k == "AWS_ENDPOINT_URL").unwrap().1;
    let addr = endpoint.trim_start_matches("http://");
    assert!(
        std::net::TcpStream::connect(addr).is_err(),
        "moto stopped with the emulator"
    );
}
