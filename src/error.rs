//! The one error type of Tally and its one redaction.
//!
//! Domain code returns `Error`. What a caller may see of one is `Error::public`: the code, a
//! message safe to show, and the fields clients branch on. It is the only place internal
//! details are held back (and logged), and every surface answers from it: GraphQL (through the
//! `ErrorCodes` schema extension, which finds our `Error` behind every resolver error),
//! REST (`rest::json::RestError`) and the Stripe webhook.
//!
//! `Display` is the full text, for the server log and the operator (the CLI prints it with its
//! sources: a `Database` error's driver text is its `source()`). async-graphql turns anything
//! `Display` into a GraphQL error carrying that text, so every GraphQL answer passes through
//! `ErrorCodes`, and an error raised before the schema runs through `error_codes::server_error`;
//! `tests/redaction.rs` checks that no surface shows the text.

use std::fmt;

use sea_orm::{DbErr, RuntimeErr, SqlErr};

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

/// The full text, for the log and the operator; never shown to a caller (see `public`). A
/// database error says only that it is one here: the driver's text is its `source()`.
impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadUserInput { field, message } => write!(f, "{field}: {message}"),
            Self::AmountNotPositive { field } => {
                write!(f, "{field}: must be a positive whole number of credits")
            }
            Self::Unauthenticated(message) | Self::Forbidden(message) => f.write_str(message),
            Self::NotFound(message) | Self::Unavailable(message) => f.write_str(message),
            Self::InsufficientCredits {
                available,
                requested,
            } => write!(
                f,
                "insufficient credits: {available} available, {requested} requested"
            ),
            Self::IdempotencyConflict { key } => write!(
                f,
                "idempotency key '{key}' was already used for a different request"
            ),
            Self::ActiveCycleExists => {
                f.write_str("the end user already has an active recurring cycle")
            }
            Self::NoActiveCycle => f.write_str("the end user has no active recurring cycle"),
            Self::Database(_) => f.write_str("database error"),
            Self::Internal(message) => write!(f, "internal error: {message}"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Database(error) => Some(error),
            _ => None,
        }
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

    /// The full text with the driver's own for a database error (whose text already holds its
    /// sources, so they are not walked): what the log and the operator are told.
    pub fn detail(&self) -> String {
        match self {
            Self::Database(error) => format!("{self}: {error}"),
            _ => self.to_string(),
        }
    }
}

/// What a caller may see of an error. GraphQL answers with all of it (`message`,
/// `extensions.code`, `extensions.field`, `extensions.available`/`requested`); REST with the
/// message beside its own status and code (`rest_status_and_code`); the Stripe webhook with the
/// message, or its own wording when `internal`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublicError {
    pub code: &'static str,
    pub message: String,
    /// The input at fault, for bad input.
    pub field: Option<&'static str>,
    /// `available` and `requested`, for insufficient credits.
    pub shortfall: Option<(i64, i64)>,
    /// Tally's own fault: the message says nothing more, the log has the detail.
    pub internal: bool,
}

/// The message every surface gives for an internal error.
const INTERNAL_MESSAGE: &str = "internal server error";

impl Error {
    /// The one redaction: what a caller may be told. An internal error (a database failure, a
    /// broken invariant) is logged here with its detail and answered with `INTERNAL_MESSAGE`
    /// only, so call this once per answer.
    pub fn public(&self) -> PublicError {
        let internal = matches!(self, Self::Database(_) | Self::Internal(_));
        let message = if internal {
            tracing::error!(error = self.detail(), "internal error answering a request");
            INTERNAL_MESSAGE.to_owned()
        } else {
            self.to_string()
        };
        PublicError {
            code: self.code(),
            message,
            field: match self {
                Self::BadUserInput { field, .. } | Self::AmountNotPositive { field } => {
                    Some(*field)
                }
                _ => None,
            },
            shortfall: match self {
                Self::InsufficientCredits {
                    available,
                    requested,
                } => Some((*available, *requested)),
                _ => None,
            },
            internal,
        }
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
}

/// True when a statement failed on a unique index: the one constraint violation the ledger
/// expects under races (two writers with one idempotency key), and answers by retrying.
pub fn is_unique_violation(error: &Error) -> bool {
    matches!(
        error,
        Error::Database(db) if matches!(db.sql_err(), Some(SqlErr::UniqueConstraintViolation(_)))
    )
}

/// True when a statement failed because its connection is gone: the server ended it (SQLSTATE
/// class 57P: an administrator's command, a crash, a shutdown) or the socket broke. Where that
/// statement was a transaction's `BEGIN`, nothing happened and it may run again elsewhere.
pub fn is_cut_connection(error: &DbErr) -> bool {
    use sea_orm::sqlx;
    let (DbErr::Conn(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Exec(RuntimeErr::SqlxError(sqlx_error))
    | DbErr::Query(RuntimeErr::SqlxError(sqlx_error))) = error
    else {
        return false;
    };
    match sqlx_error.as_ref() {
        sqlx::Error::Io(_) => true,
        sqlx::Error::Database(database) => {
            database.code().is_some_and(|code| code.starts_with("57P"))
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn only_a_gone_connection_counts_as_cut() {
        use sea_orm::sqlx;
        let wrap = |error: sqlx::Error| DbErr::Query(RuntimeErr::SqlxError(Arc::new(error)));
        let broken = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
        assert!(is_cut_connection(&wrap(sqlx::Error::Io(broken))));
        assert!(!is_cut_connection(&wrap(sqlx::Error::RowNotFound)));
        assert!(!is_cut_connection(&DbErr::Custom("no such table".into())));
    }

    #[test]
    fn internal_errors_show_nothing_but_their_code() {
        let database = Error::Database(DbErr::Custom("no such table: grants".into()));
        let public = database.public();
        assert_eq!(public.code, "INTERNAL_SERVER_ERROR");
        assert_eq!(public.message, INTERNAL_MESSAGE);
        assert!(public.internal && public.field.is_none() && public.shortfall.is_none());
        assert_eq!(
            Error::Internal("a held grant is missing".into()).public(),
            public
        );
    }

    #[test]
    fn other_errors_show_their_message_and_fields() {
        let short = Error::InsufficientCredits {
            available: 3,
            requested: 5,
        }
        .public();
        assert_eq!(
            short.message,
            "insufficient credits: 3 available, 5 requested"
        );
        assert_eq!(short.shortfall, Some((3, 5)));
        assert!(!short.internal);
        let bad = Error::bad_input("amount", "is required").public();
        assert_eq!(
            (bad.code, bad.message.as_str(), bad.field),
            ("BAD_USER_INPUT", "amount: is required", Some("amount"))
        );
    }

    /// The driver's text is the source, not repeated in `Display`; `detail` has both.
    #[test]
    fn a_database_error_is_its_source() {
        let error = Error::Database(DbErr::Custom("no such table: grants".into()));
        assert_eq!(error.to_string(), "database error");
        let source = std::error::Error::source(&error).expect("a source");
        assert!(source.to_string().contains("no such table: grants"));
        assert_eq!(
            error.detail(),
            format!(
                "database error: {}",
                DbErr::Custom("no such table: grants".into())
            )
        );
        let chained = format!("{:#}", anyhow::Error::from(error));
        assert!(chained.starts_with("database error: "), "{chained}");
    }
}
