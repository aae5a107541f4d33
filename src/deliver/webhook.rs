//! The chat transport: one JSON payload (the run summary as Slack Block Kit,
//! a Teams Adaptive Card, or JSON; see `core::summary`) posted to a webhook.
//!
//! A webhook URL is a credential (whoever has it can post to the channel), so
//! it is never logged, never part of an error and never in the report: the
//! report names the target as `webhook (slack)`. Only `https://` URLs are
//! accepted, except plain HTTP to this machine's loopback (tests, local relays).
//!
//! Retries: 429 waits as long as `Retry-After` says (capped), 5xx and network
//! errors back off; any other 4xx is final. The whole post stays within a
//! fixed budget, and in the Lambda never waits past the invocation deadline
//! less its reserve, so a slow endpoint cannot cost the mail or the ledger.
//! Response bodies and errors are redacted of every part of the URL.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

use crate::aws::ssm::ParameterError;
use crate::config::{ChatSettings, ChatTarget, WebhookUrl};
use crate::core::summary::ChatFormat;

/// Attempts per post (the first try and three retries).
const ATTEMPTS: u32 = 4;
/// The longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest keywarden honours a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// Posts payloads to one webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    url: WebhookUrl,
    pub format: ChatFormat,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
}

impl Webhook {
    /// A webhook for `url`, posting `format` (inferred from the host when `None`).
    pub fn new(url: WebhookUrl, format: Option<ChatFormat>) -> Result<Self, String> {
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(|e| format!("cannot load the system's CA certificates: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        let client = Client::builder(TokioExecutor::new()).build(https);
        let format = format.unwrap_or_else(|| url.inferred_format());
        Ok(Self {
            url,
            format,
            client,
        })
    }

    /// How the report names this target: never the URL.
    pub fn label(&self) -> String {
        format!("webhook ({})", self.format.as_str())
    }

    /// Posts `body`, giving up at `until` (the invocation deadline less
    /// its reserve: the mail, the digest and the ledger save come after);
    /// `Err` says why it was not delivered (no URL in it).
    pub async fn post(&self, body: &Value, until: Option<Instant>) -> Result<(), String> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| e.to_string())?);
        let mut backoff = Duration::from_secs(1);
        let mut last = String::new();
        let left = || until.map(|u| u.saturating_duration_since(Instant::now()));
        for attempt in 1..=ATTEMPTS {
            let limit = left().map_or(ATTEMPT_TIMEOUT, |l| l.min(ATTEMPT_TIMEOUT));
            if limit < Duration::from_millis(100) {
                return Err(late(&last));
            }
            let wait = match self.attempt(bytes.clone(), limit).await {
                Ok(()) => return Ok(()),
                Err(Failure::Final(e)) => return Err(e),
                Err(Failure::RetryAfter(e, after)) => {
                    last = e;
                    after.unwrap_or(backoff).min(MAX_RETRY_AFTER)
                }
                Err(Failure::Transient(e)) => {
                    last = e;
                    backoff
                }
            };
            if attempt < ATTEMPTS {
                if left().is_some_and(|l| l <= wait) {
                    return Err(late(&last));
                }
                warn!(error = %last, attempt, wait_secs = wait.as_secs_f64(), "chat webhook post failed; retrying");
                tokio::time::sleep(wait).await;
                backoff *= 2;
            }
        }
        Err(format!("{last} (after {ATTEMPTS} attempts)"))
    }

    async fn attempt(&self, body: Bytes, limit: Duration) -> Result<(), Failure> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.expose())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("keywarden/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(body))
            .map_err(|_| Failure::Final("cannot build the request".to_owned()))?;
        let response = match tokio::time::timeout(limit, self.client.request(request)).await {
            Err(_) => {
                return Err(Failure::Transient(format!(
                    "no answer within {:.1} s",
                    limit.as_secs_f64()
                )))
            }
            Ok(Err(e)) => return Err(Failure::Transient(self.scrub(&error_chain(&e)))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = tokio::time::timeout(limit, response.into_body().collect())
            .await
            .ok()
            .and_then(|b| b.ok())
            .map(|b| String::from_utf8_lossy(&b.to_bytes()).into_owned())
            .unwrap_or_default();
        let what = format!("HTTP {}{}", status.as_u16(), snippet(&self.scrub(&text)));
        if status.is_success() {
            Ok(())
        } else if status == StatusCode::TOO_MANY_REQUESTS {
            Err(Failure::RetryAfter(what, retry_after))
        } else if status.is_server_error() {
            Err(Failure::Transient(what))
        } else {
            Err(Failure::Final(what))
        }
    }

    /// Removes every secret part of the URL from text that might echo it
    /// (an error, a response body): the report, the log, the digest and the
    /// archive never hold them.
    fn scrub(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for part in self.url.secret_parts() {
            out = out.replace(&part, "<redacted>");
        }
        out
    }
}

/// The run's chat channel: ready, or why it cannot be used this run (a
/// failure recorded like an undelivered message, never a reason to stop).
#[derive(Debug, Clone)]
pub enum Chat {
    Ready(Box<Webhook>),
    Broken { label: String, error: String },
}

impl Chat {
    /// Opens the channel the settings name, reading the URL from SSM when
    /// `webhook_url_parameter` is set. A channel that cannot be reached is
    /// `Broken` (recorded, the run goes on); a parameter that is not a
    /// SecureString is an invalid setting: `Err`, the run does not start.
    pub async fn open(
        sdk_config: &aws_config::SdkConfig,
        settings: &ChatSettings,
    ) -> Result<Self, ParameterError> {
        let label = format!(
            "webhook ({})",
            settings.format.map_or("inferred", |f| f.as_str())
        );
        let url = match &settings.target {
            ChatTarget::Url(url) => url.clone(),
            ChatTarget::Parameter(name) => {
                match crate::aws::ssm::secure_string(sdk_config, name).await {
                    Ok(value) => match WebhookUrl::parse(&value) {
                        Ok(url) => url,
                        Err(e) => {
                            return Ok(Chat::Broken {
                                label,
                                error: format!("the value of SSM parameter {name} {e}"),
                            })
                        }
                    },
                    Err(e @ ParameterError::NotSecure { .. }) => return Err(e),
                    Err(ParameterError::Aws(e)) => {
                        return Ok(Chat::Broken {
                            label,
                            error: format!("cannot read the webhook URL: {e}"),
                        })
                    }
                }
            }
        };
        Ok(match Webhook::new(url, settings.format) {
            Ok(w) => Chat::Ready(Box::new(w)),
            Err(error) => Chat::Broken { label, error },
        })
    }
}

/// Why a post stopped for the deadline, with the last failure if any.
fn late(last: &str) -> String {
    let mut e = "not posted this run: the invocation deadline was near".to_owned();
    if !last.is_empty() {
        e.push_str(&format!(" (last attempt: {last})"));
    }
    e
}

enum Failure {
    /// Not worth retrying (a 4xx other than 429).
    Final(String),
    /// 429: wait as long as the server asks.
    RetryAfter(String, Option<Duration>),
    /// 5xx, timeouts, network errors.
    Transient(String),
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// `: <first line of the body>` (at most 200 characters), or nothing.
fn snippet(body: &str) -> String {
    let line: String = body
        .lines()
        .next()
        .unwrap_or_default()
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if line.trim().is_empty() {
        String::new()
    } else {
        format!(": {}", line.trim())
    }
}
