use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::HeaderMap;

use super::json::{
    ActiveBalanceResponse, AddResponse, CycleBalance, CycleResponse, RestError, SubtractResponse,
    end_user_id, far_future, integer, object, timestamp,
};
use crate::error::Error;
use crate::http::AppState;
use crate::ledger::cycles::{Cycle, CycleStatus, StartCycleRequest};
use crate::ledger::{AddCreditsRequest, EndUserId, GrantSource, Ledger, SubtractCreditsRequest};

/// Creduse's default validity when `validity_days` is absent or null.
const DEFAULT_VALIDITY_DAYS: i64 = 31;

type RestResult<T> = Result<Json<T>, RestError>;

/// The REST API is for the customer's backend: secret keys only.
async fn ledger_for_secret_key<'a>(
    state: &'a AppState,
    headers: &HeaderMap,
) -> Result<&'a Ledger, Error> {
    state
        .auth
        .identify(crate::http::authorization_header(headers))
        .await?
        .require_secret_key()?;
    Ok(&state.ledger)
}

/// Amounts must be positive: Creduse's `AMOUNT_NEGATIVE` for zero and below.
fn amount(fields: &serde_json::Map<String, serde_json::Value>) -> Result<i64, Error> {
    let amount = integer(fields, "amount", None)?;
    if amount <= 0 {
        return Err(Error::AmountNotPositive { field: "amount" });
    }
    Ok(amount)
}

pub async fn add(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult<AddResponse> {
    let ledger = ledger_for_secret_key(&state, &headers).await?;
    let fields = object(&body)?;
    let user = end_user_id(&fields)?;
    let amount = amount(&fields)?;
    let validity_days = integer(&fields, "validity_days", Some(DEFAULT_VALIDITY_DAYS))?;
    ledger
        .add_credits(AddCreditsRequest {
            end_user_id: user.clone(),
            amount,
            validity_days: Some(validity_days),
            expires_at: None,
            effective_at: None,
            source: GrantSource::Manual,
            priority: None,
            description: None,
            metadata: None,
            idempotency_key: None,
        })
        .await?;
    Ok(Json(AddResponse {
        end_user_id: user,
        amount,
        validity_days,
    }))
}

pub async fn subtract(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult<SubtractResponse> {
    let ledger = ledger_for_secret_key(&state, &headers).await?;
    let fields = object(&body)?;
    let user = end_user_id(&fields)?;
    let amount = amount(&fields)?;
    require_known(ledger, &user).await?;
    ledger
        .subtract_credits(SubtractCreditsRequest {
            end_user_id: user.clone(),
            amount,
            description: None,
            metadata: None,
            idempotency_key: None,
        })
        .await?;
    Ok(Json(SubtractResponse {
        end_user_id: user,
        amount,
    }))
}

pub async fn start_cycle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult<CycleResponse> {
    let ledger = ledger_for_secret_key(&state, &headers).await?;
    let fields = object(&body)?;
    let user = end_user_id(&fields)?;
    let amount = amount(&fields)?;
    let validity_days = integer(&fields, "validity_days", Some(DEFAULT_VALIDITY_DAYS))?;
    let outcome = ledger
        .start_cycle(StartCycleRequest {
            end_user_id: user,
            amount,
            validity_days,
            rollover_max: 0,
            idempotency_key: None,
        })
        .await?;
    Ok(Json(cycle_response(&outcome.cycle)))
}

pub async fn stop_cycle(
    State(state): State<AppState>,
    headers: HeaderMap,
    body: Bytes,
) -> RestResult<CycleResponse> {
    let ledger = ledger_for_secret_key(&state, &headers).await?;
    let fields = object(&body)?;
    let user = end_user_id(&fields)?;
    require_known(ledger, &user).await?;
    let cycle = ledger.stop_cycle(user).await?;
    Ok(Json(cycle_response(&cycle)))
}

/// A GET with a JSON body, as the Creduse SDK sends it; `?end_user_id=` works too.
pub async fn get_active_balance(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
    body: Bytes,
) -> RestResult<ActiveBalanceResponse> {
    let ledger = ledger_for_secret_key(&state, &headers).await?;
    let mut fields = object(&body)?;
    if let Some(id) = query.get("end_user_id") {
        fields
            .entry("end_user_id")
            .or_insert_with(|| serde_json::Value::String(id.clone()));
    }
    let user = end_user_id(&fields)?;
    require_known(ledger, &user).await?;
    let balance = ledger.balance(user.clone()).await?;
    let canceled_cycles: Vec<uuid::Uuid> = ledger
        .cycles(user.clone())
        .await?
        .into_iter()
        .filter(|c| c.status == CycleStatus::Canceled)
        .map(|c| c.id)
        .collect();
    let by_cycle = balance
        .grants
        .iter()
        .map(|grant| CycleBalance {
            cycle_start: timestamp(grant.effective_at),
            cycle_end: timestamp(grant.expires_at.unwrap_or_else(far_future)),
            amount: grant.spendable(),
            starting_amount: grant.amount,
            status: match grant.cycle_id {
                Some(cycle) if canceled_cycles.contains(&cycle) => "canceled",
                _ => "active",
            },
            cycle_type: if grant.cycle_id.is_some() {
                "recurring"
            } else {
                "one-time"
            },
        })
        .collect();
    Ok(Json(ActiveBalanceResponse {
        end_user_id: user,
        active_balance: balance.available,
        active_balance_by_cycle: by_cycle,
    }))
}

/// Creduse answers `USER_DOES_NOT_EXIST` for end users it has never seen.
async fn require_known(ledger: &Ledger, user: &EndUserId) -> Result<(), Error> {
    if ledger.end_user_exists(user.clone()).await? {
        Ok(())
    } else {
        Err(Error::NotFound(format!("end user {user} does not exist")))
    }
}

fn cycle_response(cycle: &Cycle) -> CycleResponse {
    CycleResponse {
        end_user_id: cycle.end_user_id.clone(),
        amount: cycle.amount,
        created_at: timestamp(cycle.created_at),
        cycle_type: "recurring",
        current_cycle_start: timestamp(cycle.current_period_start),
        current_cycle_end: timestamp(cycle.current_period_end),
        status: cycle.status.as_str(),
    }
}
