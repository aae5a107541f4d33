//! The report as OCSF 1.5 Detection Findings (class 2004), one event per
//! finding, for Security Lake custom sources or any SIEM (`--format ocsf`,
//! JSON lines). With a ledger, events follow the finding's life: a new finding
//! is `Create` / `New`, one seen before is `Update` / `In Progress`, and one
//! that ended this run is `Close` / `Resolved`. Without a ledger every finding
//! is reported as this run saw it (`Create` / `New`). Exempt keys are not
//! findings and are not exported.
//!
//! Pure: no clock (times come from the report), no I/O.

use jiff::Timestamp;
use serde_json::{json, Value};

use super::checks::Severity;
use super::record::{finding_id, Lifecycle, Resolved};
use super::report::{Finding, Report};

/// The OCSF schema version the events follow.
pub const OCSF_VERSION: &str = "1.5.0";
/// Detection Finding.
pub const CLASS_UID: u32 = 2004;
/// Findings.
pub const CATEGORY_UID: u32 = 2;

/// The activity of an event: what happened to the finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Activity {
    Create,
    Update,
    Close,
}

impl Activity {
    fn id(self) -> u32 {
        match self {
            Activity::Create => 1,
            Activity::Update => 2,
            Activity::Close => 3,
        }
    }
    fn name(self) -> &'static str {
        match self {
            Activity::Create => "Create",
            Activity::Update => "Update",
            Activity::Close => "Close",
        }
    }
}

fn severity(s: Severity) -> (u32, &'static str) {
    match s {
        Severity::Low => (2, "Low"),
        Severity::Medium => (3, "Medium"),
        Severity::High => (4, "High"),
        Severity::Critical => (5, "Critical"),
    }
}

fn millis(t: Timestamp) -> i64 {
    t.as_millisecond()
}

/// Every event of `report`: one per finding, then one per finding resolved
/// this run. `version` is keywarden's version (the product in the metadata).
pub fn events<'a>(report: &'a Report, version: &'a str) -> impl Iterator<Item = Value> + 'a {
    // One at a time: at 20,000 accounts the events of every finding, held
    // as JSON values at once, were the run's peak memory.
    report
        .findings
        .iter()
        .map(move |f| finding_event(report, f, version))
        .chain(
            report
                .resolved
                .iter()
                .map(move |r| resolved_event(report, r, version)),
        )
}

fn metadata(check: &str, uid: &str, version: &str) -> Value {
    json!({
        "version": OCSF_VERSION,
        "product": {
            "name": "keywarden",
            "vendor_name": "keywarden",
            "uid": "keywarden",
            "version": version,
        },
        "event_code": check,
        "uid": uid,
        // `cloud`: the account; `datetime`: the `*_dt` twins of every time
        // (the official schema knows them only with this profile declared).
        "profiles": ["cloud", "datetime"],
    })
}

fn cloud(account_id: &str, account_name: &str) -> Value {
    json!({
        "provider": "AWS",
        "region": "global",
        "account": {
            "uid": account_id,
            "name": account_name,
            "type": "AWS Account",
            "type_id": 10,
        },
    })
}

fn key_resource(
    account_id: &str,
    user_name: &str,
    key: Option<&str>,
    partition: Option<&str>,
    data: Value,
) -> Value {
    let mut resource = match key {
        Some(key) => json!({
            "type": "AwsIamAccessKey",
            "uid": key,
            "name": user_name,
            "region": "global",
            "data": data,
        }),
        None => json!({
            "type": "AwsAccount",
            "uid": account_id,
            "name": "root",
            "region": "global",
            "data": data,
        }),
    };
    if let Some(p) = partition {
        resource["cloud_partition"] = json!(p);
    }
    resource
}

/// `aws`, `aws-cn` or `aws-us-gov`, from a user ARN (`aws` when there is none).
fn partition(arn: &str) -> &str {
    arn.split(':')
        .nth(1)
        .filter(|p| p.starts_with("aws"))
        .unwrap_or("aws")
}

