//! The ledger's store and its faults: local directory and S3 (moto). A
//! ledger that cannot be read stops the run (exit 2) and is left as it was;
//! one that cannot be saved makes the run incomplete (exit 3), and nothing
//! is ever overwritten by a run that lost a race.

use crate::support;

use std::path::{Path, PathBuf};

use crate::support::{run, Moto, Seeded, NOW};
use aws_config::{BehaviorVersion, Region};
use keywarden::state::{Store, StoreError, Version};
use serde_json::{json, Value};

fn spec(scanner_actions: Option<Vec<&str>>) -> Value {
    let mut spec = json!({
        "scanner_user": true,
        "enforce_auth": true,
        "ses_identities": ["example.com"],
        "buckets": ["kw-state"],
        "accounts": [
            {"name": "management", "email": "master@example.com", "management": true,
             "users": [{"name": "ci", "tags": {"owner": "dev@example.com"}, "keys": [{"age_days": 120, "last_used_days": 1}]}]}
        ]
    });
    if let Some(actions) = scanner_actions {
        spec["scanner_actions"] = json!(actions);
    }
    spec
}

fn notify(moto: &Moto, seeded: &Seeded, state: &str) -> (i32, Value, String) {
    let (ak, sk) = seeded.scanner();
    let mut cmd = moto.keywarden((&ak, &sk));
    // The emulator's day is the test-only setting: `--now` cannot reach S3.
    cmd.args(["notify", "--format", "json", "--state", state])
        .env("KEYWARDEN_CLOCK_OVERRIDE", NOW)
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com")
        .env("KEYWARDEN_MAX_SEND_RATE", "100");
    let (code, stdout, stderr) = run(&mut cmd);
    (
        code,
        serde_json::from_str(&stdout).unwrap_or(Value::Null),
        stderr,
    )
}

fn messages(moto: &Moto) -> usize {
    moto.data()["ses"]["RawMessage"]
        .as_array()
        .map_or(0, Vec::len)
}

fn org_dir(state: &Path) -> PathBuf {
    let dirs: Vec<PathBuf> = std::fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    dirs[0].clone()
}

#[test]
fn a_ledger_that_does_not_parse_or_has_an_unknown_schema_stops_the_run_untouched() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(None));
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    assert_eq!(notify(&moto, &seeded, s).0, 0);
    let ledger = org_dir(state.path()).join("ledger.json");
    let sent_before = messages(&moto);
    for (bad, says) in [
        (
            &b"{\"schema\": \"keywarden.ledger/v1\", \"entries\": ["[..],
            "not a keywarden ledger",
        ),
        (
            &b"{\"schema\": \"keywarden.ledger/v9\"}"[..],
            "keywarden.ledger/v9",
        ),
    ] {
        std::fs::write(&ledger, bad).unwrap();
        let (code, _, stderr) = notify(&moto, &seeded, s);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains(&ledger.display().to_string()) && stderr.contains(says),
            "names the file and the cause: {stderr}"
        );
        assert_eq!(std::fs::read(&ledger).unwrap(), bad, "left as it was");
        assert_eq!(messages(&moto), sent_before, "nothing was sent");
    }
}

#[test]
fn a_state_directory_that_cannot_be_written_stops_the_run_before_scanning() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(None));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let (code, _, stderr) = notify(&moto, &seeded, file.join("state").to_str().unwrap());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot use the state directory"),
        "{stderr}"
    );
    assert_eq!(messages(&moto), 0, "nothing was sent");
}

#[test]
fn a_ledger_locked_by_another_run_is_not_overwritten_and_nobody_is_mailed() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(None));
    let state = tempfile::tempdir().unwrap();
    let s = state.path().to_str().unwrap();
    assert_eq!(notify(&moto, &seeded, s).0, 0);
    let dir = org_dir(state.path());
    let before = std::fs::read(dir.join("ledger.json")).unwrap();
    std::fs::write(dir.join("ledger.json.lock"), "pid 1").unwrap();
    let sent = messages(&moto);
    // A run that could not save would mail now and again tomorrow: it stops
    // before it mails anyone (issue 22 item 8).
    let (code, _, stderr) = notify(&moto, &seeded, s);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("locked by another run"), "{stderr}");
    assert_eq!(messages(&moto), sent);
    assert_eq!(std::fs::read(dir.join("ledger.json")).unwrap(), before);
}

