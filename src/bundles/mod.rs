//! The bundles catalog: what end users can buy (credits for a Stripe price).
//!
//! Bundles are never deleted: an archived bundle cannot be bought any more, but a payment for it
//! that completes later still grants its credits. `stripePriceId` is unique: it is how a Stripe
//! line item (Payment Links) finds its bundle, and how `TALLY_BUNDLES_FILE` entries match rows.

pub mod file;

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, DatabaseConnection, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder,
};
use uuid::Uuid;

use crate::entities::bundle;
use crate::error::{Error, Result, is_unique_violation};
use crate::ledger::clock::Clock;
use crate::ledger::types::{Amount, MAX_CREDITS, MAX_VALIDITY_DAYS, check_text};

pub const MAX_NAME_CHARS: usize = 200;
pub const MAX_PRICE_ID_CHARS: usize = 255;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bundle {
    pub id: Uuid,
    pub name: String,
    pub credits: i64,
    /// `None`: the credits never expire.
    pub validity_days: Option<i64>,
    /// Minor units (cents).
    pub price_amount: i64,
    /// ISO 4217, lower case.
    pub currency: String,
    pub stripe_price_id: String,
    pub active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<bundle::Model> for Bundle {
    fn from(model: bundle::Model) -> Self {
        Self {
            id: model.id,
            name: model.name,
            credits: model.credits,
            validity_days: model.validity_days.map(i64::from),
            price_amount: model.price_amount,
            currency: model.currency,
            stripe_price_id: model.stripe_price_id,
            active: model.active,
            created_at: model.created_at,
            updated_at: model.updated_at,
        }
    }
}

/// A bundle's fields as given; `validate` checks and normalizes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BundleFields {
    pub name: String,
    pub credits: i64,
    pub validity_days: Option<i64>,
    pub price_amount: i64,
    pub currency: String,
    pub stripe_price_id: String,
    pub active: bool,
}

impl BundleFields {
    /// Trims the name, lower-cases the currency, and refuses what breaks a rule.
    pub fn validate(mut self) -> Result<Self> {
        self.name = self.name.trim().to_owned();
        if self.name.is_empty() || self.name.chars().count() > MAX_NAME_CHARS {
            return Err(Error::bad_input(
                "name",
                format!("must be 1 to {MAX_NAME_CHARS} characters"),
            ));
        }
        check_text("name", &self.name)?;
        Amount::parse("credits", self.credits)?;
        if let Some(days) = self.validity_days
            && !(1..=MAX_VALIDITY_DAYS).contains(&days)
        {
            return Err(Error::bad_input(
                "validityDays",
                format!("must be from 1 to {MAX_VALIDITY_DAYS} (100 years), or null for never"),
            ));
        }
        if !(0..=MAX_CREDITS).contains(&self.price_amount) {
            return Err(Error::bad_input(
                "priceAmount",
                format!(
                    "must be a whole number of the currency's minor unit from 0 to {MAX_CREDITS}"
                ),
            ));
        }
        if self.currency.len() != 3 || !self.currency.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(Error::bad_input(
                "currency",
                "must be a three-letter ISO 4217 code such as usd",
            ));
        }
        self.currency = self.currency.to_ascii_lowercase();
        self.stripe_price_id = self.stripe_price_id.trim().to_owned();
        if self.stripe_price_id.is_empty()
            || self.stripe_price_id.len() > MAX_PRICE_ID_CHARS
            || !self.stripe_price_id.chars().all(|c| c.is_ascii_graphic())
        {
            return Err(Error::bad_input(
                "stripePriceId",
                format!(
                    "must be a Stripe price id (such as price_1Pgaf…) of 1 to \
                     {MAX_PRICE_ID_CHARS} characters without spaces"
                ),
            ));
        }
        Ok(self)
    }
}

/// Changes to a bundle; `None` leaves a field as it is.
#[derive(Clone, Debug, Default)]
pub struct BundlePatch {
    pub name: Option<String>,
    pub credits: Option<i64>,
    /// `Some(None)`: the credits never expire.
    pub validity_days: Option<Option<i64>>,
    pub price_amount: Option<i64>,
    pub currency: Option<String>,
    pub stripe_price_id: Option<String>,
    pub active: Option<bool>,
}

#[derive(Clone)]
pub struct Catalog {
    db: DatabaseConnection,
    clock: Clock,
}

impl Catalog {
    pub fn new(db: DatabaseConnection, clock: Clock) -> Self {
        Self { db, clock }
    }

    /// Cheapest first by credits, then price and name.
    pub async fn list(&self, include_archived: bool) -> Result<Vec<Bundle>> {
        let mut query = bundle::Entity::find();
        if !include_archived {
            query = query.filter(bundle::Column::Active.eq(true));
        }
        Ok(query
            .order_by_asc(bundle::Column::Credits)
            .order_by_asc(bundle::Column::PriceAmount)
            .order_by_asc(bundle::Column::Name)
            .order_by_asc(bundle::Column::Id)
            .all(&self.db)
            .await?
            .into_iter()
            .map(Bundle::from)
            .collect())
    }

    pub async fn get(&self, id: Uuid) -> Result<Option<Bundle>> {
        Ok(bundle::Entity::find_by_id(id)
            .one(&self.db)
            .await?
            .map(Bundle::from))
    }

