//! The synthetic AWS endpoint: answers, in the real wire formats the SDK
//! expects, the operations keywarden uses (Organizations JSON 1.1, STS and
//! IAM awsQuery XML, SES v2 REST-JSON), for an Organization generated on the
//! fly. Realism knobs: per-call latency with jitter, token-bucket throttling
//! per API class (answered with AWS's `Throttling` errors), and a
//! credential-report generation delay. It also serves the state bucket
//! (S3, `crate::s3`) for the workflow benchmark.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::org::{account_id, account_index, mix, OrgSpec};

/// Sustained rate and burst of one throttle bucket.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Limit {
    pub rate: f64,
    pub burst: f64,
}

/// Throttle budgets. Defaults are assumptions, stated in docs/benchmarks.md:
/// AWS publishes few of these numbers.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Limits {
    /// STS AssumeRole, for the whole caller account.
    pub sts: Limit,
    /// IAM, per account.
    pub iam: Limit,
    /// Organizations, for the whole Organization.
    pub organizations: Limit,
    /// SES v2 SendEmail: the account's maximum send rate.
    pub ses: Limit,
    /// CloudTrail LookupEvents, per account and region (AWS's documented
    /// quota: 2 a second).
    pub cloudtrail: Limit,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            sts: Limit {
                rate: 100.0,
                burst: 100.0,
            },
            iam: Limit {
                rate: 20.0,
                burst: 20.0,
            },
            organizations: Limit {
                rate: 10.0,
                burst: 20.0,
            },
            ses: Limit {
                rate: 14.0,
                burst: 14.0,
            },
            cloudtrail: Limit {
                rate: 2.0,
                burst: 2.0,
            },
        }
    }
}

/// Endpoint behaviour.
#[derive(Debug, Clone, Copy)]
pub struct Knobs {
    pub latency: Duration,
    pub jitter: Duration,
    pub limits: Limits,
    /// Credential report generation: this long for any account…
    pub report_delay: Duration,
    /// …plus this long per user (large accounts take longer, as in AWS).
    pub report_per_user: Duration,
    /// S3 objects move at this many MiB/s, after the latency (0: instantly).
    pub s3_mib_per_s: f64,
}

impl Knobs {
    /// How long account `users` users' credential report takes to generate.
    pub fn report_time(&self, users: usize) -> Duration {
        self.report_delay + self.report_per_user * users as u32
    }
}

struct Bucket {
    tokens: f64,
    last: Instant,
}

/// What the endpoint counted.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Stats {
    pub calls: BTreeMap<String, u64>,
    pub throttled: u64,
    /// Throttled answers by budget: organizations, sts, iam, ses.
    pub throttled_by: BTreeMap<String, u64>,
    /// The most accounts whose credential report was being generated or
    /// was ready and not yet fetched, at once (today): how many accounts
    /// the client kept waiting on AWS side by side.
    pub max_reports_pending: u64,
    /// TCP connections the client opened.
    pub connections: u64,
    /// Bytes read from and written to S3 objects (the state bucket).
    pub s3_read_bytes: u64,
    pub s3_written_bytes: u64,
}

impl Stats {
    /// What was counted after `earlier` (one day's calls).
    pub fn since(&self, earlier: &Stats) -> Stats {
        let diff = |now: &BTreeMap<String, u64>, then: &BTreeMap<String, u64>| {
            now.iter()
                .map(|(k, v)| (k.clone(), v - then.get(k).copied().unwrap_or(0)))
                .filter(|(_, v)| *v > 0)
                .collect()
        };
        Stats {
            calls: diff(&self.calls, &earlier.calls),
            throttled: self.throttled - earlier.throttled,
            throttled_by: diff(&self.throttled_by, &earlier.throttled_by),
            max_reports_pending: self.max_reports_pending,
            connections: self.connections - earlier.connections,
            s3_read_bytes: self.s3_read_bytes - earlier.s3_read_bytes,
            s3_written_bytes: self.s3_written_bytes - earlier.s3_written_bytes,
        }
    }