#[test]
fn the_ledger_and_archive_live_in_s3_and_a_second_run_the_same_day_sends_nothing() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(Some(keywarden::aws::all_actions())));
    let (code, report, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["findings"][0]["lifecycle"], "new");
    let first = messages(&moto);
    assert_eq!(first, 3, "the key owner, the account owner and the digest");
    let (code, report, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(report["findings"][0]["lifecycle"], "open");
    assert_eq!(
        messages(&moto),
        first + 1,
        "only the digest the second time"
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    let listing = rt.block_on(list_keys(&moto, &seeded, "kw-state"));
    assert!(
        listing
            .iter()
            .any(|k| k.starts_with("keywarden/o-") && k.ends_with("/ledger.json")),
        "{listing:?}"
    );
    assert_eq!(
        listing
            .iter()
            .filter(|k| k.contains("/reports/year=2026/month=11/day=29/"))
            .count(),
        4,
        "two runs' JSON and CSV: {listing:?}"
    );
}

#[test]
fn s3_load_failures_stop_the_run_with_a_hint_and_save_failures_make_it_incomplete() {
    let moto = Moto::start();
    let mut actions = keywarden::aws::all_actions();
    actions.retain(|a| *a != "s3:PutObject");
    let seeded = moto.seed(&spec(Some(actions)));

    let other = Moto::start();
    let everything = other.seed(&spec(Some(keywarden::aws::all_actions())));
    let (code, _, stderr) = notify(&other, &everything, "s3://no-such-bucket/keywarden");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("NoSuchBucket") && stderr.contains("bucket does not exist"),
        "{stderr}"
    );
    assert_eq!(messages(&other), 0);

    // Issue 22 item 8: a ledger that can be read but not saved re-mailed
    // everyone every run. The write probe (a conditional write, then a
    // delete) runs first: a run that cannot write stops before it mails
    // anyone (exit 2, naming why).
    let (code, _, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
    assert_eq!(code, 2, "could read, could not write: {stderr}");
    assert!(
        stderr.contains("cannot write") && stderr.contains("AccessDenied"),
        "{stderr}"
    );
    assert_eq!(
        messages(&moto),
        0,
        "nobody mailed by a run that cannot save"
    );
    // ... and one that may write but not delete (its lease would never be
    // given back).
    let third = Moto::start();
    let mut actions = keywarden::aws::all_actions();
    actions.retain(|a| *a != "s3:DeleteObject");
    let no_delete = third.seed(&spec(Some(actions)));
    let (code, _, stderr) = notify(&third, &no_delete, "s3://kw-state/keywarden");
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("s3:DeleteObject"), "{stderr}");
    assert_eq!(messages(&third), 0);
}

/// Issue 22 item 7: two runs at once mailed everyone twice. The second run
/// finds the first one's lease, names it, mails nobody and exits 3; a lease
/// past its expiry (a crashed run's) is taken over.
#[test]
fn a_second_run_while_one_holds_the_lease_mails_nobody() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(Some(keywarden::aws::all_actions())));
    let (code, _, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(messages(&moto), 3);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let listing = rt.block_on(list_keys(&moto, &seeded, "kw-state"));
    assert!(
        !listing.iter().any(|k| k.ends_with("/lease.json")),
        "released at the end: {listing:?}"
    );
    let ledger = listing
        .iter()
        .find(|k| k.ends_with("/ledger.json"))
        .unwrap();
    let org = ledger
        .trim_start_matches("keywarden/")
        .trim_end_matches("/ledger.json")
        .to_owned();

    for (expires, held) in [
        ("2099-01-01T00:00:00Z", true),
        ("2020-01-01T00:00:00Z", false),
    ] {
        let lease = json!({"holder": "keywarden 0.1.0 (pid 4242 on ci-runner-7)",
                           "since": "2026-11-29T00:00:00Z", "expires": expires});
        rt.block_on(async {
            let store = scanner_store(&moto, &seeded, "s3://kw-state/keywarden").await;
            store
                .save(
                    &format!("{org}/lease.json"),
                    serde_json::to_vec(&lease).unwrap(),
                    &Version::Absent,
                )
                .await
                .unwrap();
        });
        let before = messages(&moto);
        let (code, _, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
        if held {
            assert_eq!(code, 3, "{stderr}");
            assert!(
                stderr.contains("pid 4242 on ci-runner-7")
                    && stderr.contains("2026-11-29T00:00:00Z"),
                "names who holds it since when: {stderr}"
            );
            assert_eq!(messages(&moto), before, "mails nobody");
            rt.block_on(async {
                let store = scanner_store(&moto, &seeded, "s3://kw-state/keywarden").await;
                let (bytes, _) = store.load(&format!("{org}/lease.json")).await.unwrap();
                assert!(
                    String::from_utf8(bytes.unwrap()).unwrap().contains("4242"),
                    "the live lease was left alone"
                );
                // The test removes it to go on.
                store.release_lease_if(&org, |_| true).await;
            });
        } else {
            assert_eq!(code, 0, "an expired lease is taken over: {stderr}");
            assert!(stderr.contains("expired lease"), "{stderr}");
            assert_eq!(messages(&moto), before + 1, "the digest (nothing else due)");
        }
    }
}

/// Issue 22 item 8, locally: a lock file left by a crashed save made every
/// run mail and then fail to save. A stale one is removed with a warning; a
/// live one stops the run before it mails anyone.
#[test]
fn a_stale_local_lock_is_broken_and_a_live_one_stops_the_run_before_mail() {
    let moto = Moto::start();
    let seeded = moto.seed(&spec(None));
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().to_str().unwrap();
    let (code, _, stderr) = notify(&moto, &seeded, state);
    assert_eq!(code, 0, "{stderr}");
    let org_dir = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.is_dir())
        .unwrap();
    let lock = org_dir.join("ledger.json.lock");

    std::fs::write(&lock, "pid 1 at 2026-11-29T00:00:00Z\n").unwrap();
    let before = messages(&moto);
    let (code, _, stderr) = notify(&moto, &seeded, state);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("locked by another run"), "{stderr}");
    assert_eq!(messages(&moto), before, "nobody mailed");

    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(2 * 3600);
    std::fs::File::options()
        .write(true)
        .open(&lock)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let (code, _, stderr) = notify(&moto, &seeded, state);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("stale lock"), "{stderr}");
    assert!(!lock.exists());
}

