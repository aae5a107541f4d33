//! CloudTrail's event history: where a flagged key was used (issue 21).
//! `LookupEvents` by `AccessKeyId`, in one account and region, newest first,
//! a bounded number of pages. Only the fields [`crate::core::usage::Event`]
//! names are read from each event; request and response parameters are
//! never parsed into anything.
//!
//! LookupEvents is limited to 2 requests per second per account and region:
//! each (account, region) gets its own [`Gate`] starting at that pace (one
//! attempt per call, paced by additive increase and multiplicative
//! decrease, retried on throttling at most [`LOOKUP_ATTEMPTS`] times).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use aws_config::SdkConfig;
use aws_credential_types::Credentials;
use aws_sdk_cloudtrail::types::{LookupAttribute, LookupAttributeKey};
use jiff::Timestamp;

use super::gate::Gate;
use super::{classify, AwsError};
use crate::core::usage::Event;

/// LookupEvents' quota: requests per second per account and region.
pub const LOOKUP_EVENTS_PER_SECOND: f64 = 2.0;

/// Attempts per LookupEvents call: a throttled account's footprint is
/// reported `unknown` after these, not waited for past the account's budget.
pub const LOOKUP_ATTEMPTS: u32 = 4;

/// Where global services (IAM, the STS global endpoint) log their events.
pub const GLOBAL_REGION: &str = "us-east-1";

/// Events per page (LookupEvents' maximum).
pub const PAGE: i32 = 50;

/// The events of one key, and whether the page limit cut them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Events {
    pub events: Vec<Event>,
    pub complete: bool,
}

/// One region's client and its LookupEvents pace.
type Regional = (aws_sdk_cloudtrail::Client, Arc<Gate>);

/// CloudTrail clients of one account, one per region, each with its gate.
#[derive(Debug, Clone)]
pub struct Trail {
    sdk_config: SdkConfig,
    credentials: Option<Credentials>,
    regions: Arc<Mutex<BTreeMap<String, Regional>>>,
}

impl Trail {
    /// An account's trail through `credentials` (the scan role's), or the
    /// caller's own with `None`.
    pub fn new(sdk_config: &SdkConfig, credentials: Option<Credentials>) -> Self {
        Self {
            sdk_config: sdk_config.clone(),
            credentials,
            regions: Arc::default(),
        }
    }

    fn region(&self, region: &str) -> Regional {
        let mut regions = self.regions.lock().unwrap_or_else(|p| p.into_inner());
        regions
            .entry(region.to_owned())
            .or_insert_with(|| {
                let mut conf = aws_sdk_cloudtrail::config::Builder::from(&self.sdk_config)
                    .region(aws_sdk_cloudtrail::config::Region::new(region.to_owned()))
                    // One attempt: the gate retries and paces.
                    .retry_config(aws_config::retry::RetryConfig::standard().with_max_attempts(1));
                if let Some(c) = &self.credentials {
                    conf = conf.credentials_provider(c.clone());
                }
                (
                    aws_sdk_cloudtrail::Client::from_conf(conf.build()),
                    Arc::new(Gate::with_pace(
                        1,
                        LOOKUP_EVENTS_PER_SECOND,
                        LOOKUP_ATTEMPTS,
                    )),
                )
            })
            .clone()
    }

    /// Whether this account's credentials may call LookupEvents in
    /// `region`: one call for one event (doctor), through the region's gate.
    pub async fn probe(&self, region: &str) -> Result<(), AwsError> {
        let op = "cloudtrail:LookupEvents";
        let (client, gate) = self.region(region);
        gate.call(|| {
            let request = client.lookup_events().max_results(1);
            async move { request.send().await.map_err(|e| classify(op, e)) }
        })
        .await
        .map(|_| ())
    }

    /// The management events of `key` in `region` between `start` and
    /// `end`, at most `max_pages` pages of [`PAGE`].
    pub async fn key_events(
        &self,
        region: &str,
        key: &str,
        start: Timestamp,
        end: Timestamp,
        max_pages: u32,
    ) -> Result<Events, AwsError> {
        let op = "cloudtrail:LookupEvents";
        let (client, gate) = self.region(region);
        let attribute = LookupAttribute::builder()
            .attribute_key(LookupAttributeKey::AccessKeyId)
            .attribute_value(key)
            .build()
            .map_err(|e| AwsError::new(op, "InvalidRequest", e.to_string()))?;
        let time = |t: Timestamp| aws_smithy_types::DateTime::from_secs(t.as_second());
        let mut events = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..max_pages.max(1) {
            let page = gate
                .call(|| {
                    let request = client
                        .lookup_events()
                        .lookup_attributes(attribute.clone())
                        .start_time(time(start))
                        .end_time(time(end))
                        .max_results(PAGE)
                        .set_next_token(token.clone());
                    async move { request.send().await.map_err(|e| classify(op, e)) }
                })
                .await?;
            for e in page.events() {
                let Some(json) = e.cloud_trail_event() else {
                    continue;
                };
                // An event that cannot be read is skipped, not the key.
                match Event::parse(json) {
                    Ok(ev) => events.push(ev),
                    Err(why) => tracing::warn!(key, why = %why, "skipping a CloudTrail event"),
                }
            }
            token = page.next_token().map(str::to_owned);
            if token.is_none() {
                return Ok(Events {
                    events,
                    complete: true,
                });
            }
        }
        Ok(Events {
            events,
            complete: false,
        })
    }
}
