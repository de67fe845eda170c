//! The event types and their payloads, built from what a write appended: a pure function.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use uuid::Uuid;

use super::alerts::{Alert, AlertState, crossings};
use crate::ledger::entry::Entry;
use crate::ledger::grant::Grant;
use crate::ledger::types::EntryKind;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    CreditsGranted,
    CreditsDebited,
    CreditsExpired,
    CreditsVoided,
    CreditsReversed,
    HoldExpired,
    PurchaseCompleted,
    PurchaseRefunded,
    BalanceLow,
    BalanceDepleted,
    BalanceRecovered,
    /// Sent by `sendTestWebhookEvent` only.
    Test,
}

impl EventType {
    /// What an endpoint may subscribe to.
    pub const SUBSCRIBABLE: [EventType; 11] = [
        Self::CreditsGranted,
        Self::CreditsDebited,
        Self::CreditsExpired,
        Self::CreditsVoided,
        Self::CreditsReversed,
        Self::HoldExpired,
        Self::PurchaseCompleted,
        Self::PurchaseRefunded,
        Self::BalanceLow,
        Self::BalanceDepleted,
        Self::BalanceRecovered,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::CreditsGranted => "credits.granted",
            Self::CreditsDebited => "credits.debited",
            Self::CreditsExpired => "credits.expired",
            Self::CreditsVoided => "credits.voided",
            Self::CreditsReversed => "credits.reversed",
            Self::HoldExpired => "hold.expired",
            Self::PurchaseCompleted => "purchase.completed",
            Self::PurchaseRefunded => "purchase.refunded",
            Self::BalanceLow => "balance.low",
            Self::BalanceDepleted => "balance.depleted",
            Self::BalanceRecovered => "balance.recovered",
            Self::Test => "test",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::SUBSCRIBABLE
            .into_iter()
            .find(|kind| kind.as_str() == value)
    }
}

/// One event for the outbox.
#[derive(Clone, Debug, PartialEq)]
pub struct OutboundEvent {
    pub id: Uuid,
    pub event_type: EventType,
    pub end_user_id: Option<String>,
    /// The event's `data`.
    pub data: Value,
    pub created_at: DateTime<Utc>,
}

impl OutboundEvent {
    pub fn new(
        event_type: EventType,
        end_user_id: Option<String>,
        data: Value,
        now: DateTime<Utc>,
    ) -> Self {
        Self {
            id: Uuid::now_v7(),
            event_type,
            end_user_id,
            data,
            created_at: now,
        }
    }
}

/// What a write did that may make events, in the order it did it.
#[derive(Clone, Debug)]
pub enum Source {
    /// An entry it appended: credits events, and balance alerts from its balance after.
    Entry(Entry),
    /// An event that is not one entry's own (a hold that timed out, a refund), with the
    /// available balance after it.
    Event { event_type: EventType, data: Value },
}

/// What the events of one end user's write need besides its sources.
pub struct Plan<'a> {
    pub end_user_id: &'a str,
    /// The end user's thresholds (their own, or the default ones).
    pub thresholds: &'a [i64],
    /// Grants the entries may name (for a new grant's source and expiry).
    pub grants: &'a HashMap<Uuid, &'a Grant>,
    pub debits_wanted: bool,
    pub now: DateTime<Utc>,
}

/// The events of one end user's write, in order: each entry's own event, then the balance
/// alerts its balance after fires. `state` is the end user's alert state, changed as they fire.
pub fn plan(plan: &Plan<'_>, sources: &[Source], state: &mut AlertState) -> Vec<OutboundEvent> {
    let mut events = Vec::new();
    let mut balance: Option<i64> = None;
    let event = |event_type: EventType, data: Value| {
        OutboundEvent::new(
            event_type,
            Some(plan.end_user_id.to_owned()),
            data,
            plan.now,
        )
    };
    for source in sources {
        match source {
            Source::Entry(entry) => {
                for (event_type, data) in entry_events(plan, entry) {
                    events.push(event(event_type, data));
                }
                // The first entry's balance before follows from its change; after that, from
                // the entry before it (a grant that takes effect later moves nothing now).
                let before = balance.unwrap_or((entry.balance_after - entry.delta()).max(0));
                let after = entry.balance_after;
                balance = Some(after);
                for alert in crossings(plan.thresholds, state, before, after) {
                    let (event_type, data) = alert_event(plan, entry, alert);
                    events.push(event(event_type, data));
                }
            }
            Source::Event { event_type, data } => events.push(event(*event_type, data.clone())),
        }
    }
    events
}

