//! Opt-in enforcement, acting: for the keys `core::enforce::select` chose,
//! `plan` records what `apply` would do; `apply` re-reads the key with the
//! enforcement role (`KeywardenEnforceRole`; the caller's own credentials in
//! its own account), checks it still exists with the same status and
//! creation date, and deactivates (or deletes) exactly that key. Every
//! action, done or failed, is in the report and the ledger; a failure never
//! stops the others.

use aws_config::SdkConfig;
use tracing::{info, warn};

use crate::aws::iam::Iam;
use crate::aws::sts::{Caller, Sts};
use crate::aws::AwsError;
use crate::core::enforce::{select, EnforcePolicy, Mode, Selected};
use crate::core::ledger::Ledger;
use crate::core::model::{AccessKeyId, KeyStatus};
use crate::core::record::How;
use crate::core::record::{Action, ActionRecord, Outcome};
use crate::core::report::Report;

/// The enforcement side of a run.
#[derive(Debug, Clone)]
pub struct Enforcer {
    sdk_config: SdkConfig,
    sts: Sts,
    policy: EnforcePolicy,
    role_name: String,
    external_id: Option<String>,
}

impl Enforcer {
    pub fn new(
        sdk_config: &SdkConfig,
        policy: EnforcePolicy,
        role_name: &str,
        external_id: Option<&str>,
    ) -> Self {
        Self {
            sdk_config: sdk_config.clone(),
            sts: Sts::new(sdk_config),
            policy,
            role_name: role_name.to_owned(),
            external_id: external_id.map(str::to_owned),
        }
    }

    pub fn policy(&self) -> &EnforcePolicy {
        &self.policy
    }

    /// This enforcer for a run that may act (`notify`, not a dry run) or
    /// may not (`scan`, `--dry-run`: `apply` becomes `plan`).
    pub fn for_run(&self, may_act: bool) -> Self {
        let mut e = self.clone();
        if !may_act && e.policy.mode == Mode::Apply {
            e.policy.mode = Mode::Plan;
        }
        e
    }

    /// The access key this run is signed with, when it is a long-term user
    /// key (never acted on).
    async fn callers_key(&self) -> Option<AccessKeyId> {
        use aws_credential_types::provider::ProvideCredentials;
        let provider = self.sdk_config.credentials_provider()?;
        let creds = provider.provide_credentials().await.ok()?;
        AccessKeyId::parse(creds.access_key_id()).ok()
    }

    /// Plans or applies enforcement for this run; records every action in
    /// `report.actions` and, when done, in the ledger.
    pub async fn run(&self, report: &mut Report, ledger: &mut Ledger, caller: &Caller) {
        if self.policy.mode == Mode::Off {
            return;
        }
        let callers_key = self.callers_key().await;
        let selection = select(report, ledger, &self.policy, callers_key.as_ref());
        report.actions_waiting = selection.waiting as u64;
        if selection.waiting > 0 {
            warn!(
                waiting = selection.waiting,
                cap = self.policy.max_per_day,
                "more keys are eligible than enforce_max_per_day: the rest wait for the next run"
            );
        }
        for s in selection.selected {
            let record = |outcome, error: Option<String>| ActionRecord {
                finding_id: s.finding_id.clone(),
                action: s.action,
                outcome,
                account_id: s.account_id.clone(),
                user_name: s.user_name.clone(),
                access_key_id: s.access_key_id.clone(),
                error,
            };
            if self.policy.mode == Mode::Plan {
                report.actions.push(record(Outcome::Planned, None));
                continue;
            }
            match self.act(&s, caller).await {
                Ok(()) => {
                    info!(key = %s.access_key_id, user = %s.user_name, account = %s.account_id, action = s.action.as_str(), "enforced");
                    report.actions.push(record(Outcome::Done, None));
                    self.record_in_ledger(&s, report, ledger);
                }
                Err(e) => {
                    warn!(error = %e, key = %s.access_key_id, action = s.action.as_str(), "enforcement failed");
                    report.actions.push(record(
                        Outcome::Failed,
                        Some(format!("{}: {}", e.code, e.message)),
                    ));
                }
            }
        }
    }

    async fn act(&self, s: &Selected, caller: &Caller) -> Result<(), AwsError> {
        let iam = if s.account_id == caller.account {
            Iam::new(&self.sdk_config)
        } else {
            let role_arn = format!(
                "arn:{}:iam::{}:role/{}",
                caller.partition, s.account_id, self.role_name
            );
            let creds = self
                .sts
                .assume_role(
                    &role_arn,
                    crate::aws::sts::ENFORCE_SESSION,
                    self.external_id.as_deref(),
                )
                .await?;
            Iam::with_credentials(&self.sdk_config, creds, &s.account_id)
        };
        // Re-read just before acting: exactly this key, still as it was.
        let keys = iam.list_keys(&s.user_name).await?;
        let Some((_, status, created)) = keys.iter().find(|(id, _, _)| *id == s.access_key_id)
        else {
            return Err(AwsError::new(
                "iam:ListAccessKeys",
                "NoSuchEntity",
                "the key no longer exists",
            ));
        };
        let want = match s.action {
            Action::Deactivate => KeyStatus::Active,
            Action::Delete => KeyStatus::Inactive,
        };
        let same_creation =
            created.is_some_and(|c| (c.as_second() - s.created_at.as_second()).abs() <= 1);
        if *status != want || !same_creation {
            return Err(AwsError::new(
                "iam:ListAccessKeys",
                "KeyChanged",
                format!(
                    "the key is {} created {:?}, not {} created {}: left alone",
                    status.as_str(),
                    created,
                    want.as_str(),
                    s.created_at
                ),
            ));
        }
        match s.action {
            Action::Deactivate => iam.deactivate_key(&s.user_name, &s.access_key_id).await,
            Action::Delete => iam.delete_key(&s.user_name, &s.access_key_id).await,
        }
    }

    fn record_in_ledger(&self, s: &Selected, report: &mut Report, ledger: &mut Ledger) {
        let now = report.evaluated_at;
        let how = match s.action {
            Action::Deactivate => How::KeyDeactivated,
            Action::Delete => How::KeyDeleted,
        };
        if let Some(e) = ledger.entries.get_mut(&s.finding_id) {
            e.enforced_at = Some(now);
            report.resolved.push(e.resolve(&s.finding_id, now, how));
        }
    }
}
