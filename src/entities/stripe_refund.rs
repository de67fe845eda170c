use sea_orm::entity::prelude::*;

/// A succeeded Stripe refund, recorded once per refund id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_refunds")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub refund_id: String,
    pub payment_intent_id: String,
    /// Minor units.
    pub amount: i64,
    pub currency: String,
    /// The event that first reported it.
    pub event_id: String,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
