//! Domain values, each validated once by `parse` at the edge and trusted from then on.

use chrono::{DateTime, Datelike, Duration, Utc};
use uuid::Uuid;

use crate::error::{Error, Result};

/// The largest credit amount or balance Tally holds: 2^53 − 1, the largest integer a
/// JavaScript client (or any IEEE-754 double) represents exactly.
pub const MAX_CREDITS: i64 = 9_007_199_254_740_991;
pub const MAX_DESCRIPTION_CHARS: usize = 1_000;
pub const MAX_METADATA_BYTES: usize = 4_096;
pub const MAX_IDEMPOTENCY_KEY_CHARS: usize = 255;
/// Validity is capped at 100 years of 365.25 days.
pub const MAX_VALIDITY_DAYS: i64 = 36_525;
/// Instants a client sends must fall in these years (UTC), inclusive: RFC 3339's four-digit
/// years, from the Unix epoch on. SQLite would store nearly any instant, PostgreSQL refuses some
/// (`-262143-01-01`), so both refuse what is outside this range, the same way.
pub const MIN_YEAR: i32 = 1970;
pub const MAX_YEAR: i32 = 9999;

/// Refuses text the databases cannot agree on: PostgreSQL cannot store the NUL character
/// (U+0000) in text, SQLite can. Every text a client sends that Tally stores goes through this.
pub fn check_text(field: &'static str, value: &str) -> Result<()> {
    if value.contains('\0') {
        return Err(Error::bad_input(
            field,
            "must not contain the NUL character (U+0000)",
        ));
    }
    Ok(())
}

/// Whether any string (or object key) in `value` holds a NUL character. Walks with an explicit
/// stack, so no JSON value's depth can overflow the thread's stack.
pub fn json_contains_nul(value: &serde_json::Value) -> bool {
    use serde_json::Value;
    let mut pending = vec![value];
    while let Some(value) = pending.pop() {
        match value {
            Value::String(text) if text.contains('\0') => return true,
            Value::Array(items) => pending.extend(items),
            Value::Object(fields) => {
                for (key, item) in fields {
                    if key.contains('\0') {
                        return true;
                    }
                    pending.push(item);
                }
            }
            _ => {}
        }
    }
    false
}

/// An instant a client sent, within `MIN_YEAR`..=`MAX_YEAR`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Instant(DateTime<Utc>);

impl Instant {
    pub fn parse(field: &'static str, value: DateTime<Utc>) -> Result<Self> {
        if !(MIN_YEAR..=MAX_YEAR).contains(&value.year()) {
            return Err(Error::bad_input(
                field,
                format!("must be an instant in the years {MIN_YEAR} to {MAX_YEAR} (UTC)"),
            ));
        }
        Ok(Self(value))
    }

    pub fn parse_optional(
        field: &'static str,
        value: Option<DateTime<Utc>>,
    ) -> Result<Option<Self>> {
        value.map(|value| Self::parse(field, value)).transpose()
    }

    pub fn get(self) -> DateTime<Utc> {
        self.0
    }
}

/// The end user an account belongs to, named by the calling application's own id: 1 to
/// `MAX_END_USER_ID_CHARS` characters of visible text (no control character, no leading or
/// trailing whitespace), compared exactly. One exception keeps databases from the UUID era
/// working: a UUID in its 36-character hyphenated form is stored in lower case, so `ABC…` and
/// `abc…` spellings of one UUID are one end user (as they were when ids were UUIDs).
/// Ordered by bytes, which is the order batches lock accounts in.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct EndUserId(String);

pub const MAX_END_USER_ID_CHARS: usize = 255;

