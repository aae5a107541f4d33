use super::*;

fn at(day: i64, hour: i64) -> Timestamp {
    let t: Timestamp = "2026-09-01T00:00:00Z".parse().unwrap();
    t + jiff::SignedDuration::from_hours(24 * day + hour)
}

fn ev(day: i64, ip: &str, ua: &str, api: &str) -> Event {
    let (source, name) = api.split_once(':').unwrap();
    Event {
        at: at(day, 9),
        source: format!("{source}.amazonaws.com"),
        name: name.to_owned(),
        region: "eu-west-1".to_owned(),
        source_ip: ip.to_owned(),
        user_agent: ua.to_owned(),
        vpc_endpoint: None,
    }
}

const CLI: &str =
    "aws-cli/2.15.30 Python/3.11.8 Linux/6.5.0 exe/x86_64.ubuntu.22 prompt/off command/s3.ls";
const BOTO_LAMBDA: &str = "Boto3/1.34.34 md/Botocore#1.34.34 ua/2.0 os/linux#5.10.209 md/arch#x86_64 lang/python#3.12.2 md/pyimpl#CPython exec-env/AWS_Lambda_python3.12 cfg/retry-mode#legacy Botocore/1.34.34";
const TERRAFORM: &str = "APN/1.0 HashiCorp/1.0 Terraform/1.7.4 (+https://www.terraform.io) terraform-provider-aws/5.40.0 (+https://registry.terraform.io/providers/hashicorp/aws) aws-sdk-go-v2/1.25.2 os/linux lang/go#1.22.0";
const GHA: &str = "aws-sdk-js/3.540.0 ua/2.0 os/linux#6.5.0-1016-azure lang/js md/nodejs#20.11.1 api/sts#3.540.0 configure-aws-credentials-for-github-actions";

fn person() -> KeyContext {
    KeyContext {
        unused: false,
        never_used: false,
        console_password: false,
    }
}

fn known(events: &[Event], complete: bool) -> Usage {
    Usage::Known(std::sync::Arc::new(summarize(events, complete, at(90, 0))))
}

#[test]
fn user_agents_are_normalised_to_a_tool_and_major_version_with_markers() {
    assert_eq!(agent(CLI).tool, "aws-cli/2");
    assert!(agent(CLI).interactive);
    let boto = agent(BOTO_LAMBDA);
    assert_eq!(boto.tool, "Boto3/1");
    assert_eq!(boto.exec_env.as_deref(), Some("AWS_Lambda_python3.12"));
    assert_eq!(agent(TERRAFORM).tool, "terraform/1");
    let gha = agent(GHA);
    assert_eq!(gha.tool, "aws-sdk-js/3");
    assert_eq!(gha.ci, Some("GitHub Actions"));
    assert_eq!(agent("console.amazonaws.com").tool, "console");
    assert_eq!(
        agent("aws-sdk-go-v2/1.24.0 os/linux lang/go#1.21").tool,
        "aws-sdk-go-v2"
    );
    let vendor = agent("Datadog/1.0 (+https://www.datadoghq.com)");
    assert_eq!(vendor.tool, "Datadog");
    assert!(!vendor.aws_tool);
    // Odd characters never reach the summary.
    assert_eq!(agent("<script>/1").tool, "script");
    assert_eq!(agent("").tool, "unknown");
}

#[test]
fn a_footprint_counts_apis_addresses_services_endpoints_and_tools() {
    let mut events = vec![
        ev(1, "203.0.113.7", CLI, "s3:ListBuckets"),
        ev(2, "203.0.113.7", CLI, "s3:ListBuckets"),
        ev(2, "198.51.100.2", CLI, "iam:GetUser"),
        ev(3, "lambda.amazonaws.com", BOTO_LAMBDA, "s3:PutObject"),
    ];
    let mut via = ev(4, "10.0.0.5", BOTO_LAMBDA, "s3:PutObject");
    via.vpc_endpoint = Some("vpce-0123".into());
    events.push(via);
    let f = summarize(&events, true, at(90, 0));
    assert_eq!(f.events, 5);
    assert_eq!(f.first, Some(at(1, 9)));
    assert_eq!(f.last, Some(at(4, 9)));
    assert_eq!(
        f.apis[0],
        Count {
            name: "s3:ListBuckets".into(),
            count: 2
        }
    );
    assert_eq!(f.address_count, 3, "the service name is not an address");
    assert_eq!(f.addresses[0].ip, "203.0.113.7");
    assert_eq!(f.addresses[0].days, 2);
    assert_eq!(
        f.aws_services,
        [Count {
            name: "lambda.amazonaws.com".into(),
            count: 1
        }]
    );
    assert_eq!(f.via_vpc_endpoint, 1);
    assert_eq!(
        f.tools[0],
        Count {
            name: "aws-cli/2".into(),
            count: 3
        }
    );
    assert_eq!(f.exec_env, ["AWS_Lambda_python3.12"]);
    assert_eq!(f.regions, ["eu-west-1"]);
}

