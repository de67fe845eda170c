//! What a paid Checkout Session buys: its bundle, end user and credits, and the ledger grant
//! that records them.
//!
//! A session Tally created carries Tally's metadata (bundle id, end-user id). A session Tally did
//! not create (a Payment Link) has none: its bundle comes from its one line item's price, read
//! through Stripe's API (`api::StripeApi::line_items`), and its end user from
//! `client_reference_id`. When either cannot be worked out the webhook records the event `failed`
//! and answers 500, so Stripe delivers it again (for up to three days) after the catalog is fixed.

use uuid::Uuid;

use super::objects::CheckoutSession;
use super::{METADATA_BUNDLE_ID, METADATA_END_USER_ID, Stripe};
use crate::bundles::Bundle;
use crate::error::Error;
use crate::ledger::types::MAX_CREDITS;
use crate::ledger::{EndUserId, Payment, PurchaseRequest};

/// Why a paid session's purchase could not be worked out. Each may resolve on a later delivery
/// (the catalog, Stripe's configuration or the session's link may be fixed meanwhile).
pub(super) enum Unresolved {
    /// What is missing or wrong, in words for the event's record.
    Reason(String),
    /// Reading the catalog failed.
    Error(Error),
}

impl From<Error> for Unresolved {
    fn from(error: Error) -> Self {
        Self::Error(error)
    }
}

fn unresolved(reason: impl Into<String>) -> Unresolved {
    Unresolved::Reason(reason.into())
}

/// The bundle, end user and credits a paid session buys.
struct Purchase {
    bundle: Bundle,
    end_user_id: EndUserId,
    quantity: u64,
    credits: i64,
}

impl Stripe {
    /// The grant a paid `session` buys; `event_id` and `payment_intent` name the event that
    /// reported it and its payment, for the grant's record.
    pub(super) async fn purchase_request(
        &self,
        session: &CheckoutSession,
        event_id: &str,
        payment_intent: Option<String>,
    ) -> Result<PurchaseRequest, Unresolved> {
        let purchase = self.resolve(session).await?;
        let mut metadata = serde_json::json!({
            "bundleId": purchase.bundle.id,
            "stripeEventId": event_id,
        });
        if purchase.quantity != 1 {
            metadata["quantity"] = purchase.quantity.into();
        }
        Ok(PurchaseRequest {
            end_user_id: purchase.end_user_id,
            credits: purchase.credits,
            validity_days: purchase.bundle.validity_days,
            payment: Payment {
                reference: session.id.clone(),
                payment_reference: payment_intent,
                amount: session.amount_total,
                currency: session.currency.as_deref().map(str::to_ascii_lowercase),
            },
            description: Some(purchase.bundle.name.clone()),
            metadata: Some(metadata),
        })
    }

    /// The bundle and end user of a paid session: from Tally's metadata, or (Payment Links)
    /// from the line item's price and `client_reference_id`.
    async fn resolve(&self, session: &CheckoutSession) -> Result<Purchase, Unresolved> {
        let metadata = session.metadata.clone().unwrap_or_default();
        let (bundle, quantity) = match metadata.get(METADATA_BUNDLE_ID) {
            Some(id) => (self.bundle_named(id).await?, 1),
            None => self.bundle_of_payment_link(session).await?,
        };
        let end_user = metadata
            .get(METADATA_END_USER_ID)
            .or(session.client_reference_id.as_ref())
            .ok_or_else(|| {
                unresolved(format!(
                    "no end user: the session has neither metadata {METADATA_END_USER_ID} nor \
                     client_reference_id"
                ))
            })?;
        let end_user_id = EndUserId::parse(METADATA_END_USER_ID, end_user).map_err(|error| {
            unresolved(format!("the session's end user is not a valid id: {error}"))
        })?;
        let credits = credits_bought(&bundle, quantity)?;
        Ok(Purchase {
            bundle,
            end_user_id,
            quantity,
            credits,
        })
    }

    /// The bundle Tally's metadata names.
    async fn bundle_named(&self, id: &str) -> Result<Bundle, Unresolved> {
        let bundle_id = Uuid::parse_str(id).map_err(|_| {
            unresolved(format!(
                "metadata {METADATA_BUNDLE_ID} '{id}' is not a bundle id"
            ))
        })?;
        self.inner.catalog.get(bundle_id).await?.ok_or_else(|| {
            unresolved(format!(
                "no bundle {bundle_id} (metadata {METADATA_BUNDLE_ID})"
            ))
        })
    }

    /// The bundle (and how many of it) a session without Tally's metadata sold: the one whose
    /// Stripe price its single line item has, asked of Stripe's API.
    async fn bundle_of_payment_link(
        &self,
        session: &CheckoutSession,
    ) -> Result<(Bundle, u64), Unresolved> {
        let api = self.inner.api.as_ref().ok_or_else(|| {
            unresolved(
                "the session has no Tally metadata and STRIPE_SECRET_KEY is not set, so its \
                 line items cannot be read",
            )
        })?;
        let items = api.line_items(&session.id).await.map_err(|error| {
            unresolved(format!("reading the session's line items: {}", error.0))
        })?;
        let [item] = items.as_slice() else {
            return Err(unresolved(format!(
                "the session has {} line items; Tally grants one bundle per session",
                items.len()
            )));
        };
        let price = item
            .price_id
            .as_deref()
            .ok_or_else(|| unresolved("the session's line item has no price"))?;
        let bundle = self
            .inner
            .catalog
            .find_by_price(price)
            .await?
            .ok_or_else(|| unresolved(format!("no bundle has stripePriceId {price}")))?;
        Ok((bundle, item.quantity.max(1)))
    }
}

/// `quantity` times the bundle's credits, when that is a grant Tally can hold.
fn credits_bought(bundle: &Bundle, quantity: u64) -> Result<i64, Unresolved> {
    i64::try_from(quantity)
        .ok()
        .and_then(|q| bundle.credits.checked_mul(q))
        .filter(|credits| *credits <= MAX_CREDITS)
        .ok_or_else(|| {
            unresolved(format!(
                "{quantity} × {} credits is more than {MAX_CREDITS}",
                bundle.credits
            ))
        })
}
