//! This node's connections by channel and by signed-in user, and local fan-out.
//!
//! The hub is the broker's `DeliverySink`: a publication's frame is shared (a refcount, not a
//! copy) into the outbox of every local subscriber, now or, for an app over its deliveries
//! in flight, in its turn (`fanout`: fair between apps). It is also the node's `NodeSink` for
//! cluster broadcasts (terminate a user, subscription counts). Counts that span nodes
//! (occupancy, connection slots) are the cluster's, not the hub's.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};

use broker::broadcast::{NodeMessage, NodeSink};
use broker::counters::MessageCounter;
use broker::{DeliverySink, Publication};
use bytestring::ByteString;
use protocol::delta::Delta;
use protocol::names::{AppId, ChannelName, UserId};
use protocol::wire;

use crate::delta_bases::DeltaBases;
use crate::fanout::{AppFlow, Fanout, FanoutBounds, Job, Route};
use crate::limits::unix_now;
use crate::metering::Meter;
use crate::metrics::metrics;
use crate::outbox::Outbox;

type ChannelKey = (AppId, ChannelName);
type MemberKey = (AppId, ChannelName, UserId);
/// Subscribers keyed by the outbox's address, which is unique while it is alive.
type Subscribers = HashMap<usize, Arc<Outbox>>;

pub struct Hub {
    /// Deliveries count toward the app's daily messages.
    messages: Arc<dyn MessageCounter>,
    /// Usage per app and minute: connections and deliveries are counted here.
    meter: Arc<Meter>,
    channels: RwLock<HashMap<ChannelKey, Subscribers>>,
    users: Mutex<HashMap<(AppId, UserId), Subscribers>>,
    /// Presence subscribers by channel and member: where an addressed client event goes.
    members: RwLock<HashMap<MemberKey, Subscribers>>,
    connections: Mutex<HashMap<AppId, AppConnections>>,
    /// Set (under the `connections` lock) by `shut_down_all`: a connection admitted just
    /// before it that registers after it is shut down at once, so none escapes a drain.
    shut_down: AtomicBool,
    /// The previous event of each channel with a delta subscriber here: a publication's
    /// delta is computed once, before fan-out, and each outbox picks it or the full frame.
    deltas: DeltaBases,
    fanout: Fanout,
}

/// An app's connections on this node and the deliveries it has in flight to them.
struct AppConnections {
    outboxes: Subscribers,
    flow: Arc<AppFlow>,
}

fn id_of(outbox: &Arc<Outbox>) -> usize {
    Arc::as_ptr(outbox) as usize
}

impl Hub {
    /// A hub adding its deliveries to `messages` (the cluster's daily counts).
    pub fn new(messages: Arc<dyn MessageCounter>) -> Self {
        Self {
            messages,
            meter: Arc::default(),
            channels: RwLock::default(),
            users: Mutex::default(),
            members: RwLock::default(),
            connections: Mutex::default(),
            shut_down: AtomicBool::new(false),
            deltas: DeltaBases::default(),
            fanout: Fanout::default(),
        }
    }

    /// A worker ran a due task `lag` late: how the fan-out paces a storm.
    pub fn worker_lagged(&self, lag: std::time::Duration) {
        self.fanout.worker_lagged(lag);
    }

    /// Sets the per-app bounds of fan-out (`--fanout-in-flight-per-app`, …).
    pub fn set_fanout_bounds(&self, bounds: FanoutBounds) {
        self.fanout.set_bounds(bounds);
    }

    /// Whether the app has so many deliveries waiting here that its publishes are refused
    /// (429) for now.
    pub fn fanout_congested(&self, app: &AppId) -> bool {
        self.fanout.congested(app)
    }

    /// The app's deliveries queued in its connections' outboxes, not yet written.
    pub fn deliveries_in_flight(&self, app: &AppId) -> usize {
        let connections = self.connections.lock().expect("hub lock poisoned");
        connections
            .get(app)
            .map_or(0, |of_app| of_app.flow.in_flight())
    }

