//! What holds earmark on a grant stays within what it has left: 0 ≤ held ≤ remaining. The
//! ledger asserts it in memory before every write; the database now refuses a row that breaks
//! it, as it already refused `remaining` outside 0 ≤ remaining ≤ amount.
//!
//! PostgreSQL adds a CHECK constraint (validated: a database holding a row that breaks it fails
//! to migrate, which `tally verify` would also report). SQLite cannot add a constraint to an
//! existing table, so two triggers refuse such rows with the same message a CHECK gives.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CONSTRAINT: &str = "grants_held_within_remaining";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(&format!(
                    "ALTER TABLE grants ADD CONSTRAINT {CONSTRAINT} \
                     CHECK (held >= 0 AND held <= remaining)"
                ))
                .await?;
            }
            _ => {
                for (event, name) in [("INSERT", "insert"), ("UPDATE", "update")] {
                    db.execute_unprepared(&format!(
                        "CREATE TRIGGER {CONSTRAINT}_{name} BEFORE {event} ON grants \
                         WHEN NEW.held < 0 OR NEW.held > NEW.remaining \
                         BEGIN SELECT RAISE(ABORT, 'CHECK constraint failed: {CONSTRAINT}'); END"
                    ))
                    .await?;
                }
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        match db.get_database_backend() {
            DbBackend::Postgres => {
                db.execute_unprepared(&format!("ALTER TABLE grants DROP CONSTRAINT {CONSTRAINT}"))
                    .await?;
            }
            _ => {
                for name in ["insert", "update"] {
                    db.execute_unprepared(&format!("DROP TRIGGER {CONSTRAINT}_{name}"))
                        .await?;
                }
            }
        }
        Ok(())
    }
}
