//! Where the ledger and the report archive live: one [`Store`] interface,
//! two backends, a local directory (the CLI's default) and S3. The store
//! knows bytes and keys, never findings.
//!
//! One writer at a time, never a silent overwrite: S3 writes of the ledger
//! are conditional on the ETag that was read (`If-None-Match: *` for the
//! first); local writes take a lock file, check that the file is still what
//! was read, and replace it by an atomic rename.

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use aws_config::SdkConfig;
use jiff::Timestamp;
use tracing::{info, warn};

use crate::aws::s3::{Expect, PutError, S3};
use crate::core::ledger::{fold_notice, record_notice, Ledger, LedgerError, Notice, Stage};

/// A `state` location that cannot be used, or a read or write that failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("`state` {0:?} is neither a directory path nor s3://bucket/prefix")]
    Location(String),
    #[error("cannot use the state directory {path}: {reason}")]
    Directory { path: String, reason: String },
    #[error("cannot read {location}: {reason}{hint}")]
    Read {
        location: String,
        reason: String,
        hint: &'static str,
    },
    #[error("{location} is not usable: {cause}. It was left as it is; move it away to start a new ledger, or fix it")]
    Ledger {
        location: String,
        cause: LedgerError,
    },
    #[error("{location} changed since this run read it (another run saved it first); nothing was overwritten")]
    Conflict { location: String },
    #[error("{location} is locked by another run ({lock} exists); nothing was overwritten. Remove the lock file if no run is active")]
    Locked { location: String, lock: String },
    #[error("cannot write {location}: {reason}")]
    Write { location: String, reason: String },
    #[error("another run holds the lease {location}: {holder}, since {since} (it expires at {expires}); this run mails nobody and acts on nothing")]
    Leased {
        location: String,
        holder: String,
        since: String,
        expires: String,
    },
}

/// How long a run's lease lasts (and how old a ledger lock file must be to
/// be taken for a crashed run's): longer than any run (a Lambda stops at
/// 15 minutes; the CLI's first run of 20,000 accounts took about 32).
pub const LEASE_SECS: i64 = 3_600;

/// How long a Step Functions workflow run's lease lasts: from `plan` to
/// `close`, which gives it back (an execution that fails in between leaves
/// it to expire: the next day's run starts).
pub const WORKFLOW_LEASE_SECS: i64 = 6 * 3_600;

/// One run at a time per Organization: the lease a delivering run holds
/// from before it reads the ledger until it has saved it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    /// Who holds it: keywarden's version, the process and the machine.
    pub holder: String,
    pub since: Timestamp,
    pub expires: Timestamp,
}

/// Where the Organization's lease is.
pub fn lease_key(organization: &str) -> String {
    format!("{organization}/lease.json")
}

/// What a save expects the stored ledger to be.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Version {
    /// Nothing was stored.
    Absent,
    /// An S3 ETag, or a digest of the local file's bytes.
    Tag(String),
}

/// Where state lives.
#[derive(Debug, Clone)]
pub enum Store {
    Local(PathBuf),
    S3 {
        s3: S3,
        bucket: String,
        prefix: String,
    },
}

fn digest(bytes: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    bytes.hash(&mut h);
    format!("{:016x}-{}", h.finish(), bytes.len())
}

/// Splits `s3://bucket/prefix` into its parts; `None` for anything else.
pub fn parse_s3_uri(uri: &str) -> Option<(String, String)> {
    let rest = uri.strip_prefix("s3://")?;
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    let ok = (3..=63).contains(&bucket.len())
        && bucket
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && !bucket.starts_with(['-', '.'])
        && !bucket.ends_with(['-', '.']);
    ok.then(|| (bucket.to_owned(), prefix.trim_matches('/').to_owned()))
}

impl Store {
    /// A store for a `state` setting: `s3://bucket/prefix` or a directory.
    pub fn open(location: &str, sdk_config: &SdkConfig) -> Result<Self, StoreError> {
        if location.starts_with("s3://") {
            let (bucket, prefix) =
                parse_s3_uri(location).ok_or_else(|| StoreError::Location(location.to_owned()))?;
            return Ok(Store::S3 {
                s3: S3::new(sdk_config),
                bucket,
                prefix,
            });
        }
        if location.contains("://") || location.is_empty() {
            return Err(StoreError::Location(location.to_owned()));
        }
        Ok(Store::Local(PathBuf::from(location)))
    }

