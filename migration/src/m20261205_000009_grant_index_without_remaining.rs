//! The index that finds an end user's grants no longer holds `remaining`.
//!
//! Every debit lowers `remaining`, so with it in the index every debit also rewrote an index
//! entry: on SQLite one more page per debit to journal and checkpoint, on PostgreSQL a new entry
//! in every index of the table (an indexed column changed, so the update could not be HOT). An
//! end user has a handful of open grants, so finding them by end user alone and reading
//! `remaining` from the row costs nothing measurable.
//!
//! PostgreSQL also leaves a fifth of each new page of `grants` and `accounts` free (fillfactor),
//! so that the updated row usually fits beside the old one and the update stays HOT.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const OLD_INDEX: &str = "idx_grants_end_user_remaining";
const NEW_INDEX: &str = "idx_grants_end_user";
const FILLFACTOR_PERCENT: u32 = 80;

#[derive(DeriveIden)]
enum Grants {
    Table,
    EndUserId,
    Remaining,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(NEW_INDEX)
                    .table(Grants::Table)
                    .col(Grants::EndUserId)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(OLD_INDEX)
                    .table(Grants::Table)
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for table in ["grants", "accounts"] {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} SET (fillfactor = {FILLFACTOR_PERCENT})"
                ))
                .await?;
            }
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            for table in ["grants", "accounts"] {
                db.execute_unprepared(&format!("ALTER TABLE {table} RESET (fillfactor)"))
                    .await?;
            }
        }
        manager
            .create_index(
                Index::create()
                    .name(OLD_INDEX)
                    .table(Grants::Table)
                    .col(Grants::EndUserId)
                    .col(Grants::Remaining)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name(NEW_INDEX)
                    .table(Grants::Table)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }
}
