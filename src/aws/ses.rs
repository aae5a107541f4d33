//! SES v2: the account's send rate, sender verification and SendEmail with
//! raw MIME content.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::{Region, SdkConfig};
use aws_sdk_sesv2::types::{Destination, EmailContent, RawMessage, VerificationStatus};
use aws_smithy_types::Blob;

use super::{classify, AwsError};
use crate::core::model::EmailAddress;

/// SES actions notify calls (the Lambda's role grants these).
pub const SES_ACTIONS: &[&str] = &[
    "ses:GetAccount",
    "ses:GetEmailIdentity",
    "ses:SendEmail",
    "ses:SendRawEmail",
];

/// SES v2 calls in one region.
#[derive(Debug, Clone)]
pub struct Ses {
    client: aws_sdk_sesv2::Client,
    region: String,
}

/// Whether an identity may send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Identity {
    Verified,
    NotVerified,
    Missing,
}

/// The account's sending status, as SES v2 GetAccount says.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SesAccount {
    /// Out of the sandbox.
    pub production_access: bool,
    pub sending_enabled: bool,
    pub max_24_hour_send: Option<f64>,
    pub max_send_rate: Option<f64>,
    pub sent_last_24_hours: Option<f64>,
}

/// One SES identity's state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdentityInfo {
    pub verified: bool,
    pub dkim_signing: bool,
    /// `SUCCESS`, `PENDING`, `FAILED`, `NOT_STARTED`, … (`None`: not said).
    pub dkim_status: Option<String>,
}

impl Ses {
    /// SES in `region`, or the base configuration's region. Sending is
    /// paced to the account's rate by the caller, so standard retry (not the
    /// adaptive client-side limiter) handles the odd throttling answer.
    pub fn new(config: &SdkConfig, region: Option<&str>) -> Self {
        let mut b = aws_sdk_sesv2::config::Builder::from(config).retry_config(
            RetryConfig::standard()
                .with_max_attempts(4)
                .with_initial_backoff(Duration::from_millis(500)),
        );
        if let Some(r) = region {
            b = b.region(Region::new(r.to_owned()));
        }
        let conf = b.build();
        let region = conf
            .region()
            .map(|r| r.to_string())
            .unwrap_or_else(|| "us-east-1".into());
        Self {
            client: aws_sdk_sesv2::Client::from_conf(conf),
            region,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The account's maximum send rate (messages per second), if SES says.
    pub async fn max_send_rate(&self) -> Result<Option<f64>, AwsError> {
        let out = self
            .client
            .get_account()
            .send()
            .await
            .map_err(|e| classify("ses:GetAccount", e))?;
        Ok(out
            .send_quota()
            .map(|q| q.max_send_rate())
            .filter(|r| *r > 0.0))
    }

    /// The account's sending status (`keywarden doctor`).
    pub async fn account(&self) -> Result<SesAccount, AwsError> {
        let out = self
            .client
            .get_account()
            .send()
            .await
            .map_err(|e| classify("ses:GetAccount", e))?;
        let quota = out.send_quota();
        Ok(SesAccount {
            production_access: out.production_access_enabled(),
            sending_enabled: out.sending_enabled(),
            max_24_hour_send: quota.map(|q| q.max24_hour_send()),
            max_send_rate: quota.map(|q| q.max_send_rate()),
            sent_last_24_hours: quota.map(|q| q.sent_last24_hours()),
        })
    }

    /// What SES says of `identity` (the sender check, `keywarden doctor`);
    /// `None` when it is not an identity here.
    pub async fn identity_info(&self, identity: &str) -> Result<Option<IdentityInfo>, AwsError> {
        match self
            .client
            .get_email_identity()
            .email_identity(identity)
            .send()
            .await
        {
            Ok(out) => Ok(Some(IdentityInfo {
                // Either field says "verified"; some endpoints fill only VerificationStatus.
                verified: out.verified_for_sending_status()
                    || out.verification_status() == Some(&VerificationStatus::Success),
                dkim_signing: out.dkim_attributes().is_some_and(|d| d.signing_enabled()),
                dkim_status: out
                    .dkim_attributes()
                    .and_then(|d| d.status())
                    .map(|s| s.as_str().to_owned()),
            })),
            Err(e) => {
                let e = classify("ses:GetEmailIdentity", e);
                if e.code == "NotFoundException" {
                    Ok(None)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Whether `identity` (an address or a domain) exists and may send.
    pub async fn identity(&self, identity: &str) -> Result<Identity, AwsError> {
        Ok(match self.identity_info(identity).await? {
            Some(i) if i.verified => Identity::Verified,
            Some(_) => Identity::NotVerified,
            None => Identity::Missing,
        })
    }

    /// Sends one raw message; returns the SES message id.
    pub async fn send_raw(
        &self,
        from: &EmailAddress,
        to: &[EmailAddress],
        raw: Vec<u8>,
        configuration_set: Option<&str>,
    ) -> Result<String, AwsError> {
        let op = "ses:SendEmail";
        let raw = RawMessage::builder()
            .data(Blob::new(raw))
            .build()
            .map_err(|e| AwsError::new(op, "InvalidRequest", e.to_string()))?;
        let out = self
            .client
            .send_email()
            .from_email_address(from.as_str())
            .destination(
                Destination::builder()
                    .set_to_addresses(Some(to.iter().map(|a| a.to_string()).collect()))
                    .build(),
            )
            .content(EmailContent::builder().raw(raw).build())
            .set_configuration_set_name(configuration_set.map(str::to_owned))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(out.message_id().unwrap_or_default().to_owned())
    }
}
