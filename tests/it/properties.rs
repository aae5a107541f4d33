//! Property tests for the parsers that read data from AWS and from people:
//! the credential report, the exemption tag and email addresses. No input
//! panics; what is written out reads back the same.

use jiff::Timestamp;
use keywarden::core::credential_report::parse;
use keywarden::core::exempt::parse_exempt_tag;
use keywarden::core::model::{EmailAddress, KeyStatus};
use proptest::prelude::*;

const HEADER: [&str; 22] = [
    "user",
    "arn",
    "user_creation_time",
    "password_enabled",
    "password_last_used",
    "password_last_changed",
    "password_next_rotation",
    "mfa_active",
    "access_key_1_active",
    "access_key_1_last_rotated",
    "access_key_1_last_used_date",
    "access_key_1_last_used_region",
    "access_key_1_last_used_service",
    "access_key_2_active",
    "access_key_2_last_rotated",
    "access_key_2_last_used_date",
    "access_key_2_last_used_region",
    "access_key_2_last_used_service",
    "cert_1_active",
    "cert_1_last_rotated",
    "cert_2_active",
    "cert_2_last_rotated",
];

/// A key slot as the report writes it: (active, created, last used, service).
#[derive(Debug, Clone)]
struct Slot {
    active: bool,
    created: Option<i64>,
    used: Option<i64>,
    service: Option<String>,
}

fn slot() -> impl Strategy<Value = Slot> {
    (
        any::<bool>(),
        proptest::option::of(1_400_000_000i64..1_800_000_000),
        proptest::option::of(1_400_000_000i64..1_800_000_000),
        proptest::option::of("[a-z0-9-]{1,20}"),
    )
        .prop_map(|(active, created, used, service)| Slot {
            // An active key always has a creation date.
            created: if active {
                created.or(Some(1_500_000_000))
            } else {
                created
            },
            active,
            used,
            service,
        })
}

fn time(t: Option<i64>) -> String {
    t.map(|s| {
        Timestamp::from_second(s)
            .unwrap()
            .strftime("%Y-%m-%dT%H:%M:%S+00:00")
            .to_string()
    })
    .unwrap_or_else(|| "N/A".into())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_credential_report_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn the_parser_never_panics_on_reports_with_the_right_header(rows in proptest::collection::vec(proptest::collection::vec(".{0,30}", 0..25), 0..8)) {
        let mut w = csv::WriterBuilder::new().flexible(true).from_writer(Vec::new());
        w.write_record(HEADER).unwrap();
        for r in &rows {
            w.write_record(r).unwrap();
        }
        let _ = parse(&w.into_inner().unwrap());
    }

    #[test]
    fn written_reports_read_back_the_same(users in proptest::collection::vec(("[A-Za-z0-9+=,.@_-]{1,64}", slot(), slot()), 0..20)) {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(HEADER).unwrap();
        for (name, a, b) in &users {
            let mut row = vec![name.clone(), format!("arn:aws:iam::111122223333:user/{name}"), time(Some(1_400_000_000)),
                "false".into(), "N/A".into(), "N/A".into(), "N/A".into(), "false".into()];
            for s in [a, b] {
                row.extend([s.active.to_string(), time(s.created), time(s.used), "us-east-1".into(),
                    s.service.clone().unwrap_or_else(|| "N/A".into())]);
            }
            row.extend(["false".into(), "N/A".into(), "false".into(), "N/A".into()]);
            w.write_record(&row).unwrap();
        }
        let parsed = parse(&w.into_inner().unwrap()).unwrap();
        prop_assert_eq!(parsed.len(), users.len());
        for (p, (name, a, b)) in parsed.iter().zip(&users) {
            prop_assert_eq!(&p.user_name, name);
            prop_assert_eq!(p.is_root, false);
            // Empty slots (inactive, never created) are not keys.
            let expected: Vec<&Slot> = [a, b].into_iter().filter(|s| s.active || s.created.is_some()).collect();
            prop_assert_eq!(p.keys.len(), expected.len());
            for (k, s) in p.keys.iter().zip(expected) {
                prop_assert_eq!(k.status, if s.active { KeyStatus::Active } else { KeyStatus::Inactive });
                prop_assert_eq!(k.created_at.map(|t| t.as_second()), s.created);
                prop_assert_eq!(k.last_used_at.map(|t| t.as_second()), s.used);
                prop_assert_eq!(&k.last_used_service, &s.service);
            }
        }
    }

    #[test]
    fn the_exemption_tag_parser_never_panics(s in "\\PC{0,80}") {
        let _ = parse_exempt_tag(&s);
    }

    #[test]
    fn exemption_tags_read_back_their_date_and_reason(y in 2000i16..2100, m in 1i8..=12, d in 1i8..=28, reason in proptest::option::of("[A-Za-z0-9 ,.:()<>\"'-]{1,60}")) {
        let date = jiff::civil::date(y, m, d);
        let value = match &reason { Some(r) => format!("{date} {r}"), None => date.to_string() };
        let e = parse_exempt_tag(&value).unwrap();
        prop_assert_eq!(e.until, date);
        prop_assert_eq!(e.reason, reason.map(|r| r.trim().to_owned()).filter(|r| !r.is_empty()));
    }

    #[test]
    fn address_validation_never_panics_and_accepts_only_bare_mailboxes(s in "\\PC{0,80}|.{0,80}") {
        if let Ok(a) = EmailAddress::parse(&s) {
            let v = a.as_str();
            prop_assert!(v.is_ascii());
            prop_assert!(!v.chars().any(|c| c.is_control() || c.is_whitespace()));
            prop_assert!(!v.contains(['<', '>', ',', ';', '"', '(', ')', '\\', ':']));
            prop_assert_eq!(v.matches('@').count(), 1);
        }
    }

    #[test]
    fn ordinary_addresses_are_accepted(local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", domain in "[a-z0-9]{1,20}(\\.[a-z0-9]{1,10}){0,2}\\.[a-z]{2,6}") {
        let addr = format!("{local}@{domain}");
        prop_assume!(!local.contains(".."));
        prop_assert!(EmailAddress::parse(&addr).is_ok(), "{} rejected", addr);
    }

    #[test]
    fn header_injection_is_always_rejected(a in "[a-z]{1,10}@[a-z]{1,10}\\.com", tail in "[\\r\\n]{1,2}[A-Za-z-]{1,10}: ?[a-z@.]{0,20}") {
        let injected = format!("{a}{tail}");
        prop_assert!(EmailAddress::parse(&injected).is_err(), "{:?} accepted", injected);
    }
}
