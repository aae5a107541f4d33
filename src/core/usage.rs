//! Where a flagged key is used, and what should replace it (issue 21).
//!
//! CloudTrail records the access key id, source address, user agent and API
//! of every management call. For an active key with a finding that was used
//! in the last [`WINDOW_DAYS`] days, the scan reads its events
//! (`LookupEvents` by `AccessKeyId`, a bounded number of pages) and keeps
//! only this summary, a [`Footprint`]: never the raw events, and never their
//! request or response parameters (they are not even parsed: see [`Event`]).
//!
//! [`advise`] turns the footprint and what the scan knows of the user into
//! one recommendation with its reason, from one rule table (first match
//! wins; documented in docs/checks.md):
//!
//! | kind | when |
//! |---|---|
//! | `delete` | the key was never used, or not for `unused_days` (nothing uses it) |
//! | `compute-role` | calls through a VPC endpoint, an AWS execution environment in the user agent (`exec-env/AWS_Lambda_…`, `AWS_ECS_…`), or an AWS service calling for it |
//! | `oidc` | a CI marker in the user agent (GitHub Actions' `configure-aws-credentials`), or many short-lived addresses (10 or more, none seen on more than 2 days) from non-interactive tools |
//! | `identity-center` | the user has a console password, or every call came from interactive tools (the AWS CLI, the console) from a few addresses |
//! | `roles-anywhere` | a few fixed addresses (at most 3, seen over a week or more) calling with AWS's SDKs, CLI or Terraform, and no sign of AWS compute |
//! | `vendor-role` | the same, but the calls come from a tool that is not AWS's (a vendor's product) |
//! | `rotate` | not enough evidence: the reason says what was missing |
//!
//! An address alone never proves "outside AWS": the rules read only what the
//! events say. The advice is a suggestion with its evidence. Pure.

use std::collections::{BTreeMap, BTreeSet};

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// How far back the footprint looks (CloudTrail's event history keeps 90
/// days of management events).
pub const WINDOW_DAYS: i64 = 90;

/// At most this many entries in each top list of a footprint.
pub const TOP: usize = 5;

/// One CloudTrail event, reduced to what the footprint uses. The
/// `CloudTrailEvent` document is read into this and nothing else: request
/// and response parameters are skipped by the parser, never held.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Event {
    #[serde(rename = "eventTime")]
    pub at: Timestamp,
    #[serde(rename = "eventSource", default)]
    pub source: String,
    #[serde(rename = "eventName", default)]
    pub name: String,
    #[serde(rename = "awsRegion", default)]
    pub region: String,
    #[serde(rename = "sourceIPAddress", default)]
    pub source_ip: String,
    #[serde(rename = "userAgent", default)]
    pub user_agent: String,
    #[serde(rename = "vpcEndpointId", default)]
    pub vpc_endpoint: Option<String>,
}

impl Event {
    /// Parses the `CloudTrailEvent` JSON of a `LookupEvents` answer.
    pub fn parse(json: &str) -> Result<Event, String> {
        serde_json::from_str(json).map_err(|e| format!("a CloudTrail event is not readable: {e}"))
    }
}

/// A name with how many events carry it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Count {
    pub name: String,
    pub count: u64,
}

/// One source address.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    pub ip: String,
    pub count: u64,
    pub first: Timestamp,
    pub last: Timestamp,
    /// Distinct UTC days it was seen on.
    pub days: u64,
}

