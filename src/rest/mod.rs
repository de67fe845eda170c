//! The Creduse-compatible REST API (its contract, status codes and error body are in README.md, "Creduse-compatible REST API"): the same paths, JSON fields and
//! error body, so code written for Creduse works by changing its base URL. A thin adapter over
//! the ledger, like the GraphQL one; the status codes are chosen in `crate::error`.
//!
//! | call | answer |
//! | --- | --- |
//! | `POST /add` | a grant valid `validity_days` (default 31) |
//! | `POST /subtract` | a debit, all or nothing |
//! | `POST /start-cycle` / `POST /stop-cycle` | the recurring cycle |
//! | `GET /get-active-balance` | JSON body or `?end_user_id=` |

mod handlers;
mod json;

use axum::Router;
use axum::routing::{get, post};

use crate::http::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/add", post(handlers::add))
        .route("/subtract", post(handlers::subtract))
        .route("/start-cycle", post(handlers::start_cycle))
        .route("/stop-cycle", post(handlers::stop_cycle))
        .route("/get-active-balance", get(handlers::get_active_balance))
}
