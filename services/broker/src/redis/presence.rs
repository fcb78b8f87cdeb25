//! Presence on Redis, per node: every membership is recorded under the node that holds its
//! connection, so a node that stops heartbeating (a crash, a SIGKILL) loses its members
//! within its heartbeat ttl, and each user whose last connection that was is reported once
//! cluster-wide, to the live node whose sweep took them (`Broker::sweep_dead_nodes`).
//!
//! Keys (see `keys` and `presence_scripts`): per channel `<ns>ps:{app:channel}:<node>`
//! (the node's sockets → users), `<ns>pc:` and `<ns>pi:{app:channel}` (user → connections,
//! user → info); per cluster `<ns>pd:{nodes}` (node → deadline) and per node
//! `<ns>pn:{nodes}:<node>` (the channels where it holds memberships). A node registers a
//! channel before its first membership there and unregisters it after its last, under one
//! lock, so a registered channel never lacks a membership of the node that Redis holds.
//!
//! Bounds: a sweep takes at most `MAX_DEAD_NODES_PER_SWEEP` nodes and
//! `MAX_CHANNELS_PER_SWEEP` channels (the rest waits for the next sweep), so what it returns
//! is at most that many channels' members.

use std::collections::HashMap;
use std::sync::Arc;

use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use redis::Value;

use super::connection::Commands;
use super::counters::NodeSettings;
use super::keys::Keys;
use super::periodic::Periodic;
use super::replies::{integer, malformed, members, text};
use super::{presence_scripts, unavailable};
use crate::{BrokerError, PresenceDeparture, PresenceJoin};

/// Dead nodes one sweep looks at.
const MAX_DEAD_NODES_PER_SWEEP: usize = 8;
/// Channels one sweep clears; a dead node with more is finished by the next sweeps.
const MAX_CHANNELS_PER_SWEEP: usize = 1_000;
/// Channels read from a dead node's registry per round trip.
const SWEEP_BATCH: usize = 100;

struct Shared {
    commands: Commands,
    keys: Keys,
    settings: NodeSettings,
    /// This node's memberships per registered channel (`app\nchannel`): registered on
    /// 0 → 1, unregistered on 1 → 0, with the lock held across the Redis call.
    held: tokio::sync::Mutex<HashMap<String, usize>>,
    join: redis::Script,
    leave: redis::Script,
    sweep: redis::Script,
    heartbeat: redis::Script,
    dead_nodes: redis::Script,
    forget_node: redis::Script,
}

/// This node's side of presence. Dropping it stops its heartbeats (as a crash would).
pub struct NodePresence {
    shared: Arc<Shared>,
    _beats: Periodic,
}

fn registry_entry(app: &AppId, channel: &ChannelName) -> String {
    format!("{}\n{}", app.as_str(), channel.as_str())
}

impl NodePresence {
    /// Beats once (so the node is known before its first membership), then every third of
    /// the ttl. Must run in a Tokio runtime.
    pub async fn start(
        commands: Commands,
        namespace: &str,
        settings: NodeSettings,
    ) -> Result<Self, BrokerError> {
        let shared = Arc::new(Shared {
            commands,
            keys: Keys::new(namespace),
            settings,
            held: tokio::sync::Mutex::default(),
            join: redis::Script::new(presence_scripts::PRESENCE_JOIN),
            leave: redis::Script::new(presence_scripts::PRESENCE_LEAVE),
            sweep: redis::Script::new(presence_scripts::PRESENCE_SWEEP),
            heartbeat: presence_scripts::node_heartbeat(),
            dead_nodes: presence_scripts::dead_nodes(),
            forget_node: presence_scripts::forget_node(),
        });
        shared.beat().await.map_err(unavailable)?;
        let beats = {
            let shared = shared.clone();
            Periodic::every(shared.settings.heartbeat_ttl / 3, move || {
                let shared = shared.clone();
                async move {
                    if let Err(error) = shared.beat().await {
                        tracing::warn!(%error, "a presence heartbeat failed");
                    }
                }
            })
        };
        Ok(Self {
            shared,
            _beats: beats,
        })
    }