    /// The bucket and full object key of `key`, for a store in S3 (what a
    /// Step Functions ItemReader reads); `None` for a local directory.
    pub fn s3_object(&self, key: &str) -> Option<(String, String)> {
        match self {
            Store::Local(_) => None,
            Store::S3 { bucket, prefix, .. } => Some((bucket.clone(), self.s3_key(prefix, key))),
        }
    }

    /// Where `key` is, for messages.
    pub fn describe(&self, key: &str) -> String {
        match self {
            Store::Local(dir) => dir.join(key).display().to_string(),
            Store::S3 { bucket, prefix, .. } => {
                format!("s3://{bucket}/{}", self.s3_key(prefix, key))
            }
        }
    }

    fn s3_key(&self, prefix: &str, key: &str) -> String {
        if prefix.is_empty() {
            key.to_owned()
        } else {
            format!("{prefix}/{key}")
        }
    }

    /// Fails when the state cannot be written (a local directory that
    /// cannot be created or written, or holds a live lock; an S3 prefix where
    /// a conditional write and a delete are refused), so that a run stops
    /// before scanning instead of after sending mail.
    pub async fn check_writable(&self, organization: &str) -> Result<(), StoreError> {
        let dir = match self {
            Store::Local(dir) => dir,
            Store::S3 { s3, bucket, prefix } => {
                // A conditional write and a delete, as a save and a lease's
                // release will need: a run that could read the ledger but
                // not save it would mail everyone again tomorrow.
                let key = format!(
                    "{organization}/.keywarden-probe-{}-{}",
                    std::process::id(),
                    Timestamp::now().as_nanosecond()
                );
                self.save(&key, b"probe".to_vec(), &Version::Absent).await?;
                return s3
                    .delete(bucket, &self.s3_key(prefix, &key))
                    .await
                    .map_err(|e| StoreError::Write {
                        location: self.describe(&key),
                        reason: format!(
                            "{}: {} (the caller needs s3:DeleteObject on the prefix: a run's lease is given back by deleting it)",
                            e.code, e.message
                        ),
                    });
            }
        };
        let fail = |reason: String| StoreError::Directory {
            path: dir.display().to_string(),
            reason,
        };
        std::fs::create_dir_all(dir).map_err(|e| fail(e.to_string()))?;
        // A ledger lock left by a crashed save would make every run mail
        // and then fail to save (and mail again the next day): a stale one
        // is removed, a live one stops the run before it mails anyone.
        for org in std::fs::read_dir(dir)
            .map_err(|e| fail(e.to_string()))?
            .flatten()
        {
            let lock = org.path().join("ledger.json.lock");
            if !lock.exists() {
                continue;
            }
            if stale(&lock) {
                warn!(lock = %lock.display(), "removing a stale lock file (older than the longest run)");
                std::fs::remove_file(&lock).map_err(|e| {
                    fail(format!(
                        "cannot remove the stale lock {}: {e}",
                        lock.display()
                    ))
                })?;
            } else {
                return Err(StoreError::Locked {
                    location: org.path().join("ledger.json").display().to_string(),
                    lock: lock.display().to_string(),
                });
            }
        }
        let probe = dir.join(format!(".keywarden-probe-{}", std::process::id()));
        std::fs::write(&probe, b"probe").map_err(|e| fail(format!("not writable: {e}")))?;
        let _ = std::fs::remove_file(&probe);
        Ok(())
    }

    /// Takes the Organization's lease for this run: a conditional create (the
    /// write probe of an S3 store, too). A lease another run holds is
    /// respected (`Leased`, naming it); one past its expiry is a crashed
    /// run's and is taken over, with a warning.
    pub async fn acquire_lease(&self, organization: &str) -> Result<Lease, StoreError> {
        self.acquire_lease_for(organization, "", LEASE_SECS).await
    }

