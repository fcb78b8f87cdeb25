//! The live view: every second, each app whose `private-live-<app>` has a subscriber on this
//! node gets a `live` event with its cluster-wide figures, read from the seam's counters
//! (connection slots, daily messages). Delivered to this node's subscribers only, so a watcher
//! gets one event per second however many nodes there are.

use std::collections::{HashMap, VecDeque};

use broker::{DeliverySink, Publication};
use protocol::names::{AppId, ChannelName};
use protocol::wire;
use tenancy::{LIVE_CHANNEL_PREFIX, live_channel};

use crate::EdgeState;
use crate::console::{Console, MAX_WATCHED_APPS};
use crate::limits::{unix_millis, unix_now};

/// The event name of the figures on `private-live-<app>`.
pub const LIVE_EVENT: &str = "live";
/// The window of `messages_last_minute`, in seconds.
const MINUTE: u64 = 60;

/// Each live app's daily message count as sampled over the last minute, so "messages in the
/// last minute" comes from the cluster's daily counter without a counter of its own.
#[derive(Default)]
pub(crate) struct LiveFigures {
    samples: HashMap<AppId, VecDeque<(u64, u64)>>,
}

impl LiveFigures {
    pub(crate) async fn send(&mut self, state: &EdgeState, console: &Console) {
        let system = console.system_app();
        let occupied = match state
            .cluster
            .occupancy
            .occupied_channels(system, LIVE_CHANNEL_PREFIX)
            .await
        {
            Ok(occupied) => occupied,
            Err(error) => {
                tracing::warn!(%error, "live view watchers unknown");
                return;
            }
        };
        let local: Vec<(AppId, ChannelName)> = occupied
            .into_iter()
            .filter(|(channel, _)| state.hub.has_subscribers(system, channel))
            .filter_map(|(channel, _)| {
                let app = AppId::parse(channel.as_str().strip_prefix(LIVE_CHANNEL_PREFIX)?);
                Some((app.ok()?, channel))
            })
            .take(MAX_WATCHED_APPS)
            .collect();
        self.samples
            .retain(|app, _| local.iter().any(|(live, _)| live == app));
        let now = unix_now();
        for (app, channel) in local {
            let connections = state.cluster.connections.count(&app).await;
            let today = state.cluster.messages.today(&app, now).await;
            let (Ok(connections), Ok(today)) = (connections, today) else {
                tracing::warn!("live figures unavailable");
                continue;
            };
            let last_minute = self.last_minute(&app, now, today);
            let data = serde_json::json!({
                "connections": connections,
                "messages_last_minute": last_minute,
                "messages_today": today,
                "time_ms": unix_millis(),
            });
            debug_assert_eq!(channel.as_str(), live_channel(&app));
            let frame = wire::channel_event(LIVE_EVENT, channel.as_str(), &data.to_string(), None);
            state.hub.deliver(&Publication {
                app: system.clone(),
                channel,
                frame: frame.into(),
                except: None,
                history: None,
                serial: None,
            });
        }
    }

    /// Messages counted since the oldest sample within the last minute (today's count if the
    /// UTC day changed meanwhile).
    fn last_minute(&mut self, app: &AppId, now: u64, today: u64) -> u64 {
        let samples = self.samples.entry(app.clone()).or_default();
        samples.push_back((now, today));
        while samples
            .front()
            .is_some_and(|(at, _)| now.saturating_sub(*at) > MINUTE)
        {
            samples.pop_front();
        }
        let baseline = samples.front().map_or(today, |(_, count)| *count);
        if today >= baseline {
            today - baseline
        } else {
            today
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_minute_is_the_growth_of_the_daily_count() {
        let mut figures = LiveFigures::default();
        let app = AppId::parse("1").unwrap();
        assert_eq!(figures.last_minute(&app, 1_000, 10), 0);
        assert_eq!(figures.last_minute(&app, 1_030, 25), 15);
        assert_eq!(
            figures.last_minute(&app, 1_061, 40),
            15,
            "the first sample aged out"
        );
        assert_eq!(figures.last_minute(&app, 1_062, 3), 3, "a new UTC day");
    }
}
