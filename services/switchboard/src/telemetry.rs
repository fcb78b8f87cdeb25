//! Logging: human-readable by default, JSON with `SWITCHBOARD_LOG_FORMAT=json`; the level from
//! `RUST_LOG` (default `info`).

use tracing_subscriber::EnvFilter;

pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    // Logs go to stderr: stdout is for output scripts read (`admin create-app` prints JSON).
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let json = std::env::var("SWITCHBOARD_LOG_FORMAT").is_ok_and(|format| format == "json");
    // A second init (tests start many apps in one process) is harmless, so its error is not.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
