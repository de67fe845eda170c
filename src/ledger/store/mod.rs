//! The money-critical statements of the per-request write path and of reads, one file per thing
//! stored, all run on both databases by the tests. (The write pipeline's set-based statements
//! are in `pipeline/sql.rs`, the sums over a history in `aggregates.rs`.)
//!
//! Every per-request write runs inside one transaction that starts with
//! `lock_account_and_reserve_seq`. That upsert is a write, so it takes PostgreSQL's row lock on
//! the account and SQLite's database write lock before anything is read: writers to one end
//! user queue there, and each sees the committed result of the one before (README, "Rules the
//! ledger keeps": concurrency).

mod accounts;
mod cycles;
mod entries;
mod grants;
mod holds;
mod payments;

pub use accounts::*;
pub use cycles::*;
pub use entries::*;
pub use grants::*;
pub use holds::*;
pub use payments::*;
