//! Pacing for one AWS budget the whole run shares (STS AssumeRole for the
//! caller, Organizations for the Organization): additive increase,
//! multiplicative decrease, so a run finds the budget instead of assuming it.
//!
//! At most `ceiling` calls are in flight, and they start at most at the pace.
//! The pace starts at [`INITIAL_RATE`] calls a second and, until the first
//! throttling answer, doubles every second (each answered call adds one: a
//! slow start, so a run never opens with a herd that empties the budget). A
//! throttling answer cuts the pace to 70 % of what was answered over the
//! last second (at most one cut a second: one burst of answers is one
//! signal) and the call is retried after a backoff. That pace is the budget
//! the throttle revealed: the run climbs back quickly to 90 % of it
//! ([`RECOVERY_PER_CALL`] per answered call), then every answered call adds
//! [`INCREASE_PER_CALL`] calls a second (about 5 % a second at any pace), so
//! it holds near the budget and probes slightly above it.
//! Throttling that goes on after a cut (a budget that throttled calls keep
//! empty) cuts again from the pace, 70 % a second: the answers of that
//! second are no measure of the budget (none come while it refills), and
//! cutting to them sent the pace to its floor, where climbing back at 5 % a
//! second took more than a minute.
//! Throttling that AWS counts against the budget (a retry storm can keep a
//! budget empty for good) is what this avoids.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio::time::Instant;

use super::AwsError;

/// The pace at the start, calls per second.
pub const INITIAL_RATE: f64 = 8.0;
/// Pace added per answered call after the first cut, in calls per second.
pub const INCREASE_PER_CALL: f64 = 0.05;
/// Pace added per answered call while below [`HOLD`] of the budget the
/// last throttle revealed.
pub const RECOVERY_PER_CALL: f64 = 0.25;
/// After a cut the pace climbs quickly back to this share of the budget
/// the throttle revealed.
pub const HOLD: f64 = 0.9;
/// Throttling within this long of the last cut is the same episode.
const EPISODE: Duration = Duration::from_secs(3);
/// The cut on throttling.
pub const DECREASE: f64 = 0.7;
/// The pace never goes below this (calls per second).
pub const MIN_RATE: f64 = 1.0;
/// Attempts per call (the first and the retries).
pub const ATTEMPTS: u32 = 12;

#[derive(Debug)]
struct Pace {
    /// Calls per second.
    rate: f64,
    /// Until the first throttling answer: doubling every second.
    slow_start: bool,
    /// When the last call started (or a throttling answer held the pace
    /// back): the next may start one interval at the current pace later.
    last_start: Option<Instant>,
    last_cut: Option<Instant>,
    /// Answered calls within the last second.
    answered: VecDeque<Instant>,
    /// The budget the last throttling revealed (calls per second).
    found: Option<f64>,
}

fn trim(q: &mut VecDeque<Instant>, now: Instant) {
    while q
        .front()
        .is_some_and(|t| now.duration_since(*t) > Duration::from_secs(1))
    {
        q.pop_front();
    }
}

/// One shared budget; see the module docs.
#[derive(Debug)]
pub struct Gate {
    slots: Semaphore,
    pace: Mutex<Pace>,
    /// Callers waiting for their start, first come first served.
    queue: tokio::sync::Mutex<()>,
    /// The first retry's backoff (doubling, at most 5 s).
    first_backoff: Duration,
    /// Attempts per call (the first and the retries).
    attempts: u32,
}

impl Gate {
    pub fn new(ceiling: usize) -> Self {
        Self {
            slots: Semaphore::new(ceiling.max(1)),
            queue: tokio::sync::Mutex::new(()),
            pace: Mutex::new(Pace {
                rate: INITIAL_RATE,
                slow_start: true,
                last_start: None,
                last_cut: None,
                answered: VecDeque::new(),
                found: None,
            }),
            first_backoff: Duration::from_millis(100),
            attempts: ATTEMPTS,
        }
    }

    /// A budget whose pace is known (CloudTrail's LookupEvents: 2 a second
    /// per account and region): it starts there, without the slow start,
    /// and a call is tried at most `attempts` times (what is not had then
    /// is reported, not waited for).
    pub fn with_pace(ceiling: usize, rate: f64, attempts: u32) -> Self {
        let gate = Self::new(ceiling);
        if let Ok(mut p) = gate.pace.lock() {
            p.rate = rate.max(MIN_RATE);
            p.slow_start = false;
        }
        Self {
            attempts: attempts.max(1),
            ..gate
        }
    }

    /// The current pace, calls per second.
    pub fn rate(&self) -> f64 {
        self.pace.lock().map(|p| p.rate).unwrap_or(INITIAL_RATE)
    }

