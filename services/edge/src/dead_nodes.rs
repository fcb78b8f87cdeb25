//! What a node that died (stopped heartbeating) leaves behind, announced by a live one:
//! every `DEAD_NODE_SWEEP_EVERY` this node asks the broker to sweep dead nodes' presence
//! memberships (`Broker::sweep_dead_nodes`), publishes `pusher_internal:member_removed` for
//! each user that took through the normal publish path (so every node delivers it, in the
//! channel's order) with the `member_removed` webhook, then takes the dead nodes'
//! subscriptions off the counts (`Occupancy::sweep_dead_nodes`, which also finds the dead
//! nodes' apps without presence itself) and sends `channel_vacated` for each channel that
//! left empty, within the dead node's heartbeat ttl plus this sweep's interval. The broker reports each departure to one node only,
//! so each goes out once cluster-wide. With `Local` there is never anything to sweep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use broker::Publication;
use protocol::wire;

use crate::{EdgeState, channel_events};

/// How often a node sweeps: a dead node's members leave within its heartbeat ttl plus this
/// (9 s + 1 s by default).
pub const DEAD_NODE_SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Sweeps for dead nodes until the edge closes. Spawn once per edge.
pub async fn sweep_dead_nodes_periodically(state: Arc<EdgeState>) {
    let mut ticks = tokio::time::interval(DEAD_NODE_SWEEP_EVERY);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        if state.meter.is_closed() {
            return;
        }
        sweep_once(&state).await;
    }
}

/// One sweep: announces what dead nodes left (see the module's comment).
pub async fn sweep_once(state: &Arc<EdgeState>) {
    let departures = match state.cluster.broker.sweep_dead_nodes().await {
        Ok(departures) => departures,
        Err(error) => {
            tracing::warn!(%error, "sweeping dead nodes' presence failed");
            Vec::new()
        }
    };
    let mut dead_in_apps = HashSet::new();
    for departure in departures {
        tracing::info!(node = %departure.node, "a dead node's presence member left");
        channel_events::member_removed(state, &departure.app, &departure.channel, &departure.user);
        let frame = wire::member_removed(departure.channel.as_str(), &departure.user);
        let publication = Publication {
            app: departure.app.clone(),
            channel: departure.channel,
            frame: frame.into(),
            except: None,
            history: None,
            serial: None,
        };
        if let Err(error) = state.cluster.broker.publish(publication).await {
            tracing::warn!(%error, "a dead node's member_removed was not published");
        }
        dead_in_apps.insert((departure.app, departure.node));
    }
    let dead: Vec<_> = dead_in_apps.into_iter().collect();
    match state.cluster.occupancy.sweep_dead_nodes(&dead).await {
        Ok(vacated) => {
            for (app, channel) in vacated {
                channel_events::vacated_by_dead_node(state, &app, &channel);
            }
        }
        Err(error) => tracing::warn!(%error, "sweeping dead nodes' subscriptions failed"),
    }
}
