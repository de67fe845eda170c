//! Outbound webhooks (README, "Webhooks"), black-box: a real HTTP receiver in the test
//! (`helpers::receiver`) checks every delivery's Standard Webhooks signature.

mod delivery;
mod failures;
mod purchases;
mod restarts;