/// What the key's events of the last [`WINDOW_DAYS`] days show.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Footprint {
    /// When the events were read.
    pub read_at: Timestamp,
    /// False when the page limit cut the window: every count is "at least".
    pub complete: bool,
    pub events: u64,
    pub first: Option<Timestamp>,
    pub last: Option<Timestamp>,
    /// Top APIs (`service:Action`, e.g. `s3:PutObject`).
    pub apis: Vec<Count>,
    /// Top source addresses, and how many distinct ones there were.
    pub addresses: Vec<Address>,
    pub address_count: u64,
    /// Calls an AWS service made for the key (`sourceIPAddress` is a
    /// service name such as `lambda.amazonaws.com`), by service.
    pub aws_services: Vec<Count>,
    /// Calls through a VPC endpoint.
    pub via_vpc_endpoint: u64,
    /// Tools (user agents normalised: `aws-cli/2`, `Boto3/1`, `terraform/1`).
    pub tools: Vec<Count>,
    /// AWS execution environments the user agents name (`exec-env/…`).
    pub exec_env: Vec<String>,
    /// CI systems the user agents name.
    pub ci: Vec<String>,
    /// Regions the events came from.
    pub regions: Vec<String>,
}

/// A finding's `usage`: the footprint, or why there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum Usage {
    Known(std::sync::Arc<Footprint>),
    Unknown { reason: String },
}

/// What a user agent says: the tool and major version, and markers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Agent {
    pub tool: String,
    pub exec_env: Option<String>,
    pub ci: Option<&'static str>,
    /// A person at a keyboard (the AWS CLI, the console).
    pub interactive: bool,
    /// One of AWS's own SDKs, CLIs or Terraform's AWS provider.
    pub aws_tool: bool,
}

/// User-agent substrings that name a CI system, with the system. Sources:
/// aws-actions/configure-aws-credentials sets this user agent on its calls.
const CI_MARKERS: &[(&str, &str)] = &[(
    "configure-aws-credentials-for-github-actions",
    "GitHub Actions",
)];

/// Tools by the product token that starts them (lowercase), keeping the
/// major version where AWS's tools carry one.
const TOOLS: &[(&str, &str, bool)] = &[
    // (token, name, keep the major version)
    ("aws-cli", "aws-cli", true),
    ("boto3", "Boto3", true),
    ("botocore", "Botocore", true),
    ("aws-sdk-go-v2", "aws-sdk-go-v2", false),
    ("aws-sdk-go", "aws-sdk-go", false),
    ("aws-sdk-java", "aws-sdk-java", true),
    ("aws-sdk-js", "aws-sdk-js", true),
    ("aws-sdk-nodejs", "aws-sdk-js", true),
    ("aws-sdk-rust", "aws-sdk-rust", false),
    ("aws-sdk-dotnet-coreclr", "aws-sdk-dotnet", false),
    ("aws-sdk-dotnet", "aws-sdk-dotnet", false),
    ("aws-sdk-ruby3", "aws-sdk-ruby", false),
    ("aws-sdk-ruby", "aws-sdk-ruby", false),
    ("aws-sdk-php", "aws-sdk-php", false),
    ("aws-sdk-cpp", "aws-sdk-cpp", false),
    ("aws-powershell", "aws-powershell", false),
    ("aws-toolkit", "aws-toolkit", false),
];

fn clean(token: &str, max: usize) -> String {
    token
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(max)
        .collect()
}