    pub async fn join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
        member: Member,
        max_members: usize,
    ) -> Result<PresenceJoin, BrokerError> {
        let shared = &self.shared;
        let entry = registry_entry(app, channel);
        shared.register(&entry).await?;
        let presence = shared.keys.presence(app, channel, &shared.settings.node_id);
        let reply: Result<Vec<Value>, _> = shared
            .join
            .key(&presence.sockets)
            .key(&presence.counts)
            .key(&presence.infos)
            .arg(socket.as_str())
            .arg(member.user_id.as_str())
            .arg(member.user_info.to_string())
            .arg(max_members)
            .invoke_async(&mut shared.commands.clone())
            .await;
        let status = reply
            .as_ref()
            .ok()
            .and_then(|reply| integer(reply.first()?));
        if !matches!(status, Some(1 | 2)) {
            // Nothing joined (refused, already joined, or failed): the count goes back.
            shared.unregister(&entry).await;
        }
        let reply = reply.map_err(unavailable)?;
        match status {
            Some(-1) => Err(BrokerError::PresenceFull { max: max_members }),
            Some(0..=2) => Ok(PresenceJoin {
                members: members(&reply[1..])?,
                first_for_user: status == Some(2),
            }),
            _ => Err(malformed("presence join")),
        }
    }

    pub async fn leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
    ) -> Result<Option<UserId>, BrokerError> {
        let shared = &self.shared;
        let presence = shared.keys.presence(app, channel, &shared.settings.node_id);
        let reply: Result<Vec<Value>, _> = shared
            .leave
            .key(&presence.sockets)
            .key(&presence.counts)
            .key(&presence.infos)
            .arg(socket.as_str())
            .invoke_async(&mut shared.commands.clone())
            .await;
        // Leaves balance joins, so the count goes back even when a sweep (this node was
        // taken for dead) already removed the membership.
        shared.unregister(&registry_entry(app, channel)).await;
        let reply = reply.map_err(unavailable)?;
        match reply.first().and_then(integer) {
            Some(0 | 1) => Ok(None),
            Some(2) => {
                let user = reply.get(1).and_then(text);
                let user = user.and_then(|user| UserId::parse(&user).ok());
                user.map(Some).ok_or_else(|| malformed("presence leave"))
            }
            _ => Err(malformed("presence leave")),
        }
    }

    /// Sweeps nodes whose deadline passed: their memberships leave every channel, and the
    /// users whose last connection went are returned, once cluster-wide.
    pub async fn sweep_dead_nodes(&self) -> Result<Vec<PresenceDeparture>, BrokerError> {
        let shared = &self.shared;
        let deadlines = shared.keys.node_deadlines();
        let dead: Vec<String> = shared
            .dead_nodes
            .key(&deadlines)
            .arg(&shared.settings.node_id)
            .arg(MAX_DEAD_NODES_PER_SWEEP)
            .invoke_async(&mut shared.commands.clone())
            .await
            .map_err(unavailable)?;
        let mut departures = Vec::new();
        let mut budget = MAX_CHANNELS_PER_SWEEP;
        for node in dead {
            let registry = shared.keys.node_registry(&node);
            loop {
                if budget == 0 {
                    return Ok(departures);
                }
                let batch: Vec<String> = redis::cmd("SRANDMEMBER")
                    .arg(&registry)
                    .arg(SWEEP_BATCH.min(budget))
                    .query_async(&mut shared.commands.clone())
                    .await
                    .map_err(unavailable)?;
                if batch.is_empty() {
                    let _forgotten: i64 = shared
                        .forget_node
                        .key(&deadlines)
                        .key(&registry)
                        .arg(&node)
                        .invoke_async(&mut shared.commands.clone())
                        .await
                        .map_err(unavailable)?;
                    break;
                }
                for entry in batch {
                    budget = budget.saturating_sub(1);
                    shared.sweep_channel(&node, &entry, &mut departures).await?;
                    redis::cmd("SREM")
                        .arg(&registry)
                        .arg(&entry)
                        .exec_async(&mut shared.commands.clone())
                        .await
                        .map_err(unavailable)?;
                }
            }
        }
        Ok(departures)
    }
}

