//! The cache cycle of the account tags, privileges and footprints, as the
//! end-to-end tests need it.

/// For `account` and a 7-day cache cycle starting on day 0 (`day(d)` is the
/// instant of day d): a day in 1..7 that is not the account's refresh day,
/// and the first later day that is (7 when none is: the max age then forces
/// the read).
pub fn quiet_and_refresh_days(account: &str, day: impl Fn(i64) -> jiff::Timestamp) -> (i64, i64) {
    let id = keywarden::core::model::AccountId::parse(account).expect("an account id");
    let refresh_day = |d: i64| keywarden::core::tag_cache::is_refresh_day(&id, day(d), 7);
    let quiet = (1..7).find(|d| !refresh_day(*d)).expect("a quiet day");
    let refresh = (quiet + 1..7).find(|d| refresh_day(*d)).unwrap_or(7);
    (quiet, refresh)
}