impl EndUserId {
    pub fn parse(field: &'static str, value: &str) -> Result<Self> {
        let chars = value.chars().count();
        if chars == 0 {
            return Err(Error::bad_input(field, "must not be empty"));
        }
        if chars > MAX_END_USER_ID_CHARS {
            return Err(Error::bad_input(
                field,
                format!("must be at most {MAX_END_USER_ID_CHARS} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::bad_input(
                field,
                "must not contain control characters (NUL, newline, tab, …)",
            ));
        }
        if value.starts_with(char::is_whitespace) || value.ends_with(char::is_whitespace) {
            return Err(Error::bad_input(
                field,
                "must not begin or end with whitespace",
            ));
        }
        Ok(Self(
            canonical_uuid(value).unwrap_or_else(|| value.to_owned()),
        ))
    }

    /// An id read back from the database, where only parsed ids are ever written.
    pub fn from_stored(value: String) -> Self {
        debug_assert!(Self::parse("stored", &value).is_ok_and(|parsed| parsed.0 == value));
        Self(value)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl std::fmt::Display for EndUserId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The lower-case spelling of a UUID written in the hyphenated 36-character form; `None` for
/// anything else (other UUID spellings, such as 32 bare hex digits, are ids of their own).
fn canonical_uuid(value: &str) -> Option<String> {
    let hyphenated = value.len() == 36
        && [8, 13, 18, 23]
            .iter()
            .all(|&at| value.as_bytes()[at] == b'-');
    if !hyphenated || value.bytes().all(|byte| !byte.is_ascii_uppercase()) {
        return None;
    }
    Uuid::try_parse(value)
        .ok()
        .map(|uuid| uuid.hyphenated().to_string())
}

/// A positive whole number of credits, at most `MAX_CREDITS`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Amount(i64);

impl Amount {
    pub fn parse(field: &'static str, value: i64) -> Result<Self> {
        if value <= 0 {
            return Err(Error::AmountNotPositive { field });
        }
        if value > MAX_CREDITS {
            return Err(Error::bad_input(
                field,
                format!("must be at most {MAX_CREDITS} (2^53 - 1)"),
            ));
        }
        Ok(Self(value))
    }

    pub fn get(self) -> i64 {
        self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(value: Option<String>) -> Result<Option<Self>> {
        Self::parse_as("description", value)
    }

    /// The same rules for a text the input calls something else (`reason`).
    pub fn parse_as(field: &'static str, value: Option<String>) -> Result<Option<Self>> {
        let Some(value) = value else { return Ok(None) };
        if value.chars().count() > MAX_DESCRIPTION_CHARS {
            return Err(Error::bad_input(
                field,
                format!("must be at most {MAX_DESCRIPTION_CHARS} characters"),
            ));
        }
        check_text(field, &value)?;
        Ok(Some(Self(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Free-form JSON the caller attaches to a write: an object of at most `MAX_METADATA_BYTES`.
#[derive(Clone, Debug, PartialEq)]
pub struct Metadata(serde_json::Value);

impl Metadata {
    pub fn parse(value: Option<serde_json::Value>) -> Result<Option<Self>> {
        let Some(value) = value else { return Ok(None) };
        if !value.is_object() {
            return Err(Error::bad_input("metadata", "must be a JSON object"));
        }
        if json_contains_nul(&value) {
            return Err(Error::bad_input(
                "metadata",
                "must not contain the NUL character (U+0000) in any key or string",
            ));
        }
        if value.to_string().len() > MAX_METADATA_BYTES {
            return Err(Error::bad_input(
                "metadata",
                format!("must be at most {MAX_METADATA_BYTES} bytes as JSON"),
            ));
        }
        Ok(Some(Self(value)))
    }

    pub fn as_json(&self) -> &serde_json::Value {
        &self.0
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub fn parse(value: Option<String>) -> Result<Option<Self>> {
        let Some(value) = value else { return Ok(None) };
        let chars = value.chars().count();
        if chars == 0 || chars > MAX_IDEMPOTENCY_KEY_CHARS {
            return Err(Error::bad_input(
                "idempotencyKey",
                format!("must be 1 to {MAX_IDEMPOTENCY_KEY_CHARS} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err(Error::bad_input(
                "idempotencyKey",
                "must not contain control characters",
            ));
        }
        Ok(Some(Self(value)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where a grant's credits came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GrantSource {
    Manual,
    Trial,
    Promotion,
    Purchase,
    Subscription,
    Refund,
}

impl GrantSource {
    pub const ALL: [GrantSource; 6] = [
        Self::Manual,
        Self::Trial,
        Self::Promotion,
        Self::Purchase,
        Self::Subscription,
        Self::Refund,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Manual => "manual",
            Self::Trial => "trial",
            Self::Promotion => "promotion",
            Self::Purchase => "purchase",
            Self::Subscription => "subscription",
            Self::Refund => "refund",
        }
    }

    pub fn from_stored(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|source| source.as_str() == value)
            .ok_or_else(|| Error::Internal(format!("unknown grant source '{value}' in database")))
    }
}

/// What kind of change a ledger entry records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EntryKind {
    /// Credits added (a new grant).
    Grant,
    /// Credits spent.
    Debit,
    /// What remained of a grant when it expired.
    Expiry,
    /// What remained of a grant when it was voided.
    Void,
    /// Credits a debit took, given back to its grants.
    Reversal,
    /// Credits reserved for work in progress (no longer available, not yet spent).
    Hold,
    /// Held credits spent.
    Capture,
    /// Held credits made available again.
    Release,
    /// A recurring cycle's new period (and any rollover).
    Renewal,
    /// Credits of a purchase taken back because its payment was refunded.
    Clawback,
}

impl EntryKind {
    pub const ALL: [EntryKind; 10] = [
        Self::Grant,
        Self::Debit,
        Self::Expiry,
        Self::Void,
        Self::Reversal,
        Self::Hold,
        Self::Capture,
        Self::Release,
        Self::Renewal,
        Self::Clawback,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Grant => "grant",
            Self::Debit => "debit",
            Self::Expiry => "expiry",
            Self::Void => "void",
            Self::Reversal => "reversal",
            Self::Hold => "hold",
            Self::Capture => "capture",
            Self::Release => "release",
            Self::Renewal => "renewal",
            Self::Clawback => "clawback",
        }
    }

    pub fn from_stored(value: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == value)
            .ok_or_else(|| Error::Internal(format!("unknown entry kind '{value}' in database")))
    }

    /// How the entry moves the available balance: +1 adds, −1 takes, 0 neither (a capture
    /// spends credits its hold had already taken out of the available balance).
    pub fn sign(self) -> i64 {
        match self {
            Self::Grant | Self::Reversal | Self::Release | Self::Renewal => 1,
            Self::Debit | Self::Expiry | Self::Void | Self::Hold | Self::Clawback => -1,
            Self::Capture => 0,
        }
    }
}

/// When a new grant starts and stops counting.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub effective_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

impl Validity {
    /// `validity_days: N` means N × 24 h from when the grant takes effect: now, or the later
    /// `effective_at` when one is given. Neither `validity_days` nor `expires_at` means the grant
    /// never expires.
    pub fn parse(
        validity_days: Option<i64>,
        expires_at: Option<DateTime<Utc>>,
        effective_at: Option<DateTime<Utc>>,
        now: DateTime<Utc>,
    ) -> Result<Self> {
        let latest_allowed = now + Duration::days(MAX_VALIDITY_DAYS);
        let effective_at = Instant::parse_optional("effectiveAt", effective_at)?
            .map_or(now, |at| super::clock::to_stored_precision(at.get()));
        let expires_at = Instant::parse_optional("expiresAt", expires_at)?
            .map(|at| super::clock::to_stored_precision(at.get()));
        if effective_at > latest_allowed {
            return Err(Error::bad_input(
                "effectiveAt",
                "must be within 100 years from now",
            ));
        }
        let expires_at = match (validity_days, expires_at) {
            (Some(_), Some(_)) => {
                return Err(Error::bad_input(
                    "validityDays",
                    "give validityDays or expiresAt, not both",
                ));
            }
            (Some(days), None) => {
                if !(1..=MAX_VALIDITY_DAYS).contains(&days) {
                    return Err(Error::bad_input(
                        "validityDays",
                        format!("must be from 1 to {MAX_VALIDITY_DAYS} (100 years)"),
                    ));
                }
                Some(effective_at.max(now) + Duration::days(days))
            }
            (None, Some(at)) => {
                if at <= now {
                    return Err(Error::bad_input("expiresAt", "must be in the future"));
                }
                if at > latest_allowed {
                    return Err(Error::bad_input(
                        "expiresAt",
                        "must be within 100 years from now",
                    ));
                }
                if at <= effective_at {
                    return Err(Error::bad_input("expiresAt", "must be after effectiveAt"));
                }
                Some(at)
            }
            (None, None) => None,
        };
        Ok(Self {
            effective_at,
            expires_at,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn end_user_ids_are_the_applications_own_strings() {
        for id in [
            "auth0|64f1c2",
            "user_2NqZ",
            "42",
            "josé",
            "ABC",
            "abc",
            "a b",
        ] {
            assert_eq!(EndUserId::parse("endUserId", id).unwrap().as_str(), id);
        }
        let longest = "é".repeat(MAX_END_USER_ID_CHARS);
        assert_eq!(
            EndUserId::parse("endUserId", &longest).unwrap().as_str(),
            longest
        );
    }

    #[test]
    fn only_hyphenated_uuids_are_folded_to_lower_case() {
        let upper = "8B0C4F2E-1C7A-4D35-9F53-2A0D6F1B7C11";
        let lower = upper.to_lowercase();
        assert_eq!(EndUserId::parse("id", upper).unwrap().as_str(), lower);
        assert_eq!(EndUserId::parse("id", &lower).unwrap().as_str(), lower);
        let bare = "8B0C4F2E1C7A4D359F532A0D6F1B7C11";
        assert_eq!(EndUserId::parse("id", bare).unwrap().as_str(), bare);
        let not_hex = "8B0C4F2E-1C7A-4D35-9F53-2A0D6F1B7C1Z";
        assert_eq!(EndUserId::parse("id", not_hex).unwrap().as_str(), not_hex);
    }

    #[test]
    fn end_user_ids_refuse_what_is_not_visible_text() {
        let too_long = "x".repeat(MAX_END_USER_ID_CHARS + 1);
        for id in [
            "", " ", " a", "a ", "a\u{0}b", "a\nb", "a\tb", "\u{7f}", "\u{85}", &too_long,
        ] {
            assert!(EndUserId::parse("endUserId", id).is_err(), "{id:?}");
        }
    }

    #[test]
    fn amounts_must_be_positive_and_exact_in_javascript() {
        assert!(Amount::parse("amount", 0).is_err());
        assert!(Amount::parse("amount", -5).is_err());
        assert!(Amount::parse("amount", MAX_CREDITS + 1).is_err());
        assert_eq!(
            Amount::parse("amount", MAX_CREDITS).unwrap().get(),
            MAX_CREDITS
        );
        assert_eq!(Amount::parse("amount", 1).unwrap().get(), 1);
    }

    #[test]
    fn validity_days_count_from_now_or_a_later_start() {
        let now = super::super::clock::Clock::system().now();
        let v = Validity::parse(Some(30), None, None, now).unwrap();
        assert_eq!(v.effective_at, now);
        assert_eq!(v.expires_at, Some(now + Duration::days(30)));

        let start = now + Duration::days(10);
        let v = Validity::parse(Some(30), None, Some(start), now).unwrap();
        assert_eq!(v.expires_at, Some(start + Duration::days(30)));
    }

    #[test]
    fn validity_is_refused_when_out_of_range_or_doubly_given() {
        let now = super::super::clock::Clock::system().now();
        assert!(Validity::parse(Some(0), None, None, now).is_err());
        assert!(Validity::parse(Some(-1), None, None, now).is_err());
        assert!(Validity::parse(Some(MAX_VALIDITY_DAYS + 1), None, None, now).is_err());
        assert!(Validity::parse(Some(1), Some(now + Duration::days(1)), None, now).is_err());
        assert!(Validity::parse(None, Some(now - Duration::seconds(1)), None, now).is_err());
        assert!(
            Validity::parse(
                None,
                Some(now + Duration::days(MAX_VALIDITY_DAYS + 1)),
                None,
                now
            )
            .is_err()
        );
        let start = now + Duration::days(5);
        assert!(Validity::parse(None, Some(now + Duration::days(1)), Some(start), now).is_err());
        assert_eq!(
            Validity::parse(None, None, None, now).unwrap().expires_at,
            None
        );
    }

    #[test]
    fn text_with_nul_is_refused_wherever_it_hides() {
        assert!(check_text("reason", "a\0b").is_err());
        assert!(check_text("reason", "fine").is_ok());
        assert!(Description::parse(Some("x\0".into())).is_err());
        assert!(Metadata::parse(Some(serde_json::json!({ "a": { "b": ["\0"] } }))).is_err());
        assert!(Metadata::parse(Some(serde_json::json!({ "k\0": 1 }))).is_err());
        assert!(IdempotencyKey::parse(Some("k\0".into())).is_err());
    }

    #[test]
    fn instants_outside_the_years_are_refused() {
        let parse =
            |text: &str| Instant::parse("at", DateTime::parse_from_rfc3339(text).unwrap().to_utc());
        assert!(parse("1970-01-01T00:00:00Z").is_ok());
        assert!(parse("9999-12-31T23:59:59.999999Z").is_ok());
        assert!(parse("1969-12-31T23:59:59Z").is_err());
        let far = "-262143-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert!(Instant::parse("at", far).is_err());
        let now = super::super::clock::Clock::system().now();
        let Err(Error::BadUserInput { field, .. }) = Validity::parse(None, None, Some(far), now)
        else {
            panic!("effectiveAt out of range");
        };
        assert_eq!(field, "effectiveAt");
    }

    #[test]
    fn metadata_must_be_a_small_object() {
        assert!(Metadata::parse(Some(serde_json::json!([1, 2]))).is_err());
        let big = "x".repeat(MAX_METADATA_BYTES);
        assert!(Metadata::parse(Some(serde_json::json!({ "k": big }))).is_err());
        assert!(Metadata::parse(Some(serde_json::json!({ "plan": "pro" }))).is_ok());
    }
}
