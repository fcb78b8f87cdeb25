//! Black-box tests: the real server on port 0, spoken to over real sockets.

mod addressed_events;
mod app_settings;
mod billing_admin;
mod billing_edge;
mod binary;
mod helpers;

mod cache_channels;
mod carrier_client;
mod carriers;
mod carriers_attacks;
mod cluster;
mod cluster_broadcasts;
mod cluster_metering;
mod cluster_seam;
mod console;
mod dead_node;
mod direct_stream;
mod drain;
mod http_api;
mod libraries;
mod limits;
mod memory;
mod metering;
mod noisy_neighbours;
mod operators;
mod otlp_receiver;
mod platform;
mod redis_restart;
mod resume;
mod serve_binary;
mod tenancy;
mod traces;
mod users;
mod webhooks;
// The webhook receiver of control's tests, shared; this crate uses only part of it.
#[allow(dead_code)]
#[path = "../../../control/tests/api/webhook_receiver.rs"]
mod webhook_receiver;
mod websocket;
mod ws_listener;
mod xhr;
mod xhr_attacks;