    /// Calls of a class (`organizations`, `sts`, `iam`, `ses`) that were
    /// answered, not throttled.
    pub fn admitted(&self, class: &str) -> u64 {
        let prefix = format!("{class}:");
        let all: u64 = self
            .calls
            .iter()
            .filter(|(op, _)| op.starts_with(&prefix))
            .map(|(_, n)| n)
            .sum();
        all - self.throttled_by.get(class).copied().unwrap_or(0)
    }
}

struct State {
    org: OrgSpec,
    knobs: Knobs,
    buckets: Mutex<HashMap<String, Bucket>>,
    reports: Mutex<HashMap<usize, Instant>>,
    /// Accounts whose report was started and not fetched yet, and the most
    /// at once today.
    pending: Mutex<(std::collections::HashSet<usize>, u64)>,
    calls: Mutex<BTreeMap<String, u64>>,
    throttled: AtomicU64,
    throttled_by: Mutex<BTreeMap<String, u64>>,
    counter: AtomicU64,
    connections: AtomicU64,
    objects: crate::s3::Objects,
}

/// A running endpoint.
pub struct Endpoint {
    pub addr: SocketAddr,
    state: Arc<State>,
}

impl Endpoint {
    pub fn stats(&self) -> Stats {
        Stats {
            calls: self
                .state
                .calls
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default(),
            throttled: self.state.throttled.load(Ordering::Relaxed),
            throttled_by: self
                .state
                .throttled_by
                .lock()
                .map(|c| c.clone())
                .unwrap_or_default(),
            max_reports_pending: self.state.pending.lock().map(|p| p.1).unwrap_or(0),
            connections: self.state.connections.load(Ordering::Relaxed),
            s3_read_bytes: self.state.objects.read.load(Ordering::Relaxed),
            s3_written_bytes: self.state.objects.written.load(Ordering::Relaxed),
        }
    }

    /// An object of the state bucket, as the driver's ItemReader reads it.
    pub fn object(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        self.state.objects.get(bucket, key)
    }

    /// A new day: credential reports generated before are gone (AWS keeps
    /// one for 4 hours; daily runs generate a new one).
    pub fn new_day(&self) {
        if let Ok(mut r) = self.state.reports.lock() {
            r.clear();
        }
        if let Ok(mut p) = self.state.pending.lock() {
            *p = Default::default();
        }
    }
}

/// Starts the endpoint on a free loopback port.
pub async fn start(org: OrgSpec, knobs: Knobs) -> anyhow::Result<Endpoint> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let addr = listener.local_addr()?;
    let state = Arc::new(State {
        org,
        knobs,
        buckets: Mutex::new(HashMap::new()),
        reports: Mutex::new(HashMap::new()),
        pending: Mutex::default(),
        calls: Mutex::new(BTreeMap::new()),
        throttled: AtomicU64::new(0),
        throttled_by: Mutex::new(BTreeMap::new()),
        counter: AtomicU64::new(0),
        connections: AtomicU64::new(0),
        objects: crate::s3::Objects::default(),
    });
    let shared = state.clone();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            shared.connections.fetch_add(1, Ordering::Relaxed);
            let state = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Ok(Endpoint { addr, state })
}

type Reply = Response<Full<Bytes>>;

fn reply(status: u16, content_type: &str, body: String) -> Reply {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert("content-type", v);
    }
    r
}

fn query_error(ns: &str, status: u16, code: &str, message: &str) -> Reply {
    reply(
        status,
        "text/xml",
        format!("<ErrorResponse xmlns=\"{ns}\"><Error><Type>Sender</Type><Code>{code}</Code><Message>{message}</Message></Error><RequestId>bench</RequestId></ErrorResponse>"),
    )
}

fn json_error(code: &str, message: &str) -> Reply {
    let mut r = reply(
        400,
        "application/x-amz-json-1.1",
        serde_json::json!({"__type": code, "Message": message}).to_string(),
    );
    if let Ok(v) = code.parse() {
        r.headers_mut().insert("x-amzn-errortype", v);
    }
    r
}

