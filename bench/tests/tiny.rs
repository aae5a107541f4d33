//! A tiny run of the benchmark harness, so it keeps compiling and stays
//! correct: the real keywarden binary against the synthetic endpoint finds
//! exactly the generated findings, fails exactly the unreachable accounts,
//! and stays within the call budget per account. No timing is asserted.

mod common;

use common::{command, json, keywarden, UNIFORM};

#[test]
fn a_tiny_organization_is_scanned_exactly_through_the_synthetic_endpoint() {
    let kw = keywarden();
    let r = json(
        command()
            .args([
                "run",
                "--accounts",
                "25",
                "--users",
                "40",
                "--latency-ms",
                "5",
                "--jitter-ms",
                "2",
                "--flagged-pct",
                "5",
                "--unreachable-every",
                "10",
                "--report-delay-ms",
                "50",
                "--keywarden",
            ])
            .arg(&kw)
            .args(UNIFORM),
    );

    assert_eq!(r["findings"], r["expected_findings"]);
    assert!(r["findings"].as_u64().unwrap() > 0);
    assert_eq!(
        r["accounts_failed"], 2,
        "accounts 10 and 20 deny AssumeRole"
    );
    assert_eq!(r["accounts_failed"], r["expected_unreachable"]);

    // Calls per account: AssumeRole, GenerateCredentialReport, GetCredentialReport for a clean
    // account (≤ 4), plus alias and two calls per flagged user (and one tag look-up) otherwise.
    let calls = &r["aws_calls_by_operation"];
    let n = |op: &str| calls[op].as_u64().unwrap_or(0);
    let members = 24;
    let reachable = 25 - 2;
    assert_eq!(n("sts:AssumeRole"), members);
    assert_eq!(n("iam:GetCredentialReport"), reachable);
    assert!(n("iam:GenerateCredentialReport") <= reachable * 2);
    let flagged = r["findings"].as_u64().unwrap();
    assert_eq!(n("iam:ListAccessKeys"), flagged);
    assert_eq!(n("iam:ListUserTags"), flagged);
    let total_account_calls: u64 = [
        "sts:AssumeRole",
        "iam:GenerateCredentialReport",
        "iam:GetCredentialReport",
        "iam:ListAccountAliases",
        "iam:ListAccessKeys",
        "iam:ListUserTags",
        "organizations:ListTagsForResource",
    ]
    .iter()
    .map(|op| n(op))
    .sum();
    assert!(total_account_calls <= 25 * 5 + 2 * flagged, "{calls}");
}

#[test]
fn ou_scoped_listing_works_through_the_synthetic_endpoint() {
    let kw = keywarden();
    let r = json(
        command()
            .args([
                "run",
                "--accounts",
                "30",
                "--users",
                "5",
                "--latency-ms",
                "1",
                "--jitter-ms",
                "0",
                "--unreachable-every",
                "0",
                "--report-delay-ms",
                "0",
                "--keywarden",
            ])
            .arg(&kw)
            .args(UNIFORM)
            .env("KEYWARDEN_INCLUDE_OUS", "r-bench"),
    );
    let calls = &r["aws_calls_by_operation"];
    assert_eq!(calls["organizations:ListChildren"], 1);
    assert_eq!(
        calls["organizations:ListAccountsForParent"], 2,
        "30 accounts: two pages"
    );
    assert_eq!(r["findings"], r["expected_findings"]);
}

/// keywarden over 16 small reachable accounts whose credential reports take
/// `report_ms`, at `concurrency`; every finding found, no account failed.
fn sixteen_accounts(report_ms: &str, concurrency: &str) -> serde_json::Value {
    let kw = keywarden();
    let r = json(
        command()
            .args([
                "run",
                "--accounts",
                "16",
                "--users",
                "5",
                "--latency-ms",
                "2",
                "--jitter-ms",
                "0",
                "--unreachable-every",
                "0",
                "--report-delay-ms",
                report_ms,
                "--concurrency",
                concurrency,
                "--keywarden",
            ])
            .arg(&kw)
            .args(UNIFORM),
    );
    assert_eq!(r["findings"], r["expected_findings"]);
    assert_eq!(r["accounts_failed"], 0);
    r
}

