//! The checks: each one a self-describing unit (id, title, severity, risk,
//! remediation, references) with a pure `evaluate`. Thresholds come from the
//! [`Policy`], `now` is an argument; nothing here reads the clock.

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::{add_days, days_between, KeyFacts, KeyStatus, Policy, UserFacts};

/// Stable check ids: part of the report contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CheckId {
    KeyExposed,
    RootAccessKey,
    KeyAgeOverdue,
    KeyAgeWarning,
    KeyUnused,
    TwoActiveKeys,
    InactiveKeyStale,
}

impl CheckId {
    pub fn as_str(self) -> &'static str {
        self.check().id_str
    }
    /// The check's description; `CHECKS` is in `CheckId` order (a test holds it).
    pub fn check(self) -> &'static Check {
        &CHECKS[self as usize]
    }
}

/// Severity, ordered from least to most urgent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    pub const ALL: [Severity; 4] = [Self::Critical, Self::High, Self::Medium, Self::Low];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Low => "low",
            Self::Medium => "medium",
            Self::High => "high",
            Self::Critical => "critical",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(value.trim()))
    }
}

/// What a check sees: one key and the principal that holds it.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    pub user: &'a UserFacts,
    pub key: &'a KeyFacts,
}

/// A check that fired. `due_at` is when the key must be (or had to be)
/// dealt with, where the check has a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hit {
    pub due_at: Option<Timestamp>,
}

/// One check: what it looks for, why it matters, how to fix it.
pub struct Check {
    pub id: CheckId,
    pub id_str: &'static str,
    pub title: &'static str,
    pub severity: Severity,
    pub risk: &'static str,
    pub remediation: &'static str,
    /// The action in a few words, for tables, JSON and CSV.
    pub fix: &'static str,
    pub references: &'static [&'static str],
    evaluate: fn(Subject<'_>, &Policy, Timestamp) -> Option<Hit>,
}

impl Check {
    pub fn evaluate(&self, subject: Subject<'_>, policy: &Policy, now: Timestamp) -> Option<Hit> {
        (self.evaluate)(subject, policy, now)
    }
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("id", &self.id).finish()
    }
}

