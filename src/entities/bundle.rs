use sea_orm::entity::prelude::*;

/// Something the customer's users can buy: credits for a Stripe price.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "bundles")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub name: String,
    pub credits: i64,
    /// `None`: the credits never expire.
    pub validity_days: Option<i32>,
    /// In the currency's minor unit (cents).
    pub price_amount: i64,
    /// ISO 4217, lower case as Stripe writes it.
    pub currency: String,
    #[sea_orm(unique)]
    pub stripe_price_id: String,
    /// Archived bundles (`false`) cannot be bought any more; their purchases still grant.
    pub active: bool,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
