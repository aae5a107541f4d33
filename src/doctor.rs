//! `keywarden doctor`: a deployment checked read-only, before its first run
//! fails: the caller and the Organization, whether the member role can be
//! assumed in every account in scope, SES (sender, DKIM, sandbox, quota),
//! the state (a write probe, versioning, encryption, the ledger, the lease)
//! and each opt-in that is on (Security Hub, the webhook parameter,
//! enforcement's role). Nothing is written except the state probe's
//! object, which is removed. The verdicts and the screen are
//! [`crate::core::doctor`]'s.

use std::collections::{BTreeMap, BTreeSet};

use aws_config::SdkConfig;
use futures::StreamExt;
use jiff::Timestamp;

use crate::aws::cloudtrail::{Trail, GLOBAL_REGION};
use crate::aws::iam::Iam;
use crate::aws::organizations::{Organizations, STACKSETS_PRINCIPAL};
use crate::aws::securityhub::SecurityHub;
use crate::aws::ses::{IdentityInfo, Ses};
use crate::aws::ssm::ParameterError;
use crate::aws::sts::{Caller, Sts, ENFORCE_SESSION, EXPORT_SESSION, SCAN_SESSION};
use crate::aws::AwsError;
use crate::config::{ChatTarget, NotifySettings, Settings};
use crate::core::doctor::{self, Check, Checkup, Group, Quota, Status};
use crate::core::enforce::Mode as EnforceMode;
use crate::core::ledger::Ledger;
use crate::core::model::{Account, AccountId};
use crate::scan::{Mode, RunOptions, ScanError, Scanner};
use crate::state::{lease_key, ledger_key, Lease, Store, StoreError};

/// At most this many accounts are asked whether Security Hub is on, and at
/// most this many recipients whether SES would take mail for them.
pub const SAMPLE: usize = 50;

/// What one doctor looks at.
pub struct Doctor<'a> {
    pub sdk_config: &'a SdkConfig,
    pub settings: &'a Settings,
    pub mode: Mode,
    /// The ledger's location (the CLI's default directory included).
    pub state: Option<&'a str>,
}

/// One failed attempt: the account, AWS's code and message.
type Failure = (AccountId, String, String);

