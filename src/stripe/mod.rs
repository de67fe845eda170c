//! Stripe purchases: Checkout Sessions for bundles, and the webhook that grants them exactly
//! once and claws refunds back.
//!
//! `signature` verifies a delivery before anything is read; `webhook` decides what an event
//! means and hands purchases and refunds to the ledger (`ledger::purchase`), which stores the
//! event's record (`events`) in the same transaction as its effect; `purchase_resolution` works
//! out what a paid session buys (bundle, end user, credits; a Payment Link's through Stripe's
//! API); `api` calls Stripe through async-stripe. HTTP stays in `http::stripe_webhook`.

pub mod api;
pub mod events;
pub mod objects;
mod purchase_resolution;
pub mod signature;
mod webhook;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use sea_orm::DatabaseConnection;
use uuid::Uuid;

use crate::bundles::Catalog;
use crate::config::StripeConfig;
use crate::error::{Error, Result};
use crate::ledger::{EndUserId, Ledger};
use api::{CheckoutParams, StripeApi};
pub use events::{Outcome, StoredEvent};
pub use webhook::WebhookAnswer;

/// Metadata keys Tally sets on the Checkout Sessions (and their PaymentIntents) it creates.
pub const METADATA_BUNDLE_ID: &str = "tally_bundle_id";
pub const METADATA_END_USER_ID: &str = "tally_end_user_id";
/// Stripe caps a session's `client_reference_id` at 200 characters; longer end-user ids (up to
/// 255) travel in the metadata alone, which allows 500 and is what the webhook reads first.
pub const MAX_CLIENT_REFERENCE_CHARS: usize = 200;
/// The events that report refunds.
pub const REFUND_EVENT_TYPES: [&str; 3] = ["charge.refunded", "refund.created", "refund.updated"];
/// Longest success or cancel URL accepted.
pub const MAX_URL_CHARS: usize = 2_048;

#[derive(Clone)]
pub struct Stripe {
    inner: Arc<Inner>,
}

struct Inner {
    api: Option<StripeApi>,
    webhook_secrets: Vec<String>,
    tolerance: Duration,
    ledger: Ledger,
    catalog: Catalog,
    db: DatabaseConnection,
}

/// A checkout for one bundle, as the caller asked for it.
#[derive(Clone, Debug)]
pub struct CheckoutRequest {
    pub bundle_id: Uuid,
    pub end_user_id: EndUserId,
    pub success_url: String,
    pub cancel_url: String,
}

#[derive(Clone, Debug)]
pub struct CheckoutSession {
    pub id: String,
    /// Where to send the end user to pay.
    pub url: String,
}

impl Stripe {
    pub fn new(config: &StripeConfig, ledger: Ledger, catalog: Catalog) -> anyhow::Result<Self> {
        let api = config
            .secret_key
            .as_deref()
            .map(|key| StripeApi::new(key, config.api_base.as_deref()))
            .transpose()
            .map_err(|error| anyhow::anyhow!("STRIPE_API_BASE: {error}"))?;
        Ok(Self {
            inner: Arc::new(Inner {
                api,
                webhook_secrets: config.webhook_secrets.clone(),
                tolerance: config.webhook_tolerance,
                db: ledger.db().clone(),
                ledger,
                catalog,
            }),
        })
    }

    pub fn catalog(&self) -> &Catalog {
        &self.inner.catalog
    }

    /// Creates a Stripe Checkout Session selling one bundle to one end user. Nothing is stored:
    /// the session's metadata carries the bundle and end user to the webhook.
    pub async fn create_checkout_session(
        &self,
        request: CheckoutRequest,
    ) -> Result<CheckoutSession> {
        check_url("successUrl", &request.success_url)?;
        check_url("cancelUrl", &request.cancel_url)?;
        let bundle = self
            .inner
            .catalog
            .get(request.bundle_id)
            .await?
            .ok_or_else(|| Error::NotFound(format!("no bundle with id {}", request.bundle_id)))?;
        if !bundle.active {
            return Err(Error::bad_input(
                "bundleId",
                "the bundle is archived and no longer sold",
            ));
        }
        let api = self.inner.api.as_ref().ok_or_else(|| {
            Error::Unavailable("Stripe is not configured: set STRIPE_SECRET_KEY".into())
        })?;
        let end_user = request.end_user_id.as_str();
        let metadata = HashMap::from([
            (METADATA_BUNDLE_ID.to_owned(), bundle.id.to_string()),
            (METADATA_END_USER_ID.to_owned(), end_user.to_owned()),
        ]);
        let created = api
            .create_checkout_session(CheckoutParams {
                price_id: &bundle.stripe_price_id,
                client_reference_id: (end_user.chars().count() <= MAX_CLIENT_REFERENCE_CHARS)
                    .then_some(end_user),
                metadata,
                success_url: &request.success_url,
                cancel_url: &request.cancel_url,
            })
            .await
            .map_err(|error| Error::Unavailable(error.0))?;
        let url = created.url.ok_or_else(|| {
            Error::Internal(format!(
                "Stripe returned session {} without a url",
                created.id
            ))
        })?;
        Ok(CheckoutSession {
            id: created.id,
            url,
        })
    }

    /// Newest first: at most `limit` events received before the cursor.
    pub async fn events(
        &self,
        before: Option<(DateTime<Utc>, String)>,
        limit: u64,
    ) -> Result<Vec<StoredEvent>> {
        events::list(&self.inner.db, before, limit).await
    }
}

/// An absolute http(s) URL Stripe will redirect to. Stripe's `{CHECKOUT_SESSION_ID}` template
/// is allowed.
fn check_url(field: &'static str, url: &str) -> Result<()> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"));
    let host_present = rest.is_some_and(|rest| {
        rest.split(['/', '?', '#'])
            .next()
            .is_some_and(|host| !host.is_empty())
    });
    if !host_present
        || url.chars().count() > MAX_URL_CHARS
        || url.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err(Error::bad_input(
            field,
            format!("must be an absolute http(s) URL of at most {MAX_URL_CHARS} characters"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_url;

    #[test]
    fn redirect_urls_must_be_absolute_http() {
        for good in [
            "https://example.com/success?session={CHECKOUT_SESSION_ID}",
            "http://localhost:3000/cancel",
        ] {
            assert!(check_url("successUrl", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "/success",
            "ftp://example.com",
            "https://",
            "https:///path",
            "https://exa mple.com",
            "javascript:alert(1)",
        ] {
            assert!(check_url("successUrl", bad).is_err(), "{bad}");
        }
    }
}
