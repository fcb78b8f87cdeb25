//! Carriers other than the WebSocket: pusher-js's xhr transports (`xhr`, `xhr_sessions`) and
//! our SDK's HTTP carriers under `/sb/app/{key}` (SSE, long polling, polling, HTTP streaming,
//! the forever frame: `session`, `routes`, one file per format). Both are detached sessions,
//! run by one machine (`detached`) with their two framings on top.

pub(crate) mod xhr;
pub(crate) mod xhr_sessions;

pub(crate) mod creation_limit;
mod detached;
pub(crate) mod direct_stream;
mod iframe;
mod open;
mod routes;
pub(crate) mod session;
mod sse;
mod stream;
pub(crate) mod stream_head;

pub(crate) use open::Registry as SbRegistry;
pub(crate) use routes::configure as configure_sb;
