//! Who hears about what this run. One person, one message: a key owner who
//! also owns accounts, or manages someone, gets a single message with every
//! section. With a ledger, a person gets a message only when at least one
//! finding is due for them (new, reminder cadence come round, escalation);
//! the message puts what is due first and lists what is still open below.
//! Without a ledger, everything is due every run. Pure: `now` is the
//! report's `evaluated_at`.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::enforce::{action_for, final_notice_due, scheduled_for, EnforcePolicy, Mode};

use super::ledger::{account_owner_due, owner_due, Cadence, Ledger, Stage};
use super::model::{AccessKeyId, AccountId, EmailAddress};
use super::record::{Action, ActionRecord, Outcome};
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
    /// With enforcement on, owners get a final notice naming the date.
    pub enforce: EnforcePolicy,
}

/// A finding in a message, and which notice it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueFinding {
    pub finding: Finding,
    pub stage: Stage,
    /// With enforcement on: when the key will be deactivated (or deleted).
    pub enforce_on: Option<(Action, Timestamp)>,
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
    /// This person's keys that enforcement deactivated (or deleted) this run.
    pub enforced: Vec<(Finding, ActionRecord)>,
}

impl PersonPlan {
    fn new(recipient: &EmailAddress) -> Self {
        Self {
            recipient: recipient.clone(),
            own: Vec::new(),
            own_open: Vec::new(),
            accounts: Vec::new(),
            managed: Vec::new(),
            enforced: Vec::new(),
        }
    }

    /// Findings the message shows (due and still open).
    pub fn finding_count(&self) -> usize {
        self.own.len()
            + self.own_open.len()
            + self.accounts.iter().map(|(_, f)| f.len()).sum::<usize>()
            + self.managed.len()
            + self.enforced.len()
    }