/// Normalises a user agent to its tool and markers.
pub fn agent(ua: &str) -> Agent {
    let lower = ua.to_ascii_lowercase();
    let exec_env = ua
        .split_whitespace()
        .find_map(|t| t.strip_prefix("exec-env/"))
        .map(|v| clean(v, 40))
        .filter(|v| !v.is_empty());
    let ci = CI_MARKERS
        .iter()
        .find(|(m, _)| lower.contains(m))
        .map(|(_, name)| *name);
    let console = matches!(
        lower.as_str(),
        "console.amazonaws.com" | "signin.amazonaws.com" | "aws internal"
    ) || lower.starts_with("console.")
        || lower.starts_with("aws-internal");
    if console {
        return Agent {
            tool: "console".to_owned(),
            exec_env,
            ci,
            interactive: true,
            aws_tool: true,
        };
    }
    // Terraform names its provider after a HashiCorp product token.
    if let Some(v) = version_after(ua, "Terraform/") {
        return Agent {
            tool: format!("terraform/{}", major(v)),
            exec_env,
            ci,
            interactive: false,
            aws_tool: true,
        };
    }
    // The first token that is a known tool wins (Boto3 comes before Botocore).
    for token in ua.split_whitespace() {
        let (name, version) = token.split_once('/').unwrap_or((token, ""));
        let name_l = name.to_ascii_lowercase();
        if let Some((_, tool, keep)) = TOOLS.iter().find(|(t, _, _)| *t == name_l) {
            let tool = if *keep && !major(version).is_empty() {
                format!("{tool}/{}", major(version))
            } else {
                (*tool).to_owned()
            };
            return Agent {
                interactive: tool.starts_with("aws-cli"),
                tool,
                exec_env,
                ci,
                aws_tool: true,
            };
        }
    }
    let first = ua
        .split_whitespace()
        .next()
        .map(|t| t.split('/').next().unwrap_or(t))
        .map(|t| clean(t, 32))
        .filter(|t| !t.is_empty())
        .unwrap_or_else(|| "unknown".to_owned());
    Agent {
        tool: first,
        exec_env,
        ci,
        interactive: false,
        aws_tool: false,
    }
}

/// A `sourceIPAddress` (an IPv4 or IPv6 address, or a service name such as
/// `lambda.amazonaws.com`), keeping only the characters those have.
fn address(source: &str) -> String {
    source
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | ':' | '-'))
        .take(64)
        .collect()
}

fn version_after<'a>(ua: &'a str, token: &str) -> Option<&'a str> {
    let at = ua.find(token)?;
    ua[at + token.len()..].split_whitespace().next()
}

fn major(version: &str) -> String {
    clean(version.split('.').next().unwrap_or(""), 8)
}

/// Whether a `sourceIPAddress` is an AWS service acting for the key
/// (CloudTrail writes the service's name instead of an address).
pub fn is_aws_service(source_ip: &str) -> bool {
    source_ip.ends_with(".amazonaws.com") || source_ip == "AWS Internal"
}

fn day(t: Timestamp) -> i64 {
    t.as_second().div_euclid(86_400)
}

fn top(counts: BTreeMap<String, u64>) -> Vec<Count> {
    let mut v: Vec<Count> = counts
        .into_iter()
        .map(|(name, count)| Count { name, count })
        .collect();
    v.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.name.cmp(&b.name)));
    v.truncate(TOP);
    v
}

/// The summary of `events` (any order), read at `read_at`; `complete` is
/// false when the page limit cut them.
pub fn summarize(events: &[Event], complete: bool, read_at: Timestamp) -> Footprint {
    let mut apis = BTreeMap::new();
    let mut services = BTreeMap::new();
    let mut tools = BTreeMap::new();
    let mut exec_env = BTreeSet::new();
    let mut ci = BTreeSet::new();
    let mut regions = BTreeSet::new();
    let mut addresses: BTreeMap<String, (u64, Timestamp, Timestamp, BTreeSet<i64>)> =
        BTreeMap::new();
    let mut via_vpc_endpoint = 0;
    for e in events {
        // Every name comes from CloudTrail's answer and ends up in mail:
        // only the characters such names have, bounded.
        let service = e.source.strip_suffix(".amazonaws.com").unwrap_or(&e.source);
        *apis
            .entry(format!("{}:{}", clean(service, 40), clean(&e.name, 64)))
            .or_insert(0) += 1;
        let region = clean(&e.region, 32);
        if !region.is_empty() {
            regions.insert(region);
        }
        if e.vpc_endpoint.as_deref().is_some_and(|v| !v.is_empty()) {
            via_vpc_endpoint += 1;
        }
        let source = address(&e.source_ip);
        if is_aws_service(&source) {
            *services.entry(source).or_insert(0) += 1;
        } else if !source.is_empty() {
            let a = addresses
                .entry(source)
                .or_insert((0, e.at, e.at, BTreeSet::new()));
            a.0 += 1;
            a.1 = a.1.min(e.at);
            a.2 = a.2.max(e.at);
            a.3.insert(day(e.at));
        }
        let a = agent(&e.user_agent);
        *tools.entry(a.tool).or_insert(0) += 1;
        if let Some(env) = a.exec_env {
            exec_env.insert(env);
        }
        if let Some(c) = a.ci {
            ci.insert(c.to_owned());
        }
    }
    let address_count = addresses.len() as u64;
    let mut addresses: Vec<Address> = addresses
        .into_iter()
        .map(|(ip, (count, first, last, days))| Address {
            ip,
            count,
            first,
            last,
            days: days.len() as u64,
        })
        .collect();
    addresses.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.ip.cmp(&b.ip)));
    addresses.truncate(TOP);
    Footprint {
        read_at,
        complete,
        events: events.len() as u64,
        first: events.iter().map(|e| e.at).min(),
        last: events.iter().map(|e| e.at).max(),
        apis: top(apis),
        addresses,
        address_count,
        aws_services: top(services),
        via_vpc_endpoint,
        tools: top(tools),
        exec_env: exec_env.into_iter().collect(),
        ci: ci.into_iter().collect(),
        regions: regions.into_iter().collect(),
    }
}