impl Shared {
    /// Moves this node's deadline on. A node whose registry holds fewer channels than it
    /// does was taken for dead (a sweep emptied it): it registers every channel it holds
    /// again, so a later death is swept. (A registration racing the beat can make it do so
    /// needlessly, which changes nothing.)
    async fn beat(&self) -> redis::RedisResult<()> {
        let ttl_ms = self.settings.heartbeat_ttl.as_millis().max(1) as u64;
        let registry = self.keys.node_registry(&self.settings.node_id);
        let registered: usize = self
            .heartbeat
            .key(self.keys.node_deadlines())
            .key(&registry)
            .arg(&self.settings.node_id)
            .arg(ttl_ms)
            .invoke_async(&mut self.commands.clone())
            .await?;
        let held = self.held.lock().await;
        if held.len() <= registered {
            return Ok(());
        }
        tracing::warn!("this node was taken for dead; its presence members were announced gone");
        let mut add = redis::cmd("SADD");
        add.arg(&registry);
        for entry in held.keys() {
            add.arg(entry);
        }
        add.exec_async(&mut self.commands.clone()).await
    }

    async fn register(&self, entry: &str) -> Result<(), BrokerError> {
        let mut held = self.held.lock().await;
        let count = held.entry(entry.to_owned()).or_default();
        *count += 1;
        if *count > 1 {
            return Ok(());
        }
        let registry = self.keys.node_registry(&self.settings.node_id);
        let added = redis::cmd("SADD")
            .arg(&registry)
            .arg(entry)
            .exec_async(&mut self.commands.clone())
            .await;
        if let Err(error) = added {
            held.remove(entry);
            return Err(unavailable(error));
        }
        Ok(())
    }

    async fn unregister(&self, entry: &str) {
        let mut held = self.held.lock().await;
        let Some(count) = held.get_mut(entry) else {
            return;
        };
        *count -= 1;
        if *count > 0 {
            return;
        }
        held.remove(entry);
        let registry = self.keys.node_registry(&self.settings.node_id);
        let removed = redis::cmd("SREM")
            .arg(&registry)
            .arg(entry)
            .exec_async(&mut self.commands.clone())
            .await;
        if let Err(error) = removed {
            // A stale entry only costs the sweep of a dead node one empty step.
            tracing::warn!(%error, "unregistering a presence channel failed");
        }
    }

    /// Takes `node`'s memberships off the channel named by a registry `entry`.
    async fn sweep_channel(
        &self,
        node: &str,
        entry: &str,
        departures: &mut Vec<PresenceDeparture>,
    ) -> Result<(), BrokerError> {
        let parsed = entry.split_once('\n').and_then(|(app, channel)| {
            Some((AppId::parse(app).ok()?, ChannelName::parse(channel).ok()?))
        });
        let Some((app, channel)) = parsed else {
            tracing::warn!("a malformed presence registry entry was dropped");
            return Ok(());
        };
        let presence = self.keys.presence(&app, &channel, node);
        let gone: Vec<String> = self
            .sweep
            .key(&presence.sockets)
            .key(&presence.counts)
            .key(&presence.infos)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        for user in gone {
            let user = UserId::parse(&user).map_err(|_| malformed("presence sweep"))?;
            departures.push(PresenceDeparture {
                app: app.clone(),
                channel: channel.clone(),
                user,
                node: node.to_owned(),
            });
        }
        Ok(())
    }
}
