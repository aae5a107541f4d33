//! Who hears about what this run. One person, one message: a key owner who
//! also owns accounts, or manages someone, gets a single message with every
//! section. With a ledger, a person gets a message only when at least one
//! finding is due for them (new, reminder cadence come round, escalation);
//! the message puts what is due first and lists what is still open below.
//! Without a ledger, everything is due every run. Pure: `now` is the
//! report's `evaluated_at`.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::ledger::{account_owner_due, owner_due, Cadence, Ledger, Stage};
use super::model::EmailAddress;
use super::report::{AccountEntry, Finding, Report};

/// Knobs for planning.
#[derive(Debug, Clone, Copy)]
pub struct NotifyPolicy {
    /// Account owners also hear about their accounts' findings.
    pub notify_account_owners: bool,
    /// Exemptions ending within this many days are flagged in the digest.
    pub expiring_within_days: u32,
    /// How many of the oldest keys the digest lists.
    pub oldest_keys: usize,
}

impl Default for NotifyPolicy {
    fn default() -> Self {
        Self {
            notify_account_owners: true,
            expiring_within_days: 14,
            oldest_keys: 10,
        }
    }
}

/// The ledger and the cadence, when the run has memory.
#[derive(Debug, Clone, Copy)]
pub struct Memory<'a> {
    pub ledger: &'a Ledger,
    pub cadence: Cadence,
}

/// A finding in a message, and which notice it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueFinding {
    pub finding: Finding,
    pub stage: Stage,
}

/// Everything one person hears about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PersonPlan {
    pub recipient: EmailAddress,
    /// Findings on keys this person owns that are due now, most urgent first.
    pub own: Vec<DueFinding>,
    /// This person's other open findings, not due now: listed below.
    pub own_open: Vec<Finding>,
    /// Accounts this person owns, with the due findings on other people's keys there.
    pub accounts: Vec<(AccountEntry, Vec<DueFinding>)>,
    /// Escalated findings of people whose `manager` tag names this person.
    pub managed: Vec<DueFinding>,
}

impl PersonPlan {
    fn new(recipient: &EmailAddress) -> Self {
        Self {
            recipient: recipient.clone(),
            own: Vec::new(),
            own_open: Vec::new(),
            accounts: Vec::new(),
            managed: Vec::new(),
        }
    }

    /// Findings the message shows (due and still open).
    pub fn finding_count(&self) -> usize {
        self.own.len()
            + self.own_open.len()
            + self.accounts.iter().map(|(_, f)| f.len()).sum::<usize>()
            + self.managed.len()
    }

    fn has_due(&self) -> bool {
        !self.own.is_empty()
            || self.accounts.iter().any(|(_, f)| !f.is_empty())
            || !self.managed.is_empty()
    }

    /// The finding ids this message carries as due, with their stage: what
    /// the ledger records once it is delivered.
    pub fn notices(&self) -> Vec<(String, Stage)> {
        self.own
            .iter()
            .chain(self.accounts.iter().flat_map(|(_, f)| f))
            .chain(&self.managed)
            .filter_map(|d| Some((d.finding.finding_id.clone()?, d.stage)))
            .collect()
    }
}

/// Most urgent first: severity, then due date, then a stable order.
pub fn urgency(a: &Finding, b: &Finding) -> std::cmp::Ordering {
    b.severity
        .cmp(&a.severity)
        .then(
            a.due_at
                .unwrap_or(Timestamp::MIN)
                .cmp(&b.due_at.unwrap_or(Timestamp::MIN)),
        )
        .then(a.account_id.cmp(&b.account_id))
        .then(a.user_name.cmp(&b.user_name))
        .then(a.access_key_id.cmp(&b.access_key_id))
        .then(a.check.cmp(&b.check))
}

pub fn same_address(a: &EmailAddress, b: &EmailAddress) -> bool {
    a.as_str().eq_ignore_ascii_case(b.as_str())
}

/// One plan per distinct recipient with something due (addresses compared
/// case-insensitively), ordered by address; findings most urgent first.
pub fn plan_people(
    report: &Report,
    policy: &NotifyPolicy,
    memory: Option<Memory<'_>>,
) -> Vec<PersonPlan> {
    let now = report.evaluated_at;
    let mut people: BTreeMap<String, PersonPlan> = BTreeMap::new();
    fn entry<'a>(
        people: &'a mut BTreeMap<String, PersonPlan>,
        email: &EmailAddress,
    ) -> &'a mut PersonPlan {
        people
            .entry(email.as_str().to_ascii_lowercase())
            .or_insert_with(|| PersonPlan::new(email))
    }
    let ledger_entry = |f: &Finding| {
        let m = memory?;
        Some((m.ledger.entries.get(f.finding_id.as_deref()?)?, m.cadence))
    };
    let account_owners: BTreeMap<_, _> = report
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((&a.account_id, (i, a.owner.as_ref()?.email.as_ref()?))))
        .collect();
    let mut sections: BTreeMap<(String, usize), Vec<DueFinding>> = BTreeMap::new();

    for f in &report.findings {
        let (owner_stage, account_stage) = match ledger_entry(f) {
            Some((e, cadence)) => (owner_due(e, now, &cadence), account_owner_due(e)),
            // No memory: everything is new, every run.
            None => (Some(Stage::First), Some(Stage::First)),
        };
        if let Some(owner) = &f.owner.email {
            let p = entry(&mut people, owner);
            match owner_stage {
                Some(stage) => p.own.push(DueFinding {
                    finding: f.clone(),
                    stage,
                }),
                None => p.own_open.push(f.clone()),
            }
        }
        let account_owner = account_owners.get(&f.account_id);
        if let (true, Some((index, email)), Some(stage)) =
            (policy.notify_account_owners, account_owner, account_stage)
        {
            let is_key_owner = f
                .owner
                .email
                .as_ref()
                .is_some_and(|o| same_address(o, email));
            if !is_key_owner {
                entry(&mut people, email);
                sections
                    .entry((email.as_str().to_ascii_lowercase(), *index))
                    .or_default()
                    .push(DueFinding {
                        finding: f.clone(),
                        stage,
                    });
            }
        }
        if let (Some(manager), Some(Stage::Escalation)) = (&f.manager, account_stage) {
            let told_already = f
                .owner
                .email
                .as_ref()
                .is_some_and(|o| same_address(o, manager))
                || account_owner.is_some_and(|(_, e)| same_address(e, manager));
            if !told_already {
                entry(&mut people, manager).managed.push(DueFinding {
                    finding: f.clone(),
                    stage: Stage::Escalation,
                });
            }
        }
    }
    for ((who, index), findings) in sections {
        if let Some(p) = people.get_mut(&who) {
            p.accounts.push((report.accounts[index].clone(), findings));
        }
    }
    let by_urgency = |a: &DueFinding, b: &DueFinding| urgency(&a.finding, &b.finding);
    let mut out: Vec<PersonPlan> = people.into_values().filter(PersonPlan::has_due).collect();
    for p in &mut out {
        p.own.sort_by(by_urgency);
        p.own_open.sort_by(urgency);
        p.managed.sort_by(by_urgency);
        for (_, f) in &mut p.accounts {
            f.sort_by(by_urgency);
        }
    }
    out
}
