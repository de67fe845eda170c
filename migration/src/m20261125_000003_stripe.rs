//! Stripe purchases: the bundles catalog, purchase details on grants, every received Stripe
//! event, and the refunds seen per payment.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Bundles::Table)
                    .col(ColumnDef::new(Bundles::Id).uuid().not_null().primary_key())
                    .col(ColumnDef::new(Bundles::Name).string().not_null())
                    .col(ColumnDef::new(Bundles::Credits).big_integer().not_null())
                    .col(ColumnDef::new(Bundles::ValidityDays).integer().null())
                    .col(
                        ColumnDef::new(Bundles::PriceAmount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(Bundles::Currency).string().not_null())
                    .col(
                        ColumnDef::new(Bundles::StripePriceId)
                            .string()
                            .not_null()
                            .unique_key(),
                    )
                    .col(ColumnDef::new(Bundles::Active).boolean().not_null())
                    .col(
                        ColumnDef::new(Bundles::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Bundles::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(Bundles::Credits).gt(0))
                    .check(Expr::col(Bundles::PriceAmount).gte(0))
                    .to_owned(),
            )
            .await?;

        // What a purchase grant records of its payment. SQLite alters one column at a time.
        for column in [
            ColumnDef::new(Grants::Reference).string().null().to_owned(),
            ColumnDef::new(Grants::PaymentReference)
                .string()
                .null()
                .to_owned(),
            ColumnDef::new(Grants::PaidAmount)
                .big_integer()
                .null()
                .to_owned(),
            ColumnDef::new(Grants::PaidCurrency)
                .string()
                .null()
                .to_owned(),
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Grants::Table)
                        .add_column(column)
                        .to_owned(),
                )
                .await?;
        }
        // At most one grant per reference (a Checkout Session): the database itself refuses a
        // second grant for one purchase, whichever event tries.
        manager
            .create_index(
                Index::create()
                    .name("idx_grants_reference")
                    .table(Grants::Table)
                    .col(Grants::Reference)
                    .unique()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_grants_payment_reference")
                    .table(Grants::Table)
                    .col(Grants::PaymentReference)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(StripeEvents::Table)
                    .col(
                        ColumnDef::new(StripeEvents::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(StripeEvents::EventType).string().not_null())
                    .col(ColumnDef::new(StripeEvents::Livemode).boolean().not_null())
                    .col(ColumnDef::new(StripeEvents::ObjectId).string().null())
                    .col(
                        ColumnDef::new(StripeEvents::PaymentIntentId)
                            .string()
                            .null(),
                    )
                    .col(ColumnDef::new(StripeEvents::Outcome).string().not_null())
                    .col(ColumnDef::new(StripeEvents::Reason).text().null())
                    .col(ColumnDef::new(StripeEvents::EndUserId).uuid().null())
                    .col(ColumnDef::new(StripeEvents::EntryId).uuid().null())
                    .col(ColumnDef::new(StripeEvents::Attempts).integer().not_null())
                    .col(
                        ColumnDef::new(StripeEvents::ReceivedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StripeEvents::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_events_received")
                    .table(StripeEvents::Table)
                    .col(StripeEvents::ReceivedAt)
                    .col(StripeEvents::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_events_payment_intent")
                    .table(StripeEvents::Table)
                    .col(StripeEvents::PaymentIntentId)
                    .to_owned(),
            )
            .await?;

        // One row per PaymentIntent that refunds or a purchase touched: the lock that orders a
        // refund against the purchase it refunds, and the largest cumulative refunded amount a
        // `charge.refunded` event reported.
        manager
            .create_table(
                Table::create()
                    .table(StripePayments::Table)
                    .col(
                        ColumnDef::new(StripePayments::PaymentIntentId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StripePayments::ChargeRefunded)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(ColumnDef::new(StripePayments::Currency).string().null())
                    .col(
                        ColumnDef::new(StripePayments::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StripePayments::UpdatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .check(Expr::col(StripePayments::ChargeRefunded).gte(0))
                    .to_owned(),
            )
            .await?;

        // Every succeeded refund seen, once per refund id.
        manager
            .create_table(
                Table::create()
                    .table(StripeRefunds::Table)
                    .col(
                        ColumnDef::new(StripeRefunds::RefundId)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(
                        ColumnDef::new(StripeRefunds::PaymentIntentId)
                            .string()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(StripeRefunds::Amount)
                            .big_integer()
                            .not_null(),
                    )
                    .col(ColumnDef::new(StripeRefunds::Currency).string().not_null())
                    .col(ColumnDef::new(StripeRefunds::EventId).string().not_null())
                    .col(
                        ColumnDef::new(StripeRefunds::CreatedAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(StripeRefunds::Table, StripeRefunds::PaymentIntentId)
                            .to(StripePayments::Table, StripePayments::PaymentIntentId),
                    )
                    .check(Expr::col(StripeRefunds::Amount).gte(0))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_stripe_refunds_payment_intent")
                    .table(StripeRefunds::Table)
                    .col(StripeRefunds::PaymentIntentId)
                    .to_owned(),
            )
            .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            StripeRefunds::Table.into_iden(),
            StripePayments::Table.into_iden(),
            StripeEvents::Table.into_iden(),
            Bundles::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        for index in ["idx_grants_reference", "idx_grants_payment_reference"] {
            manager
                .drop_index(Index::drop().name(index).table(Grants::Table).to_owned())
                .await?;
        }
        for column in [
            Grants::Reference,
            Grants::PaymentReference,
            Grants::PaidAmount,
            Grants::PaidCurrency,
        ] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Grants::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Bundles {
    Table,
    Id,
    Name,
    Credits,
    ValidityDays,
    PriceAmount,
    Currency,
    StripePriceId,
    Active,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Grants {
    Table,
    /// What the grant is for, unique: a Stripe Checkout Session id for purchases.
    Reference,
    /// The payment behind it: a Stripe PaymentIntent id.
    PaymentReference,
    /// What was paid, in the currency's minor unit (cents).
    PaidAmount,
    PaidCurrency,
}

#[derive(DeriveIden)]
enum StripeEvents {
    Table,
    Id,
    EventType,
    Livemode,
    ObjectId,
    PaymentIntentId,
    /// applied, ignored, pending or failed.
    Outcome,
    Reason,
    EndUserId,
    EntryId,
    Attempts,
    ReceivedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripePayments {
    Table,
    PaymentIntentId,
    ChargeRefunded,
    Currency,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum StripeRefunds {
    Table,
    RefundId,
    PaymentIntentId,
    Amount,
    Currency,
    EventId,
    CreatedAt,
}
