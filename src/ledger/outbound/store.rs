//! Writing a write's events to the outbox, and the alert state they read and change. Runs in
//! the write's transaction, after the account lock: one read of the alert states and at most
//! one statement per table, whatever the number of end users (the write pipeline calls it once
//! per batch).

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::sea_query::OnConflict;
use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
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

/// Records the events of a write batch's entries (in the order they were decided). Returns how
/// many.
pub async fn record_batch(
    txn: &impl ConnectionTrait,
    entries: &[Entry],
    new_grants: &[Grant],
    outbound: &Outbound,
    now: DateTime<Utc>,
) -> Result<usize> {
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
    record_for(txn, by_user, &grants, outbound, now).await
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
    let mut stored = load_alerts(txn, &users).await?;
    let mut events = Vec::new();
    let mut changed = Vec::new();
    for (user, sources) in &writes {
        let row = stored.remove(user);
        let thresholds = row
            .as_ref()
            .and_then(|row| row.thresholds.as_ref())
            .map(parse_numbers)
            .unwrap_or_else(|| outbound.default_thresholds().to_vec());
        let mut state = row.as_ref().map(state_of).unwrap_or_default();
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
    save_alert_states(txn, &changed, now).await?;
    insert_events(txn, &events).await?;
    Ok(events.len())
}

pub(crate) fn parse_numbers(value: &serde_json::Value) -> Vec<i64> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(serde_json::Value::as_i64).collect())
        .unwrap_or_default()
}

fn state_of(row: &balance_alert::Model) -> AlertState {
    AlertState {
        fired: parse_numbers(&row.fired).into_iter().collect(),
        depleted: row.depleted,
    }
}

async fn load_alerts(
    txn: &impl ConnectionTrait,
    users: &[String],
) -> Result<HashMap<String, balance_alert::Model>> {
    let mut stored = HashMap::with_capacity(users.len());
    for chunk in users.chunks(ROWS_PER_STATEMENT) {
        let rows = balance_alert::Entity::find()
            .filter(balance_alert::Column::EndUserId.is_in(chunk.iter().cloned()))
            .all(txn)
            .await?;
        stored.extend(rows.into_iter().map(|row| (row.end_user_id.clone(), row)));
    }
    Ok(stored)
}

/// Writes what fired; the thresholds of an existing row are left as they are.
async fn save_alert_states(
    txn: &impl ConnectionTrait,
    states: &[(String, AlertState)],
    now: DateTime<Utc>,
) -> Result<()> {
    for chunk in states.chunks(ROWS_PER_STATEMENT) {
        balance_alert::Entity::insert_many(chunk.iter().map(|(user, state)| {
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
        )
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}

pub async fn insert_events(txn: &impl ConnectionTrait, events: &[OutboundEvent]) -> Result<()> {
    for chunk in events.chunks(ROWS_PER_STATEMENT) {
        webhook_event::Entity::insert_many(chunk.iter().map(|event| webhook_event::ActiveModel {
            id: Set(event.id),
            event_type: Set(event.event_type.as_str().to_owned()),
            end_user_id: Set(event.end_user_id.clone()),
            payload: Set(event.data.clone()),
            created_at: Set(event.created_at),
            fanned_out: Set(false),
        }))
        .exec_without_returning(txn)
        .await?;
    }
    Ok(())
}
