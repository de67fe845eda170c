//! The worker's statements that must be safe with several processes at once: fanning events
//! out (each event once) and claiming due deliveries (each attempt by one worker at a time).
//! Both databases run them in the tests.

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DatabaseTransaction,
    DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Statement, TransactionTrait,
};
use uuid::Uuid;

use super::endpoints::event_types_of;
use crate::entities::{webhook_attempt, webhook_delivery, webhook_endpoint, webhook_event};
use crate::error::Result;

/// Events fanned out per transaction.
pub const FAN_OUT_BATCH: usize = 500;

pub const PENDING: &str = "pending";
pub const DELIVERED: &str = "delivered";
pub const FAILED: &str = "failed";

/// Creates the deliveries of events not yet fanned out: one per enabled endpoint that subscribes
/// to the event's type and existed when it happened. Returns how many events it took.
///
/// PostgreSQL: the events are locked `FOR UPDATE SKIP LOCKED`, so two workers take different
/// ones. SQLite has one writer at a time; a delivery created twice meets the unique index
/// and is skipped.
pub async fn fan_out(db: &DatabaseConnection, now: DateTime<Utc>) -> Result<usize> {
    let txn = begin_writing(db).await?;
    let mut query = webhook_event::Entity::find()
        .filter(webhook_event::Column::FannedOut.eq(false))
        .order_by_asc(webhook_event::Column::Id)
        .limit(FAN_OUT_BATCH as u64);
    if txn.get_database_backend() == DbBackend::Postgres {
        query = query.lock_with_behavior(
            sea_orm::sea_query::LockType::Update,
            sea_orm::sea_query::LockBehavior::SkipLocked,
        );
    }
    let events = query.all(&txn).await?;
    if events.is_empty() {
        txn.rollback().await?;
        return Ok(0);
    }
    let endpoints = webhook_endpoint::Entity::find()
        .filter(webhook_endpoint::Column::Enabled.eq(true))
        .all(&txn)
        .await?;
    let subscribed: Vec<(Uuid, DateTime<Utc>, Vec<String>)> = endpoints
        .iter()
        .map(|e| (e.id, e.created_at, event_types_of(&e.event_types)))
        .collect();
    let mut deliveries = Vec::new();
    for event in &events {
        for (endpoint_id, created_at, types) in &subscribed {
            if *created_at <= event.created_at && types.contains(&event.event_type) {
                deliveries.push(new_delivery(event.id, *endpoint_id, now));
            }
        }
    }
    for chunk in deliveries.chunks(1_000) {
        webhook_delivery::Entity::insert_many(chunk.to_vec())
            .on_conflict(
                OnConflict::columns([
                    webhook_delivery::Column::EventId,
                    webhook_delivery::Column::EndpointId,
                ])
                .do_nothing()
                .to_owned(),
            )
            .exec_without_returning(&txn)
            .await?;
    }
    let ids: Vec<Uuid> = events.iter().map(|e| e.id).collect();
    webhook_event::Entity::update_many()
        .col_expr(
            webhook_event::Column::FannedOut,
            sea_orm::sea_query::Expr::value(true),
        )
        .filter(webhook_event::Column::Id.is_in(ids))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(events.len())
}

/// Deletes up to `FAN_OUT_BATCH` events created before `before` that have nothing left to
/// send (fanned out, no pending delivery), with their deliveries and attempts. Returns how many.
pub async fn delete_old_events(db: &DatabaseConnection, before: DateTime<Utc>) -> Result<usize> {
    let old = webhook_event::Entity::find()
        .filter(webhook_event::Column::FannedOut.eq(true))
        .filter(webhook_event::Column::CreatedAt.lt(before))
        .order_by_asc(webhook_event::Column::Id)
        .limit(FAN_OUT_BATCH as u64)
        .all(db)
        .await?;
    if old.is_empty() {
        return Ok(0);
    }
    let txn = begin_writing(db).await?;
    let event_ids: Vec<Uuid> = old.iter().map(|e| e.id).collect();
    let deliveries = webhook_delivery::Entity::find()
        .filter(webhook_delivery::Column::EventId.is_in(event_ids.clone()))
        .all(&txn)
        .await?;
    // An event still being sent somewhere stays, whatever its age.
    let pending: Vec<Uuid> = deliveries
        .iter()
        .filter(|d| d.status == PENDING)
        .map(|d| d.event_id)
        .collect();
    let events: Vec<Uuid> = event_ids
        .into_iter()
        .filter(|id| !pending.contains(id))
        .collect();
    let deliveries: Vec<Uuid> = deliveries
        .iter()
        .filter(|d| events.contains(&d.event_id))
        .map(|d| d.id)
        .collect();
    webhook_attempt::Entity::delete_many()
        .filter(webhook_attempt::Column::DeliveryId.is_in(deliveries.clone()))
        .exec(&txn)
        .await?;
    webhook_delivery::Entity::delete_many()
        .filter(webhook_delivery::Column::Id.is_in(deliveries))
        .exec(&txn)
        .await?;
    let deleted = webhook_event::Entity::delete_many()
        .filter(webhook_event::Column::Id.is_in(events))
        .exec(&txn)
        .await?;
    txn.commit().await?;
    Ok(deleted.rows_affected as usize)
}

