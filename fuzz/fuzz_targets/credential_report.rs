//! Fuzzes the IAM credential-report parser: any bytes must give users or a
//! clear error, never a panic, and never more than two keys per user.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(users) = keywarden::core::credential_report::parse(data) {
        for u in &users {
            assert!(u.keys.len() <= 2, "a report row has at most two keys");
            assert!(!u.user_name.is_empty());
        }
    }
});
