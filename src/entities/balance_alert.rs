use sea_orm::entity::prelude::*;

/// One end user's low-balance thresholds and which alerts have fired since the last recovery.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "balance_alerts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub end_user_id: String,
    /// A JSON array of thresholds; `None`: the default thresholds apply.
    #[sea_orm(column_type = "Json", nullable)]
    pub thresholds: Option<Json>,
    /// A JSON array of the thresholds whose `balance.low` fired and has not been re-armed.
    #[sea_orm(column_type = "Json")]
    pub fired: Json,
    /// Whether `balance.depleted` fired and has not been re-armed.
    pub depleted: bool,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
