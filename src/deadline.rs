//! The Lambda invocation's deadline, as every service sees it: no account is
//! started and no outbound call waits past `at` minus `reserve`, the time kept
//! for delivery and saving; and an account's own time budget, which does not
//! count its waits for a working slot. A leaf: the scan, delivery, the
//! workflow and the IAM client share it, so it depends on nothing of theirs.

use std::future::Future;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::{Semaphore, SemaphorePermit};
use tokio::time::Instant;

/// When the invocation ends, and how much of it is kept back.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    pub reserve: Duration,
}

impl Deadline {
    /// How long an account started now may take; `None` when starting one
    /// would eat into the reserve.
    pub fn budget(&self, account_timeout: Duration) -> Option<Duration> {
        let left = self.at.checked_duration_since(Instant::now())?;
        let usable = left.checked_sub(self.reserve)?;
        (usable >= Duration::from_secs(1)).then(|| usable.min(account_timeout))
    }

    /// The last moment anything may still work: the deadline less the reserve.
    pub fn usable_until(&self) -> Instant {
        self.at
            .checked_sub(self.reserve)
            .unwrap_or_else(Instant::now)
    }
}

/// An account's time budget, counted while the account works: the time it
/// waits for a working slot (`slot`) is given back, so an account started
/// early and queued behind others is not timed out for their work. Never
/// past `cap` (the invocation's usable time, the scan session's lifetime),
/// whatever the waits.
#[derive(Debug)]
pub struct Budget {
    started: Instant,
    budget: Duration,
    cap: Instant,
    waits: Mutex<Waits>,
}

#[derive(Debug, Default)]
struct Waits {
    /// Waits that ended, side-by-side waits counted once.
    waited: Duration,
    /// Waits going on, and since when one has been.
    open: usize,
    since: Option<Instant>,
}

impl Budget {
    /// A budget of `budget` from now, ending no later than `cap`.
    pub fn new(budget: Duration, cap: Instant) -> Self {
        Self {
            started: Instant::now(),
            budget,
            cap,
            waits: Mutex::new(Waits::default()),
        }
    }

    /// The work time it grants.
    pub fn budget(&self) -> Duration {
        self.budget
    }

    /// How long the account has waited for working slots, the wait going on
    /// counted to now.
    pub fn waited(&self) -> Duration {
        let w = self.waits.lock().expect("not poisoned");
        w.waited + w.since.map_or(Duration::ZERO, |s| s.elapsed())
    }

    /// When the budget runs out, as of now.
    pub fn end(&self) -> Instant {
        (self.started + self.budget + self.waited()).min(self.cap)
    }

    /// A permit from `slots`; the wait for it is not counted.
    pub async fn slot<'s>(&self, slots: &'s Semaphore) -> SemaphorePermit<'s> {
        let _paused = Paused::new(self);
        slots.acquire().await.expect("never closed")
    }

    /// `work` within the budget; `None` when the budget ran out first.
    pub async fn run<F: Future>(&self, work: F) -> Option<F::Output> {
        tokio::pin!(work);
        loop {
            let end = self.end();
            tokio::select! {
                out = &mut work => return Some(out),
                () = tokio::time::sleep_until(end) => {
                    // A wait for a slot moved the end on meanwhile: go on.
                    if self.end() <= end {
                        return None;
                    }
                }
            }
        }
    }
}

/// A wait for a slot going on; it ends when dropped (also when the waiting
/// future is cancelled).
struct Paused<'b>(&'b Budget);

impl<'b> Paused<'b> {
    fn new(budget: &'b Budget) -> Self {
        let mut w = budget.waits.lock().expect("not poisoned");
        if w.open == 0 {
            w.since = Some(Instant::now());
        }
        w.open += 1;
        drop(w);
        Self(budget)
    }
}

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        let mut w = self.0.waits.lock().expect("not poisoned");
        w.open -= 1;
        if w.open == 0 {
            if let Some(since) = w.since.take() {
                w.waited += since.elapsed();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    //! In real time (the crate's tokio has no paused clock), with margins of
    //! hundreds of milliseconds either way.
    use super::*;
    use std::sync::Arc;

    const BUDGET: Duration = Duration::from_millis(400);

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    /// Holds the only slot for `held`.
    fn busy(held: Duration) -> Arc<Semaphore> {
        let slots = Arc::new(Semaphore::new(1));
        let permit = slots.clone().try_acquire_owned().expect("free");
        tokio::spawn(async move {
            tokio::time::sleep(held).await;
            drop(permit);
        });
        slots
    }

    #[tokio::test]
    async fn waiting_for_a_slot_is_not_counted() {
        let slots = busy(ms(1200));
        let budget = Budget::new(BUDGET, far());
        let done = budget
            .run(async {
                let _slot = budget.slot(&slots).await;
                tokio::time::sleep(ms(100)).await;
                "scanned"
            })
            .await;
        assert_eq!(done, Some("scanned"));
        assert!(budget.waited() >= ms(1200), "{:?}", budget.waited());
    }

    #[tokio::test]
    async fn a_slot_taken_without_the_budget_counts() {
        // What the scan did before: the plain wait ate the budget.
        let slots = busy(ms(1200));
        let budget = Budget::new(BUDGET, far());
        let done = budget
            .run(async {
                let _slot = slots.acquire().await.expect("open");
                tokio::time::sleep(ms(100)).await;
            })
            .await;
        assert_eq!(done, None);
    }

    #[tokio::test]
    async fn work_past_the_budget_runs_out_whatever_was_waited() {
        let slots = busy(ms(600));
        let budget = Budget::new(BUDGET, far());
        let done = budget
            .run(async {
                let _slot = budget.slot(&slots).await;
                tokio::time::sleep(ms(1500)).await;
            })
            .await;
        assert_eq!(done, None);
    }

    #[tokio::test]
    async fn the_cap_ends_the_budget_even_while_waiting() {
        let slots = busy(Duration::from_secs(30));
        let started = Instant::now();
        let budget = Budget::new(BUDGET, started + ms(800));
        let done = budget
            .run(async {
                let _slot = budget.slot(&slots).await;
            })
            .await;
        assert_eq!(done, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_cancelled_wait_is_counted_once_and_ends() {
        let slots = busy(Duration::from_secs(30));
        let budget = Budget::new(BUDGET, far());
        let (a, b) = (budget.slot(&slots), budget.slot(&slots));
        let both = async { futures::join!(a, b) };
        let started = Instant::now();
        assert!(tokio::time::timeout(ms(300), both).await.is_err());
        let waited = budget.waited();
        assert!(
            waited >= ms(300) && waited <= started.elapsed(),
            "{waited:?}"
        );
        tokio::time::sleep(ms(200)).await;
        assert_eq!(budget.waited(), waited, "no wait is open");
    }
}
