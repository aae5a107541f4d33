//! The pure heart of keywarden: model types, checks, exemptions, owner
//! resolution, the credential-report parser and the report.
//!
//! Nothing in here may touch tokio, the AWS SDK, the clock or the network:
//! `now` and the policy are always arguments, so every rule is testable with
//! a fixed instant.

pub mod asff;
pub mod checks;
pub mod credential_report;
pub mod doctor;
pub mod enforce;
pub mod evaluate;
pub mod exempt;
pub mod ledger;
pub mod mime;
pub mod model;
pub mod notify;
pub mod ocsf;
pub mod owners;
pub mod plan;
pub mod privilege;
pub mod record;
pub mod report;
pub mod risk;
pub mod summary;
pub mod tag_cache;
pub mod templates;
pub mod usage;