fn finding_event(report: &Report, f: &Finding, version: &str) -> Value {
    let check = f.check.check();
    let id = f
        .finding_id
        .clone()
        .unwrap_or_else(|| finding_id(&f.account_id, f.access_key_id.as_ref(), f.check));
    let activity = match f.lifecycle {
        Some(Lifecycle::Open) => Activity::Update,
        Some(Lifecycle::New) | None => Activity::Create,
    };
    let (status_id, status) = match activity {
        Activity::Update => (2, "In Progress"),
        _ => (1, "New"),
    };
    let (severity_id, severity_name) = severity(f.severity);
    let now = report.evaluated_at;
    let first_seen = f.first_seen.unwrap_or(now);
    let key = f.access_key_id.as_ref().map(|k| k.as_str());
    let subject = match key {
        Some(k) => format!("key {k} of user {}", f.user_name),
        None => "the root user's access key".to_owned(),
    };
    let finding_info = json!({
        "uid": format!("keywarden/{id}"),
        "title": check.title,
        "desc": check.risk,
        "types": ["Software and Configuration Checks/AWS Security Best Practices"],
        "created_time": millis(first_seen),
        "first_seen_time": millis(first_seen),
        "last_seen_time": millis(now),
        "modified_time": millis(now),
    });
    let data = json!({
        "user_name": f.user_name,
        "user_arn": f.user_arn,
        "status": f.key_status.as_str(),
        "created_time": f.created_at.map(millis),
        "age_days": f.age_days,
        "last_used_time": f.last_used_at.map(millis),
        "last_used_service": f.last_used_service,
    });
    json!({
        "activity_id": activity.id(),
        "activity_name": activity.name(),
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + activity.id(),
        "type_name": format!("Detection Finding: {}", activity.name()),
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": status_id,
        "status": status,
        "time": millis(now),
        "time_dt": now.to_string(),
        "message": format!("{}: {subject} in {} ({})", check.title, f.account_name, f.account_id),
        "metadata": metadata(f.check.as_str(), &id, version),
        "finding_info": finding_info,
        "cloud": cloud(f.account_id.as_str(), &f.account_name),
        "resources": [key_resource(f.account_id.as_str(), &f.user_name, key, Some(partition(&f.user_arn)), data)],
        "remediation": {
            "desc": format!("{} {}", f.remediation, check.remediation),
            "references": check.references,
        },
        "unmapped": {
            "due_time": f.due_at.map(millis),
            "owner": f.owner.email.as_ref().map(|e| e.as_str()),
            "owner_rule": f.owner.rule,
            "notices": f.notices,
            "escalated_time": f.escalated_at.map(millis),
            "privilege": f.privilege,
            "risk": f.risk,
            "usage": f.usage,
            "replace_with": f.replace_with,
        },
    })
}

fn resolved_event(report: &Report, r: &Resolved, version: &str) -> Value {
    let check = r.check.check();
    let (severity_id, severity_name) = severity(r.severity);
    let now = report.evaluated_at;
    let key = r.access_key_id.as_ref().map(|k| k.as_str());
    let subject = match key {
        Some(k) => format!("key {k} of user {}", r.user_name),
        None => "the root user's access key".to_owned(),
    };
    let data = json!({ "user_name": r.user_name, "how": r.how.as_str(), "days_open": r.days_open });
    json!({
        "activity_id": Activity::Close.id(),
        "activity_name": Activity::Close.name(),
        "category_uid": CATEGORY_UID,
        "category_name": "Findings",
        "class_uid": CLASS_UID,
        "class_name": "Detection Finding",
        "type_uid": CLASS_UID * 100 + Activity::Close.id(),
        "type_name": "Detection Finding: Close",
        "severity_id": severity_id,
        "severity": severity_name,
        "status_id": 4,
        "status": "Resolved",
        "status_detail": r.how.as_str(),
        "time": millis(now),
        "time_dt": now.to_string(),
        "message": format!("Resolved ({}): {}: {subject} in {} ({})", r.how.as_str().replace('_', " "), check.title, r.account_name, r.account_id),
        "metadata": metadata(r.check.as_str(), &r.finding_id, version),
        "finding_info": {
            "uid": format!("keywarden/{}", r.finding_id),
            "title": check.title,
            "desc": check.risk,
            "types": ["Software and Configuration Checks/AWS Security Best Practices"],
            "created_time": millis(r.first_seen),
            "first_seen_time": millis(r.first_seen),
            "last_seen_time": millis(r.resolved_at),
            "modified_time": millis(now),
        },
        "cloud": cloud(r.account_id.as_str(), &r.account_name),
        "resources": [key_resource(r.account_id.as_str(), &r.user_name, key, None, data)],
    })
}
