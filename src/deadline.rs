//! The Lambda invocation's deadline, as every service sees it: no account is
//! started and no outbound call waits past `at` minus `reserve`, the time kept
//! for delivery and saving. A leaf: the scan, delivery and the workflow share
//! it, so it depends on nothing of theirs.

use std::time::Duration;

/// When the invocation ends, and how much of it is kept back.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: tokio::time::Instant,
    pub reserve: Duration,
}

impl Deadline {
    /// How long an account started now may take; `None` when starting one
    /// would eat into the reserve.
    pub fn budget(&self, account_timeout: Duration) -> Option<Duration> {
        let left = self
            .at
            .checked_duration_since(tokio::time::Instant::now())?;
        let usable = left.checked_sub(self.reserve)?;
        (usable >= Duration::from_secs(1)).then(|| usable.min(account_timeout))
    }
}