    /// The channels' delta bases, which delta subscribers join and leave.
    pub fn deltas(&self) -> &DeltaBases {
        &self.deltas
    }

    /// Leaves `app`'s connections and deliveries out of metering and daily counts (the
    /// console's system app); set once.
    pub fn exempt_from_metering(&self, app: AppId) {
        self.meter.exempt(app);
    }

    fn metered(&self, app: &AppId) -> bool {
        !self.meter.is_exempt(app)
    }

    /// Whether the channel has a subscriber on this node.
    pub fn has_subscribers(&self, app: &AppId, channel: &ChannelName) -> bool {
        self.channels
            .read()
            .expect("hub lock poisoned")
            .get(&(app.clone(), channel.clone()))
            .is_some_and(|subscribers| !subscribers.is_empty())
    }

    /// The usage counters flushed to the usage sink.
    pub fn meter(&self) -> &Arc<Meter> {
        &self.meter
    }

    /// Records a live connection, so shutdown and app changes can reach it.
    pub fn connect(&self, app: &AppId, outbox: &Arc<Outbox>) {
        let mut connections = self.connections.lock().expect("hub lock poisoned");
        let of_app = connections
            .entry(app.clone())
            .or_insert_with(|| AppConnections {
                outboxes: Subscribers::default(),
                flow: self.fanout.new_flow(),
            });
        outbox.attach_flow(&of_app.flow);
        let new = of_app
            .outboxes
            .insert(id_of(outbox), outbox.clone())
            .is_none();
        let shut_down = self.shut_down.load(Ordering::Relaxed);
        drop(connections);
        if shut_down {
            outbox.shut_down();
        }
        if new {
            if self.metered(app) {
                self.meter.connection_opened(app);
            }
            metrics().connections.increment(1.0);
        }
    }

    pub fn disconnect(&self, app: &AppId, outbox: &Arc<Outbox>) {
        let mut connections = self.connections.lock().expect("hub lock poisoned");
        let Some(of_app) = connections.get_mut(app) else {
            return;
        };
        let removed = of_app.outboxes.remove(&id_of(outbox)).is_some();
        if of_app.outboxes.is_empty() {
            connections.remove(app);
        }
        drop(connections);
        if removed {
            if self.metered(app) {
                self.meter.connection_closed(app);
            }
            metrics().connections.decrement(1.0);
        }
    }

    pub fn connection_count(&self) -> usize {
        self.connections
            .lock()
            .expect("hub lock poisoned")
            .values()
            .map(|of_app| of_app.outboxes.len())
            .sum()
    }

    /// Asks every connection to close with "reconnect now", and every one that registers
    /// from now on.
    pub fn shut_down_all(&self) {
        let connections = self.connections.lock().expect("hub lock poisoned");
        self.shut_down.store(true, Ordering::Relaxed);
        for of_app in connections.values() {
            of_app
                .outboxes
                .values()
                .for_each(|outbox| outbox.shut_down());
        }
    }

    /// Tells every connection of the app to re-read it (a revoked key or a disabled app then
    /// closes it; a new plan applies at once).
    pub fn app_changed(&self, app: &AppId) {
        if let Some(of_app) = self.connections.lock().expect("hub lock poisoned").get(app) {
            of_app
                .outboxes
                .values()
                .for_each(|outbox| outbox.app_changed());
        }
    }

    pub fn all_apps_changed(&self) {
        for of_app in self.connections.lock().expect("hub lock poisoned").values() {
            of_app
                .outboxes
                .values()
                .for_each(|outbox| outbox.app_changed());
        }
    }

