//! Parser for the IAM credential report (CSV). Columns are found by header
//! name, not position; any malformed row rejects the whole report so that the
//! caller falls back to API enumeration instead of silently losing a user.

use jiff::Timestamp;

use super::model::{KeyFacts, KeyStatus, UserFacts};

/// The user name IAM gives the root user's row.
pub const ROOT_USER: &str = "<root_account>";

/// Why a credential report could not be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReportParseError {
    #[error("credential report is not valid CSV: {0}")]
    Csv(String),
    #[error("credential report lacks the column {0:?}")]
    MissingColumn(&'static str),
    #[error("credential report row {row} ({user:?}): column {column} has {value:?}, expected {expected}")]
    BadValue {
        row: usize,
        user: String,
        column: &'static str,
        value: String,
        expected: &'static str,
    },
}

const USER: &str = "user";
const ARN: &str = "arn";
struct KeyColumns {
    active: &'static str,
    rotated: &'static str,
    used: &'static str,
    service: &'static str,
    region: &'static str,
}
const KEYS: [KeyColumns; 2] = [
    KeyColumns {
        active: "access_key_1_active",
        rotated: "access_key_1_last_rotated",
        used: "access_key_1_last_used_date",
        service: "access_key_1_last_used_service",
        region: "access_key_1_last_used_region",
    },
    KeyColumns {
        active: "access_key_2_active",
        rotated: "access_key_2_last_rotated",
        used: "access_key_2_last_used_date",
        service: "access_key_2_last_used_service",
        region: "access_key_2_last_used_region",
    },
];

/// Values IAM writes where there is nothing to say.
fn is_absent(v: &str) -> bool {
    matches!(v, "" | "N/A" | "not_supported" | "no_information")
}

