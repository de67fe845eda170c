//! An end user with 100,000 ledger entries, as a metering service's heavy users have: reading
//! the past (`balance(at:)`), paging the history and correcting a debit all still work, and cost
//! what a statement or two does. Seeding 100,000 entries through the API would take minutes,
//! so the test writes them with the crate's own table models in one transaction, keeping the
//! ledger consistent (entries, allocations, the grant's remaining, the account's last
//! sequence: `tally verify` finds nothing), then asks everything through HTTP.

use crate::helpers::*;
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use sea_orm::{ActiveValue::Set, DatabaseConnection, EntityTrait, TransactionTrait};
use serde_json::json;
use tally::entities::{account, grant, ledger_allocation, ledger_entry};
use uuid::Uuid;

on_both_databases!(a_user_with_100_000_entries_reads_pages_and_corrects,);

const DEBITS: i64 = 100_000;
const GRANTED: i64 = 1_000_000;
/// Rows per INSERT: 13 columns × 1,000 stays under SQLite's 32,766 bind parameters.
const BATCH: usize = 1_000;

fn rfc3339(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// One grant of `GRANTED` credits at `start`, then `DEBITS` debits of one credit, one a second.
async fn seed(db: &DatabaseConnection, user: Uuid, start: DateTime<Utc>) -> Uuid {
    let grant_id = Uuid::now_v7();
    let txn = db.begin().await.unwrap();
    account::Entity::insert(account::ActiveModel {
        end_user_id: Set(user.to_string()),
        last_seq: Set(DEBITS + 1),
        created_at: Set(start),
        updated_at: Set(start + Duration::seconds(DEBITS)),
    })
    .exec_without_returning(&txn)
    .await
    .unwrap();
    grant::Entity::insert(grant::ActiveModel {
        id: Set(grant_id),
        end_user_id: Set(user.to_string()),
        amount: Set(GRANTED),
        remaining: Set(GRANTED - DEBITS),
        source: Set("manual".into()),
        effective_at: Set(start),
        expires_at: Set(None),
        priority: Set(None),
        description: Set(None),
        metadata: Set(None),
        created_at: Set(start),
        voided_at: Set(None),
        held: Set(0),
        cycle_id: Set(None),
        reference: Set(None),
        payment_reference: Set(None),
        paid_amount: Set(None),
        paid_currency: Set(None),
    })
    .exec_without_returning(&txn)
    .await
    .unwrap();
    let entry =
        |seq: i64, kind: &str, balance_after: i64, at: DateTime<Utc>| ledger_entry::ActiveModel {
            id: Set(Uuid::now_v7()),
            end_user_id: Set(user.to_string()),
            seq: Set(seq),
            kind: Set(kind.into()),
            amount: Set(if kind == "grant" { GRANTED } else { 1 }),
            balance_after: Set(balance_after),
            grant_id: Set((kind == "grant").then_some(grant_id)),
            description: Set(None),
            metadata: Set(None),
            idempotency_key: Set(None),
            created_at: Set(at),
            hold_id: Set(None),
            reversed_entry_id: Set(None),
        };
    ledger_entry::Entity::insert(entry(1, "grant", GRANTED, start))
        .exec_without_returning(&txn)
        .await
        .unwrap();
    let debits: Vec<ledger_entry::ActiveModel> = (1..=DEBITS)
        .map(|i| entry(i + 1, "debit", GRANTED - i, start + Duration::seconds(i)))
        .collect();
    for batch in debits.chunks(BATCH) {
        let allocations = batch.iter().map(|debit| ledger_allocation::ActiveModel {
            entry_id: Set(*debit.id.as_ref()),
            grant_id: Set(grant_id),
            amount: Set(1),
            position: Set(0),
        });
        ledger_entry::Entity::insert_many(batch.to_vec())
            .exec_without_returning(&txn)
            .await
            .unwrap();
        ledger_allocation::Entity::insert_many(allocations)
            .exec_without_returning(&txn)
            .await
            .unwrap();
    }
    txn.commit().await.unwrap();
    grant_id
}

const BALANCE_AT: &str = "query($id: ID!, $at: DateTime) { balance(endUserId: $id, at: $at) { available grants { id remaining } } }";
const PAGE: &str = "query($id: ID!, $first: Int, $after: String, $from: DateTime, $to: DateTime) {
    transactions(endUserId: $id, first: $first, after: $after, from: $from, to: $to) {
      edges { cursor node { id sequence kind amount balanceAfter createdAt } }
      pageInfo { hasNextPage endCursor } } }";

