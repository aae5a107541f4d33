//! keywarden-bench: runs the real `keywarden scan` against a synthetic AWS
//! endpoint serving a generated Organization, and reports wall time, AWS
//! calls, throttling, peak RSS and the computed lower bound.
//!
//! `keywarden-bench run --accounts N --users M --latency-ms L` prints one JSON
//! object; `keywarden-bench matrix` runs the documented matrix and writes
//! docs/benchmarks.md.

mod greedy;
mod org;
mod s3;
mod server;
mod wire;
mod workflow;

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
    /// The floor's challenger: a minimal scanner with no concurrency limit
    /// and no backoff (src/greedy.rs) against the same endpoint; prints its
    /// wall time and the any-scanner floor as a JSON object.
    Greedy(EndpointArgs),
    /// Prints the generated Organization as a tools/seed_org.py spec, to load
    /// the same Organization into moto (the drift test).
    Spec(EndpointArgs),
    /// The documented matrix; writes a Markdown report.
    Matrix {
        #[arg(long, default_value = "docs/benchmarks.md")]
        out: PathBuf,
        /// Account counts to run (comma-separated).
        #[arg(long, default_value = "1000,5000,20000")]
        sizes: String,
        /// Credential report generation times to run each size with
        /// (`--report-delay-ms`, comma-separated): AWS publishes none, 1 s
        /// is kind.
        #[arg(long, default_value = "1000,5000")]
        report_ms: String,
        #[arg(long, default_value = "target/release/keywarden")]
        keywarden: PathBuf,
    },
}

/// `--accounts-with-findings-pct`: a percentage, or `any`.
#[derive(Debug, Clone, Copy)]
struct FindingsShare(Option<u64>);

fn findings_share(s: &str) -> Result<FindingsShare, String> {
    if s == "any" {
        return Ok(FindingsShare(None));
    }
    match s.parse::<u64>() {
        Ok(p) if p <= 100 => Ok(FindingsShare(Some(p))),
        _ => Err(format!("{s:?} is neither a percentage (0-100) nor `any`")),
    }
}

/// The generated Organization and the endpoint's behaviour. The defaults
/// are the realistic endpoint of the matrix (bench/benchmarks-head.md).
#[derive(Args, Clone)]
struct EndpointArgs {
    #[arg(long, default_value_t = 100)]
    accounts: usize,
    /// Users per account (with --users-max: the smallest account's).
    #[arg(long, default_value_t = 5)]
    users: usize,
    /// Skewed accounts: users per account from a Pareto distribution between
    /// --users and this (0: every account has --users).
    #[arg(long, default_value_t = 5000)]
    users_max: usize,
    #[arg(long, default_value_t = 50)]
    latency_ms: u64,
    #[arg(long, default_value_t = 10)]
    jitter_ms: u64,
    /// Percent of users with an overdue key.
    #[arg(long, default_value_t = 2)]
    flagged_pct: u64,
    /// Only this share (percent) of accounts has findings (`any`: users are
    /// flagged independently, so nearly every account has one).
    #[arg(long, default_value = "30", value_parser = findings_share)]
    accounts_with_findings_pct: FindingsShare,
    /// Share (percent) of accounts with an `owner` tag in Organizations.
    #[arg(long, default_value_t = 80)]
    owner_tag_pct: u64,
    /// Every n-th member account denies AssumeRole (0: none).
    #[arg(long, default_value_t = 250)]
    unreachable_every: usize,
    /// Share (percent) of flagged users with AdministratorAccess attached
    /// (what each key can do: the policy documents keywarden reads).
    #[arg(long, default_value_t = 10)]
    admin_pct: u64,
    /// Share (percent) of accounts with findings where AWS quarantined a
    /// flagged user (key-exposed).
    #[arg(long, default_value_t = 1)]
    quarantined_pct: u64,
    /// Credential report generation time for any account…
    #[arg(long, default_value_t = 1000)]
    report_delay_ms: u64,
    /// …plus this per user (microseconds).
    #[arg(long, default_value_t = 2000)]
    report_us_per_user: u64,
    /// Organizations budget for the Organization (requests/s; burst 2 s worth).
    #[arg(long, default_value_t = 10.0)]
    org_rate: f64,
    /// STS AssumeRole budget for the caller (requests/s; burst 1 s worth).
    #[arg(long, default_value_t = 100.0)]
    sts_rate: f64,
    /// SES v2 send rate (messages/s; burst 1 s worth).
    #[arg(long, default_value_t = 14.0)]
    ses_rate: f64,
    /// The state bucket (S3, for --workflow): each object moves at this
    /// many MiB/s after the latency (a Lambda's single stream in-region).
    #[arg(long, default_value_t = 64.0)]
    s3_mib_per_s: f64,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

impl EndpointArgs {
    fn spec(&self) -> OrgSpec {
        OrgSpec {
            accounts: self.accounts,
            users: self.users,
            users_max: self.users_max,
            seed: self.seed,
            flagged_pct: self.flagged_pct,
            accounts_with_findings_pct: self.accounts_with_findings_pct.0,
            owner_tag_pct: self.owner_tag_pct,
            unreachable_every: self.unreachable_every,
            admin_pct: self.admin_pct,
            quarantined_pct: self.quarantined_pct,
            now: NOW,
        }
    }

