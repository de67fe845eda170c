//! Writing a write's events to the outbox, and the alert state they read and change. Runs in
//! the write's transaction, after the account lock: one read of the alert states and at most
//! one statement per table, whatever the number of end users. The write pipeline reads the
//! alert states with its grants and writes the events with the rest of its batch, so it only
//! plans here (`plan_batch`) and takes the statements (`alert_state_statements`,
//! `event_statements`).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter,
    QueryTrait, Statement,
};
use serde_json::json;
use uuid::Uuid;

use super::alerts::AlertState;
use super::events::{OutboundEvent, Plan, Source, plan};
use super::{Outbound, end_user_text};
use crate::entities::{balance_alert, webhook_event};
use crate::error::Result;
use crate::ledger::entry::Entry;
use crate::ledger::grant::Grant;
use crate::ledger::types::EndUserId;

/// Rows per multi-row statement, well under both databases' bind-parameter limits.
const ROWS_PER_STATEMENT: usize = 1_000;

/// Records the events of one end user's write. Returns how many.
pub async fn record(
    txn: &impl ConnectionTrait,
    end_user_id: EndUserId,
    sources: &[Source],
    grants: &[Grant],
    outbound: &Outbound,
    now: DateTime<Utc>,
) -> Result<usize> {
    if sources.is_empty() {
        return Ok(0);
    }
    let user = end_user_text(&end_user_id);
    let grants: HashMap<Uuid, &Grant> = grants.iter().map(|g| (g.id, g)).collect();
    record_for(txn, vec![(user, sources.to_vec())], &grants, outbound, now).await
}

/// An end user's alert settings and state as stored; an end user without a row has the default
/// thresholds and nothing fired.
#[derive(Clone, Debug, Default)]
pub struct StoredAlerts {
    /// Their own thresholds (`None`: the default ones).
    pub thresholds: Option<Vec<i64>>,
    pub state: AlertState,
}

impl StoredAlerts {
    /// From a stored row's columns.
    pub fn from_columns(
        thresholds: Option<&serde_json::Value>,
        fired: &serde_json::Value,
        depleted: bool,
    ) -> Self {
        Self {
            thresholds: thresholds.map(parse_numbers),
            state: AlertState {
                fired: parse_numbers(fired).into_iter().collect(),
                depleted,
            },
        }
    }
}

/// What a write batch's entries tell the application: the events, and the alert states they
/// changed. Planned in memory from the alert states the batch loaded under its locks, so the
/// pipeline can write both with the rest of the batch.
pub struct BatchEvents {
    pub events: Vec<OutboundEvent>,
    pub changed: Vec<(String, AlertState)>,
}

/// Plans the events of a write batch's entries (in the order they were decided). `stored`
/// holds the alert rows of the batch's end users (those without one are absent).
pub fn plan_batch(
    entries: &[Entry],
    new_grants: &[Grant],
    stored: &HashMap<String, StoredAlerts>,
    outbound: &Outbound,
    now: DateTime<Utc>,
) -> BatchEvents {
    let mut by_user: Vec<(String, Vec<Source>)> = Vec::new();
    let mut index: HashMap<&EndUserId, usize> = HashMap::new();
    for entry in entries {
        let at = *index.entry(&entry.end_user_id).or_insert_with(|| {
            by_user.push((end_user_text(&entry.end_user_id), Vec::new()));
            by_user.len() - 1
        });
        by_user[at].1.push(Source::Entry(entry.clone()));
    }
    let grants: HashMap<Uuid, &Grant> = new_grants.iter().map(|g| (g.id, g)).collect();
    planned(&by_user, stored, &grants, outbound, now)
}

async fn record_for(
    txn: &impl ConnectionTrait,
    writes: Vec<(String, Vec<Source>)>,
    grants: &HashMap<Uuid, &Grant>,
    outbound: &Outbound,
    now: DateTime<Utc>,
) -> Result<usize> {
    if writes.is_empty() {
        return Ok(0);
    }
    let users: Vec<String> = writes.iter().map(|(user, _)| user.clone()).collect();
    let stored = load_alerts(txn, &users).await?;
    let BatchEvents { events, changed } = planned(&writes, &stored, grants, outbound, now);
    for (statement, _) in alert_state_statements(txn.get_database_backend(), &changed, now) {
        txn.execute_raw(statement).await?;
    }
    insert_events(txn, &events).await?;
    Ok(events.len())
}

