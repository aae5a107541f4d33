//! # keywarden
//!
//! Finds stale, unused and dangerous IAM access keys across an AWS
//! Organization and reports them.
//!
//! ## Layout
//!
//! - [`core`]: pure model, checks, exemptions, owners, credential-report
//!   parser and the report. No I/O, no clock.
//! - [`aws`]: one adapter per AWS service; classifies SDK errors into
//!   [`aws::AwsError`] and returns core types.
//! - [`config`]: defaults + TOML + environment + flags → validated [`config::Settings`].
//! - [`scan`]: orchestration: account listing, bounded fan-out, per-account
//!   timeout, outcomes collected into a [`core::report::Report`].
//! - [`notify`]: plans and renders each run's messages; [`deliver`]: the
//!   transports that send them (SES v2, outbox, dry run), one file each.
//! - [`output`]: table, JSON, CSV and OCSF rendering.
//! - [`run`]: one whole run (ledger, scan, enforcement, exports, mail);
//!   [`workflow`]: the same run split into Step Functions steps.
//! - [`cli`]: the `keywarden` command line; `main.rs` only calls it.

pub mod aws;
pub mod cli;
pub mod config;
pub mod core;
pub mod deliver;
pub mod enforce;
pub mod lambda;
pub mod logging;
pub mod notify;
pub mod output;
pub mod run;
pub mod scan;
pub mod state;
pub mod workflow;
