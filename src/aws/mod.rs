//! AWS adapters: one module per service. SDK calls, pagination and error
//! classification live here; everything returned upward is a core type or
//! an [`AwsError`]. `SdkError` never leaves this module.

pub mod cloudtrail;
pub mod gate;
pub mod iam;
pub mod organizations;
pub mod s3;
pub mod securityhub;
pub mod ses;
pub mod ssm;
pub mod sts;

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, Region, SdkConfig};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use jiff::Timestamp;

/// Every AWS action keywarden calls: what the Lambda's execution role must
/// grant (the member role grants the IAM part). Terraform and the StackSet
/// template are held to these lists by tests/it/infra.rs.
pub fn all_actions() -> Vec<&'static str> {
    [
        organizations::ORGANIZATIONS_ACTIONS,
        sts::STS_ACTIONS,
        iam::IAM_ACTIONS,
        ses::SES_ACTIONS,
        s3::S3_ACTIONS,
    ]
    .concat()
}

/// A failed AWS call, classified: which operation, the AWS error code (or a
/// keywarden code for transport failures) and the message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{operation}: {code}: {message}")]
pub struct AwsError {
    pub operation: &'static str,
    pub code: String,
    pub message: String,
}

impl AwsError {
    pub fn new(operation: &'static str, code: &str, message: impl Into<String>) -> Self {
        Self {
            operation,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    /// The service's "slow down" in any of its spellings (the one list).
    pub fn is_throttling(&self) -> bool {
        matches!(
            self.code.as_str(),
            "Throttling"
                | "ThrottlingException"
                | "TooManyRequestsException"
                | "RequestLimitExceeded"
                | "LimitExceededException"
                | "SlowDown"
        )
    }

    /// Throttling or a service-side failure: worth asking again later.
    pub fn is_retryable(&self) -> bool {
        self.is_throttling()
            || matches!(
                self.code.as_str(),
                "ServiceUnavailable"
                    | "ServiceException"
                    | "InternalFailure"
                    | "Timeout"
                    | "ConnectionError"
            )
    }

    /// AccessDenied and its service-specific spellings.
    pub fn is_access_denied(&self) -> bool {
        matches!(
            self.code.as_str(),
            "AccessDenied"
                | "AccessDeniedException"
                | "UnauthorizedOperation"
                | "AuthorizationError"
        )
    }
}

/// Classifies an SDK error into an [`AwsError`].
///
/// When the SDK could not read an error code from the body (some emulators
/// and proxies answer in another XML shape), the raw body's `<Code>` and
/// `<Message>` are used, then the HTTP status.
pub(crate) fn classify<E>(operation: &'static str, err: SdkError<E, HttpResponse>) -> AwsError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, message) = match &err {
        SdkError::TimeoutError(_) => ("Timeout".to_owned(), "the request timed out".to_owned()),
        SdkError::DispatchFailure(f) => dispatch_failure(f),
        // An answer the SDK could not parse (an emulator or proxy speaking
        // another error shape): its status and body still say what happened.
        SdkError::ResponseError(r) => match from_raw(r.raw()) {
            (code, message) if code != "Unknown" => (code, message),
            _ => (
                "InvalidResponse".to_owned(),
                "the response could not be read".to_owned(),
            ),
        },
        SdkError::ConstructionFailure(_) => (
            "InvalidRequest".to_owned(),
            "the request could not be built".to_owned(),
        ),
        _ => match (err.code(), err.raw_response()) {
            (Some(code), _) => (code.to_owned(), err.message().unwrap_or("").to_owned()),
            (None, Some(raw)) => from_raw(raw),
            (None, None) => ("Unknown".to_owned(), DisplayErrorContext(&err).to_string()),
        },
    };
    AwsError {
        operation,
        code,
        message,
    }
}

/// A request that never reached AWS: no credentials, or no connection. One
/// line that says what to do, never a debug dump.
fn dispatch_failure(
    f: &aws_smithy_runtime_api::client::result::DispatchFailure,
) -> (String, String) {
    use aws_credential_types::provider::error::CredentialsError;
    // The credential provider's own error, wherever it sits in the chain.
    let mut source: Option<&(dyn std::error::Error + 'static)> = f
        .as_connector_error()
        .map(|c| c as &(dyn std::error::Error + 'static));
    while let Some(e) = source {
        if e.downcast_ref::<CredentialsError>().is_some() {
            // The provider chain's own text is a debug dump of every attempt:
            // say what to do instead.
            let message = match std::env::var("AWS_PROFILE") {
                Ok(p) if !p.is_empty() => format!(
                    "no AWS credentials for profile `{p}`: check that it exists in ~/.aws/config, and run `aws sso login --profile {p}` if it is an SSO profile"
                ),
                _ => "no AWS credentials found: set AWS_PROFILE (and run `aws sso login` for an SSO profile), or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY".to_owned(),
            };
            return ("NoCredentials".to_owned(), message);
        }
        source = e.source();
    }
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let what = match f.as_connector_error() {
        Some(c) if c.is_timeout() => "timed out".to_owned(),
        Some(c) if c.is_io() => "the connection failed".to_owned(),
        _ => "the request could not be sent".to_owned(),
    };
    (
        "ConnectionError".to_owned(),
        match endpoint {
            Some(url) => format!("cannot reach the endpoint {url} (AWS_ENDPOINT_URL): {what}"),
            None => format!("cannot reach AWS: {what}; check the network or proxy settings"),
        },
    )
}

fn xml_element<'a>(body: &'a str, name: &str) -> Option<&'a str> {
    let open = format!("<{name}>");
    let start = body.find(&open)? + open.len();
    let len = body[start..].find(&format!("</{name}>"))?;
    Some(&body[start..start + len])
}

fn from_raw(raw: &HttpResponse) -> (String, String) {
    let status = raw.status().as_u16();
    let body = raw
        .body()
        .bytes()
        .map(String::from_utf8_lossy)
        .unwrap_or_default();
    let code = xml_element(&body, "Code")
        .map(str::to_owned)
        .unwrap_or_else(|| {
            match status {
                403 => "AccessDenied",
                404 => "NotFound",
                409 => "ConditionalRequestConflict",
                412 => "PreconditionFailed",
                429 => "Throttling",
                500..=599 => "ServiceUnavailable",
                _ => "Unknown",
            }
            .to_owned()
        });
    let message = xml_element(&body, "Message")
        .map(str::to_owned)
        .unwrap_or_else(|| format!("HTTP {status}"));
    (code, message)
}

/// A retry partition without the retry quota: a batch scan must not give up
/// on an account because other accounts' calls were throttled first; the
/// attempt limit still bounds every call.
pub(crate) fn unlimited_retries(name: String) -> aws_sdk_iam::config::retry::RetryPartition {
    aws_sdk_iam::config::retry::RetryPartition::custom(name)
        .token_bucket(aws_sdk_iam::config::retry::TokenBucket::unlimited())
        .build()
}

/// Converts an SDK timestamp.
pub(crate) fn timestamp(dt: &aws_smithy_types::DateTime) -> Option<Timestamp> {
    Timestamp::new(dt.secs(), dt.subsec_nanos() as i32).ok()
}

/// Loads the SDK configuration the usual way (profiles, SSO, environment,
/// `AWS_ENDPOINT_URL`), with explicit retry and timeouts. IAM and
/// Organizations are global; without a configured region `us-east-1` is used
/// for signing.
///
/// Retry is the standard mode (exponential backoff with jitter, 10 attempts),
/// not the adaptive one: adaptive mode's client-side rate limiter starts from
/// the low request rate of a single account's calls and, after one throttling
/// answer, holds requests back for up to 10 s each (measured under a 30 %
/// throttling storm: 80 s for 4 accounts instead of a few).
///
/// One HTTP client serves every SDK client of the run. Without it, each
/// service client built from the configuration (one IAM and one CloudTrail
/// client per account) made its own: its own TLS configuration with the
/// system's root certificates loaded and parsed again, and its own
/// connection pool. With hundreds of accounts in flight that was ~100 KiB
/// and a connection or two per account (measured: 1,570 sockets and 180 MiB
/// at 2,000 accounts with 768 started), and no connection was ever reused
/// from one account to the next.
pub async fn load_sdk_config() -> SdkConfig {
    let base = aws_config::defaults(BehaviorVersion::latest())
        .http_client(shared_https_client())
        .retry_config(
            RetryConfig::standard()
                .with_max_attempts(10)
                .with_initial_backoff(Duration::from_millis(200))
                .with_max_backoff(Duration::from_secs(5)),
        )
        .timeout_config(
            TimeoutConfig::builder()
                .connect_timeout(Duration::from_secs(5))
                .operation_attempt_timeout(Duration::from_secs(30))
                .operation_timeout(Duration::from_secs(90))
                .build(),
        )
        .load()
        .await;
    if base.region().is_some() {
        base
    } else {
        base.into_builder()
            .region(Region::from_static("us-east-1"))
            .build()
    }
}

/// The SDK's default HTTPS client (hyper 1, rustls with aws-lc, the
/// system's roots, a proxy from the environment), built once: its
/// connectors, one per timeout setting, and their pools are shared by every
/// service client that uses it.
fn shared_https_client() -> aws_smithy_runtime_api::client::http::SharedHttpClient {
    use aws_smithy_http_client::{proxy::ProxyConfig, tls, Builder, ConnectorBuilder};
    Builder::new().build_with_connector_fn(|settings, components| {
        let mut conn = ConnectorBuilder::default().tls_provider(tls::Provider::Rustls(
            tls::rustls_provider::CryptoMode::AwsLc,
        ));
        conn.set_connector_settings(settings.cloned());
        if let Some(components) = components {
            conn.set_sleep_impl(components.sleep_impl());
        }
        conn.set_proxy_config(Some(ProxyConfig::from_env()));
        conn.build()
    })
}