const IAM_NS: &str = "https://iam.amazonaws.com/doc/2010-05-08/";
const STS_NS: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

pub fn iso(secs: i64) -> String {
    // Days-from-civil inverse (Howard Hinnant): UTC, no leap seconds.
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

fn form(body: &[u8]) -> HashMap<String, String> {
    let text = String::from_utf8_lossy(body);
    text.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (crate::wire::form_decode(k), crate::wire::form_decode(v)))
        .collect()
}

/// The signing service and access key id from the SigV4 Authorization header.
fn credential(req: &Request<Incoming>) -> (String, String) {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let scope: Vec<&str> = auth
        .split("Credential=")
        .nth(1)
        .unwrap_or("")
        .split(',')
        .next()
        .unwrap_or("")
        .split('/')
        .collect();
    (
        scope.get(3).unwrap_or(&"").to_string(),
        scope.first().unwrap_or(&"").to_string(),
    )
}

/// The region of the request's SigV4 credential scope.
fn credential_region(req: &Request<Incoming>) -> String {
    let auth = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    auth.split("Credential=")
        .nth(1)
        .and_then(|c| c.split(',').next())
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("us-east-1")
        .to_owned()
}

/// CloudTrail LookupEvents: a few events per key (one page), from one
/// address with the AWS CLI, at 2 requests a second per account and region.
fn lookup_events(state: &State, account: usize, region: &str, body: &[u8]) -> Reply {
    state.count("cloudtrail:LookupEvents");
    if !state.admit(
        &format!("cloudtrail:{account}:{region}"),
        state.knobs.limits.cloudtrail,
    ) {
        return json_error("ThrottlingException", "Rate exceeded");
    }
    let input: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let key = input["LookupAttributes"][0]["AttributeValue"]
        .as_str()
        .unwrap_or("")
        .to_owned();
    let now = state.org.now;
    let events: Vec<serde_json::Value> = (1..=5)
        .map(|d| {
            let at = now - 86_400 * d;
            let detail = serde_json::json!({
                "eventTime": iso(at), "eventSource": "s3.amazonaws.com", "eventName": "ListBuckets",
                "awsRegion": region, "sourceIPAddress": format!("198.51.100.{}", account % 250),
                "userAgent": "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0", "accessKeyId": key});
            serde_json::json!({"EventId": format!("ev-{account}-{d}"), "EventName": "ListBuckets",
                "ReadOnly": "true", "AccessKeyId": key, "EventTime": at, "EventSource": "s3.amazonaws.com",
                "Resources": [], "CloudTrailEvent": detail.to_string()})
        })
        .collect();
    reply(
        200,
        "application/x-amz-json-1.1",
        serde_json::json!({ "Events": events }).to_string(),
    )
}

/// Assumed-role keys carry the account index: ASIA + 12-digit account id + 4 letters.
fn assumed_key(account: usize) -> String {
    format!("ASIA{}BNCH", account_id(account))
}

fn account_of_key(key: &str) -> usize {
    key.strip_prefix("ASIA")
        .and_then(|rest| rest.get(..12))
        .and_then(account_index)
        .unwrap_or(0)
}

impl State {
    fn count(&self, op: &str) {
        if let Ok(mut c) = self.calls.lock() {
            *c.entry(op.to_owned()).or_default() += 1;
        }
    }

    /// Takes a token from `bucket`; false when it is empty (throttled). A
    /// throttled call costs a token too (down to minus the burst): a client
    /// that keeps asking while throttled delays itself, as with AWS.
    fn admit(&self, bucket: &str, limit: Limit) -> bool {
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let now = Instant::now();
        let b = buckets.entry(bucket.to_owned()).or_insert(Bucket {
            tokens: limit.burst,
            last: now,
        });
        b.tokens =
            (b.tokens + now.duration_since(b.last).as_secs_f64() * limit.rate).min(limit.burst);
        b.last = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            b.tokens = (b.tokens - 1.0).max(-limit.burst);
            self.throttled.fetch_add(1, Ordering::Relaxed);
            let class = bucket.split(':').next().unwrap_or(bucket).to_owned();
            if let Ok(mut t) = self.throttled_by.lock() {
                *t.entry(class).or_default() += 1;
            }
            false
        }
    }

    async fn delay(&self) {
        let k = &self.knobs;
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let jitter = if k.jitter.is_zero() {
            0
        } else {
            mix(n) % k.jitter.as_micros() as u64
        };
        tokio::time::sleep(k.latency + Duration::from_micros(jitter)).await;
    }
}

