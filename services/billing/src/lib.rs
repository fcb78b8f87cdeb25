//! Stripe, and only Stripe: `StripeApi` (every call billing makes, through the real
//! `async-stripe` client), `signature` (Stripe's webhook signing scheme), and `fake`, a local
//! Stripe for tests that speaks the same HTTP (form-encoded requests, Stripe's JSON objects,
//! signed webhook events).
//!
//! Its own crate because Stripe's generated code takes minutes to compile: nothing else
//! rebuilds it.

pub mod api;
pub mod fake;
pub mod objects;
pub mod signature;

pub use api::{CheckoutRequest, DEFAULT_API_BASE, StripeApi, StripeFailure, StripeResult};