    /// [`Store::acquire_lease`] for `secs`, with `what` (e.g. a workflow
    /// run's id) in the holder's name.
    pub async fn acquire_lease_for(
        &self,
        organization: &str,
        what: &str,
        secs: i64,
    ) -> Result<Lease, StoreError> {
        let key = lease_key(organization);
        let now = Timestamp::now();
        let lease = Lease {
            holder: format!(
                "keywarden {}{what} (pid {} on {})",
                env!("CARGO_PKG_VERSION"),
                std::process::id(),
                hostname()
            ),
            since: now,
            expires: now + jiff::SignedDuration::from_secs(secs),
        };
        let bytes = serde_json::to_vec_pretty(&lease).unwrap_or_default();
        let mut expected = Version::Absent;
        for _ in 0..2 {
            match self.save(&key, bytes.clone(), &expected).await {
                Ok(_) => return Ok(lease),
                Err(StoreError::Conflict { .. }) => {}
                Err(e) => return Err(e),
            }
            let (held, version) = self.load(&key).await?;
            let held: Option<Lease> = held.and_then(|b| serde_json::from_slice(&b).ok());
            match held {
                Some(h) if h.expires > now => {
                    return Err(StoreError::Leased {
                        location: self.describe(&key),
                        holder: h.holder,
                        since: h.since.to_string(),
                        expires: h.expires.to_string(),
                    })
                }
                Some(h) => {
                    warn!(holder = %h.holder, since = %h.since, "taking over an expired lease (a run that did not finish)")
                }
                None if version != Version::Absent => {
                    warn!(location = %self.describe(&key), "replacing a lease that cannot be read")
                }
                // Given back between the two reads: simply take it.
                None => {}
            }
            expected = version;
        }
        Err(StoreError::Conflict {
            location: self.describe(&key),
        })
    }

    /// Gives the lease back if it is still `mine` (a run that outlived its
    /// lease must not delete the one another run took over); a failure only
    /// leaves it to expire.
    pub async fn release_lease(&self, organization: &str, mine: &Lease) {
        self.release_lease_if(organization, |held| held == mine)
            .await;
    }

    /// Gives the lease back if `ours` says the stored one is this run's.
    pub async fn release_lease_if(&self, organization: &str, ours: impl Fn(&Lease) -> bool) {
        let key = lease_key(organization);
        let held: Option<Lease> = match self.load(&key).await {
            Ok((bytes, _)) => bytes.and_then(|b| serde_json::from_slice(&b).ok()),
            Err(e) => {
                warn!(error = %e, "lease not released: it expires by itself");
                return;
            }
        };
        match held {
            None => return,
            Some(h) if !ours(&h) => {
                warn!(holder = %h.holder, since = %h.since, "the lease is another run's now (this one outlived it): left alone");
                return;
            }
            Some(_) => {}
        }
        if let Err(e) = self.remove(&key).await {
            warn!(error = %e, location = %self.describe(&key), "lease not released: it expires by itself");
        }
    }