async fn handle(state: Arc<State>, req: Request<Incoming>) -> Result<Reply, Infallible> {
    state.delay().await;
    let (service, key) = credential(&req);
    let region = credential_region(&req);
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or("").to_owned();
    let method = req.method().clone();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let (if_match, if_none_match) = (header("if-match"), header("if-none-match"));
    let chunked = header("content-encoding").is_some_and(|e| e.contains("aws-chunked"))
        || header("x-amz-content-sha256").is_some_and(|v| v.starts_with("STREAMING-"));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Ok(match (service.as_str(), target) {
        (_, Some(t)) if t.starts_with("AWSOrganizationsV20161128.") => {
            organizations(&state, &t[26..], &body)
        }
        ("cloudtrail", Some(t)) if t.ends_with(".LookupEvents") => {
            lookup_events(&state, account_of_key(&key), &region, &body)
        }
        ("sts", _) => sts(&state, &form(&body)),
        ("iam", _) => iam(&state, account_of_key(&key), &form(&body)),
        ("ses", _) => ses(&state, method.as_str(), &path),
        ("s3", _) => {
            let r = crate::s3::Request {
                method: method.as_str(),
                path: &path,
                query: &query,
                if_match: if_match.as_deref(),
                if_none_match: if_none_match.as_deref(),
                chunked,
                body: &body,
            };
            let op = match (r.method, query.contains("list-type=2")) {
                ("GET", true) => "s3:ListObjectsV2",
                ("GET", false) => "s3:GetObject",
                ("PUT", _) => "s3:PutObject",
                ("DELETE", _) => "s3:DeleteObject",
                _ => "s3:other",
            };
            state.count(op);
            let (answer, moved) = state.objects.handle(&r);
            tokio::time::sleep(crate::s3::transfer(moved, state.knobs.s3_mib_per_s)).await;
            let mut out = Response::new(Full::new(Bytes::from(answer.body)));
            *out.status_mut() =
                StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            out.headers_mut().insert(
                "content-type",
                hyper::header::HeaderValue::from_static("application/xml"),
            );
            if let Some(etag) = answer.etag.and_then(|e| e.parse().ok()) {
                out.headers_mut().insert("etag", etag);
            }
            out
        }
        _ => reply(400, "text/plain", format!("unknown service {service:?}")),
    })
}

fn organizations(state: &State, op: &str, body: &[u8]) -> Reply {
    state.count(&format!("organizations:{op}"));
    if !state.admit("organizations", state.knobs.limits.organizations) {
        return json_error(
            "TooManyRequestsException",
            "AWS Organizations can't complete your request because of a rate limit.",
        );
    }
    let input: serde_json::Value = serde_json::from_slice(body).unwrap_or_default();
    let org = &state.org;
    match op {
        "DescribeOrganization" => reply(200, "application/x-amz-json-1.1", serde_json::json!({"Organization": {
            "Id": "o-bench000000", "Arn": "arn:aws:organizations::100000000000:organization/o-bench000000",
            "FeatureSet": "ALL", "MasterAccountId": account_id(0), "MasterAccountEmail": "root@example.com",
            "MasterAccountArn": "arn:aws:organizations::100000000000:account/o-bench000000/100000000000"}}).to_string()),
        // Every generated account sits directly under the root; there are no OUs.
        "ListChildren" => reply(200, "application/x-amz-json-1.1", serde_json::json!({"Children": []}).to_string()),
        "ListAccounts" | "ListAccountsForParent" => {
            let start: usize = input["NextToken"].as_str().and_then(|t| t.parse().ok()).unwrap_or(0);
            let end = (start + 20).min(org.accounts);
            let accounts: Vec<serde_json::Value> = (start..end).map(|i| serde_json::json!({
                "Id": account_id(i), "Arn": format!("arn:aws:organizations::100000000000:account/o-bench000000/{}", account_id(i)),
                "Email": format!("aws+{i}@example.com"), "Name": format!("account-{i:05}"),
                "Status": "ACTIVE", "State": "ACTIVE", "JoinedMethod": "CREATED", "JoinedTimestamp": 1.6e9})).collect();
            let mut out = serde_json::json!({"Accounts": accounts});
            if end < org.accounts {
                out["NextToken"] = serde_json::json!(end.to_string());
            }
            reply(200, "application/x-amz-json-1.1", out.to_string())
        }
        "ListTagsForResource" => {
            let tags: Vec<serde_json::Value> = input["ResourceId"].as_str().and_then(account_index)
                .and_then(|a| org.owner_tag(a))
                .map(|owner| serde_json::json!({"Key": "owner", "Value": owner}))
                .into_iter().collect();
            reply(200, "application/x-amz-json-1.1", serde_json::json!({"Tags": tags}).to_string())
        }
        _ => json_error("InvalidInputException", "operation not supported by the benchmark endpoint"),
    }
}

