//! Account tags cached in the ledger, end to end: the real binary against
//! moto, runs days apart over one state directory while the account's owner
//! tag changes behind the scanner's back. Within `account_tags_max_age_days`
//! the remembered owner is used (no Organizations call) except on the
//! account's own refresh day; past it the new tag is read.

use crate::support;

use crate::support::{run, Moto, Seeded};
use serde_json::{json, Value};

fn at(days: i64) -> String {
    let t: jiff::Timestamp = support::NOW.parse().unwrap();
    (t + jiff::SignedDuration::from_hours(24 * days)).to_string()
}

fn spec() -> Value {
    json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "accounts": [
            {"name": "management", "email": "master@example.com", "management": true},
            {"name": "prod", "email": "prod@example.com", "tags": {"owner": "old-team@example.com"},
             "users": [
                {"name": "ci-deploy", "tags": {"owner": "dev@example.com"},
                 "keys": [{"age_days": 120, "last_used_days": 1}]}
             ]}
        ]
    })
}

/// The account owner of `prod` in a `scan --format json` as of `now`.
fn prod_owner(
    moto: &Moto,
    seeded: &Seeded,
    state: &std::path::Path,
    now: &str,
    max_age: &str,
) -> String {
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    cmd.args(["notify", "--format", "json", "--now", now, "--outbox"])
        .arg(state.join("outbox"))
        .arg("--state")
        .arg(state)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_ACCOUNT_TAGS_MAX_AGE_DAYS", max_age);
    let (code, stdout, stderr) = run(&mut cmd);
    assert_eq!(code, 0, "{stderr}");
    let report: Value = serde_json::from_str(&stdout).unwrap();
    let prod = seeded.account("prod");
    report["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["account_id"] == prod)
        .and_then(|a| a["owner"]["email"].as_str())
        .unwrap_or("-")
        .to_owned()
}

fn retag(moto: &Moto, seeded: &Seeded, owner: &str) {
    moto.hook(
        "/_keywarden/org",
        &json!({"op": "tag_account", "management_account_id": seeded.0["management_account_id"],
                "account_id": seeded.account("prod"), "tags": {"owner": owner}}),
    );
}

#[test]
fn a_changed_account_tag_is_seen_on_the_refresh_day_or_once_the_cached_tags_are_too_old() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec());
    let state = tempfile::tempdir().unwrap();
    let prod = keywarden::core::model::AccountId::parse(&seeded.account("prod")).unwrap();
    let day = |d: i64| at(d).parse::<jiff::Timestamp>().unwrap();
    // A day inside the cycle that is not prod's refresh day, and its refresh day.
    let quiet = (1..7)
        .find(|d| !keywarden::core::tag_cache::is_refresh_day(&prod, day(*d), 7))
        .unwrap();
    let refresh = (1..7).find(|d| keywarden::core::tag_cache::is_refresh_day(&prod, day(*d), 7));

    assert_eq!(
        prod_owner(&moto, &seeded, state.path(), &at(0), "7"),
        "old-team@example.com"
    );
    let ledger: Value = serde_json::from_slice(
        &std::fs::read(
            std::fs::read_dir(state.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .find(|p| p.join("ledger.json").exists())
                .unwrap()
                .join("ledger.json"),
        )
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        ledger["account_tags"][prod.as_str()]["tags"],
        json!([["owner", "old-team@example.com"]]),
        "the ledger remembers the tags it read"
    );

    retag(&moto, &seeded, "new-team@example.com");
    assert_eq!(
        prod_owner(&moto, &seeded, state.path(), &at(quiet), "7"),
        "old-team@example.com",
        "day {quiet}: the cached tags are used"
    );
    let later = match refresh {
        // On its refresh day the account is read again.
        Some(d) if d > quiet => d,
        // Otherwise the max age forces it.
        _ => 7,
    };
    assert_eq!(
        prod_owner(&moto, &seeded, state.path(), &at(later), "7"),
        "new-team@example.com",
        "day {later}: read again"
    );

    // With the cache off every run reads.
    retag(&moto, &seeded, "third-team@example.com");
    assert_eq!(
        prod_owner(&moto, &seeded, state.path(), &at(later), "0"),
        "third-team@example.com"
    );
}