    /// Deletes what is stored at `key` (nothing stored is no error).
    pub async fn remove(&self, key: &str) -> Result<(), String> {
        match self {
            Store::Local(dir) => match std::fs::remove_file(dir.join(key)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e.to_string()),
                _ => Ok(()),
            },
            Store::S3 { s3, bucket, prefix } => s3
                .delete(bucket, &self.s3_key(prefix, key))
                .await
                .map_err(|e| format!("{}: {}", e.code, e.message)),
        }
    }

    /// The stored bytes and their version; `None` bytes when nothing is stored.
    pub async fn load(&self, key: &str) -> Result<(Option<Vec<u8>>, Version), StoreError> {
        let location = self.describe(key);
        match self {
            Store::Local(dir) => match std::fs::read(dir.join(key)) {
                Ok(bytes) => {
                    let v = Version::Tag(digest(&bytes));
                    Ok((Some(bytes), v))
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok((None, Version::Absent)),
                Err(e) => Err(StoreError::Read {
                    location,
                    reason: e.to_string(),
                    hint: "",
                }),
            },
            Store::S3 { s3, bucket, prefix } => match s3.get(bucket, &self.s3_key(prefix, key)).await {
                Ok(Some((bytes, etag))) => Ok((Some(bytes), Version::Tag(etag))),
                Ok(None) => Ok((None, Version::Absent)),
                Err(e) => Err(StoreError::Read {
                    location,
                    hint: match e.code.as_str() {
                        "NoSuchBucket" => " (the bucket does not exist: check `state`, or deploy the Terraform module that creates it)",
                        c if e.is_access_denied() || c == "AccessDenied" => " (the caller may not read it: it needs s3:GetObject on the prefix and s3:ListBucket on the bucket)",
                        _ => "",
                    },
                    reason: format!("{}: {}", e.code, e.message),
                }),
            },
        }
    }

    /// The keys under `folder` (relative to the store, like `load`'s), in
    /// key order; none when the folder does not exist.
    pub async fn list(&self, folder: &str) -> Result<Vec<String>, StoreError> {
        let location = self.describe(folder);
        let read = |reason: String| StoreError::Read {
            location: location.clone(),
            reason,
            hint: "",
        };
        match self {
            Store::Local(dir) => {
                let mut keys = Vec::new();
                let entries = match std::fs::read_dir(dir.join(folder)) {
                    Ok(e) => e,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(keys),
                    Err(e) => return Err(read(e.to_string())),
                };
                for entry in entries {
                    let entry = entry.map_err(|e| read(e.to_string()))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if !name.contains(".tmp-") && !name.ends_with(".lock") {
                        keys.push(format!("{}/{name}", folder.trim_end_matches('/')));
                    }
                }
                keys.sort();
                Ok(keys)
            }
            Store::S3 { s3, bucket, prefix } => {
                let full = format!("{}/", self.s3_key(prefix, folder.trim_end_matches('/')));
                let strip = if prefix.is_empty() {
                    String::new()
                } else {
                    format!("{prefix}/")
                };
                let keys = s3
                    .list(bucket, &full)
                    .await
                    .map_err(|e| read(format!("{}: {}", e.code, e.message)))?;
                Ok(keys
                    .into_iter()
                    .filter_map(|k| k.strip_prefix(&strip).map(str::to_owned))
                    .collect())
            }
        }
    }

    /// Saves `bytes` only if the stored version is still `expected`;
    /// returns the new version.
    pub async fn save(
        &self,
        key: &str,
        bytes: Vec<u8>,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        self.save_as(key, bytes, "application/json", expected).await
    }

    /// [`Store::save`] with a content type (S3 only).
    pub async fn save_as(
        &self,
        key: &str,
        bytes: Vec<u8>,
        content_type: &str,
        expected: &Version,
    ) -> Result<Version, StoreError> {
        let location = self.describe(key);
        match self {
            Store::Local(dir) => save_local(dir, key, &bytes, expected, &location),
            Store::S3 { s3, bucket, prefix } => {
                let expect = match expected {
                    Version::Absent => Expect::Absent,
                    Version::Tag(t) => Expect::ETag(t.clone()),
                };
                match s3
                    .put_if(
                        bucket,
                        &self.s3_key(prefix, key),
                        bytes,
                        content_type,
                        &expect,
                    )
                    .await
                {
                    Ok(etag) => Ok(Version::Tag(etag)),
                    Err(PutError::Conflict(_)) => Err(StoreError::Conflict { location }),
                    Err(PutError::Other(e)) => Err(StoreError::Write {
                        location,
                        reason: format!(
                            "{}: {}{}",
                            e.code,
                            e.message,
                            match e.code.as_str() {
                                "NoSuchBucket" => " (the bucket does not exist: check `state`, or deploy the Terraform module that creates it)",
                                c if e.is_access_denied() || c == "AccessDenied" => " (the caller needs s3:GetObject, s3:PutObject and s3:DeleteObject on the prefix and s3:ListBucket on the bucket)",
                                _ => "",
                            }
                        ),
                    }),
                }
            }
        }
    }
}

/// A lock file older than a lease: left by a run that crashed.
fn stale(lock: &Path) -> bool {
    std::fs::metadata(lock)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > LEASE_SECS as u64)
}

/// This machine's name, for the lease's holder.
fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "an unknown host".to_owned())
}

