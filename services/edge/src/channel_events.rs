//! What a subscription change sets off besides the subscription itself: webhook events
//! (`channel_occupied` / `channel_vacated` as the cluster's count of a channel's
//! subscriptions, `broker::occupancy`, goes 0 → 1 → 0, `member_added` / `member_removed`, `client_event`, `cache_miss`,
//! `subscription_count`), the opt-in `pusher_internal:subscription_count` frames, and the
//! replay of a cache channel's last event. `connection` calls these at the matching points.
//!
//! Webhook events go to the `WebhookSink` (which queues and never blocks); an edge without
//! one reports nothing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use broker::BrokerError;
use broker::broadcast::NodeMessage;
use broker::cache::Replay;
use protocol::names::{AppId, ChannelKind, ChannelName, SocketId, UserId};
use protocol::wire::{self, Member};
use serde::Deserialize;
use tenancy::{App, WebhookEvent};
use tokio::time::Instant;

use crate::EdgeState;
use crate::outbox::{Outbox, Outgoing};

/// Above this many subscribers, `subscription_count` goes out at most every
/// `COUNT_INTERVAL` per channel (Pusher's throttle).
pub const COUNT_THROTTLE_ABOVE: u64 = 100;
pub const COUNT_INTERVAL: Duration = Duration::from_secs(5);

/// Reports a webhook event if the app may want it; `event` is built only then.
fn emit(state: &EdgeState, app: &AppId, name: &str, event: impl FnOnce() -> WebhookEvent) {
    if let Some(sink) = &state.webhooks
        && sink.wants(app, name)
    {
        sink.emit(app, event());
    }
}

/// Joins the presence channel as `member`; a refusal is the `subscription_error` to send.
pub async fn join_presence(
    state: &EdgeState,
    app: &App,
    socket_id: &SocketId,
    channel: &ChannelName,
    member: &Member,
) -> Result<broker::PresenceJoin, String> {
    let max_members = app.limits.max_presence_members;
    let joined = state
        .cluster
        .broker
        .presence_join(&app.id, channel, socket_id, member.clone(), max_members)
        .await;
    joined.map_err(|error| match error {
        BrokerError::PresenceFull { max } => {
            let message = format!("presence channel is full: at most {max} members");
            wire::subscription_error(channel.as_str(), "LimitReached", &message, 4100)
        }
        error => {
            tracing::warn!(%error, "presence join failed");
            wire::subscription_error(channel.as_str(), "ServerError", "presence unavailable", 503)
        }
    })
}

/// Counts a new subscription cluster-wide; the count after it, `None` when occupancy cannot
/// answer (then no occupancy webhook or count goes out for it).
pub async fn count_subscribed(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
) -> Option<u64> {
    let counted = state.cluster.occupancy.subscribed(app, channel).await;
    counted
        .inspect_err(|error| tracing::warn!(%error, "occupancy unavailable"))
        .ok()
}

/// Counts a subscription gone cluster-wide; the count left.
pub async fn count_unsubscribed(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
) -> Option<u64> {
    let counted = state.cluster.occupancy.unsubscribed(app, channel).await;
    counted
        .inspect_err(|error| tracing::warn!(%error, "occupancy unavailable"))
        .ok()
}

/// After `subscription_succeeded` was queued: `channel_occupied` for the first subscription
/// in the cluster, the subscription count, and for cache channels the cached event or
/// `pusher:cache_miss`. `added` is the cluster's count after this subscription (`None`: the
/// connection was already subscribed, or occupancy could not say).
pub async fn subscribed(
    state: &Arc<EdgeState>,
    app: &App,
    channel: &ChannelName,
    outbox: &Outbox,
    added: Option<u64>,
) {
    // `#server-to-user-` channels are the protocol's own: no occupancy webhooks for them.
    let internal = channel.kind() == ChannelKind::ServerToUser;
    if let Some(count) = added {
        if count == 1 && !internal {
            emit(state, &app.id, "channel_occupied", || {
                WebhookEvent::ChannelOccupied {
                    channel: channel.to_string(),
                }
            });
        }
        subscription_count_changed(state, app, channel, count).await;
    }
    let replay = state.cluster.cache.replay(&app.id, channel).await;
    let replay = replay
        .inspect_err(|error| tracing::warn!(%error, "cache channels unavailable"))
        .unwrap_or_default();
    match replay {
        None => {}
        Some(Replay::Hit(frame)) => outbox.send(Outgoing::Text(frame)),
        Some(Replay::Miss { report }) => {
            let frame = wire::channel_event("pusher:cache_miss", channel.as_str(), "{}", None);
            outbox.send(Outgoing::Text(frame.into()));
            if report {
                emit(state, &app.id, "cache_miss", || WebhookEvent::CacheMiss {
                    channel: channel.to_string(),
                });
            }
        }
    }
}

