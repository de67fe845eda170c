use async_graphql::{Context, InputObject, MaybeUndefined, Object, Result, SimpleObject};
use uuid::Uuid;

use crate::bundles::{BundleFields, BundlePatch};
use crate::graphql::context::stripe_for_secret_key;
use crate::graphql::scalars::{Credits, MinorUnits};
use crate::graphql::types::Bundle;

#[derive(InputObject)]
pub struct CreateBundleInput {
    /// 1 to 200 characters.
    pub name: String,
    /// Credits a purchase grants, from 1 to 2^53 − 1.
    pub credits: Credits,
    /// The credits expire this many days (× 24 h) after the payment completes, 1 to 36525;
    /// null or absent: never.
    pub validity_days: Option<i32>,
    /// The price in the currency's minor unit (999 = $9.99), as the catalog shows it.
    pub price_amount: MinorUnits,
    /// Three-letter ISO 4217 code (usd); stored lower case.
    pub currency: String,
    /// The Stripe price it is sold at (price_…); unique among bundles.
    pub stripe_price_id: String,
    /// False creates it archived.
    #[graphql(default = true)]
    pub active: bool,
}

#[derive(InputObject)]
pub struct UpdateBundleInput {
    pub id: Uuid,
    pub name: Option<String>,
    pub credits: Option<Credits>,
    /// Absent: unchanged; null: the credits never expire.
    pub validity_days: MaybeUndefined<i32>,
    pub price_amount: Option<MinorUnits>,
    pub currency: Option<String>,
    pub stripe_price_id: Option<String>,
    /// True restores an archived bundle; false archives it.
    pub active: Option<bool>,
}

#[derive(InputObject)]
pub struct ArchiveBundleInput {
    pub id: Uuid,
}

#[derive(SimpleObject)]
pub struct BundlePayload {
    pub bundle: Bundle,
}

#[derive(Default)]
pub struct BundlesMutation;

#[Object]
impl BundlesMutation {
    /// Adds a bundle to the catalog. Secret keys only.
    async fn create_bundle(
        &self,
        ctx: &Context<'_>,
        input: CreateBundleInput,
    ) -> Result<BundlePayload> {
        let stripe = stripe_for_secret_key(ctx)?;
        let bundle = stripe
            .catalog()
            .create(BundleFields {
                name: input.name,
                credits: input.credits.0,
                validity_days: input.validity_days.map(i64::from),
                price_amount: input.price_amount.0,
                currency: input.currency,
                stripe_price_id: input.stripe_price_id,
                active: input.active,
            })
            .await?;
        Ok(BundlePayload {
            bundle: bundle.into(),
        })
    }

    /// Changes a bundle; fields left out stay as they are. Purchases already granted keep
    /// what they got; a payment completing later grants the bundle as it is then.
    /// Secret keys only.
    async fn update_bundle(
        &self,
        ctx: &Context<'_>,
        input: UpdateBundleInput,
    ) -> Result<BundlePayload> {
        let stripe = stripe_for_secret_key(ctx)?;
        let validity_days = match input.validity_days {
            MaybeUndefined::Undefined => None,
            MaybeUndefined::Null => Some(None),
            MaybeUndefined::Value(days) => Some(Some(i64::from(days))),
        };
        let bundle = stripe
            .catalog()
            .update(
                input.id,
                BundlePatch {
                    name: input.name,
                    credits: input.credits.map(|c| c.0),
                    validity_days,
                    price_amount: input.price_amount.map(|p| p.0),
                    currency: input.currency,
                    stripe_price_id: input.stripe_price_id,
                    active: input.active,
                },
            )
            .await?;
        Ok(BundlePayload {
            bundle: bundle.into(),
        })
    }

    /// Archives a bundle: no longer listed to end users nor sold; payments for it that
    /// complete later still grant. Secret keys only.
    async fn archive_bundle(
        &self,
        ctx: &Context<'_>,
        input: ArchiveBundleInput,
    ) -> Result<BundlePayload> {
        let stripe = stripe_for_secret_key(ctx)?;
        let bundle = stripe.catalog().archive(input.id).await?;
        Ok(BundlePayload {
            bundle: bundle.into(),
        })
    }
}