#[test]
fn the_parser_never_holds_request_or_response_parameters() {
    let json = r#"{"eventVersion":"1.09","eventTime":"2026-09-02T09:00:00Z","eventSource":"s3.amazonaws.com",
        "eventName":"PutObject","awsRegion":"eu-west-1","sourceIPAddress":"203.0.113.7","userAgent":"aws-cli/2.15.30",
        "requestParameters":{"bucketName":"secret-bucket","key":"payroll.csv"},
        "responseElements":{"x-amz-server-side-encryption":"AES256"}}"#;
    let e = Event::parse(json).unwrap();
    let f = summarize(&[e], true, at(90, 0));
    let text = serde_json::to_string(&f).unwrap();
    assert!(
        !text.contains("secret-bucket") && !text.contains("payroll"),
        "{text}"
    );
    assert!(Event::parse("{").unwrap_err().contains("not readable"));
    // What CloudTrail (or a hostile endpoint) answers never shapes a message.
    let mut odd = ev(
        1,
        "203.0.113.7\nBcc: x@example.com",
        CLI,
        "s3:List\nBuckets",
    );
    odd.region = "eu-west-1\r\nX".into();
    let f = summarize(&[odd], true, at(90, 0));
    assert_eq!(f.addresses[0].ip, "203.0.113.7Bcc:xexample.com");
    assert_eq!(f.apis[0].name, "s3:ListBuckets");
    assert_eq!(f.regions, ["eu-west-1X"]);
}

#[test]
fn unused_and_never_used_keys_are_deleted_whatever_the_footprint() {
    let never = KeyContext {
        never_used: true,
        ..person()
    };
    assert_eq!(advise(never, None).kind, Kind::Delete);
    let unused = KeyContext {
        unused: true,
        ..person()
    };
    assert_eq!(
        advise(unused, Some(&Usage::Unknown { reason: "x".into() })).kind,
        Kind::Delete
    );
}

#[test]
fn a_laptop_key_is_a_person_for_identity_center() {
    let events = [
        ev(1, "203.0.113.7", CLI, "s3:ListBuckets"),
        ev(9, "198.51.100.2", CLI, "ec2:DescribeInstances"),
    ];
    let with_password = KeyContext {
        console_password: true,
        ..person()
    };
    let r = advise(with_password, Some(&known(&events, true)));
    assert_eq!(r.kind, Kind::IdentityCenter, "{r:?}");
    assert!(r.reason.contains("signs in to the console"), "{}", r.reason);
    // Without a password: only interactive tools from a few addresses.
    let r = advise(person(), Some(&known(&events, true)));
    assert_eq!(r.kind, Kind::IdentityCenter, "{r:?}");
    assert!(r
        .reason
        .contains("only interactive tools (aws-cli/2) from 2 addresses"));
}

#[test]
fn a_ci_key_is_for_oidc_by_its_marker_or_by_its_runner_addresses() {
    let r = advise(
        person(),
        Some(&known(
            &[ev(1, "20.1.2.3", GHA, "sts:GetCallerIdentity")],
            true,
        )),
    );
    assert_eq!(r.kind, Kind::Oidc);
    assert_eq!(
        r.reason,
        "its user agent names the CI system GitHub Actions"
    );
    let runners: Vec<Event> = (0..12)
        .map(|i| ev(i * 3, &format!("20.0.0.{i}"), TERRAFORM, "s3:GetObject"))
        .collect();
    let r = advise(person(), Some(&known(&runners, true)));
    assert_eq!(r.kind, Kind::Oidc, "{r:?}");
    assert!(
        r.reason.contains("12 short-lived addresses"),
        "{}",
        r.reason
    );
}