    fn knobs(&self) -> Knobs {
        Knobs {
            latency: Duration::from_millis(self.latency_ms),
            jitter: Duration::from_millis(self.jitter_ms),
            limits: Limits {
                organizations: server::Limit {
                    rate: self.org_rate,
                    burst: (2.0 * self.org_rate).max(1.0),
                },
                sts: server::Limit {
                    rate: self.sts_rate,
                    burst: self.sts_rate.max(1.0),
                },
                ses: server::Limit {
                    rate: self.ses_rate,
                    burst: self.ses_rate.max(1.0),
                },
                ..Limits::default()
            },
            report_delay: Duration::from_millis(self.report_delay_ms),
            report_per_user: Duration::from_micros(self.report_us_per_user),
            s3_mib_per_s: self.s3_mib_per_s,
        }
    }
}

#[derive(Args, Clone)]
struct RunArgs {
    #[command(flatten)]
    endpoint: EndpointArgs,
    /// keywarden's `concurrency` setting (accounts worked on; its default).
    #[arg(long, default_value_t = 192)]
    concurrency: usize,
    #[arg(long, default_value = "target/release/keywarden")]
    keywarden: PathBuf,
    /// Also keep keywarden's JSON report (of the last day) in this file.
    #[arg(long)]
    keep_report: Option<PathBuf>,
    /// Run `notify` (SES v2 through the endpoint, with a ledger) instead of `scan`.
    #[arg(long)]
    notify: bool,
    /// Daily runs over one ledger (with --notify): the first run, then the
    /// steady state (account tags cached, reminders on their cadence).
    #[arg(long, default_value_t = 1)]
    days: u32,
    /// Run each day as the Step Functions workflow (implies --notify): the
    /// shipped definition interpreted locally, each step the binary, the
    /// state in the endpoint's S3 (`src/workflow.rs`).
    #[arg(long)]
    workflow: bool,
    /// The workflow's `workflow_accounts_per_batch`, `workflow_scan_concurrency`
    /// and `workflow_mail_concurrency` (the Terraform module's defaults).
    #[arg(long, default_value_t = 100)]
    workflow_batch: u32,
    #[arg(long, default_value_t = 8)]
    workflow_scan: u32,
    #[arg(long, default_value_t = 4)]
    workflow_mail: u32,
    /// Modelled, per Lambda invocation of a workflow step: a cold start of
    /// the function (init and invoke), as if no environment were reused.
    #[arg(long, default_value_t = 250)]
    lambda_start_ms: u64,
    /// Modelled, per state transition of the workflow (a map child's start
    /// included).
    #[arg(long, default_value_t = 100)]
    transition_ms: u64,
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

/// One run's result: the first day's numbers at the top, every day in `days`.
#[derive(Serialize)]
struct RunResult {
    accounts: usize,
    users: usize,
    users_max: usize,
    /// Users over every account (skewed: the distribution's sum).
    users_total: u64,
    latency_ms: u64,
    concurrency: usize,
    mode: &'static str,
    wall_s: f64,
    /// The floor for any complete scanner (and notifier) of this Organization.
    floor_any_s: f64,
    /// The floor for keywarden's own calls (what the endpoint admitted).
    floor_keywarden_s: f64,
    /// The corrected floors (issue 24): any scanner with the owner
    /// look-ups; any notifier, its mail after that scan (`floors`).
    floor_scanner_s: f64,
    floor_notifier_s: f64,
    /// The mail beside the scan, with an oracle of where every key is (not
    /// a floor of any real notifier; `floors`).
    floor_overlap_s: f64,
    ratio_any: f64,
    ratio_keywarden: f64,
    ratio_notifier: f64,
    aws_calls: u64,
    aws_calls_by_operation: std::collections::BTreeMap<String, u64>,
    calls_per_account: f64,
    throttled: u64,
    throttled_by: std::collections::BTreeMap<String, u64>,
    peak_rss_mib: f64,
    findings: u64,
    expected_findings: u64,
    accounts_failed: u64,
    expected_unreachable: u64,
    /// Accounts with findings and an owner tag, and those whose owner in the
    /// report is not that tag.
    owners_checked: u64,
    owners_wrong: u64,
    messages_sent: u64,
    exit_code: i32,
    limits: Limits,
    days: Vec<DayResult>,
}

/// One daily run.
#[derive(Serialize, Clone)]
struct DayResult {
    day: u32,
    wall_s: f64,
    floor_any_s: f64,
    floor_keywarden_s: f64,
    /// Any scanner with the owner look-ups; any notifier (the mail after
    /// that scan): the corrected floors (`floors`).
    floor_scanner_s: f64,
    floor_notifier_s: f64,
    /// The mail beside the scan, with an oracle of where every key is (not
    /// a floor of any real notifier; `floors`).
    floor_overlap_s: f64,
    ratio_any: f64,
    ratio_keywarden: f64,
    ratio_notifier: f64,
    aws_calls: u64,
    aws_calls_by_operation: std::collections::BTreeMap<String, u64>,
    calls_per_account: f64,
    throttled: u64,
    throttled_by: std::collections::BTreeMap<String, u64>,
    /// The most accounts waiting for their credential reports at once.
    max_reports_pending: u64,
    /// TCP connections keywarden opened to the endpoint.
    connections: u64,
    /// The state bucket (the workflow): calls and bytes moved.
    s3_calls: u64,
    s3_read_mib: f64,
    s3_written_mib: f64,
    /// Workflow steps run (Lambda invocations), and those that reported the
    /// run incomplete (exit 3: accounts failed).
    workflow_steps: u64,
    workflow_incomplete_steps: Vec<String>,
    /// Where the workflow's time went, per kind of step.
    workflow_phases: Vec<workflow::Phase>,
    findings: u64,
    accounts_failed: u64,
    owners_checked: u64,
    owners_wrong: u64,
    messages_sent: u64,
    exit_code: i32,
}

/// Two floors for one run, each a true lower bound on its wall time (a
/// maximum of lower bounds), from the endpoint's model: every call takes at
/// least `latency`; a budget (rate r, burst b) admits N calls no sooner than
/// (N - b) / r (a throttled call costs a token too, which only adds); the
/// accounts are listed 20 a page, one page after another; an account's chain
/// cannot start before its page arrives.
///
/// - **Any complete scanner** must list every account, assume a role in each
///   member account, and read each credential report: GenerateCredentialReport,
///   the report's generation time (it grows with the account's users), then
///   GetCredentialReport. A notifier that sends one message per owner covering
///   all their accounts must finish the scan before the last message, and SES
///   admits the messages at its rate.
/// - **keywarden's floor** uses the calls keywarden actually made (those the
///   endpoint admitted, per budget: its tag look-ups, its retries of listing
///   pages) and its per-account chain: an account with findings needs one more
///   round trip after the report (the key and tag look-ups, the account tags).
/// - Both add, for an account with findings, what the key-risk contracts need
///   after the report: its flagged users' policies when due (one round trip;
///   `privileges_due`), and when due (`footprints_due`: the first day, then
///   the account's refresh day) where each flagged key used in 90 days was
///   used: its key id, then LookupEvents at CloudTrail's 2 a second per
///   account and region, at most 20 keys per account and run; whichever
///   takes longer.
///
/// Neither adds per-account chains after a budget is spent (the last call of
/// a budget may be an account's last call), the mistake of the earlier bound.
///
/// Two more (issue 24), the ones ratios are reported against: the
/// **any-scanner** floor with the owner look-ups any notifier needs (the
/// tags of each account with findings, on Organizations' budget), and the
/// **any-notifier** floor: that scanner floor, then the mail through SES.
///
/// Why the mail cannot overlap the scan, for any notifier that keeps the
/// notification contract (one message per person per run, covering every
/// finding of theirs that is due; a finding is due the run it is new): a
/// person's message is complete only when no account left to read can hold
/// a finding of theirs. Any account not yet scanned may hold a new key
/// whose user tag names them, and any account whose owner is not yet known
/// may be theirs; yesterday's ledger does not say where today's new keys
/// are. So no person's message can go before the scan and the owner
/// look-ups end (the scanner floor), and SES then admits the messages at
/// its rate (its burst, saved up during the scan, counted). The overlapped
/// bound the issue proposed (the larger of the two) needs an oracle of
/// where every key is: it is kept as `floor_overlap_s`, beside the others,
/// and no ratio is taken against it.
fn floors(
    spec: &OrgSpec,
    knobs: &Knobs,
    stats: &server::Stats,
    messages: u64,
    due: &Due<'_>,
) -> Floors {
    let (privileges_due, footprints_due) = (due.privileges, due.footprints);
    let lat = knobs.latency.as_secs_f64();
    let limits = &knobs.limits;
    let by_rate = |calls: f64, l: server::Limit| ((calls - l.burst).max(0.0)) / l.rate;
    let pages = (spec.accounts as f64 / 20.0).ceil();
    let members = spec.accounts.saturating_sub(1) as f64;
    // An account's earliest end: its page, then its chain.
    let chain = |a: usize, extra: f64| {
        let page = (a / 20 + 1) as f64 * lat;
        // The management account needs no AssumeRole.
        let assume = if a == 0 { 0.0 } else { lat };
        if spec.unreachable(a) {
            page + lat
        } else {
            page + assume + 2.0 * lat + knobs.report_time(spec.users_in(a)).as_secs_f64() + extra
        }
    };
    let (mut any_chain, mut kw_chain) = (0.0f64, 0.0f64);
    for a in 0..spec.accounts {
        let findings = !spec.unreachable(a) && spec.flagged_in(a) > 0;
        // What a flagged key can do needs its user's policies when they are
        // due (see `privileges_due`): one more round trip after the report,
        // for any scanner (all users' calls at once); keywarden also reads
        // keys and tags first (one more).
        let policies = if findings && privileges_due(a) {
            lat
        } else {
            0.0
        };
        // Where each flagged key was used: its key id (one round trip), then
        // LookupEvents at 2 a second per account and region, at most 20
        // keys per account and run, when due (the first day, then the
        // account's refresh day; the bench's keys are not used again, so
        // none wakes up). Keys past 20 read on later runs are not counted.
        let lookups = if findings && footprints_due(a) {
            let k = spec.used_flagged_in(a).min(20) as f64;
            if k > 0.0 {
                lat + ((k - limits.cloudtrail.burst).max(0.0) / limits.cloudtrail.rate) + lat
            } else {
                0.0
            }
        } else {
            0.0
        };
        any_chain = any_chain.max(chain(a, if findings { policies.max(lookups) } else { 0.0 }));
        kw_chain = kw_chain.max(chain(
            a,
            if findings {
                lat + policies.max(lookups - lat)
            } else {
                0.0
            },
        ));
    }
    let any_scan = any_chain
        .max(by_rate(pages, limits.organizations) + lat)
        .max(by_rate(members, limits.sts) + lat);
    let kw_scan = kw_chain
        .max(by_rate(stats.admitted("organizations") as f64, limits.organizations) + lat)
        .max(by_rate(stats.admitted("sts") as f64, limits.sts) + lat);
    // The owner look-ups any notifier needs: the tags of every reachable
    // account with findings (when due), through the Organizations budget the
    // listing spends too. A look-up may start before the account's report
    // (it needs only the id), so it adds to the budget, not to the chain.
    let owners = (0..spec.accounts)
        .filter(|&a| !spec.unreachable(a) && spec.flagged_in(a) > 0 && (due.tags)(a))
        .count() as f64;
    let scanner = any_scan.max(by_rate(pages + owners, limits.organizations) + lat);
    let mail = if messages > 0 {
        by_rate(messages as f64, limits.ses) + lat
    } else {
        0.0
    };
    // No person's message is complete before the scan and the owner
    // look-ups end (see above): the mail follows the scanner's floor. With
    // an oracle of where every key is, it could overlap the scan (only the
    // digest after it): the issue's bound, kept for comparison.
    let (notifier, overlap) = if messages > 0 {
        (scanner + mail, (scanner + lat).max(mail))
    } else {
        (scanner, scanner)
    };
    Floors {
        any: any_scan + mail,
        keywarden: kw_scan + mail,
        scanner,
        notifier,
        overlap,
    }
}

/// What must be read again today, per account index.
struct Due<'a> {
    /// The flagged users' policies.
    privileges: &'a dyn Fn(usize) -> bool,
    /// The flagged keys' footprints.
    footprints: &'a dyn Fn(usize) -> bool,
    /// The account's tags (its owner), if it has findings.
    tags: &'a dyn Fn(usize) -> bool,
}

/// The floors of one run (see [`floors`]).
#[derive(Debug, Clone, Copy)]
struct Floors {
    /// The any-scanner floor as earlier rounds computed it: the scan, then
    /// the mail after it, no owner look-ups (kept so that ratios compare
    /// across rounds).
    any: f64,
    /// keywarden's design: its own calls, the scan, then the mail.
    keywarden: f64,
    /// Any complete scanner, with the owner look-ups a notifier needs.
    scanner: f64,
    /// Any complete notifier that keeps the contract: the scanner's floor,
    /// then the mail.
    notifier: f64,
    /// A notifier with an oracle of where every key is: the mail overlaps
    /// the scan (the digest after it). Not a bound for a real notifier.
    overlap: f64,
}

/// A cache cycle of keywarden's (default 7 days), or the value of `var`
/// as passed to it.
fn cycle_days(var: &str) -> u64 {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7)
}