fn sts(state: &State, p: &HashMap<String, String>) -> Reply {
    let action = p.get("Action").map(String::as_str).unwrap_or("");
    state.count(&format!("sts:{action}"));
    match action {
        "GetCallerIdentity" => reply(200, "text/xml", format!(
            "<GetCallerIdentityResponse xmlns=\"{STS_NS}\"><GetCallerIdentityResult><Arn>arn:aws:iam::{0}:user/bench</Arn><UserId>AIDABENCH</UserId><Account>{0}</Account></GetCallerIdentityResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></GetCallerIdentityResponse>",
            account_id(0))),
        "AssumeRole" => {
            if !state.admit("sts", state.knobs.limits.sts) {
                return query_error(STS_NS, 400, "Throttling", "Rate exceeded");
            }
            let arn = p.get("RoleArn").cloned().unwrap_or_default();
            let account = arn.split(':').nth(4).and_then(account_index).unwrap_or(0);
            if state.org.unreachable(account) {
                return query_error(STS_NS, 403, "AccessDenied", &format!("User: arn:aws:iam::{}:user/bench is not authorized to perform: sts:AssumeRole on resource: {arn}", account_id(0)));
            }
            reply(200, "text/xml", format!(
                "<AssumeRoleResponse xmlns=\"{STS_NS}\"><AssumeRoleResult><Credentials><AccessKeyId>{}</AccessKeyId><SecretAccessKey>benchsecret</SecretAccessKey><SessionToken>benchtoken</SessionToken><Expiration>{}</Expiration></Credentials><AssumedRoleUser><AssumedRoleId>AROABENCH:keywarden-scan</AssumedRoleId><Arn>arn:aws:sts::{}:assumed-role/KeywardenScanRole/keywarden-scan</Arn></AssumedRoleUser></AssumeRoleResult><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></AssumeRoleResponse>",
                assumed_key(account), iso(state.org.now + 3600 * 24 * 365), account_id(account)))
        }
        _ => query_error(STS_NS, 400, "InvalidAction", "not supported by the benchmark endpoint"),
    }
}

fn wrap(op: &str, result: &str) -> Reply {
    reply(200, "text/xml", format!(
        "<{op}Response xmlns=\"{IAM_NS}\"><{op}Result>{result}</{op}Result><ResponseMetadata><RequestId>bench</RequestId></ResponseMetadata></{op}Response>"))
}

/// `None`: never generated (today); `Some(done)`: generating or done.
fn report_ready(state: &State, account: usize) -> Option<bool> {
    let started = *state.reports.lock().ok()?.get(&account)?;
    Some(started.elapsed() >= state.knobs.report_time(state.org.users_in(account)))
}

fn user_index(p: &HashMap<String, String>) -> Option<usize> {
    p.get("UserName")?.strip_prefix("user-")?.parse().ok()
}

