//! A client that tries to beat the any-scanner floor: the least a complete
//! scanner must do (list the accounts; in each member account AssumeRole,
//! GenerateCredentialReport until COMPLETE, GetCredentialReport; the tags of
//! each account with findings, its owner), with no
//! concurrency limit and every account started the moment its page arrives.
//! It knows the endpoint's budgets and spends them exactly (a client-side
//! token bucket per budget, so it is never throttled: a throttled call costs
//! a token too, and retrying at once would only slow it down), and it polls
//! each report once per round trip. Raw HTTP/1.1 to the synthetic endpoint
//! (which reads the service and access key from the Authorization header and
//! checks no signature).

use std::net::SocketAddr;
use std::time::Instant;

use anyhow::Context;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio::time::{Duration, Instant as TokioInstant};

use crate::org::{account_id, OrgSpec};
use crate::server::Limit;

/// A client-side token bucket with the endpoint's rate and burst.
struct Pacer {
    limit: Limit,
    state: Mutex<(f64, TokioInstant)>,
}

impl Pacer {
    fn new(limit: Limit) -> Self {
        Self {
            limit,
            state: Mutex::new((limit.burst, TokioInstant::now())),
        }
    }

    /// Waits until a token is there, and takes it.
    async fn take(&self) {
        let wait = {
            let mut s = self.state.lock().await;
            let now = TokioInstant::now();
            let tokens = (s.0 + now.duration_since(s.1).as_secs_f64() * self.limit.rate)
                .min(self.limit.burst);
            s.0 = tokens - 1.0;
            s.1 = now;
            // A small margin: the endpoint's clock starts a little later.
            if tokens >= 1.0 {
                Duration::ZERO
            } else {
                Duration::from_secs_f64((1.0 - tokens) / self.limit.rate * 1.02 + 0.002)
            }
        };
        tokio::time::sleep(wait).await;
    }
}

/// The budgets the client spends: Organizations, STS, IAM per account.
struct Budgets {
    organizations: Pacer,
    sts: Pacer,
    iam: Limit,
}

/// One request; returns the status and the body.
async fn call(
    addr: SocketAddr,
    service: &str,
    key: &str,
    target: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    let mut stream = TcpStream::connect(addr).await?;
    let target = target
        .map(|t| format!("x-amz-target: {t}\r\ncontent-type: application/x-amz-json-1.1\r\n"))
        .unwrap_or_else(|| "content-type: application/x-www-form-urlencoded\r\n".to_owned());
    let request = format!(
        "POST / HTTP/1.1\r\nhost: {addr}\r\nauthorization: AWS4-HMAC-SHA256 Credential={key}/20261129/us-east-1/{service}/aws4_request, SignedHeaders=host, Signature=0\r\n{target}content-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    if std::env::var_os("GREEDY_DEBUG").is_some() {
        eprintln!("-> {service} {target:?} {body}");
    }
    stream.write_all(request.as_bytes()).await?;
    // Headers, then exactly content-length bytes (the server may keep the
    // connection open).
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let (head_end, length) = loop {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "connection closed before the headers");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&raw[..i]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            break (i + 4, length);
        }
    };
    while raw.len() < head_end + length {
        let n = stream.read(&mut buf).await?;
        anyhow::ensure!(n > 0, "connection closed mid-body");
        raw.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .context("no HTTP status")?;
    let body = String::from_utf8_lossy(&raw[head_end..head_end + length]).into_owned();
    Ok((status, body))
}

/// Calls, each attempt paced by `pacer`, until the answer is not a
/// throttling error (the endpoint's jitter can bunch paced calls up).
async fn insist(
    pacer: &Pacer,
    addr: SocketAddr,
    service: &str,
    key: &str,
    target: Option<&str>,
    body: &str,
) -> anyhow::Result<(u16, String)> {
    loop {
        pacer.take().await;
        let (status, body) = call(addr, service, key, target, body).await?;
        if !(body.contains("Throttling") || body.contains("TooManyRequests")) {
            return Ok((status, body));
        }
    }
}

