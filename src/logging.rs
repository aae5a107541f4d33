//! Log set-up. CLI: human-readable lines on stderr, filtered by
//! `KEYWARDEN_LOG` (or `RUST_LOG`), warnings and errors by default. Lambda:
//! Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! `AWS_LAMBDA_LOG_LEVEL`), INFO by default, on stdout.
//!
//! Whatever level is asked for, the SDK's signing and HTTP internals are
//! capped below TRACE: at TRACE they print canonical requests, which carry the
//! session token of assumed-role credentials.

use std::io::IsTerminal;

use tracing_subscriber::filter::{Directive, LevelFilter};
use tracing_subscriber::EnvFilter;

/// Targets that would log credentials at TRACE.
const SECRET_SAFE: &[&str] = &[
    "aws_sigv4=debug",
    "aws_smithy_runtime=debug",
    "aws_smithy_http_client=debug",
    "aws_smithy_runtime_api=debug",
    "aws_runtime=debug",
    "hyper=debug",
    "hyper_util=debug",
    "h2=debug",
];

fn secret_safe(mut filter: EnvFilter) -> EnvFilter {
    // Only a TRACE request needs capping; the caps must never raise a level.
    if filter.max_level_hint() != Some(LevelFilter::TRACE) {
        return filter;
    }
    for d in SECRET_SAFE {
        if let Ok(d) = d.parse::<Directive>() {
            filter = filter.add_directive(d);
        }
    }
    filter
}

/// A bare level (`INFO`, `debug`: any case, as Lambda spells it) or
/// `tracing` directives (`keywarden=debug,warn`).
fn filter(spec: &str, default: LevelFilter) -> EnvFilter {
    let base = match spec.trim().parse::<LevelFilter>() {
        Ok(level) => EnvFilter::builder()
            .with_default_directive(level.into())
            .parse_lossy(""),
        Err(_) => EnvFilter::builder()
            .with_default_directive(default.into())
            .parse_lossy(spec),
    };
    secret_safe(base)
}

/// The CLI's logging.
pub fn init() {
    let spec = std::env::var("KEYWARDEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn".to_owned());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec, LevelFilter::WARN))
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .try_init();
}

/// The Lambda's logging (as `lambda_runtime::tracing::init_default_subscriber`,
/// with the same cap on credential-bearing targets).
pub fn init_lambda() {
    let spec = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter(&spec, LevelFilter::INFO))
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
