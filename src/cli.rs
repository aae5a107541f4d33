//! The command line: flags parsed raw by clap, turned into validated
//! [`Settings`], then handed to the scanner. Exit codes are a contract:
//! 0 complete and nothing at or above `--fail-on`; 1 findings at or above it;
//! 2 fatal error; 3 incomplete and nothing at or above `--fail-on`.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use jiff::Timestamp;

use crate::config::RawSettings;
use crate::core::checks::Severity;
use crate::core::report::Report;
use crate::core::templates::Templates;
use crate::deliver::webhook::Chat;
use crate::notify::{Delivery, Notifier};
use crate::output::{write_report, Format};
use crate::scan::{Mode, Progress, RunOptions, Scanner};

#[derive(Debug, Parser)]
#[command(
    name = "keywarden",
    version,
    about = "Finds stale, unused and dangerous IAM access keys across an AWS Organization"
)]
pub struct Cli {
    /// TOML settings file (also KEYWARDEN_CONFIG).
    #[arg(long, global = true, env = "KEYWARDEN_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Inventory every access key and report what needs attention (read-only).
    Scan(ScanArgs),
    /// Scan, then email every owner once and the security team a digest (SES v2).
    ///
    /// Needs `sender` (a verified SES identity) and `security_recipients` (who
    /// gets the digest): KEYWARDEN_SENDER and KEYWARDEN_SECURITY_RECIPIENTS, or
    /// the config file.
    Notify(NotifyArgs),
    /// Run one step of the Step Functions workflow (plan, shard, finish,
    /// deliver, close) with the Lambda's settings: the event is JSON, its
    /// output is printed. For replays and the local driver.
    Workflow(WorkflowArgs),
    /// Check a deployment read-only before its first run: the caller and the
    /// Organization, the member role in every account in scope, SES, the
    /// state, and each opt-in that is on. One line per check (✓ / ! / ✗)
    /// with its fix; exit 0 ready, 3 warnings only, 2 a blocker.
    Doctor(DoctorArgs),
}

#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// `text` (default) or `json` (one document: the checks, their status
    /// and fix, and the exit status they imply).
    #[arg(long, value_enum, default_value = "text")]
    pub format: DoctorFormat,
    /// Only these accounts (comma-separated ids); overrides include_accounts.
    #[arg(long)]
    pub accounts: Option<String>,
    /// Check the caller's own account only, without AWS Organizations.
    #[arg(long)]
    pub single_account: bool,
    /// Member-account role to assume; overrides role_name.
    #[arg(long)]
    pub role_name: Option<String>,
    /// Where the ledger lives (as for scan and notify).
    #[arg(long, value_name = "URI")]
    pub state: Option<String>,
}

/// How `keywarden doctor` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum DoctorFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct WorkflowArgs {
    /// The step's event (JSON), or `-` for standard input.
    #[arg(long, value_name = "FILE")]
    pub event: PathBuf,
}