#[test]
fn s3_load_access_denied_names_the_permissions_needed() {
    let moto = Moto::start();
    let mut actions = keywarden::aws::all_actions();
    actions.retain(|a| !a.starts_with("s3:"));
    let seeded = moto.seed(&spec(Some(actions)));
    let (code, _, stderr) = notify(&moto, &seeded, "s3://kw-state/keywarden");
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("AccessDenied") && stderr.contains("s3:GetObject"),
        "{stderr}"
    );
    assert_eq!(messages(&moto), 0);
}

async fn sdk(moto: &Moto) -> aws_config::SdkConfig {
    sdk_as(moto, aws_credential_types::Credentials::for_tests()).await
}

async fn sdk_as(moto: &Moto, creds: aws_credential_types::Credentials) -> aws_config::SdkConfig {
    aws_config::defaults(BehaviorVersion::latest())
        .endpoint_url(&moto.endpoint)
        .region(Region::new("us-east-1"))
        .credentials_provider(creds)
        .load()
        .await
}

async fn s3_store(moto: &Moto, uri: &str) -> Store {
    Store::open(uri, &sdk(moto).await).unwrap()
}

/// The state as the scanner identity (the one that may write it).
async fn scanner_store(moto: &Moto, seeded: &Seeded, uri: &str) -> Store {
    let (ak, sk) = seeded.scanner();
    let creds = aws_credential_types::Credentials::new(ak, sk, None, None, "test");
    Store::open(uri, &sdk_as(moto, creds).await).unwrap()
}

async fn list_keys(moto: &Moto, seeded: &Seeded, bucket: &str) -> Vec<String> {
    let (ak, sk) = seeded.scanner();
    let creds = aws_credential_types::Credentials::new(ak, sk, None, None, "test");
    let conf = aws_sdk_s3::config::Builder::from(&sdk_as(moto, creds).await)
        .force_path_style(true)
        .build();
    let out = aws_sdk_s3::Client::from_conf(conf)
        .list_objects_v2()
        .bucket(bucket)
        .send()
        .await
        .unwrap();
    out.contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect()
}

/// Two writers that read the same version: the second save loses, and
/// what the first wrote stays.
async fn lost_race(store: &Store) {
    let key = "o-race/ledger.json";
    let (none, v0) = store.load(key).await.unwrap();
    assert!(none.is_none());
    assert_eq!(v0, Version::Absent);
    // Both runs saw nothing; the first creates it, the second may not.
    let v1 = store.save(key, b"first".to_vec(), &v0).await.unwrap();
    let err = store.save(key, b"second".to_vec(), &v0).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    // Both read v1; one saves; the other's save on v1 loses.
    let v2 = store.save(key, b"third".to_vec(), &v1).await.unwrap();
    let err = store.save(key, b"fourth".to_vec(), &v1).await.unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let (bytes, v) = store.load(key).await.unwrap();
    assert_eq!(bytes.as_deref(), Some(&b"third"[..]), "nothing overwritten");
    assert_eq!(v, v2);
}

