use sea_orm::entity::prelude::*;

/// An end user's recurring grant (subscription credits).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "cycles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub end_user_id: String,
    pub amount: i64,
    pub validity_days: i32,
    pub rollover_max: i64,
    /// `active` (renews) or `canceled` (its current period runs out, no renewal).
    pub status: String,
    pub current_period_start: DateTimeUtc,
    pub current_period_end: DateTimeUtc,
    pub current_grant_id: Uuid,
    pub created_at: DateTimeUtc,
    pub canceled_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