#[derive(Debug, Args)]
pub struct NotifyArgs {
    #[command(flatten)]
    pub scan: ScanArgs,
    /// Render every message, send nothing.
    #[arg(long, conflicts_with = "outbox")]
    pub dry_run: bool,
    /// Write each message as .eml plus an .html preview into DIR instead of
    /// sending. Keeps a ledger only where --state (or KEYWARDEN_STATE, or the
    /// file) names one, never in the default state directory.
    #[arg(long, value_name = "DIR")]
    pub outbox: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct ScanArgs {
    /// Output format (default: table on a terminal, JSON otherwise).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Write the report to this file instead of standard output.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Evaluate as of this instant (RFC 3339), instead of now.
    #[arg(long, value_parser = parse_now)]
    pub now: Option<Timestamp>,
    /// Only these accounts (comma-separated ids); overrides include_accounts.
    #[arg(long)]
    pub accounts: Option<String>,
    /// Exit 1 when a finding is at or above this severity (low, medium, high, critical).
    #[arg(long, value_parser = parse_severity)]
    pub fail_on: Option<Severity>,
    /// Scan only the caller's own account, without AWS Organizations.
    #[arg(long)]
    pub single_account: bool,
    /// Member-account role to assume; overrides role_name.
    #[arg(long)]
    pub role_name: Option<String>,
    /// Accounts in flight at once; overrides concurrency.
    #[arg(long)]
    pub concurrency: Option<String>,
    /// Where the ledger and the report archive live: a directory or
    /// s3://bucket/prefix (default: the `state` setting, else
    /// $XDG_STATE_HOME/keywarden or ~/.local/state/keywarden).
    #[arg(long, value_name = "URI")]
    pub state: Option<String>,
    /// Run without memory: every finding is new, every owner is told, nothing is saved.
    #[arg(long, conflicts_with = "state")]
    pub no_state: bool,
}

fn parse_now(s: &str) -> Result<Timestamp, String> {
    s.parse::<Timestamp>()
        .map_err(|e| format!("{s:?} is not an RFC 3339 instant such as 2026-11-29T00:00:00Z: {e}"))
}

fn parse_severity(s: &str) -> Result<Severity, String> {
    Severity::parse(s).ok_or_else(|| format!("{s:?} is not one of low, medium, high, critical"))
}

/// Exit code for a finished run.
pub fn exit_code(report: &Report, fail_on: Option<Severity>) -> u8 {
    let over =
        matches!((fail_on, report.worst_severity()), (Some(min), Some(worst)) if worst >= min);
    if over {
        1
    } else if report.is_incomplete() {
        3
    } else {
        0
    }
}

/// Runs the CLI; returns the process exit code. Fatal errors come back as
/// `Err` and mean exit 2.
pub async fn run(cli: Cli) -> anyhow::Result<u8> {
    match cli.command {
        Command::Scan(args) => scan(cli.config, args, None).await,
        Command::Notify(args) => {
            let delivery = match (args.dry_run, args.outbox) {
                (true, _) => Delivery::DryRun,
                (false, Some(dir)) => Delivery::Outbox(dir),
                (false, None) => Delivery::Ses,
            };
            scan(cli.config, args.scan, Some(delivery)).await
        }
        Command::Workflow(args) => {
            let event = if args.event.as_os_str() == "-" {
                std::io::read_to_string(std::io::stdin())
                    .context("cannot read the event from standard input")?
            } else {
                std::fs::read_to_string(&args.event)
                    .with_context(|| format!("cannot read the event {}", args.event.display()))?
            };
            match Box::pin(crate::app::step_cli(cli.config, &event)).await {
                Ok(out) => {
                    println!("{out}");
                    Ok(0)
                }
                // A close whose run was incomplete: the summary is in the message.
                Err(e) if e.to_string().starts_with(crate::run::INCOMPLETE) => {
                    println!("{}", &e.to_string()[crate::run::INCOMPLETE.len()..]);
                    Ok(3)
                }
                Err(e) => Err(e),
            }
        }
        Command::Doctor(args) => doctor(cli.config, args).await,
    }
}

/// `keywarden doctor`: the checks, printed; the exit code they imply.
async fn doctor(config: Option<PathBuf>, args: DoctorArgs) -> anyhow::Result<u8> {
    let scan_args = ScanArgs {
        format: None,
        output: None,
        now: None,
        accounts: args.accounts,
        fail_on: None,
        single_account: args.single_account,
        role_name: args.role_name,
        concurrency: None,
        state: args.state,
        no_state: false,
    };
    let settings = settings(config, &scan_args)?;
    let state = settings.state.clone().or_else(default_state_dir);
    let sdk_config = crate::aws::load_sdk_config().await;
    let mode = if args.single_account {
        Mode::SingleAccount
    } else {
        Mode::Organization
    };
    let checkup = crate::doctor::Doctor {
        sdk_config: &sdk_config,
        settings: &settings,
        mode,
        state: state.as_deref(),
    }
    .examine()
    .await;
    match args.format {
        DoctorFormat::Text => print!("{}", checkup.render_text()),
        DoctorFormat::Json => println!("{}", serde_json::to_string_pretty(&checkup.to_json())?),
    }
    Ok(checkup.exit_code())
}

fn settings(config: Option<PathBuf>, args: &ScanArgs) -> anyhow::Result<crate::config::Settings> {
    let mut raw = RawSettings::defaults();
    if let Some(path) = &config {
        raw.merge_file(path)?;
    }
    raw.merge_env(std::env::vars())?;
    if let Some(a) = &args.accounts {
        raw.set_flag("include_accounts", a, "--accounts");
    }
    if let Some(r) = &args.role_name {
        raw.set_flag("role_name", r, "--role-name");
    }
    if let Some(c) = &args.concurrency {
        raw.set_flag("concurrency", c, "--concurrency");
    }
    if let Some(s) = &args.state {
        raw.set_flag("state", s, "--state");
    }
    Ok(raw.validate()?)
}

/// The CLI's default state directory: `$XDG_STATE_HOME/keywarden`, else
/// `~/.local/state/keywarden`.
fn default_state_dir() -> Option<String> {
    let base = std::env::var_os("XDG_STATE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".local/state"))
        })?;
    Some(base.join("keywarden").display().to_string())
}

