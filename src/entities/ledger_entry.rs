use sea_orm::entity::prelude::*;

/// An append-only record of one change. Never updated, never deleted.
#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "ledger_entries")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub end_user_id: String,
    /// Position in the end user's ledger, 1, 2, 3… without gaps.
    pub seq: i64,
    pub kind: String,
    /// Magnitude of the change (always positive); its direction follows from `kind`.
    pub amount: i64,
    pub balance_after: i64,
    /// The grant a `grant` entry created.
    pub grant_id: Option<Uuid>,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[sea_orm(column_type = "Json", nullable)]
    pub metadata: Option<Json>,
    pub idempotency_key: Option<String>,
    pub created_at: DateTimeUtc,
    /// The hold a HOLD / CAPTURE / RELEASE entry is about.
    pub hold_id: Option<Uuid>,
    /// The debit a REVERSAL gives back.
    pub reversed_entry_id: Option<Uuid>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