/// The common fields of every event about an entry.
fn entry_data(plan: &Plan<'_>, entry: &Entry) -> serde_json::Map<String, Value> {
    let mut data = serde_json::Map::new();
    data.insert("endUserId".into(), json!(plan.end_user_id));
    data.insert("entryId".into(), json!(entry.id));
    data.insert("amount".into(), json!(entry.amount));
    data.insert("balanceAfter".into(), json!(entry.balance_after));
    data.insert("grantId".into(), json!(entry.grant_id));
    data.insert("description".into(), json!(entry.description));
    data.insert("metadata".into(), json!(entry.metadata));
    data.insert("occurredAt".into(), json!(entry.created_at));
    data
}

fn entry_events(plan: &Plan<'_>, entry: &Entry) -> Vec<(EventType, Value)> {
    let event_type = match entry.kind {
        EntryKind::Grant | EntryKind::Renewal => EventType::CreditsGranted,
        EntryKind::Debit if plan.debits_wanted => EventType::CreditsDebited,
        EntryKind::Expiry => EventType::CreditsExpired,
        EntryKind::Void => EventType::CreditsVoided,
        EntryKind::Reversal => EventType::CreditsReversed,
        _ => return Vec::new(),
    };
    let mut data = entry_data(plan, entry);
    let grant = entry.grant_id.and_then(|id| plan.grants.get(&id));
    let mut events = Vec::with_capacity(2);
    match event_type {
        EventType::CreditsGranted => {
            if let Some(grant) = grant {
                data.insert("source".into(), json!(grant.source.as_str()));
                data.insert("effectiveAt".into(), json!(grant.effective_at));
                data.insert("expiresAt".into(), json!(grant.expires_at));
            }
            data.insert("renewal".into(), json!(entry.kind == EntryKind::Renewal));
        }
        EventType::CreditsReversed => {
            data.insert("reversedEntryId".into(), json!(entry.reversed_entry_id));
        }
        _ => {}
    }
    events.push((event_type, Value::Object(data)));
    if entry.kind == EntryKind::Grant
        && let Some(payment) = grant.and_then(|g| g.payment.as_ref())
    {
        events.push((
            EventType::PurchaseCompleted,
            json!({
                "endUserId": plan.end_user_id,
                "entryId": entry.id,
                "grantId": entry.grant_id,
                "credits": entry.amount,
                "balanceAfter": entry.balance_after,
                "reference": payment.reference,
                "paymentReference": payment.payment_reference,
                "paidAmount": payment.amount,
                "currency": payment.currency,
                "expiresAt": grant.and_then(|g| g.expires_at),
                "occurredAt": entry.created_at,
            }),
        ));
    }
    events
}

fn alert_event(plan: &Plan<'_>, entry: &Entry, alert: Alert) -> (EventType, Value) {
    let mut data = json!({
        "endUserId": plan.end_user_id,
        "balanceAfter": entry.balance_after,
        "entryId": entry.id,
        "entryKind": entry.kind.as_str().to_uppercase(),
        "thresholds": plan.thresholds,
        "occurredAt": entry.created_at,
    });
    let event_type = match alert {
        Alert::Low(threshold) => {
            data["threshold"] = json!(threshold);
            EventType::BalanceLow
        }
        Alert::Depleted => EventType::BalanceDepleted,
        Alert::Recovered => EventType::BalanceRecovered,
    };
    (event_type, data)
}

