//! What a Stripe event means for the ledger.
//!
//! Order of work for one delivery: verify the signature on the raw bytes; parse the envelope;
//! answer a redelivery of a finished event from its record; otherwise act on the event and store
//! its outcome. Purchases and refunds store their record inside the ledger write (under the
//! account lock), so concurrent deliveries of one event apply it once.
//!
//! - `checkout.session.completed` / `checkout.session.async_payment_succeeded` with
//!   `payment_status` `paid` or `no_payment_required`: grant the bundle (once per session,
//!   whichever arrives first; what it buys is worked out in `purchase_resolution`). `unpaid`:
//!   pending, waiting for `async_payment_succeeded`.
//! - `checkout.session.async_payment_failed`: recorded (ignored: nothing to grant).
//! - `charge.refunded`, `refund.created` / `refund.updated` with status `succeeded`: claw back.
//! - Anything else: ignored.
//!
//! An event that may succeed when delivered again (its purchase cannot be worked out yet, or
//! Tally failed) is recorded `failed` and answered 500, so Stripe retries it.
//!
//! A signed event Tally cannot read (its object is not of the type the event names, or it holds
//! a NUL character, which PostgreSQL cannot store) is recorded `rejected` and answered 400. Its
//! text is stored with each NUL spelled `\u0000`, so the record stays readable and identical on
//! both databases.

use serde_json::Value;
use tracing::Instrument;

use super::Stripe;
use super::events::{self, Disposition, EventReceipt, EventRecord, Outcome};
use super::objects::{Charge, CheckoutSession, Event, Refund};
use super::purchase_resolution::Unresolved;
use super::signature::{self, SignatureError};
use crate::error::Error;
use crate::ledger::types::json_contains_nul;
use crate::ledger::{PurchaseOutcome, RefundRequest};

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

    /// The event's record: `failed` (to be retried) or `rejected`, with the reason.
    fn disposition(&self) -> Disposition {
        Disposition {
            outcome: if self.retry {
                Outcome::Failed
            } else {
                Outcome::Rejected
            },
            reason: Some(self.reason.clone()),
            end_user_id: None,
            entry_id: None,
        }
    }

    fn answer(self, event_id: String) -> WebhookAnswer {
        if self.retry {
            WebhookAnswer::Failed {
                event_id,
                error: self.reason,
            }
        } else {
            WebhookAnswer::Rejected {
                error: self.reason,
                event_id: Some(event_id),
            }
        }
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        Self::retry(public_reason(&error))
    }
}

