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
    /// The original article's approach (tools/article_baseline.py: boto3,
    /// accounts one after another, ListUsers then ListAccessKeys per user)
    /// against the same endpoint; prints a JSON object.
    Article(ArticleArgs),
    /// The ledger at scale: two `notify --outbox` runs a day apart over one
    /// state directory (the first writes a ledger of every finding, the
    /// second loads and saves it); prints entries, size, load and save times
    /// (from keywarden's log) and peak RSS as a JSON object.
    Ledger(RunArgs),
    /// Prints the generated Organization as a tools/seed_org.py spec, to load
    /// the same Organization into moto (the drift test).
    Spec(EndpointArgs),
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

/// The generated Organization and the endpoint's behaviour.
#[derive(Args, Clone)]
struct EndpointArgs {
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
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl EndpointArgs {
    fn spec(&self) -> OrgSpec {
        OrgSpec {
            accounts: self.accounts,
            users: self.users,
            seed: self.seed,
            flagged_pct: self.flagged_pct,
            unreachable_every: self.unreachable_every,
            now: NOW,
        }
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            limits: Limits::default(),
            report_delay: Duration::from_millis(self.report_delay_ms),
        }
    }
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// keywarden's `concurrency` setting (accounts in flight).
    #[arg(long, default_value_t = 32)]
    concurrency: usize,
    #[arg(long, default_value = "target/release/keywarden")]
    keywarden: PathBuf,
    /// Also keep keywarden's JSON report in this file.
    #[arg(long)]
    keep_report: Option<PathBuf>,
}

#[derive(Args, Clone)]
struct ArticleArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// Python with boto3 (the project's .venv).
    #[arg(long, default_value = ".venv/bin/python")]
    python: PathBuf,
}