/// Every check, in report order.
pub static CHECKS: [Check; 7] = [
    Check {
        id: CheckId::KeyExposed,
        id_str: "key-exposed",
        title: "AWS found a key of this user exposed in public",
        severity: Severity::Critical,
        risk: "AWS found a key of this user exposed in public (a code push, a paste site) and attached its quarantine policy: whoever copied the key may be using it now.",
        remediation: "AWS found a key of this user exposed in public and quarantined the user: rotate every key of this user, check CloudTrail for use you do not recognise, keep the quarantine policy attached until the support case says otherwise.",
        fix: "rotate every key of this user now",
        references: &["AWS Health AWS_RISK_CREDENTIALS_EXPOSED", "AWS managed policy AWSCompromisedKeyQuarantineV3"],
        // Every active key of a quarantined user: AWS does not say which key leaked.
        evaluate: |s, _, _| {
            (!s.user.is_root && s.key.status == KeyStatus::Active && !s.user.quarantine.is_empty())
                .then_some(Hit { due_at: None })
        },
    },
    Check {
        id: CheckId::RootAccessKey,
        id_str: "root-access-key",
        title: "Root user has an active access key",
        severity: Severity::Critical,
        risk: "The root user's key cannot be limited by IAM policies or SCPs; whoever holds it owns the account.",
        remediation: "Sign in as root, open Security credentials, delete the access key (deactivate first if something may still use it) and use IAM roles instead.",
        fix: "delete the root access key",
        references: &["CIS AWS Foundations 1.4", "CIS AWS Foundations 2.3", "AWS Security Hub IAM.4"],
        evaluate: |s, _, _| (s.user.is_root && s.key.status == KeyStatus::Active).then_some(Hit { due_at: None }),
    },
    Check {
        id: CheckId::KeyAgeOverdue,
        id_str: "key-age-overdue",
        title: "Access key overdue for rotation",
        severity: Severity::High,
        risk: "The longer a key lives, the more places it may have leaked to (laptops, CI logs, old images).",
        remediation: "Create a second key, move every consumer to it, deactivate the old key, watch for errors, then delete it.",
        fix: "rotate the key",
        references: &["CIS AWS Foundations 1.14", "AWS Security Hub IAM.3", "AWS Config access-keys-rotated"],
        evaluate: |s, p, now| {
            let created = active_user_key_created(s)?;
            (days_between(created, now) >= i64::from(p.max_age_days))
                .then_some(Hit { due_at: Some(add_days(created, p.max_age_days)) })
        },
    },
    Check {
        id: CheckId::KeyAgeWarning,
        id_str: "key-age-warning",
        title: "Access key due for rotation soon",
        severity: Severity::Low,
        risk: "The key will soon exceed the rotation limit.",
        remediation: "Plan the rotation now: create a second key, move consumers, deactivate and delete the old key before the due date.",
        fix: "plan the rotation",
        references: &[],
        evaluate: |s, p, now| {
            let created = active_user_key_created(s)?;
            let age = days_between(created, now);
            (age >= i64::from(p.warn_age_days) && age < i64::from(p.max_age_days))
                .then_some(Hit { due_at: Some(add_days(created, p.max_age_days)) })
        },
    },
    Check {
        id: CheckId::KeyUnused,
        id_str: "key-unused",
        title: "Active access key not used recently",
        severity: Severity::Medium,
        risk: "An unused key is pure exposure: nobody would notice if it leaked, and nothing breaks if it goes.",
        remediation: "Deactivate the key; delete it after a quiet period if nothing complains.",
        fix: "deactivate the key",
        references: &["CIS AWS Foundations 1.12", "AWS Security Hub IAM.22"],
        evaluate: |s, p, now| {
            let created = active_user_key_created(s)?;
            let since = s.key.last_used_at.unwrap_or(created);
            (days_between(since, now) >= i64::from(p.unused_days))
                .then_some(Hit { due_at: Some(add_days(since, p.unused_days)) })
        },
    },
    Check {
        id: CheckId::TwoActiveKeys,
        id_str: "two-active-keys",
        title: "User has two active access keys",
        severity: Severity::Medium,
        risk: "Two live keys double the exposure; usually a rotation was started and never finished.",
        remediation: "Finish the rotation: move every consumer to the newer key, then deactivate and delete this older one.",
        fix: "finish the rotation, retire this key",
        references: &["CIS AWS Foundations 1.13"],
        // Reported once per user, on the older active key: that is the one to retire.
        evaluate: |s, _, _| {
            if s.user.is_root || s.key.status != KeyStatus::Active || s.user.active_keys() < 2 {
                return None;
            }
            let oldest = s
                .user
                .keys
                .iter()
                .filter(|k| k.status == KeyStatus::Active)
                .min_by(|a, b| a.created_at.cmp(&b.created_at).then(a.access_key_id.cmp(&b.access_key_id)))?;
            std::ptr::eq(oldest, s.key).then_some(Hit { due_at: None })
        },
    },
    Check {
        id: CheckId::InactiveKeyStale,
        id_str: "inactive-key-stale",
        title: "Inactive access key never deleted",
        severity: Severity::Low,
        risk: "A deactivated key can be switched back on by anyone with iam:UpdateAccessKey.",
        remediation: "Delete the inactive key; create a new one if it is ever needed again.",
        fix: "delete the inactive key",
        references: &[],
        evaluate: |s, p, now| {
            if s.user.is_root || s.key.status != KeyStatus::Inactive {
                return None;
            }
            let created = s.key.created_at?;
            (days_between(created, now) > i64::from(p.stale_inactive_days))
                .then_some(Hit { due_at: Some(add_days(created, p.stale_inactive_days)) })
        },
    },
];

/// The creation time of an active key of an IAM user (age checks skip root:
/// `root-access-key` already covers it at a higher severity).
fn active_user_key_created(s: Subject<'_>) -> Option<Timestamp> {
    if s.user.is_root || s.key.status != KeyStatus::Active {
        return None;
    }
    s.key.created_at
}

/// Every check that fires for one key.
pub fn evaluate_key(subject: Subject<'_>, policy: &Policy, now: Timestamp) -> Vec<(CheckId, Hit)> {
    CHECKS
        .iter()
        .filter_map(|c| c.evaluate(subject, policy, now).map(|hit| (c.id, hit)))
        .collect()
}