    /// Waits for this call's turn and records its start. One caller waits
    /// at a time (in order), and its start is worked out from the pace as it
    /// is when its turn comes, not when it queued: callers that queued at
    /// the opening pace go as fast as the pace has risen since (reserving
    /// every queued start up front spread the first `ceiling` calls over
    /// `ceiling / INITIAL_RATE` seconds, 16 s for 128).
    async fn turn(&self) {
        let _first_in_line = self.queue.lock().await;
        loop {
            let wait = {
                let Ok(mut p) = self.pace.lock() else {
                    return;
                };
                let now = Instant::now();
                let due = p
                    .last_start
                    .map_or(now, |t| t + Duration::from_secs_f64(1.0 / p.rate));
                if due <= now {
                    p.last_start = Some(now);
                    return;
                }
                due - now
            };
            tokio::time::sleep(wait).await;
        }
    }

    fn throttled(&self) {
        self.throttled_at(Instant::now());
    }

    fn throttled_at(&self, now: Instant) {
        let Ok(mut p) = self.pace.lock() else {
            return;
        };
        if p.last_cut
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(1))
        {
            return;
        }
        trim(&mut p.answered, now);
        let answered = p.answered.len() as f64;
        let goes_on = p.last_cut.is_some_and(|t| now.duration_since(t) < EPISODE);
        // A new episode: what was answered is the budget (the pace may have
        // run far above it while it was not the limit). Throttling that goes
        // on: the pace itself was too much.
        let found = if goes_on {
            p.rate
        } else {
            p.rate.min(answered)
        };
        p.found = Some(found.max(MIN_RATE));
        p.rate = (found * DECREASE).max(MIN_RATE);
        tracing::debug!(
            answered,
            goes_on,
            found,
            rate = p.rate,
            "throttled: pace cut"
        );
        p.slow_start = false;
        p.last_cut = Some(now);
        // The next call waits for the new pace.
        p.last_start = Some(now);
    }

    fn answered(&self) {
        if let Ok(mut p) = self.pace.lock() {
            let now = Instant::now();
            trim(&mut p.answered, now);
            p.answered.push_back(now);
            p.rate += if p.slow_start {
                1.0
            } else if p.found.is_some_and(|f| p.rate < f * HOLD) {
                RECOVERY_PER_CALL
            } else {
                INCREASE_PER_CALL
            };
        }
    }

    /// Runs `op` (one attempt, no SDK retries) within the budget: retried
    /// with backoff on throttling and service errors, up to [`ATTEMPTS`]
    /// (or the gate's own number, [`Gate::with_pace`]).
    pub async fn call<T, F, Fut>(&self, op: F) -> Result<T, AwsError>
    where
        F: Fn() -> Fut,
        Fut: std::future::Future<Output = Result<T, AwsError>>,
    {
        let mut backoff = self.first_backoff;
        let mut attempt = 1;
        loop {
            let result = {
                let _slot = self.slots.acquire().await;
                self.turn().await;
                op().await
            };
            match result {
                Err(e) if e.is_retryable() && attempt < self.attempts => {
                    if e.is_throttling() {
                        self.throttled();
                    }
                    // Jitter from the clock's nanoseconds: no shared RNG needed.
                    let nanos = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map(|d| d.subsec_nanos())
                        .unwrap_or(0);
                    let jitter = f64::from(nanos % 1000) / 1000.0;
                    tokio::time::sleep(backoff.mul_f64(0.5 + jitter / 2.0)).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    attempt += 1;
                }
                other => {
                    if other.is_ok() {
                        self.answered();
                    }
                    return other;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// Retries after a millisecond: the tests run on the real clock.
    fn quick(ceiling: usize) -> Gate {
        let mut g = Gate::new(ceiling);
        g.first_backoff = Duration::from_micros(100);
        g
    }

    fn throttle() -> AwsError {
        AwsError::new("sts:AssumeRole", "Throttling", "Rate exceeded")
    }

    #[tokio::test]
    async fn slow_start_doubles_then_a_throttle_cuts_to_what_was_answered_and_it_climbs_back() {
        let gate = quick(8);
        for _ in 0..10 {
            gate.call(|| async { Ok::<_, AwsError>(()) }).await.unwrap();
        }
        assert_eq!(
            gate.rate(),
            INITIAL_RATE + 10.0,
            "slow start: one more per answer"
        );
        let n = AtomicU32::new(0);
        gate.call(|| async {
            if n.fetch_add(1, Ordering::SeqCst) == 0 {
                Err(throttle())
            } else {
                Ok(())
            }
        })
        .await
        .unwrap();
        // 10 answered in the last second (the calls take ~100 ms at 8-18/s):
        // the budget found is 10, cut to 70 %, then one answered call.
        let cut = gate.rate();
        assert!(
            (cut - (10.0 * DECREASE + RECOVERY_PER_CALL)).abs() < 1e-9,
            "{cut}"
        );
        for _ in 0..20 {
            gate.call(|| async { Ok::<_, AwsError>(()) }).await.unwrap();
        }
        // Quickly back to 90 % of the budget found, then slowly above it.
        let mut expected = cut;
        for _ in 0..20 {
            expected += if expected < 10.0 * HOLD {
                RECOVERY_PER_CALL
            } else {
                INCREASE_PER_CALL
            };
        }
        assert!((gate.rate() - expected).abs() < 1e-9, "{}", gate.rate());
        assert!(expected > 10.0 * HOLD && expected < 10.0, "{expected}");
    }

    #[test]
    fn throttling_that_goes_on_cuts_from_the_pace_not_to_the_floor() {
        let gate = quick(8);
        let start = Instant::now();
        {
            let mut p = gate.pace.lock().unwrap();
            p.rate = 150.0;
            p.slow_start = false;
            p.answered.extend(std::iter::repeat_n(start, 100));
        }
        gate.throttled_at(start);
        assert!(
            (gate.rate() - 100.0 * DECREASE).abs() < 1e-9,
            "{}",
            gate.rate()
        );
        // A second later nothing was answered (every call throttled while
        // the budget refills): the pace is cut again, by 70 %, not to what
        // was answered (nothing, the floor).
        gate.throttled_at(start + Duration::from_millis(1100));
        let twice = 100.0 * DECREASE * DECREASE;
        assert!((gate.rate() - twice).abs() < 1e-9, "{}", gate.rate());
        assert_eq!(gate.pace.lock().unwrap().found, Some(100.0 * DECREASE));
        // Long after, a new episode measures the budget again.
        let later = start + Duration::from_secs(10);
        gate.pace
            .lock()
            .unwrap()
            .answered
            .extend(std::iter::repeat_n(later, 40));
        gate.throttled_at(later);
        assert!(
            (gate.rate() - 40.0 * DECREASE).abs() < 1e-9,
            "{}",
            gate.rate()
        );
    }

    #[tokio::test]
    async fn a_paced_gate_spaces_its_calls() {
        let gate = quick(8);
        gate.pace.lock().unwrap().rate = 40.0;
        let started = Instant::now();
        for _ in 0..5 {
            gate.call(|| async { Ok::<_, AwsError>(()) }).await.unwrap();
        }
        // Five starts at 40/s (the pace rising by one with each, slow start):
        // four gaps of at least 1/44 s.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(90), "{took:?}");
    }

    #[tokio::test]
    async fn callers_queued_at_the_opening_pace_go_as_fast_as_the_pace_rises() {
        // 200 callers at once, opening at 40/s, one more per answer: as
        // the pace rises they take about ln(240/40) = 1.8 s; starts reserved
        // when they queued would take 200 / 40 = 5 s.
        let gate = std::sync::Arc::new(quick(256));
        gate.pace.lock().unwrap().rate = 40.0;
        let started = Instant::now();
        let calls: Vec<_> = (0..200)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move {
                    gate.call(|| async { Ok::<_, AwsError>(()) }).await.unwrap();
                })
            })
            .collect();
        for c in calls {
            c.await.unwrap();
        }
        let took = started.elapsed();
        assert!(took < Duration::from_millis(3500), "{took:?}");
        assert!(took >= Duration::from_millis(1500), "still paced: {took:?}");
    }

    #[tokio::test]
    async fn one_burst_of_throttling_is_one_cut_and_the_floor_holds() {
        let gate = quick(8);
        gate.pace.lock().unwrap().rate = 2.0;
        gate.throttled();
        gate.throttled();
        gate.throttled();
        assert_eq!(
            gate.rate(),
            MIN_RATE,
            "nothing answered: cut once, to the floor"
        );
    }

    #[tokio::test]
    async fn gives_up_after_the_attempts_and_returns_other_errors_at_once() {
        let gate = quick(1);
        let n = AtomicU32::new(0);
        let err = gate
            .call(|| async {
                n.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(throttle())
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, "Throttling");
        assert_eq!(n.load(Ordering::SeqCst), ATTEMPTS);
        let m = AtomicU32::new(0);
        let err = gate
            .call(|| async {
                m.fetch_add(1, Ordering::SeqCst);
                Err::<(), _>(AwsError::new("sts:AssumeRole", "AccessDenied", "no"))
            })
            .await
            .unwrap_err();
        assert_eq!(err.code, "AccessDenied");
        assert_eq!(m.load(Ordering::SeqCst), 1);
    }
}
