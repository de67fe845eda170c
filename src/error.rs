//! The one error type of Tally and its one mapping to GraphQL error codes.
//!
//! Domain code returns `Error`; resolvers turn it into a GraphQL error with `extensions.code`
//! through `From<Error> for async_graphql::Error`, so `?` in a resolver always keeps the code.
//! Internal details are logged here and never shown to the caller.
//!
//! `Error` deliberately does not implement `Display`: async-graphql converts anything that does
//! into an error without a code, and that conversion must never be the one `?` picks.

use async_graphql::ErrorExtensions;
use sea_orm::{DbErr, SqlErr};

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug)]
pub enum Error {
    /// The request is malformed or breaks a rule about its values. `field` names the input.
    BadUserInput {
        field: &'static str,
        message: String,
    },
    /// An amount of zero or less (Creduse's `AMOUNT_NEGATIVE`).
    AmountNotPositive {
        field: &'static str,
    },
    Unauthenticated(&'static str),
    Forbidden(&'static str),
    NotFound(String),
    InsufficientCredits {
        available: i64,
        requested: i64,
    },
    IdempotencyConflict {
        key: String,
    },
    /// `startCycle` while the end user has an active cycle.
    ActiveCycleExists,
    /// `stopCycle` without an active cycle.
    NoActiveCycle,
    /// A service Tally depends on (Stripe) is not configured or did not do what was asked.
    /// The message is safe to show.
    Unavailable(String),
    Database(DbErr),
    Internal(String),
}

impl From<DbErr> for Error {
    fn from(error: DbErr) -> Self {
        Self::Database(error)
    }
}

impl From<Error> for anyhow::Error {
    fn from(error: Error) -> Self {
        anyhow::anyhow!(error.message())
    }
}

impl Error {
    pub fn bad_input(field: &'static str, message: impl Into<String>) -> Self {
        Self::BadUserInput {
            field,
            message: message.into(),
        }
    }

    /// The code clients branch on; the same words in GraphQL and (later) REST.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadUserInput { .. } | Self::AmountNotPositive { .. } => "BAD_USER_INPUT",
            Self::Unauthenticated(_) => "UNAUTHENTICATED",
            Self::Forbidden(_) => "FORBIDDEN",
            Self::NotFound(_) => "NOT_FOUND",
            Self::InsufficientCredits { .. } => "INSUFFICIENT_CREDITS",
            Self::IdempotencyConflict { .. } => "IDEMPOTENCY_CONFLICT",
            Self::ActiveCycleExists => "ACTIVE_CYCLE_EXISTS",
            Self::NoActiveCycle => "NO_ACTIVE_CYCLE",
            Self::Unavailable(_) => "SERVICE_UNAVAILABLE",
            Self::Database(_) | Self::Internal(_) => "INTERNAL_SERVER_ERROR",
        }
    }

    /// What the caller is told (for internal errors: what the log is told).
    pub fn message(&self) -> String {
        match self {
            Self::BadUserInput { field, message } => format!("{field}: {message}"),
            Self::AmountNotPositive { field } => {
                format!("{field}: must be a positive whole number of credits")
            }
            Self::Unauthenticated(message) | Self::Forbidden(message) => (*message).to_owned(),
            Self::NotFound(message) | Self::Unavailable(message) => message.clone(),
            Self::InsufficientCredits {
                available,
                requested,
            } => format!("insufficient credits: {available} available, {requested} requested"),
            Self::IdempotencyConflict { key } => {
                format!("idempotency key '{key}' was already used for a different request")
            }
            Self::ActiveCycleExists => "the end user already has an active recurring cycle".into(),
            Self::NoActiveCycle => "the end user has no active recurring cycle".into(),
            Self::Database(error) => format!("database error: {error}"),
            Self::Internal(message) => format!("internal error: {message}"),
        }
    }

    fn is_internal(&self) -> bool {
        matches!(self, Self::Database(_) | Self::Internal(_))
    }
}

/// The Creduse-compatible REST answer: HTTP status and `error_code`. Creduse's own codes where
/// one fits (`AMOUNT_NEGATIVE`, `INSUFFICIENT_FUNDS`, `USER_DOES_NOT_EXIST`,
/// `ACTIVE_CYCLE_EXISTS`, `NO_ACTIVE_CYCLE`), ours otherwise.
impl Error {
    pub fn rest_status_and_code(&self) -> (u16, &'static str) {
        match self {
            Self::AmountNotPositive { .. } => (422, "AMOUNT_NEGATIVE"),
            Self::BadUserInput { .. } => (422, "VALIDATION_ERROR"),
            Self::Unauthenticated(_) => (401, "UNAUTHENTICATED"),
            Self::Forbidden(_) => (403, "FORBIDDEN"),
            Self::NotFound(_) => (404, "USER_DOES_NOT_EXIST"),
            Self::InsufficientCredits { .. } => (402, "INSUFFICIENT_FUNDS"),
            Self::IdempotencyConflict { .. } => (409, "IDEMPOTENCY_CONFLICT"),
            Self::ActiveCycleExists => (409, "ACTIVE_CYCLE_EXISTS"),
            Self::NoActiveCycle => (409, "NO_ACTIVE_CYCLE"),
            Self::Unavailable(_) => (503, "SERVICE_UNAVAILABLE"),
            Self::Database(_) | Self::Internal(_) => (500, "INTERNAL_SERVER_ERROR"),
        }
    }

    /// The message safe to show: internal details are logged, not returned.
    pub fn public_message(&self) -> String {
        if self.is_internal() {
            tracing::error!(error = self.message(), "internal error answering a request");
            "internal server error".to_owned()
        } else {
            self.message()
        }
    }
}

/// True when a statement failed on a unique index: the one constraint violation the ledger
/// expects under races (two writers with one idempotency key), and answers by retrying.
pub fn is_unique_violation(error: &Error) -> bool {
    matches!(
        error,
        Error::Database(db) if matches!(db.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
    )
}

impl From<Error> for async_graphql::Error {
    fn from(error: Error) -> Self {
        if error.is_internal() {
            tracing::error!(
                error = error.message(),
                "internal error answering a request"
            );
            return async_graphql::Error::new("internal server error")
                .extend_with(|_, ext| ext.set("code", "INTERNAL_SERVER_ERROR"));
        }
        let code = error.code();
        async_graphql::Error::new(error.message()).extend_with(|_, ext| {
            ext.set("code", code);
            match &error {
                Error::BadUserInput { field, .. } | Error::AmountNotPositive { field } => {
                    ext.set("field", *field)
                }
                Error::InsufficientCredits {
                    available,
                    requested,
                } => {
                    ext.set("available", *available);
                    ext.set("requested", *requested);
                }
                _ => {}
            }
        })
    }
}
