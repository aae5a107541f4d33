//! What users can do, remembered between runs. Reading a user's policies
//! costs four IAM calls and more for each group and managed policy, against
//! the account's IAM budget; policies change far less often than keys age.
//! The ledger keeps each flagged user's privilege with the time it was read,
//! and a run reads it again only when due, on the same schedule as the
//! account tag cache (`core::tag_cache`):
//!
//! - never read (a user newly flagged), or read `privilege_max_age_days` ago
//!   or more: read now;
//! - otherwise on the account's own day of the cycle (its id modulo the max
//!   age), so the refreshes are spread evenly over the days;
//! - a refresh that fails falls back to what was read while it is less than
//!   twice the max age old (its `read_at` says how old it is); older than
//!   that the privilege is `unknown`, saying why.
//!
//! An `unknown` privilege is never remembered (the next run tries again).
//! Whether AWS quarantined a user (`key-exposed`) is not cached: that is a
//! finding, looked up every run.
//!
//! `privilege_max_age_days = 0` turns the cache off (every run reads).
//! Pure: `now` is an argument.

use std::collections::BTreeMap;

use jiff::Timestamp;

use super::{Class, Privilege};
use crate::core::model::AccountId;
use crate::core::tag_cache::{refresh, Refresh};

/// Each account's flagged users' privileges as last read (user name → it;
/// every entry's `read_at` is set).
pub type Cache = BTreeMap<AccountId, BTreeMap<String, Privilege>>;

/// Where this run gets a user's privilege.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source<'a> {
    /// Fresh enough and not the account's refresh day: no call.
    Cached(&'a Privilege),
    /// Read the policies; `fallback` if that fails (never older than twice
    /// the max age).
    Read { fallback: Option<&'a Privilege> },
}

fn whole_days(from: Timestamp, to: Timestamp) -> i64 {
    (to.as_second() - from.as_second()).div_euclid(86_400)
}

/// Where the privilege of a user of `account` comes from this run.
pub fn source<'a>(
    cached: Option<&'a Privilege>,
    account: &AccountId,
    now: Timestamp,
    max_age_days: u32,
) -> Source<'a> {
    let Some((c, read_at)) = cached
        .filter(|_| max_age_days > 0)
        .and_then(|c| Some((c, c.read_at?)))
    else {
        return Source::Read { fallback: None };
    };
    match refresh(read_at, account, now, max_age_days) {
        Refresh::Keep => Source::Cached(c),
        Refresh::Read { usable } => Source::Read {
            fallback: usable.then_some(c),
        },
    }
}

/// Stores the privileges read this run (never an `unknown` one) and forgets
/// entries too old to be used (twice the max age), so users no longer
/// flagged and accounts that left do not stay.
pub fn remember(
    cache: &mut Cache,
    read: &BTreeMap<AccountId, BTreeMap<String, Privilege>>,
    now: Timestamp,
    max_age_days: u32,
) {
    if max_age_days == 0 {
        cache.clear();
        return;
    }
    for (account, users) in read {
        let entry = cache.entry(account.clone()).or_default();
        for (user, p) in users {
            if p.class != Class::Unknown && p.read_at.is_some() {
                entry.insert(user.clone(), p.clone());
            }
        }
    }
    let max = 2 * i64::from(max_age_days);
    for users in cache.values_mut() {
        users.retain(|_, p| p.read_at.is_some_and(|t| whole_days(t, now) < max));
    }
    cache.retain(|_, users| !users.is_empty());
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::tag_cache::is_refresh_day;
    use jiff::SignedDuration;

    fn at(days: i64) -> Timestamp {
        let t: Timestamp = "2026-11-30T06:00:00Z".parse().unwrap();
        t + SignedDuration::from_hours(24 * days)
    }

    fn acct(n: u64) -> AccountId {
        AccountId::parse(&format!("{n:012}")).unwrap()
    }

    fn read(days: i64, class: Class) -> Privilege {
        Privilege {
            class,
            conditional: false,
            evidence: vec!["AdministratorAccess attached to the user".into()],
            read_at: Some(at(days)),
        }
    }

    /// An account whose refresh day `now` is not (and one whose it is).
    fn not_refresh_day(now: Timestamp) -> AccountId {
        (1..100)
            .map(acct)
            .find(|a| !is_refresh_day(a, now, 7))
            .unwrap()
    }

    #[test]
    fn a_user_never_read_is_read() {
        assert_eq!(
            source(None, &acct(1), at(0), 7),
            Source::Read { fallback: None }
        );
    }

    #[test]
    fn a_fresh_entry_is_used_except_on_the_accounts_refresh_day() {
        let p = read(0, Class::Admin);
        let now = at(3);
        let quiet = not_refresh_day(now);
        assert_eq!(source(Some(&p), &quiet, now, 7), Source::Cached(&p));
        let due = (1..100)
            .map(acct)
            .find(|a| is_refresh_day(a, now, 7))
            .unwrap();
        assert_eq!(
            source(Some(&p), &due, now, 7),
            Source::Read { fallback: Some(&p) }
        );
        // Read today: not again today, even on the refresh day.
        assert_eq!(source(Some(&p), &due, at(0), 7), Source::Cached(&p));
    }

    #[test]
    fn an_old_entry_is_read_again_and_is_a_fallback_only_below_twice_the_max_age() {
        let p = read(0, Class::Write);
        let quiet = not_refresh_day(at(7));
        assert_eq!(
            source(Some(&p), &quiet, at(7), 7),
            Source::Read { fallback: Some(&p) }
        );
        assert_eq!(
            source(Some(&p), &acct(5), at(14), 7),
            Source::Read { fallback: None }
        );
    }

    #[test]
    fn max_age_zero_reads_every_run_and_forgets_everything() {
        let p = read(0, Class::Admin);
        assert_eq!(
            source(Some(&p), &acct(1), at(0), 0),
            Source::Read { fallback: None }
        );
        let mut cache = Cache::new();
        cache.insert(acct(1), BTreeMap::from([("a".to_owned(), p)]));
        remember(&mut cache, &BTreeMap::new(), at(0), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn remember_keeps_what_was_read_never_unknown_and_forgets_the_too_old() {
        let mut cache = Cache::new();
        cache.insert(
            acct(1),
            BTreeMap::from([
                ("old".to_owned(), read(0, Class::Write)),
                ("kept".to_owned(), read(10, Class::Read)),
            ]),
        );
        cache.insert(
            acct(2),
            BTreeMap::from([("gone".to_owned(), read(0, Class::Read))]),
        );
        let mut unknown = Privilege::unknown("iam:GetUser: Throttling");
        unknown.read_at = Some(at(14));
        let now_read = BTreeMap::from([(
            acct(1),
            BTreeMap::from([
                ("new".to_owned(), read(14, Class::Admin)),
                ("failed".to_owned(), unknown),
            ]),
        )]);
        remember(&mut cache, &now_read, at(14), 7);
        let users: Vec<&String> = cache[&acct(1)].keys().collect();
        assert_eq!(users, ["kept", "new"]);
        assert!(
            !cache.contains_key(&acct(2)),
            "only too-old entries: dropped"
        );
    }
}
