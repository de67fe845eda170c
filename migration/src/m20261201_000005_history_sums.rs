//! Indexes for the sums over an end user's history that the database computes (what expiries,
//! claw-backs and reversals took, holds open at a past instant), so their cost follows the
//! rows summed rather than the size of the whole table.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

const ENTRIES_BY_GRANT: &str = "idx_ledger_entries_grant_kind";
const ENTRIES_BY_REVERSED: &str = "idx_ledger_entries_reversed_entry";
const HOLDS_BY_END_USER: &str = "idx_holds_end_user_created";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name(ENTRIES_BY_GRANT)
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::GrantId)
                    .col(LedgerEntries::Kind)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(ENTRIES_BY_REVERSED)
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::ReversedEntryId)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(HOLDS_BY_END_USER)
                    .table(Holds::Table)
                    .col(Holds::EndUserId)
                    .col(Holds::CreatedAt)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (name, table) in [
            (HOLDS_BY_END_USER, Holds::Table.into_iden()),
            (ENTRIES_BY_REVERSED, LedgerEntries::Table.into_iden()),
            (ENTRIES_BY_GRANT, LedgerEntries::Table.into_iden()),
        ] {
            manager
                .drop_index(Index::drop().name(name).table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    GrantId,
    Kind,
    ReversedEntryId,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    EndUserId,
    CreatedAt,
}
