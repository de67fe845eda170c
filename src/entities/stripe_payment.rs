use sea_orm::entity::prelude::*;

/// A Stripe PaymentIntent that refunds or a purchase touched. Writers upsert it first: it is the
/// lock that orders a refund against the purchase it refunds.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_payments")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub payment_intent_id: String,
    /// The largest cumulative `amount_refunded` a `charge.refunded` event reported (minor units).
    pub charge_refunded: i64,
    pub currency: Option<String>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
