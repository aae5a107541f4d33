//! STS: who the caller is, and AssumeRole into member accounts.

use std::time::SystemTime;

use aws_config::SdkConfig;
use aws_credential_types::Credentials;

use super::{classify, AwsError};
use crate::core::model::AccountId;

/// STS actions that need a permission (GetCallerIdentity needs none); the
/// Lambda's role allows AssumeRole on the member role only.
pub const STS_ACTIONS: &[&str] = &["sts:AssumeRole"];

/// Assumed-role sessions last 900 s, the least STS allows and no shorter
/// than any account's budget (`account_timeout_secs` is at most 900). (The
/// member role's MaxSessionDuration stays at 3600 s, the least IAM allows.)
pub const SESSION_SECS: i32 = 900;

/// The session name of a scan (the scan role trusts it and the export's).
pub const SCAN_SESSION: &str = "keywarden-scan";
/// The session name of the Security Hub export (through the scan role).
pub const EXPORT_SESSION: &str = "keywarden-export";
/// The session name of enforcement: the only one the enforcement role trusts.
pub const ENFORCE_SESSION: &str = "keywarden-enforce";

/// The identity the run uses.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Caller {
    pub account: AccountId,
    /// `aws`, `aws-us-gov`, `aws-cn`: taken from the caller's ARN.
    pub partition: String,
    /// The caller's ARN (empty in events written before it was kept).
    #[serde(default)]
    pub arn: String,
}

/// STS calls, sharing one client.
#[derive(Debug, Clone)]
pub struct Sts {
    client: aws_sdk_sts::Client,
    /// One attempt per call: AssumeRole is retried by `gate`, which paces
    /// the caller's shared STS budget.
    once: aws_sdk_sts::Client,
    gate: std::sync::Arc<super::gate::Gate>,
    /// For the first call of a run: two attempts, so that missing credentials
    /// or an unreachable endpoint are said in a second, not after 10 retries.
    first: aws_sdk_sts::Client,
}

impl Sts {
    pub fn new(config: &SdkConfig) -> Self {
        Self::with_ceiling(config, 32)
    }

    /// At most `ceiling` AssumeRole calls in flight (the run's concurrency).
    pub fn with_ceiling(config: &SdkConfig, ceiling: usize) -> Self {
        let conf = aws_sdk_sts::config::Builder::from(config)
            .retry_partition(super::unlimited_retries("keywarden-sts".to_owned()))
            .build();
        let once = aws_sdk_sts::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        let first = aws_sdk_sts::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(2))
            .build();
        Self {
            client: aws_sdk_sts::Client::from_conf(conf),
            once: aws_sdk_sts::Client::from_conf(once),
            gate: std::sync::Arc::new(super::gate::Gate::new(ceiling)),
            first: aws_sdk_sts::Client::from_conf(first),
        }
    }

    pub fn from_client(client: aws_sdk_sts::Client) -> Self {
        Self {
            first: client.clone(),
            once: client.clone(),
            gate: std::sync::Arc::new(super::gate::Gate::new(32)),
            client,
        }
    }

    pub async fn caller(&self) -> Result<Caller, AwsError> {
        let op = "sts:GetCallerIdentity";
        // Two quick attempts say "no credentials" or "unreachable" at once;
        // throttling and service errors get the patient client.
        let out = match self.first.get_caller_identity().send().await {
            Ok(out) => out,
            Err(e) => {
                let e = classify(op, e);
                if !e.is_retryable() || matches!(e.code.as_str(), "ConnectionError" | "Timeout") {
                    return Err(e);
                }
                self.client
                    .get_caller_identity()
                    .send()
                    .await
                    .map_err(|e| classify(op, e))?
            }
        };
        let arn = out.arn().unwrap_or_default().to_owned();
        let account = AccountId::parse(out.account().unwrap_or_default())
            .map_err(|e| AwsError::new(op, "InvalidResponse", e.to_string()))?;
        let partition = arn
            .split(':')
            .nth(1)
            .filter(|p| !p.is_empty())
            .unwrap_or("aws")
            .to_owned();
        Ok(Caller {
            account,
            partition,
            arn,
        })
    }

    /// Who `creds` are (GetCallerIdentity with them): proves assumed-role
    /// credentials work without reading anything of the account.
    pub async fn whoami(config: &SdkConfig, creds: Credentials) -> Result<String, AwsError> {
        let conf = aws_sdk_sts::config::Builder::from(config)
            .credentials_provider(creds)
            .build();
        let out = aws_sdk_sts::Client::from_conf(conf)
            .get_caller_identity()
            .send()
            .await
            .map_err(|e| classify("sts:GetCallerIdentity", e))?;
        Ok(out.arn().unwrap_or_default().to_owned())
    }

    /// Assumes `role_arn` as `session` (one of the session names below:
    /// the member roles' trust policies tell them apart) and returns static
    /// credentials for it.
    pub async fn assume_role(
        &self,
        role_arn: &str,
        session: &str,
        external_id: Option<&str>,
    ) -> Result<Credentials, AwsError> {
        let op = "sts:AssumeRole";
        let out = self
            .gate
            .call(|| async {
                self.once
                    .assume_role()
                    .role_arn(role_arn)
                    .role_session_name(session)
                    .set_external_id(external_id.map(str::to_owned))
                    .duration_seconds(SESSION_SECS)
                    .send()
                    .await
                    .map_err(|e| classify(op, e))
            })
            .await?;
        let c = out.credentials().ok_or_else(|| {
            AwsError::new(op, "InvalidResponse", "AssumeRole returned no credentials")
        })?;
        let expiry = SystemTime::try_from(*c.expiration()).ok();
        Ok(Credentials::new(
            c.access_key_id(),
            c.secret_access_key(),
            Some(c.session_token().to_owned()),
            expiry,
            "keywarden-assume-role",
        ))
    }
}