/// Removes the lock file when dropped.
struct LockGuard(PathBuf);
impl Drop for LockGuard {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn save_local(
    dir: &Path,
    key: &str,
    bytes: &[u8],
    expected: &Version,
    location: &str,
) -> Result<Version, StoreError> {
    let path = dir.join(key);
    let write_err = |e: std::io::Error| StoreError::Write {
        location: location.to_owned(),
        reason: e.to_string(),
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(write_err)?;
    }
    let lock = path.with_extension("json.lock");
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&lock)
    {
        Ok(mut f) => {
            let _ = writeln!(f, "pid {} at {}", std::process::id(), Timestamp::now());
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && stale(&lock) => {
            // A crashed save's lock: only the lease holder saves, so a lock
            // this old belongs to no live run.
            warn!(lock = %lock.display(), "removing a stale lock file (older than the longest run)");
            let _ = std::fs::remove_file(&lock);
            return save_local(dir, key, bytes, expected, location);
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            return Err(StoreError::Locked {
                location: location.to_owned(),
                lock: lock.display().to_string(),
            })
        }
        Err(e) => return Err(write_err(e)),
    }
    let _guard = LockGuard(lock);
    let current = match std::fs::read(&path) {
        Ok(b) => Version::Tag(digest(&b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Version::Absent,
        Err(e) => return Err(write_err(e)),
    };
    if &current != expected {
        return Err(StoreError::Conflict {
            location: location.to_owned(),
        });
    }
    let tmp = path.with_extension(format!("json.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(write_err(e));
    }
    Ok(Version::Tag(digest(bytes)))
}

/// The ledger's key within the store: one folder per Organization.
pub fn ledger_key(organization: &str) -> String {
    format!("{organization}/ledger.json")
}

/// Where a run journals the deliveries made since its last full save.
pub fn journal_folder(organization: &str) -> String {
    format!("{organization}/deliveries")
}

/// The Hive-style archive stem for one run's report (`.json` and `.csv` follow).
pub fn archive_stem(organization: &str, evaluated_at: Timestamp) -> String {
    let z = evaluated_at.to_zoned(jiff::tz::TimeZone::UTC);
    format!(
        "{organization}/reports/year={:04}/month={:02}/day={:02}/{}",
        z.year(),
        z.month(),
        z.day(),
        evaluated_at.strftime("%Y-%m-%dT%H%M%SZ")
    )
}

/// One run's files for the archive.
#[derive(Clone, Copy)]
pub struct Archived<'a> {
    /// The report, one JSON object on one line.
    pub json: Render<'a>,
    /// The findings CSV.
    pub csv: Render<'a>,
    /// OCSF Detection Findings, one per line.
    pub ocsf: Render<'a>,
}

/// Renders one archived file when it is written: at 20,000 accounts each is
/// megabytes, so only one is held at a time.
pub type Render<'a> = &'a (dyn Fn() -> Result<Vec<u8>, String> + Sync);

/// Where a report stem's OCSF events go: the same partitions under `ocsf/`
/// instead of `reports/`, so a table over `reports/` never reads them.
pub fn ocsf_key(stem: &str) -> String {
    format!("{}.ocsf.jsonl", stem.replacen("/reports/", "/ocsf/", 1))
}

/// Archives one run's report: never replaces an earlier run's files (two
/// runs evaluated at the same second get `-2`, `-3`, … stems). Returns the
/// stem written.
pub async fn archive(
    store: &Store,
    organization: &str,
    evaluated_at: Timestamp,
    files: Archived<'_>,
) -> Result<String, ArchiveError> {
    let Archived { json, csv, ocsf } = files;
    let base = archive_stem(organization, evaluated_at);
    for n in 1..=20 {
        let stem = if n == 1 {
            base.clone()
        } else {
            format!("{base}-{n}")
        };
        // Rendered again for the next stem after a conflict (rare), never
        // copied.
        match store
            .save_as(
                &format!("{stem}.json"),
                json().map_err(ArchiveError::Render)?,
                "application/json",
                &Version::Absent,
            )
            .await
        {
            Ok(_) => {
                store
                    .save_as(
                        &format!("{stem}.csv"),
                        csv().map_err(ArchiveError::Render)?,
                        "text/csv",
                        &Version::Absent,
                    )
                    .await?;
                store
                    .save_as(
                        &ocsf_key(&stem),
                        ocsf().map_err(ArchiveError::Render)?,
                        "application/x-ndjson",
                        &Version::Absent,
                    )
                    .await?;
                return Ok(stem);
            }
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(StoreError::Conflict {
        location: store.describe(&format!("{base}-20.json")),
    }
    .into())
}

/// Why a report was not archived.
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("{0}")]
    Render(String),
}

/// The ledger of one run: loaded at the start, checkpointed during long
/// deliveries, saved at the end, always conditionally.
///
/// A checkpoint costs what the messages since the last one cost, not what
/// the ledger weighs: the first saves the ledger in full (so that it holds
/// this run's new findings), each later one writes only the deliveries
/// since the previous checkpoint to a small journal object of its own
/// (`<organization>/deliveries/<run>-<n>.json`, create-only). The next run
/// folds whatever journal a crashed run left into the ledger it loads, and
/// a full save deletes the journal it holds; folding twice changes nothing
/// ([`fold_notice`]). A crash re-sends at most the deliveries of one
/// checkpoint, as before; at 20,000 accounts a first run writes one full
/// ledger instead of some 600.
#[derive(Debug)]
pub struct LedgerSession {
    store: Store,
    key: String,
    pub ledger: Ledger,
    version: Version,
    /// False for a dry run: read, never written.
    writable: bool,
    /// Deliveries recorded since the last checkpoint.
    pending: Vec<Delivered>,
    /// Whether this session has saved the ledger in full (from then on a
    /// checkpoint writes a journal object instead).
    saved: bool,
    /// Journal objects the ledger now holds (folded at load, or written
    /// by this run): deleted after the next full save.
    journal: Vec<String>,
    /// A resumed session (the workflow's `close`) reads the journal again
    /// at its save: what `finish` folded is in the ledger it resumed, and
    /// this way its save deletes it too.
    refold: bool,
    /// This run's journal names: `<run>-<n>.json`, `n` counting up.
    run: String,
    written: usize,
    /// The first save that failed: every later save reports it again.
    broken: Option<StoreError>,
    /// The size of the ledger as last loaded or saved (the next save's
    /// buffer starts there).
    size: usize,
}

/// Delivered messages between checkpoints.
const CHECKPOINT_EVERY: usize = 25;

/// One delivered message, as the journal keeps it.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Delivered {
    findings: Vec<(String, Stage)>,
    notice: Notice,
}

/// One journal object: the deliveries of one checkpoint.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Journal {
    organization: String,
    deliveries: Vec<Delivered>,
}

/// A name for this run's journal objects that no other run takes: the time
/// it started and the process.
fn run_name() -> String {
    format!(
        "{}-{}",
        Timestamp::now().strftime("%Y%m%dT%H%M%SZ"),
        std::process::id()
    )
}

impl LedgerSession {
    /// Loads the Organization's ledger; a missing one is a first run. A
    /// ledger that does not parse, or of an unknown schema, stops the run
    /// and is left as it is.
    pub async fn load(
        store: Store,
        organization: &str,
        writable: bool,
    ) -> Result<Self, StoreError> {
        let key = ledger_key(organization);
        let started = std::time::Instant::now();
        let (bytes, version) = store.load(&key).await?;
        let size = bytes.as_ref().map_or(0, Vec::len);
        let ledger = match bytes {
            None => {
                info!(location = %store.describe(&key), "no ledger yet: this is the first run");
                Ledger::new(organization)
            }
            Some(b) => Ledger::parse(&b, organization).map_err(|cause| StoreError::Ledger {
                location: store.describe(&key),
                cause,
            })?,
        };
        info!(
            location = %store.describe(&key),
            entries = ledger.entries.len(),
            bytes = size,
            ms = started.elapsed().as_millis() as u64,
            "ledger loaded"
        );
        let mut session = Self {
            store,
            key,
            ledger,
            version,
            writable,
            pending: Vec::new(),
            saved: false,
            journal: Vec::new(),
            refold: false,
            run: run_name(),
            written: 0,
            broken: None,
            size,
        };
        session.fold_journal(organization).await;
        Ok(session)
    }

