//! The settings' rules, one test per rule.

use super::*;
use crate::core::enforce::Mode as EnforceMode;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_match_the_design() {
    let s = RawSettings::defaults().validate().unwrap();
    assert_eq!(s.role_name, "KeywardenScanRole");
    assert_eq!(s.policy, Policy::default());
    assert_eq!(s.concurrency, 192);
    assert_eq!(s.account_timeout, Duration::from_secs(120));
    assert_eq!(s.exemptions.tag_key, "keywarden:exempt");
    assert_eq!(s.owners.owner_tag_keys, ["owner", "email", "contact"]);
    assert_eq!(
        s.owners.account_owner_tag_keys,
        ["owner", "security-contact"]
    );
    assert!(s.notify.is_none(), "no sender, no recipients: scan only");
    let mut raw = RawSettings::defaults();
    raw.merge_env(env(&[
        ("KEYWARDEN_SENDER", "kw@example.com"),
        ("KEYWARDEN_SECURITY_RECIPIENTS", "sec@example.com"),
    ]))
    .unwrap();
    let n = raw.validate().unwrap().notify.unwrap();
    assert!(n.notify_account_owners);
    assert_eq!(n.max_send_rate, 1.0);
    let c = RawSettings::defaults().validate().unwrap().cadence;
    assert_eq!(
        (
            c.remind_every_days,
            c.overdue_remind_every_days,
            c.escalate_after_days
        ),
        (7, 3, 14)
    );
    assert_eq!(RawSettings::defaults().validate().unwrap().state, None);
}

#[test]
fn later_sources_win_file_then_env_then_flags() {
    let mut raw = RawSettings::defaults();
    raw.merge_toml(
        "warn_age_days = 10\nmax_age_days = 20\ninclude_accounts = [\"111122223333\"]",
        "test.toml",
    )
    .unwrap();
    raw.merge_env(env(&[
        ("KEYWARDEN_MAX_AGE_DAYS", "30"),
        ("KEYWARDEN_LOG", "debug"),
        ("PATH", "/bin"),
    ]))
    .unwrap();
    raw.set_flag(
        "include_accounts",
        "222233334444, 333344445555",
        "--accounts",
    );
    let s = raw.validate().unwrap();
    assert_eq!((s.policy.warn_age_days, s.policy.max_age_days), (10, 30));
    assert_eq!(s.scope.include_accounts.len(), 2);
}

