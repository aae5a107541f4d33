//! What the bench's tests share: the small uniform Organization they were
//! written for, and running `keywarden-bench`.

#![allow(dead_code)] // each test crate uses part of it

use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;

/// The small uniform Organization of these tests, not the realistic
/// defaults (skewed up to 5,000 users, findings in 30 % of accounts, a share
/// of administrators and quarantined users).
pub const UNIFORM: &[&str] = &[
    "--users-max",
    "0",
    "--report-us-per-user",
    "0",
    "--accounts-with-findings-pct",
    "any",
    "--owner-tag-pct",
    "100",
    "--admin-pct",
    "0",
    "--quarantined-pct",
    "0",
];

/// The workspace's own build of the CLI (cargo test --workspace builds it).
pub fn keywarden() -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_keywarden-bench"));
    let kw = exe.parent().unwrap().join("keywarden");
    assert!(kw.exists(), "{} is not built", kw.display());
    kw
}

/// `keywarden-bench`, to add arguments to.
pub fn command() -> Command {
    Command::new(env!("CARGO_BIN_EXE_keywarden-bench"))
}

/// Runs it, which must succeed; its JSON output.
pub fn json(cmd: &mut Command) -> Value {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}
