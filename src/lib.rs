//! # keywarden
//!
//! Finds stale, unused and dangerous IAM access keys across an AWS
//! Organization and tells the right people.
//!
//! ## Layout
//!
//! Imports point one way, top to bottom; no module imports one above it.
//!
//! - Entry points, side by side: [`cli`] (the `keywarden` command line) and
//!   [`lambda`] (the Runtime API). `main.rs` picks one.
//! - Application: [`app`] (the deployed function's parts, built once from
//!   settings), [`workflow`] (one run split into Step Functions steps) and
//!   [`run`] (one whole run: ledger, scan, enforcement, exports, mail; the
//!   run summary).
//! - Services: [`notify`] plans and renders each run's messages and
//!   [`deliver`] sends them (SES v2, outbox, dry run, chat webhook, Security
//!   Hub), one transport a file; [`scan`] lists accounts and fans out over
//!   them with a bound and a per-account timeout; [`enforce`] acts on keys
//!   (opt-in); [`doctor`] checks a deployment read-only; [`state`] keeps the ledger and the report archive (a
//!   directory or S3); [`output`] renders reports (table, JSON, CSV, OCSF).
//! - Below the services: [`config`] (defaults + TOML + environment + flags →
//!   validated [`config::Settings`]), [`deadline`] (the invocation deadline
//!   every service honours), [`logging`].
//! - [`aws`]: one adapter per AWS service; classifies SDK errors into
//!   [`aws::AwsError`] and returns core types.
//! - [`core`]: pure types and rules, no I/O and no clock, in one order:
//!   model → checks → record → report → ledger → enforcement → plans and
//!   views (the messages, the chat summary, ASFF, OCSF).

pub mod app;
pub mod aws;
pub mod cli;
pub mod config;
pub mod core;
pub mod deadline;
pub mod deliver;
pub mod doctor;
pub mod enforce;
pub mod lambda;
pub mod logging;
pub mod notify;
pub mod output;
pub mod run;
pub mod scan;
pub mod state;
pub mod workflow;
