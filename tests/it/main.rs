//! The integration tests, one binary: it links the dependency tree once
//! (one binary per file linked it two dozen times). Each module is one area;
//! cargo-nextest still runs every test in its own process, side by side.
//! Tests against the emulator start their own moto server ([`support`]).

#[path = "../support/cycle.rs"]
mod cycle;
#[path = "../support/mail.rs"]
mod mail;
#[path = "../support/mod.rs"]
mod support;

mod aws_mocks;
mod chat;
mod doctor_moto;
mod enforce_moto;
mod enforce_properties;
mod faults_moto;
mod first_hour;
mod golden;
mod infra;
mod key_risk_moto;
mod lambda_moto;
mod least_privilege;
mod ledger_moto;
mod mail_layout;
mod notify_moto;
mod ocsf;
mod properties;
mod scan_moto;
mod secrets;
mod securityhub_moto;
mod state_moto;
mod tag_cache_moto;
mod terminal;
mod usage_moto;
mod workflow_moto;
