//! What a Stripe event means for the ledger.
//!
//! Order of work for one delivery: verify the signature on the raw bytes; parse the envelope;
//! answer a redelivery of a finished event from its record; otherwise act on the event and store
//! its outcome. Purchases and refunds store their record inside the ledger write (under the
//! account lock), so concurrent deliveries of one event apply it once.
//!
//! - `checkout.session.completed` / `checkout.session.async_payment_succeeded` with
//!   `payment_status` `paid` or `no_payment_required`: grant the bundle (once per session,
//!   whichever arrives first). `unpaid`: pending, waiting for `async_payment_succeeded`.
//! - `checkout.session.async_payment_failed`: recorded (ignored: nothing to grant).
//! - `charge.refunded`, `refund.created` / `refund.updated` with status `succeeded`: claw back.
//! - Anything else: ignored.
//!
//! A session Tally did not create (a Payment Link) has no Tally metadata: its bundle comes from
//! its line item's price (through Stripe's API) and its end user from `client_reference_id`.
//! When either cannot be resolved the event is recorded `failed` and answered 500, so Stripe
//! delivers it again (for up to three days) after the catalog is fixed.
//!
//! A signed event Tally cannot read (its object is not of the type the event names, or it holds
//! a NUL character, which PostgreSQL cannot store) is recorded `rejected` and answered 400. Its
//! text is stored with each NUL spelled `\u0000`, so the record stays readable and identical on
//! both databases.

use serde_json::Value;
use tracing::Instrument;
use uuid::Uuid;

use super::events::{self, Disposition, EventReceipt, EventRecord, Outcome};
use super::objects::{Charge, CheckoutSession, Event, Refund};
use super::signature::{self, SignatureError};
use super::{METADATA_BUNDLE_ID, METADATA_END_USER_ID, Stripe};
use crate::bundles::Bundle;
use crate::error::Error;
use crate::ledger::types::{MAX_CREDITS, json_contains_nul};
use crate::ledger::{EndUserId, Payment, PurchaseOutcome, PurchaseRequest, RefundRequest, clock};

/// How the webhook answers a delivery.
#[derive(Clone, Debug)]
pub enum WebhookAnswer {
    /// 200: processed now, or earlier (`duplicate`), with the stored outcome.
    Processed {
        event_id: String,
        outcome: Outcome,
        reason: Option<String>,
        duplicate: bool,
    },
    /// 400: the signature or the body was refused. Nothing is stored for a bad signature or a
    /// body that is not an event; a signed event that cannot be read is recorded `rejected`
    /// (`event_id` names its record).
    Rejected {
        error: String,
        event_id: Option<String>,
    },
    /// 500: recorded `failed` with the reason; Stripe will deliver it again.
    Failed { event_id: String, error: String },
    /// 503: no webhook secret is configured, so no delivery can be verified.
    NotConfigured,
}

/// Why an event could not be processed.
struct Failure {
    reason: String,
    /// Another delivery may succeed (the catalog or Stripe may change); else the event itself
    /// is unreadable.
    retry: bool,
}

impl Failure {
    fn retry(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: true,
        }
    }

    fn unreadable(reason: impl Into<String>) -> Self {
        Self {
            reason: reason.into(),
            retry: false,
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::retry(public_reason(&error))
    }
}

/// What a delivery (and the event's record) is told of an error: what `Error::public` shows,
/// in words for the operator reading Stripe's dashboard when it is Tally's own fault.
fn public_reason(error: &Error) -> String {
    let public = error.public();
    if public.internal {
        "internal error (see the server log)".to_owned()
    } else {
        public.message
    }
}

/// What processing decided.
enum Handled {
    /// Store this outcome (nothing changed in the ledger).
    Record(Disposition),
    /// The ledger write stored the event's record, or found it stored already (`duplicate`:
    /// a concurrent delivery of the same event got there first).
    Stored { duplicate: bool },
}

fn record_as(outcome: Outcome, reason: impl Into<String>) -> Handled {
    Handled::Record(Disposition {
        outcome,
        reason: Some(reason.into()),
        end_user_id: None,
        entry_id: None,
    })
}

fn parse_object<T: serde::de::DeserializeOwned>(object: &Value, what: &str) -> Result<T, Failure> {
    serde_json::from_value(object.clone())
        .map_err(|error| Failure::unreadable(format!("data.object is not a {what}: {error}")))
}