/// `scan`, and with a delivery, `notify`.
async fn scan(
    config: Option<PathBuf>,
    args: ScanArgs,
    delivery: Option<Delivery>,
) -> anyhow::Result<u8> {
    let settings = settings(config, &args)?;
    let now = args
        .now
        .or(settings.clock_override)
        .unwrap_or_else(Timestamp::now);
    let format = args.format.unwrap_or(
        if std::io::stdout().is_terminal() && args.output.is_none() {
            Format::Table
        } else {
            Format::Json
        },
    );
    // An outbox run delivers nothing for real: it must not change what real
    // runs send or enforce, so it keeps a ledger only where one is named
    // explicitly (--state, KEYWARDEN_STATE, the file), never in the default
    // directory real runs share.
    let outbox = matches!(delivery, Some(Delivery::Outbox(_)));
    let state_location = if args.no_state {
        None
    } else if outbox {
        if settings.state.is_none() {
            tracing::info!("an outbox run keeps no ledger unless --state (or KEYWARDEN_STATE) names one: real runs' notices and enforcement are not affected");
        }
        settings.state.clone()
    } else {
        settings.state.clone().or_else(default_state_dir)
    };
    if state_location.is_none() && !args.no_state && !outbox {
        tracing::warn!(
            "no state directory (neither XDG_STATE_HOME nor HOME is set): running without a ledger"
        );
    }
    if let (Some(flag), Some(location)) = (args.now, &state_location) {
        check_clock(flag, Timestamp::now(), location)?;
    }
    if let Some(path) = &args.output {
        check_output(path)?;
    }
    let sdk_config = crate::aws::load_sdk_config().await;
    let store = state_location
        .as_deref()
        .map(|l| crate::state::Store::open(l, &sdk_config))
        .transpose()?;
    // Everything notify needs is checked before the scan: settings, templates, sender.
    let notifier = match &delivery {
        Some(d) => {
            let ns = settings.notify()?;
            let templates = Templates::load(
                &ns.template_overrides()?,
                ns.console_link_template.as_deref(),
            )?;
            let notifier = Notifier::new(
                &sdk_config,
                ns,
                settings.cadence,
                settings.enforce,
                templates,
            );
            notifier.preflight(d).await?;
            Some(notifier)
        }
        None => None,
    };
    // The chat summary goes with notify only; a channel that cannot be opened
    // is recorded as undelivered, it does not stop the run.
    let chat = match (&delivery, &settings.chat) {
        (Some(_), Some(c)) => Some(Chat::open(&sdk_config, c).await?),
        _ => None,
    };
    let cadence = settings.cadence;
    let enforcer = crate::enforce::Enforcer::new(
        &sdk_config,
        settings.enforce,
        &settings.enforce_role_name,
        settings.external_id.as_deref(),
    );
    let securityhub = (delivery.is_some() && settings.securityhub_export).then(|| {
        crate::deliver::securityhub::SecurityHubExport::new(
            &sdk_config,
            settings.securityhub_region.as_deref(),
            &settings.role_name,
            settings.external_id.as_deref(),
        )
    });
    let scanner = Scanner::new(sdk_config, settings);
    let mode = if args.single_account {
        Mode::SingleAccount
    } else {
        Mode::Organization
    };

    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{spinner} scanning accounts {pos}/{len} {wide_bar} {elapsed}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
        );
        crate::logging::set_progress_bar(Some(bar.clone()));
        bar
    });
    let progress = |p: Progress| {
        if let Some(bar) = &bar {
            match p {
                Progress::Discovered(n) => bar.inc_length(n as u64),
                Progress::Finished => bar.inc(1),
            }
        }
    };
    let plan = crate::run::Plan {
        notify: notifier.as_ref().zip(delivery.as_ref()),
        state: store,
        cadence,
        enforcer: Some(&enforcer),
        chat: chat.as_ref(),
        securityhub: securityhub.as_ref(),
    };
    let report = crate::run::execute(&scanner, plan, RunOptions::new(mode, now), &progress).await;
    if let Some(bar) = bar {
        crate::logging::set_progress_bar(None);
        bar.finish_and_clear();
    }
    let report = match report {
        Ok(report) => report,
        // Another run holds the lease: not an error of this run's settings
        // or access, but nothing was done (incomplete).
        Err(crate::run::RunError::State(e @ crate::state::StoreError::Leased { .. })) => {
            eprintln!("keywarden: {e}");
            return Ok(3);
        }
        Err(e) => return Err(e.into()),
    };
    if let Some(Delivery::Outbox(dir)) = &delivery {
        if let Some(digest) = report
            .notifications
            .iter()
            .rev()
            .find_map(|n| n.file.as_ref())
        {
            let n = report.notifications.len();
            eprintln!(
                "keywarden: wrote {n} {} to {}; open {} for the digest",
                if n == 1 { "message" } else { "messages" },
                dir.display(),
                digest.replace(".eml", ".html")
            );
        }
    }

    // A table shows what is missing; JSON, CSV and OCSF go to a file or a
    // pipe, so an incomplete run says so in one line on stderr as well.
    if format != Format::Table && report.is_incomplete() {
        eprintln!("keywarden: {}", incomplete_line(&report));
    }
    // Written as it is rendered: the JSON of a 20,000-account run is tens of
    // megabytes, and building it in memory first was the run's largest
    // allocation.
    match &args.output {
        Some(path) => {
            let file = std::fs::File::create(path)
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
            let mut w = std::io::BufWriter::new(file);
            write_report(&report, format, &mut w)
                .and_then(|()| w.flush().map_err(Into::into))
                .with_context(|| format!("cannot write the report to {}", path.display()))?;
        }
        None => {
            let mut w = std::io::BufWriter::new(std::io::stdout().lock());
            write_report(&report, format, &mut w)
                .and_then(|()| w.flush().map_err(Into::into))
                .context("cannot write the report to stdout")?;
        }
    }
    Ok(exit_code(&report, args.fail_on))
}