async fn account(
    addr: SocketAddr,
    index: usize,
    budgets: std::sync::Arc<Budgets>,
) -> anyhow::Result<()> {
    let iam = Pacer::new(budgets.iam);
    // The management account with the caller's own key; the others assumed.
    let key = if index == 0 {
        "AKIABENCHMANAGEMENT0".to_owned()
    } else {
        let role = format!("arn:aws:iam::{}:role/KeywardenScanRole", account_id(index));
        let (status, body) = insist(
            &budgets.sts,
            addr,
            "sts",
            "AKIABENCHMANAGEMENT0",
            None,
            &format!("Action=AssumeRole&Version=2011-06-15&RoleSessionName=greedy&RoleArn={role}"),
        )
        .await?;
        if status != 200 {
            return Ok(()); // AccessDenied: an unreachable account, done.
        }
        body.split("<AccessKeyId>")
            .nth(1)
            .and_then(|s| s.split('<').next())
            .context("no AccessKeyId")?
            .to_owned()
    };
    loop {
        let (_, body) = insist(
            &iam,
            addr,
            "iam",
            &key,
            None,
            "Action=GenerateCredentialReport&Version=2010-05-08",
        )
        .await?;
        if body.contains("COMPLETE") {
            break;
        }
    }
    let (status, _) = insist(
        &iam,
        addr,
        "iam",
        &key,
        None,
        "Action=GetCredentialReport&Version=2010-05-08",
    )
    .await?;
    anyhow::ensure!(status == 200, "GetCredentialReport answered {status}");
    Ok(())
}

/// Scans the whole Organization as fast as the endpoint allows; the wall
/// time in seconds.
pub async fn scan(
    addr: SocketAddr,
    spec: &OrgSpec,
    limits: &crate::server::Limits,
) -> anyhow::Result<f64> {
    let budgets = std::sync::Arc::new(Budgets {
        organizations: Pacer::new(limits.organizations),
        sts: Pacer::new(limits.sts),
        iam: limits.iam,
    });
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    let mut token: Option<String> = None;
    let mut seen = 0usize;
    loop {
        let body = match &token {
            Some(t) => format!("{{\"NextToken\":\"{t}\"}}"),
            None => "{}".to_owned(),
        };
        let (_, page) = insist(
            &budgets.organizations,
            addr,
            "organizations",
            "AKIABENCHMANAGEMENT0",
            Some("AWSOrganizationsV20161128.ListAccounts"),
            &body,
        )
        .await?;
        let page: serde_json::Value = serde_json::from_str(&page)?;
        for a in page["Accounts"].as_array().into_iter().flatten() {
            let index = a["Id"]
                .as_str()
                .and_then(crate::org::account_index)
                .context("account id")?;
            seen += 1;
            tasks.spawn(account(addr, index, budgets.clone()));
        }
        token = page["NextToken"].as_str().map(str::to_owned);
        if token.is_none() {
            break;
        }
    }
    anyhow::ensure!(
        seen == spec.accounts,
        "listed {seen} of {} accounts",
        spec.accounts
    );
    // The owners: the tags of every account with findings (a notifier needs
    // them; the challenger knows which accounts have findings before their
    // reports, so it reads them once the listing no longer needs the budget).
    for index in (0..spec.accounts).filter(|&a| !spec.unreachable(a) && spec.flagged_in(a) > 0) {
        let budgets = budgets.clone();
        tasks.spawn(async move {
            let (status, _) = insist(
                &budgets.organizations,
                addr,
                "organizations",
                "AKIABENCHMANAGEMENT0",
                Some("AWSOrganizationsV20161128.ListTagsForResource"),
                &format!("{{\"ResourceId\":\"{}\"}}", account_id(index)),
            )
            .await?;
            anyhow::ensure!(status == 200, "ListTagsForResource answered {status}");
            Ok(())
        });
    }
    while let Some(r) = tasks.join_next().await {
        r??;
    }
    Ok(started.elapsed().as_secs_f64())
}
