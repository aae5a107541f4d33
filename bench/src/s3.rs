//! The state bucket for the workflow benchmark: an in-memory S3 answering
//! what keywarden's state store uses (GetObject, PutObject with If-Match /
//! If-None-Match, ListObjectsV2, DeleteObject), path-style, in S3's REST-XML
//! wire format. Each object moves at `mib_per_s` on top of the endpoint's
//! latency (a Lambda's single stream to S3 in its region); bytes moved are
//! counted, so what each step loads is visible.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The objects of every bucket, by `bucket/key`, with their ETags.
#[derive(Default)]
pub struct Objects {
    objects: Mutex<BTreeMap<String, (Vec<u8>, String)>>,
    versions: AtomicU64,
    pub read: AtomicU64,
    pub written: AtomicU64,
}

/// An S3 answer: status, content type, extra headers, body.
pub struct Answer {
    pub status: u16,
    pub etag: Option<String>,
    pub body: Vec<u8>,
}

fn error(status: u16, code: &str, message: &str) -> Answer {
    Answer {
        status,
        etag: None,
        body: format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>{message}</Message><RequestId>bench</RequestId></Error>"
        )
        .into_bytes(),
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The payload of an `aws-chunked` body (the SDK's streaming checksums):
/// `<hex size>[;chunk-signature=…]\r\n<bytes>\r\n` … `0\r\n<trailers>\r\n\r\n`.
fn dechunk(body: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&rest[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(rest.get(..size)?);
        rest = rest.get(size + 2..)?;
    }
}

/// A request's parts S3 routing needs.
pub struct Request<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: &'a str,
    pub if_match: Option<&'a str>,
    pub if_none_match: Option<&'a str>,
    pub chunked: bool,
    pub body: &'a [u8],
}

impl Objects {
    /// An object's bytes (the driver's ItemReader).
    pub fn get(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let objects = self.objects.lock().ok()?;
        objects.get(&format!("{bucket}/{key}")).map(|o| o.0.clone())
    }

    /// The answer, and how many bytes moved (for the transfer time).
    pub fn handle(&self, req: &Request<'_>) -> (Answer, usize) {
        let path = req.path.trim_start_matches('/');
        let (bucket, key) = path.split_once('/').unwrap_or((path, ""));
        let key = crate::wire::percent_decode(key);
        let params: BTreeMap<String, String> = req
            .query
            .split('&')
            .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
            .filter(|(k, _)| !k.is_empty())
            .map(|(k, v)| (k.to_owned(), crate::wire::percent_decode(v)))
            .collect();
        let Ok(mut objects) = self.objects.lock() else {
            return (error(500, "InternalError", "poisoned"), 0);
        };
        let full = format!("{bucket}/{key}");
        match req.method {
            "GET" if key.is_empty() && params.get("list-type").map(String::as_str) == Some("2") => {
                let prefix = params.get("prefix").cloned().unwrap_or_default();
                let mut contents = String::new();
                let mut count = 0;
                let from = format!("{bucket}/{prefix}");
                for (k, (bytes, etag)) in objects.range(from.clone()..) {
                    if !k.starts_with(&from) {
                        break;
                    }
                    count += 1;
                    contents.push_str(&format!(
                        "<Contents><Key>{}</Key><LastModified>2026-11-29T00:00:00.000Z</LastModified><ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
                        escape(&k[bucket.len() + 1..]),
                        escape(etag),
                        bytes.len()
                    ));
                }
                let body = format!(
                    "<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{bucket}</Name><Prefix>{}</Prefix><KeyCount>{count}</KeyCount><MaxKeys>100000</MaxKeys><IsTruncated>false</IsTruncated>{contents}</ListBucketResult>",
                    escape(&prefix)
                );
                let n = body.len();
                (
                    Answer {
                        status: 200,
                        etag: None,
                        body: body.into_bytes(),
                    },
                    n,
                )
            }
            "GET" => match objects.get(&full) {
                Some((bytes, etag)) => {
                    self.read.fetch_add(bytes.len() as u64, Ordering::Relaxed);
                    (
                        Answer {
                            status: 200,
                            etag: Some(etag.clone()),
                            body: bytes.clone(),
                        },
                        bytes.len(),
                    )
                }
                None => (
                    error(404, "NoSuchKey", "The specified key does not exist."),
                    0,
                ),
            },
            "PUT" => {
                let body = if req.chunked {
                    match dechunk(req.body) {
                        Some(b) => b,
                        None => return (error(400, "IncompleteBody", "bad aws-chunked body"), 0),
                    }
                } else {
                    req.body.to_vec()
                };
                let current = objects.get(&full).map(|o| o.1.clone());
                let refused = match (req.if_none_match, req.if_match) {
                    (Some("*"), _) => current.is_some(),
                    (_, Some(want)) => current.as_deref() != Some(want),
                    _ => false,
                };
                if refused {
                    return (
                        error(
                            412,
                            "PreconditionFailed",
                            "At least one of the pre-conditions you specified did not hold",
                        ),
                        0,
                    );
                }
                let n = body.len();
                let etag = format!("\"v{}\"", self.versions.fetch_add(1, Ordering::Relaxed));
                self.written.fetch_add(n as u64, Ordering::Relaxed);
                objects.insert(full, (body, etag.clone()));
                (
                    Answer {
                        status: 200,
                        etag: Some(etag),
                        body: Vec::new(),
                    },
                    n,
                )
            }
            "DELETE" => {
                objects.remove(&full);
                (
                    Answer {
                        status: 204,
                        etag: None,
                        body: Vec::new(),
                    },
                    0,
                )
            }
            _ => (
                error(
                    405,
                    "MethodNotAllowed",
                    "not supported by the benchmark endpoint",
                ),
                0,
            ),
        }
    }
}

/// How long `bytes` take at `mib_per_s`.
pub fn transfer(bytes: usize, mib_per_s: f64) -> Duration {
    if mib_per_s <= 0.0 {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(bytes as f64 / (mib_per_s * 1024.0 * 1024.0))
}