impl Doctor<'_> {
    /// Every check, grouped in print order.
    pub async fn examine(&self) -> Checkup {
        let mut up = Checkup::default();
        let settings = self.settings;
        let sts = Sts::with_ceiling(self.sdk_config, settings.concurrency);
        let caller = match sts.caller().await {
            Ok(c) => {
                up.push(Check::ok(
                    Group::Caller,
                    "caller",
                    format!("{} (account {})", c.arn, c.account),
                ));
                c
            }
            Err(e) => {
                up.push(Check::blocker(
                    Group::Caller,
                    "caller",
                    format!("cannot tell who this is: {e}"),
                    "give it AWS credentials (AWS_PROFILE, aws sso login, or the function's role) and a reachable STS endpoint",
                ));
                return up;
            }
        };
        let (organization, accounts) = self.organization(&caller, &mut up).await;
        self.member_role(&sts, &caller, &accounts, &mut up).await;
        let ledger = self.state(&organization, &mut up).await;
        match settings.notify() {
            Ok(ns) => self.mail(ns, ledger.as_ref(), &mut up).await,
            Err(e) => up.push(Check::blocker(
                Group::Mail,
                "settings",
                e.to_string(),
                "set sender (a verified SES identity) and security_recipients",
            )),
        }
        self.opt_ins(&sts, &caller, &accounts, &mut up).await;
        up.checks.sort_by_key(|c| c.group);
        up
    }

    /// The Organization and the accounts in scope (the caller's own in
    /// single-account mode); the ledger's name.
    async fn organization(&self, caller: &Caller, up: &mut Checkup) -> (String, Vec<Account>) {
        let g = Group::Caller;
        if self.mode == Mode::SingleAccount {
            up.push(Check::ok(
                g,
                "organization",
                format!(
                    "--single-account: account {} only, without AWS Organizations",
                    caller.account
                ),
            ));
            let own = Account {
                id: caller.account.clone(),
                name: caller.account.to_string(),
                email: None,
            };
            return (caller.account.to_string(), vec![own]);
        }
        let orgs = Organizations::new(self.sdk_config);
        let organization = match orgs.describe().await {
            Ok((id, management)) => {
                let detail = match &management {
                    Some(m) if *m == caller.account => {
                        format!("{id}: this is its management account")
                    }
                    Some(m) => format!(
                        "{id}: a delegated administrator account (the management account is {m})"
                    ),
                    None => format!("{id}: its management account was not named"),
                };
                up.push(Check::ok(g, "organization", detail));
                id
            }
            Err(e) => {
                let (detail, fix) = if e.code == "AWSOrganizationsNotInUseException" {
                    (
                        format!("account {} is not in an AWS Organization", caller.account),
                        "run it in the Organization's management account (or a delegated administrator), or use --single-account",
                    )
                } else if e.is_access_denied() {
                    (
                        format!("may not read the Organization ({}: {})", e.operation, e.code),
                        "grant the organizations:Describe*/List* actions of docs/deploying.md, in the management account or a delegated administrator",
                    )
                } else {
                    (e.to_string(), "")
                };
                up.push(Check::blocker(g, "organization", detail, fix));
                return (caller.account.to_string(), Vec::new());
            }
        };
        let scanner = Scanner::new(self.sdk_config.clone(), self.settings.clone());
        let accounts = match scanner
            .list_scope(&RunOptions::new(self.mode, Timestamp::now()))
            .await
        {
            Ok(scope) => {
                let n = scope.accounts.len();
                let mut detail = format!(
                    "{n} {} in scope",
                    if n == 1 { "account" } else { "accounts" }
                );
                if scope.inactive > 0 {
                    detail.push_str(&format!(
                        "; {} not ACTIVE (suspended or closing), never scanned",
                        scope.inactive
                    ));
                }
                let check = if let Some(e) = scope.errors.first() {
                    Check::blocker(
                        g,
                        "accounts",
                        format!("{detail}; the listing broke off: {}: {}", e.code, e.message),
                        "retry; if it persists, check the Organizations permissions and quotas",
                    )
                } else if !scope.unknown.is_empty() {
                    Check::warning(
                        g,
                        "accounts",
                        format!(
                            "{detail}; requested but not ACTIVE accounts of the Organization: {}",
                            doctor::some_ids(&scope.unknown)
                        ),
                        "correct include_accounts (or --accounts)",
                    )
                } else {
                    Check::ok(g, "accounts", detail)
                };
                up.push(check);
                scope.accounts
            }
            Err(ScanError::NothingInScope { .. }) => {
                up.push(Check::blocker(
                    g,
                    "accounts",
                    "no ACTIVE account is in scope",
                    "check include_accounts, include_ous, exclude_accounts and exclude_ous",
                ));
                Vec::new()
            }
            Err(e) => {
                up.push(Check::blocker(g, "accounts", e.to_string(), ""));
                Vec::new()
            }
        };
        up.push(match orgs.trusted_services().await {
            Ok(p) if p.iter().any(|p| p == STACKSETS_PRINCIPAL) => Check::ok(
                g,
                "stacksets",
                "StackSets trusted access is on (a service-managed StackSet reaches new accounts)",
            ),
            Ok(_) => Check::warning(
                g,
                "stacksets",
                "StackSets trusted access is off: a service-managed StackSet cannot deploy the member role, nor reach new accounts",
                &format!("aws organizations enable-aws-service-access --service-principal {STACKSETS_PRINCIPAL} (or CloudFormation console: StackSets, Activate trusted access)"),
            ),
            Err(e) => Check::warning(
                g,
                "stacksets",
                format!("cannot tell whether StackSets trusted access is on ({}: {})", e.operation, e.code),
                "grant organizations:ListAWSServiceAccessForOrganization, or look in the CloudFormation console (StackSets)",
            ),
        });
        (organization, accounts)
    }

    /// The scan role in every member account in scope; the caller's own
    /// permissions in its own account.
    async fn member_role(
        &self,
        sts: &Sts,
        caller: &Caller,
        accounts: &[Account],
        up: &mut Checkup,
    ) {
        let g = Group::MemberRole;
        if accounts.iter().any(|a| a.id == caller.account) {
            up.push(match Iam::new(self.sdk_config).probe_users().await {
                Ok(()) => Check::ok(
                    g,
                    "own account",
                    format!(
                        "{} is scanned with the caller's own permissions: IAM is readable",
                        caller.account
                    ),
                ),
                Err(e) => Check::blocker(
                    g,
                    "own account",
                    format!(
                        "{} is scanned with the caller's own permissions, and {} was refused ({})",
                        caller.account, e.operation, e.code
                    ),
                    "grant the caller the member role's IAM read actions (docs/deploying.md), or exclude the account",
                ),
            });
        }
        // Without the Organization's accounts there is nothing to try (the
        // Organization's own check already blocks).
        if self.mode == Mode::SingleAccount || accounts.is_empty() {
            let own: Vec<&Account> = accounts.iter().filter(|a| a.id == caller.account).collect();
            if !own.is_empty() {
                let failures = self
                    .usage_probe(sts, caller, &own, &self.settings.role_name)
                    .await;
                up.push(doctor::usage_access(g, own.len(), &failures));
            }
            return;
        }
        let members: Vec<&Account> = accounts.iter().filter(|a| a.id != caller.account).collect();
        let role = &self.settings.role_name;
        let failures = self
            .assume_all(sts, caller, &members, role, SCAN_SESSION)
            .await;
        up.push(doctor::role_coverage(
            g,
            "scan role",
            role,
            members.len(),
            &failures,
            "deploy the member-role StackSet to these accounts' OUs (automatic deployment on), or fix the role's trust policy and any SCP that denies sts:AssumeRole",
        ));
        // Where flagged keys are used: LookupEvents in a sample of the
        // accounts whose role was assumed (one StackSet grants it to all).
        // The caller's own account first, when in scope.
        let failed: BTreeSet<&AccountId> = failures.iter().map(|f| &f.0).collect();
        let sample: Vec<&Account> = accounts
            .iter()
            .filter(|a| a.id == caller.account)
            .chain(members.into_iter().filter(|a| !failed.contains(&a.id)))
            .take(SAMPLE)
            .collect();
        let failures = self.usage_probe(sts, caller, &sample, role).await;
        up.push(doctor::usage_access(g, sample.len(), &failures));
    }

    /// LookupEvents (one event, in us-east-1) through the scan role in
    /// each of `accounts` (the caller's own permissions in its own); the
    /// failures.
    async fn usage_probe(
        &self,
        sts: &Sts,
        caller: &Caller,
        accounts: &[&Account],
        role: &str,
    ) -> Vec<Failure> {
        self.each_account(accounts, |a: &Account| {
            let arn = format!("arn:{}:iam::{}:role/{role}", caller.partition, a.id);
            let own = a.id == caller.account;
            async move {
                let creds = if own {
                    None
                } else {
                    let external_id = self.settings.external_id.as_deref();
                    Some(sts.assume_role(&arn, SCAN_SESSION, external_id).await?)
                };
                Trail::new(self.sdk_config, creds)
                    .probe(GLOBAL_REGION)
                    .await
            }
        })
        .await
    }

    /// Assumes `role` as `session` in each account and proves the
    /// credentials with GetCallerIdentity (nothing else is read), paced by
    /// the STS gate, each within the account budget; the failures.
    async fn assume_all(
        &self,
        sts: &Sts,
        caller: &Caller,
        accounts: &[&Account],
        role: &str,
        session: &str,
    ) -> Vec<Failure> {
        self.each_account(accounts, |a: &Account| {
            let arn = format!("arn:{}:iam::{}:role/{role}", caller.partition, a.id);
            async move {
                let creds = sts
                    .assume_role(&arn, session, self.settings.external_id.as_deref())
                    .await?;
                Sts::whoami(self.sdk_config, creds).await.map(|_| ())
            }
        })
        .await
    }

    /// `attempt` in each account, `concurrency` at a time, each within the
    /// account budget; the accounts where it failed, with what AWS said.
    async fn each_account<F, Fut>(&self, accounts: &[&Account], attempt: F) -> Vec<Failure>
    where
        F: Fn(&Account) -> Fut,
        Fut: std::future::Future<Output = Result<(), AwsError>>,
    {
        let budget = self.settings.account_timeout;
        futures::stream::iter(accounts)
            .map(|a| {
                let attempt = attempt(a);
                async move {
                    match tokio::time::timeout(budget, attempt).await {
                        Ok(Ok(())) => None,
                        Ok(Err(e)) => Some((a.id.clone(), e.code, e.message)),
                        Err(_) => Some((a.id.clone(), "Timeout".to_owned(), String::new())),
                    }
                }
            })
            .buffer_unordered(self.settings.concurrency.max(1))
            .filter_map(futures::future::ready)
            .collect()
            .await
    }

    /// The state: reachable and writable, versioned and encrypted (S3), the
    /// ledger readable, the lease not held. Returns the ledger if there is one.
    async fn state(&self, organization: &str, up: &mut Checkup) -> Option<Ledger> {
        let g = Group::State;
        let Some(location) = self.state else {
            up.push(Check::warning(
                g,
                "location",
                "no state: every run mails every owner again and nothing is remembered",
                "set KEYWARDEN_STATE to s3://bucket/prefix (Terraform sets it to the state bucket)",
            ));
            return None;
        };
        let store = match Store::open(location, self.sdk_config) {
            Ok(s) => s,
            Err(e) => {
                up.push(Check::blocker(
                    g,
                    "location",
                    e.to_string(),
                    "set `state` to a directory or s3://bucket/prefix",
                ));
                return None;
            }
        };
        match &store {
            Store::S3 { s3, bucket, .. } => {
                up.push(match store.check_writable(organization).await {
                    Ok(()) => Check::ok(
                        g,
                        "write probe",
                        format!("a conditional write and a delete under {} worked", store.describe(organization)),
                    ),
                    Err(e) => Check::blocker(
                        g,
                        "write probe",
                        e.to_string(),
                        "grant s3:GetObject, s3:PutObject, s3:DeleteObject and s3:ListBucket on the state prefix (and KMS use if the bucket's key is a customer key)",
                    ),
                });
                up.push(match s3.versioning(bucket).await {
                    Ok(Some(s)) if s == "Enabled" => Check::ok(g, "versioning", format!("{bucket} is versioned")),
                    Ok(s) => Check::warning(
                        g,
                        "versioning",
                        format!(
                            "{bucket} is not versioned ({}): a bad ledger save cannot be rolled back",
                            s.as_deref().unwrap_or("never enabled")
                        ),
                        &format!("aws s3api put-bucket-versioning --bucket {bucket} --versioning-configuration Status=Enabled"),
                    ),
                    Err(e) => cannot_tell(g, "versioning", &e, "grant s3:GetBucketVersioning on the bucket"),
                });
                up.push(match s3.encryption(bucket).await {
                    Ok(Some(a)) => Check::ok(g, "encryption", format!("{bucket} encrypts by default ({a})")),
                    Ok(None) => Check::warning(
                        g,
                        "encryption",
                        format!("{bucket} has no default encryption configured"),
                        &format!("aws s3api put-bucket-encryption --bucket {bucket} --server-side-encryption-configuration '{{\"Rules\":[{{\"ApplyServerSideEncryptionByDefault\":{{\"SSEAlgorithm\":\"aws:kms\"}}}}]}}'"),
                    ),
                    Err(e) => cannot_tell(g, "encryption", &e, "grant s3:GetEncryptionConfiguration on the bucket"),
                });
            }
            Store::Local(dir) => up.push(local_probe(dir)),
        }
        let key = ledger_key(organization);
        let ledger = match store.load(&key).await {
            Ok((None, _)) => {
                up.push(Check::ok(
                    g,
                    "ledger",
                    "no ledger yet: the first run starts one",
                ));
                None
            }
            Ok((Some(bytes), _)) => match Ledger::parse(&bytes, organization) {
                Ok(l) => {
                    let open = l.entries.values().filter(|e| e.is_open()).count();
                    let saved = l.updated_at.map_or("never".to_owned(), |t| {
                        t.strftime("%Y-%m-%d %H:%M UTC").to_string()
                    });
                    up.push(Check::ok(
                        g,
                        "ledger",
                        format!(
                            "{open} open findings, {} runs, last saved {saved}",
                            l.runs.len()
                        ),
                    ));
                    Some(l)
                }
                Err(e) => {
                    up.push(Check::blocker(
                        g,
                        "ledger",
                        StoreError::Ledger { location: store.describe(&key), cause: e }.to_string(),
                        "restore the last good version (the bucket is versioned), or move it away to start a new ledger",
                    ));
                    None
                }
            },
            Err(e) => {
                up.push(Check::blocker(
                    g,
                    "ledger",
                    e.to_string(),
                    "grant s3:GetObject and s3:ListBucket on the state prefix",
                ));
                None
            }
        };
        up.push(match store.load(&lease_key(organization)).await {
            Ok((None, _)) => Check::ok(g, "lease", "no run holds the lease"),
            Ok((Some(bytes), _)) => match serde_json::from_slice::<Lease>(&bytes) {
                Ok(l) if l.expires > Timestamp::now() => Check::warning(
                    g,
                    "lease",
                    format!("a run holds the lease since {} until {} ({})", l.since, l.expires, l.holder),
                    "wait for that run to end: a run started now mails nobody and exits 3",
                ),
                Ok(l) => Check::ok(
                    g,
                    "lease",
                    format!("a lease that expired at {} is left (a run that did not finish): the next run takes it over", l.expires),
                ),
                Err(_) => Check::warning(
                    g,
                    "lease",
                    format!("{} cannot be read as a lease: the next run replaces it", store.describe(&lease_key(organization))),
                    "",
                ),
            },
            Err(e) => cannot_tell(g, "lease", &aws_like(&e), "grant s3:GetObject on the state prefix"),
        });
        ledger
    }

    /// SES: the sender, DKIM, the account (sandbox, sending, quota), and
    /// the security recipients against the allowed domains.
    async fn mail(&self, ns: &NotifySettings, ledger: Option<&Ledger>, up: &mut Checkup) {
        let g = Group::Mail;
        let ses = Ses::new(self.sdk_config, ns.ses_region.as_deref());
        let region = ses.region().to_owned();
        let sender = ns.sender.as_str();
        let domain = sender.rsplit_once('@').map_or(sender, |(_, d)| d);
        let (address, domain_info) =
            futures::join!(ses.identity_info(sender), ses.identity_info(domain));
        let verified =
            |r: &Result<Option<IdentityInfo>, AwsError>| matches!(r, Ok(Some(i)) if i.verified);
        up.push(if verified(&address) {
            Check::ok(g, "sender", format!("{sender} is a verified SES identity in {region}"))
        } else if verified(&domain_info) {
            Check::ok(
                g,
                "sender",
                format!("{sender} may send: its domain {domain} is a verified SES identity in {region}"),
            )
        } else if let Some(e) = address.as_ref().err().or(domain_info.as_ref().err()) {
            cannot_tell(g, "sender", e, "grant ses:GetEmailIdentity, or check the identity in the SES console")
        } else if matches!(address, Ok(Some(_))) || matches!(domain_info, Ok(Some(_))) {
            let which = if matches!(address, Ok(Some(_))) { sender } else { domain };
            Check::blocker(
                g,
                "sender",
                format!("{which} is an SES identity in {region} but not verified: every message from {sender} would be refused"),
                "finish its verification (the link SES mailed to the address, or the domain's DNS records)",
            )
        } else {
            Check::blocker(
                g,
                "sender",
                format!("neither {sender} nor {domain} is an SES identity in {region}: every message would be refused"),
                &format!("aws sesv2 create-email-identity --email-identity {domain} --region {region}, then publish its DNS records"),
            )
        });
        up.push(match &domain_info {
            Ok(Some(IdentityInfo { dkim_signing: true, dkim_status: Some(s), .. })) if s == "SUCCESS" => {
                Check::ok(g, "dkim", format!("DKIM signs mail from {domain}"))
            }
            Ok(Some(i)) => Check::warning(
                g,
                "dkim",
                format!(
                    "DKIM is not on for {domain} (signing {}, status {}): mail may be marked as spam",
                    if i.dkim_signing { "on" } else { "off" },
                    i.dkim_status.as_deref().unwrap_or("unknown")
                ),
                "publish the identity's DKIM CNAME records (SES console: the identity, Authentication)",
            ),
            Ok(None) => Check::warning(
                g,
                "dkim",
                format!("{domain} is not an SES identity: mail from {sender} is not DKIM-signed for your domain"),
                &format!("verify the domain {domain} in SES and publish its DKIM records"),
            ),
            Err(e) => cannot_tell(g, "dkim", e, "grant ses:GetEmailIdentity"),
        });
        let known = known_recipients(ns, ledger);
        match ses.account().await {
            Ok(acct) => {
                if !acct.sending_enabled {
                    up.push(Check::blocker(
                        g,
                        "sending",
                        format!("sending is paused for this SES account in {region}"),
                        "see the SES console's reputation dashboard, then aws sesv2 put-account-sending-attributes --sending-enabled",
                    ));
                }
                if acct.production_access {
                    up.push(doctor::sandbox(true, &[], known.len()));
                } else {
                    let checked: Vec<&String> = known.iter().take(SAMPLE).collect();
                    let mut unverified = Vec::new();
                    let mut domains: BTreeMap<String, bool> = BTreeMap::new();
                    for r in &checked {
                        let d = r.rsplit_once('@').map_or(r.as_str(), |(_, d)| d).to_ascii_lowercase();
                        if !domains.contains_key(&d) {
                            let ok = matches!(ses.identity_info(&d).await, Ok(Some(i)) if i.verified);
                            domains.insert(d.clone(), ok);
                        }
                        let ok = domains[&d]
                            || matches!(ses.identity_info(r).await, Ok(Some(i)) if i.verified);
                        if !ok {
                            unverified.push((*r).clone());
                        }
                    }
                    let mut c = doctor::sandbox(false, &unverified, checked.len());
                    if known.len() > checked.len() {
                        c.more.push(format!("{} of {} known recipients checked", checked.len(), known.len()));
                    }
                    up.push(c);
                }
                up.push(doctor::quota(
                    Quota {
                        max_24_hour_send: acct.max_24_hour_send.unwrap_or(0.0),
                        sent_last_24_hours: acct.sent_last_24_hours.unwrap_or(0.0),
                        max_send_rate: acct.max_send_rate.unwrap_or(ns.max_send_rate),
                    },
                    ledger.and_then(last_run_messages),
                    ns.max_send_rate,
                ));
            }
            Err(e) => up.push(Check::warning(
                g,
                "sandbox",
                format!("cannot read the SES account in {region} ({}: {}): whether it is in the sandbox, and its quota, are unknown", e.operation, e.code),
                "grant ses:GetAccount, or look at the SES console's Account dashboard",
            )),
        }
        let rules = &self.settings.owners;
        let refused: Vec<String> = ns
            .security_recipients
            .iter()
            .filter(|r| rules.check(r.as_str()).is_err())
            .map(|r| r.to_string())
            .collect();
        up.push(if refused.is_empty() {
            Check::ok(
                g,
                "recipients",
                format!(
                    "the digest goes to {}; owners are mailed only at {}",
                    ns.security_recipients.iter().map(|r| r.as_str()).collect::<Vec<_>>().join(", "),
                    if rules.allowed_domains.is_empty() { "any domain".to_owned() } else { rules.allowed_domains.join(", ") }
                ),
            )
        } else {
            Check::blocker(
                g,
                "recipients",
                format!("security recipients outside allowed_recipient_domains ({}): {}", rules.allowed_domains.join(", "), refused.join(", ")),
                "add their domains to allowed_recipient_domains (the function's role lets SES mail only those)",
            )
        });
    }

    /// Each opt-in that is on: Security Hub in the accounts the export
    /// targets, the webhook parameter, enforcement's role.
    async fn opt_ins(&self, sts: &Sts, caller: &Caller, accounts: &[Account], up: &mut Checkup) {
        let g = Group::OptIns;
        let settings = self.settings;
        if settings.securityhub_export {
            up.push(self.securityhub(sts, caller, accounts).await);
        }
        match settings.chat.as_ref().map(|c| &c.target) {
            Some(ChatTarget::Parameter(name)) => {
                up.push(match crate::aws::ssm::secure_string(self.sdk_config, name).await {
                    Ok(_) => Check::ok(g, "webhook", format!("the webhook URL is the SecureString parameter {name}")),
                    Err(e @ ParameterError::NotSecure { .. }) => Check::blocker(
                        g,
                        "webhook",
                        e.to_string(),
                        &format!("aws ssm put-parameter --name {name} --type SecureString --overwrite --value <the URL>"),
                    ),
                    Err(ParameterError::Aws(e)) if e.code == "ParameterNotFound" => Check::blocker(
                        g,
                        "webhook",
                        format!("the SSM parameter {name} does not exist"),
                        &format!("aws ssm put-parameter --name {name} --type SecureString --value <the URL>"),
                    ),
                    Err(ParameterError::Aws(e)) => Check::blocker(
                        g,
                        "webhook",
                        format!("cannot read the SSM parameter {name} ({}: {})", e.operation, e.code),
                        "grant ssm:GetParameter on it (and kms:Decrypt with its key)",
                    ),
                });
            }
            Some(ChatTarget::Url(_)) => up.push(Check::ok(
                g,
                "webhook",
                "the webhook URL comes from the environment (doctor posts nothing to it)",
            )),
            None => {}
        }
        if settings.enforce.mode != EnforceMode::Off
            && self.mode == Mode::Organization
            && !accounts.is_empty()
        {
            let members: Vec<&Account> =
                accounts.iter().filter(|a| a.id != caller.account).collect();
            let role = &settings.enforce_role_name;
            let failures = self
                .assume_all(sts, caller, &members, role, ENFORCE_SESSION)
                .await;
            up.push(doctor::role_coverage(
                g,
                "enforce role",
                role,
                members.len(),
                &failures,
                "deploy the StackSet with EnableEnforcement=true (Terraform: enforce = \"apply\"), or set enforce = off",
            ));
        }
    }

    /// Security Hub on in each account the export targets (at most [`SAMPLE`]).
    async fn securityhub(&self, sts: &Sts, caller: &Caller, accounts: &[Account]) -> Check {
        let g = Group::OptIns;
        let settings = self.settings;
        let region = settings
            .securityhub_region
            .clone()
            .or_else(|| self.sdk_config.region().map(|r| r.to_string()))
            .unwrap_or_else(|| "us-east-1".to_owned());
        let mut ids: Vec<&Account> = accounts.iter().collect();
        ids.sort_by(|a, b| a.id.cmp(&b.id));
        let sample: Vec<&Account> = ids.into_iter().take(SAMPLE).collect();
        let results: Vec<(AccountId, Result<bool, AwsError>)> = futures::stream::iter(&sample)
            .map(|a| {
                let region = region.clone();
                async move {
                    let hub = if a.id == caller.account {
                        Ok(SecurityHub::new(self.sdk_config, &region))
                    } else {
                        let arn = format!(
                            "arn:{}:iam::{}:role/{}",
                            caller.partition, a.id, settings.role_name
                        );
                        sts.assume_role(&arn, EXPORT_SESSION, settings.external_id.as_deref())
                            .await
                            .map(|creds| {
                                SecurityHub::with_credentials(self.sdk_config, &region, creds)
                            })
                    };
                    let r = match hub {
                        Ok(h) => h.enabled().await,
                        Err(e) => Err(e),
                    };
                    (a.id.clone(), r)
                }
            })
            .buffer_unordered(settings.concurrency.clamp(1, 16))
            .collect()
            .await;
        let mut off: Vec<AccountId> = Vec::new();
        let mut unknown: Vec<String> = Vec::new();
        for (id, r) in results {
            match r {
                Ok(true) => {}
                Ok(false) => off.push(id),
                Err(e) => unknown.push(format!("{id} ({}: {})", e.operation, e.code)),
            }
        }
        off.sort();
        unknown.sort();
        let checked = sample.len();
        let of = if accounts.len() > checked {
            format!("{checked} accounts checked (of {})", accounts.len())
        } else {
            format!("{checked} accounts")
        };
        if !off.is_empty() {
            let mut c = Check::blocker(
                g,
                "security hub",
                format!("Security Hub is off in {} of {of} in {region}: their findings cannot be imported", off.len()),
                &format!("enable Security Hub in those accounts (aws securityhub enable-security-hub --region {region}), or set securityhub_export = false"),
            )
            .with_more(vec![format!("off: {}", doctor::some_ids(&off))]);
            if !unknown.is_empty() {
                c.more.push(format!("cannot tell: {}", unknown.join(", ")));
            }
            return c;
        }
        if !unknown.is_empty() {
            return Check::warning(
                g,
                "security hub",
                format!("cannot tell whether Security Hub is on in {} of {of} in {region}", unknown.len()),
                "deploy the StackSet with EnableSecurityHubExport=true (it grants securityhub:DescribeHub)",
            )
            .with_more(unknown.into_iter().take(doctor::IDS_SHOWN).collect());
        }
        Check::ok(
            g,
            "security hub",
            format!("Security Hub is on in all {of} in {region}"),
        )
    }
}