fn iam(state: &State, account: usize, p: &HashMap<String, String>) -> Reply {
    let action = p.get("Action").map(String::as_str).unwrap_or("").to_owned();
    state.count(&format!("iam:{action}"));
    if !state.admit(&format!("iam:{account}"), state.knobs.limits.iam) {
        return query_error(IAM_NS, 400, "Throttling", "Rate exceeded");
    }
    let org = &state.org;
    match action.as_str() {
        "ListAccountAliases" => wrap(&action, &format!("<AccountAliases><member>alias-{account:05}</member></AccountAliases><IsTruncated>false</IsTruncated>")),
        "GenerateCredentialReport" => {
            let ready = report_ready(state, account);
            wrap(&action, &format!("<State>{}</State>", match ready {
                Some(true) => "COMPLETE",
                _ => {
                    if let Ok(mut r) = state.reports.lock() {
                        if let std::collections::hash_map::Entry::Vacant(e) = r.entry(account) {
                            e.insert(Instant::now());
                            if let Ok(mut p) = state.pending.lock() {
                                p.0.insert(account);
                                p.1 = p.1.max(p.0.len() as u64);
                            }
                        }
                    }
                    "STARTED"
                }
            }))
        }
        "GetCredentialReport" => {
            match report_ready(state, account) {
                None => return query_error(IAM_NS, 410, "ReportNotPresent", "Credential report not present."),
                Some(false) => return query_error(IAM_NS, 404, "ReportInProgress", "Credential report is being generated."),
                Some(true) => {
                    if let Ok(mut p) = state.pending.lock() {
                        p.0.remove(&account);
                    }
                }
            }
            let mut csv = String::from("user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated\n");
            csv.push_str(&format!("<root_account>,arn:aws:iam::{}:root,2020-01-01T00:00:00+00:00,not_supported,no_information,not_supported,not_supported,true,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n", account_id(account)));
            for u in 0..org.users_in(account) {
                let k = org.key(account, u);
                let t = |s: i64| iso(s).replace('Z', "+00:00");
                csv.push_str(&format!("{},arn:aws:iam::{}:user/{},{},false,N/A,N/A,N/A,false,true,{},{},us-east-1,s3,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A\n",
                    org.user_name(u), account_id(account), org.user_name(u), t(k.created), t(k.created),
                    k.last_used.map(t).unwrap_or_else(|| "N/A".into())));
            }
            let content = base64::engine::general_purpose::STANDARD.encode(csv);
            wrap(&action, &format!("<Content>{content}</Content><ReportFormat>text/csv</ReportFormat><GeneratedTime>{}</GeneratedTime>", iso(org.now)))
        }
        "ListAccessKeys" => {
            let Some(u) = user_index(p).filter(|u| *u < org.users_in(account)) else {
                return query_error(IAM_NS, 404, "NoSuchEntity", "The user with name cannot be found.");
            };
            let k = org.key(account, u);
            wrap(&action, &format!("<AccessKeyMetadata><member><UserName>{}</UserName><AccessKeyId>{}</AccessKeyId><Status>Active</Status><CreateDate>{}</CreateDate></member></AccessKeyMetadata><IsTruncated>false</IsTruncated>",
                org.user_name(u), k.id, iso(k.created)))
        }
        "ListUserTags" => {
            let Some(u) = user_index(p).filter(|u| *u < org.users_in(account)) else {
                return query_error(IAM_NS, 404, "NoSuchEntity", "The user with name cannot be found.");
            };
            wrap(&action, &format!("<Tags><member><Key>owner</Key><Value>owner-{account}-{u}@example.com</Value></member></Tags><IsTruncated>false</IsTruncated>"))
        }
        "ListUsers" => {
            let start: usize = p.get("Marker").and_then(|m| m.parse().ok()).unwrap_or(0);
            let end = (start + 100).min(org.users_in(account));
            let members: String = (start..end).map(|u| format!("<member><Path>/</Path><UserName>{0}</UserName><UserId>AIDA{1:016}</UserId><Arn>arn:aws:iam::{2}:user/{0}</Arn><CreateDate>{3}</CreateDate></member>",
                org.user_name(u), u, account_id(account), iso(org.now - 86_400 * 500))).collect();
            let more = if end < org.users_in(account) { format!("<IsTruncated>true</IsTruncated><Marker>{end}</Marker>") } else { "<IsTruncated>false</IsTruncated>".into() };
            wrap(&action, &format!("<Users>{members}</Users>{more}"))
        }
        "GetAccessKeyLastUsed" => {
            let id = p.get("AccessKeyId").cloned().unwrap_or_default();
            let user = (0..org.users_in(account)).find(|u| org.key(account, *u).id == id);
            match user {
                Some(u) => {
                    let k = org.key(account, u);
                    wrap(&action, &format!("<UserName>{}</UserName><AccessKeyLastUsed><LastUsedDate>{}</LastUsedDate><ServiceName>s3</ServiceName><Region>us-east-1</Region></AccessKeyLastUsed>",
                        org.user_name(u), k.last_used.map(iso).unwrap_or_default()))
                }
                None => query_error(IAM_NS, 404, "NoSuchEntity", "no such key"),
            }
        }
        "GetAccountSummary" => wrap(&action, "<SummaryMap><entry><key>AccountAccessKeysPresent</key><value>0</value></entry></SummaryMap>"),
        // key-exposed: AWS's quarantine policies exist; none is attached here.
        "ListPolicies" => wrap(&action, &format!("<Policies>{}</Policies><IsTruncated>false</IsTruncated>",
            ["AWSCompromisedKeyQuarantine", "AWSCompromisedKeyQuarantineV2", "AWSCompromisedKeyQuarantineV3"].iter()
                .map(|n| format!("<member><PolicyName>{n}</PolicyName><Arn>arn:aws:iam::aws:policy/{n}</Arn><Path>/</Path><DefaultVersionId>v1</DefaultVersionId><AttachmentCount>0</AttachmentCount><IsAttachable>true</IsAttachable></member>"))
                .collect::<String>())),
        "ListEntitiesForPolicy" => {
            let v3 = p.get("PolicyArn").is_some_and(|a| a.ends_with("/AWSCompromisedKeyQuarantineV3"));
            let users = match org.quarantined_user(account).filter(|_| v3) {
                Some(u) => format!("<PolicyUsers><member><UserName>{}</UserName><UserId>AIDA{u:016}</UserId></member></PolicyUsers>", org.user_name(u)),
                None => "<PolicyUsers/>".to_owned(),
            };
            wrap(&action, &format!("<PolicyGroups/>{users}<PolicyRoles/><IsTruncated>false</IsTruncated>"))
        }
        // privilege: --admin-pct of flagged users have AdministratorAccess; nobody has more.
        "GetUser" => {
            let Some(u) = user_index(p).filter(|u| *u < org.users_in(account)) else {
                return query_error(IAM_NS, 404, "NoSuchEntity", "The user with name cannot be found.");
            };
            wrap(&action, &format!("<User><Path>/</Path><UserName>{0}</UserName><UserId>AIDA{1:016}</UserId><Arn>arn:aws:iam::{2}:user/{0}</Arn><CreateDate>{3}</CreateDate></User>",
                org.user_name(u), u, account_id(account), iso(org.now - 86_400 * 500)))
        }
        "ListAttachedUserPolicies" => {
            let admin = user_index(p).filter(|u| *u < org.users_in(account)).is_some_and(|u| org.is_admin(account, u));
            wrap(&action, if admin {
                "<AttachedPolicies><member><PolicyName>AdministratorAccess</PolicyName><PolicyArn>arn:aws:iam::aws:policy/AdministratorAccess</PolicyArn></member></AttachedPolicies><IsTruncated>false</IsTruncated>"
            } else {
                "<AttachedPolicies/><IsTruncated>false</IsTruncated>"
            })
        }
        "GetPolicy" => wrap(&action, "<Policy><PolicyName>AdministratorAccess</PolicyName><Arn>arn:aws:iam::aws:policy/AdministratorAccess</Arn><Path>/</Path><DefaultVersionId>v1</DefaultVersionId><AttachmentCount>1</AttachmentCount><IsAttachable>true</IsAttachable></Policy>"),
        "GetPolicyVersion" => wrap(&action, "<PolicyVersion><Document>%7B%22Version%22%3A%222012-10-17%22%2C%22Statement%22%3A%5B%7B%22Effect%22%3A%22Allow%22%2C%22Action%22%3A%22%2A%22%2C%22Resource%22%3A%22%2A%22%7D%5D%7D</Document><VersionId>v1</VersionId><IsDefaultVersion>true</IsDefaultVersion></PolicyVersion>"),
        "ListUserPolicies" => wrap(&action, "<PolicyNames/><IsTruncated>false</IsTruncated>"),
        "ListGroupsForUser" => wrap(&action, "<Groups/><IsTruncated>false</IsTruncated>"),
        _ => query_error(IAM_NS, 400, "InvalidAction", "not supported by the benchmark endpoint"),
    }
}

