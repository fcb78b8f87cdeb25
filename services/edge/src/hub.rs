//! This node's connections by channel and by signed-in user, and local fan-out.
//!
//! The hub is the broker's `DeliverySink`: a publication's frame is shared (a refcount, not a
//! copy) into the outbox of every local subscriber. It is also the node's `NodeSink` for
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
    connections: Mutex<HashMap<AppId, Subscribers>>,
    /// Set (under the `connections` lock) by `shut_down_all`: a connection admitted just
    /// before it that registers after it is shut down at once, so none escapes a drain.
    shut_down: AtomicBool,
    /// The previous event of each channel with a delta subscriber here: a publication's
    /// delta is computed once, before fan-out, and each outbox picks it or the full frame.
    deltas: DeltaBases,
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
        }
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
        let new = connections
            .entry(app.clone())
            .or_default()
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
        let removed = of_app.remove(&id_of(outbox)).is_some();
        if of_app.is_empty() {
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
            .map(HashMap::len)
            .sum()
    }

    /// Asks every connection to close with "reconnect now", and every one that registers
    /// from now on.
    pub fn shut_down_all(&self) {
        let connections = self.connections.lock().expect("hub lock poisoned");
        self.shut_down.store(true, Ordering::Relaxed);
        for of_app in connections.values() {
            of_app.values().for_each(|outbox| outbox.shut_down());
        }
    }

    /// Tells every connection of the app to re-read it (a revoked key or a disabled app then
    /// closes it; a new plan applies at once).
    pub fn app_changed(&self, app: &AppId) {
        if let Some(of_app) = self.connections.lock().expect("hub lock poisoned").get(app) {
            of_app.values().for_each(|outbox| outbox.app_changed());
        }
    }

    pub fn all_apps_changed(&self) {
        for of_app in self.connections.lock().expect("hub lock poisoned").values() {
            of_app.values().for_each(|outbox| outbox.app_changed());
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
    /// Pushes the publication (or, to a subscriber holding its base, its delta) into each of
    /// `subscribers` but the excluded one; how many.
    fn push_to(
        publication: &Publication,
        subscribers: Option<&Subscribers>,
        delta: Option<&Delta<ByteString>>,
    ) -> u64 {
        let mut delivered = 0;
        for outbox in subscribers.into_iter().flat_map(HashMap::values) {
            if publication.except.as_ref() != Some(outbox.socket_id()) {
                outbox.push_publication(
                    &publication.channel,
                    publication.serial,
                    publication.frame.clone(),
                    delta,
                );
                delivered += 1;
            }
        }
        delivered
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
                Self::push_to(publication, channels.get(&key), delta.as_ref())
            }
            Some(to) => match UserId::parse(&to) {
                Ok(to) => {
                    let members = self.members.read().expect("hub lock poisoned");
                    let key = (publication.app.clone(), publication.channel.clone(), to);
                    Self::push_to(publication, members.get(&key), None)
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
            of_app.values().for_each(|outbox| outbox.interrupt());
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
mod tests {
    use protocol::codes::CloseReason;
    use protocol::names::SocketId;

    use super::*;
    use crate::outbox::OutboxBounds;

    fn outbox() -> Arc<Outbox> {
        let bounds = OutboxBounds {
            frames: 16,
            bytes: 1024,
            stats: Arc::default(),
        };
        Arc::new(Outbox::new(SocketId::parse("1.1").unwrap(), bounds))
    }

    #[test]
    fn a_connection_that_registers_after_the_shutdown_is_shut_down_at_once() {
        let hub = Hub::new(Arc::new(broker::counters::LocalMessages::default()));
        let app = AppId::parse("app").unwrap();
        let before = outbox();
        hub.connect(&app, &before);
        hub.shut_down_all();
        assert_eq!(before.close_reason(), Some(CloseReason::ServerShuttingDown));
        // Admitted before the drain refused newcomers, registered after the shutdown.
        let late = outbox();
        hub.connect(&app, &late);
        assert_eq!(late.close_reason(), Some(CloseReason::ServerShuttingDown));
        hub.disconnect(&app, &late);
        hub.disconnect(&app, &before);
    }

    /// Counts what a subscriber's layers are asked to do: spans made, fields recorded, events.
    #[derive(Clone, Default)]
    struct Counted(Arc<std::sync::Mutex<[usize; 3]>>);

    impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for Counted {
        fn on_new_span(
            &self,
            _: &tracing::span::Attributes<'_>,
            _: &tracing::span::Id,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap()[0] += 1;
        }
        fn on_record(
            &self,
            _: &tracing::span::Id,
            _: &tracing::span::Record<'_>,
            _: tracing_subscriber::layer::Context<'_, S>,
        ) {
            self.0.lock().unwrap()[1] += 1;
        }
        fn on_event(&self, _: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
            self.0.lock().unwrap()[2] += 1;
        }
    }

    /// What one publication through `Local` costs the tracing layers with `subscribers`
    /// subscribers, with the layer taking `level` and below.
    async fn traced_work(subscribers: usize, level: tracing::Level) -> [usize; 3] {
        use tracing_subscriber::layer::SubscriberExt;
        let counted = Counted::default();
        let filter = tracing_subscriber::filter::LevelFilter::from_level(level);
        let subscriber = tracing_subscriber::Registry::default().with(
            tracing_subscriber::Layer::with_filter(counted.clone(), filter),
        );
        let _default = tracing::subscriber::set_default(subscriber);
        let hub = Arc::new(Hub::new(Arc::new(
            broker::counters::LocalMessages::default(),
        )));
        let broker = broker::Local::new(hub.clone());
        let (app, channel) = (
            AppId::parse("app").unwrap(),
            ChannelName::parse("news").unwrap(),
        );
        let bounds = OutboxBounds {
            frames: 16,
            bytes: 1024,
            stats: Arc::default(),
        };
        let outboxes: Vec<_> = (0..subscribers)
            .map(|n| {
                Arc::new(Outbox::new(
                    SocketId::parse(&format!("1.{n}")).unwrap(),
                    bounds.clone(),
                ))
            })
            .collect();
        for outbox in &outboxes {
            hub.subscribe(&app, &channel, outbox);
        }
        let publication = Publication {
            app: app.clone(),
            channel: channel.clone(),
            frame: "{}".into(),
            except: None,
            history: None,
            serial: None,
        };
        let before = *counted.0.lock().unwrap();
        broker::Broker::publish(&broker, publication).await.unwrap();
        let after = *counted.0.lock().unwrap();
        assert!(
            outboxes.iter().all(|outbox| outbox.queued_bytes() > 0),
            "delivered"
        );
        [0, 1, 2].map(|n| after[n] - before[n])
    }

    #[tokio::test]
    async fn tracing_does_no_work_per_subscriber_and_none_at_all_with_traces_off() {
        // Traces on (the trace layer takes `debug`): one delivery span and one recorded
        // subscriber count per publication, whether it reaches one subscriber or a hundred.
        let on = traced_work(1, tracing::Level::DEBUG).await;
        assert_eq!(on, [1, 1, 0]);
        assert_eq!(traced_work(100, tracing::Level::DEBUG).await, on);
        // Traces off (logs take `info`, the default): no span, no record, no event.
        assert_eq!(traced_work(1, tracing::Level::INFO).await, [0, 0, 0]);
        assert_eq!(traced_work(100, tracing::Level::INFO).await, [0, 0, 0]);
    }
}
