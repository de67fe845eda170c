use sea_orm::entity::prelude::*;

/// One attempt to send a delivery: what the endpoint answered, or why it did not.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub delivery_id: Uuid,
    /// 1 for the first attempt of the delivery.
    pub number: i32,
    pub attempted_at: DateTimeUtc,
    /// The HTTP status answered; `None` when there was no answer.
    pub status_code: Option<i32>,
    pub latency_ms: i64,
    #[sea_orm(column_type = "Text", nullable)]
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