#[cfg(test)]
mod tests {
    use chrono::Duration;

    use super::*;
    use crate::ledger::EndUserId;
    use crate::ledger::types::GrantSource;

    fn entry(kind: EntryKind, amount: i64, balance_after: i64) -> Entry {
        Entry::new(
            kind,
            EndUserId::from_stored("user_2NqZ".to_owned()),
            1,
            amount,
            balance_after,
            Utc::now(),
        )
    }

    fn types(events: &[OutboundEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.event_type.as_str()).collect()
    }

    fn run(debits_wanted: bool, sources: &[Source], state: &mut AlertState) -> Vec<OutboundEvent> {
        let grants = HashMap::new();
        plan(
            &Plan {
                end_user_id: "user-1",
                thresholds: &[100, 50],
                grants: &grants,
                debits_wanted,
                now: Utc::now(),
            },
            sources,
            state,
        )
    }

    #[test]
    fn debits_make_events_only_when_wanted_but_always_fire_alerts() {
        let sources = [Source::Entry(entry(EntryKind::Debit, 80, 40))];
        let mut state = AlertState::default();
        let events = run(false, &sources, &mut state);
        assert_eq!(types(&events), ["balance.low", "balance.low"]);
        assert_eq!(events[0].data["threshold"], 100);
        assert_eq!(events[1].data["threshold"], 50);
        assert_eq!(events[0].data["endUserId"], "user-1");
        assert_eq!(events[0].data["balanceAfter"], 40);
        let mut state = AlertState::default();
        assert_eq!(
            types(&run(true, &sources, &mut state)),
            ["credits.debited", "balance.low", "balance.low"]
        );
    }

    #[test]
    fn the_entries_of_one_write_chain_their_balances() {
        // An expiry to 60, then a debit to 0: the debit starts from 60, not from its own change.
        let sources = [
            Source::Entry(entry(EntryKind::Expiry, 90, 60)),
            Source::Entry(entry(EntryKind::Debit, 60, 0)),
        ];
        let mut state = AlertState::default();
        assert_eq!(
            types(&run(false, &sources, &mut state)),
            [
                "credits.expired",
                "balance.low",
                "balance.low",
                "balance.depleted"
            ]
        );
        let grant = [Source::Entry(entry(EntryKind::Grant, 500, 500))];
        assert_eq!(
            types(&run(false, &grant, &mut state)),
            ["credits.granted", "balance.recovered"]
        );
    }

    #[test]
    fn a_purchased_grant_is_also_a_completed_purchase() {
        let now = Utc::now();
        let grant = Grant {
            id: Uuid::now_v7(),
            end_user_id: EndUserId::from_stored("user_2NqZ".to_owned()),
            amount: 500,
            remaining: 500,
            source: GrantSource::Purchase,
            effective_at: now,
            expires_at: Some(now + Duration::days(30)),
            priority: None,
            description: None,
            metadata: None,
            created_at: now,
            voided_at: None,
            held: 0,
            cycle_id: None,
            payment: Some(crate::ledger::Payment {
                reference: "cs_1".into(),
                payment_reference: Some("pi_1".into()),
                amount: Some(999),
                currency: Some("usd".into()),
            }),
        };
        let mut granted = entry(EntryKind::Grant, 500, 500);
        granted.grant_id = Some(grant.id);
        let grants = HashMap::from([(grant.id, &grant)]);
        let events = plan(
            &Plan {
                end_user_id: "u",
                thresholds: &[],
                grants: &grants,
                debits_wanted: false,
                now,
            },
            &[Source::Entry(granted)],
            &mut AlertState::default(),
        );
        assert_eq!(types(&events), ["credits.granted", "purchase.completed"]);
        assert_eq!(events[0].data["source"], "purchase");
        assert_eq!(events[1].data["paymentReference"], "pi_1");
        assert_eq!(events[1].data["credits"], 500);
    }
}
