use sea_orm::entity::prelude::*;

/// One Stripe event as received, with what Tally made of it. One row per event id.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "stripe_events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub event_type: String,
    pub livemode: bool,
    /// The id of the event's object (a Checkout Session, Charge or Refund).
    pub object_id: Option<String>,
    pub payment_intent_id: Option<String>,
    /// `applied`, `ignored`, `pending` or `failed`.
    pub outcome: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub reason: Option<String>,
    pub end_user_id: Option<String>,
    /// The ledger entry the event wrote (a grant or a claw-back).
    pub entry_id: Option<Uuid>,
    /// Deliveries processed (a failed event is processed again when Stripe retries).
    pub attempts: i32,
    pub received_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
