//! The SES v2 transport: raw MIME through `SendEmail`, paced to the account's
//! maximum send rate (SES `GetAccount`, or `max_send_rate` when it cannot be
//! read), throttling retried with backoff.

use std::time::Duration;

use tracing::{info, warn};

use super::{Delivered, Message};
use crate::aws::ses::Ses;
use crate::config::{MAX_SEND_RATE, MIN_SEND_RATE};
use crate::core::report::DeliveryOutcome;

/// Spaces sends out to a rate.
#[derive(Debug)]
struct Pacer {
    interval: Duration,
    next: tokio::time::Instant,
}

impl Pacer {
    /// Paces to `rate` messages per second, clamped to what keywarden accepts
    /// (SES's answer is data from outside: 1e-30 or NaN must not panic).
    fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / clamp_rate(rate)),
            next: tokio::time::Instant::now(),
        }
    }
    async fn wait(&mut self) {
        tokio::time::sleep_until(self.next).await;
        self.next = tokio::time::Instant::now().max(self.next) + self.interval;
    }
}

/// A send rate within [`MIN_SEND_RATE`, `MAX_SEND_RATE`]; NaN is the minimum.
fn clamp_rate(rate: f64) -> f64 {
    if rate.is_nan() {
        MIN_SEND_RATE
    } else {
        rate.clamp(MIN_SEND_RATE, MAX_SEND_RATE)
    }
}

#[derive(Debug)]
pub struct SesTransport {
    ses: Ses,
    configuration_set: Option<String>,
    pacer: Pacer,
}

impl SesTransport {
    /// Paces to the account's send rate, or to its `senders`-th share when
    /// that many transports send at once.
    pub async fn open(
        ses: Ses,
        configuration_set: Option<String>,
        fallback_rate: f64,
        senders: u32,
    ) -> Self {
        let rate = send_rate(&ses, fallback_rate).await / f64::from(senders.max(1));
        Self {
            ses,
            configuration_set,
            pacer: Pacer::new(rate),
        }
    }

    pub fn interval(&self) -> Duration {
        // One slot for this message and one for the digest after it.
        self.pacer.interval * 2
    }

    pub async fn send(&mut self, message: &Message) -> Result<Delivered, String> {
        let raw = message.mime()?;
        let mut backoff = Duration::from_secs(1);
        let mut attempts = 0;
        loop {
            self.pacer.wait().await;
            attempts += 1;
            match self
                .ses
                .send_raw(
                    &message.from,
                    &message.to,
                    raw.clone(),
                    self.configuration_set.as_deref(),
                )
                .await
            {
                Err(e) if e.is_throttling() && attempts < 4 => {
                    warn!(error = %e, "SES throttled sending; backing off");
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                Ok(id) => {
                    return Ok(Delivered {
                        outcome: DeliveryOutcome::Sent,
                        message_id: Some(id),
                        file: None,
                    })
                }
                Err(e) => return Err(format!("{}: {}", e.code, e.message)),
            }
        }
    }
}

async fn send_rate(ses: &Ses, fallback_rate: f64) -> f64 {
    match ses.max_send_rate().await {
        Ok(Some(reported)) => {
            let rate = clamp_rate(reported);
            if rate != reported {
                warn!(
                    reported,
                    rate, "SES reported a send rate out of range; pacing at the nearest sane rate"
                );
            } else {
                info!(rate, "pacing at the SES account's maximum send rate");
            }
            rate
        }
        Ok(None) => {
            warn!(
                rate = fallback_rate,
                "SES reported no send quota; pacing at max_send_rate"
            );
            fallback_rate
        }
        Err(e) => {
            warn!(error = %e, rate = fallback_rate, "cannot read the SES send quota (GetAccount); pacing at max_send_rate");
            fallback_rate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn any_send_rate_from_ses_or_settings_becomes_a_usable_interval() {
        for rate in [1e-30, 0.0, -5.0, f64::NAN, f64::INFINITY, 1e300, 14.0] {
            let p = Pacer::new(rate);
            assert!(
                p.interval >= Duration::from_secs_f64(1.0 / MAX_SEND_RATE)
                    && p.interval <= Duration::from_secs_f64(1.0 / MIN_SEND_RATE),
                "{rate}: {:?}",
                p.interval
            );
        }
        assert_eq!(
            Pacer::new(14.0).interval,
            Duration::from_secs_f64(1.0 / 14.0)
        );
    }
}
