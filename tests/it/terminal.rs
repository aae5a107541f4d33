//! What a person sees in a terminal: the real binary in a tmux pane (a real
//! TTY, so the progress bar is drawn) while it logs; the scrollback must hold
//! the log lines and no dead progress-bar frame.

use crate::support;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::support::{keywarden_bin, Moto, NOW};
use serde_json::Value;

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (Debian package tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `keywarden scan ARGS` in a tmux pane `width` columns wide; returns
/// the whole scrollback once it is done.
fn in_terminal(moto: &Moto, creds: (&str, &str), width: u16, args: &str, done: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let session = format!("kw-terminal-{}-{width}", std::process::id());
    let command = format!(
        "env -i PATH=/usr/bin:/bin HOME={home} TERM=xterm AWS_ENDPOINT_URL={ep} AWS_ACCESS_KEY_ID={ak} \
         AWS_SECRET_ACCESS_KEY={sk} AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
         AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent KEYWARDEN_LOG=info \
         {bin} scan --no-state --now {NOW} {args}; touch {done}; sleep 30",
        home = dir.path().display(),
        ep = moto.endpoint,
        ak = creds.0,
        sk = creds.1,
        bin = keywarden_bin().display(),
        done = done.display(),
    );
    let w = width.to_string();
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        &w,
        "-y",
        "50",
        &command,
    ]);
    let started = Instant::now();
    while !done.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let screen = tmux(&["capture-pane", "-p", "-S", "-3000", "-t", &session]);
    tmux(&["kill-session", "-t", &session]);
    assert!(done.exists(), "the scan did not finish:\n{screen}");
    screen
}

#[test]
fn log_lines_while_the_progress_bar_is_drawn_leave_no_dead_bar_frames() {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let done = dir.path().join("done");
    let args = format!("--format json --output {}", report.display());
    let screen = in_terminal(&moto, (&ak, &sk), 160, &args, &done);
    assert!(report.exists(), "the scan wrote no report:\n{screen}");
    assert!(
        screen.contains("INFO"),
        "the run logged while scanning:\n{screen}"
    );
    let frames: Vec<&str> = screen
        .lines()
        .filter(|l| l.contains("scanning accounts"))
        .collect();
    assert!(
        frames.is_empty(),
        "dead progress-bar frames:\n{}",
        frames.join("\n")
    );
}

#[test]
fn at_any_width_no_key_id_account_id_date_or_address_is_split() {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("../fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report.json");
    let (_, stdout, _) = support::run(
        moto.keywarden((&ak, &sk))
            .args([
                "scan",
                "--no-state",
                "--format",
                "json",
                "--now",
                NOW,
                "--output",
            ])
            .arg(&out),
    );
    assert!(stdout.is_empty());
    let report: Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    let mut words: Vec<String> = Vec::new();
    for f in report["findings"].as_array().unwrap() {
        if let Some(k) = f["access_key_id"].as_str() {
            words.push(k.to_owned());
        }
        if let Some(e) = f["owner"]["email"].as_str() {
            words.push(e.to_owned());
        }
        words.push(f["account_id"].as_str().unwrap().to_owned());
        if let Some(due) = f["due_at"].as_str() {
            words.push(due[..10].to_owned());
        }
    }
    for e in report["exempt"].as_array().unwrap() {
        if let Some(k) = e["access_key_id"].as_str() {
            words.push(k.to_owned());
        }
    }
    assert!(!words.is_empty());
    // Issue 26: between about 120 and 190 columns the table split dates,
    // account ids, key ids and addresses; at 80 the exemptions table split
    // key ids. Whatever the width: cards or a table, no word split.
    for width in [80u16, 100, 120, 160, 200] {
        let done = dir.path().join(format!("done-{width}"));
        let screen = in_terminal(&moto, (&ak, &sk), width, "--format table", &done);
        for w in &words {
            assert!(
                screen.lines().any(|l| l.contains(w.as_str())),
                "{w} is split or missing at {width} columns:\n{screen}"
            );
        }
        let widest = screen.lines().map(|l| l.chars().count()).max().unwrap_or(0);
        assert!(
            widest <= usize::from(width),
            "a line of {widest} columns at {width}:\n{screen}"
        );
    }
}