#[test]
fn a_workload_inside_aws_gets_a_role_for_its_compute() {
    let mut via = ev(1, "10.0.0.5", TERRAFORM, "s3:PutObject");
    via.vpc_endpoint = Some("vpce-0123".into());
    let r = advise(person(), Some(&known(&[via], true)));
    assert_eq!(r.kind, Kind::ComputeRole);
    assert!(
        r.reason.contains("1 calls came through a VPC endpoint"),
        "{}",
        r.reason
    );
    let r = advise(
        person(),
        Some(&known(
            &[ev(1, "3.3.3.3", BOTO_LAMBDA, "s3:PutObject")],
            true,
        )),
    );
    assert_eq!(r.kind, Kind::ComputeRole);
    assert!(r.reason.contains("AWS_Lambda_python3.12"), "{}", r.reason);
    // CloudShell is a person at a browser, not compute.
    let shell = "aws-cli/2.15.30 Python/3.11.8 Linux/6.1 exec-env/CloudShell exe/x86_64.amzn.2023";
    let r = advise(
        person(),
        Some(&known(&[ev(1, "3.3.3.3", shell, "s3:ListBuckets")], true)),
    );
    assert_eq!(r.kind, Kind::IdentityCenter, "{r:?}");
}

#[test]
fn fixed_addresses_are_servers_or_a_vendor_and_never_claimed_outside_aws_from_an_address() {
    let servers: Vec<Event> = (0..20)
        .map(|d| ev(d, "192.0.2.10", TERRAFORM, "ec2:DescribeInstances"))
        .collect();
    let r = advise(person(), Some(&known(&servers, true)));
    assert_eq!(r.kind, Kind::RolesAnywhere, "{r:?}");
    assert!(
        r.reason
            .contains("1 fixed address (192.0.2.10) over 19 days"),
        "{}",
        r.reason
    );
    let vendor: Vec<Event> = (0..20)
        .map(|d| ev(d, "192.0.2.77", "Datadog/1.0", "cloudwatch:GetMetricData"))
        .collect();
    let r = advise(person(), Some(&known(&vendor, true)));
    assert_eq!(r.kind, Kind::VendorRole, "{r:?}");
    assert!(
        r.reason.contains("by Datadog, not an AWS tool"),
        "{}",
        r.reason
    );
    // Two days from one address is not "fixed": not enough evidence.
    let short = [
        ev(1, "192.0.2.10", TERRAFORM, "ec2:DescribeInstances"),
        ev(2, "192.0.2.10", TERRAFORM, "ec2:DescribeInstances"),
    ];
    assert_eq!(
        advise(person(), Some(&known(&short, true))).kind,
        Kind::Rotate
    );
}

#[test]
fn without_evidence_it_is_rotate_saying_what_was_missing() {
    let r = advise(
        person(),
        Some(&Usage::Unknown {
            reason: "cloudtrail:LookupEvents: AccessDenied".into(),
        }),
    );
    assert_eq!(r.kind, Kind::Rotate);
    assert_eq!(
        r.reason,
        "where it is used is unknown (cloudtrail:LookupEvents: AccessDenied)"
    );
    let r = advise(person(), Some(&known(&[], true)));
    assert_eq!(r.kind, Kind::Rotate);
    assert!(r.reason.contains("no management event"), "{}", r.reason);
    assert_eq!(advise(person(), None).kind, Kind::Rotate);
}

#[test]
fn a_cut_window_says_at_least() {
    let events: Vec<Event> = (0..8)
        .map(|i| ev(i, &format!("198.51.100.{i}"), TERRAFORM, "s3:GetObject"))
        .collect();
    let f = summarize(&events, false, at(90, 0));
    assert!(
        used_line(&f).starts_with("at least 8 calls from "),
        "{}",
        used_line(&f)
    );
    assert!(used_line(&f).contains("and 5 more"), "{}", used_line(&f));
    let r = advise(person(), Some(&Usage::Known(std::sync::Arc::new(f))));
    assert!(r.reason.starts_with("at least 8 events"), "{}", r.reason);
}

#[test]
fn the_usage_json_is_tagged_by_state() {
    let u = Usage::Unknown {
        reason: "throttled".into(),
    };
    assert_eq!(
        serde_json::to_value(&u).unwrap(),
        serde_json::json!({"state": "unknown", "reason": "throttled"})
    );
    let k = known(&[ev(1, "203.0.113.7", CLI, "s3:ListBuckets")], true);
    let v = serde_json::to_value(&k).unwrap();
    assert_eq!(v["state"], "known");
    assert_eq!(v["complete"], true);
    let back: Usage = serde_json::from_value(v).unwrap();
    assert_eq!(back, k);
    assert_eq!(
        serde_json::to_value(Kind::IdentityCenter).unwrap(),
        "identity-center"
    );
}