#[test]
fn a_lost_race_is_refused_by_both_backends() {
    let moto = Moto::start();
    moto.seed(&json!({"buckets": ["kw-state"], "accounts": []}));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        lost_race(&s3_store(&moto, "s3://kw-state/prefix").await).await;
        let dir = tempfile::tempdir().unwrap();
        lost_race(&Store::open(dir.path().to_str().unwrap(), &sdk(&moto).await).unwrap()).await;
    });
}

/// Issue 22 item 3: `notify --now 2030-01-01` against the shared ledger
/// stopped every reminder and enforcement for the real days after. A run
/// whose clock is not the wall clock is refused before any AWS call (the
/// endpoint here answers nothing), and with a local directory it still runs.
#[test]
fn a_run_with_another_clock_never_touches_the_shared_s3_ledger() {
    for (now, state) in [
        ("2030-01-01T00:00:00Z", "s3://kw-state/keywarden"),
        ("2020-01-01T00:00:00Z", "s3://kw-state/keywarden"),
    ] {
        let mut cmd = std::process::Command::new(support::keywarden_bin());
        support::isolate(&mut cmd);
        cmd.args([
            "notify",
            "--dry-run",
            "--format",
            "json",
            "--now",
            now,
            "--state",
            state,
        ])
        .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
        .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
        .env("AWS_SECRET_ACCESS_KEY", "secret")
        .env("AWS_REGION", "us-east-1")
        .env("KEYWARDEN_SENDER", "keywarden@example.com")
        .env("KEYWARDEN_SECURITY_RECIPIENTS", "security@example.com");
        let (code, _, stderr) = run(&mut cmd);
        assert_eq!(code, 2, "{stderr}");
        assert!(
            stderr.contains("--now")
                && stderr.contains("shared one in S3")
                && !stderr.contains("127.0.0.1"),
            "refused by name, before any AWS call: {stderr}"
        );
    }
    // A few seconds off is still now; a local directory takes any clock.
    let wall = jiff::Timestamp::now().to_string();
    let dir = tempfile::tempdir().unwrap();
    for (now, state) in [
        (wall.as_str(), "s3://kw-state/keywarden"),
        ("2030-01-01T00:00:00Z", dir.path().to_str().unwrap()),
    ] {
        let mut cmd = std::process::Command::new(support::keywarden_bin());
        support::isolate(&mut cmd);
        cmd.args(["scan", "--format", "json", "--now", now, "--state", state])
            .env("AWS_ENDPOINT_URL", "http://127.0.0.1:9")
            .env("AWS_ACCESS_KEY_ID", "AKIAIOSFODNN7EXAMPLE")
            .env("AWS_SECRET_ACCESS_KEY", "secret")
            .env("AWS_REGION", "us-east-1")
            .env("AWS_MAX_ATTEMPTS", "1");
        let (_, _, stderr) = run(&mut cmd);
        assert!(
            !stderr.contains("shared one in S3"),
            "{now} {state}: {stderr}"
        );
    }
}

/// A ledger of `n` open findings, as the run's reconcile leaves it.
fn ledger_of(organization: &str, n: usize) -> keywarden::core::ledger::Ledger {
    let mut ledger = keywarden::core::ledger::Ledger::new(organization);
    for i in 0..n {
        let entry = serde_json::from_value(json!({
            "account_id": "111122223333", "account_name": "prod",
            "user_name": format!("user-{i:03}"), "access_key_id": null,
            "check": "key-age-overdue", "severity": "high",
            "first_seen": "2026-11-29T06:00:00Z", "last_seen": "2026-11-29T06:00:00Z",
            "owner": format!("user-{i:03}@example.com"), "due_at": null,
        }))
        .unwrap();
        ledger.entries.insert(format!("f{i:03}"), entry);
    }
    ledger
}

fn notice_to(i: usize) -> keywarden::core::ledger::Notice {
    serde_json::from_value(json!({
        "at": "2026-11-29T06:00:00Z", "stage": "first",
        "recipients": [format!("user-{i:03}@example.com")],
    }))
    .unwrap()
}

fn notices(ledger: &keywarden::core::ledger::Ledger) -> usize {
    ledger.entries.values().map(|e| e.notices.len()).sum()
}

