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
//! fixed budget so a dead endpoint cannot eat the run's deadline.

use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, CONTENT_TYPE, RETRY_AFTER, USER_AGENT};
use hyper::{Method, Request, StatusCode};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;
use tracing::warn;

use crate::config::{ChatSettings, ChatTarget};
use crate::core::summary::ChatFormat;

/// Attempts per post (the first try and three retries).
const ATTEMPTS: u32 = 4;
/// The longest one attempt may take.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest keywarden honours a `Retry-After`.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(30);

/// A webhook URL: a secret. `Debug` and `Display` never show it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl std::fmt::Debug for WebhookUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookUrl(<secret>)")
    }
}

impl WebhookUrl {
    /// Accepts `https://host/...`, or `http://` to a loopback address. The
    /// error never repeats the value.
    pub fn parse(value: &str) -> Result<Self, String> {
        let value = value.trim();
        let uri: hyper::Uri = value
            .parse()
            .map_err(|_| "is not a URL (the value is secret and not shown)".to_owned())?;
        let host = uri.host().unwrap_or_default();
        match uri.scheme_str() {
            Some("https") if !host.is_empty() => Ok(Self(value.to_owned())),
            Some("http") if matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1") => {
                Ok(Self(value.to_owned()))
            }
            Some("http") => Err(
                "must be an https:// URL (plain http is allowed to this machine's loopback only)"
                    .to_owned(),
            ),
            _ => Err("must be an https:// URL".to_owned()),
        }
    }

    /// The host, to pick a format when none is set (never logged either).
    fn host(&self) -> String {
        self.0
            .parse::<hyper::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_ascii_lowercase))
            .unwrap_or_default()
    }

    /// The payload format a URL of this host expects: Slack's incoming
    /// webhooks, Teams' (Power Automate) Workflows, anything else JSON.
    pub fn inferred_format(&self) -> ChatFormat {
        let host = self.host();
        if host == "hooks.slack.com" || host.ends_with(".slack.com") {
            ChatFormat::Slack
        } else if host.ends_with(".logic.azure.com")
            || host.ends_with(".webhook.office.com")
            || host.ends_with(".powerplatform.com")
            || host.ends_with(".powerautomate.com")
        {
            ChatFormat::Teams
        } else {
            ChatFormat::Json
        }
    }
}

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

    /// Posts `body`; `Err` says why it was not delivered (no URL in it).
    pub async fn post(&self, body: &Value) -> Result<(), String> {
        let bytes = Bytes::from(serde_json::to_vec(body).map_err(|e| e.to_string())?);
        let mut backoff = Duration::from_secs(1);
        let mut last = String::new();
        for attempt in 1..=ATTEMPTS {
            let wait = match self.attempt(bytes.clone()).await {
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
                warn!(error = %last, attempt, wait_secs = wait.as_secs_f64(), "chat webhook post failed; retrying");
                tokio::time::sleep(wait).await;
                backoff *= 2;
            }
        }
        Err(format!("{last} (after {ATTEMPTS} attempts)"))
    }

    async fn attempt(&self, body: Bytes) -> Result<(), Failure> {
        let request = Request::builder()
            .method(Method::POST)
            .uri(self.url.0.as_str())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(
                USER_AGENT,
                HeaderValue::from_static(concat!("keywarden/", env!("CARGO_PKG_VERSION"))),
            )
            .body(Full::new(body))
            .map_err(|_| Failure::Final("cannot build the request".to_owned()))?;
        let response =
            match tokio::time::timeout(ATTEMPT_TIMEOUT, self.client.request(request)).await {
                Err(_) => {
                    return Err(Failure::Transient(format!(
                        "no answer within {} s",
                        ATTEMPT_TIMEOUT.as_secs()
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
        let text = tokio::time::timeout(ATTEMPT_TIMEOUT, response.into_body().collect())
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

    /// Removes the URL from text that might echo it.
    fn scrub(&self, text: &str) -> String {
        text.replace(self.url.0.as_str(), "<webhook URL>")
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
    /// `webhook_url_parameter` is set.
    pub async fn open(sdk_config: &aws_config::SdkConfig, settings: &ChatSettings) -> Self {
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
                            return Chat::Broken {
                                label,
                                error: format!("the value of SSM parameter {name} {e}"),
                            }
                        }
                    },
                    Err(e) => {
                        return Chat::Broken {
                            label,
                            error: format!("cannot read the webhook URL: {e}"),
                        }
                    }
                }
            }
        };
        match Webhook::new(url, settings.format) {
            Ok(w) => Chat::Ready(Box::new(w)),
            Err(error) => Chat::Broken { label, error },
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_urls_are_accepted_and_none_is_ever_shown() {
        let secret = "https://hooks.slack.com/services/T000/B000/XXXXSECRET";
        let url = WebhookUrl::parse(secret).unwrap();
        assert_eq!(format!("{url:?}"), "WebhookUrl(<secret>)");
        assert_eq!(url.inferred_format(), ChatFormat::Slack);
        assert!(WebhookUrl::parse("http://127.0.0.1:8080/hook").is_ok());
        for bad in [
            "http://example.com/hook?token=SECRET",
            "ftp://example.com/SECRET",
            "not a url SECRET",
            "",
        ] {
            let e = WebhookUrl::parse(bad).unwrap_err();
            assert!(!e.contains("SECRET") && !e.contains("example.com"), "{e}");
        }
    }

    #[test]
    fn the_format_follows_the_host_when_not_set() {
        for (url, format) in [
            (
                "https://prod-12.westeurope.logic.azure.com:443/workflows/abc/triggers/manual/paths/invoke?sig=x",
                ChatFormat::Teams,
            ),
            ("https://acme.webhook.office.com/webhookb2/x", ChatFormat::Teams),
            ("https://siem.example.com/ingest", ChatFormat::Json),
        ] {
            assert_eq!(WebhookUrl::parse(url).unwrap().inferred_format(), format, "{url}");
        }
    }
}
