//! What a person sees in a terminal: the real binary in a tmux pane (a real
//! TTY, so the progress bar is drawn) while it logs; the scrollback must hold
//! the log lines and no dead progress-bar frame.

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::Value;
use support::{keywarden_bin, Moto, NOW};

fn tmux(args: &[&str]) -> String {
    let out = Command::new("tmux")
        .args(args)
        .output()
        .expect("tmux is needed for this test (Debian package tmux)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn log_lines_while_the_progress_bar_is_drawn_leave_no_dead_bar_frames() {
    let moto = Moto::start();
    let spec: Value = serde_json::from_str(include_str!("fixtures/org.json")).unwrap();
    let seeded = moto.seed(&spec);
    let (ak, sk) = seeded.scanner();
    let dir = tempfile::tempdir().unwrap();
    let report = dir.path().join("report.json");
    let session = format!("kw-terminal-{}", std::process::id());
    let command = format!(
        "env -i PATH=/usr/bin:/bin HOME={home} TERM=xterm AWS_ENDPOINT_URL={ep} AWS_ACCESS_KEY_ID={ak} \
         AWS_SECRET_ACCESS_KEY={sk} AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true \
         AWS_CONFIG_FILE=/nonexistent AWS_SHARED_CREDENTIALS_FILE=/nonexistent KEYWARDEN_LOG=info \
         {bin} scan --no-state --now {NOW} --format json --output {out}; sleep 30",
        home = dir.path().display(),
        ep = moto.endpoint,
        bin = keywarden_bin().display(),
        out = report.display(),
    );
    tmux(&[
        "new-session",
        "-d",
        "-s",
        &session,
        "-x",
        "160",
        "-y",
        "50",
        &command,
    ]);
    let started = Instant::now();
    while !report.exists() && started.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    let screen = tmux(&["capture-pane", "-p", "-S", "-2000", "-t", &session]);
    tmux(&["kill-session", "-t", &session]);
    assert!(report.exists(), "the scan did not finish:\n{screen}");
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