async fn a_user_with_100_000_entries_reads_pages_and_corrects(app: TestApp) {
    let db = app.db().await;
    let user = Uuid::new_v4();
    let id = user.to_string();
    // Old enough that every seeded entry is in the past.
    let start = (Utc::now() - Duration::days(3)).with_timezone(&Utc);
    let start = DateTime::parse_from_rfc3339(&rfc3339(start))
        .unwrap()
        .to_utc();
    let grant_id = seed(&db, user, start).await;
    assert_eq!(
        tally::ledger::verify::verify(&db).await.unwrap(),
        Vec::<String>::new(),
        "the seeded ledger is consistent"
    );

    // The balance at past instants: before any debit, halfway, after the last.
    for (at, available) in [
        (start, GRANTED),
        (start + Duration::milliseconds(50_000_500), GRANTED - 50_000),
        (start + Duration::seconds(DEBITS), GRANTED - DEBITS),
        (start + Duration::days(2), GRANTED - DEBITS),
    ] {
        let balance = app
            .ok(BALANCE_AT, json!({ "id": id, "at": rfc3339(at) }))
            .await;
        assert_eq!(balance["available"], available, "at {at}");
        assert_eq!(balance["grants"][0]["remaining"], available, "at {at}");
    }
    assert_eq!(app.available(&id).await, GRANTED - DEBITS);

    // Paging from the newest entry: contiguous sequences, across several pages.
    let mut after: Option<String> = None;
    let mut expected_seq = DEBITS + 1;
    for _ in 0..5 {
        let page = app
            .ok(PAGE, json!({ "id": id, "first": 100, "after": after }))
            .await;
        let edges = page["edges"].as_array().unwrap();
        assert_eq!(edges.len(), 100);
        for edge in edges {
            assert_eq!(edge["node"]["sequence"], expected_seq);
            expected_seq -= 1;
        }
        assert_eq!(page["pageInfo"]["hasNextPage"], true);
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_owned);
    }
    // A window deep in the history, by time: debits 40,001 to 40,010.
    let page = app
        .ok(
            PAGE,
            json!({
                "id": id,
                "first": 100,
                "from": rfc3339(start + Duration::seconds(40_001)),
                "to": rfc3339(start + Duration::seconds(40_011)),
            }),
        )
        .await;
    let sequences: Vec<i64> = page["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|edge| edge["node"]["sequence"].as_i64().unwrap())
        .collect();
    assert_eq!(sequences, (40_002..=40_011).rev().collect::<Vec<_>>());
    assert_eq!(page["pageInfo"]["hasNextPage"], false);

    // Writes still work: a debit, and reversing one of the seeded debits (twice: the second
    // finds the first's reversal by a sum, not a list).
    let debit = app
        .subtract_credits(json!({ "endUserId": id, "amount": 5 }))
        .await;
    assert_eq!(debit["entry"]["sequence"], DEBITS + 2);
    let old_debit = page["edges"][0]["node"]["id"].clone();
    let reverse = "mutation($input: ReverseDebitInput!) { reverseDebit(input: $input) { entry { amount } balance { available } } }";
    let reversed = app
        .ok(reverse, json!({ "input": { "entryId": old_debit } }))
        .await;
    assert_eq!(reversed["entry"]["amount"], 1);
    let again = app
        .graphql(reverse, json!({ "input": { "entryId": old_debit } }))
        .await;
    assert_eq!(error_code(&again), "BAD_USER_INPUT", "{again}");
    assert_eq!(app.available(&id).await, GRANTED - DEBITS - 5 + 1);
    let balance = app.balance(&id).await;
    assert_eq!(balance["grants"][0]["id"], grant_id.to_string());
    assert_eq!(
        tally::ledger::verify::verify(&db).await.unwrap(),
        Vec::<String>::new()
    );
}
