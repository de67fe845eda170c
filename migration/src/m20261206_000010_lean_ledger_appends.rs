//! Every debit appends an entry and its allocations; this makes each append cheaper for the
//! database without changing what it stores.
//!
//! 1. The two indexes on entry columns that almost every entry leaves empty (`grant_id`: only
//!    grants, renewals, expiries and claw-backs name one; `reversed_entry_id`: only reversals)
//!    hold only the entries that name one. The lookups they serve (`grant_id = $1`,
//!    `reversed_entry_id = $1`) never match an empty value, so both databases still use them; a
//!    debit no longer adds an entry to either.
//! 2. PostgreSQL: the foreign keys from entries to accounts and from allocations to entries and
//!    to grants are dropped. PostgreSQL checks each one with a query per inserted row, three per
//!    debit, about a fifth of what a debit costs the database (measured with the write
//!    pipeline's batches). What they guarded holds by construction: accounts, entries and
//!    grants are never deleted (the ledger is append-only), an entry is written only under its
//!    account's lock, which creates the account in the same transaction, and an allocation only
//!    in the statement that writes its entry, naming a grant the same transaction locked.
//!    `tally verify` reports an entry without an account and an allocation without its entry or
//!    grant. SQLite keeps them: its checks are index lookups inside the process, and dropping a
//!    constraint there means rebuilding the table.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

/// Index name, its columns, and the column an entry leaves empty when it is not in the index.
const SPARSE_INDEXES: [(&str, &str, &str); 2] = [
    (
        "idx_ledger_entries_grant_kind",
        "grant_id, kind",
        "grant_id",
    ),
    (
        "idx_ledger_entries_reversed_entry",
        "reversed_entry_id",
        "reversed_entry_id",
    ),
];

/// PostgreSQL's foreign keys that are dropped: table, constraint, column, referenced table and
/// column (as `down` restores them).
const APPEND_FOREIGN_KEYS: [(&str, &str, &str, &str, &str); 3] = [
    (
        "ledger_entries",
        "fk_ledger_entries_end_user",
        "end_user_id",
        "accounts",
        "end_user_id",
    ),
    (
        "ledger_allocations",
        "ledger_allocations_entry_id_fkey",
        "entry_id",
        "ledger_entries",
        "id",
    ),
    (
        "ledger_allocations",
        "ledger_allocations_grant_id_fkey",
        "grant_id",
        "grants",
        "id",
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for (name, columns, sparse_column) in SPARSE_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON ledger_entries ({columns}) \
                 WHERE {sparse_column} IS NOT NULL"
            ))
            .await?;
        }
        if db.get_database_backend() == DbBackend::Postgres {
            for (table, constraint, ..) in APPEND_FOREIGN_KEYS {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} DROP CONSTRAINT IF EXISTS {constraint}"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for (table, constraint, column, referenced, referenced_column) in APPEND_FOREIGN_KEYS {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} ADD CONSTRAINT {constraint} FOREIGN KEY ({column}) \
                     REFERENCES {referenced} ({referenced_column})"
                ))
                .await?;
            }
        }
        for (name, columns, _) in SPARSE_INDEXES {
            db.execute_unprepared(&format!("DROP INDEX {name}")).await?;
            db.execute_unprepared(&format!(
                "CREATE INDEX {name} ON ledger_entries ({columns})"
            ))
            .await?;
        }
        Ok(())
    }
}