/// Whether what keywarden remembers of account `a` for a cycle of `max`
/// days must be read again at `now` (seconds) a day after it was read: on
/// the account's own day of the cycle (keywarden's
/// `core::tag_cache::is_refresh_day`), or every day with the cache off. A
/// scanner that keeps the contract (nothing older than the cycle,
/// refreshes spread over it) can do no less.
fn refresh_due(a: usize, now: i64, max: u64) -> bool {
    if max == 0 {
        return true;
    }
    let id: u64 = org::account_id(a).parse().unwrap_or(0);
    let day = now.div_euclid(86_400) as u64;
    (day + id).is_multiple_of(max)
}

/// What the flagged users of account `a` can do (`privilege_max_age_days`).
fn privileges_due(a: usize, now: i64) -> bool {
    refresh_due(a, now, cycle_days("KEYWARDEN_PRIVILEGE_MAX_AGE_DAYS"))
}

/// The tags of account `a`, its owner (`account_tags_max_age_days`).
fn tags_due(a: usize, now: i64) -> bool {
    refresh_due(a, now, cycle_days("KEYWARDEN_ACCOUNT_TAGS_MAX_AGE_DAYS"))
}

/// Where the flagged keys of account `a` were used (`usage_refresh_days`;
/// the bench's keys are not used again, so no key wakes up).
fn footprints_due(a: usize, now: i64) -> bool {
    refresh_due(a, now, cycle_days("KEYWARDEN_USAGE_REFRESH_DAYS"))
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
    let notify = args.notify || args.workflow;
    if args.days > 1 && !notify {
        bail!("--days needs --notify (the steady state is a ledger's)");
    }
    let (spec, knobs) = (args.endpoint.spec(), args.endpoint.knobs());
    let endpoint = std::sync::Arc::new(server::start(spec, knobs).await?);
    let machine = if args.workflow {
        Some(workflow::definition(
            args.workflow_batch,
            args.workflow_scan,
            args.workflow_mail,
        )?)
    } else {
        None
    };
    let log_dir = std::env::var_os("BENCH_LOG_DIR").map(PathBuf::from);
    let work = std::env::temp_dir().join(format!("keywarden-bench-{}", std::process::id()));
    std::fs::create_dir_all(&work)?;
    let expected_unreachable = (1..spec.accounts).filter(|a| spec.unreachable(*a)).count() as u64;
    let mut days = Vec::new();
    let mut before = endpoint.stats();
    for day in 0..args.days {
        endpoint.new_day();
        let now = NOW + i64::from(day) * 86_400;
        let out = work.join(format!("report-{day}.json"));
        // Settings to try (KEYWARDEN_*) pass through; the rest of the environment does not.
        let env: Vec<(String, String)> = std::env::vars()
            .filter(|(k, _)| k.starts_with("KEYWARDEN_"))
            .chain(
                [
                    ("PATH", std::env::var("PATH").unwrap_or_default()),
                    ("AWS_ENDPOINT_URL", format!("http://{}", endpoint.addr)),
                    ("AWS_ACCESS_KEY_ID", "AKIABENCHMANAGEMENT0".to_owned()),
                    ("AWS_SECRET_ACCESS_KEY", "bench".to_owned()),
                    ("AWS_REGION", "us-east-1".to_owned()),
                    ("AWS_EC2_METADATA_DISABLED", "true".to_owned()),
                    ("KEYWARDEN_CONCURRENCY", args.concurrency.to_string()),
                    ("KEYWARDEN_ACCOUNT_TIMEOUT_SECS", "600".to_owned()),
                    ("KEYWARDEN_SENDER", "keywarden@example.com".to_owned()),
                    (
                        "KEYWARDEN_SECURITY_RECIPIENTS",
                        "security@example.com".to_owned(),
                    ),
                ]
                .map(|(k, v)| (k.to_owned(), v)),
            )
            .collect();
        let started = Instant::now();
        let mut phases = Vec::new();
        let (status_code, report, steps, incomplete) = match &machine {
            None => {
                let mut cmd = tokio::process::Command::new(&args.keywarden);
                if args.notify {
                    cmd.args(["notify", "--state"]).arg(work.join("state"));
                } else {
                    cmd.args(["scan", "--no-state"]);
                }
                let status = cmd
                    .args(["--format", "json", "--now", &iso_now(now), "--output"])
                    .arg(&out)
                    .env_clear()
                    .envs(env)
                    // BENCH_LOG_DIR: keep each day's log (with KEYWARDEN_LOG) to see where time goes.
                    .stderr(match &log_dir {
                        Some(dir) => {
                            std::fs::File::create(dir.join(format!("day-{day}.log")))?.into()
                        }
                        None => std::process::Stdio::null(),
                    })
                    .status()
                    .await
                    .context("run keywarden")?;
                let report: serde_json::Value = serde_json::from_slice(
                    &std::fs::read(&out).context("keywarden wrote no report")?,
                )?;
                (status.code().unwrap_or(-1), report, 0, Vec::new())
            }
            Some(machine) => {
                // The day to run as is the test-only clock setting: the
                // workflow takes no `now` (as the Lambda takes none).
                let mut env = env;
                env.push(("KEYWARDEN_CLOCK_OVERRIDE".to_owned(), iso_now(now)));
                let driver = std::sync::Arc::new(workflow::Driver {
                    keywarden: args.keywarden.clone(),
                    env,
                    endpoint: endpoint.clone(),
                    lambda_start: Duration::from_millis(args.lambda_start_ms),
                    transition: Duration::from_millis(args.transition_ms),
                    log_dir: match &log_dir {
                        Some(dir) => {
                            let d = dir.join(format!("day-{day}"));
                            std::fs::create_dir_all(&d)?;
                            Some(d)
                        }
                        None => None,
                    },
                    steps: Default::default(),
                    run: Default::default(),
                    incomplete: Default::default(),
                    started: Instant::now(),
                    timeline: Default::default(),
                });
                driver
                    .execute(
                        machine.clone(),
                        serde_json::json!({"source": "keywarden.schedule"}),
                    )
                    .await?;
                let run = driver.run.lock().expect("not poisoned").clone();
                let run = run.context("the plan step gave no run")?;
                let key = format!(
                    "keywarden/{}/workflow/{}/closed.json",
                    run["organization"].as_str().unwrap_or_default(),
                    run["id"].as_str().unwrap_or_default()
                );
                let closed = endpoint
                    .object(workflow::BUCKET, &key)
                    .with_context(|| format!("the workflow closed no run: {key}"))?;
                let incomplete = driver.incomplete.lock().expect("not poisoned").clone();
                let code = if incomplete.is_empty() { 0 } else { 3 };
                let steps = driver.steps.load(std::sync::atomic::Ordering::Relaxed);
                phases = driver.phases();
                (code, serde_json::from_slice(&closed)?, steps, incomplete)
            }
        };
        let wall = started.elapsed().as_secs_f64();
        let after = endpoint.stats();
        let stats = after.since(&before);
        before = after;
        // Only SendEmail is throttled on SES; GetAccount and GetEmailIdentity are not messages.
        let messages = stats.calls.get("ses:SendEmail").copied().unwrap_or(0)
            - stats.throttled_by.get("ses").copied().unwrap_or(0);
        // Privileges and footprints are read on the first day and then,
        // within the contract's max age, on each account's refresh day.
        let due = |a: usize| day == 0 || privileges_due(a, now);
        let used = |a: usize| day == 0 || footprints_due(a, now);
        let tags = |a: usize| day == 0 || tags_due(a, now);
        let fl = floors(
            &spec,
            &knobs,
            &stats,
            messages,
            &Due {
                privileges: &due,
                footprints: &used,
                tags: &tags,
            },
        );
        let (owners_checked, owners_wrong) = owners(&spec, &report);
        let aws_calls: u64 = stats.calls.values().sum();
        days.push(DayResult {
            day,
            wall_s: wall,
            floor_any_s: fl.any,
            floor_keywarden_s: fl.keywarden,
            floor_scanner_s: fl.scanner,
            floor_notifier_s: fl.notifier,
            floor_overlap_s: fl.overlap,
            ratio_any: wall / fl.any,
            ratio_keywarden: wall / fl.keywarden,
            ratio_notifier: wall / fl.notifier,
            aws_calls,
            calls_per_account: aws_calls as f64 / spec.accounts as f64,
            aws_calls_by_operation: stats.calls.clone(),
            throttled: stats.throttled,
            throttled_by: stats.throttled_by.clone(),
            max_reports_pending: stats.max_reports_pending,
            connections: stats.connections,
            s3_calls: stats
                .calls
                .iter()
                .filter(|(op, _)| op.starts_with("s3:"))
                .map(|(_, n)| n)
                .sum(),
            s3_read_mib: stats.s3_read_bytes as f64 / 1048576.0,
            s3_written_mib: stats.s3_written_bytes as f64 / 1048576.0,
            workflow_steps: steps,
            workflow_incomplete_steps: incomplete,
            workflow_phases: phases,
            findings: report["summary"]["findings"].as_u64().unwrap_or(0),
            accounts_failed: report["summary"]["accounts_failed"].as_u64().unwrap_or(0),
            owners_checked,
            owners_wrong,
            messages_sent: messages,
            exit_code: status_code,
        });
        if day + 1 == args.days {
            if let Some(keep) = &args.keep_report {
                std::fs::write(keep, serde_json::to_vec_pretty(&report)?)?;
            }
        }
    }
    std::fs::remove_dir_all(&work)?;
    let first = days[0].clone();
    Ok(RunResult {
        accounts: spec.accounts,
        users: spec.users,
        users_max: spec.users_max,
        users_total: (0..spec.accounts).map(|a| spec.users_in(a) as u64).sum(),
        latency_ms: args.endpoint.latency_ms,
        concurrency: args.concurrency,
        mode: if args.workflow {
            "workflow"
        } else if args.notify {
            "notify"
        } else {
            "scan"
        },
        wall_s: first.wall_s,
        floor_any_s: first.floor_any_s,
        floor_keywarden_s: first.floor_keywarden_s,
        floor_scanner_s: first.floor_scanner_s,
        floor_notifier_s: first.floor_notifier_s,
        floor_overlap_s: first.floor_overlap_s,
        ratio_any: first.ratio_any,
        ratio_keywarden: first.ratio_keywarden,
        ratio_notifier: first.ratio_notifier,
        aws_calls: first.aws_calls,
        aws_calls_by_operation: first.aws_calls_by_operation,
        calls_per_account: first.calls_per_account,
        throttled: first.throttled,
        throttled_by: first.throttled_by,
        // The workflow's steps are separate Lambdas: the largest step's
        // own peak (the bench's own memory, which holds the state bucket,
        // is not a step's).
        peak_rss_mib: if args.workflow {
            days.iter()
                .flat_map(|d| &d.workflow_phases)
                .map(|p| p.peak_rss_mib)
                .fold(0.0, f64::max)
        } else {
            peak_rss_children_mib()
        },
        findings: first.findings,
        expected_findings: spec.expected_findings(),
        accounts_failed: first.accounts_failed,
        expected_unreachable,
        owners_checked: first.owners_checked,
        owners_wrong: first.owners_wrong,
        messages_sent: first.messages_sent,
        exit_code: first.exit_code,
        limits: knobs.limits,
        days,
    })
}

