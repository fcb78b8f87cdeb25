//! Black-box tests: the real server on port 0, spoken to over real sockets.

mod helpers;

mod http_api;
mod operators;
mod platform;
mod tenancy;
mod websocket;
