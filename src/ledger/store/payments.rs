//! Stripe payments and refunds as the claw-back rules need them, under the payment's lock.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::{Expr, OnConflict};
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entities::{stripe_payment, stripe_refund};
use crate::error::Result;

pub async fn lock_payment(
    txn: &impl ConnectionTrait,
    payment_reference: &str,
    now: DateTime<Utc>,
) -> Result<()> {
    stripe_payment::Entity::insert(stripe_payment::ActiveModel {
        payment_intent_id: Set(payment_reference.to_owned()),
        charge_refunded: Set(0),
        currency: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    })
    .on_conflict(
        OnConflict::column(stripe_payment::Column::PaymentIntentId)
            .value(stripe_payment::Column::UpdatedAt, now)
            .to_owned(),
    )
    .exec_without_returning(txn)
    .await?;
    Ok(())
}

/// A refunded amount as a payment reports it, under `lock_payment`.
pub struct RefundReport<'a> {
    pub payment_reference: &'a str,
    pub currency: &'a str,
    /// Individual refunds `(id, amount)`; each id counts once, however often it is reported.
    pub refunds: &'a [(String, i64)],
    /// The payment's cumulative refunded amount (Stripe's `charge.amount_refunded`).
    pub cumulative: Option<i64>,
    /// Who reported it (a Stripe event id), kept with each refund.
    pub reported_by: &'a str,
}

pub async fn record_refunds(
    txn: &impl ConnectionTrait,
    report: &RefundReport<'_>,
    now: DateTime<Utc>,
) -> Result<()> {
    if let Some(cumulative) = report.cumulative {
        stripe_payment::Entity::update_many()
            .col_expr(
                stripe_payment::Column::ChargeRefunded,
                Expr::val(cumulative),
            )
            .col_expr(stripe_payment::Column::Currency, Expr::val(report.currency))
            .filter(stripe_payment::Column::PaymentIntentId.eq(report.payment_reference))
            .filter(stripe_payment::Column::ChargeRefunded.lt(cumulative))
            .exec(txn)
            .await?;
    }
    for (refund_id, amount) in report.refunds {
        stripe_refund::Entity::insert(stripe_refund::ActiveModel {
            refund_id: Set(refund_id.clone()),
            payment_intent_id: Set(report.payment_reference.to_owned()),
            amount: Set(*amount),
            currency: Set(report.currency.to_owned()),
            event_id: Set(report.reported_by.to_owned()),
            created_at: Set(now),
        })
        .on_conflict(
            OnConflict::column(stripe_refund::Column::RefundId)
                .do_nothing()
                .to_owned(),
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}
