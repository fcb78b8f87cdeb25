//! Black-box tests: the real server on port 0, spoken to over real sockets.

mod helpers;

mod cache_channels;
mod carriers;
mod http_api;
mod limits;
mod memory;
mod metering;
mod operators;
mod platform;
mod resume;
mod tenancy;
mod webhooks;
mod websocket;
mod xhr;
