//! The Security Hub transport: every finding of the run imported into the
//! Security Hub of the account it belongs to (`securityhub_export`).
//!
//! Per account: the member role's credentials (the caller's own in its own
//! account), batches of at most 100 findings, at most [`RATE_PER_SEC`]
//! batches a second (under the documented `BatchImportFindings` quota of
//! 10/s per account and region, leaving room for other importers), throttling
//! retried by the SDK. Accounts go side by side (the quota is per account).
//! One account's failure is recorded as one notification (the digest names
//! it, exit 3) and never stops the others; an account where Security Hub is
//! not enabled is said once, in those words.

use std::path::Path;
use std::time::Duration;

use aws_config::SdkConfig;
use futures::StreamExt;
use tracing::{info, warn};

use super::Delivery;
use crate::aws::securityhub::SecurityHub;
use crate::aws::sts::{Caller, Sts};
use crate::aws::AwsError;
use crate::core::asff::{self, AsffFinding, Target};
use crate::core::model::AccountId;
use crate::core::report::{DeliveryOutcome, MessageKind, Notification, Report};
use crate::deadline::Deadline;

/// Batches a second per account.
pub const RATE_PER_SEC: u32 = 5;
/// Accounts exported side by side.
const ACCOUNTS_AT_ONCE: usize = 8;

/// The Security Hub export of a run.
#[derive(Debug, Clone)]
pub struct SecurityHubExport {
    sdk_config: SdkConfig,
    sts: Sts,
    role_name: String,
    external_id: Option<String>,
    region: String,
}