    /// The bundle (archived or not) sold at a Stripe price.
    pub async fn find_by_price(&self, stripe_price_id: &str) -> Result<Option<Bundle>> {
        Ok(bundle::Entity::find()
            .filter(bundle::Column::StripePriceId.eq(stripe_price_id))
            .one(&self.db)
            .await?
            .map(Bundle::from))
    }

    pub async fn create(&self, fields: BundleFields) -> Result<Bundle> {
        let fields = fields.validate()?;
        let now = self.clock.now();
        let model = bundle::ActiveModel {
            id: Set(Uuid::now_v7()),
            name: Set(fields.name),
            credits: Set(fields.credits),
            validity_days: Set(fields.validity_days.map(|d| d as i32)),
            price_amount: Set(fields.price_amount),
            currency: Set(fields.currency),
            stripe_price_id: Set(fields.stripe_price_id),
            active: Set(fields.active),
            created_at: Set(now),
            updated_at: Set(now),
        };
        let inserted = bundle::Entity::insert(model)
            .exec_with_returning(&self.db)
            .await
            .map_err(|error| price_taken(error.into()))?;
        Ok(inserted.into())
    }

    pub async fn update(&self, id: Uuid, patch: BundlePatch) -> Result<Bundle> {
        let existing = self
            .get(id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no bundle with id {id}")))?;
        let fields = BundleFields {
            name: patch.name.unwrap_or(existing.name),
            credits: patch.credits.unwrap_or(existing.credits),
            validity_days: patch.validity_days.unwrap_or(existing.validity_days),
            price_amount: patch.price_amount.unwrap_or(existing.price_amount),
            currency: patch.currency.unwrap_or(existing.currency),
            stripe_price_id: patch.stripe_price_id.unwrap_or(existing.stripe_price_id),
            active: patch.active.unwrap_or(existing.active),
        }
        .validate()?;
        self.save(id, fields).await
    }

    /// Archives a bundle: it is no longer listed to end users nor sold. Archiving twice is fine.
    pub async fn archive(&self, id: Uuid) -> Result<Bundle> {
        self.update(
            id,
            BundlePatch {
                active: Some(false),
                ..BundlePatch::default()
            },
        )
        .await
    }

    /// Creates the bundle sold at `fields.stripe_price_id`, or brings it up to date.
    pub async fn upsert_by_price(&self, fields: BundleFields) -> Result<(Bundle, bool)> {
        let fields = fields.validate()?;
        match self.find_by_price(&fields.stripe_price_id).await? {
            Some(existing) => Ok((self.save(existing.id, fields).await?, false)),
            None => Ok((self.create(fields).await?, true)),
        }
    }

    async fn save(&self, id: Uuid, fields: BundleFields) -> Result<Bundle> {
        let Some(model) = bundle::Entity::find_by_id(id).one(&self.db).await? else {
            return Err(Error::NotFound(format!("no bundle with id {id}")));
        };
        let mut model = model.into_active_model();
        model.name = Set(fields.name);
        model.credits = Set(fields.credits);
        model.validity_days = Set(fields.validity_days.map(|d| d as i32));
        model.price_amount = Set(fields.price_amount);
        model.currency = Set(fields.currency);
        model.stripe_price_id = Set(fields.stripe_price_id);
        model.active = Set(fields.active);
        model.updated_at = Set(self.clock.now());
        let updated = model
            .update(&self.db)
            .await
            .map_err(|error| price_taken(error.into()))?;
        Ok(updated.into())
    }
}

fn price_taken(error: Error) -> Error {
    if is_unique_violation(&error) {
        Error::bad_input("stripePriceId", "another bundle already uses this price")
    } else {
        error
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> BundleFields {
        BundleFields {
            name: " Starter ".into(),
            credits: 100,
            validity_days: Some(365),
            price_amount: 999,
            currency: "USD".into(),
            stripe_price_id: "price_123".into(),
            active: true,
        }
    }

    #[test]
    fn fields_are_normalized() {
        let valid = fields().validate().unwrap();
        assert_eq!(valid.name, "Starter");
        assert_eq!(valid.currency, "usd");
    }

    #[test]
    fn each_bad_field_is_named() {
        let cases: Vec<(BundleFields, &str)> = vec![
            (
                BundleFields {
                    name: "  ".into(),
                    ..fields()
                },
                "name",
            ),
            (
                BundleFields {
                    credits: 0,
                    ..fields()
                },
                "credits",
            ),
            (
                BundleFields {
                    validity_days: Some(0),
                    ..fields()
                },
                "validityDays",
            ),
            (
                BundleFields {
                    price_amount: -1,
                    ..fields()
                },
                "priceAmount",
            ),
            (
                BundleFields {
                    currency: "dollars".into(),
                    ..fields()
                },
                "currency",
            ),
            (
                BundleFields {
                    stripe_price_id: "price 1".into(),
                    ..fields()
                },
                "stripePriceId",
            ),
        ];
        for (fields, expected) in cases {
            match fields.validate() {
                Err(Error::BadUserInput { field, .. } | Error::AmountNotPositive { field }) => {
                    assert_eq!(field, expected)
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }
}