pub fn new_delivery(
    event_id: Uuid,
    endpoint_id: Uuid,
    now: DateTime<Utc>,
) -> webhook_delivery::ActiveModel {
    webhook_delivery::ActiveModel {
        id: Set(Uuid::now_v7()),
        event_id: Set(event_id),
        endpoint_id: Set(endpoint_id),
        status: Set(PENDING.to_owned()),
        attempts: Set(0),
        next_attempt_at: Set(now),
        claimed_until: Set(None),
        last_attempt_at: Set(None),
        last_status_code: Set(None),
        last_latency_ms: Set(None),
        last_error: Set(None),
        delivered_at: Set(None),
        created_at: Set(now),
    }
}

/// Claims up to `limit` due deliveries to enabled endpoints until `lease_until`: no other
/// worker takes them before then (a killed worker's claims simply run out).
pub async fn claim_due(
    db: &DatabaseConnection,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
    limit: usize,
) -> Result<Vec<webhook_delivery::Model>> {
    let backend = db.get_database_backend();
    let (placeholders, lock) = match backend {
        DbBackend::Postgres => (["$1", "$2", "$3"], "FOR UPDATE OF d SKIP LOCKED"),
        _ => (["?", "?", "?"], ""),
    };
    let [lease, at, count] = placeholders;
    // The claim's conditions are checked again by the UPDATE itself, so a row another worker
    // claimed between the two is not taken twice.
    let sql = format!(
        "UPDATE webhook_deliveries SET claimed_until = {lease} \
         WHERE id IN (SELECT d.id FROM webhook_deliveries d \
             JOIN webhook_endpoints e ON e.id = d.endpoint_id \
             WHERE d.status = 'pending' AND d.next_attempt_at <= {at} \
               AND (d.claimed_until IS NULL OR d.claimed_until < {at}) AND e.enabled \
             ORDER BY d.next_attempt_at LIMIT {count} {lock}) \
           AND status = 'pending' AND (claimed_until IS NULL OR claimed_until < {at}) \
         RETURNING *"
    );
    let values = match backend {
        DbBackend::Postgres => vec![lease_until.into(), now.into(), (limit as i64).into()],
        // SQLite binds each `?` in order: the lease, the instant twice, the limit.
        _ => vec![
            lease_until.into(),
            now.into(),
            now.into(),
            (limit as i64).into(),
            now.into(),
        ],
    };
    Ok(webhook_delivery::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(backend, sql, values))
        .all(db)
        .await?)
}

/// Opens a transaction that reads, then writes. SQLite takes its write lock at a transaction's
/// first write, and a transaction that read first cannot wait for it: it fails at once with
/// "database is locked" whenever another connection wrote in between (under steady ledger
/// writes, nearly always). So on SQLite its first statement is a write that changes nothing,
/// which waits for the lock like any write (the busy timeout) and holds it to the end.
async fn begin_writing(db: &DatabaseConnection) -> Result<DatabaseTransaction> {
    let txn = db.begin().await?;
    if txn.get_database_backend() == DbBackend::Sqlite {
        txn.execute_unprepared("UPDATE webhook_events SET fanned_out = fanned_out WHERE 0")
            .await?;
    }
    Ok(txn)
}