/// RFC 3339 for `--now`.
fn iso_now(secs: i64) -> String {
    server::iso(secs)
}

/// Accounts with findings and an `owner` tag, and how many of them the
/// report gives another owner.
fn owners(spec: &OrgSpec, report: &serde_json::Value) -> (u64, u64) {
    let (mut checked, mut wrong) = (0, 0);
    for a in report["accounts"].as_array().into_iter().flatten() {
        let Some(index) = a["account_id"].as_str().and_then(org::account_index) else {
            continue;
        };
        let Some(tag) = spec.owner_tag(index) else {
            continue;
        };
        if spec.unreachable(index) || spec.flagged_in(index) == 0 {
            continue;
        }
        checked += 1;
        if a["owner"]["email"].as_str() != Some(tag.as_str()) {
            wrong += 1;
        }
    }
    (checked, wrong)
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

/// A bar chart of wall times against the two floors (log scale), as SVG.
fn chart(rows: &[(String, f64, f64, f64)]) -> String {
    let (w, row_h) = (760.0, 62.0);
    let h = 40.0 + row_h * rows.len() as f64;
    let max = rows
        .iter()
        .map(|r| r.1.max(r.2).max(r.3))
        .fold(10.0, f64::max)
        .log10();
    let x = |s: f64| 200.0 + (s.max(1.0).log10() / max) * (w - 380.0);
    let mut svg = format!("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<text x=\"10\" y=\"20\" font-size=\"14\">Wall time against the floors, seconds (log scale), realistic endpoint</text>\n");
    for (i, (label, wall, kw, any)) in rows.iter().enumerate() {
        let y0 = 36.0 + row_h * i as f64;
        svg.push_str(&format!(
            "<text x=\"10\" y=\"{}\">{label}</text>\n",
            y0 + 24.0
        ));
        for (j, (name, v, colour)) in [
            ("keywarden", wall, "#2da44e"),
            ("keywarden's floor", kw, "#8c959f"),
            ("any scanner's floor", any, "#d0d7de"),
        ]
        .iter()
        .enumerate()
        {
            let y = y0 + 17.0 * j as f64;
            svg.push_str(&format!("<rect x=\"200\" y=\"{y}\" width=\"{:.1}\" height=\"13\" fill=\"{colour}\"/><text x=\"{:.1}\" y=\"{}\">{name}: {:.0} s</text>\n", x(**v) - 200.0, x(**v) + 6.0, y + 10.0, v));
        }
    }
    svg.push_str("</svg>\n");
    svg
}

/// A comma-separated list of numbers (`--sizes`, `--report-ms`).
fn numbers(list: &str, what: &str) -> anyhow::Result<Vec<u64>> {
    list.split(',')
        .map(|s| {
            s.trim()
                .parse::<u64>()
                .with_context(|| format!("{what}: {s:?} is not a whole number"))
        })
        .collect()
}

fn matrix(out: PathBuf, sizes: &str, report_ms: &str, keywarden: PathBuf) -> anyhow::Result<()> {
    let kw = keywarden.display().to_string();
    let started = Instant::now();
    let mut rows: Vec<(u64, String, serde_json::Value)> = Vec::new();
    let report_times = numbers(report_ms, "--report-ms")?;
    for n in numbers(sizes, "--sizes")? {
        for ms in &report_times {
            for (mode, extra) in [
                ("scan", &[][..]),
                ("notify", &["--notify", "--days", "2"][..]),
            ] {
                let mut args: Vec<String> = [
                    "run",
                    "--accounts",
                    &n.to_string(),
                    "--report-delay-ms",
                    &ms.to_string(),
                    "--keywarden",
                    &kw,
                ]
                .iter()
                .map(|s| s.to_string())
                .collect();
                args.extend(extra.iter().map(|s| s.to_string()));
                let r = sub(&args)?;
                eprintln!(
                    "{n} accounts, reports {ms} ms, {mode}: {:.1} s (keywarden's floor {:.1} s, any scanner's {:.1} s) after {:.0} s",
                    f(&r, "wall_s"),
                    f(&r, "floor_keywarden_s"),
                    f(&r, "floor_any_s"),
                    started.elapsed().as_secs_f64()
                );
                rows.push((
                    n,
                    format!("{mode}, reports {:.0} s", *ms as f64 / 1000.0),
                    r,
                ));
            }
        }
    }
    let mut md = String::from(include_str!("../benchmarks-head.md"));
    md.push_str(&format!(
        "\n## Results\n\nOne sitting: {} runs in {:.0} min on this machine (release build).\n\n| accounts (users) | run | wall s | keywarden's floor s | wall / keywarden's floor | any scanner's floor s (earlier rounds) | wall / it | any notifier's floor s | wall / it | AWS calls / account | throttled | messages | peak RSS MiB | findings (expected) | failed (expected) | owners checked (wrong) |\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
        rows.len(),
        started.elapsed().as_secs_f64() / 60.0
    ));
    let mut bars = Vec::new();
    for (n, mode, r) in &rows {
        for d in r["days"].as_array().into_iter().flatten() {
            let reports = mode.split_once(", ").map_or("", |(_, r)| r);
            let run = match (mode.starts_with("scan"), d["day"].as_u64()) {
                (true, _) => format!("scan, first run (no ledger), {reports}"),
                (_, Some(0)) => format!("notify, first run, {reports}"),
                (_, Some(k)) => format!("notify, day {k}: steady state, {reports}"),
                _ => String::new(),
            };
            md.push_str(&format!(
                "| {n} ({}) | {run} | {:.1} | {:.1} | {:.2} | {:.1} | {:.2} | {:.1} | {:.2} | {:.2} | {} | {} | {:.1} | {} ({}) | {} ({}) | {} ({}) |\n",
                r["users_total"],
                f(d, "wall_s"),
                f(d, "floor_keywarden_s"),
                f(d, "ratio_keywarden"),
                f(d, "floor_any_s"),
                f(d, "ratio_any"),
                f(d, "floor_notifier_s"),
                f(d, "ratio_notifier"),
                f(d, "calls_per_account"),
                d["throttled"],
                d["messages_sent"],
                f(r, "peak_rss_mib"),
                d["findings"],
                r["expected_findings"],
                d["accounts_failed"],
                r["expected_unreachable"],
                d["owners_checked"],
                d["owners_wrong"],
            ));
            bars.push((
                format!("{n}: {run}"),
                f(d, "wall_s"),
                f(d, "floor_keywarden_s"),
                f(d, "floor_any_s"),
            ));
        }
    }
    md.push_str("\n![wall times against the floors](benchmarks.svg)\n\n### AWS calls by operation and throttled answers by budget\n\n");
    for (n, mode, r) in &rows {
        for d in r["days"].as_array().into_iter().flatten() {
            md.push_str(&format!(
                "- {n} accounts, {mode}, day {}: `{}`; throttled `{}`\n",
                d["day"], d["aws_calls_by_operation"], d["throttled_by"]
            ));
        }
    }
    let out_dir = out.parent().unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(out_dir)?;
    std::fs::write(out_dir.join("benchmarks.svg"), chart(&bars))?;
    let raw: Vec<_> = rows.iter().map(|(_, _, r)| r.clone()).collect();
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
            report_ms,
            keywarden,
        } => matrix(out, &sizes, &report_ms, keywarden)?,
        Command::Greedy(args) => {
            let (spec, knobs) = (args.spec(), args.knobs());
            let endpoint = server::start(spec, knobs).await?;
            let wall = greedy::scan(endpoint.addr, &spec, &knobs.limits).await?;
            let stats = endpoint.stats();
            let fl = floors(
                &spec,
                &knobs,
                &stats,
                0,
                &Due {
                    privileges: &|_| true,
                    footprints: &|_| false,
                    tags: &|_| true,
                },
            );
            println!(
                "{}",
                serde_json::to_string_pretty(&serde_json::json!({
                    "accounts": spec.accounts,
                    "wall_s": wall,
                    "floor_any_s": fl.any,
                    "floor_scanner_s": fl.scanner,
                    "aws_calls": stats.calls.values().sum::<u64>(),
                    "throttled": stats.throttled,
                }))?
            );
        }
        Command::Spec(args) => println!(
            "{}",
            serde_json::to_string_pretty(&server::seed_spec(&args.spec()))?
        ),
    }
    Ok(())
}
