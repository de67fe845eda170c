//! The record of every Stripe event received, one row per event id, and the `Receipt` that stores
//! it in the same transaction as the ledger write it caused.
//!
//! A row with outcome `applied`, `ignored` or `pending` is final: a redelivery of that event
//! answers 2xx and changes nothing. A `failed` row (Tally answered 5xx) or a `rejected` one
//! (answered 400: signed, but unreadable) is processed again when Stripe retries, and
//! overwritten with the new outcome.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, ExprTrait, OnConflict};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, Condition, ConnectionTrait, DatabaseTransaction, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect,
};
use uuid::Uuid;

use crate::entities::stripe_event;
use crate::error::{Error, Result};
use crate::ledger::{EndUserId, Receipt, Recorded};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The event changed the ledger (a grant or a claw-back), or was taken into account.
    Applied,
    /// Nothing to do (another event type, a session granted already, a refund counted already).
    Ignored,
    /// Waiting for something else: an unpaid session for its payment, a refund for its purchase.
    Pending,
    /// Tally could not process it; it answered 5xx so that Stripe retries.
    Failed,
    /// Signed, but Tally cannot read it (an object of the wrong shape, a NUL character); it
    /// answered 400.
    Rejected,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Applied => "applied",
            Self::Ignored => "ignored",
            Self::Pending => "pending",
            Self::Failed => "failed",
            Self::Rejected => "rejected",
        }
    }

    /// A final outcome is never processed again; `failed` and `rejected` ones are, when Stripe
    /// delivers the event again (a fixed catalog, a newer Tally may then succeed).
    pub fn is_final(self) -> bool {
        !matches!(self, Self::Failed | Self::Rejected)
    }

    pub fn from_stored(value: &str) -> Result<Self> {
        [
            Self::Applied,
            Self::Ignored,
            Self::Pending,
            Self::Failed,
            Self::Rejected,
        ]
        .into_iter()
        .find(|outcome| outcome.as_str() == value)
        .ok_or_else(|| Error::Internal(format!("unknown Stripe event outcome '{value}'")))
    }
}

