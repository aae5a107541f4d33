//! Organizations: account listing (paginated, page by page so scanning can
//! start while listing goes on), OU subtrees and account tags.

use std::collections::BTreeSet;

use std::sync::Arc;

use aws_config::SdkConfig;
use aws_sdk_organizations::types::{AccountState, AccountStatus, ChildType};

use super::gate::Gate;
use super::{classify, AwsError};
use crate::core::model::{Account, AccountId};

/// Every Organizations action keywarden calls (the Lambda's role grants these).
pub const ORGANIZATIONS_ACTIONS: &[&str] = &[
    "organizations:DescribeOrganization",
    "organizations:ListAccounts",
    "organizations:ListAccountsForParent",
    "organizations:ListChildren",
    "organizations:ListTagsForResource",
    // `keywarden doctor` only: is StackSets' trusted access on.
    "organizations:ListAWSServiceAccessForOrganization",
];

/// The service principal of CloudFormation StackSets' trusted access (a
/// service-managed StackSet deploys the member role through it).
pub const STACKSETS_PRINCIPAL: &str = "member.org.stacksets.cloudformation.amazonaws.com";

/// Organizations calls, sharing one client.
#[derive(Debug, Clone)]
pub struct Organizations {
    client: aws_sdk_organizations::Client,
    /// One attempt per call, for the paced calls (the listing and the
    /// account tags): retried by `gate`, which paces the Organization's
    /// shared budget, at most [`IN_FLIGHT`] at once.
    once: aws_sdk_organizations::Client,
    gate: Arc<Gate>,
}

/// Organizations calls in flight at once (its budget is small and shared by
/// the listing and the account-tag look-ups).
pub const IN_FLIGHT: usize = 4;

/// Where to list accounts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Listing {
    /// ListAccounts: the whole Organization.
    All,
    /// ListAccountsForParent: accounts directly under one OU or root.
    Parent(String),
}

/// A page of listed accounts: the ACTIVE ones, and how many others were passed over.
#[derive(Debug, Clone, Default)]
pub struct AccountPage {
    pub active: Vec<Account>,
    pub inactive: usize,
}

fn convert(a: &aws_sdk_organizations::types::Account) -> Result<Option<Account>, AwsError> {
    // `State` replaces the retiring `Status`; fall back to Status only when State is absent.
    let active = match (a.state(), a.status()) {
        (Some(state), _) => *state == AccountState::Active,
        (None, Some(status)) => *status == AccountStatus::Active,
        (None, None) => true,
    };
    if !active {
        return Ok(None);
    }
    let id = AccountId::parse(a.id().unwrap_or_default()).map_err(|e| {
        AwsError::new(
            "organizations:ListAccounts",
            "InvalidResponse",
            e.to_string(),
        )
    })?;
    Ok(Some(Account {
        name: a.name().unwrap_or(id.as_str()).to_owned(),
        email: a.email().map(str::to_owned),
        id,
    }))
}

