//! Exemptions: the `keywarden:exempt` user tag (`YYYY-MM-DD[ reason]`) and the
//! config-level rules (whole accounts, user ARN patterns).

use std::collections::BTreeSet;

use jiff::{civil::Date, tz::TimeZone, Timestamp};

use super::model::AccountId;

/// A parsed exemption tag value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagExemption {
    /// Last day (UTC, inclusive) on which the exemption is in force.
    pub until: Date,
    pub reason: Option<String>,
}

impl TagExemption {
    pub fn in_force(&self, now: Timestamp) -> bool {
        now.to_zoned(TimeZone::UTC).date() <= self.until
    }
}

/// Why an exemption tag value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "exemption tag value {value:?} is not `YYYY-MM-DD` optionally followed by a space and a reason"
)]
pub struct ExemptTagError {
    pub value: String,
}

/// Parses `YYYY-MM-DD`, optionally followed by whitespace and a free-text reason.
pub fn parse_exempt_tag(value: &str) -> Result<TagExemption, ExemptTagError> {
    let err = || ExemptTagError {
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    let (date, reason) = match trimmed.split_once(char::is_whitespace) {
        Some((d, r)) => (d, Some(r.trim())),
        None => (trimmed, None),
    };
    // jiff accepts more than a bare date (e.g. `2026-01-01T00`); insist on the exact form.
    let well_formed = date.len() == 10
        && date.bytes().enumerate().all(|(i, b)| {
            if i == 4 || i == 7 {
                b == b'-'
            } else {
                b.is_ascii_digit()
            }
        });
    if !well_formed {
        return Err(err());
    }
    let until: Date = date.parse().map_err(|_| err())?;
    Ok(TagExemption {
        until,
        reason: reason.filter(|r| !r.is_empty()).map(str::to_owned),
    })
}

/// A user ARN pattern: `*` matches any run of characters, `?` exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArnPattern(String);

impl ArnPattern {
    pub fn new(pattern: &str) -> Self {
        Self(pattern.to_owned())
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
    pub fn matches(&self, arn: &str) -> bool {
        wildcard_match(self.0.as_bytes(), arn.as_bytes())
    }
}

fn wildcard_match(pattern: &[u8], text: &[u8]) -> bool {
    // Iterative matcher with single-star backtracking: linear in practice, no recursion.
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && (pattern[p] == b'?' || pattern[p] == text[t]) {
            p += 1;
            t += 1;
        } else if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&b| b == b'*')
}

/// All exemption rules in force for a run.
#[derive(Debug, Clone)]
pub struct ExemptionRules {
    /// User tag holding the exemption's end date.
    pub tag_key: String,
    /// Accounts whose keys never produce findings (listed as exempt instead).
    pub accounts: BTreeSet<AccountId>,
    /// Users whose keys never produce findings.
    pub user_arns: Vec<ArnPattern>,
    /// A tag exemption ending further away than this is invalid: anyone who
    /// may tag a user could otherwise silence its keys forever.
    pub max_days: u32,
}

impl Default for ExemptionRules {
    fn default() -> Self {
        Self {
            tag_key: "keywarden:exempt".to_owned(),
            accounts: BTreeSet::new(),
            user_arns: Vec::new(),
            max_days: 90,
        }
    }
}

impl TagExemption {
    /// Whole days from `now` (UTC date) to the last day of the exemption.
    pub fn days_left(&self, now: Timestamp) -> i64 {
        (self.until - now.to_zoned(TimeZone::UTC).date())
            .get_days()
            .into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exempt_tag_is_a_date_with_an_optional_reason() {
        let e = parse_exempt_tag("2026-12-31 vendor integration, JIRA-42").unwrap();
        assert_eq!(e.until, jiff::civil::date(2026, 12, 31));
        assert_eq!(e.reason.as_deref(), Some("vendor integration, JIRA-42"));
        assert_eq!(parse_exempt_tag(" 2026-12-31 ").unwrap().reason, None);
        for bad in [
            "",
            "soon",
            "2026-13-01",
            "2026-02-30",
            "31/12/2026",
            "2026-1-1",
            "2026-12-31T00:00",
        ] {
            assert!(parse_exempt_tag(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn exemption_is_in_force_through_its_last_day_utc() {
        let e = parse_exempt_tag("2026-11-29").unwrap();
        assert!(e.in_force("2026-11-29T23:59:59Z".parse().unwrap()));
        assert!(!e.in_force("2026-11-30T00:00:00Z".parse().unwrap()));
    }

    #[test]
    fn arn_patterns_use_star_and_question_mark() {
        let p = ArnPattern::new("arn:aws:iam::*:user/service/*");
        assert!(p.matches("arn:aws:iam::111122223333:user/service/ci"));
        assert!(!p.matches("arn:aws:iam::111122223333:user/ci"));
        assert!(ArnPattern::new("arn:aws:iam::11112222333?:user/x")
            .matches("arn:aws:iam::111122223333:user/x"));
        assert!(ArnPattern::new("*").matches(""));
        assert!(!ArnPattern::new("a*b").matches("acbd"));
    }
}
