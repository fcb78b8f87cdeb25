//! Which apps each node holds subscriptions in, so a live node finds a dead node's apps
//! without waiting for someone to touch them (a non-presence channel of a quiet app would
//! otherwise be vacated only at the app's next occupancy step).
//!
//! Keys, all tagged `{nodes}` (one shard, so each node step is atomic on a Redis Cluster
//! too): `<ns>oh:{nodes}` sorted set of node → deadline (Redis time, unix ms) and per node
//! `<ns>oa:{nodes}:<node>` the set of its apps. A node registers an app (moving its
//! deadline on in the same step) before its first subscription there and unregisters it
//! after its last, under one async lock that only these changes and heartbeats take (a
//! further subscription in a held app never waits on Redis); each heartbeat registers every
//! held app again, so a registry a sweep emptied while the node lived (a pause longer than
//! its ttl) is whole again within a third of the ttl. Bounds: the set holds one entry per
//! node (a dead one is forgotten once its apps are swept), a registry the apps its node
//! holds.

use std::collections::HashMap;
use std::sync::Mutex;

use protocol::names::AppId;

use super::connection::Commands;
use super::counters::NodeSettings;
use super::{state_scripts, unavailable};
use crate::BrokerError;

/// What is left of a dead node after some of its apps were swept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterSweep {
    /// Nothing: the node is forgotten.
    Forgotten,
    /// More apps to sweep.
    AppsLeft,
    /// It beat again meanwhile: alive, its apps stay registered.
    Alive,
}

pub struct NodeApps {
    commands: Commands,
    namespace: String,
    settings: NodeSettings,
    /// This node's subscriptions per app; apps at 0 are removed (and unregistered). A count
    /// crosses 0 ↔ 1 only under `registering`.
    held: Mutex<HashMap<AppId, u64>>,
    /// Held across each registry round trip, so Redis sees registrations in the order of the
    /// changes they follow.
    registering: tokio::sync::Mutex<()>,
    beat: redis::Script,
    dead_nodes: redis::Script,
    swept_apps: redis::Script,
}

impl NodeApps {
    pub fn new(commands: Commands, namespace: &str, settings: NodeSettings) -> Self {
        Self {
            commands,
            namespace: namespace.to_owned(),
            settings,
            held: Mutex::default(),
            registering: tokio::sync::Mutex::default(),
            beat: state_scripts::occupancy_node_beat(),
            dead_nodes: state_scripts::occupancy_dead_nodes(),
            swept_apps: state_scripts::occupancy_swept_apps(),
        }
    }

    fn deadlines(&self) -> String {
        format!("{}oh:{{nodes}}", self.namespace)
    }

    fn registry(&self, node: &str) -> String {
        format!("{}oa:{{nodes}}:{node}", self.namespace)
    }

    fn ttl_ms(&self) -> u64 {
        self.settings.heartbeat_ttl.as_millis().max(1) as u64
    }

    async fn register(&self, apps: &[&AppId]) -> redis::RedisResult<()> {
        let mut step = self.beat.key(self.deadlines());
        step.key(self.registry(&self.settings.node_id))
            .arg(&self.settings.node_id)
            .arg(self.ttl_ms());
        for app in apps {
            step.arg(app.as_str());
        }
        step.invoke_async(&mut self.commands.clone()).await
    }

    /// Adds one to a held app's count; false when the app is not held.
    fn add_to_held(&self, app: &AppId) -> bool {
        let mut held = self.held.lock().expect("occupancy lock poisoned");
        let Some(count) = held.get_mut(app) else {
            return false;
        };
        *count += 1;
        true
    }

    /// One more subscription in `app`; the app is registered first if it is the node's first.
    pub async fn hold(&self, app: &AppId) -> Result<(), BrokerError> {
        if self.add_to_held(app) {
            return Ok(());
        }
        let _order = self.registering.lock().await;
        if self.add_to_held(app) {
            return Ok(());
        }
        self.register(&[app]).await.map_err(unavailable)?;
        let mut held = self.held.lock().expect("occupancy lock poisoned");
        held.insert(app.clone(), 1);
        Ok(())
    }

    /// One subscription fewer in `app`; unregistered after the node's last.
    pub async fn release(&self, app: &AppId) {
        {
            let mut held = self.held.lock().expect("occupancy lock poisoned");
            match held.get_mut(app) {
                None => return,
                Some(count) if *count > 1 => {
                    *count -= 1;
                    return;
                }
                Some(_) => {}
            }
        }
        let _order = self.registering.lock().await;
        {
            let mut held = self.held.lock().expect("occupancy lock poisoned");
            let Some(count) = held.get_mut(app) else {
                return;
            };
            *count -= 1;
            if *count > 0 {
                return;
            }
            held.remove(app);
        }
        let removed = redis::cmd("SREM")
            .arg(self.registry(&self.settings.node_id))
            .arg(app.as_str())
            .exec_async(&mut self.commands.clone())
            .await;
        if let Err(error) = removed {
            // A stale entry only costs the sweep of this node, once dead, one empty step.
            tracing::warn!(%error, "unregistering an occupancy app failed");
        }
    }

    /// Moves this node's deadline on and registers its apps again; returns them (for their
    /// own deadlines).
    pub async fn beat(&self) -> Vec<AppId> {
        let _order = self.registering.lock().await;
        let apps: Vec<AppId> = {
            let held = self.held.lock().expect("occupancy lock poisoned");
            held.keys().cloned().collect()
        };
        if let Err(error) = self.register(&apps.iter().collect::<Vec<_>>()).await {
            tracing::warn!(%error, "an occupancy node heartbeat failed");
        }
        apps
    }

    /// At most `max` other nodes whose deadline passed.
    pub async fn dead_nodes(&self, max: usize) -> Result<Vec<String>, BrokerError> {
        self.dead_nodes
            .key(self.deadlines())
            .arg(&self.settings.node_id)
            .arg(max)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// At most `max` of a dead node's registered apps (as stored: parsed by the caller).
    pub async fn registered_apps(
        &self,
        node: &str,
        max: usize,
    ) -> Result<Vec<String>, BrokerError> {
        redis::cmd("SRANDMEMBER")
            .arg(self.registry(node))
            .arg(max)
            .query_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)
    }

    /// Unregisters a dead node's apps once they were swept (forgetting the node after its
    /// last), unless it came back meanwhile.
    pub async fn swept(&self, node: &str, apps: &[String]) -> Result<AfterSweep, BrokerError> {
        let left: i64 = self
            .swept_apps
            .key(self.deadlines())
            .key(self.registry(node))
            .arg(node)
            .arg(apps)
            .invoke_async(&mut self.commands.clone())
            .await
            .map_err(unavailable)?;
        Ok(match left {
            1 => AfterSweep::Forgotten,
            0 => AfterSweep::AppsLeft,
            _ => AfterSweep::Alive,
        })
    }
}
