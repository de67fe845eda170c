//! The rest of the credits model: holds (with the grants they earmark), recurring cycles, and
//! the columns grants and entries need for them.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // SQLite alters one column per statement.
        manager
            .alter_table(
                Table::alter()
                    .table(Grants::Table)
                    .add_column(
                        ColumnDef::new(Grants::Held)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Grants::Table)
                    .add_column(ColumnDef::new(Grants::CycleId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(ColumnDef::new(LedgerEntries::HoldId).uuid().null())
                    .to_owned(),
            )
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(LedgerEntries::Table)
                    .add_column(ColumnDef::new(LedgerEntries::ReversedEntryId).uuid().null())
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Holds::Table)
                    .col(ColumnDef::new(Holds::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Holds::EndUserId).uuid().not_null())
                    .col(ColumnDef::new(Holds::Amount).big_integer().not_null())
                    .col(
                        ColumnDef::new(Holds::CapturedAmount)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Holds::Status).string().not_null())
                    .col(ColumnDef::new(Holds::Description).text().null())
                    .col(
                        ColumnDef::new(Holds::ExpiresAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Holds::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Holds::ClosedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .check(Expr::col(Holds::Amount).gt(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_holds_status_expires_at")
                    .table(Holds::Table)
                    .col(Holds::Status)
                    .col(Holds::ExpiresAt)
                    .to_owned(),
            )
            .await?;
        manager
            .create_table(
                Table::create()
                    .table(HoldAllocations::Table)
                    .col(ColumnDef::new(HoldAllocations::HoldId).uuid().not_null())
                    .col(ColumnDef::new(HoldAllocations::GrantId).uuid().not_null())
                    .col(
                        ColumnDef::new(HoldAllocations::Amount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(HoldAllocations::Position)
                            .integer()
                            .not_null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(HoldAllocations::HoldId)
                            .col(HoldAllocations::GrantId),
                    )
                    .check(Expr::col(HoldAllocations::Amount).gt(0))
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Cycles::Table)
                    .col(ColumnDef::new(Cycles::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Cycles::EndUserId).uuid().not_null())
                    .col(ColumnDef::new(Cycles::Amount).big_integer().not_null())
                    .col(ColumnDef::new(Cycles::ValidityDays).integer().not_null())
                    .col(
                        ColumnDef::new(Cycles::RolloverMax)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(Cycles::Status).string().not_null())
                    .col(
                        ColumnDef::new(Cycles::CurrentPeriodStart)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Cycles::CurrentPeriodEnd)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Cycles::CurrentGrantId).uuid().not_null())
                    .col(
                        ColumnDef::new(Cycles::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Cycles::CanceledAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cycles_status_period_end")
                    .table(Cycles::Table)
                    .col(Cycles::Status)
                    .col(Cycles::CurrentPeriodEnd)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_cycles_end_user")
                    .table(Cycles::Table)
                    .col(Cycles::EndUserId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            Cycles::Table.into_iden(),
            HoldAllocations::Table.into_iden(),
            Holds::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    Held,
    CycleId,
}

#[derive(DeriveIden)]
enum LedgerEntries {
    Table,
    HoldId,
    ReversedEntryId,
}

#[derive(DeriveIden)]
enum Holds {
    Table,
    Id,
    EndUserId,
    Amount,
    CapturedAmount,
    Status,
    Description,
    ExpiresAt,
    CreatedAt,
    ClosedAt,
}

#[derive(DeriveIden)]
enum HoldAllocations {
    Table,
    HoldId,
    GrantId,
    Amount,
    Position,
}

#[derive(DeriveIden)]
enum Cycles {
    Table,
    Id,
    EndUserId,
    Amount,
    ValidityDays,
    RolloverMax,
    Status,
    CurrentPeriodStart,
    CurrentPeriodEnd,
    CurrentGrantId,
    CreatedAt,
    CanceledAt,
}
