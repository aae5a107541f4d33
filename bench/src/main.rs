//! keywarden-bench: runs the real `keywarden scan` against a synthetic AWS
//! endpoint serving a generated Organization, and reports wall time, AWS
//! calls, throttling, peak RSS and the computed lower bound.
//!
//! `keywarden-bench run --accounts N --users M --latency-ms L` prints one JSON
//! object; `keywarden-bench matrix` runs the documented matrix and writes
//! docs/benchmarks.md.

mod org;
mod server;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};
use serde::Serialize;

use org::OrgSpec;
use server::{Knobs, Limits};

#[derive(Parser)]
#[command(about = "Organization-scale benchmark for keywarden")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// One run; prints a JSON object.
    Run(RunArgs),
    /// Prints the generated Organization as a tools/seed_org.py spec, to load
    /// the same Organization into moto (the drift test).
    Spec {
        #[arg(long, default_value_t = 5)]
        accounts: usize,
        #[arg(long, default_value_t = 10)]
        users: usize,
        #[arg(long, default_value_t = 20)]
        flagged_pct: u64,
        #[arg(long, default_value_t = 3)]
        unreachable_every: usize,
        #[arg(long, default_value_t = 7)]
        seed: u64,
    },
    /// The documented matrix; writes a Markdown report.
    Matrix {
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Account counts to run (comma-separated).
        #[arg(long, default_value = "100,1000,5000")]
        sizes: String,
        #[arg(long, default_value = "target/release/keywarden")]
        keywarden: PathBuf,
    },
}

#[derive(Args, Clone)]
struct RunArgs {
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    #[arg(long, default_value_t = 100)]
    users: usize,
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
    /// Percent of users with an overdue key.
    #[arg(long, default_value_t = 2)]
    flagged_pct: u64,
    /// Every n-th member account denies AssumeRole (0: none).
    #[arg(long, default_value_t = 250)]
    unreachable_every: usize,
    #[arg(long, default_value_t = 500)]
    report_delay_ms: u64,
    /// keywarden's `concurrency` setting (accounts in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "target/release/keywarden")]
    keywarden: PathBuf,
    /// Also keep keywarden's JSON report in this file.
    #[arg(long)]
    keep_report: Option<PathBuf>,
}

/// The instant every run evaluates at: 2026-11-29T00:00:00Z.
const NOW: i64 = 1_795_910_400;

/// One run's result.
#[derive(Serialize)]
struct RunResult {
    accounts: usize,
    users: usize,
    latency_ms: u64,
    concurrency: usize,
    wall_s: f64,
    lower_bound_s: f64,
    ratio_to_bound: f64,
    aws_calls: u64,
    aws_calls_by_operation: std::collections::BTreeMap<String, u64>,
    throttled: u64,
    peak_rss_mib: f64,
    findings: u64,
    expected_findings: u64,
    accounts_failed: u64,
    expected_unreachable: u64,
    exit_code: i32,
    limits: Limits,
}

/// The shortest wall time any client could reach on this endpoint: the
/// throttle budgets bound the total rate of each API class, and each
/// account's calls form a chain that cannot be shortened.
fn lower_bound(
    spec: &OrgSpec,
    knobs: &Knobs,
    per_account_chain: u32,
    org_calls: f64,
    sts_calls: f64,
) -> f64 {
    let lat = knobs.latency.as_secs_f64();
    let pages = (spec.accounts as f64 / 20.0).ceil();
    let limits = &knobs.limits;
    let by_rate = |calls: f64, l: server::Limit| ((calls - l.burst).max(0.0)) / l.rate;
    // The listing is sequential; the last page's accounts still need their own chain.
    let listing = pages * lat;
    let org_budget = by_rate(org_calls, limits.organizations);
    let sts_budget = by_rate(sts_calls, limits.sts);
    let chain = per_account_chain as f64 * lat + knobs.report_delay.as_secs_f64();
    listing.max(org_budget).max(sts_budget) + chain
}

fn peak_rss_children_mib() -> f64 {
    // SAFETY: getrusage writes into the struct we pass and nothing else.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    if rc == 0 {
        usage.ru_maxrss as f64 / 1024.0
    } else {
        f64::NAN
    }
}

