//! `Credits`: whole credit amounts as exact JSON numbers.
//!
//! GraphQL's `Int` is 32-bit, too small for credits; a string would be awkward for every
//! client. So amounts are a custom scalar serialized as a JSON number, limited to what a
//! JavaScript client holds exactly: integers of magnitude at most 2^53 − 1.

use async_graphql::{InputValueError, InputValueResult, Scalar, ScalarType, Value};

use crate::ledger::MAX_CREDITS;

/// A whole number of credits, serialized as a JSON number; at most 2^53 − 1 (9007199254740991)
/// in magnitude, so JavaScript clients hold it exactly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credits(pub i64);

#[Scalar(name = "Credits")]
impl ScalarType for Credits {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::Number(number) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        let Some(credits) = number.as_i64() else {
            return Err(InputValueError::custom(format!(
                "{number} is not a whole number of credits from -{MAX_CREDITS} to {MAX_CREDITS}"
            )));
        };
        if credits.unsigned_abs() > MAX_CREDITS as u64 {
            return Err(InputValueError::custom(format!(
                "{credits} is beyond {MAX_CREDITS} (2^53 - 1), the largest exact integer in JavaScript"
            )));
        }
        Ok(Self(credits))
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::Number(n) if n.as_i64().is_some_and(|c| c.unsigned_abs() <= MAX_CREDITS as u64))
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// An amount of money in the currency's minor unit (cents for USD), serialized as a JSON
/// number; at most 2^53 − 1 in magnitude.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MinorUnits(pub i64);

#[Scalar(name = "MinorUnits")]
impl ScalarType for MinorUnits {
    fn parse(value: Value) -> InputValueResult<Self> {
        let Value::Number(number) = &value else {
            return Err(InputValueError::expected_type(value));
        };
        match number.as_i64() {
            Some(amount) if amount.unsigned_abs() <= MAX_CREDITS as u64 => Ok(Self(amount)),
            _ => Err(InputValueError::custom(format!(
                "{number} is not a whole number of minor units from -{MAX_CREDITS} to {MAX_CREDITS}"
            ))),
        }
    }

    fn is_valid(value: &Value) -> bool {
        matches!(value, Value::Number(n) if n.as_i64().is_some_and(|c| c.unsigned_abs() <= MAX_CREDITS as u64))
    }

    fn to_value(&self) -> Value {
        Value::Number(self.0.into())
    }
}

/// An end-user id argument or input field, parsed once. The schema types it `ID`: a string, or
/// an integer (an application keyed by integers sends `42` or `"42"`: one end user).
pub fn end_user_id(id: &async_graphql::ID) -> crate::error::Result<crate::ledger::EndUserId> {
    crate::ledger::EndUserId::parse("endUserId", id)
}