fn ses(state: &State, method: &str, path: &str) -> Reply {
    match (method, path) {
        ("GET", "/v2/email/account") => {
            state.count("ses:GetAccount");
            reply(200, "application/json", serde_json::json!({"SendQuota": {"Max24HourSend": 200000.0, "MaxSendRate": state.knobs.limits.ses.rate, "SentLast24Hours": 0.0},
                "SendingEnabled": true, "ProductionAccessEnabled": true, "EnforcementStatus": "HEALTHY"}).to_string())
        }
        ("GET", p) if p.starts_with("/v2/email/identities/") => {
            state.count("ses:GetEmailIdentity");
            reply(200, "application/json", serde_json::json!({"IdentityType": "EMAIL_ADDRESS", "VerifiedForSendingStatus": true, "VerificationStatus": "SUCCESS"}).to_string())
        }
        ("POST", "/v2/email/outbound-emails") => {
            state.count("ses:SendEmail");
            if !state.admit("ses", state.knobs.limits.ses) {
                let mut r = reply(
                    429,
                    "application/json",
                    serde_json::json!({"message": "Maximum sending rate exceeded."}).to_string(),
                );
                r.headers_mut().insert(
                    "x-amzn-errortype",
                    hyper::header::HeaderValue::from_static("TooManyRequestsException"),
                );
                return r;
            }
            let n = state.counter.fetch_add(1, Ordering::Relaxed);
            reply(
                200,
                "application/json",
                serde_json::json!({"MessageId": format!("bench-{n}")}).to_string(),
            )
        }
        _ => reply(404, "application/json", "{}".into()),
    }
}