/// Something that could not be read: a warning naming the call and code.
fn cannot_tell(group: Group, check: &str, e: &AwsError, fix: &str) -> Check {
    Check::new(
        group,
        check,
        Status::Warning,
        format!("cannot tell ({}: {})", e.operation, e.code),
    )
    .with_fix(fix)
}

fn aws_like(e: &StoreError) -> AwsError {
    AwsError::new("s3:GetObject", "ReadFailed", e.to_string())
}

/// A local state directory: writable (a probe file, removed), or to be
/// created by the first run. A lock file is only reported, never removed.
fn local_probe(dir: &std::path::Path) -> Check {
    let g = Group::State;
    if !dir.exists() {
        return Check::ok(
            g,
            "directory",
            format!(
                "{} does not exist yet: the first run creates it",
                dir.display()
            ),
        );
    }
    let probe = dir.join(format!(".keywarden-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            Check::ok(g, "directory", format!("{} is writable", dir.display()))
        }
        Err(e) => Check::blocker(
            g,
            "directory",
            format!("{} is not writable: {e}", dir.display()),
            "fix its permissions, or set `state` to another directory",
        ),
    }
}

/// The addresses keywarden will mail: the security recipients, then the
/// owners the ledger's open findings were last mailed to.
fn known_recipients(ns: &NotifySettings, ledger: Option<&Ledger>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    let owners = ledger
        .into_iter()
        .flat_map(|l| l.entries.values())
        .filter(|e| e.is_open())
        .filter_map(|e| e.notices.last())
        .flat_map(|n| n.recipients.iter().cloned());
    for r in ns
        .security_recipients
        .iter()
        .map(|r| r.to_string())
        .chain(owners)
    {
        if seen.insert(r.to_ascii_lowercase()) {
            out.push(r);
        }
    }
    out
}

/// How many messages the ledger's last run delivered: the distinct
/// recipient lists of the notices at the latest instant, and the digest.
fn last_run_messages(ledger: &Ledger) -> Option<usize> {
    let notices = ledger.entries.values().flat_map(|e| e.notices.iter());
    let last = notices.clone().map(|n| n.at).max()?;
    let lists: BTreeSet<&Vec<String>> = notices
        .filter(|n| n.at == last)
        .map(|n| &n.recipients)
        .collect();
    Some(lists.len() + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_directory_that_does_not_exist_is_left_for_the_first_run() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let c = local_probe(&missing);
        assert_eq!(c.status, Status::Ok);
        assert!(!missing.exists(), "doctor creates nothing");
        let c = local_probe(dir.path());
        assert_eq!(c.status, Status::Ok);
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "the probe is removed"
        );
    }
}