/// Issue 24 item 4: a checkpoint every 25 messages saved the whole ledger
/// (620 saves of 4–6 MB at 20,000 accounts). Now the first checkpoint
/// saves it and each later one writes only its 25 deliveries; a run that
/// stops mid-delivery loses no more than before (the next run folds the
/// journal, re-sending at most the 10 messages after the last checkpoint),
/// folding twice changes nothing, and a full save clears the journal.
async fn journal(store: &Store) {
    use keywarden::core::ledger::Stage;
    use keywarden::state::{journal_folder, ledger_key, LedgerSession};
    let org = "o-journal";
    let mut s = LedgerSession::load(store.clone(), org, true).await.unwrap();
    s.ledger = ledger_of(org, 60);
    let mut after_first = None;
    for i in 0..60 {
        s.record(&[(format!("f{i:03}"), Stage::First)], &notice_to(i));
        s.checkpoint().await.unwrap();
        if i == 24 {
            after_first = Some(store.load(&ledger_key(org)).await.unwrap());
        }
    }
    // The run stops here (a crash): 60 sent, the last 10 after a checkpoint.
    drop(s);
    let (first, _) = after_first.unwrap();
    let (stored, _) = store.load(&ledger_key(org)).await.unwrap();
    assert_eq!(
        stored, first,
        "the ledger was saved once, at the first checkpoint"
    );
    let journal = store.list(&journal_folder(org)).await.unwrap();
    assert_eq!(journal.len(), 1, "{journal:?}");
    let (object, _) = store.load(&journal[0]).await.unwrap();
    let object = object.unwrap();
    assert!(
        object.len() < 4_000,
        "25 deliveries, not the ledger: {} bytes",
        object.len()
    );

    // The next run sees 50 deliveries (25 saved, 25 journaled) and
    // re-sends the other 10 at most.
    let s = LedgerSession::load(store.clone(), org, false)
        .await
        .unwrap();
    assert_eq!(notices(&s.ledger), 50);
    assert!(s.ledger.entries["f049"].notices.len() == 1);
    assert!(s.ledger.entries["f050"].notices.is_empty());
    // A dry run folds and deletes nothing.
    assert_eq!(store.list(&journal_folder(org)).await.unwrap().len(), 1);

    // The same journal twice (a copy a failed delete left behind): no
    // notice twice.
    let copy = format!("{}/00000000T000000Z-0-00000.json", journal_folder(org));
    store
        .save(&copy, object.clone(), &Version::Absent)
        .await
        .unwrap();
    let mut s = LedgerSession::load(store.clone(), org, true).await.unwrap();
    assert_eq!(notices(&s.ledger), 50);
    // Its full save holds the journal and deletes it.
    s.save().await.unwrap();
    assert!(store.list(&journal_folder(org)).await.unwrap().is_empty());
    let s = LedgerSession::load(store.clone(), org, false)
        .await
        .unwrap();
    assert_eq!(notices(&s.ledger), 50);

    // The workflow's way: `finish` loads (and folds), `close` resumes from
    // its snapshot and saves, and that save deletes the journal too.
    store.save(&copy, object, &Version::Absent).await.unwrap();
    let s = LedgerSession::load(store.clone(), org, false)
        .await
        .unwrap();
    let (ledger, version) = s.snapshot();
    let mut close = LedgerSession::resume(store.clone(), ledger.clone(), version.clone(), true);
    close.save().await.unwrap();
    assert!(store.list(&journal_folder(org)).await.unwrap().is_empty());
    assert_eq!(
        notices(
            &LedgerSession::load(store.clone(), org, false)
                .await
                .unwrap()
                .ledger
        ),
        50
    );

    // A journal object that does not parse is left alone and stops nothing.
    let broken = format!("{}/broken.json", journal_folder(org));
    store
        .save(&broken, b"{".to_vec(), &Version::Absent)
        .await
        .unwrap();
    let mut s = LedgerSession::load(store.clone(), org, true).await.unwrap();
    assert_eq!(notices(&s.ledger), 50);
    s.save().await.unwrap();
    assert_eq!(
        store.list(&journal_folder(org)).await.unwrap(),
        vec![broken]
    );
}

#[test]
fn checkpoints_journal_deliveries_instead_of_saving_the_ledger_and_a_crash_loses_at_most_one() {
    let moto = Moto::start();
    moto.seed(&json!({"buckets": ["kw-state"], "accounts": []}));
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        journal(&s3_store(&moto, "s3://kw-state/prefix").await).await;
        let dir = tempfile::tempdir().unwrap();
        journal(&Store::open(dir.path().to_str().unwrap(), &sdk(&moto).await).unwrap()).await;
    });
}