/// What should replace a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    Delete,
    IdentityCenter,
    Oidc,
    ComputeRole,
    RolesAnywhere,
    VendorRole,
    Rotate,
}

impl Kind {
    pub const ALL: [Kind; 7] = [
        Kind::Delete,
        Kind::IdentityCenter,
        Kind::Oidc,
        Kind::ComputeRole,
        Kind::RolesAnywhere,
        Kind::VendorRole,
        Kind::Rotate,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Delete => "delete",
            Kind::IdentityCenter => "identity-center",
            Kind::Oidc => "oidc",
            Kind::ComputeRole => "compute-role",
            Kind::RolesAnywhere => "roles-anywhere",
            Kind::VendorRole => "vendor-role",
            Kind::Rotate => "rotate",
        }
    }

    /// What to do, in words.
    pub fn advice(self) -> &'static str {
        match self {
            Kind::Delete => "delete it",
            Kind::IdentityCenter => {
                "an IAM Identity Center user (`aws configure sso`), then delete the key"
            }
            Kind::Oidc => "OIDC federation for the CI system, then delete the key",
            Kind::ComputeRole => {
                "a role for the compute it runs on (instance profile, task role, function role), then delete the key"
            }
            Kind::RolesAnywhere => "IAM Roles Anywhere for those servers, then delete the key",
            Kind::VendorRole => {
                "a cross-account role with an external id for the vendor, then delete the key"
            }
            Kind::Rotate => "rotate it",
        }
    }

    /// The digest's count line ("31 keys could be Identity Center users").
    pub fn counted(self, n: usize) -> String {
        let one = n == 1;
        match self {
            Kind::Delete if one => "1 key could be deleted (nothing uses it)".to_owned(),
            Kind::Delete => format!("{n} keys could be deleted (nothing uses them)"),
            Kind::IdentityCenter if one => "1 key could be an Identity Center user".to_owned(),
            Kind::IdentityCenter => format!("{n} keys could be Identity Center users"),
            Kind::Oidc if one => "1 CI key could use OIDC".to_owned(),
            Kind::Oidc => format!("{n} CI keys could use OIDC"),
            Kind::ComputeRole if one => {
                "1 key could be a role of the compute it runs on".to_owned()
            }
            Kind::ComputeRole => format!("{n} keys could be roles of the compute they run on"),
            Kind::RolesAnywhere if one => "1 key could use IAM Roles Anywhere".to_owned(),
            Kind::RolesAnywhere => format!("{n} keys could use IAM Roles Anywhere"),
            Kind::VendorRole if one => "1 vendor key could be a cross-account role".to_owned(),
            Kind::VendorRole => format!("{n} vendor keys could be cross-account roles"),
            Kind::Rotate if one => "1 key needs rotating (not enough evidence for more)".to_owned(),
            Kind::Rotate => format!("{n} keys need rotating (not enough evidence for more)"),
        }
    }
}