/// The endpoint counts the accounts waiting for their credential reports
/// at once (`max_reports_pending`, what the 20,000-account runs report).
/// Issue 24 item 1: such an account holds none of the `concurrency` working
/// slots, so with `concurrency` 2 more than 2 reports are pending at once
/// (up to 8 accounts are started), and every finding is found.
#[test]
fn the_endpoint_counts_the_accounts_waiting_for_their_reports() {
    let r = sixteen_accounts("600", "2");
    let pending = r["days"][0]["max_reports_pending"].as_u64().unwrap();
    // Waiting for a report holds no working slot: more accounts than
    // `concurrency` wait side by side, at most IN_FLIGHT_PER_SLOT (4) times it.
    assert!(
        (3..=8).contains(&pending),
        "accounts waiting side by side: {pending} (concurrency 2, up to 8 started)"
    );
}

/// One HTTPS client serves every SDK client of a run: connections are
/// reused from one account to the next. With `concurrency` 1 (4 accounts
/// started) at most a few calls are in flight at once, so a run over 16
/// accounts opens a handful of connections; a client per account opened at
/// least one per account.
#[test]
fn accounts_share_the_runs_connections() {
    let r = sixteen_accounts("300", "1");
    let connections = r["days"][0]["connections"].as_u64().unwrap();
    assert!(
        (1..=10).contains(&connections),
        "16 accounts over {connections} connections"
    );
}

/// Issue 24 item 7: the bench runs the Step Functions workflow (the shipped
/// definition interpreted, each step the binary, the state in the endpoint's
/// S3) and its days equal the single invocation's over the same
/// Organization: the same findings, failed accounts, owners and messages,
/// one shard per batch, the state read from and written to the bucket.
#[test]
fn the_workflow_runs_through_the_endpoints_state_bucket_as_the_single_invocation_does() {
    let kw = keywarden();
    let run = |extra: &[&str]| {
        json(
            command()
                .args([
                    "run",
                    "--accounts",
                    "30",
                    "--users",
                    "5",
                    "--latency-ms",
                    "2",
                    "--jitter-ms",
                    "0",
                    "--unreachable-every",
                    "10",
                    "--report-delay-ms",
                    "20",
                    "--days",
                    "2",
                    "--keywarden",
                ])
                .arg(&kw)
                .args(UNIFORM)
                .args(extra),
        )
    };
    let single = run(&["--notify"]);
    let flow = run(&[
        "--workflow",
        "--workflow-batch",
        "10",
        "--lambda-start-ms",
        "0",
        "--transition-ms",
        "0",
    ]);
    assert_eq!(flow["mode"], "workflow");
    assert_eq!(flow["findings"], flow["expected_findings"]);
    assert_eq!(flow["accounts_failed"], flow["expected_unreachable"]);
    for day in 0..2 {
        let (s, w) = (&single["days"][day], &flow["days"][day]);
        for field in [
            "findings",
            "accounts_failed",
            "owners_checked",
            "messages_sent",
        ] {
            assert_eq!(w[field], s[field], "day {day}: {field}");
        }
        assert_eq!(w["owners_wrong"], 0);
        // plan, three shards of 10 accounts, finish, the mail batches, close.
        let mail_batches = w["workflow_steps"].as_u64().unwrap() - 5;
        assert!(mail_batches >= 1, "day {day}: {w}");
        assert!(w["s3_read_mib"].as_f64().unwrap() > 0.0);
        // Each step's own peak RSS, where GNU time is there to measure it.
        if std::path::Path::new("/usr/bin/time").exists() {
            for phase in w["workflow_phases"].as_array().unwrap() {
                let rss = phase["peak_rss_mib"].as_f64().unwrap_or(0.0);
                assert!(rss > 1.0 && rss < 1024.0, "day {day}: {phase}");
            }
        }
        assert!(w["s3_written_mib"].as_f64().unwrap() > 0.0);
        // Accounts 10 and 20 deny AssumeRole: the run is incomplete, and
        // close says so (the execution fails, as the alarm expects).
        assert_eq!(w["workflow_incomplete_steps"], serde_json::json!(["close"]));
        assert_eq!(s["exit_code"], 3);
        assert_eq!(w["exit_code"], 3);
    }
}
