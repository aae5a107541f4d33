//! The view models the email templates render: one person's message (from
//! a [`PersonPlan`]) and the security digest, which gets everything else:
//! blind spots, unresolved owners, invalid addresses, exemptions, oldest
//! keys, the age histogram, delivery failures and, with a ledger, what
//! changed since the last run. Pure: `now` is the report's `evaluated_at`.
//!
//! One file per thing built: [`rows`] (a key's row and card, shared),
//! [`owner`] (one person's message), [`digest`] (the security digest) and
//! [`history`] (the digest's "since the last run").

pub mod digest;
pub mod history;
pub mod owner;
pub mod rows;

pub use super::plan::{plan_people, DueFinding, Memory, NotifyPolicy, PersonPlan};
pub use digest::{
    blind_spots, digest_view, AccountRow, ActionRow, Bar, BlindSpot, Count, DeliveryFailure,
    DeliveryMode, DigestExtras, DigestView, FindingsCsv, InvalidAddress,
};
pub use history::{history_view, AccountProgress, HistoryView, ResolvedRow, TrendRow};
pub use owner::{owner_view, subject_parts, AccountSection, OwnerView};
pub use rows::{key_action, key_row, EnforcedRow, ExemptRow, HowTo, KeyRow};