/// The Organization as a tools/seed_org.py spec: the same accounts, users,
/// key ages, last use, tags and unreachable accounts, for moto.
pub fn seed_spec(org: &OrgSpec) -> serde_json::Value {
    let day = 86_400;
    let accounts: Vec<serde_json::Value> = (0..org.accounts)
        .map(|a| {
            let users: Vec<serde_json::Value> = (0..org.users_in(a))
                .map(|u| {
                    let k = org.key(a, u);
                    serde_json::json!({
                        "name": org.user_name(u),
                        "tags": {"owner": format!("owner-{a}-{u}@example.com")},
                        "keys": [{
                            "age_days": (org.now - k.created) / day,
                            "last_used_days": k.last_used.map(|t| (org.now - t) / day),
                            "service": "s3"
                        }]
                    })
                })
                .collect();
            let mut acct = serde_json::json!({
                "name": format!("account-{a:05}"),
                "email": format!("aws+{a}@example.com"),
                "tags": org.owner_tag(a).map(|o| serde_json::json!({"owner": o})).unwrap_or_else(|| serde_json::json!({})),
                "users": users,
            });
            if a == 0 {
                acct["management"] = serde_json::json!(true);
            } else if org.unreachable(a) {
                acct["scan_role"] = serde_json::json!("no-iam");
            }
            acct
        })
        .collect();
    serde_json::json!({"scanner_user": true, "enforce_auth": true, "accounts": accounts})
}