impl Organizations {
    pub fn new(config: &SdkConfig) -> Self {
        let conf = aws_sdk_organizations::config::Builder::from(config)
            .retry_partition(super::unlimited_retries(
                "keywarden-organizations".to_owned(),
            ))
            .build();
        let once = aws_sdk_organizations::config::Builder::from(config)
            .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1))
            .build();
        Self {
            client: aws_sdk_organizations::Client::from_conf(conf),
            once: aws_sdk_organizations::Client::from_conf(once),
            gate: Arc::new(Gate::new(IN_FLIGHT)),
        }
    }

    pub fn from_client(client: aws_sdk_organizations::Client) -> Self {
        Self {
            once: client.clone(),
            client,
            gate: Arc::new(Gate::new(IN_FLIGHT)),
        }
    }

    /// The Organization's id and its management account's id; fails with
    /// AWSOrganizationsNotInUseException when the caller is not in one.
    pub async fn describe(&self) -> Result<(String, Option<AccountId>), AwsError> {
        let op = "organizations:DescribeOrganization";
        let out = self
            .client
            .describe_organization()
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        let org = out.organization();
        let id = org.and_then(|o| o.id()).unwrap_or_default().to_owned();
        if id.is_empty() {
            return Err(AwsError::new(
                op,
                "InvalidResponse",
                "DescribeOrganization returned no organization id",
            ));
        }
        Ok((
            id,
            org.and_then(|o| o.master_account_id())
                .and_then(|id| AccountId::parse(id).ok()),
        ))
    }

    /// The service principals with trusted access to the Organization
    /// (`keywarden doctor`); only the management account or a delegated
    /// administrator may ask.
    pub async fn trusted_services(&self) -> Result<Vec<String>, AwsError> {
        let op = "organizations:ListAWSServiceAccessForOrganization";
        let mut principals = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .client
                .list_aws_service_access_for_organization()
                .set_next_token(token.clone())
                .send()
                .await
                .map_err(|e| classify(op, e))?;
            principals.extend(
                out.enabled_service_principals()
                    .iter()
                    .filter_map(|p| p.service_principal().map(str::to_owned)),
            );
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(principals);
            }
        }
    }

    /// Lists accounts page by page: `next_page` returns `None` when done.
    pub fn pages(&self, listing: Listing) -> AccountPages {
        AccountPages {
            client: self.once.clone(),
            gate: self.gate.clone(),
            listing,
            token: None,
            done: false,
        }
    }

    /// Every OU id under `roots` (included), recursively.
    pub async fn subtree(&self, roots: &[String]) -> Result<Vec<String>, AwsError> {
        let op = "organizations:ListChildren";
        let mut seen: Vec<String> = Vec::new();
        let mut queue: Vec<String> = roots.to_vec();
        while let Some(parent) = queue.pop() {
            if seen.contains(&parent) {
                continue;
            }
            let mut pages = self
                .client
                .list_children()
                .parent_id(&parent)
                .child_type(ChildType::OrganizationalUnit)
                .into_paginator()
                .send();
            while let Some(page) = pages.next().await {
                let page = page.map_err(|e| classify(op, e))?;
                queue.extend(
                    page.children()
                        .iter()
                        .filter_map(|c| c.id().map(str::to_owned)),
                );
            }
            seen.push(parent);
        }
        Ok(seen)
    }

    /// The ids of every account under `roots`, recursively.
    pub async fn accounts_under(&self, roots: &[String]) -> Result<BTreeSet<AccountId>, AwsError> {
        let mut ids = BTreeSet::new();
        for ou in self.subtree(roots).await? {
            let mut pages = self.pages(Listing::Parent(ou));
            while let Some(page) = pages.next_page().await? {
                ids.extend(page.active.into_iter().map(|a| a.id));
            }
        }
        Ok(ids)
    }

    /// The account's tags, in the order Organizations returns them.
    pub async fn account_tags(
        &self,
        account: &AccountId,
    ) -> Result<Vec<(String, String)>, AwsError> {
        let op = "organizations:ListTagsForResource";
        let mut tags = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let out = self
                .gate
                .call(|| async {
                    self.once
                        .list_tags_for_resource()
                        .resource_id(account.as_str())
                        .set_next_token(token.clone())
                        .send()
                        .await
                        .map_err(|e| classify(op, e))
                })
                .await?;
            tags.extend(
                out.tags()
                    .iter()
                    .map(|t| (t.key().to_owned(), t.value().to_owned())),
            );
            token = out
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if token.is_none() {
                return Ok(tags);
            }
        }
    }
}

/// Page-at-a-time account listing.
#[derive(Debug)]
pub struct AccountPages {
    client: aws_sdk_organizations::Client,
    gate: Arc<Gate>,
    listing: Listing,
    token: Option<String>,
    done: bool,
}

impl AccountPages {
    /// The next page, or `None` after the last one. A failed call leaves the
    /// position unchanged, so the same page can be asked for again.
    pub async fn next_page(&mut self) -> Result<Option<AccountPage>, AwsError> {
        if self.done {
            return Ok(None);
        }
        let (accounts, next) = match &self.listing {
            Listing::All => {
                let op = "organizations:ListAccounts";
                let out = self
                    .gate
                    .call(|| async {
                        self.client
                            .list_accounts()
                            .set_next_token(self.token.clone())
                            .send()
                            .await
                            .map_err(|e| classify(op, e))
                    })
                    .await?;
                (out.accounts, out.next_token)
            }
            Listing::Parent(parent) => {
                let op = "organizations:ListAccountsForParent";
                let out = self
                    .gate
                    .call(|| async {
                        self.client
                            .list_accounts_for_parent()
                            .parent_id(parent)
                            .set_next_token(self.token.clone())
                            .send()
                            .await
                            .map_err(|e| classify(op, e))
                    })
                    .await?;
                (out.accounts, out.next_token)
            }
        };
        self.token = next.filter(|t| !t.is_empty());
        self.done = self.token.is_none();
        let mut page = AccountPage::default();
        for a in accounts.unwrap_or_default() {
            match convert(&a)? {
                Some(acct) => page.active.push(acct),
                None => page.inactive += 1,
            }
        }
        Ok(Some(page))
    }
}
