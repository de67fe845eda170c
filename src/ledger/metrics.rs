//! What the ledger tells the metrics recorder (the `metrics` facade: without a recorder these
//! calls do nothing). Counted only once a transaction has committed, so a rolled-back write never
//! shows. Names and meanings are listed in README "Metrics".

use chrono::{DateTime, Utc};

use super::types::EntryKind;

/// Ledger entries and the credits they moved, by kind (`grant`, `debit`, `expiry`…).
pub fn entries_committed(entries: impl IntoIterator<Item = (EntryKind, i64)>) {
    for (kind, amount) in entries {
        let kind = kind_label(kind);
        metrics::counter!("tally_ledger_entries_total", "kind" => kind).increment(1);
        metrics::counter!("tally_ledger_credits_total", "kind" => kind)
            .increment(amount.unsigned_abs());
    }
}

/// A write batch (group commit) committed with `writes` writes in it.
pub fn batch_committed(writes: usize) {
    metrics::counter!("tally_write_batches_total").increment(1);
    metrics::histogram!("tally_write_batch_size").record(writes as f64);
}

/// An expiry was recorded at `recorded_at` for a grant that expired at `expired_at`: how late.
pub fn expiry_recorded(expired_at: DateTime<Utc>, recorded_at: DateTime<Utc>) {
    let lag = (recorded_at - expired_at)
        .num_microseconds()
        .unwrap_or(0)
        .max(0) as f64
        / 1e6;
    metrics::gauge!("tally_scheduler_lag_seconds").set(lag);
}

fn kind_label(kind: EntryKind) -> &'static str {
    match kind {
        EntryKind::Grant => "grant",
        EntryKind::Debit => "debit",
        EntryKind::Expiry => "expiry",
        EntryKind::Void => "void",
        EntryKind::Reversal => "reversal",
        EntryKind::Hold => "hold",
        EntryKind::Capture => "capture",
        EntryKind::Release => "release",
        EntryKind::Renewal => "renewal",
        EntryKind::Clawback => "clawback",
    }
}