    /// Folds the deliveries a run journaled and did not save in full (it
    /// stopped): without them their messages would go out again. A journal
    /// object that cannot be read or parsed is left where it is, with a
    /// warning (at most one checkpoint's messages go out again).
    async fn fold_journal(&mut self, organization: &str) {
        let keys = match self.store.list(&journal_folder(organization)).await {
            Ok(keys) => keys,
            Err(e) => {
                warn!(error = %e, "cannot list the delivery journal: deliveries of a run that stopped before saving may be sent again");
                return;
            }
        };
        let mut folded = 0usize;
        for key in keys.into_iter().filter(|k| k.ends_with(".json")) {
            let read = match self.store.load(&key).await {
                Ok((Some(bytes), _)) => serde_json::from_slice::<Journal>(&bytes)
                    .map_err(|e| e.to_string())
                    .and_then(|j| {
                        if j.organization == organization {
                            Ok(j)
                        } else {
                            Err(format!("it is organization {}'s", j.organization))
                        }
                    }),
                Ok((None, _)) => continue,
                Err(e) => Err(e.to_string()),
            };
            match read {
                Ok(journal) => {
                    for d in &journal.deliveries {
                        fold_notice(&mut self.ledger, &d.findings, &d.notice);
                    }
                    folded += journal.deliveries.len();
                    self.journal.push(key);
                }
                Err(e) => {
                    warn!(error = %e, location = %self.store.describe(&key), "a delivery journal object cannot be used: left as it is");
                }
            }
        }
        if folded > 0 {
            info!(
                deliveries = folded,
                objects = self.journal.len(),
                "folded the delivery journal of a run that stopped before saving the ledger"
            );
        }
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The ledger as it stands and the stored version it was read as: what
    /// the workflow's finish step hands to its close step.
    pub fn snapshot(&self) -> (&Ledger, &Version) {
        (&self.ledger, &self.version)
    }

    /// A session resumed from a [`LedgerSession::snapshot`]: its save
    /// still expects the version read at the start of the run, so a run
    /// that saved in between is a conflict, never overwritten.
    pub fn resume(store: Store, ledger: Ledger, version: Version, writable: bool) -> Self {
        Self {
            key: ledger_key(&ledger.organization),
            store,
            ledger,
            version,
            writable,
            pending: Vec::new(),
            saved: false,
            journal: Vec::new(),
            refold: true,
            run: run_name(),
            written: 0,
            broken: None,
            size: 0,
        }
    }

    pub fn writable(&self) -> bool {
        self.writable
    }

    /// Records a delivered message against the findings it carried.
    pub fn record(&mut self, findings: &[(String, Stage)], notice: &Notice) {
        record_notice(&mut self.ledger, findings, notice);
        if self.writable {
            self.pending.push(Delivered {
                findings: findings.to_vec(),
                notice: notice.clone(),
            });
        }
    }

    /// When enough messages went out since the last checkpoint, so that a
    /// crash re-sends at most that many: the first time a full save, then a
    /// journal object of those messages alone (type docs).
    pub async fn checkpoint(&mut self) -> Result<(), StoreError> {
        if self.pending.len() < CHECKPOINT_EVERY {
            return Ok(());
        }
        if !self.saved {
            return self.save().await;
        }
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        let key = format!(
            "{}/{}-{:05}.json",
            journal_folder(&self.ledger.organization),
            self.run,
            self.written
        );
        self.written += 1;
        let journal = Journal {
            organization: self.ledger.organization.clone(),
            deliveries: std::mem::take(&mut self.pending),
        };
        let bytes = serde_json::to_vec(&journal).expect("a journal serializes");
        match self.store.save(&key, bytes, &Version::Absent).await {
            Ok(_) => {
                info!(location = %self.store.describe(&key), deliveries = journal.deliveries.len(), "deliveries journaled");
                self.journal.push(key);
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "deliveries not journaled: they are saved with the ledger at the end");
                // Kept for the next checkpoint (under the next name).
                self.pending = journal.deliveries;
                Err(e)
            }
        }
    }