#[test]
fn a_footprint_is_read_again_on_the_accounts_refresh_day_when_old_or_when_the_key_woke_up() {
    use crate::core::model::AccountId;
    use crate::core::tag_cache::is_refresh_day;
    let acct = |n: u64| AccountId::parse(&format!("{n:012}")).unwrap();
    let now = at(91, 0);
    let quiet_at = |t: Timestamp| {
        (1..100)
            .map(acct)
            .find(|a| !is_refresh_day(a, t, 7))
            .unwrap()
    };
    let quiet = quiet_at(now);
    let refreshing = (1..100)
        .map(acct)
        .find(|a| is_refresh_day(a, now, 7))
        .unwrap();
    // Read on day 90; the key's last event on day 89 (the report said so too).
    let f = summarize(
        &[ev(89, "203.0.113.7", CLI, "s3:ListBuckets")],
        true,
        at(90, 0),
    );
    let c = Cached {
        footprint: std::sync::Arc::new(f),
        last_used_at: Some(at(89, 0)),
    };
    let used = Some(at(89, 0));
    assert!(due(None, used, &quiet, now, 7), "never read");
    assert!(
        !due(Some(&c), used, &quiet, now, 7),
        "a day old, not the account's day"
    );
    assert!(
        due(Some(&c), used, &refreshing, now, 7),
        "the account's refresh day"
    );
    let today = Cached {
        footprint: std::sync::Arc::new(summarize(
            &[ev(89, "203.0.113.7", CLI, "s3:ListBuckets")],
            true,
            at(91, 0),
        )),
        last_used_at: Some(at(89, 0)),
    };
    assert!(
        !due(Some(&today), used, &refreshing, at(91, 6), 7),
        "read today: not again today, even on the refresh day"
    );
    assert!(
        due(Some(&c), used, &quiet, at(97, 0), 7),
        "refresh_days old"
    );
    // A key used every day keeps its footprint until the refresh.
    assert!(
        !due(
            Some(&c),
            Some(at(95, 0)),
            &quiet_at(at(96, 0)),
            at(96, 0),
            7
        ),
        "used daily"
    );
    // A key quiet for a month, used again: read at once.
    let woke = summarize(
        &[ev(60, "203.0.113.7", CLI, "s3:ListBuckets")],
        true,
        at(90, 0),
    );
    let woke = Cached {
        footprint: std::sync::Arc::new(woke),
        last_used_at: Some(at(60, 0)),
    };
    assert!(
        !due(Some(&woke), Some(at(60, 0)), &quiet, now, 7),
        "still quiet"
    );
    assert!(
        due(Some(&woke), Some(at(90, 12)), &quiet, now, 7),
        "woke up"
    );
    // Only data events (no management event in the window): the report's
    // last use is what the reading knew.
    let data_only = Cached {
        footprint: std::sync::Arc::new(summarize(&[], true, at(90, 0))),
        last_used_at: Some(at(89, 0)),
    };
    assert!(
        !due(Some(&data_only), Some(at(90, 20)), &quiet, now, 7),
        "used daily, S3 reads only"
    );
    let never_known = Cached {
        footprint: std::sync::Arc::new(summarize(&[], true, at(90, 0))),
        last_used_at: None,
    };
    assert!(
        due(Some(&never_known), Some(at(90, 20)), &quiet, now, 7),
        "first use since the reading"
    );
    assert!(due(Some(&c), used, &quiet, now, 0), "0: every run");
    let id = crate::core::model::AccessKeyId::parse("AKIAIOSFODNN7EXAMPLE").unwrap();
    let mut cache = Cache::new();
    remember(&mut cache, &Cache::from([(id.clone(), c)]), at(91, 0), 7);
    assert!(cache.contains_key(&id));
    remember(&mut cache, &Cache::new(), at(103, 0), 7);
    assert!(cache.contains_key(&id), "13 days: kept");
    remember(&mut cache, &Cache::new(), at(104, 0), 7);
    assert!(cache.is_empty(), "twice refresh_days: forgotten");
}

#[test]
fn the_enforcement_plan_says_who_still_uses_a_key() {
    let events = [
        ev(88, "203.0.113.7", TERRAFORM, "s3:ListBuckets"),
        ev(89, "198.51.100.2", TERRAFORM, "s3:ListBuckets"),
        ev(89, "198.51.100.3", CLI, "s3:ListBuckets"),
    ];
    let f = summarize(&events, true, at(90, 0));
    // The last event is at day 89, 09:00; two hours later:
    assert_eq!(
        breaks_line(&f, at(89, 11)),
        "used 2 hours ago from 3 addresses by terraform/1, aws-cli/2: deactivating it will break them"
    );
    assert_eq!(
        breaks_line(&f, at(95, 9)),
        "used 6 days ago from 3 addresses by terraform/1, aws-cli/2: deactivating it will break them"
    );
    assert_eq!(breaks_line(&summarize(&[], true, at(90, 0)), at(90, 0)), "");
}