    fn has_due(&self) -> bool {
        !self.own.is_empty()
            || !self.enforced.is_empty()
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

fn notified_today(e: &super::ledger::Entry, now: Timestamp) -> bool {
    let day = |t: Timestamp| t.to_zoned(jiff::tz::TimeZone::UTC).date();
    e.notices.iter().any(|n| day(n.at) == day(now))
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
        Some((m.ledger.entries.get(f.finding_id.as_deref()?)?, m))
    };
    let account_owners: BTreeMap<_, _> = report
        .accounts
        .iter()
        .enumerate()
        .filter_map(|(i, a)| Some((&a.account_id, (i, a.owner.as_ref()?.email.as_ref()?))))
        .collect();
    let mut sections: BTreeMap<(String, usize), Vec<DueFinding>> = BTreeMap::new();
    // Keys acted on this run: their findings go in the "done" section, once.
    let done: BTreeMap<(&AccountId, &AccessKeyId), &ActionRecord> = report
        .actions
        .iter()
        .filter(|a| a.outcome == Outcome::Done)
        .map(|a| ((&a.account_id, &a.access_key_id), a))
        .collect();
    let mut told_done = std::collections::BTreeSet::new();
    let enforce_on = |f: &Finding| -> Option<(Action, Timestamp)> {
        let m = memory?;
        // Only `apply` names a date to the owner: `plan` says nothing to
        // owners (the digest says what apply would do).
        if m.enforce.mode != Mode::Apply || f.access_key_id.is_none() {
            return None;
        }
        let action = action_for(f.check)?;
        if action == Action::Delete && m.enforce.delete_inactive_after_days.is_none() {
            return None;
        }
        let e = m.ledger.entries.get(f.finding_id.as_deref()?)?;
        Some((action, scheduled_for(e, &m.enforce, now)?))
    };

    for f in &report.findings {
        let acted = f
            .access_key_id
            .as_ref()
            .and_then(|k| done.get(&(&f.account_id, k)));
        if let Some(action) = acted {
            if let (Some(owner), true) = (&f.owner.email, told_done.insert(&action.finding_id)) {
                entry(&mut people, owner)
                    .enforced
                    .push((f.clone(), (*action).clone()));
            }
            continue;
        }
        let (owner_stage, account_stage) = match ledger_entry(f) {
            Some((e, m)) => {
                let regular = owner_due(e, now, &m.cadence);
                // The final notice, once, as soon as the date is near (but never
                // a second message the same day). A first notice or a reminder
                // that names the date for the first time is that notice.
                let owner = match regular {
                    Some(Stage::First) | Some(Stage::Reminder) | None
                        if final_notice_due(e, &m.enforce, now)
                            && (regular.is_some() || !notified_today(e, now)) =>
                    {
                        Some(Stage::Final)
                    }
                    other => other,
                };
                (owner, account_owner_due(e))
            }
            // No memory: everything is new, every run.
            None => (Some(Stage::First), Some(Stage::First)),
        };
        if let Some(owner) = &f.owner.email {
            let p = entry(&mut people, owner);
            match owner_stage {
                Some(stage) => p.own.push(DueFinding {
                    finding: f.clone(),
                    stage,
                    enforce_on: enforce_on(f),
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
                        enforce_on: enforce_on(f),
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
                    enforce_on: enforce_on(f),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::checks::Severity;
    use crate::core::ledger::{reconcile, record_notice, Notice};
    use crate::core::record::Observed;
    use crate::core::templates::SAMPLE_REPORT;
    use jiff::SignedDuration;

    fn sample() -> Report {
        serde_json::from_str(SAMPLE_REPORT).unwrap()
    }
    fn recipients(plans: &[PersonPlan]) -> Vec<String> {
        plans.iter().map(|p| p.recipient.to_string()).collect()
    }
    fn days(n: i64) -> SignedDuration {
        SignedDuration::from_hours(24 * n)
    }
    /// The sample report seen on day 0 with every message delivered, then
    /// again `later` days on.
    fn told_then(later: i64) -> (Report, Ledger) {
        let mut ledger = Ledger::new("o-test");
        let mut first = sample();
        first.evaluated_at -= days(later);
        reconcile(
            &mut ledger,
            &mut first,
            &Observed::new(),
            &Cadence::default(),
        );
        for p in plan_people(&first, &NotifyPolicy::default(), None) {
            let ids: Vec<(String, Stage)> = p
                .own
                .iter()
                .chain(p.accounts.iter().flat_map(|(_, f)| f))
                .map(|d| (d.finding.finding_id.clone().unwrap(), d.stage))
                .collect();
            let notice = Notice {
                at: first.evaluated_at,
                stage: Stage::First,
                recipients: vec![p.recipient.to_string()],
                message_id: None,
                key_owner: None,
            };
            record_notice(&mut ledger, &ids, &notice);
        }
        let mut now = sample();
        reconcile(&mut ledger, &mut now, &Observed::new(), &Cadence::default());
        (now, ledger)
    }

    #[test]
    fn without_memory_every_owner_hears_of_every_finding() {
        let report = sample();
        let plans = plan_people(&report, &NotifyPolicy::default(), None);
        let own: usize = plans.iter().map(|p| p.own.len()).sum();
        let with_owner = report
            .findings
            .iter()
            .filter(|f| f.owner.email.is_some())
            .count();
        assert_eq!(own, with_owner);
        assert!(plans.iter().all(|p| p.own_open.is_empty()));
        assert!(plans
            .iter()
            .flat_map(|p| &p.own)
            .all(|d| d.stage == Stage::First));
        assert!(
            plans.iter().any(|p| !p.accounts.is_empty()),
            "account owners hear too"
        );
        // Ordered by address, most urgent first.
        let r = recipients(&plans);
        let mut sorted = r.clone();
        sorted.sort_by_key(|a| a.to_ascii_lowercase());
        assert_eq!(r, sorted);
        for p in &plans {
            for w in p.own.windows(2) {
                assert!(urgency(&w[0].finding, &w[1].finding).is_le());
            }
        }
    }

    #[test]
    fn a_same_day_rerun_plans_no_message() {
        let (report, ledger) = told_then(0);
        let memory = Memory {
            ledger: &ledger,
            cadence: Cadence::default(),
            enforce: Default::default(),
        };
        assert_eq!(
            recipients(&plan_people(
                &report,
                &NotifyPolicy::default(),
                Some(memory)
            )),
            Vec::<String>::new()
        );
    }

    #[test]
    fn the_next_day_only_owners_of_critical_findings_hear_and_see_the_rest_below() {
        let (report, ledger) = told_then(1);
        let memory = Memory {
            ledger: &ledger,
            cadence: Cadence::default(),
            enforce: Default::default(),
        };
        let plans = plan_people(&report, &NotifyPolicy::default(), Some(memory));
        assert!(!plans.is_empty());
        for p in &plans {
            assert!(
                p.accounts.is_empty(),
                "account owners hear of new findings and escalations only"
            );
            assert!(p
                .own
                .iter()
                .all(|d| d.finding.severity == Severity::Critical && d.stage == Stage::Reminder));
            assert!(p.own_open.iter().all(|f| f.severity != Severity::Critical));
        }
    }

    #[test]
    fn after_a_week_every_owner_is_reminded() {
        let (report, ledger) = told_then(7);
        let memory = Memory {
            ledger: &ledger,
            cadence: Cadence::default(),
            enforce: Default::default(),
        };
        let plans = plan_people(&report, &NotifyPolicy::default(), Some(memory));
        let due: usize = plans.iter().map(|p| p.own.len()).sum();
        let with_owner = report
            .findings
            .iter()
            .filter(|f| f.owner.email.is_some())
            .count();
        assert_eq!(due, with_owner);
    }

    #[test]
    fn escalations_reach_the_account_owner_and_a_manager() {
        let (mut report, mut ledger) = told_then(30);
        let manager = EmailAddress::parse("boss@example.com").unwrap();
        let target = report
            .findings
            .iter()
            .position(|f| f.escalated_at.is_some() && f.severity >= Severity::Medium)
            .expect("a finding escalated after 30 days");
        report.findings[target].manager = Some(manager.clone());
        ledger.updated_at = Some(report.evaluated_at);
        let memory = Memory {
            ledger: &ledger,
            cadence: Cadence::default(),
            enforce: Default::default(),
        };
        let plans = plan_people(&report, &NotifyPolicy::default(), Some(memory));
        let boss = plans
            .iter()
            .find(|p| p.recipient == manager)
            .expect("the manager is told");
        assert_eq!(boss.managed.len(), 1);
        assert_eq!(boss.managed[0].stage, Stage::Escalation);
        assert!(plans
            .iter()
            .flat_map(|p| p.accounts.iter().flat_map(|(_, f)| f))
            .all(|d| d.stage == Stage::Escalation));
    }
}