    /// Saves the ledger (conditionally); a dry run saves nothing.
    pub async fn save(&mut self) -> Result<(), StoreError> {
        if let Some(e) = &self.broken {
            return Err(e.clone());
        }
        if !self.writable {
            return Ok(());
        }
        if std::mem::take(&mut self.refold) {
            let organization = self.ledger.organization.clone();
            self.fold_journal(&organization).await;
        }
        let started = std::time::Instant::now();
        let bytes = self.ledger.to_json_sized(self.size);
        let size = bytes.len();
        self.size = size;
        match self.store.save(&self.key, bytes, &self.version).await {
            Ok(v) => {
                self.version = v;
                self.pending.clear();
                self.saved = true;
                info!(
                    location = %self.store.describe(&self.key),
                    entries = self.ledger.entries.len(),
                    bytes = size,
                    ms = started.elapsed().as_millis() as u64,
                    "ledger saved"
                );
                // The ledger holds the journal now; a journal object left
                // behind is folded again harmlessly next time.
                for key in std::mem::take(&mut self.journal) {
                    if let Err(e) = self.store.remove(&key).await {
                        warn!(error = %e, location = %self.store.describe(&key), "a folded delivery journal object was not deleted (the next run folds it again, changing nothing)");
                    }
                }
                Ok(())
            }
            Err(e) => {
                warn!(error = %e, "ledger not saved");
                // Later saves cannot succeed either: each reports this error.
                self.broken = Some(e.clone());
                Err(e)
            }
        }
    }
}
