//! The ledger's clock. Both databases keep microseconds, so every instant the ledger writes is
//! cut to microseconds first: what a write returns equals what a later read returns.

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(6)
}

pub fn to_stored_precision(at: DateTime<Utc>) -> DateTime<Utc> {
    at.trunc_subsecs(6)
}