/// A finding's `replace_with`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplaceWith {
    pub kind: Kind,
    pub reason: String,
}

/// What the scan knows of a key besides its footprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyContext {
    /// The key was never used, or its last use is `unused_days` or more ago.
    pub unused: bool,
    pub never_used: bool,
    /// The user has a console password.
    pub console_password: bool,
}

/// Addresses that change: many, none seen on more than 2 days.
const RUNNER_ADDRESSES: u64 = 10;
/// A few fixed addresses: at most this many, seen over a week or more.
const FIXED_ADDRESSES: u64 = 3;
/// A person's few addresses.
const PERSON_ADDRESSES: u64 = 5;

fn list(v: &[String]) -> String {
    v.join(", ")
}

/// One recommendation for a key, from the rule table (module docs).
pub fn advise(key: KeyContext, usage: Option<&Usage>) -> ReplaceWith {
    let say = |kind: Kind, reason: String| ReplaceWith { kind, reason };
    if key.never_used {
        return say(
            Kind::Delete,
            "it was never used: nothing depends on it".to_owned(),
        );
    }
    if key.unused {
        return say(
            Kind::Delete,
            "it has not been used within the unused threshold: nothing depends on it".to_owned(),
        );
    }
    let f = match usage {
        Some(Usage::Known(f)) if f.events > 0 => f,
        Some(Usage::Known(_)) if key.console_password => {
            return say(
                Kind::IdentityCenter,
                "the user signs in to the console: a person's key".to_owned(),
            )
        }
        Some(Usage::Known(_)) => {
            return say(
                Kind::Rotate,
                format!(
                    "CloudTrail shows no management event of it in the last {WINDOW_DAYS} days (data events such as S3 object reads are not in the event history): not enough to say what uses it"
                ),
            )
        }
        Some(Usage::Unknown { reason }) if key.console_password => {
            return say(
                Kind::IdentityCenter,
                format!("the user signs in to the console: a person's key (its CloudTrail use is unknown: {reason})"),
            )
        }
        Some(Usage::Unknown { reason }) => {
            return say(
                Kind::Rotate,
                format!("where it is used is unknown ({reason})"),
            )
        }
        None if key.console_password => {
            return say(
                Kind::IdentityCenter,
                "the user signs in to the console: a person's key".to_owned(),
            )
        }
        None => {
            return say(
                Kind::Rotate,
                "where it is used was not read this run".to_owned(),
            )
        }
    };
    let at_least = if f.complete { "" } else { "at least " };
    let aws_compute = f
        .exec_env
        .iter()
        .filter(|e| !e.eq_ignore_ascii_case("CloudShell"))
        .cloned()
        .collect::<Vec<_>>();
    if f.via_vpc_endpoint > 0 || !aws_compute.is_empty() || !f.aws_services.is_empty() {
        let mut why = Vec::new();
        if f.via_vpc_endpoint > 0 {
            why.push(format!(
                "{at_least}{} calls came through a VPC endpoint",
                f.via_vpc_endpoint
            ));
        }
        if !aws_compute.is_empty() {
            why.push(format!(
                "its user agent names the AWS execution environment {}",
                list(&aws_compute)
            ));
        }
        if !f.aws_services.is_empty() {
            let names: Vec<String> = f.aws_services.iter().map(|c| c.name.clone()).collect();
            why.push(format!("{} called for it", list(&names)));
        }
        return say(
            Kind::ComputeRole,
            format!("it runs inside AWS: {}", why.join("; ")),
        );
    }
    if !f.ci.is_empty() {
        return say(
            Kind::Oidc,
            format!("its user agent names the CI system {}", list(&f.ci)),
        );
    }
    let tools: Vec<String> = f.tools.iter().map(|c| c.name.clone()).collect();
    let all_interactive = f.tools.iter().all(|c| agent_tool_is_interactive(&c.name));
    let changing = f.address_count >= RUNNER_ADDRESSES && f.addresses.iter().all(|a| a.days <= 2);
    if changing && !all_interactive && !key.console_password {
        return say(
            Kind::Oidc,
            format!(
                "{at_least}{} short-lived addresses (none seen on more than 2 days) called with {}: the pattern of CI runners",
                f.address_count,
                list(&tools)
            ),
        );
    }
    if key.console_password {
        return say(
            Kind::IdentityCenter,
            format!(
                "the user signs in to the console, and the key is used with {}: a person's key",
                list(&tools)
            ),
        );
    }
    if all_interactive && f.address_count <= PERSON_ADDRESSES {
        return say(
            Kind::IdentityCenter,
            format!(
                "only interactive tools ({}) from {} addresses: a person's key",
                list(&tools),
                f.address_count
            ),
        );
    }
    let span_days = match (f.first, f.last) {
        (Some(a), Some(b)) => (b.as_second() - a.as_second()) / 86_400,
        _ => 0,
    };
    if f.address_count >= 1 && f.address_count <= FIXED_ADDRESSES && span_days >= 7 {
        let ips: Vec<String> = f.addresses.iter().map(|a| a.ip.clone()).collect();
        let vendor: Vec<String> = f
            .tools
            .iter()
            .filter(|c| !is_aws_tool(&c.name))
            .map(|c| c.name.clone())
            .collect();
        if !vendor.is_empty() {
            return say(
                Kind::VendorRole,
                format!(
                    "calls from {} fixed address{} ({}) over {span_days} days by {}, not an AWS tool: a vendor's integration",
                    f.address_count,
                    if f.address_count == 1 { "" } else { "es" },
                    list(&ips),
                    list(&vendor)
                ),
            );
        }
        return say(
            Kind::RolesAnywhere,
            format!(
                "calls from {} fixed address{} ({}) over {span_days} days with {}, and no sign of AWS compute: servers of your own",
                f.address_count,
                if f.address_count == 1 { "" } else { "es" },
                list(&ips),
                list(&tools)
            ),
        );
    }
    say(
        Kind::Rotate,
        format!(
            "{at_least}{} events from {} addresses with {}: no single pattern (no CI marker, no AWS compute, not a few fixed addresses)",
            f.events,
            f.address_count,
            list(&tools)
        ),
    )
}