/// After the connection left the channel: `channel_vacated` when it was the last
/// subscription in the cluster, and the subscription count. `removed` is the cluster's count
/// left (`None`: occupancy could not say).
pub async fn unsubscribed(
    state: &Arc<EdgeState>,
    app: &App,
    channel: &ChannelName,
    removed: Option<u64>,
) {
    let Some(count) = removed else {
        return;
    };
    if count == 0 && channel.kind() != ChannelKind::ServerToUser {
        emit(state, &app.id, "channel_vacated", || {
            WebhookEvent::ChannelVacated {
                channel: channel.to_string(),
            }
        });
    }
    subscription_count_changed(state, app, channel, count).await;
}

/// A dead node's subscriptions left and the channel has none anywhere (`dead_nodes`).
pub fn vacated_by_dead_node(state: &EdgeState, app: &AppId, channel: &ChannelName) {
    if channel.kind() == ChannelKind::ServerToUser {
        return;
    }
    emit(state, app, "channel_vacated", || {
        WebhookEvent::ChannelVacated {
            channel: channel.to_string(),
        }
    });
}

/// A user's first connection joined the presence channel.
pub fn member_added(state: &EdgeState, app: &AppId, channel: &ChannelName, user: &UserId) {
    emit(state, app, "member_added", || WebhookEvent::MemberAdded {
        channel: channel.to_string(),
        user_id: user.to_string(),
    });
}

/// A user's last connection left the presence channel.
pub fn member_removed(state: &EdgeState, app: &AppId, channel: &ChannelName, user: &UserId) {
    emit(state, app, "member_removed", || {
        WebhookEvent::MemberRemoved {
            channel: channel.to_string(),
            user_id: user.to_string(),
        }
    });
}

/// A client event about to be published; `frame` is the frame the other subscribers get.
pub fn client_event(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
    socket_id: &SocketId,
    frame: &str,
) {
    #[derive(Deserialize)]
    struct Sent {
        event: String,
        data: String,
        #[serde(default)]
        user_id: Option<String>,
    }
    let Some(sink) = &state.webhooks else {
        return;
    };
    if !sink.wants(app, "client_event") {
        return;
    }
    // The session built the frame (`wire::channel_event`), so it always parses.
    let Ok(sent) = serde_json::from_str::<Sent>(frame) else {
        return;
    };
    sink.emit(
        app,
        WebhookEvent::ClientEvent {
            channel: channel.to_string(),
            event: sent.event,
            data: sent.data,
            socket_id: socket_id.to_string(),
            user_id: sent.user_id,
        },
    );
}

/// When each channel's count was last sent, per app; only for apps that opted in.
#[derive(Default)]
pub struct CountThrottle {
    channels: Mutex<HashMap<(AppId, ChannelName), Throttled>>,
}

#[derive(Debug, Clone, Copy)]
struct Throttled {
    last_sent: Instant,
    /// A send is scheduled for the end of the interval.
    scheduled: bool,
}

/// What to do with a count change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Decision {
    Now,
    /// Send the then-current count at this instant.
    At(Instant),
    /// A send is already scheduled.
    Skip,
}