impl SecurityHubExport {
    /// Imports into `region` (the run's region unless set), assuming
    /// `role_name` in member accounts.
    pub fn new(
        sdk_config: &SdkConfig,
        region: Option<&str>,
        role_name: &str,
        external_id: Option<&str>,
    ) -> Self {
        let region = region
            .map(str::to_owned)
            .or_else(|| sdk_config.region().map(|r| r.to_string()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        Self {
            sdk_config: sdk_config.clone(),
            sts: Sts::new(sdk_config),
            role_name: role_name.to_owned(),
            external_id: external_id.map(str::to_owned),
            region,
        }
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// Exports `report` (or, for an outbox or a dry run, writes or counts
    /// what would be imported): one notification per account with findings.
    pub async fn export(
        &self,
        report: &Report,
        delivery: &Delivery,
        caller: &Caller,
        deadline: Option<Deadline>,
    ) -> Vec<Notification> {
        let target = Target {
            partition: caller.partition.clone(),
            region: self.region.clone(),
        };
        let by_account = asff::findings(report, &target, env!("CARGO_PKG_VERSION"));
        let names: std::collections::BTreeMap<&AccountId, &str> = report
            .accounts
            .iter()
            .map(|a| (&a.account_id, a.name.as_str()))
            .collect();
        let jobs = by_account.into_iter().map(|(account, findings)| {
            let label = format!(
                "Security Hub of {} ({account}) in {}",
                names.get(&account).copied().unwrap_or("?"),
                self.region
            );
            async move {
                let mut note = Notification {
                    kind: MessageKind::SecurityHub,
                    recipients: vec![label],
                    subject: summary(&findings),
                    findings: findings.len() as u64,
                    outcome: DeliveryOutcome::DryRun,
                    message_id: None,
                    error: None,
                    file: None,
                };
                // The Lambda's reserve is the mail's: no account is started in it.
                let late = deadline
                    .is_some_and(|d| tokio::time::Instant::now() + d.reserve >= d.at);
                let result = match delivery {
                    _ if late => Err(
                        "not exported this run: the invocation deadline was near (the next run exports it)"
                            .to_owned(),
                    ),
                    Delivery::DryRun => Ok(()),
                    Delivery::Outbox(dir) => write(dir, &account, &findings).map(|path| {
                        note.outcome = DeliveryOutcome::Outbox;
                        note.file = Some(path);
                    }),
                    Delivery::Ses => self.import(&account, caller, &findings).await.map(|()| {
                        note.outcome = DeliveryOutcome::Sent;
                    }),
                };
                if let Err(e) = result {
                    warn!(account = %account, error = %e, "findings not exported to Security Hub");
                    note.outcome = DeliveryOutcome::Failed;
                    note.error = Some(e);
                }
                note
            }
        });
        let notes: Vec<Notification> = futures::stream::iter(jobs)
            .buffered(ACCOUNTS_AT_ONCE)
            .collect()
            .await;
        let sent = notes
            .iter()
            .filter(|n| n.outcome == DeliveryOutcome::Sent)
            .count();
        if sent > 0 {
            info!(
                accounts = sent,
                region = %self.region,
                "findings exported to Security Hub"
            );
        }
        notes
    }

    async fn import(
        &self,
        account: &AccountId,
        caller: &Caller,
        findings: &[AsffFinding],
    ) -> Result<(), String> {
        let hub = if *account == caller.account {
            SecurityHub::new(&self.sdk_config, &self.region)
        } else {
            let role_arn = format!(
                "arn:{}:iam::{account}:role/{}",
                caller.partition, self.role_name
            );
            let creds = self
                .sts
                .assume_role(
                    &role_arn,
                    crate::aws::sts::EXPORT_SESSION,
                    self.external_id.as_deref(),
                )
                .await
                .map_err(|e| format!("cannot assume {role_arn}: {}: {}", e.code, e.message))?;
            SecurityHub::with_credentials(&self.sdk_config, &self.region, creds)
        };
        let interval = Duration::from_millis(1000 / u64::from(RATE_PER_SEC));
        let mut refused = Vec::new();
        let mut imported = 0u64;
        for (i, batch) in findings.chunks(asff::MAX_BATCH).enumerate() {
            if i > 0 {
                tokio::time::sleep(interval).await;
            }
            match hub.import(batch).await {
                Ok(out) => {
                    imported += out.succeeded;
                    refused.extend(out.refused);
                }
                Err(e) => return Err(explain(&e, account, &self.region, imported, findings.len())),
            }
        }
        match refused.first() {
            None => Ok(()),
            Some((id, code, message)) => Err(format!(
                "Security Hub refused {} of {} findings (first: {id}: {code}: {message})",
                refused.len(),
                findings.len()
            )),
        }
    }
}

/// One line that says what to do.
fn explain(e: &AwsError, account: &AccountId, region: &str, done: u64, total: usize) -> String {
    let partly = if done > 0 {
        format!(" ({done} of {total} findings were imported before)")
    } else {
        String::new()
    };
    match e.code.as_str() {
        "InvalidAccessException" => format!(
            "Security Hub is not enabled in account {account} in {region}: enable it there, or leave the account's findings to the digest{partly}"
        ),
        c if e.is_access_denied() || c == "AccessDenied" => format!(
            "not allowed to import findings into account {account}'s Security Hub: deploy the member-role StackSet with EnableSecurityHubExport=true (the management account: the function's role needs securityhub_export in Terraform){partly} [{}: {}]",
            e.code, e.message
        ),
        _ => format!("{}: {}: {}{partly}", e.operation, e.code, e.message),
    }
}

/// "3 active, 1 archived".
fn summary(findings: &[AsffFinding]) -> String {
    let archived = findings
        .iter()
        .filter(|f| f.record_state == asff::RecordState::Archived)
        .count();
    format!("{} active, {archived} archived", findings.len() - archived)
}

/// The outbox: what would have been imported, one ASFF JSON array per
/// account (`000-securityhub-<account>.json`).
fn write(dir: &Path, account: &AccountId, findings: &[AsffFinding]) -> Result<String, String> {
    let path = dir.join(format!("000-securityhub-{account}.json"));
    let text = serde_json::to_string_pretty(findings).map_err(|e| e.to_string())?;
    std::fs::write(&path, text + "\n")
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    Ok(path.display().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account() -> AccountId {
        AccountId::parse("222222222222").unwrap()
    }

    #[test]
    fn not_enabled_is_said_in_those_words() {
        let e = AwsError::new(
            "securityhub:BatchImportFindings",
            "InvalidAccessException",
            "Account 222222222222 is not subscribed to AWS Security Hub",
        );
        let line = explain(&e, &account(), "eu-west-1", 0, 3);
        assert!(
            line.starts_with("Security Hub is not enabled in account 222222222222 in eu-west-1")
        );
    }

    #[test]
    fn access_denied_names_the_stackset_parameter_and_partial_progress() {
        let e = AwsError::new(
            "securityhub:BatchImportFindings",
            "AccessDeniedException",
            "not authorized",
        );
        let line = explain(&e, &account(), "eu-west-1", 100, 150);
        assert!(line.contains("EnableSecurityHubExport=true"), "{line}");
        assert!(
            line.contains("100 of 150 findings were imported before"),
            "{line}"
        );
    }

    #[tokio::test]
    async fn nothing_is_started_inside_the_mail_reserve_and_each_account_says_why() {
        let report: Report = serde_json::from_str(crate::core::templates::SAMPLE_REPORT).unwrap();
        let config = aws_config::SdkConfig::builder()
            .behavior_version(aws_config::BehaviorVersion::latest())
            .build();
        let export = SecurityHubExport::new(&config, Some("eu-west-1"), "KeywardenScanRole", None);
        let caller = Caller {
            account: account(),
            partition: "aws".to_owned(),
            arn: String::new(),
        };
        let deadline = Deadline {
            at: tokio::time::Instant::now() + std::time::Duration::from_secs(30),
            reserve: std::time::Duration::from_secs(60),
        };
        let notes = export
            .export(&report, &Delivery::Ses, &caller, Some(deadline))
            .await;
        assert!(!notes.is_empty());
        for n in &notes {
            assert_eq!(n.outcome, DeliveryOutcome::Failed);
            assert!(
                n.error.as_deref().unwrap().contains("deadline was near"),
                "{n:?}"
            );
        }
    }

    #[test]
    fn other_errors_keep_operation_code_and_message() {
        let e = AwsError::new(
            "securityhub:BatchImportFindings",
            "InternalException",
            "boom",
        );
        assert_eq!(
            explain(&e, &account(), "us-east-1", 0, 1),
            "securityhub:BatchImportFindings: InternalException: boom"
        );
    }
}