async fn run(args: RunArgs) -> anyhow::Result<RunResult> {
    if !args.keywarden.exists() {
        bail!(
            "{} not found: build it first (cargo build --release)",
            args.keywarden.display()
        );
    }
    let now = NOW;
    let spec = OrgSpec {
        accounts: args.accounts,
        users: args.users,
        seed: args.seed,
        flagged_pct: args.flagged_pct,
        unreachable_every: args.unreachable_every,
        now,
    };
    let knobs = Knobs {
        latency: Duration::from_millis(args.latency_ms),
        jitter: Duration::from_millis(args.jitter_ms),
        limits: Limits::default(),
        report_delay: Duration::from_millis(args.report_delay_ms),
    };
    let endpoint = server::start(spec, knobs).await?;
    let out = std::env::temp_dir().join(format!("keywarden-bench-{}.json", std::process::id()));
    let started = Instant::now();
    let status = tokio::process::Command::new(&args.keywarden)
        .args([
            "scan",
            "--format",
            "json",
            "--now",
            "2026-11-29T00:00:00Z",
            "--output",
        ])
        .arg(&out)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("AWS_ENDPOINT_URL", format!("http://{}", endpoint.addr))
        .env("AWS_ACCESS_KEY_ID", "AKIABENCHMANAGEMENT0")
        .env("AWS_SECRET_ACCESS_KEY", "bench")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("KEYWARDEN_CONCURRENCY", args.concurrency.to_string())
        .env("KEYWARDEN_ACCOUNT_TIMEOUT_SECS", "600")
        .stderr(std::process::Stdio::null())
        .status()
        .await
        .context("run keywarden")?;
    let wall = started.elapsed().as_secs_f64();
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&out).context("keywarden wrote no report")?)?;
    match &args.keep_report {
        Some(keep) => {
            std::fs::rename(&out, keep).or_else(|_| std::fs::copy(&out, keep).map(|_| ()))?
        }
        None => std::fs::remove_file(&out)?,
    }
    let stats = endpoint.stats();

    let expected_unreachable = (1..spec.accounts).filter(|a| spec.unreachable(*a)).count() as u64;
    let with_findings = (0..spec.accounts)
        .filter(|a| !spec.unreachable(*a) && (0..spec.users).any(|u| spec.key(*a, u).flagged))
        .count() as f64;
    // Organizations: DescribeOrganization, the listing pages, one tag look-up per account with findings.
    let org_calls = 1.0 + (spec.accounts as f64 / 20.0).ceil() + with_findings;
    let sts_calls = spec.accounts as f64 - 1.0;
    // AssumeRole → alias → Generate (STARTED) → Generate (COMPLETE) → Get → ListAccessKeys → ListUserTags → ListTagsForResource.
    let bound = lower_bound(&spec, &knobs, 8, org_calls, sts_calls);
    Ok(RunResult {
        accounts: spec.accounts,
        users: spec.users,
        latency_ms: args.latency_ms,
        concurrency: args.concurrency,
        wall_s: wall,
        lower_bound_s: bound,
        ratio_to_bound: wall / bound,
        aws_calls: stats.calls.values().sum(),
        aws_calls_by_operation: stats.calls,
        throttled: stats.throttled,
        peak_rss_mib: peak_rss_children_mib(),
        findings: report["summary"]["findings"].as_u64().unwrap_or(0),
        expected_findings: spec.expected_findings(),
        accounts_failed: report["summary"]["accounts_failed"].as_u64().unwrap_or(0),
        expected_unreachable,
        exit_code: status.code().unwrap_or(-1),
        limits: knobs.limits,
    })
}

fn matrix(out: PathBuf, sizes: &str, keywarden: PathBuf) -> anyhow::Result<()> {
    let me = std::env::current_exe()?;
    let mut rows = Vec::new();
    for n in sizes
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?
    {
        // Each run in its own process, so peak RSS is that run's alone.
        let output = std::process::Command::new(&me)
            .args([
                "run",
                "--accounts",
                &n.to_string(),
                "--users",
                "100",
                "--latency-ms",
                "50",
                "--keywarden",
            ])
            .arg(&keywarden)
            .output()?;
        if !output.status.success() {
            bail!(
                "run with {n} accounts failed: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        }
        let v: serde_json::Value = serde_json::from_slice(&output.stdout)?;
        eprintln!(
            "{n} accounts: {:.1} s (bound {:.1} s)",
            v["wall_s"].as_f64().unwrap_or(0.0),
            v["lower_bound_s"].as_f64().unwrap_or(0.0)
        );
        rows.push(v);
    }
    let mut md = String::from("# keywarden benchmarks\n\nGenerated by `scripts/bench` (`keywarden-bench matrix`). See the sections below for the endpoint, its assumptions and how the lower bound is computed.\n\n| accounts × users | wall s | lower bound s | wall / bound | AWS calls | throttled | peak RSS MiB | findings (expected) | failed accounts (expected) |\n|---|---|---|---|---|---|---|---|---|\n");
    for v in &rows {
        md.push_str(&format!(
            "| {} × {} | {:.1} | {:.1} | {:.2} | {} | {} | {:.1} | {} ({}) | {} ({}) |\n",
            v["accounts"],
            v["users"],
            v["wall_s"].as_f64().unwrap_or(0.0),
            v["lower_bound_s"].as_f64().unwrap_or(0.0),
            v["ratio_to_bound"].as_f64().unwrap_or(0.0),
            v["aws_calls"],
            v["throttled"],
            v["peak_rss_mib"].as_f64().unwrap_or(0.0),
            v["findings"],
            v["expected_findings"],
            v["accounts_failed"],
            v["expected_unreachable"]
        ));
    }
    md.push_str("\n## AWS calls by operation\n\n");
    for v in &rows {
        md.push_str(&format!(
            "- {} accounts: `{}`\n",
            v["accounts"], v["aws_calls_by_operation"]
        ));
    }
    std::fs::create_dir_all(out.parent().unwrap_or(std::path::Path::new(".")))?;
    std::fs::write(&out, md)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Run(args) => {
            let r = run(args).await?;
            println!("{}", serde_json::to_string_pretty(&r)?);
        }
        Command::Matrix {
            out,
            sizes,
            keywarden,
        } => matrix(out, &sizes, keywarden)?,
        Command::Spec {
            accounts,
            users,
            flagged_pct,
            unreachable_every,
            seed,
        } => {
            let spec = OrgSpec {
                accounts,
                users,
                seed,
                flagged_pct,
                unreachable_every,
                now: NOW,
            };
            println!(
                "{}",
                serde_json::to_string_pretty(&server::seed_spec(&spec))?
            );
        }
    }
    Ok(())
}
