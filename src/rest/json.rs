//! Request parsing and the response shapes Creduse clients expect (every field non-null).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::error::Error;
use crate::ledger::EndUserId;

/// A Creduse error body: `{error_code, message, timestamp}`.
pub struct RestError(pub Error);

impl From<Error> for RestError {
    fn from(error: Error) -> Self {
        Self(error)
    }
}

impl IntoResponse for RestError {
    fn into_response(self) -> Response {
        let (status, code) = self.0.rest_status_and_code();
        let body = serde_json::json!({
            "error_code": code,
            "message": self.0.public().message,
            "timestamp": timestamp(Utc::now()),
        });
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (status, Json(body)).into_response()
    }
}

pub fn timestamp(at: DateTime<Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// Creduse has no "never": a grant that never expires reports this end.
pub fn far_future() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("9999-12-31T23:59:59Z")
        .expect("a valid instant")
        .with_timezone(&Utc)
}

/// The request's JSON object (an empty body counts as `{}`).
pub fn object(body: &[u8]) -> Result<Map<String, Value>, Error> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    if let Some(key) = crate::http::unique_keys::first_duplicate_key(body) {
        return Err(Error::bad_input(
            "body",
            format!("gives the key \"{key}\" twice in one object"),
        ));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::bad_input("body", "must be a JSON object")),
        Err(_) => Err(Error::bad_input("body", "is not valid JSON")),
    }
}

/// Creduse names end users by UUID, and so does this surface: any spelling `Uuid` reads, stored
/// as the lower-case hyphenated form, which is how GraphQL finds the same end user.
pub fn end_user_id(fields: &Map<String, Value>) -> Result<EndUserId, Error> {
    match fields.get("end_user_id") {
        Some(Value::String(text)) => Uuid::parse_str(text)
            .map(|uuid| EndUserId::from_stored(uuid.hyphenated().to_string()))
            .map_err(|_| Error::bad_input("end_user_id", "must be a UUID")),
        None | Some(Value::Null) => Err(Error::bad_input("end_user_id", "is required")),
        Some(_) => Err(Error::bad_input("end_user_id", "must be a UUID string")),
    }
}

/// A whole number; `default` when absent or null (`None`: required).
pub fn integer(
    fields: &Map<String, Value>,
    field: &'static str,
    default: Option<i64>,
) -> Result<i64, Error> {
    match fields.get(field) {
        None | Some(Value::Null) => default.ok_or_else(|| Error::bad_input(field, "is required")),
        Some(Value::Number(number)) => number
            .as_i64()
            .ok_or_else(|| Error::bad_input(field, "must be a whole number")),
        Some(_) => Err(Error::bad_input(field, "must be a whole number")),
    }
}

#[derive(Serialize)]
pub struct AddResponse {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub validity_days: i64,
}

#[derive(Serialize)]
pub struct SubtractResponse {
    pub end_user_id: EndUserId,
    pub amount: i64,
}

#[derive(Serialize)]
pub struct CycleResponse {
    pub end_user_id: EndUserId,
    pub amount: i64,
    pub created_at: String,
    pub cycle_type: &'static str,
    pub current_cycle_start: String,
    pub current_cycle_end: String,
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct CycleBalance {
    pub cycle_start: String,
    pub cycle_end: String,
    /// What remains.
    pub amount: i64,
    pub starting_amount: i64,
    pub status: &'static str,
    pub cycle_type: &'static str,
}

#[derive(Serialize)]
pub struct ActiveBalanceResponse {
    pub end_user_id: EndUserId,
    pub active_balance: i64,
    pub active_balance_by_cycle: Vec<CycleBalance>,
}
