//! Account tags remembered between runs. An account owner's address comes
//! from the account's Organizations tags, and Organizations answers
//! `ListTagsForResource` slowly (its budget is small and shared with the
//! listing): at 20,000 accounts a daily look-up of every account's tags is the
//! largest cost of a run. The ledger keeps each account's tags with the time
//! they were read, and a run reads them again only when due:
//!
//! - never read, or read `account_tags_max_age_days` ago or more: read now;
//! - otherwise on the account's own day of the cycle (its id modulo the max
//!   age), so after a first run the refreshes are spread evenly over the days
//!   instead of all falling due on the same one;
//! - a refresh that fails falls back to the cached tags while they are less
//!   than twice the max age old (the owner stays known); older than that they
//!   are not used at all, and the account owner is unresolved as without a
//!   cache.
//!
//! `account_tags_max_age_days = 0` turns the cache off (every run reads).
//! Pure: `now` is an argument.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use super::model::AccountId;

/// One account's tags as last read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CachedTags {
    pub read_at: Timestamp,
    pub tags: Vec<(String, String)>,
}

/// Where this run gets an account's tags.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TagSource<'a> {
    /// Fresh enough and not the account's refresh day: no call.
    Cached(&'a CachedTags),
    /// Read from Organizations; `fallback` if that fails (never older than
    /// twice the max age).
    Read { fallback: Option<&'a CachedTags> },
}

fn whole_days(from: Timestamp, to: Timestamp) -> i64 {
    (to.as_second() - from.as_second()).div_euclid(86_400)
}

/// Where the tags of `account` come from this run.
pub fn source<'a>(
    cached: Option<&'a CachedTags>,
    account: &AccountId,
    now: Timestamp,
    max_age_days: u32,
) -> TagSource<'a> {
    let Some(c) = cached.filter(|_| max_age_days > 0) else {
        return TagSource::Read { fallback: None };
    };
    match refresh(c.read_at, account, now, max_age_days) {
        Refresh::Keep => TagSource::Cached(c),
        Refresh::Read { usable } => TagSource::Read {
            fallback: usable.then_some(c),
        },
    }
}

/// Whether something of `account` read at `read_at` is read again at `now`
/// (the rule of this module, shared with `core::privilege::cache`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refresh {
    Keep,
    /// Read again; `usable`: what was read may stand in if that fails
    /// (younger than twice the max age).
    Read {
        usable: bool,
    },
}

/// The refresh rule (module docs); `max_age_days` > 0.
pub fn refresh(
    read_at: Timestamp,
    account: &AccountId,
    now: Timestamp,
    max_age_days: u32,
) -> Refresh {
    let max = i64::from(max_age_days);
    let age = whole_days(read_at, now);
    let usable = age < 2 * max;
    if age >= max || (age >= 1 && is_refresh_day(account, now, max_age_days)) {
        Refresh::Read { usable }
    } else {
        Refresh::Keep
    }
}

/// The account's own day in each `max_age_days`-day cycle (UTC days).
pub fn is_refresh_day(account: &AccountId, now: Timestamp, max_age_days: u32) -> bool {
    let max = u64::from(max_age_days.max(1));
    let id: u64 = account.as_str().parse().unwrap_or(0);
    let day = now.as_second().div_euclid(86_400) as u64;
    (day + id) % max == 0
}

/// Stores the tags read this run and forgets entries too old to be used
/// (twice the max age), so accounts that left the Organization do not stay.
pub fn remember(
    cache: &mut BTreeMap<AccountId, CachedTags>,
    read: &BTreeMap<AccountId, Vec<(String, String)>>,
    now: Timestamp,
    max_age_days: u32,
) {
    if max_age_days == 0 {
        cache.clear();
        return;
    }
    for (account, tags) in read {
        cache.insert(
            account.clone(),
            CachedTags {
                read_at: now,
                tags: tags.clone(),
            },
        );
    }
    let max = 2 * i64::from(max_age_days);
    cache.retain(|_, c| whole_days(c.read_at, now) < max);
}

#[cfg(test)]
mod tests {
    use super::*;
    use jiff::SignedDuration;

    fn at(days: i64) -> Timestamp {
        let t: Timestamp = "2026-11-30T06:00:00Z".parse().unwrap();
        t + SignedDuration::from_hours(24 * days)
    }

    fn acct(n: u64) -> AccountId {
        AccountId::parse(&format!("{n:012}")).unwrap()
    }

    fn cached(days: i64) -> CachedTags {
        CachedTags {
            read_at: at(days),
            tags: vec![("owner".into(), "a@example.com".into())],
        }
    }

    #[test]
    fn tags_never_read_or_older_than_the_max_age_are_read() {
        let a = acct(111122223333);
        assert_eq!(
            source(None, &a, at(0), 7),
            TagSource::Read { fallback: None }
        );
        let c = cached(0);
        // 7 days: due; the cache is the fallback until 14 days.
        assert_eq!(
            source(Some(&c), &a, at(7), 7),
            TagSource::Read { fallback: Some(&c) }
        );
        assert_eq!(
            source(Some(&c), &a, at(13), 7),
            TagSource::Read { fallback: Some(&c) }
        );
        assert_eq!(
            source(Some(&c), &a, at(14), 7),
            TagSource::Read { fallback: None }
        );
    }

    #[test]
    fn within_the_max_age_the_cache_is_used_except_on_the_accounts_refresh_day() {
        for n in 0..50u64 {
            let a = acct(100_000_000_000 + n * 7919);
            let c = cached(0);
            let reads: Vec<i64> = (0..7)
                .filter(|d| matches!(source(Some(&c), &a, at(*d), 7), TagSource::Read { .. }))
                .collect();
            // Same day as the read: never again; then at most one refresh day in the cycle.
            assert!(!reads.contains(&0), "{a}: {reads:?}");
            assert!(reads.len() <= 1, "{a}: {reads:?}");
        }
    }

    #[test]
    fn refresh_days_spread_accounts_evenly_over_the_cycle() {
        let accounts: Vec<AccountId> = (0..7000u64).map(|n| acct(200_000_000_000 + n)).collect();
        for day in 1..=7 {
            let due = accounts
                .iter()
                .filter(|a| is_refresh_day(a, at(day), 7))
                .count();
            assert_eq!(due, 1000, "day {day}");
        }
    }

    #[test]
    fn zero_turns_the_cache_off() {
        let a = acct(111122223333);
        let c = cached(0);
        assert_eq!(
            source(Some(&c), &a, at(0), 0),
            TagSource::Read { fallback: None }
        );
        let mut cache = BTreeMap::from([(a.clone(), c)]);
        remember(&mut cache, &BTreeMap::new(), at(1), 0);
        assert!(cache.is_empty());
    }

    #[test]
    fn remembering_stores_what_was_read_and_forgets_what_is_too_old_to_use() {
        let (a, b, c) = (acct(1), acct(2), acct(3));
        let mut cache = BTreeMap::from([(a.clone(), cached(0)), (b.clone(), cached(10))]);
        let read = BTreeMap::from([(
            c.clone(),
            vec![("owner".to_owned(), "c@example.com".to_owned())],
        )]);
        remember(&mut cache, &read, at(14), 7);
        assert!(!cache.contains_key(&a), "14 days old: never used again");
        assert_eq!(cache[&b].read_at, at(10));
        assert_eq!(cache[&c].read_at, at(14));
    }
}