#[test]
fn invalid_values_name_the_key_and_the_source() {
    let cases: &[(&str, &str, &str)] = &[
        ("KEYWARDEN_WARN_AGE_DAYS", "-1", "warn_age_days"),
        ("KEYWARDEN_MAX_AGE_DAYS", "ninety", "max_age_days"),
        ("KEYWARDEN_WARN_AGE_DAYS", "90", "warn_age_days"),
        ("KEYWARDEN_CONCURRENCY", "0", "concurrency"),
        ("KEYWARDEN_SENDER", "Security <sec@example.com>", "sender"),
        (
            "KEYWARDEN_SECURITY_RECIPIENTS",
            "a@example.com,not-an-address",
            "security_recipients",
        ),
        ("KEYWARDEN_INCLUDE_ACCOUNTS", "12345", "include_accounts"),
        ("KEYWARDEN_INCLUDE_OUS", "engineering", "include_ous"),
        (
            "KEYWARDEN_NOTIFY_ACCOUNT_OWNERS",
            "maybe",
            "notify_account_owners",
        ),
        ("KEYWARDEN_MAX_SEND_RATE", "0", "max_send_rate"),
        ("KEYWARDEN_ROLE_NAME", "bad role", "role_name"),
        ("KEYWARDEN_EXEMPT_USER_ARNS", "ci-*", "exempt_user_arns"),
    ];
    for (var, value, key) in cases {
        let mut raw = RawSettings::defaults();
        raw.merge_env(env(&[(var, value)])).unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{key}`")) && err.contains(var),
            "{var}={value}: {err}"
        );
    }
}

#[test]
fn an_unknown_keywarden_variable_is_an_error_naming_the_closest_setting() {
    let err = RawSettings::defaults()
        .merge_env(env(&[("KEYWARDEN_MAX_AGE", "90")]))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("KEYWARDEN_MAX_AGE") && err.contains("did you mean KEYWARDEN_MAX_AGE_DAYS?"),
        "{err}"
    );
    let err = RawSettings::defaults()
        .merge_toml("sendr = \"a@example.com\"", "c.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("did you mean `sender`?"), "{err}");
    // Issue 26: the closest key, not all of them on one line.
    assert!(!err.contains("warn_age_days"), "{err}");
}

#[test]
fn toml_type_errors_and_unknown_keys_are_reported() {
    let mut raw = RawSettings::defaults();
    raw.merge_toml("max_age_days = \"90\"", "c.toml").unwrap();
    let err = raw.validate().unwrap_err().to_string();
    assert!(
        err.contains("`max_age_days`") && err.contains("c.toml"),
        "{err}"
    );
    let err = RawSettings::defaults()
        .merge_toml("max_age_dayz = 3", "c.toml")
        .unwrap_err()
        .to_string();
    assert!(err.contains("max_age_dayz"), "{err}");
    assert!(RawSettings::defaults()
        .merge_toml("= broken", "c.toml")
        .is_err());
}

#[test]
fn every_key_with_a_wrong_type_is_an_error_naming_it() {
    for (key, _) in KEYS {
        let mut raw = RawSettings::defaults();
        raw.merge_toml(&format!("{key} = {{ nested = 1 }}"), "c.toml")
            .unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(
            err.contains(&format!("`{key}`")) && err.contains("c.toml"),
            "{key}: {err}"
        );
    }
}

#[test]
fn every_number_out_of_range_is_an_error_naming_it() {
    let numeric = [
        "warn_age_days",
        "max_age_days",
        "unused_days",
        "stale_inactive_days",
        "concurrency",
        "account_timeout_secs",
        "report_wait_secs",
        "deadline_reserve_secs",
        "max_send_rate",
        "remind_every_days",
        "overdue_remind_every_days",
        "escalate_after_days",
        "max_exemption_days",
        "deactivate_after_days",
        "enforce_min_notices",
        "enforce_final_notice_days",
        "enforce_max_per_day",
        "enforce_max_per_run",
    ];
    for key in numeric {
        for bad in ["-1", "99999999", "1e400", "1e-30", "NaN", ""] {
            let mut raw = RawSettings::defaults();
            raw.set_flag(key, bad, "--test");
            match raw.validate() {
                Err(e) => assert!(
                    e.to_string().contains(&format!("`{key}`")),
                    "{key}={bad}: {e}"
                ),
                Ok(_) => panic!("{key}={bad:?} accepted"),
            }
        }
    }
}

#[test]
fn notify_needs_sender_and_recipients_and_half_of_them_is_an_error() {
    let s = RawSettings::defaults().validate().unwrap();
    assert!(s.notify().unwrap_err().to_string().contains("`sender`"));
    for (var, missing) in [
        ("KEYWARDEN_SENDER", "`security_recipients`"),
        ("KEYWARDEN_SECURITY_RECIPIENTS", "`sender`"),
    ] {
        let mut raw = RawSettings::defaults();
        raw.merge_env(env(&[(var, "someone@example.com")])).unwrap();
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains(missing), "{var}: {err}");
    }
}

#[test]
fn allowed_recipient_domains_default_to_the_sender_and_security_recipients() {
    let mut raw = RawSettings::defaults();
    raw.merge_env(env(&[
        ("KEYWARDEN_SENDER", "kw@Acme.example"),
        (
            "KEYWARDEN_SECURITY_RECIPIENTS",
            "sec@acme.example,ciso@corp.example",
        ),
    ]))
    .unwrap();
    let s = raw.validate().unwrap();
    assert_eq!(s.owners.allowed_domains, ["acme.example", "corp.example"]);
    raw.set_flag(
        "allowed_recipient_domains",
        "eu.acme.example, @other.example",
        "--test",
    );
    let s = raw.validate().unwrap();
    assert_eq!(
        s.owners.allowed_domains,
        ["eu.acme.example", "other.example"]
    );
    raw.set_flag("allowed_recipient_domains", "not a domain", "--test");
    assert!(raw
        .validate()
        .unwrap_err()
        .to_string()
        .contains("`allowed_recipient_domains`"));
    assert!(RawSettings::defaults()
        .validate()
        .unwrap()
        .owners
        .allowed_domains
        .is_empty());
}

#[test]
fn enforcement_settings_default_off_and_are_validated() {
    let s = RawSettings::defaults().validate().unwrap();
    assert_eq!(s.enforce, EnforcePolicy::default());
    assert_eq!(s.enforce_role_name, "KeywardenEnforceRole");
    for (key, bad) in [
        ("enforce", "yes"),
        ("delete_inactive_after_days", "-1"),
        ("delete_inactive_after_days", "0"),
        ("enforce_role_name", "bad role"),
    ] {
        let mut raw = RawSettings::defaults();
        raw.set_flag(key, bad, "--test");
        let err = raw.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{key}={bad}: {err}");
    }
    let mut raw = RawSettings::defaults();
    raw.set_flag("enforce", "Apply", "--test");
    raw.set_flag("delete_inactive_after_days", "60", "--test");
    let s = raw.validate().unwrap();
    assert_eq!(s.enforce.mode, EnforceMode::Apply);
    assert_eq!(s.enforce.delete_inactive_after_days, Some(60));
}

#[test]
fn state_must_be_a_directory_or_an_s3_uri() {
    for (value, ok) in [
        ("/var/lib/keywarden", true),
        ("relative/dir", true),
        ("s3://my-bucket/keywarden", true),
        ("s3://my-bucket", true),
        ("s3://My_Bucket/x", false),
        ("s3://", false),
        ("https://example.com/x", false),
    ] {
        let mut raw = RawSettings::defaults();
        raw.set_flag("state", value, "--state");
        match raw.validate() {
            Ok(s) => assert!(ok, "{value} accepted: {:?}", s.state),
            Err(e) => assert!(!ok && e.to_string().contains("`state`"), "{value}: {e}"),
        }
    }
}

#[test]
fn securityhub_export_is_off_by_default_and_its_region_is_validated() {
    let s = RawSettings::defaults().validate().unwrap();
    assert!(!s.securityhub_export);
    assert_eq!(s.securityhub_region, None);
    for (export, region, ok) in [
        ("true", "eu-west-1", true),
        ("true", "us-gov-west-1", true),
        ("true", "EU-WEST-1", false),
        ("true", "eu-west", false),
        ("true", "west-1", false),
        ("false", "eu-west-1", false),
    ] {
        let mut raw = RawSettings::defaults();
        raw.set_flag("securityhub_export", export, "--test");
        raw.set_flag("securityhub_region", region, "--test");
        match raw.validate() {
            Ok(s) => {
                assert!(ok, "{export} {region} accepted");
                assert_eq!(s.securityhub_region.as_deref(), Some(region));
            }
            Err(e) => assert!(
                !ok && e.to_string().contains("`securityhub_region`"),
                "{export} {region}: {e}"
            ),
        }
    }
    let mut raw = RawSettings::defaults();
    raw.set_flag("securityhub_export", "maybe", "--test");
    assert!(raw
        .validate()
        .unwrap_err()
        .to_string()
        .contains("`securityhub_export`"));
}

/// Issue 22 item 9: the cap is per UTC day now; its old name still works,
/// alone.
#[test]
fn enforce_max_per_run_is_the_old_name_of_enforce_max_per_day() {
    assert_eq!(
        RawSettings::defaults()
            .validate()
            .unwrap()
            .enforce
            .max_per_day,
        25
    );
    let mut raw = RawSettings::defaults();
    raw.set_flag("enforce_max_per_run", "3", "--test");
    assert_eq!(raw.validate().unwrap().enforce.max_per_day, 3);
    let mut raw = RawSettings::defaults();
    raw.set_flag("enforce_max_per_day", "4", "--test");
    assert_eq!(raw.validate().unwrap().enforce.max_per_day, 4);
    raw.set_flag("enforce_max_per_run", "3", "--test");
    let e = raw.validate().unwrap_err().to_string();
    assert!(
        e.contains("enforce_max_per_run") && e.contains("enforce_max_per_day"),
        "{e}"
    );
}