/// The events of each end user's sources, against their stored alert state.
fn planned(
    writes: &[(String, Vec<Source>)],
    stored: &HashMap<String, StoredAlerts>,
    grants: &HashMap<Uuid, &Grant>,
    outbound: &Outbound,
    now: DateTime<Utc>,
) -> BatchEvents {
    let mut events = Vec::new();
    let mut changed = Vec::new();
    for (user, sources) in writes {
        let row = stored.get(user);
        let thresholds = row
            .and_then(|row| row.thresholds.clone())
            .unwrap_or_else(|| outbound.default_thresholds().to_vec());
        let mut state = row.map(|row| row.state.clone()).unwrap_or_default();
        let before = state.clone();
        events.extend(plan(
            &Plan {
                end_user_id: user,
                thresholds: &thresholds,
                grants,
                debits_wanted: outbound.debits_wanted(),
                now,
            },
            sources,
            &mut state,
        ));
        if state != before {
            changed.push((user.clone(), state));
        }
    }
    BatchEvents { events, changed }
}

pub(crate) fn parse_numbers(value: &serde_json::Value) -> Vec<i64> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default()
}

async fn load_alerts(
    txn: &impl ConnectionTrait,
    users: &[String],
) -> Result<HashMap<String, StoredAlerts>> {
    let mut stored = HashMap::with_capacity(users.len());
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let rows = balance_alert::Entity::find()
            .filter(balance_alert::Column::EndUserId.is_in(chunk.iter().cloned()))
            .all(txn)
            .await?;
        stored.extend(rows.into_iter().map(|row| {
            let alerts =
                StoredAlerts::from_columns(row.thresholds.as_ref(), &row.fired, row.depleted);
            (row.end_user_id, alerts)
        }));
    }
    Ok(stored)
}

/// Writes what fired, one statement per chunk, each with the rows it must touch; the thresholds
/// of an existing row are left as they are.
pub fn alert_state_statements(
    backend: DbBackend,
    states: &[(String, AlertState)],
    now: DateTime<Utc>,
) -> Vec<(Statement, usize)> {
    states
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let upsert = balance_alert::Entity::insert_many(chunk.iter().map(|(user, state)| {
                balance_alert::ActiveModel {
                    end_user_id: Set(user.clone()),
                    thresholds: Set(None),
                    fired: Set(json!(state.fired)),
                    depleted: Set(state.depleted),
                    updated_at: Set(now),
                }
            }))
            .on_conflict(
                OnConflict::column(balance_alert::Column::EndUserId)
                    .update_columns([
                        balance_alert::Column::Fired,
                        balance_alert::Column::Depleted,
                        balance_alert::Column::UpdatedAt,
                    ])
                    .to_owned(),
            );
            (upsert.build(backend), chunk.len())
        })
        .collect()
}

/// Inserts events into the outbox, one statement per chunk, each with its row count.
pub fn event_statements(backend: DbBackend, events: &[OutboundEvent]) -> Vec<(Statement, usize)> {
    events
        .chunks(ROWS_PER_STATEMENT)
        .map(|chunk| {
            let insert = webhook_event::Entity::insert_many(chunk.iter().map(|event| {
                webhook_event::ActiveModel {
                    id: Set(event.id),
                    event_type: Set(event.event_type.as_str().to_owned()),
                    end_user_id: Set(event.end_user_id.clone()),
                    payload: Set(event.data.clone()),
                    created_at: Set(event.created_at),
                    fanned_out: Set(false),
                }
            }));
            (insert.build(backend), chunk.len())
        })
        .collect()
}

pub async fn insert_events(txn: &impl ConnectionTrait, events: &[OutboundEvent]) -> Result<()> {
    for (statement, _) in event_statements(txn.get_database_backend(), events) {
        txn.execute_raw(statement).await?;
    }
    Ok(())
}