impl From<Unresolved> for Failure {
    fn from(unresolved: Unresolved) -> Self {
        match unresolved {
            Unresolved::Reason(reason) => Self::retry(reason),
            Unresolved::Error(error) => error.into(),
        }
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

/// A purchase or refund the ledger applied (or found applied), its record stored with it.
fn stored(outcome: PurchaseOutcome) -> Handled {
    Handled::Stored {
        duplicate: matches!(outcome, PurchaseOutcome::Duplicate),
    }
}

fn record_ignored(reason: impl Into<String>) -> Handled {
    record_as(Outcome::Ignored, reason)
}

fn parse_object<T: serde::de::DeserializeOwned>(object: &Value, what: &str) -> Result<T, Failure> {
    serde_json::from_value(object.clone())
        .map_err(|error| Failure::unreadable(format!("data.object is not a {what}: {error}")))
}

impl Stripe {
    pub async fn receive_webhook(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> WebhookAnswer {
        let event = match self.read_delivery(signature_header, body) {
            Ok(event) => event,
            Err(refused) => return refused,
        };
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

    /// The event a delivery carries, once its signature is verified; or the refusal.
    fn read_delivery(
        &self,
        signature_header: Option<&str>,
        body: &[u8],
    ) -> Result<Event, WebhookAnswer> {
        if self.inner.webhook_secrets.is_empty() {
            tracing::error!("a Stripe webhook arrived but STRIPE_WEBHOOK_SECRET is not set");
            return Err(WebhookAnswer::NotConfigured);
        }
        let refused = |error: String| WebhookAnswer::Rejected {
            error,
            event_id: None,
        };
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
            return Err(refused(error.message()));
        }
        let event: Event = serde_json::from_slice(body)
            .map_err(|error| refused(format!("the body is not a Stripe event: {error}")))?;
        if event.id.trim().is_empty() || event.event_type.trim().is_empty() {
            return Err(refused("the event has no id or type".into()));
        }
        Ok(event)
    }

    async fn process(&self, event: &Event) -> crate::error::Result<WebhookAnswer> {
        let db = &self.inner.db;
        if let Some(stored) = events::find(db, &event.id).await?
            && stored.outcome.is_final()
        {
            return Ok(processed(stored, true));
        }
        let mut record = record_of(event, str::to_owned, self.inner.ledger.clock().now());
        let handled = self.act(event, &mut record).await;
        let duplicate = match &handled {
            Ok(Handled::Stored { duplicate }) => *duplicate,
            Ok(Handled::Record(disposition)) => !events::store(db, &record, disposition).await?,
            Err(failure) => {
                events::store(db, &record, &failure.disposition()).await?;
                false
            }
        };
        let stored = events::find(db, &event.id)
            .await?
            .ok_or_else(|| Error::Internal(format!("Stripe event {} was not stored", event.id)))?;
        Ok(match handled {
            Err(failure) => failure.answer(event.id.clone()),
            Ok(_) => processed(stored, duplicate),
        })
    }

    /// Dispatches the event by its type.
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
                self.on_charge_refunded(charge, event, record).await
            }
            "refund.created" | "refund.updated" => {
                let refund: Refund = parse_object(object, "Refund")?;
                self.on_refund(refund, event, record).await
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
        let request = self
            .purchase_request(&session, &record.id, record.payment_intent_id.clone())
            .await?;
        let receipt = EventReceipt { event: record };
        Ok(stored(
            self.inner.ledger.grant_purchase(&request, &receipt).await?,
        ))
    }

    /// `charge.refunded`: claws back what the charge's succeeded refunds took, up to its
    /// cumulative `amount_refunded`.
    async fn on_charge_refunded(
        &self,
        charge: Charge,
        event: &Event,
        record: &mut EventRecord,
    ) -> Result<Handled, Failure> {
        let Some(payment_intent) = charge.payment_intent.as_ref().map(|p| p.id().to_owned()) else {
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

    /// `refund.created` / `refund.updated`: claws back the refund once it has succeeded.
    async fn on_refund(
        &self,
        refund: Refund,
        event: &Event,
        record: &mut EventRecord,
    ) -> Result<Handled, Failure> {
        record.payment_intent_id = refund.payment_intent.as_ref().map(|p| p.id().to_owned());
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

    async fn refund(
        &self,
        request: RefundRequest,
        record: &EventRecord,
    ) -> Result<Handled, Failure> {
        let receipt = EventReceipt { event: record };
        Ok(stored(
            self.inner
                .ledger
                .refund_purchase(&request, &receipt)
                .await?,
        ))
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
        let record = record_of(event, escape_nul, self.inner.ledger.clock().now());
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

/// The record of `event` (before acting on it), each text passed through `text`: as it is, or
/// with its NULs spelled out.
fn record_of(
    event: &Event,
    text: fn(&str) -> String,
    received_at: chrono::DateTime<chrono::Utc>,
) -> EventRecord {
    EventRecord {
        id: text(&event.id),
        event_type: text(&event.event_type),
        livemode: event.livemode,
        object_id: event
            .data
            .object
            .get("id")
            .and_then(Value::as_str)
            .map(text),
        payment_intent_id: None,
        received_at,
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

fn processed(stored: events::StoredEvent, duplicate: bool) -> WebhookAnswer {
    WebhookAnswer::Processed {
        event_id: stored.id,
        outcome: stored.outcome,
        reason: stored.reason,
        duplicate,
    }
}