/// Whether any key of the user trips any check: such users are worth the
/// extra IAM calls (key ids, tags).
pub fn user_trips_a_check(user: &UserFacts, policy: &Policy, now: Timestamp) -> bool {
    user.keys.iter().any(|key| {
        CHECKS
            .iter()
            .any(|c| c.evaluate(Subject { user, key }, policy, now).is_some())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::model::AccessKeyId;

    const NOW: &str = "2026-11-29T12:00:00Z";
    const POLICY: Policy = Policy {
        warn_age_days: 75,
        max_age_days: 90,
        unused_days: 45,
        stale_inactive_days: 30,
    };

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }
    /// An instant `days` days (and `secs` extra seconds) before NOW.
    fn ago(days: i64, secs: i64) -> Timestamp {
        now() - jiff::SignedDuration::from_secs(days * 86_400 + secs)
    }
    fn key(id: &str, status: KeyStatus, created_days: i64, used_days: Option<i64>) -> KeyFacts {
        KeyFacts {
            access_key_id: Some(AccessKeyId::parse(id).unwrap()),
            status,
            created_at: Some(ago(created_days, 0)),
            last_used_at: used_days.map(|d| ago(d, 0)),
            last_used_service: used_days.map(|_| "s3".to_owned()),
            last_used_region: None,
        }
    }
    fn user(keys: Vec<KeyFacts>) -> UserFacts {
        UserFacts {
            user_name: "ci".into(),
            arn: "arn:aws:iam::111122223333:user/ci".into(),
            is_root: false,
            keys,
            tags: vec![],
            quarantine: Vec::new(),
            console_password: false,
        }
    }
    fn fired(u: &UserFacts, i: usize) -> Vec<CheckId> {
        evaluate_key(
            Subject {
                user: u,
                key: &u.keys[i],
            },
            &POLICY,
            now(),
        )
        .into_iter()
        .map(|(id, _)| id)
        .collect()
    }
    const A: &str = "AKIAAAAAAAAAAAAAAAAA";
    const B: &str = "AKIABBBBBBBBBBBBBBBB";

    #[test]
    fn every_active_key_of_a_quarantined_user_is_exposed_and_nothing_else_is() {
        let mut u = user(vec![
            key("AKIAAAAAAAAAAAAAAAA1", KeyStatus::Active, 5, Some(1)),
            key("AKIAAAAAAAAAAAAAAAA2", KeyStatus::Active, 6, None),
            key("AKIAAAAAAAAAAAAAAAA3", KeyStatus::Inactive, 7, None),
        ]);
        assert!(!fired(&u, 0).contains(&CheckId::KeyExposed));
        u.quarantine = vec!["AWSCompromisedKeyQuarantineV2 attached to its group ops".into()];
        assert_eq!(fired(&u, 0), vec![CheckId::KeyExposed]);
        assert!(fired(&u, 1).contains(&CheckId::KeyExposed));
        assert!(
            !fired(&u, 2).contains(&CheckId::KeyExposed),
            "an inactive key is not exposed now"
        );
        assert!(
            user_trips_a_check(&u, &POLICY, now()),
            "a new key of a quarantined user is worth the calls"
        );
        let mut root = u.clone();
        root.is_root = true;
        assert!(!fired(&root, 0).contains(&CheckId::KeyExposed));
        assert_eq!(CheckId::KeyExposed.check().severity, Severity::Critical);
    }

    #[test]
    fn age_thresholds_on_both_sides_of_each_boundary() {
        use CheckId::*;
        // (age in days, last used days ago) → expected checks; used recently so key-unused stays quiet.
        let table: &[(i64, Vec<CheckId>)] = &[
            (0, vec![]),
            (74, vec![]),
            (75, vec![KeyAgeWarning]),
            (89, vec![KeyAgeWarning]),
            (90, vec![KeyAgeOverdue]),
            (400, vec![KeyAgeOverdue]),
        ];
        for (age, expected) in table {
            let u = user(vec![key(A, KeyStatus::Active, *age, Some(0))]);
            assert_eq!(&fired(&u, 0), expected, "age {age}");
        }
    }

    #[test]
    fn age_counts_whole_days_one_second_before_the_boundary_is_not_enough() {
        let mut k = key(A, KeyStatus::Active, 0, Some(0));
        k.created_at = Some(ago(90, -1)); // 89 days, 23:59:59
        let u = user(vec![k]);
        assert_eq!(fired(&u, 0), vec![CheckId::KeyAgeWarning]);
    }

    #[test]
    fn unused_counts_from_last_use_or_from_creation_when_never_used() {
        let table: &[(i64, Option<i64>, bool)] = &[
            (10, Some(44), false), // impossible in life but exercises the boundary alone
            (60, Some(44), false),
            (60, Some(45), true),
            (44, None, false),
            (45, None, true),
        ];
        for (age, used, expect) in table {
            let u = user(vec![key(A, KeyStatus::Active, *age, *used)]);
            assert_eq!(
                fired(&u, 0).contains(&CheckId::KeyUnused),
                *expect,
                "age {age}, used {used:?}"
            );
        }
    }

    #[test]
    fn due_dates_follow_the_policy() {
        let u = user(vec![key(A, KeyStatus::Active, 100, None)]);
        let hits = evaluate_key(
            Subject {
                user: &u,
                key: &u.keys[0],
            },
            &POLICY,
            now(),
        );
        let due = |id| {
            hits.iter()
                .find(|(c, _)| *c == id)
                .unwrap()
                .1
                .due_at
                .unwrap()
        };
        assert_eq!(due(CheckId::KeyAgeOverdue), ago(10, 0));
        assert_eq!(due(CheckId::KeyUnused), ago(55, 0));
    }

    #[test]
    fn inactive_keys_are_stale_only_when_strictly_older_than_the_limit() {
        for (age, expect) in [(30, false), (31, true)] {
            let u = user(vec![key(A, KeyStatus::Inactive, age, None)]);
            assert_eq!(
                fired(&u, 0),
                if expect {
                    vec![CheckId::InactiveKeyStale]
                } else {
                    vec![]
                },
                "age {age}"
            );
        }
    }

    #[test]
    fn two_active_keys_fire_once_on_the_older_key() {
        let u = user(vec![
            key(B, KeyStatus::Active, 5, Some(0)),
            key(A, KeyStatus::Active, 10, Some(0)),
        ]);
        assert_eq!(fired(&u, 0), vec![]);
        assert_eq!(fired(&u, 1), vec![CheckId::TwoActiveKeys]);
        let one_inactive = user(vec![
            key(B, KeyStatus::Inactive, 5, None),
            key(A, KeyStatus::Active, 10, Some(0)),
        ]);
        assert_eq!(fired(&one_inactive, 1), vec![]);
    }

    #[test]
    fn root_keys_are_critical_and_never_aged_twice() {
        let mut u = user(vec![key(A, KeyStatus::Active, 400, None)]);
        u.is_root = true;
        u.keys[0].access_key_id = None;
        assert_eq!(fired(&u, 0), vec![CheckId::RootAccessKey]);
        assert_eq!(CheckId::RootAccessKey.check().severity, Severity::Critical);
        u.keys[0].status = KeyStatus::Inactive;
        assert_eq!(fired(&u, 0), vec![]);
    }

    #[test]
    fn every_check_describes_itself() {
        for (i, c) in CHECKS.iter().enumerate() {
            assert_eq!(c.id as usize, i, "CHECKS is in CheckId order");
            assert_eq!(serde_json::to_value(c.id).unwrap(), c.id_str);
            assert!(!c.title.is_empty() && !c.risk.is_empty() && !c.remediation.is_empty());
        }
        assert_eq!(CheckId::KeyAgeOverdue.check().severity, Severity::High);
        assert_eq!(CheckId::KeyUnused.check().severity, Severity::Medium);
        assert!(Severity::Critical > Severity::High && Severity::Medium > Severity::Low);
    }

    #[test]
    fn thresholds_come_from_the_policy() {
        let seed = Policy {
            warn_age_days: 15,
            max_age_days: 20,
            ..POLICY
        };
        let u = user(vec![key(A, KeyStatus::Active, 16, Some(0))]);
        let ids: Vec<_> = evaluate_key(
            Subject {
                user: &u,
                key: &u.keys[0],
            },
            &seed,
            now(),
        )
        .into_iter()
        .map(|(id, _)| id)
        .collect();
        assert_eq!(ids, vec![CheckId::KeyAgeWarning]);
    }
}