    /// Adds the connection to the channel; idempotent. Returns the channel's subscriber count
    /// on this node when the connection was added, `None` when it was already there (the
    /// cluster's count is `broker::Occupancy`'s).
    pub fn subscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        outbox: &Arc<Outbox>,
    ) -> Option<usize> {
        let mut channels = self.channels.write().expect("hub lock poisoned");
        let subscribers = channels.entry((app.clone(), channel.clone())).or_default();
        if subscribers.insert(id_of(outbox), outbox.clone()).is_none() {
            metrics().subscriptions.increment(1.0);
            return Some(subscribers.len());
        }
        None
    }

    /// Returns the subscriber count left on this node when the connection was removed, `None`
    /// when it was not subscribed.
    pub fn unsubscribe(
        &self,
        app: &AppId,
        channel: &ChannelName,
        outbox: &Arc<Outbox>,
    ) -> Option<usize> {
        let mut channels = self.channels.write().expect("hub lock poisoned");
        let key = (app.clone(), channel.clone());
        let subscribers = channels.get_mut(&key)?;
        let removed = subscribers.remove(&id_of(outbox)).is_some();
        if removed {
            metrics().subscriptions.decrement(1.0);
        }
        let left = subscribers.len();
        if subscribers.is_empty() {
            channels.remove(&key);
        }
        removed.then_some(left)
    }

    /// The connection is on the presence channel as `user`: events addressed to `user` there
    /// reach it. Registered before the channel's history is read, like `subscribe`.
    pub fn join_member(
        &self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
        outbox: &Arc<Outbox>,
    ) {
        let mut members = self.members.write().expect("hub lock poisoned");
        members
            .entry((app.clone(), channel.clone(), user.clone()))
            .or_default()
            .insert(id_of(outbox), outbox.clone());
    }

    pub fn leave_member(
        &self,
        app: &AppId,
        channel: &ChannelName,
        user: &UserId,
        outbox: &Arc<Outbox>,
    ) {
        let mut members = self.members.write().expect("hub lock poisoned");
        let key = (app.clone(), channel.clone(), user.clone());
        if let Some(connections) = members.get_mut(&key) {
            connections.remove(&id_of(outbox));
            if connections.is_empty() {
                members.remove(&key);
            }
        }
    }

    pub fn sign_in(&self, app: &AppId, user: &UserId, outbox: &Arc<Outbox>) {
        let mut users = self.users.lock().expect("hub lock poisoned");
        users
            .entry((app.clone(), user.clone()))
            .or_default()
            .insert(id_of(outbox), outbox.clone());
    }

    pub fn sign_out(&self, app: &AppId, user: &UserId, outbox: &Arc<Outbox>) {
        let mut users = self.users.lock().expect("hub lock poisoned");
        let key = (app.clone(), user.clone());
        if let Some(connections) = users.get_mut(&key) {
            connections.remove(&id_of(outbox));
            if connections.is_empty() {
                users.remove(&key);
            }
        }
    }

    /// Closes every connection of the app signed in as `user`; returns how many.
    pub fn terminate_user(&self, app: &AppId, user: &UserId) -> usize {
        let users = self.users.lock().expect("hub lock poisoned");
        let connections = users.get(&(app.clone(), user.clone()));
        connections.map_or(0, |connections| {
            connections.values().for_each(|outbox| outbox.terminate());
            connections.len()
        })
    }
}