impl CountThrottle {
    fn decide(&self, app: &AppId, channel: &ChannelName, count: u64, now: Instant) -> Decision {
        let mut channels = self.channels.lock().expect("throttle lock poisoned");
        let key = (app.clone(), channel.clone());
        if count == 0 {
            channels.remove(&key);
            return Decision::Now;
        }
        let entry = channels.entry(key).or_insert(Throttled {
            last_sent: now - COUNT_INTERVAL,
            scheduled: false,
        });
        if count <= COUNT_THROTTLE_ABOVE || now.duration_since(entry.last_sent) >= COUNT_INTERVAL {
            entry.last_sent = now;
            return Decision::Now;
        }
        if entry.scheduled {
            return Decision::Skip;
        }
        entry.scheduled = true;
        Decision::At(entry.last_sent + COUNT_INTERVAL)
    }

    /// A scheduled send is going out now.
    fn fired(&self, app: &AppId, channel: &ChannelName, now: Instant) {
        let mut channels = self.channels.lock().expect("throttle lock poisoned");
        if let Some(entry) = channels.get_mut(&(app.clone(), channel.clone())) {
            entry.last_sent = now;
            entry.scheduled = false;
        }
    }
}

/// `pusher_internal:subscription_count` to the channel's subscribers on every node and the
/// `subscription_count` webhook, for apps that opted in and channels other than presence.
/// Each node throttles the counts it sends (so a cluster of N sends at most N per interval).
async fn subscription_count_changed(
    state: &Arc<EdgeState>,
    app: &App,
    channel: &ChannelName,
    count: u64,
) {
    if !app.subscription_counting
        || matches!(
            channel.kind(),
            ChannelKind::Presence | ChannelKind::ServerToUser
        )
    {
        return;
    }
    match state
        .count_throttle
        .decide(&app.id, channel, count, Instant::now())
    {
        Decision::Now => send_count(state, &app.id, channel, count).await,
        Decision::Skip => {}
        Decision::At(at) => {
            let (state, app, channel) = (state.clone(), app.id.clone(), channel.clone());
            tokio::spawn(async move {
                tokio::time::sleep_until(at).await;
                state.count_throttle.fired(&app, &channel, Instant::now());
                let count = state
                    .cluster
                    .occupancy
                    .subscription_count(&app, &channel)
                    .await;
                match count {
                    Ok(count) => send_count(&state, &app, &channel, count).await,
                    Err(error) => tracing::warn!(%error, "occupancy unavailable"),
                }
            });
        }
    }
}

async fn send_count(state: &EdgeState, app: &AppId, channel: &ChannelName, count: u64) {
    if count > 0 {
        let message = NodeMessage::SubscriptionCount {
            app: app.clone(),
            channel: channel.clone(),
            count,
        };
        if let Err(error) = state.cluster.broadcast.broadcast(message).await {
            tracing::warn!(%error, "subscription count not broadcast");
        }
    }
    emit(state, app, "subscription_count", || {
        WebhookEvent::SubscriptionCount {
            channel: channel.to_string(),
            subscription_count: count,
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_go_out_at_once_up_to_100_subscribers_then_every_5_seconds() {
        let throttle = CountThrottle::default();
        let app = AppId::parse("1").unwrap();
        let channel = ChannelName::parse("c").unwrap();
        let start = Instant::now();
        for count in 1..=100 {
            assert_eq!(throttle.decide(&app, &channel, count, start), Decision::Now);
        }
        let soon = start + Duration::from_secs(1);
        assert_eq!(
            throttle.decide(&app, &channel, 101, soon),
            Decision::At(start + COUNT_INTERVAL)
        );
        assert_eq!(throttle.decide(&app, &channel, 102, soon), Decision::Skip);
        throttle.fired(&app, &channel, start + COUNT_INTERVAL);
        let later = start + COUNT_INTERVAL + Duration::from_secs(5);
        assert_eq!(throttle.decide(&app, &channel, 103, later), Decision::Now);
        // Vacating forgets the channel.
        assert_eq!(throttle.decide(&app, &channel, 0, later), Decision::Now);
        assert!(throttle.channels.lock().unwrap().is_empty());
    }
}
