//! The ledger's tables: secret API keys, accounts (one row per end user, the lock every write
//! takes), grants, append-only ledger entries with their per-grant allocations, and
//! idempotency records.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(ApiKeys::Table)
                    .col(ColumnDef::new(ApiKeys::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(ApiKeys::Name).string().not_null())
                    .col(ColumnDef::new(ApiKeys::Prefix).string().not_null())
                    .col(
                        ColumnDef::new(ApiKeys::KeyHash)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(ApiKeys::RevokedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Accounts::Table)
                    .col(
                        ColumnDef::new(Accounts::EndUserId)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(Accounts::LastSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Accounts::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Accounts::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Grants::Table)
                    .col(ColumnDef::new(Grants::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Grants::EndUserId).uuid().not_null())
                    .col(ColumnDef::new(Grants::Amount).big_integer().not_null())
                    .col(ColumnDef::new(Grants::Remaining).big_integer().not_null())
                    .col(ColumnDef::new(Grants::Source).string().not_null())
                    .col(
                        ColumnDef::new(Grants::EffectiveAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Grants::ExpiresAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(ColumnDef::new(Grants::Priority).integer().null())
                    .col(ColumnDef::new(Grants::Description).text().null())
                    .col(ColumnDef::new(Grants::Metadata).json().null())
                    .col(
                        ColumnDef::new(Grants::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Grants::VoidedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Grants::Table, Grants::EndUserId)
                            .to(Accounts::Table, Accounts::EndUserId),
                    )
                    .check(Expr::col(Grants::Amount).gt(0))
                    .check(Expr::col(Grants::Remaining).gte(0))
                    .check(Expr::col(Grants::Remaining).lte(Expr::col(Grants::Amount)))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_grants_end_user_remaining")
                    .table(Grants::Table)
                    .col(Grants::EndUserId)
                    .col(Grants::Remaining)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerEntries::Table)
                    .col(
                        ColumnDef::new(LedgerEntries::Id)
                            .uuid()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(LedgerEntries::EndUserId).uuid().not_null())
                    .col(ColumnDef::new(LedgerEntries::Seq).big_integer().not_null())
                    .col(ColumnDef::new(LedgerEntries::Kind).string().not_null())
                    .col(
                        ColumnDef::new(LedgerEntries::Amount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LedgerEntries::BalanceAfter)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(LedgerEntries::GrantId).uuid().null())
                    .col(ColumnDef::new(LedgerEntries::Description).text().null())
                    .col(ColumnDef::new(LedgerEntries::Metadata).json().null())
                    .col(
                        ColumnDef::new(LedgerEntries::IdempotencyKey)
                            .string()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(LedgerEntries::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LedgerEntries::Table, LedgerEntries::EndUserId)
                            .to(Accounts::Table, Accounts::EndUserId),
                    )
                    .check(Expr::col(LedgerEntries::Amount).gte(0))
                    .check(Expr::col(LedgerEntries::BalanceAfter).gte(0))
                    .to_owned(),
            )
            .await?;
        // One sequence per end user: the order of their entries, and the Relay cursor.
        manager
            .create_index(
                Index::create()
                    .name("idx_ledger_entries_end_user_seq")
                    .table(LedgerEntries::Table)
                    .col(LedgerEntries::EndUserId)
                    .col(LedgerEntries::Seq)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(LedgerAllocations::Table)
                    .col(ColumnDef::new(LedgerAllocations::EntryId).uuid().not_null())
                    .col(ColumnDef::new(LedgerAllocations::GrantId).uuid().not_null())
                    .col(
                        ColumnDef::new(LedgerAllocations::Amount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(LedgerAllocations::Position)
                            .integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(LedgerAllocations::EntryId)
                            .col(LedgerAllocations::GrantId),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LedgerAllocations::Table, LedgerAllocations::EntryId)
                            .to(LedgerEntries::Table, LedgerEntries::Id),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(LedgerAllocations::Table, LedgerAllocations::GrantId)
                            .to(Grants::Table, Grants::Id),
                    )
                    // Negative when credits go back to a grant (a reversed debit).
                    .check(Expr::col(LedgerAllocations::Amount).ne(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_ledger_allocations_grant")
                    .table(LedgerAllocations::Table)
                    .col(LedgerAllocations::GrantId)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(IdempotencyKeys::Table)
                    .col(
                        ColumnDef::new(IdempotencyKeys::Key)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::Operation)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(IdempotencyKeys::RequestHash)
                            .string()
                            .not_null(),
                    )
                    .col(ColumnDef::new(IdempotencyKeys::EndUserId).uuid().not_null())
                    .col(ColumnDef::new(IdempotencyKeys::EntryId).uuid().not_null())
                    .col(
                        ColumnDef::new(IdempotencyKeys::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(IdempotencyKeys::Table, IdempotencyKeys::EntryId)
                            .to(LedgerEntries::Table, LedgerEntries::Id),
                    )
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            IdempotencyKeys::Table.into_iden(),
            LedgerAllocations::Table.into_iden(),
            LedgerEntries::Table.into_iden(),
            Grants::Table.into_iden(),
            Accounts::Table.into_iden(),
            ApiKeys::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    Prefix,
    KeyHash,
    CreatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum Accounts {
    Table,
    EndUserId,
    LastSeq,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    Id,
    EndUserId,
    Amount,
    Remaining,
    Source,
    EffectiveAt,
    ExpiresAt,
    Priority,
    Description,
    Metadata,
    CreatedAt,
    VoidedAt,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    Id,
    EndUserId,
    Seq,
    Kind,
    Amount,
    BalanceAfter,
    GrantId,
    Description,
    Metadata,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum LedgerAllocations {
    Table,
    EntryId,
    GrantId,
    Amount,
    /// Order in which the grants were drawn on (burn-down order), from 0.
    Position,
}

#[derive(DeriveIden)]
enum IdempotencyKeys {
    Table,
    Key,
    Operation,
    RequestHash,
    EndUserId,
    EntryId,
    CreatedAt,
}
