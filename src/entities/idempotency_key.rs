use sea_orm::entity::prelude::*;

/// The first result of a write made with an idempotency key.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "idempotency_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub key: String,
    /// Which write made it (`add_credits`, `subtract_credits`, …).
    pub operation: String,
    /// SHA-256 of the request's canonical form: a different request under the same key conflicts.
    pub request_hash: String,
    pub end_user_id: String,
    /// The ledger entry the write recorded; the replayed result is rebuilt from it.
    pub entry_id: Uuid,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
