//! The `switchboard` binary's library half: command-line parsing and the application
//! wiring, so integration tests start exactly what `switchboard serve` starts.

pub mod cli;
pub mod startup;
pub mod telemetry;
