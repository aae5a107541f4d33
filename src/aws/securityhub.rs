//! Security Hub: `BatchImportFindings` into one account's default product,
//! with that account's credentials (the member role's, or the caller's own in
//! its own account).

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_securityhub::types::{
    AwsIamAccessKeyDetails, AwsIamAccessKeyStatus, AwsSecurityFinding, Compliance,
    ComplianceStatus, FindingProviderFields, FindingProviderSeverity, Partition, Recommendation,
    RecordState, Remediation, Resource, ResourceDetails, SeverityLabel,
};

use super::{classify, AwsError};
use crate::core::asff::{self, AsffFinding};

/// The one Security Hub action, only with `securityhub_export`: granted on
/// the account's own default product (the Lambda's role for the management
/// account, the member role with `EnableSecurityHubExport` elsewhere).
pub const SECURITYHUB_ACTIONS: &[&str] = &["securityhub:BatchImportFindings"];

/// What `keywarden doctor` reads, with the same opt-in: whether Security
/// Hub is on (granted on the account's own hub).
pub const SECURITYHUB_DOCTOR_ACTIONS: &[&str] = &["securityhub:DescribeHub"];

/// What one `BatchImportFindings` call did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    pub succeeded: u64,
    /// Findings Security Hub refused: (id, error code, message).
    pub refused: Vec<(String, String, String)>,
}

/// A Security Hub client for one account and region.
#[derive(Debug, Clone)]
pub struct SecurityHub {
    client: aws_sdk_securityhub::Client,
}

impl SecurityHub {
    /// With the caller's own credentials, in `region`.
    pub fn new(config: &SdkConfig, region: &str) -> Self {
        let conf = aws_sdk_securityhub::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_owned()))
            .retry_partition(super::unlimited_retries("keywarden-securityhub".to_owned()))
            .build();
        Self {
            client: aws_sdk_securityhub::Client::from_conf(conf),
        }
    }

    /// With assumed-role credentials for another account.
    pub fn with_credentials(config: &SdkConfig, region: &str, creds: Credentials) -> Self {
        let conf = aws_sdk_securityhub::config::Builder::from(config)
            .region(aws_config::Region::new(region.to_owned()))
            .credentials_provider(creds)
            .retry_partition(super::unlimited_retries("keywarden-securityhub".to_owned()))
            .build();
        Self {
            client: aws_sdk_securityhub::Client::from_conf(conf),
        }
    }

    /// Whether Security Hub is enabled here (DescribeHub; AWS answers
    /// InvalidAccessException where it is not).
    pub async fn enabled(&self) -> Result<bool, AwsError> {
        match self.client.describe_hub().send().await {
            Ok(_) => Ok(true),
            Err(e) => {
                let e = classify("securityhub:DescribeHub", e);
                if e.code == "InvalidAccessException" {
                    Ok(false)
                } else {
                    Err(e)
                }
            }
        }
    }

    /// Imports one batch (at most [`asff::MAX_BATCH`] findings). Throttling is
    /// retried by the SDK (standard mode); what still fails is an error.
    pub async fn import(&self, batch: &[AsffFinding]) -> Result<Imported, AwsError> {
        let op = "securityhub:BatchImportFindings";
        debug_assert!(batch.len() <= asff::MAX_BATCH);
        let out = self
            .client
            .batch_import_findings()
            .set_findings(Some(batch.iter().map(to_sdk).collect()))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        Ok(Imported {
            succeeded: out.success_count().unwrap_or(0).max(0) as u64,
            refused: out
                .failed_findings()
                .iter()
                .map(|f| {
                    (
                        f.id().unwrap_or_default().to_owned(),
                        f.error_code().unwrap_or_default().to_owned(),
                        f.error_message().unwrap_or_default().to_owned(),
                    )
                })
                .collect(),
        })
    }
}

fn to_sdk(f: &AsffFinding) -> AwsSecurityFinding {
    let severity = FindingProviderSeverity::builder()
        .label(SeverityLabel::from(
            f.finding_provider_fields.severity.label,
        ))
        .original(f.finding_provider_fields.severity.original)
        .build();
    let mut provider = FindingProviderFields::builder().severity(severity);
    for t in &f.finding_provider_fields.types {
        provider = provider.types(*t);
    }
    let recommendation = Recommendation::builder()
        .text(&f.remediation.recommendation.text)
        .set_url(f.remediation.recommendation.url.map(str::to_owned))
        .build();
    let compliance = Compliance::builder()
        .status(match f.compliance.status {
            asff::ComplianceStatus::Failed => ComplianceStatus::Failed,
            asff::ComplianceStatus::Passed => ComplianceStatus::Passed,
        })
        .build();
    let mut b = AwsSecurityFinding::builder()
        .schema_version(f.schema_version)
        .id(&f.id)
        .product_arn(&f.product_arn)
        .product_name(f.product_name)
        .company_name(f.company_name)
        .generator_id(f.generator_id)
        .aws_account_id(&f.aws_account_id)
        .first_observed_at(&f.first_observed_at)
        .last_observed_at(&f.last_observed_at)
        .created_at(&f.created_at)
        .updated_at(&f.updated_at)
        .finding_provider_fields(provider.build())
        .title(&f.title)
        .description(&f.description)
        .remediation(
            Remediation::builder()
                .recommendation(recommendation)
                .build(),
        )
        .compliance(compliance)
        .record_state(match f.record_state {
            asff::RecordState::Active => RecordState::Active,
            asff::RecordState::Archived => RecordState::Archived,
        });
    for t in &f.types {
        b = b.types(*t);
    }
    for (k, v) in &f.product_fields {
        b = b.product_fields(k, v);
    }
    for r in &f.resources {
        b = b.resources(resource(r));
    }
    b.build()
}

fn resource(r: &asff::Resource) -> Resource {
    let details = r.details.as_ref().map(|d| {
        let k = &d.aws_iam_access_key;
        let key = AwsIamAccessKeyDetails::builder()
            .principal_name(&k.principal_name)
            .principal_type(k.principal_type)
            .set_status(k.status.map(AwsIamAccessKeyStatus::from))
            .set_created_at(k.created_at.clone())
            .build();
        ResourceDetails::builder().aws_iam_access_key(key).build()
    });
    Resource::builder()
        .r#type(r.kind)
        .id(&r.id)
        .partition(Partition::from(r.partition.as_str()))
        .region(&r.region)
        .set_details(details)
        .build()
}