impl Hub {
    /// Delivers the publication (or, to a subscriber holding its base, its delta) to each of
    /// `subscribers` but the excluded one, now or in the app's turn; how many.
    fn fan_out(
        &self,
        publication: &Publication,
        subscribers: Option<&Subscribers>,
        delta: Option<&Delta<ByteString>>,
    ) -> u64 {
        let Some(subscribers) = subscribers.filter(|subscribers| !subscribers.is_empty()) else {
            return 0;
        };
        let excluded =
            |outbox: &&Arc<Outbox>| publication.except.as_ref() == Some(outbox.socket_id());
        // Only a publication that excludes its sender needs a pass to count.
        let count = match publication.except {
            None => subscribers.len(),
            Some(_) => subscribers.values().filter(|o| !excluded(o)).count(),
        };
        let job = || {
            let targets = subscribers
                .values()
                .filter(|o| !excluded(o))
                .cloned()
                .collect();
            Job::new(publication.clone(), delta.cloned(), targets)
        };
        // Subscribers never registered as connections (unit tests) have no flow to count.
        let route = match self.flow_of(&publication.app) {
            Some(flow) => self.fanout.route(&publication.app, &flow, count, job),
            None => Route::Now,
        };
        match route {
            Route::Now => {
                for outbox in subscribers.values().filter(|o| !excluded(o)) {
                    outbox.push_publication(
                        &publication.channel,
                        publication.serial,
                        publication.frame.clone(),
                        delta,
                    );
                }
            }
            Route::Queued => {}
            Route::Refused => {
                metrics().fanout_refused.increment(count as u64);
                for outbox in subscribers.values().filter(|o| !excluded(o)) {
                    outbox.refuse_over_capacity();
                }
                return 0;
            }
        }
        count as u64
    }

    fn flow_of(&self, app: &AppId) -> Option<Arc<AppFlow>> {
        let connections = self.connections.lock().expect("hub lock poisoned");
        connections.get(app).map(|of_app| of_app.flow.clone())
    }
}

impl DeliverySink for Hub {
    fn deliver(&self, publication: &Publication) {
        // An addressed client event (the recipient leads its frame, every node reads it the
        // same) goes to that member's connections on the channel only.
        let delivered = match wire::addressee(&publication.frame) {
            None => {
                // Once per publication, outside the hub's lock; `None` unless a delta
                // subscriber is here.
                let delta = self.deltas.next(publication);
                let channels = self.channels.read().expect("hub lock poisoned");
                let key = (publication.app.clone(), publication.channel.clone());
                self.fan_out(publication, channels.get(&key), delta.as_ref())
            }
            Some(to) => match UserId::parse(&to) {
                Ok(to) => {
                    let members = self.members.read().expect("hub lock poisoned");
                    let key = (publication.app.clone(), publication.channel.clone(), to);
                    self.fan_out(publication, members.get(&key), None)
                }
                Err(_) => 0,
            },
        };
        // On the broker's delivery span (one per publication, see `broker::trace_context`);
        // a no-op when traces are off.
        tracing::Span::current().record("subscribers", delivered);
        if !self.metered(&publication.app) {
            metrics().delivered.increment(delivered);
            return;
        }
        self.messages.add(&publication.app, delivered, unix_now());
        if delivered > 0 {
            let bytes = publication.frame.len() as u64;
            self.meter.delivered(&publication.app, delivered, bytes);
            metrics().delivered.increment(delivered);
        }
    }

    fn deliveries_interrupted(&self) {
        let connections = self.connections.lock().expect("hub lock poisoned");
        for of_app in connections.values() {
            of_app
                .outboxes
                .values()
                .for_each(|outbox| outbox.interrupt());
        }
    }
}

impl NodeSink for Hub {
    fn on_message(&self, message: &NodeMessage) {
        match message {
            NodeMessage::TerminateUser { app, user } => {
                let closed = self.terminate_user(app, user);
                tracing::info!(closed, "terminated user connections on this node");
            }
            NodeMessage::SubscriptionCount {
                app,
                channel,
                count,
            } => {
                let data = serde_json::json!({ "subscription_count": count }).to_string();
                let frame = wire::channel_event(
                    "pusher_internal:subscription_count",
                    channel.as_str(),
                    &data,
                    None,
                );
                self.deliver(&Publication {
                    app: app.clone(),
                    channel: channel.clone(),
                    frame: frame.into(),
                    except: None,
                    // A protocol frame: no serial, not kept in the channel's history.
                    history: None,
                    serial: None,
                });
            }
        }
    }
}

#[cfg(test)]
#[path = "hub_tests.rs"]
mod tests;