/// One line on what made a run incomplete (exit 3), for stderr.
fn incomplete_line(report: &Report) -> String {
    use crate::core::report::{AccountStatus, DeliveryOutcome};
    let failed = report
        .accounts
        .iter()
        .filter(|a| a.status == AccountStatus::Failed)
        .count();
    let undelivered = report
        .notifications
        .iter()
        .filter(|n| n.outcome == DeliveryOutcome::Failed)
        .count();
    let actions = report
        .actions
        .iter()
        .filter(|a| a.outcome == crate::core::record::Outcome::Failed)
        .count();
    let mut parts = Vec::new();
    let count =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    if failed > 0 {
        parts.push(count(failed, "account not scanned", "accounts not scanned"));
    }
    if !report.unknown_accounts.is_empty() {
        parts.push(count(
            report.unknown_accounts.len(),
            "requested account not in the Organization",
            "requested accounts not in the Organization",
        ));
    }
    if undelivered > 0 {
        parts.push(count(
            undelivered,
            "message not delivered",
            "messages not delivered",
        ));
    }
    if actions > 0 {
        parts.push(count(
            actions,
            "enforcement action failed",
            "enforcement actions failed",
        ));
    }
    for e in &report.errors {
        parts.push(format!("{} ({})", e.code, e.stage));
    }
    format!(
        "run incomplete (exit 3): {} (details in the report)",
        parts.join(", ")
    )
}

/// How far `--now` may be from the wall clock and still count as now.
pub const CLOCK_SKEW: jiff::SignedDuration = jiff::SignedDuration::from_secs(300);

/// A run whose clock is not the wall clock never uses the shared S3 ledger:
/// `--now 2030-01-01` saved there would silence reminders and enforcement
/// for the real days after, and `--now` day 0, 3, 6, 9 would let enforcement
/// act within seconds. With a local directory, the outbox or `--no-state`
/// it stays usable (tests, demos, what-ifs on the operator's own machine).
/// Checked before any AWS call.
pub fn check_clock(flag: Timestamp, wall: Timestamp, state: &str) -> anyhow::Result<()> {
    let off = flag.duration_since(wall).abs();
    if state.starts_with("s3://") && off > CLOCK_SKEW {
        anyhow::bail!(
            "--now {flag} is {} from the wall clock and the ledger is the shared one in S3 ({state}): \
             a run with another clock never reads or saves it. Use a local --state directory, \
             --no-state, or drop --now",
            friendly(off)
        );
    }
    Ok(())
}

fn friendly(d: jiff::SignedDuration) -> String {
    let secs = d.as_secs();
    if secs >= 2 * 86_400 {
        format!("{} days", secs / 86_400)
    } else if secs >= 2 * 3_600 {
        format!("{} hours", secs / 3_600)
    } else {
        format!("{} minutes", secs / 60)
    }
}

/// Fails before any scanning when the report could not be written: its
/// folder must exist.
fn check_output(path: &std::path::Path) -> anyhow::Result<()> {
    let parent = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    if !parent.is_dir() {
        anyhow::bail!(
            "cannot write the report to {}: the folder {} does not exist",
            path.display(),
            parent.display()
        );
    }
    Ok(())
}
