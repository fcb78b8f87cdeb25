//! How late each worker thread runs a task that is due: a timer task per worker, whose
//! lateness past its deadline is `switchboard_worker_lag_seconds`. A worker busy with one
//! tenant's work delays every other task on it (a publish, a delivery); this is the figure
//! that shows it, per node, without naming any app, and the signal the fan-out paces a
//! storm by (`fanout_pace`).

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::Hub;

/// How often each worker's probe looks; one timer wake-up per period is all it costs.
const PERIOD: Duration = Duration::from_millis(100);

/// Runs on the calling worker's local set until the worker stops (its tasks are dropped),
/// telling `hub` too.
pub(crate) fn spawn_on_this_worker(hub: Option<Arc<Hub>>) {
    tokio::task::spawn_local(async move {
        let mut due = Instant::now() + PERIOD;
        loop {
            tokio::time::sleep_until(due).await;
            let now = Instant::now();
            let lag = now.saturating_duration_since(due);
            crate::metrics::worker_lagged(lag);
            if let Some(hub) = &hub {
                hub.worker_lagged(lag);
            }
            // From now, not from `due`: a stalled worker is not made to catch up in a burst.
            due = now + PERIOD;
        }
    });
}
