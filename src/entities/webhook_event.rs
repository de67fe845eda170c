use sea_orm::entity::prelude::*;

/// The outbox: one outbound event, written in the transaction of the change it reports.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_events")]
pub struct Model {
    /// Also the `webhook-id` every delivery of it carries.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub event_type: String,
    #[sea_orm(column_type = "Text", nullable)]
    pub end_user_id: Option<String>,
    /// The event's `data` object.
    #[sea_orm(column_type = "Json")]
    pub payload: Json,
    pub created_at: DateTimeUtc,
    /// Whether its deliveries (one per subscribed endpoint) were created.
    pub fanned_out: bool,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