/// Parses a credential report into one [`UserFacts`] per row (the root user
/// included, flagged `is_root`). Keys carry no access key id: the report
/// does not have it.
pub fn parse(bytes: &[u8]) -> Result<Vec<UserFacts>, ReportParseError> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes);
    let headers = reader
        .headers()
        .map_err(|e| ReportParseError::Csv(e.to_string()))?
        .clone();
    let col = |name: &'static str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or(ReportParseError::MissingColumn(name))
    };
    let user_col = col(USER)?;
    let arn_col = col(ARN)?;
    // Read where present (older or trimmed reports may lack them).
    let optional = |name: &str| headers.iter().position(|h| h == name);
    let password_col = optional("password_enabled");
    let mut key_cols = Vec::with_capacity(2);
    for k in &KEYS {
        key_cols.push((
            k,
            col(k.active)?,
            col(k.rotated)?,
            col(k.used)?,
            col(k.service)?,
            optional(k.region),
        ));
    }

    let mut users = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let row = i + 2; // 1-based, after the header
        let record = record.map_err(|e| ReportParseError::Csv(e.to_string()))?;
        let get = |idx: usize| record.get(idx).unwrap_or("");
        let user_name = get(user_col).to_owned();
        let bad = |column: &'static str, value: &str, expected: &'static str| {
            ReportParseError::BadValue {
                row,
                user: user_name.clone(),
                column,
                value: value.to_owned(),
                expected,
            }
        };
        if user_name.is_empty() {
            return Err(bad(USER, "", "a user name"));
        }
        let arn = get(arn_col);
        if !arn.starts_with("arn:") {
            return Err(bad(ARN, arn, "an ARN"));
        }
        let time =
            |column: &'static str, value: &str| -> Result<Option<Timestamp>, ReportParseError> {
                if is_absent(value) {
                    Ok(None)
                } else {
                    value
                        .parse::<Timestamp>()
                        .map(Some)
                        .map_err(|_| bad(column, value, "an ISO 8601 timestamp or N/A"))
                }
            };
        let mut keys = Vec::new();
        for (names, active, rotated, used, service, region) in &key_cols {
            let active_v = get(*active);
            let status = match active_v {
                "true" => KeyStatus::Active,
                "false" => KeyStatus::Inactive,
                other => return Err(bad(names.active, other, "true or false")),
            };
            let created_at = time(names.rotated, get(*rotated))?;
            // An inactive slot with no rotation date is an empty slot.
            if status == KeyStatus::Inactive && created_at.is_none() {
                continue;
            }
            let service_v = get(*service);
            keys.push(KeyFacts {
                access_key_id: None,
                status,
                created_at,
                last_used_at: time(names.used, get(*used))?,
                last_used_service: (!is_absent(service_v)).then(|| service_v.to_owned()),
                last_used_region: region
                    .map(&get)
                    .filter(|v| !is_absent(v))
                    .map(str::to_owned),
            });
        }
        users.push(UserFacts {
            is_root: user_name == ROOT_USER,
            user_name,
            arn: arn.to_owned(),
            keys,
            tags: Vec::new(),
            quarantine: Vec::new(),
            console_password: password_col.is_some_and(|i| get(i) == "true"),
        });
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "user,arn,user_creation_time,password_enabled,password_last_used,password_last_changed,password_next_rotation,mfa_active,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_region,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_region,access_key_2_last_used_service,cert_1_active,cert_1_last_rotated,cert_2_active,cert_2_last_rotated";

    fn report(rows: &[&str]) -> String {
        let mut s = HEADER.to_owned();
        for r in rows {
            s.push('\n');
            s.push_str(r);
        }
        s.push('\n');
        s
    }

    #[test]
    fn parses_root_row_users_and_absent_values() {
        let csv = report(&[
            "<root_account>,arn:aws:iam::111122223333:root,2020-01-01T00:00:00+00:00,not_supported,2026-11-01T00:00:00+00:00,not_supported,not_supported,true,true,2021-03-04T05:06:07+00:00,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
            "ci,arn:aws:iam::111122223333:user/ci,2024-01-01T00:00:00+00:00,false,N/A,N/A,N/A,false,true,2024-01-02T00:00:00+00:00,2026-11-20T10:00:00+00:00,us-east-1,s3,false,2024-06-01T00:00:00+00:00,N/A,N/A,N/A,false,N/A,false,N/A",
            "nokeys,arn:aws:iam::111122223333:user/nokeys,2024-01-01T00:00:00+00:00,true,no_information,2024-01-01T00:00:00+00:00,N/A,false,false,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A",
        ]);
        let users = parse(csv.as_bytes()).unwrap();
        assert_eq!(users.len(), 3);
        let root = &users[0];
        assert!(root.is_root);
        assert_eq!(root.keys.len(), 1);
        assert_eq!(root.keys[0].status, KeyStatus::Active);
        assert_eq!(root.keys[0].last_used_at, None);
        let ci = &users[1];
        assert!(!ci.is_root);
        assert_eq!(ci.keys.len(), 2);
        assert_eq!(ci.keys[0].last_used_service.as_deref(), Some("s3"));
        assert_eq!(ci.keys[0].last_used_region.as_deref(), Some("us-east-1"));
        assert_eq!(ci.keys[1].last_used_region, None, "N/A");
        assert!(!ci.console_password);
        assert!(users[2].console_password, "nokeys has a password");
        assert!(!root.console_password, "not_supported");
        assert_eq!(
            ci.keys[0].last_used_at,
            Some("2026-11-20T10:00:00Z".parse().unwrap())
        );
        assert_eq!(ci.keys[1].status, KeyStatus::Inactive);
        assert_eq!(
            ci.keys[1].created_at,
            Some("2024-06-01T00:00:00Z".parse().unwrap())
        );
        assert!(users[2].keys.is_empty());
    }

    #[test]
    fn columns_are_found_by_name_and_quoted_fields_work() {
        let csv = "arn,user,access_key_1_active,access_key_1_last_rotated,access_key_1_last_used_date,access_key_1_last_used_service,access_key_2_active,access_key_2_last_rotated,access_key_2_last_used_date,access_key_2_last_used_service\n\
                   arn:aws:iam::111122223333:user/a,\"a,b\",true,2024-01-02T00:00:00+00:00,N/A,N/A,false,N/A,N/A,N/A\n";
        let users = parse(csv.as_bytes()).unwrap();
        assert_eq!(users[0].user_name, "a,b");
        assert_eq!(users[0].keys.len(), 1);
    }

    #[test]
    fn malformed_reports_are_rejected_naming_the_problem() {
        assert_eq!(
            parse(b"user,arn\n").unwrap_err(),
            ReportParseError::MissingColumn("access_key_1_active")
        );
        let bad_date = report(&["ci,arn:aws:iam::1:user/ci,x,false,N/A,N/A,N/A,false,true,yesterday,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"]);
        let err = parse(bad_date.as_bytes()).unwrap_err().to_string();
        assert!(
            err.contains("access_key_1_last_rotated") && err.contains("yesterday"),
            "{err}"
        );
        let truncated =
            format!("{HEADER}\nci,arn:aws:iam::1:user/ci,2024-01-01T00:00:00+00:00,false");
        assert!(parse(truncated.as_bytes()).is_err());
        let bad_bool = report(&["ci,arn:aws:iam::1:user/ci,x,false,N/A,N/A,N/A,false,yes,N/A,N/A,N/A,N/A,false,N/A,N/A,N/A,N/A,false,N/A,false,N/A"]);
        assert!(parse(bad_bool.as_bytes()).is_err());
    }
}
