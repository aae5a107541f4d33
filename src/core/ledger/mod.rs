//! The ledger: what earlier runs saw and sent ([`book`]), and the pure
//! lifecycle rules over it ([`lifecycle`]).
//!
//! Pure: `now` and the cadence are arguments; loading and saving the ledger is
//! the store's job (`crate::state`).

pub mod book;
pub mod lifecycle;
#[cfg(test)]
mod tests;

pub use book::{
    exemption_key, fold_notice, median_days_to_fix, record_notice, Entry, ExemptionSeen, Ledger,
    LedgerError, Notice, RunTotals, Stage, KEEP_RESOLVED_DAYS, KEEP_RUNS, SCHEMA,
};
pub use lifecycle::{
    account_owner_due, escalates, is_overdue, owner_due, reconcile, Cadence, Changes,
};