fn agent_tool_is_interactive(tool: &str) -> bool {
    tool == "console" || tool.starts_with("aws-cli")
}

fn is_aws_tool(tool: &str) -> bool {
    let name = tool.split('/').next().unwrap_or(tool).to_ascii_lowercase();
    name == "console"
        || name == "terraform"
        || TOOLS.iter().any(|(_, t, _)| t.to_ascii_lowercase() == name)
}

/// For a key enforcement would deactivate: "used 2 hours ago from 3
/// addresses by terraform/1: deactivating it will break them"; empty when
/// the footprint shows no use.
pub fn breaks_line(f: &Footprint, now: Timestamp) -> String {
    let Some(last) = f.last.filter(|_| f.events > 0) else {
        return String::new();
    };
    let hours = (now.as_second() - last.as_second()).max(0) / 3600;
    let ago = match hours {
        0 => "less than an hour ago".to_owned(),
        1 => "1 hour ago".to_owned(),
        h if h < 48 => format!("{h} hours ago"),
        h => format!("{} days ago", h / 24),
    };
    let mut who = Vec::new();
    if f.address_count > 0 {
        who.push(format!(
            "from {} address{}",
            f.address_count,
            if f.address_count == 1 { "" } else { "es" }
        ));
    }
    if !f.aws_services.is_empty() {
        who.push("by AWS services for it".to_owned());
    }
    let tools: Vec<&str> = f.tools.iter().map(|c| c.name.as_str()).take(3).collect();
    if !tools.is_empty() {
        who.push(format!("by {}", tools.join(", ")));
    }
    format!(
        "used {ago} {}: deactivating it will break them",
        who.join(" ")
    )
}

