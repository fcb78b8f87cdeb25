//! Black-box tests: the real server on port 0, spoken to over real sockets.

mod helpers;

mod cache_channels;
mod carriers;
mod http_api;
mod limits;
mod metering;
mod operators;
mod platform;
mod resume;
mod serve_binary;
mod tenancy;
mod webhooks;
mod websocket;
mod xhr;
