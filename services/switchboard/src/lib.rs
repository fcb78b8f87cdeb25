//! The `switchboard` binary's library half: command-line parsing and the application
//! wiring, so integration tests start exactly what the binary starts.

pub mod admin;
pub mod billing;
pub mod broker;
pub mod cli;
pub mod database;
pub mod request_spans;
pub mod run;
pub mod startup;
pub mod telemetry;