/// The owner card's line: "Used in the last 90 days: …".
pub fn used_line(f: &Footprint) -> String {
    if f.events == 0 {
        return format!("no management event in the last {WINDOW_DAYS} days");
    }
    let at_least = if f.complete { "" } else { "at least " };
    let mut parts = vec![format!("{at_least}{} calls", f.events)];
    if f.address_count > 0 {
        let ips: Vec<&str> = f.addresses.iter().map(|a| a.ip.as_str()).take(3).collect();
        let more = f.address_count.saturating_sub(ips.len() as u64);
        parts.push(format!(
            "from {}{}",
            ips.join(", "),
            if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            }
        ));
    }
    if f.via_vpc_endpoint > 0 {
        parts.push(format!("{} through a VPC endpoint", f.via_vpc_endpoint));
    }
    if !f.aws_services.is_empty() {
        let s: Vec<&str> = f.aws_services.iter().map(|c| c.name.as_str()).collect();
        parts.push(format!("by {} for it", s.join(", ")));
    }
    if !f.tools.is_empty() {
        let t: Vec<&str> = f.tools.iter().map(|c| c.name.as_str()).take(3).collect();
        parts.push(format!("with {}", t.join(", ")));
    }
    if !f.apis.is_empty() {
        let a: Vec<&str> = f.apis.iter().map(|c| c.name.as_str()).take(3).collect();
        parts.push(format!("mostly {}", a.join(", ")));
    }
    parts.join(" ")
}

/// A footprint as the ledger keeps it, with the key's last use when it
/// was read (a key used again elsewhere is read again).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub footprint: std::sync::Arc<Footprint>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
}

/// Footprints remembered between runs, by access key id.
pub type Cache = BTreeMap<crate::core::model::AccessKeyId, Cached>;

/// Whether a key's footprint must be read this run (`refresh_days = 0`:
/// every run):
/// - it was never read;
/// - the account's refresh is due (`core::tag_cache::refresh`, the rule of
///   the account tags and privileges): on the account's own day of each
///   `refresh_days` cycle once the footprint is a day old, and whenever it
///   is `refresh_days` old, so an Organization's footprints are read again
///   spread over the cycle instead of all on the same day;
/// - the key woke up: its last use is more than `refresh_days` after the
///   last use the reading knew (its last event, or the credential report's
///   last use then). A key used every day keeps its footprint until the
///   refresh; a key that was quiet and is used again is read at once (what
///   replaces it changes: it is no longer unused).
pub fn due(
    cached: Option<&Cached>,
    last_used_at: Option<Timestamp>,
    account: &crate::core::model::AccountId,
    now: Timestamp,
    refresh_days: u32,
) -> bool {
    let Some(c) = cached.filter(|_| refresh_days > 0) else {
        return true;
    };
    let refresh = crate::core::tag_cache::refresh(c.footprint.read_at, account, now, refresh_days);
    if refresh != crate::core::tag_cache::Refresh::Keep {
        return true;
    }
    let Some(used) = last_used_at else {
        return false;
    };
    match c.footprint.last.max(c.last_used_at) {
        None => true,
        Some(known) => used.as_second() - known.as_second() > i64::from(refresh_days) * 86_400,
    }
}

/// Stores the footprints read this run and forgets those older than twice
/// `refresh_days` (keys no longer flagged, or gone).
pub fn remember(cache: &mut Cache, read: &Cache, now: Timestamp, refresh_days: u32) {
    if refresh_days == 0 {
        cache.clear();
        return;
    }
    cache.extend(read.iter().map(|(k, v)| (k.clone(), v.clone())));
    let max = 2 * i64::from(refresh_days);
    cache.retain(|_, c| {
        (now.as_second() - c.footprint.read_at.as_second()).div_euclid(86_400) < max
    });
}

#[cfg(test)]
mod tests;
