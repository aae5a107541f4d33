//! The report as AWS Security Finding Format (ASFF) findings for Security
//! Hub's `BatchImportFindings`, grouped by the account they belong to (with
//! the default product, Security Hub only accepts a finding from its own
//! account).
//!
//! Ids are stable (`keywarden/<finding_id>`), so each run updates the same
//! Security Hub finding. With a ledger, a finding that ended this run is
//! re-imported with `RecordState: ARCHIVED` and compliance `PASSED` (Security
//! Hub then marks its workflow `RESOLVED`); without one, each run exports what
//! it saw. Exempt keys are not findings and are never exported as failed.
//!
//! Pure: no clock (times come from the report), no I/O.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Serialize;

use super::checks::{CheckId, Severity};
use super::model::AccountId;
use super::record::{finding_id, Resolved};
use super::report::{Finding, Report};

/// The ASFF version.
pub const SCHEMA_VERSION: &str = "2018-10-08";
/// The finding type keywarden reports under.
pub const FINDING_TYPE: &str = "Software and Configuration Checks/AWS Security Best Practices";

/// The ASFF types of an exposed key (`key-exposed`), from AWS's documented
/// taxonomy: the data (the key) is exposed, and it is a credential an
/// attacker can use.
pub const EXPOSED_TYPES: [&str; 2] = ["Effects/Data Exposure", "TTPs/Credential Access"];

/// The finding types of `check`.
pub fn types(check: CheckId) -> Vec<&'static str> {
    match check {
        CheckId::KeyExposed => EXPOSED_TYPES.to_vec(),
        _ => vec![FINDING_TYPE],
    }
}
/// Security Hub's limit per `BatchImportFindings` call.
pub const MAX_BATCH: usize = 100;

/// Where findings are imported: one region, the caller's partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub partition: String,
    pub region: String,
}

impl Target {
    /// The default product of `account`: the only one a custom integration
    /// may import into without a partner subscription.
    pub fn product_arn(&self, account: &AccountId) -> String {
        format!(
            "arn:{}:securityhub:{}:{account}:product/{account}/default",
            self.partition, self.region
        )
    }
}