async fn article(args: ArticleArgs) -> anyhow::Result<serde_json::Value> {
    let (spec, knobs) = (args.endpoint.spec(), args.endpoint.knobs());
    let endpoint = server::start(spec, knobs).await?;
    let out = tokio::process::Command::new(&args.python)
        .arg("tools/article_baseline.py")
        .args([
            "--endpoint",
            &format!("http://{}", endpoint.addr),
            "--now",
            "2026-11-29T00:00:00Z",
        ])
        .output()
        .await
        .context("run tools/article_baseline.py")?;
    if !out.status.success() {
        bail!(
            "the article baseline failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout)?;
    let stats = endpoint.stats();
    v["aws_calls"] = serde_json::json!(stats.calls.values().sum::<u64>());
    v["throttled"] = serde_json::json!(stats.throttled);
    v["expected_findings"] = serde_json::json!(spec.expected_findings());
    Ok(v)
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

/// The `ms=` of the last log line that contains `what`.
fn logged_ms(log: &str, what: &str) -> Option<u64> {
    log.lines()
        .rev()
        .filter(|l| l.contains(what))
        .find_map(|l| {
            l.split("ms=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
}

async fn ledger(args: RunArgs) -> anyhow::Result<serde_json::Value> {
    if !args.keywarden.exists() {
        bail!(
            "{} not found: build it first (cargo build --release)",
            args.keywarden.display()
        );
    }
    let endpoint = server::start(args.endpoint.spec(), args.endpoint.knobs()).await?;
    let work = std::env::temp_dir().join(format!("keywarden-bench-ledger-{}", std::process::id()));
    let state = work.join("state");
    std::fs::create_dir_all(&work)?;
    let mut runs = Vec::new();
    for (day, now) in [(0, "2026-11-29T06:00:00Z"), (1, "2026-11-30T06:00:00Z")] {
        let started = Instant::now();
        let out = tokio::process::Command::new(&args.keywarden)
            .args(["notify", "--format", "json", "--now", now, "--outbox"])
            .arg(work.join(format!("outbox-{day}")))
            .arg("--state")
            .arg(&state)
            .arg("--output")
            .arg(work.join(format!("report-{day}.json")))
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| k.starts_with("KEYWARDEN_")))
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("AWS_ENDPOINT_URL", format!("http://{}", endpoint.addr))
            .env("AWS_ACCESS_KEY_ID", "AKIABENCHMANAGEMENT0")
            .env("AWS_SECRET_ACCESS_KEY", "bench")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_EC2_METADATA_DISABLED", "true")
            .env("KEYWARDEN_CONCURRENCY", args.concurrency.to_string())
            .env("KEYWARDEN_ACCOUNT_TIMEOUT_SECS", "600")
            .env("KEYWARDEN_SENDER", "keywarden@example.com")
            .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
            .env("KEYWARDEN_LOG", "keywarden::state=info,warn")
            .env("NO_COLOR", "1")
            .output()
            .await
            .context("run keywarden")?;
        let log = String::from_utf8_lossy(&out.stderr);
        if !matches!(out.status.code(), Some(0 | 1 | 3)) {
            bail!("keywarden notify failed ({}):\n{log}", out.status);
        }
        runs.push(serde_json::json!({
            "now": now,
            "wall_s": started.elapsed().as_secs_f64(),
            "exit_code": out.status.code(),
            "ledger_load_ms": logged_ms(&log, "ledger loaded"),
            "ledger_save_ms": logged_ms(&log, "ledger saved"),
        }));
    }
    let ledger_path = std::fs::read_dir(&state)?
        .filter_map(|e| Some(e.ok()?.path().join("ledger.json")))
        .find(|p| p.exists())
        .context("no ledger written")?;
    let bytes = std::fs::read(&ledger_path)?;
    let ledger: serde_json::Value = serde_json::from_slice(&bytes)?;
    let result = serde_json::json!({
        "accounts": args.endpoint.accounts,
        "users": args.endpoint.users,
        "ledger_entries": ledger["entries"].as_object().map_or(0, |e| e.len()),
        "ledger_bytes": bytes.len(),
        "runs": runs,
        "peak_rss_mib": peak_rss_children_mib(),
    });
    std::fs::remove_dir_all(&work)?;
    Ok(result)
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
    let (spec, knobs) = (args.endpoint.spec(), args.endpoint.knobs());
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
        // Settings to try (KEYWARDEN_*) pass through; the rest of the environment does not.
        .envs(std::env::vars().filter(|(k, _)| k.starts_with("KEYWARDEN_")))
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
        latency_ms: args.endpoint.latency_ms,
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

fn sub(args: &[String]) -> anyhow::Result<serde_json::Value> {
    let me = std::env::current_exe()?;
    // Each run in its own process, so peak RSS is that run's alone.
    let output = std::process::Command::new(me).args(args).output()?;
    if !output.status.success() {
        bail!(
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(serde_json::from_slice(&output.stdout)?)
}

fn f(v: &serde_json::Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// A bar chart of wall times (log scale), as SVG.
fn chart(rows: &[(usize, f64, f64, f64, f64)]) -> String {
    let (w, row_h) = (760.0, 86.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let max = rows
        .iter()
        .map(|r| r.3.max(r.4))
        .fold(1.0, f64::max)
        .log10();
    let x = |s: f64| 150.0 + (s.max(1.0).log10() / max) * (w - 330.0);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">Wall time, seconds (log scale): 100 users per account, 50 ms latency</text>\n");
    for (i, (n, kw, bound, seq, art)) in rows.iter().enumerate() {
        let y0 = 36.0 + row_h * i as f64;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{n} accounts</text>\n",
            y0 + 36.0
        ));
        for (j, (label, v, colour)) in [
            ("keywarden", kw, "#2da44e"),
            ("lower bound", bound, "#8c959f"),
            ("report, sequential*", seq, "#bf8700"),
            ("article*", art, "#cf222e"),
        ]
        .iter()
        .enumerate()
        {
            let y = y0 + 18.0 * j as f64;
            svg.push_str(&format!("<rect x=\"150\" y=\"{y}\" width=\"{:.1}\" height=\"14\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{}\">{label}: {:.0} s</text>\n", x(**v) - 150.0, x(**v) + 6.0, y + 11.0, v));
        }
    }
    svg.push_str(&format!("<text x=\"10\" y=\"{}\" font-size=\"11\">* measured on fewer accounts and extrapolated linearly</text>\n</svg>\n", h - 6.0));
    svg
}

fn matrix(out: PathBuf, sizes: &str, keywarden: PathBuf) -> anyhow::Result<()> {
    let kw = keywarden.display().to_string();
    let mut runs = Vec::new();
    for n in sizes
        .split(',')
        .map(|s| s.trim().parse::<usize>())
        .collect::<Result<Vec<_>, _>>()?
    {
        let base = |acc: usize, extra: &[&str]| -> Vec<String> {
            let mut a: Vec<String> = [
                "run",
                "--accounts",
                &acc.to_string(),
                "--users",
                "100",
                "--latency-ms",
                "50",
                "--keywarden",
                &kw,
            ]
            .iter()
            .map(|s| s.to_string())
            .collect();
            a.extend(extra.iter().map(|s| s.to_string()));
            a
        };
        let main = sub(&base(n, &[]))?;
        let seq_n = n.min(50);
        let seq = sub(&base(seq_n, &["--concurrency", "1"]))?;
        let art_n = n.min(5);
        let art = sub(&[
            "article",
            "--accounts",
            &art_n.to_string(),
            "--users",
            "100",
            "--latency-ms",
            "50",
        ]
        .map(String::from))?;
        eprintln!(
            "{n} accounts: keywarden {:.1} s (bound {:.1} s)",
            f(&main, "wall_s"),
            f(&main, "lower_bound_s")
        );
        runs.push((n, main, seq_n, seq, art_n, art));
    }
    let mut md = String::from(include_str!("../benchmarks-head.md"));
    md.push_str("\n## Results\n\n| accounts × users | wall s | lower bound s | wall / bound | AWS calls | calls / account | throttled | peak RSS MiB | findings (expected) | failed accounts (expected) |\n|---|---|---|---|---|---|---|---|---|---|\n");
    let mut bars = Vec::new();
    for (n, m, _, _, _, _) in &runs {
        md.push_str(&format!(
            "| {n} × 100 | {:.1} | {:.1} | {:.2} | {} | {:.2} | {} | {:.1} | {} ({}) | {} ({}) |\n",
            f(m, "wall_s"),
            f(m, "lower_bound_s"),
            f(m, "ratio_to_bound"),
            m["aws_calls"],
            f(m, "aws_calls") / *n as f64,
            m["throttled"],
            f(m, "peak_rss_mib"),
            m["findings"],
            m["expected_findings"],
            m["accounts_failed"],
            m["expected_unreachable"]
        ));
    }
    md.push_str("\n### Against the baselines\n\n| accounts | keywarden s | report per account, sequential s (measured on) | article's approach s (measured on) | speed-up vs sequential | speed-up vs article |\n|---|---|---|---|---|---|\n");
    for (n, m, seq_n, seq, art_n, art) in &runs {
        let seq_s = f(seq, "wall_s") * *n as f64 / *seq_n as f64;
        let art_s = f(art, "wall_s") * *n as f64 / *art_n as f64;
        md.push_str(&format!(
            "| {n} | {:.1} | {:.0} ({seq_n}{}) | {:.0} ({art_n}{}) | {:.1}× | {:.0}× |\n",
            f(m, "wall_s"),
            seq_s,
            if seq_n < n { ", extrapolated" } else { "" },
            art_s,
            if art_n < n { ", extrapolated" } else { "" },
            seq_s / f(m, "wall_s"),
            art_s / f(m, "wall_s")
        ));
        bars.push((*n, f(m, "wall_s"), f(m, "lower_bound_s"), seq_s, art_s));
    }
    md.push_str("\n![wall times](benchmarks.svg)\n\n### AWS calls by operation (keywarden)\n\n");
    for (n, m, _, _, _, _) in &runs {
        md.push_str(&format!(
            "- {n} accounts: `{}`\n",
            m["aws_calls_by_operation"]
        ));
    }
    let out_dir = out.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("benchmarks.svg"), chart(&bars))?;
    let raw: Vec<_> = runs
        .iter()
        .map(
            |(_, m, _, s, _, a)| serde_json::json!({"keywarden": m, "sequential": s, "article": a}),
        )
        .collect();
    md.push_str(&format!(
        "\n### Raw results\n\n```json\n{}\n```\n",
        serde_json::to_string_pretty(&raw)?
    ));
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
        Command::Article(args) => {
            println!("{}", serde_json::to_string_pretty(&article(args).await?)?)
        }
        Command::Ledger(args) => {
            println!("{}", serde_json::to_string_pretty(&ledger(args).await?)?)
        }
        Command::Matrix {
            out,
            sizes,
            keywarden,
        } => matrix(out, &sizes, keywarden)?,
        Command::Spec(args) => println!(
            "{}",
            serde_json::to_string_pretty(&server::seed_spec(&args.spec()))?
        ),
    }
    Ok(())
}
