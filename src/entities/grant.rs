use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
#[sea_orm(table_name = "grants")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub end_user_id: String,
    pub amount: i64,
    /// Invariant: `amount − Σ allocations to this grant`, between 0 and `amount`.
    pub remaining: i64,
    pub source: String,
    pub effective_at: DateTimeUtc,
    pub expires_at: Option<DateTimeUtc>,
    pub priority: Option<i32>,
    #[sea_orm(column_type = "Text", nullable)]
    pub description: Option<String>,
    #[sea_orm(column_type = "Json", nullable)]
    pub metadata: Option<Json>,
    pub created_at: DateTimeUtc,
    pub voided_at: Option<DateTimeUtc>,
    /// Earmarked by open holds: part of `remaining` that only those holds may take.
    pub held: i64,
    /// The recurring cycle that granted it, if any.
    pub cycle_id: Option<Uuid>,
    /// What the grant is for, unique (a Stripe Checkout Session id for purchases).
    #[sea_orm(unique)]
    pub reference: Option<String>,
    /// The payment behind a purchase (a Stripe PaymentIntent id).
    pub payment_reference: Option<String>,
    /// What was paid, in the currency's minor unit.
    pub paid_amount: Option<i64>,
    pub paid_currency: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
