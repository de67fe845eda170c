//! Schema migrations for Tally, applied at start-up by `tally serve` and `tally migrate`.
//! Each migration is a file of its own; never edit one that has shipped, add a new one.

pub use sea_orm_migration::prelude::*;

mod m20261124_000001_create_ledger;
mod m20261125_000002_live_balances;
mod m20261125_000003_stripe;
mod m20261125_000004_credits_model;
mod m20261201_000005_history_sums;
mod m20261202_000006_end_user_ids;
mod m20261203_000007_webhooks;
mod m20261204_000008_held_checks;
mod m20261205_000009_grant_index_without_remaining;
mod m20261206_000010_lean_ledger_appends;
mod m20261207_000011_batch_row_check;

pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261124_000001_create_ledger::Migration),
            Box::new(m20261125_000002_live_balances::Migration),
            Box::new(m20261125_000003_stripe::Migration),
            Box::new(m20261125_000004_credits_model::Migration),
            Box::new(m20261201_000005_history_sums::Migration),
            Box::new(m20261202_000006_end_user_ids::Migration),
            Box::new(m20261203_000007_webhooks::Migration),
            Box::new(m20261204_000008_held_checks::Migration),
            Box::new(m20261205_000009_grant_index_without_remaining::Migration),
            Box::new(m20261206_000010_lean_ledger_appends::Migration),
            Box::new(m20261207_000011_batch_row_check::Migration),
        ]
    }
}
