//! PostgreSQL: `tally_assert_rows`, with which a write batch's one statement checks itself.
//!
//! A PostgreSQL write lane sends a batch's writes and its commit together, without waiting
//! between them (pipelining), so the rows each part of the writes touched cannot be checked by
//! Tally before the commit goes. The statement hands its counts and the planned ones to this
//! function, which raises an error unless they are equal; the error aborts the transaction, and
//! PostgreSQL answers the commit sent after it by rolling back. A stale plan fails loudly
//! instead of writing less. SQLite's lane checks each statement's rows itself before it commits.

use sea_orm_migration::prelude::*;
use sea_orm_migration::sea_orm::{ConnectionTrait, DbBackend};

#[derive(DeriveMigrationName)]
pub struct Migration;

const CREATE: &str = "CREATE OR REPLACE FUNCTION tally_assert_rows(written bigint[], planned bigint[]) \
     RETURNS boolean LANGUAGE plpgsql AS $$ \
     BEGIN \
       IF written IS DISTINCT FROM planned THEN \
         RAISE EXCEPTION 'a write batch''s plan was stale: rows written % where % were planned', \
           written, planned USING ERRCODE = 'data_exception'; \
       END IF; \
       RETURN true; \
     END $$";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    fn use_transaction(&self) -> Option<bool> {
        Some(true)
    }

    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared(CREATE).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        if db.get_database_backend() == DbBackend::Postgres {
            db.execute_unprepared("DROP FUNCTION IF EXISTS tally_assert_rows(bigint[], bigint[])")
                .await?;
        }
        Ok(())
    }
}