/// One ASFF finding, with ASFF's field names when serialized (the outbox
/// and README show exactly what is imported).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AsffFinding {
    pub schema_version: &'static str,
    pub id: String,
    pub product_arn: String,
    pub product_name: &'static str,
    pub company_name: &'static str,
    pub generator_id: &'static str,
    pub aws_account_id: String,
    pub types: Vec<&'static str>,
    pub first_observed_at: String,
    pub last_observed_at: String,
    pub created_at: String,
    pub updated_at: String,
    pub finding_provider_fields: ProviderFields,
    pub title: String,
    pub description: String,
    pub remediation: Remediation,
    pub product_fields: BTreeMap<String, String>,
    pub resources: Vec<Resource>,
    pub compliance: Compliance,
    pub record_state: RecordState,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderFields {
    pub severity: ProviderSeverity,
    pub types: Vec<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ProviderSeverity {
    /// `LOW`, `MEDIUM`, `HIGH`, `CRITICAL`.
    pub label: &'static str,
    /// keywarden's own word for it.
    pub original: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Remediation {
    pub recommendation: Recommendation,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Recommendation {
    pub text: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<&'static str>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Compliance {
    pub status: ComplianceStatus,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ComplianceStatus {
    Failed,
    Passed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecordState {
    Active,
    Archived,
}

/// A resource of a finding: the access key, or the account (root keys).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Resource {
    #[serde(rename = "Type")]
    pub kind: &'static str,
    pub id: String,
    pub partition: String,
    pub region: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub details: Option<ResourceDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ResourceDetails {
    pub aws_iam_access_key: AccessKeyDetails,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccessKeyDetails {
    pub principal_name: String,
    pub principal_type: &'static str,
    /// `Active` or `Inactive`; unknown for a resolved finding.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

fn label(s: Severity) -> (&'static str, &'static str) {
    match s {
        Severity::Low => ("LOW", "low"),
        Severity::Medium => ("MEDIUM", "medium"),
        Severity::High => ("HIGH", "high"),
        Severity::Critical => ("CRITICAL", "critical"),
    }
}

/// ASFF's date format (RFC 3339, UTC, `Z`).
fn time(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// At most `max` characters (ASFF limits: title 256, description 1024,
/// recommendation 512).
fn clip(s: String, max: usize) -> String {
    if s.chars().count() <= max {
        return s;
    }
    let mut out: String = s.chars().take(max - 1).collect();
    out.push('…');
    out
}

/// `aws`, `aws-cn` or `aws-us-gov`, from a user ARN (the target's when none).
fn partition_of<'a>(arn: &'a str, fallback: &'a str) -> &'a str {
    arn.split(':')
        .nth(1)
        .filter(|p| p.starts_with("aws"))
        .unwrap_or(fallback)
}

fn resources(
    target: &Target,
    account: &AccountId,
    user_name: &str,
    key: Option<&str>,
    partition: &str,
    status: Option<&'static str>,
    created: Option<Timestamp>,
) -> Vec<Resource> {
    let account_resource = Resource {
        kind: "AwsAccount",
        id: format!("AWS::::Account:{account}"),
        partition: partition.to_owned(),
        region: target.region.clone(),
        details: None,
    };
    match key {
        Some(key) => vec![
            Resource {
                kind: "AwsIamAccessKey",
                id: format!("AWS::IAM::AccessKey:{key}"),
                partition: partition.to_owned(),
                region: target.region.clone(),
                details: Some(ResourceDetails {
                    aws_iam_access_key: AccessKeyDetails {
                        principal_name: user_name.to_owned(),
                        principal_type: "IAMUser",
                        status,
                        created_at: created.map(time),
                    },
                }),
            },
            account_resource,
        ],
        None => vec![account_resource],
    }
}

/// AWS's own guide to fixing it (ASFF's recommendation URL).
fn docs(check: CheckId) -> &'static str {
    match check {
        CheckId::RootAccessKey => {
            "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_root-user_manage_delete-key.html"
        }
        CheckId::KeyExposed => {
            "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html#rotating_access_keys_console"
        }
        CheckId::KeyAgeOverdue
        | CheckId::KeyAgeWarning
        | CheckId::KeyUnused
        | CheckId::TwoActiveKeys
        | CheckId::InactiveKeyStale => {
            "https://docs.aws.amazon.com/IAM/latest/UserGuide/id_credentials_access-keys.html"
        }
    }
}

fn subject(key: Option<&str>, user_name: &str) -> String {
    match key {
        Some(k) => format!("Access key {k} of IAM user {user_name}"),
        None => "The root user's access key".to_owned(),
    }
}

/// Every finding of `report` to import, by account: one per finding seen
/// this run (`ACTIVE`, `FAILED`), then one per finding resolved this run
/// (`ARCHIVED`, `PASSED`). `version` is keywarden's.
pub fn findings(
    report: &Report,
    target: &Target,
    version: &str,
) -> BTreeMap<AccountId, Vec<AsffFinding>> {
    let mut out: BTreeMap<AccountId, Vec<AsffFinding>> = BTreeMap::new();
    for f in &report.findings {
        out.entry(f.account_id.clone())
            .or_default()
            .push(open(report, f, target, version));
    }
    for r in &report.resolved {
        out.entry(r.account_id.clone())
            .or_default()
            .push(resolved(report, r, target, version));
    }
    out
}

fn open(report: &Report, f: &Finding, target: &Target, version: &str) -> AsffFinding {
    let check = f.check.check();
    let id = f
        .finding_id
        .clone()
        .unwrap_or_else(|| finding_id(&f.account_id, f.access_key_id.as_ref(), f.check));
    let now = report.evaluated_at;
    let first_seen = f.first_seen.unwrap_or(now);
    let key = f.access_key_id.as_ref().map(|k| k.as_str());
    let partition = partition_of(&f.user_arn, &target.partition);
    let (label, original) = label(f.severity);
    let mut fields = BTreeMap::from([
        ("keywarden/Version".to_owned(), version.to_owned()),
        ("keywarden/CheckId".to_owned(), f.check.as_str().to_owned()),
        ("keywarden/FindingId".to_owned(), id.clone()),
        ("keywarden/AccountName".to_owned(), f.account_name.clone()),
        ("keywarden/UserArn".to_owned(), f.user_arn.clone()),
    ]);
    if !f.remediation.is_empty() {
        fields.insert("keywarden/Action".to_owned(), f.remediation.clone());
    }
    if let Some(age) = f.age_days {
        fields.insert("keywarden/AgeDays".to_owned(), age.to_string());
    }
    if let Some(used) = f.last_used_at {
        fields.insert("keywarden/LastUsedAt".to_owned(), time(used));
    }
    if let Some(due) = f.due_at {
        fields.insert("keywarden/DueAt".to_owned(), time(due));
    }
    if let Some(owner) = &f.owner.email {
        fields.insert("keywarden/Owner".to_owned(), owner.as_str().to_owned());
    }
    if let Some(p) = &f.privilege {
        fields.insert(
            "keywarden/Privilege".to_owned(),
            p.class.as_str().to_owned(),
        );
        if p.conditional {
            fields.insert(
                "keywarden/PrivilegeConditional".to_owned(),
                "true".to_owned(),
            );
        }
        if !p.evidence.is_empty() {
            fields.insert(
                "keywarden/PrivilegeEvidence".to_owned(),
                clip(p.evidence.join("; "), 1024),
            );
        }
    }
    if let Some(r) = &f.risk {
        fields.insert("keywarden/RiskRank".to_owned(), r.rank.to_string());
        fields.insert(
            "keywarden/RiskReason".to_owned(),
            clip(r.reason.clone(), 1024),
        );
    }
    if let Some(u) = &f.usage {
        fields.insert(
            "keywarden/Usage".to_owned(),
            clip(crate::core::notify::rows::used(u), 1024),
        );
    }
    if let Some(r) = &f.replace_with {
        fields.insert(
            "keywarden/ReplaceWith".to_owned(),
            r.kind.as_str().to_owned(),
        );
        fields.insert(
            "keywarden/ReplaceWithReason".to_owned(),
            clip(r.reason.clone(), 1024),
        );
    }
    AsffFinding {
        schema_version: SCHEMA_VERSION,
        id: format!("keywarden/{id}"),
        product_arn: target.product_arn(&f.account_id),
        product_name: "keywarden",
        company_name: "keywarden",
        generator_id: f.check.as_str(),
        aws_account_id: f.account_id.to_string(),
        types: types(f.check),
        first_observed_at: time(first_seen),
        last_observed_at: time(now),
        created_at: time(first_seen),
        updated_at: time(now),
        finding_provider_fields: ProviderFields {
            severity: ProviderSeverity { label, original },
            types: types(f.check),
        },
        title: clip(check.title.to_owned(), 256),
        description: clip(
            format!(
                "{} in account {} ({}): {}",
                subject(key, &f.user_name),
                f.account_name,
                f.account_id,
                check.risk
            ),
            1024,
        ),
        remediation: Remediation {
            recommendation: Recommendation {
                text: clip(
                    [f.remediation.as_str(), check.remediation]
                        .iter()
                        .filter(|t| !t.is_empty())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" "),
                    512,
                ),
                url: Some(docs(f.check)),
            },
        },
        product_fields: fields,
        resources: resources(
            target,
            &f.account_id,
            &f.user_name,
            key,
            partition,
            Some(f.key_status.as_str()),
            f.created_at,
        ),
        compliance: Compliance {
            status: ComplianceStatus::Failed,
        },
        record_state: RecordState::Active,
    }
}

fn resolved(report: &Report, r: &Resolved, target: &Target, version: &str) -> AsffFinding {
    let check = r.check.check();
    let now = report.evaluated_at;
    let key = r.access_key_id.as_ref().map(|k| k.as_str());
    let (label, original) = label(r.severity);
    let fields = BTreeMap::from([
        ("keywarden/Version".to_owned(), version.to_owned()),
        ("keywarden/CheckId".to_owned(), r.check.as_str().to_owned()),
        ("keywarden/FindingId".to_owned(), r.finding_id.clone()),
        ("keywarden/AccountName".to_owned(), r.account_name.clone()),
        ("keywarden/Resolution".to_owned(), r.how.as_str().to_owned()),
        ("keywarden/DaysOpen".to_owned(), r.days_open.to_string()),
    ]);
    AsffFinding {
        schema_version: SCHEMA_VERSION,
        id: format!("keywarden/{}", r.finding_id),
        product_arn: target.product_arn(&r.account_id),
        product_name: "keywarden",
        company_name: "keywarden",
        generator_id: r.check.as_str(),
        aws_account_id: r.account_id.to_string(),
        types: types(r.check),
        first_observed_at: time(r.first_seen),
        last_observed_at: time(r.resolved_at),
        created_at: time(r.first_seen),
        updated_at: time(now),
        finding_provider_fields: ProviderFields {
            severity: ProviderSeverity { label, original },
            types: types(r.check),
        },
        title: clip(check.title.to_owned(), 256),
        description: clip(
            format!(
                "Resolved ({}): {} in account {} ({}).",
                r.how.as_str().replace('_', " "),
                subject(key, &r.user_name),
                r.account_name,
                r.account_id
            ),
            1024,
        ),
        remediation: Remediation {
            recommendation: Recommendation {
                text: "Nothing to do: keywarden no longer sees this finding.".to_owned(),
                url: Some(docs(r.check)),
            },
        },
        product_fields: fields,
        resources: resources(
            target,
            &r.account_id,
            &r.user_name,
            key,
            &target.partition,
            None,
            None,
        ),
        compliance: Compliance {
            status: ComplianceStatus::Passed,
        },
        record_state: RecordState::Archived,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target() -> Target {
        Target {
            partition: "aws".to_owned(),
            region: "eu-west-1".to_owned(),
        }
    }

    #[test]
    fn product_arn_is_the_accounts_default_product() {
        let a = AccountId::parse("111111111111").unwrap();
        assert_eq!(
            target().product_arn(&a),
            "arn:aws:securityhub:eu-west-1:111111111111:product/111111111111/default"
        );
    }

    #[test]
    fn clip_keeps_short_text_and_marks_cut_text() {
        assert_eq!(clip("abc".to_owned(), 3), "abc");
        assert_eq!(clip("abcd".to_owned(), 3), "ab…");
        assert_eq!(clip("é".repeat(600), 512).chars().count(), 512);
    }

    #[test]
    fn times_are_utc_with_millis() {
        let t: Timestamp = "2026-11-30T07:00:00Z".parse().unwrap();
        assert_eq!(time(t), "2026-11-30T07:00:00.000Z");
    }
}
