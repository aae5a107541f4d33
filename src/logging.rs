//! Log set-up. CLI: human-readable lines on stderr, filtered by
//! `KEYWARDEN_LOG` (or `RUST_LOG`), warnings and errors by default. Lambda:
//! Lambda's advanced logging controls (`AWS_LAMBDA_LOG_FORMAT=JSON`,
//! `AWS_LAMBDA_LOG_LEVEL`), INFO by default, on stdout.
//!
//! Whatever filter is asked for, the SDK's signing and HTTP internals are
//! capped below TRACE (at TRACE they print canonical requests, which carry the
//! session token of assumed-role credentials), handlebars below INFO (at
//! DEBUG it prints every template context), and the SDK's
//! `LOG_SENSITIVE_BODIES` switch is never honoured.

use std::io::IsTerminal;

use tracing::Level;
use tracing_subscriber::filter::{filter_fn, LevelFilter};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

/// Targets that log credentials at TRACE (canonical requests with the
/// session token, request and response bodies): never above DEBUG.
const WIRE_TARGETS: &[&str] = &[
    "aws_sigv4",
    "aws_smithy_runtime",
    "aws_smithy_http_client",
    "aws_smithy_runtime_api",
    "aws_smithy_http",
    "aws_runtime",
    "aws_config",
    "hyper",
    "hyper_util",
    "h2",
    "rustls",
];

/// Targets that log data at DEBUG (handlebars logs every template context:
/// key ids, addresses, exemption reasons): never above WARN.
const DATA_TARGETS: &[&str] = &["handlebars"];

fn under(target: &str, roots: &[&str]) -> bool {
    roots.iter().any(|r| {
        target == *r
            || target
                .strip_prefix(r)
                .is_some_and(|rest| rest.starts_with("::"))
    })
}

/// Whether an event or span of `target` at `level` may be logged at all,
/// whatever the filter asked for (a per-target directive such as
/// `aws_smithy_runtime::client::orchestrator=trace` included).
pub fn safe_to_log(target: &str, level: Level) -> bool {
    if under(target, DATA_TARGETS) {
        level <= Level::WARN
    } else if under(target, WIRE_TARGETS) {
        level <= Level::DEBUG
    } else {
        true
    }
}

/// The SDK prints request and response bodies when this is set; keywarden
/// never lets it (it is removed before any client exists).
pub const SENSITIVE_BODIES_VAR: &str = "LOG_SENSITIVE_BODIES";

/// A bare level (`INFO`, `debug`: any case, as Lambda spells it) or
/// `tracing` directives (`keywarden=debug,warn`).
fn filter(spec: &str, default: LevelFilter) -> EnvFilter {
    match spec.trim().parse::<LevelFilter>() {
        Ok(level) => EnvFilter::builder()
            .with_default_directive(level.into())
            .parse_lossy(""),
        Err(_) => EnvFilter::builder()
            .with_default_directive(default.into())
            .parse_lossy(spec),
    }
}

fn install(layer: Box<dyn Layer<Registry> + Send + Sync>, env: EnvFilter) {
    // At start-up, before any SDK client reads the environment.
    std::env::remove_var(SENSITIVE_BODIES_VAR);
    let safe = filter_fn(|meta| safe_to_log(meta.target(), *meta.level()));
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(env).with_filter(safe))
        .try_init();
}

/// The progress bar being drawn, if any: log lines are written around it.
static BAR: std::sync::Mutex<Option<indicatif::ProgressBar>> = std::sync::Mutex::new(None);

/// Log lines are printed with the bar hidden and drawn again after them, so
/// no dead bar frame is left in the scrollback. `None` when the bar is done.
pub fn set_progress_bar(bar: Option<indicatif::ProgressBar>) {
    if let Ok(mut slot) = BAR.lock() {
        *slot = bar;
    }
}

/// stderr, writing around the progress bar.
struct AroundBar;

impl std::io::Write for AroundBar {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().ok().and_then(|b| b.clone());
        match bar {
            // One formatted event is one write: hide the bar, print, redraw.
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf).map(|()| buf.len())),
            None => std::io::stderr().write(buf),
        }
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// The CLI's logging.
pub fn init() {
    // By default the SDK's own loader warnings (no region in IMDS, a missing
    // config file) stay quiet: keywarden says what matters in one line.
    let spec = std::env::var("KEYWARDEN_LOG")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "warn,aws_config=error".to_owned());
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(|| AroundBar)
        .with_ansi(std::io::stderr().is_terminal())
        .with_target(false)
        .boxed();
    install(layer, filter(&spec, LevelFilter::WARN));
}

/// The Lambda's logging (as `lambda_runtime::tracing::init_default_subscriber`,
/// with the same caps).
pub fn init_lambda() {
    let spec = std::env::var("AWS_LAMBDA_LOG_LEVEL")
        .or_else(|_| std::env::var("RUST_LOG"))
        .unwrap_or_else(|_| "info".to_owned());
    let json = std::env::var("AWS_LAMBDA_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json"));
    let base = tracing_subscriber::fmt::layer()
        .with_target(false)
        .without_time()
        .with_writer(std::io::stdout);
    let layer = if json {
        base.json().boxed()
    } else {
        base.boxed()
    };
    install(layer, filter(&spec, LevelFilter::INFO));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_and_template_targets_are_capped_whatever_the_filter_says() {
        assert!(!safe_to_log(
            "aws_smithy_runtime::client::orchestrator",
            Level::TRACE
        ));
        assert!(safe_to_log(
            "aws_smithy_runtime::client::orchestrator",
            Level::DEBUG
        ));
        assert!(!safe_to_log("aws_sigv4", Level::TRACE));
        assert!(!safe_to_log("handlebars::render", Level::DEBUG));
        assert!(!safe_to_log("handlebars", Level::INFO));
        assert!(safe_to_log("handlebars::render", Level::WARN));
        assert!(safe_to_log("keywarden::scan", Level::TRACE));
        assert!(
            safe_to_log("hyperloop", Level::TRACE),
            "a prefix is not a parent"
        );
    }
}
