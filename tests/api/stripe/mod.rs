//! Stripe: Checkout Sessions, the signed webhook, and refunds, against a local stand-in for
//! Stripe's API (`helpers::stripe`).

mod checkout;
mod refunds;
mod webhook;