/// A stored event, as `stripeEvents` lists it.
#[derive(Clone, Debug)]
pub struct StoredEvent {
    pub id: String,
    pub event_type: String,
    pub livemode: bool,
    pub object_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub end_user_id: Option<String>,
    pub entry_id: Option<Uuid>,
    pub attempts: i32,
    pub received_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl StoredEvent {
    fn from_model(model: stripe_event::Model) -> Result<Self> {
        Ok(Self {
            outcome: Outcome::from_stored(&model.outcome)?,
            id: model.id,
            event_type: model.event_type,
            livemode: model.livemode,
            object_id: model.object_id,
            payment_intent_id: model.payment_intent_id,
            reason: model.reason,
            end_user_id: model.end_user_id,
            entry_id: model.entry_id,
            attempts: model.attempts,
            received_at: model.received_at,
            updated_at: model.updated_at,
        })
    }
}

/// The event being processed.
#[derive(Clone, Debug)]
pub struct EventRecord {
    pub id: String,
    pub event_type: String,
    pub livemode: bool,
    pub object_id: Option<String>,
    pub payment_intent_id: Option<String>,
    pub received_at: DateTime<Utc>,
}

/// What is stored about one processing of an event.
#[derive(Clone, Debug)]
pub struct Disposition {
    pub outcome: Outcome,
    pub reason: Option<String>,
    pub end_user_id: Option<EndUserId>,
    pub entry_id: Option<Uuid>,
}

pub async fn find(conn: &impl ConnectionTrait, id: &str) -> Result<Option<StoredEvent>> {
    stripe_event::Entity::find_by_id(id.to_owned())
        .one(conn)
        .await?
        .map(StoredEvent::from_model)
        .transpose()
}

/// Stores the event's disposition: inserts its row, or overwrites a `failed` one. A final row
/// is never changed; returns whether this call wrote. The row is stamped with the time this
/// delivery was received.
pub async fn store(
    conn: &impl ConnectionTrait,
    event: &EventRecord,
    disposition: &Disposition,
) -> Result<bool> {
    let now = event.received_at;
    let written = stripe_event::Entity::insert(stripe_event::ActiveModel {
        id: Set(event.id.clone()),
        event_type: Set(event.event_type.clone()),
        livemode: Set(event.livemode),
        object_id: Set(event.object_id.clone()),
        payment_intent_id: Set(event.payment_intent_id.clone()),
        outcome: Set(disposition.outcome.as_str().to_owned()),
        reason: Set(disposition.reason.clone()),
        end_user_id: Set(disposition.end_user_id.as_ref().map(EndUserId::to_string)),
        entry_id: Set(disposition.entry_id),
        attempts: Set(1),
        received_at: Set(event.received_at),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(stripe_event::Column::Id)
            .update_columns([
                stripe_event::Column::ObjectId,
                stripe_event::Column::PaymentIntentId,
                stripe_event::Column::Outcome,
                stripe_event::Column::Reason,
                stripe_event::Column::EndUserId,
                stripe_event::Column::EntryId,
                stripe_event::Column::UpdatedAt,
            ])
            .value(
                stripe_event::Column::Attempts,
                Expr::col((stripe_event::Entity, stripe_event::Column::Attempts)).add(1),
            )
            .action_and_where(
                Expr::col((stripe_event::Entity, stripe_event::Column::Outcome))
                    .is_in([Outcome::Failed.as_str(), Outcome::Rejected.as_str()]),
            )
            .to_owned(),
    )
    .exec_without_returning(conn)
    .await?;
    Ok(written > 0)
}

/// Refund events that waited for the purchase of `payment_intent_id`, now applied with it.
pub async fn settle_waiting_refunds(
    conn: &impl ConnectionTrait,
    payment_intent_id: &str,
    reason: &str,
    entry_id: Option<Uuid>,
    now: DateTime<Utc>,
) -> Result<()> {
    stripe_event::Entity::update_many()
        .col_expr(
            stripe_event::Column::Outcome,
            Expr::val(Outcome::Applied.as_str()),
        )
        .col_expr(stripe_event::Column::Reason, Expr::val(reason))
        .col_expr(stripe_event::Column::EntryId, Expr::val(entry_id))
        .col_expr(stripe_event::Column::UpdatedAt, Expr::val(now))
        .filter(stripe_event::Column::PaymentIntentId.eq(payment_intent_id))
        .filter(stripe_event::Column::Outcome.eq(Outcome::Pending.as_str()))
        .filter(stripe_event::Column::EventType.is_in(super::REFUND_EVENT_TYPES))
        .exec(conn)
        .await?;
    Ok(())
}

/// Newest first: at most `limit` events received before the cursor `(received_at, id)`.
pub async fn list(
    conn: &impl ConnectionTrait,
    before: Option<(DateTime<Utc>, String)>,
    limit: u64,
) -> Result<Vec<StoredEvent>> {
    let mut query = stripe_event::Entity::find()
        .order_by_desc(stripe_event::Column::ReceivedAt)
        .order_by_desc(stripe_event::Column::Id)
        .limit(limit);
    if let Some((at, id)) = before {
        query = query.filter(
            Condition::any()
                .add(stripe_event::Column::ReceivedAt.lt(at))
                .add(
                    Condition::all()
                        .add(stripe_event::Column::ReceivedAt.eq(at))
                        .add(stripe_event::Column::Id.lt(id)),
                ),
        );
    }
    query
        .all(conn)
        .await?
        .into_iter()
        .map(StoredEvent::from_model)
        .collect()
}

/// The receipt of a ledger write made for a Stripe event.
pub struct EventReceipt<'a> {
    pub event: &'a EventRecord,
}

/// How a ledger write's result is stored on its event.
pub fn describe(recorded: &Recorded) -> Disposition {
    let on = |outcome, reason: String, user: EndUserId, entry_id: Option<Uuid>| Disposition {
        outcome,
        reason: Some(reason),
        end_user_id: Some(user),
        entry_id,
    };
    match recorded {
        Recorded::Granted {
            grant,
            entry,
            clawback,
            ..
        } => {
            let mut reason = format!(
                "granted {} credits ({})",
                grant.amount,
                grant.description.as_deref().unwrap_or("purchase")
            );
            if let Some(clawback) = clawback {
                reason.push_str(&format!(
                    "; clawed back {} for refunds received before the purchase",
                    clawback.amount
                ));
            }
            on(
                Outcome::Applied,
                reason,
                grant.end_user_id.clone(),
                Some(entry.id),
            )
        }
        Recorded::AlreadyGranted { grant } => on(
            Outcome::Ignored,
            format!(
                "checkout session {} was already granted (grant {})",
                grant.payment.as_ref().map_or("?", |p| p.reference.as_str()),
                grant.id
            ),
            grant.end_user_id.clone(),
            None,
        ),
        Recorded::ClawedBack { grant, entry } => on(
            Outcome::Applied,
            format!(
                "clawed back {} credits from grant {} ({} remain)",
                entry.amount, grant.id, grant.remaining
            ),
            grant.end_user_id.clone(),
            Some(entry.id),
        ),
        Recorded::NothingToClawBack {
            grant,
            already_clawed_back: true,
        } => on(
            Outcome::Ignored,
            format!(
                "refund already counted: nothing more to claw back from grant {}",
                grant.id
            ),
            grant.end_user_id.clone(),
            None,
        ),
        Recorded::NothingToClawBack {
            grant,
            already_clawed_back: false,
        } => on(
            Outcome::Applied,
            format!(
                "refund recorded; nothing remains of grant {} to claw back (spent or expired)",
                grant.id
            ),
            grant.end_user_id.clone(),
            None,
        ),
        Recorded::RefundWaiting { payment_reference } => Disposition {
            outcome: Outcome::Pending,
            reason: Some(format!(
                "no purchase for payment {payment_reference} yet: its credits are clawed back \
                 when the purchase lands"
            )),
            end_user_id: None,
            entry_id: None,
        },
    }
}

#[async_trait]
impl Receipt for EventReceipt<'_> {
    async fn already_processed(&self, txn: &DatabaseTransaction) -> Result<bool> {
        Ok(find(txn, &self.event.id)
            .await?
            .is_some_and(|stored| stored.outcome.is_final()))
    }

    async fn record(&self, txn: &DatabaseTransaction, recorded: &Recorded) -> Result<()> {
        let disposition = describe(recorded);
        store(txn, self.event, &disposition).await?;
        if let Recorded::Granted {
            grant,
            clawback,
            had_early_refunds: true,
            ..
        } = recorded
            && let Some(payment_intent_id) = grant
                .payment
                .as_ref()
                .and_then(|p| p.payment_reference.as_deref())
        {
            let reason = match clawback {
                Some(entry) => format!(
                    "applied when the purchase landed (event {}): clawed back {} credits",
                    self.event.id, entry.amount
                ),
                None => format!(
                    "applied when the purchase landed (event {}): nothing to claw back",
                    self.event.id
                ),
            };
            settle_waiting_refunds(
                txn,
                payment_intent_id,
                &reason,
                clawback.as_ref().map(|e| e.id),
                self.event.received_at,
            )
            .await?;
        }
        Ok(())
    }
}
