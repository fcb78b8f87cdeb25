//! What both HTTP services need about requests from outside, so neither imports the other:
//! the client's address (`client_address`, honouring `X-Forwarded-For` only from proxies the
//! operator trusts) and client-supplied strings made safe to log (`Untrusted`).
//!
//! Architecture invariant: no I/O and no state; every per-address limit (login, sign-up, the
//! edge's) takes its address from `client_address`.

mod address;
mod untrusted;

pub use address::{TrustedProxies, TrustedProxiesError, client_address};
pub use untrusted::Untrusted;