/// The bundle, end user and credits a paid session buys.
struct Purchase {
    bundle: Bundle,
    end_user_id: EndUserId,
    quantity: u64,
    credits: i64,
}

impl Stripe {
    pub async fn receive_webhook(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> WebhookAnswer {
        if self.inner.webhook_secrets.is_empty() {
            tracing::error!("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set");
            return WebhookAnswer::NotConfigured;
        }
        if let Err(error) = signature::verify(
            signature_header,
            body,
            &self.inner.webhook_secrets,
            self.inner.tolerance,
            chrono::Utc::now().timestamp(),
        ) {
            if matches!(error, SignatureError::NoMatch) {
                tracing::warn!("refused a Stripe webhook with a bad signature");
            }
            return WebhookAnswer::Rejected {
                error: error.message(),
                event_id: None,
            };
        }
        let event: Event = match serde_json::from_slice(body) {
            Ok(event) => event,
            Err(error) => {
                return WebhookAnswer::Rejected {
                    error: format!("the body is not a Stripe event: {error}"),
                    event_id: None,
                };
            }
        };
        if event.id.trim().is_empty() || event.event_type.trim().is_empty() {
            return WebhookAnswer::Rejected {
                error: "the event has no id or type".into(),
                event_id: None,
            };
        }
        // What is logged while the event is handled names it.
        let span = tracing::info_span!("stripe_event", event = %escape_nul(&event.id));
        let outcome = async {
            if holds_nul(&event) {
                self.reject_with_nul(&event).await
            } else {
                self.process(&event).await
            }
        }
        .instrument(span.clone())
        .await;
        match outcome {
            Ok(answer) => answer,
            Err(error) => WebhookAnswer::Failed {
                error: span.in_scope(|| public_reason(&error)),
                event_id: event.id,
            },
        }
    }

    async fn process(&self, event: &Event) -> crate::error::Result<WebhookAnswer> {
        let db = &self.inner.db;
        if let Some(stored) = events::find(db, &event.id).await?
            && stored.outcome.is_final()
        {
            return Ok(processed(stored, true));
        }
        let mut record = EventRecord {
            id: event.id.clone(),
            event_type: event.event_type.clone(),
            livemode: event.livemode,
            object_id: event
                .data
                .object
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            payment_intent_id: None,
            received_at: clock::now(),
        };
        let handled = self.act(event, &mut record).await;
        let duplicate = match &handled {
            Ok(Handled::Stored { duplicate }) => *duplicate,
            Ok(Handled::Record(disposition)) => !events::store(db, &record, disposition).await?,
            Err(failure) => {
                let disposition = Disposition {
                    outcome: if failure.retry {
                        Outcome::Failed
                    } else {
                        Outcome::Rejected
                    },
                    reason: Some(failure.reason.clone()),
                    end_user_id: None,
                    entry_id: None,
                };
                events::store(db, &record, &disposition).await?;
                false
            }
        };
        let stored = events::find(db, &event.id)
            .await?
            .ok_or_else(|| Error::Internal(format!("Stripe event {} was not stored", event.id)))?;
        Ok(match handled {
            Err(failure) if failure.retry => WebhookAnswer::Failed {
                event_id: event.id.clone(),
                error: failure.reason,
            },
            Err(failure) => WebhookAnswer::Rejected {
                error: failure.reason,
                event_id: Some(event.id.clone()),
            },
            Ok(_) => processed(stored, duplicate),
        })
    }

    async fn act(&self, event: &Event, record: &mut EventRecord) -> Result<Handled, Failure> {
        let object = &event.data.object;
        match event.event_type.as_str() {
            "checkout.session.completed" | "checkout.session.async_payment_succeeded" => {
                let session: CheckoutSession = parse_object(object, "Checkout Session")?;
                record.payment_intent_id =
                    session.payment_intent.as_ref().map(|p| p.id().to_owned());
                self.on_paid_session(session, record).await
            }
            "checkout.session.async_payment_failed" => {
                let session: CheckoutSession = parse_object(object, "Checkout Session")?;
                record.payment_intent_id =
                    session.payment_intent.as_ref().map(|p| p.id().to_owned());
                Ok(record_ignored(
                    "the asynchronous payment failed: nothing is granted",
                ))
            }
            "charge.refunded" => {
                let charge: Charge = parse_object(object, "Charge")?;
                let Some(payment_intent) =
                    charge.payment_intent.as_ref().map(|p| p.id().to_owned())
                else {
                    return Ok(record_ignored(
                        "the charge has no PaymentIntent: not a Checkout purchase",
                    ));
                };
                record.payment_intent_id = Some(payment_intent.clone());
                let refunds = charge
                    .refunds
                    .as_ref()
                    .map(|list| {
                        list.data
                            .iter()
                            .filter(|refund| refund.succeeded())
                            .map(|refund| (refund.id.clone(), refund.amount))
                            .collect()
                    })
                    .unwrap_or_default();
                self.refund(
                    RefundRequest {
                        payment_reference: payment_intent,
                        currency: charge.currency.to_ascii_lowercase(),
                        refunds,
                        cumulative: Some(charge.amount_refunded),
                        reported_by: event.id.clone(),
                    },
                    record,
                )
                .await
            }
            "refund.created" | "refund.updated" => {
                let refund: Refund = parse_object(object, "Refund")?;
                record.payment_intent_id =
                    refund.payment_intent.as_ref().map(|p| p.id().to_owned());
                if !refund.succeeded() {
                    return Ok(record_ignored(format!(
                        "refund status {}: credits are clawed back once it succeeds",
                        refund.status.as_deref().unwrap_or("unknown")
                    )));
                }
                let Some(payment_intent) = record.payment_intent_id.clone() else {
                    return Ok(record_ignored(
                        "the refund has no PaymentIntent: not a Checkout purchase",
                    ));
                };
                self.refund(
                    RefundRequest {
                        payment_reference: payment_intent,
                        currency: refund.currency.to_ascii_lowercase(),
                        refunds: vec![(refund.id.clone(), refund.amount)],
                        cumulative: None,
                        reported_by: event.id.clone(),
                    },
                    record,
                )
                .await
            }
            other => Ok(record_ignored(format!(
                "Tally does not act on {other} events"
            ))),
        }
    }

    async fn on_paid_session(
        &self,
        session: CheckoutSession,
        record: &EventRecord,
    ) -> Result<Handled, Failure> {
        let mode = session.mode.as_deref().unwrap_or("unknown");
        if mode != "payment" {
            return Ok(record_ignored(format!(
                "mode {mode}: Tally grants one-time payments only"
            )));
        }
        match session.payment_status.as_deref() {
            Some("paid" | "no_payment_required") => {}
            Some("unpaid") => {
                return Ok(record_as(
                    Outcome::Pending,
                    "payment_status unpaid: credits are granted when \
                     checkout.session.async_payment_succeeded arrives",
                ));
            }
            other => {
                return Ok(record_ignored(format!(
                    "payment_status {}: nothing to grant",
                    other.unwrap_or("missing")
                )));
            }
        }
        let purchase = self.resolve(&session).await?;
        let mut metadata = serde_json::json!({
            "bundleId": purchase.bundle.id,
            "stripeEventId": record.id,
        });
        if purchase.quantity != 1 {
            metadata["quantity"] = purchase.quantity.into();
        }
        let request = PurchaseRequest {
            end_user_id: purchase.end_user_id,
            credits: purchase.credits,
            validity_days: purchase.bundle.validity_days,
            payment: Payment {
                reference: session.id.clone(),
                payment_reference: record.payment_intent_id.clone(),
                amount: session.amount_total,
                currency: session.currency.as_deref().map(str::to_ascii_lowercase),
            },
            description: Some(purchase.bundle.name.clone()),
            metadata: Some(metadata),
        };
        let outcome = self
            .inner
            .ledger
            .grant_purchase(&request, &EventReceipt { event: record })
            .await?;
        Ok(Handled::Stored {
            duplicate: matches!(outcome, PurchaseOutcome::Duplicate),
        })
    }

    async fn refund(
        &self,
        request: RefundRequest,
        record: &EventRecord,
    ) -> Result<Handled, Failure> {
        let outcome = self
            .inner
            .ledger
            .refund_purchase(&request, &EventReceipt { event: record })
            .await?;
        Ok(Handled::Stored {
            duplicate: matches!(outcome, PurchaseOutcome::Duplicate),
        })
    }

    /// The bundle and end user of a paid session: from Tally's metadata, or (Payment Links)
    /// from the line item's price and `client_reference_id`.
    async fn resolve(&self, session: &CheckoutSession) -> Result<Purchase, Failure> {
        let metadata = session.metadata.clone().unwrap_or_default();
        let catalog = &self.inner.catalog;
        let (bundle, quantity) = if let Some(id) = metadata.get(METADATA_BUNDLE_ID) {
            let bundle_id = Uuid::parse_str(id).map_err(|_| {
                Failure::retry(format!(
                    "metadata {METADATA_BUNDLE_ID} '{id}' is not a bundle id"
                ))
            })?;
            let bundle = catalog.get(bundle_id).await?.ok_or_else(|| {
                Failure::retry(format!(
                    "no bundle {bundle_id} (metadata {METADATA_BUNDLE_ID})"
                ))
            })?;
            (bundle, 1)
        } else {
            let api = self.inner.api.as_ref().ok_or_else(|| {
                Failure::retry(
                    "the session has no Tally metadata and STRIPE_SECRET_KEY is not set, so its \
                     line items cannot be read",
                )
            })?;
            let items = api.line_items(&session.id).await.map_err(|error| {
                Failure::retry(format!("reading the session's line items: {}", error.0))
            })?;
            let [item] = items.as_slice() else {
                return Err(Failure::retry(format!(
                    "the session has {} line items; Tally grants one bundle per session",
                    items.len()
                )));
            };
            let price = item
                .price_id
                .as_deref()
                .ok_or_else(|| Failure::retry("the session's line item has no price"))?;
            let bundle = catalog
                .find_by_price(price)
                .await?
                .ok_or_else(|| Failure::retry(format!("no bundle has stripePriceId {price}")))?;
            (bundle, item.quantity.max(1))
        };
        let end_user = metadata
            .get(METADATA_END_USER_ID)
            .or(session.client_reference_id.as_ref())
            .ok_or_else(|| {
                Failure::retry(format!(
                    "no end user: the session has neither metadata {METADATA_END_USER_ID} nor \
                     client_reference_id"
                ))
            })?;
        let end_user_id = EndUserId::parse(METADATA_END_USER_ID, end_user).map_err(|error| {
            Failure::retry(format!("the session's end user is not a valid id: {error}"))
        })?;
        let credits = i64::try_from(quantity)
            .ok()
            .and_then(|q| bundle.credits.checked_mul(q))
            .filter(|credits| *credits <= MAX_CREDITS)
            .ok_or_else(|| {
                Failure::retry(format!(
                    "{quantity} × {} credits is more than {MAX_CREDITS}",
                    bundle.credits
                ))
            })?;
        Ok(Purchase {
            bundle,
            end_user_id,
            quantity,
            credits,
        })
    }
}

/// Records a signed event holding a NUL character as `rejected`, under its id with each NUL
/// spelled `\u0000` (PostgreSQL text cannot hold one), and refuses it. Nothing else is read.
impl Stripe {
    async fn reject_with_nul(&self, event: &Event) -> crate::error::Result<WebhookAnswer> {
        let error = "the event holds the NUL character (U+0000), which Tally does not accept";
        tracing::warn!(
            event = escape_nul(&event.id),
            "refused a signed Stripe event with a NUL character"
        );
        let record = EventRecord {
            id: escape_nul(&event.id),
            event_type: escape_nul(&event.event_type),
            livemode: event.livemode,
            object_id: event
                .data
                .object
                .get("id")
                .and_then(Value::as_str)
                .map(escape_nul),
            payment_intent_id: None,
            received_at: clock::now(),
        };
        let disposition = Disposition {
            outcome: Outcome::Rejected,
            reason: Some(error.to_owned()),
            end_user_id: None,
            entry_id: None,
        };
        events::store(&self.inner.db, &record, &disposition).await?;
        Ok(WebhookAnswer::Rejected {
            error: error.to_owned(),
            event_id: Some(record.id),
        })
    }
}

fn holds_nul(event: &Event) -> bool {
    event.id.contains('\0')
        || event.event_type.contains('\0')
        || json_contains_nul(&event.data.object)
}

fn escape_nul(text: &str) -> String {
    text.replace('\0', "\\u0000")
}

fn record_ignored(reason: impl Into<String>) -> Handled {
    record_as(Outcome::Ignored, reason)
}

fn processed(stored: events::StoredEvent, duplicate: bool) -> WebhookAnswer {
    WebhookAnswer::Processed {
        event_id: stored.id,
        outcome: stored.outcome,
        reason: stored.reason,
        duplicate,
    }
}
