//! One risk order for every finding: which to fix first, and why. One
//! table, highest first:
//!
//! 1. `key-exposed`: AWS found the user's key in public.
//! 2. `root-access-key`: a root key can do everything and no policy limits it.
//! 3. An overdue or unused key whose user is `admin` or `escalation`.
//! 4. Everything else, by severity, then what the key can do, then days
//!    overdue.
//!
//! Ties go to the key overdue longest, then account, user and key, so the
//! order is the same run after run. `severity` stays each check's own (a
//! contract); `risk` orders. `rank` 1 is the first finding to fix.

use std::cmp::Reverse;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::checks::{CheckId, Severity};
use super::model::{days_between, AccessKeyId, AccountId};
use super::privilege::Class;

/// A finding's place in the risk order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Risk {
    pub rank: u32,
    pub reason: String,
}

/// What ranking needs of one finding.
#[derive(Debug, Clone, Copy)]
pub struct Input<'a> {
    pub check: CheckId,
    pub severity: Severity,
    /// What the key can do (`None`: not worked out).
    pub class: Option<Class>,
    pub due_at: Option<Timestamp>,
    pub account: &'a AccountId,
    pub user: &'a str,
    pub key: Option<&'a AccessKeyId>,
}

/// The tier of the table above (lower first).
fn tier(f: &Input<'_>) -> u8 {
    match f.check {
        CheckId::KeyExposed => 1,
        CheckId::RootAccessKey => 2,
        CheckId::KeyAgeOverdue | CheckId::KeyUnused
            if matches!(f.class, Some(Class::Admin | Class::Escalation)) =>
        {
            3
        }
        _ => 4,
    }
}

fn overdue_days(f: &Input<'_>, now: Timestamp) -> i64 {
    f.due_at.map_or(0, |d| days_between(d, now).max(0))
}

fn reason(f: &Input<'_>, now: Timestamp) -> String {
    let can = match f.class {
        None | Some(Class::Unknown) => "what it can do is not known".to_owned(),
        Some(c) => format!("it can {}", c.words()),
    };
    let late = match (f.due_at, overdue_days(f, now)) {
        (None, _) => String::new(),
        (Some(d), 0) if d > now => " (not due yet)".to_owned(),
        (Some(_), 0) => " (due now)".to_owned(),
        (Some(_), 1) => " (1 day past due)".to_owned(),
        (Some(_), n) => format!(" ({n} days past due)"),
    };
    match tier(f) {
        1 => "AWS found a key of this user exposed in public".to_owned(),
        2 => "a root user's key: it can do everything, and no policy limits it".to_owned(),
        3 => format!(
            "{}{late}, and {can}",
            if f.check == CheckId::KeyUnused {
                "unused"
            } else {
                "overdue for rotation"
            }
        ),
        _ => format!("{} {}{late}; {can}", f.severity.as_str(), f.check.as_str()),
    }
}

/// The risk of each finding of one report, in the order given, as of `now`.
pub fn rank(findings: &[Input<'_>], now: Timestamp) -> Vec<Risk> {
    let mut order: Vec<usize> = (0..findings.len()).collect();
    order.sort_by_key(|&i| {
        let f = &findings[i];
        (
            tier(f),
            Reverse(f.severity),
            Reverse(f.class.unwrap_or(Class::Unknown)),
            Reverse(overdue_days(f, now)),
            f.account,
            f.user,
            f.key,
            f.check,
        )
    });
    let mut out = vec![
        Risk {
            rank: 0,
            reason: String::new()
        };
        findings.len()
    ];
    for (n, i) in order.into_iter().enumerate() {
        out[i] = Risk {
            rank: n as u32 + 1,
            reason: reason(&findings[i], now),
        };
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2026-11-29T00:00:00Z".parse().unwrap()
    }

    struct F {
        check: CheckId,
        user: &'static str,
        class: Option<Class>,
        overdue: i64,
    }

    fn ranked(fs: &[F]) -> Vec<Risk> {
        let account = AccountId::parse("111122223333").unwrap();
        let inputs: Vec<Input<'_>> = fs
            .iter()
            .map(|f| Input {
                check: f.check,
                severity: f.check.check().severity,
                class: f.class,
                due_at: Some(now() - jiff::SignedDuration::from_hours(24 * f.overdue)),
                account: &account,
                user: f.user,
                key: None,
            })
            .collect();
        rank(&inputs, now())
    }

    fn f(check: CheckId, user: &'static str, class: Option<Class>, overdue: i64) -> F {
        F {
            check,
            user,
            class,
            overdue,
        }
    }

    #[test]
    fn the_table_orders_exposed_root_dangerous_then_the_rest() {
        let fs = vec![
            f(CheckId::KeyAgeOverdue, "old-reader", Some(Class::Read), 300),
            f(CheckId::KeyUnused, "idle-admin", Some(Class::Admin), 1),
            f(
                CheckId::RootAccessKey,
                "<root_account>",
                Some(Class::Admin),
                0,
            ),
            f(CheckId::KeyExposed, "leaky", Some(Class::Write), 0),
            f(CheckId::KeyAgeOverdue, "old-writer", Some(Class::Write), 10),
            f(
                CheckId::KeyAgeOverdue,
                "escalator",
                Some(Class::Escalation),
                5,
            ),
            f(CheckId::KeyAgeWarning, "soon", Some(Class::Admin), 0),
        ];
        let risks = ranked(&fs);
        let mut by_rank: Vec<(u32, &str)> = risks
            .iter()
            .zip(&fs)
            .map(|(r, f)| (r.rank, f.user))
            .collect();
        by_rank.sort();
        let users: Vec<&str> = by_rank.iter().map(|(_, u)| *u).collect();
        assert_eq!(
            users,
            [
                "leaky",
                "<root_account>",
                "escalator",
                "idle-admin",
                "old-writer",
                "old-reader",
                "soon"
            ]
        );
        assert_eq!(risks[3].rank, 1);
        assert_eq!(
            risks[5].reason,
            "overdue for rotation (5 days past due), and it can give itself more rights (privilege escalation)"
        );
        assert_eq!(
            risks[0].reason,
            "high key-age-overdue (300 days past due); it can only read"
        );
    }

    #[test]
    fn within_a_tier_the_longest_overdue_goes_first() {
        let risks = ranked(&[
            f(CheckId::KeyAgeOverdue, "a", Some(Class::Write), 3),
            f(CheckId::KeyAgeOverdue, "b", Some(Class::Write), 30),
        ]);
        assert_eq!(risks[1].rank, 1);
        assert_eq!(risks[0].rank, 2);
    }
}
