//! Calls to Stripe's API, through async-stripe (the split 1.0 crates).
//!
//! `STRIPE_API_BASE` points the client elsewhere (async-stripe's `ClientBuilder::url`, meant for
//! testing): the tests run a local stand-in that checks what Stripe would receive.

use std::collections::HashMap;
use std::time::Duration;

use stripe_checkout::checkout_session::{
    CreateCheckoutSession, CreateCheckoutSessionLineItems, CreateCheckoutSessionPaymentIntentData,
    ListLineItemsCheckoutSession,
};
use stripe_shared::CheckoutSessionMode;

/// Longest one Stripe call may take.
const TIMEOUT: Duration = Duration::from_secs(20);

#[derive(Clone)]
pub struct StripeApi {
    client: stripe::Client,
}

/// What went wrong calling Stripe: a message safe to show the caller.
#[derive(Clone, Debug)]
pub struct ApiError(pub String);

fn api_error(error: stripe::StripeError) -> ApiError {
    match error {
        stripe::StripeError::Stripe(errors, status) => ApiError(format!(
            "Stripe answered {status}: {}",
            errors.message.as_deref().unwrap_or("no message")
        )),
        stripe::StripeError::Timeout => ApiError("Stripe did not answer in time".into()),
        other => {
            tracing::warn!(error = %other, "calling Stripe failed");
            ApiError("cannot reach Stripe".into())
        }
    }
}

/// A Checkout Session to create for one bundle.
pub struct CheckoutParams<'a> {
    pub price_id: &'a str,
    /// `None` for an end-user id longer than Stripe allows here (the metadata still names it).
    pub client_reference_id: Option<&'a str>,
    /// Set on the session and on its PaymentIntent (refunds carry only the latter).
    pub metadata: HashMap<String, String>,
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

pub struct CreatedSession {
    pub id: String,
    pub url: Option<String>,
}

/// One line of a Checkout Session.
pub struct LineItem {
    pub price_id: Option<String>,
    pub quantity: u64,
}

impl StripeApi {
    pub fn new(secret_key: &str, api_base: Option<&str>) -> Result<Self, String> {
        let mut builder = stripe::ClientBuilder::new(secret_key).timeout(TIMEOUT);
        if let Some(base) = api_base {
            // async-stripe appends `v1/…` to the base as given.
            let base = if base.ends_with('/') {
                base.to_owned()
            } else {
                format!("{base}/")
            };
            builder = builder.url(base);
        }
        let client = builder.build().map_err(|error| error.to_string())?;
        Ok(Self { client })
    }

    pub async fn create_checkout_session(
        &self,
        params: CheckoutParams<'_>,
    ) -> Result<CreatedSession, ApiError> {
        let mut line_item = CreateCheckoutSessionLineItems::new();
        line_item.price = Some(params.price_id.to_owned());
        line_item.quantity = Some(1);
        let mut payment_intent_data = CreateCheckoutSessionPaymentIntentData::new();
        payment_intent_data.metadata = Some(params.metadata.clone());
        let mut session = CreateCheckoutSession::new()
            .mode(CheckoutSessionMode::Payment)
            .line_items(vec![line_item]);
        if let Some(reference) = params.client_reference_id {
            session = session.client_reference_id(reference);
        }
        let session = session
            .metadata(params.metadata)
            .payment_intent_data(payment_intent_data)
            .success_url(params.success_url)
            .cancel_url(params.cancel_url)
            .send(&self.client)
            .await
            .map_err(api_error)?;
        Ok(CreatedSession {
            id: session.id.to_string(),
            url: session.url,
        })
    }

    /// The session's line items (the first 100: Tally sells one bundle per session).
    pub async fn line_items(&self, session_id: &str) -> Result<Vec<LineItem>, ApiError> {
        let list = ListLineItemsCheckoutSession::new(session_id)
            .limit(100)
            .send(&self.client)
            .await
            .map_err(api_error)?;
        Ok(list
            .data
            .into_iter()
            .map(|item| LineItem {
                price_id: item.price.map(|price| price.id.to_string()),
                quantity: item.quantity.unwrap_or(1),
            })
            .collect())
    }
}
