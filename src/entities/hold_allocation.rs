use sea_orm::entity::prelude::*;

/// How much of one grant an open hold earmarks.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "hold_allocations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub hold_id: Uuid,
    #[sea_orm(primary_key, auto_increment = false)]
    pub grant_id: Uuid,
    pub amount: i64,
    pub position: i32,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
