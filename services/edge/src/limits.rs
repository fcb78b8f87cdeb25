//! Plan limits that need counting across connections (and, in a cluster, across nodes):
//! concurrent connections and daily messages per app, and the publish API's request rate per
//! app. The counts themselves are the cluster's (`broker::counters`); this applies the plan
//! to them. Per-connection limits (client event rate, channels per connection, message size)
//! live with the connection and the protocol session.

use std::sync::{Arc, Mutex};

use broker::counters::{ConnectionCounter, MessageCounter, PublishRate};
use broker::{BrokerError, Cluster};
use protocol::names::AppId;
use tenancy::PlanLimits;

use crate::metering::Meter;

/// Seconds since the Unix epoch, for the daily counters.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_secs())
}

/// Unix time in milliseconds, for event timestamps.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// The plan applied to the cluster's counters.
pub struct Limits {
    connections: Arc<dyn ConnectionCounter>,
    messages: Arc<dyn MessageCounter>,
    publish_rates: Arc<dyn PublishRate>,
    /// Told the app's slots in use at every admission: its peak, cluster-wide.
    meter: Arc<Meter>,
}

/// Holds one of the app's connection slots; dropping it gives the slot back.
pub struct ConnectionSlot {
    connections: Arc<dyn ConnectionCounter>,
    app: AppId,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.connections.release(&self.app);
    }
}

impl Limits {
    pub fn new(cluster: &Cluster, meter: Arc<Meter>) -> Self {
        Self {
            connections: cluster.connections.clone(),
            messages: cluster.messages.clone(),
            publish_rates: cluster.publish_rates.clone(),
            meter,
        }
    }

    /// Takes a connection slot unless the app is at its plan's ceiling (included connections
    /// times the burst multiplier); `None` at the ceiling.
    pub async fn admit_connection(
        &self,
        app: &AppId,
        limits: &PlanLimits,
    ) -> Result<Option<ConnectionSlot>, BrokerError> {
        let taken = self
            .connections
            .acquire_counted(app, limits.connection_ceiling())
            .await?;
        let Some(in_use) = taken else {
            return Ok(None);
        };
        // The count the acquire's own step left: the cluster's count only rises at an
        // acquire, so the largest any node sees in a minute is the minute's peak.
        self.meter.cluster_connections(app, in_use);
        if let Some(ceiling) = limits.connection_ceiling() {
            crate::metrics::connection_ceiling_usage(in_use, ceiling);
        }
        Ok(Some(ConnectionSlot {
            connections: self.connections.clone(),
            app: app.clone(),
        }))
    }

    /// Whether the app may publish now: its messages today (UTC) are under the plan's daily
    /// ceiling. The message itself is counted by `count_messages` once published.
    pub async fn may_publish(
        &self,
        app: &AppId,
        limits: &PlanLimits,
        now_unix_secs: u64,
    ) -> Result<bool, BrokerError> {
        let Some(ceiling) = limits.daily_message_ceiling() else {
            return Ok(true);
        };
        Ok(self.messages.today(app, now_unix_secs).await? < ceiling)
    }

    /// Adds published or delivered messages to the app's count for today (UTC).
    pub fn count_messages(&self, app: &AppId, messages: u64, now_unix_secs: u64) {
        self.messages.add(app, messages, now_unix_secs);
    }

    /// Takes one publish request from the app's per-second allowance.
    pub async fn allow_publish_request(
        &self,
        app: &AppId,
        limits: &PlanLimits,
    ) -> Result<bool, BrokerError> {
        match limits.publish_requests_per_second {
            None => Ok(true),
            Some(per_second) => self.publish_rates.take(app, per_second).await,
        }
    }
}

/// A carrier session's connection slot: none while on probation, then taken once, when the
/// session comes into use (or refused: the app was at its ceiling). Concurrent requests that
/// end probation wait for the one answer.
pub struct Probation {
    app: AppId,
    /// The plan when the session started: its ceiling applies when the slot is taken.
    plan: PlanLimits,
    limits: Arc<Limits>,
    /// Whether the session may go on (`false`: refused); set once probation is over.
    decided: tokio::sync::OnceCell<bool>,
    slot: Mutex<SlotState>,
}

#[derive(Default)]
struct SlotState {
    slot: Option<ConnectionSlot>,
    /// The session is over: a slot taken late is given back at once.
    released: bool,
}

impl Probation {
    /// A session on probation.
    pub fn new(app: AppId, plan: PlanLimits, limits: Arc<Limits>) -> Self {
        Self {
            app,
            plan,
            limits,
            decided: tokio::sync::OnceCell::new(),
            slot: Mutex::default(),
        }
    }

    /// A session that holds its slot from the start (a rebuilt one: its client came back).
    pub fn in_use(app: AppId, plan: PlanLimits, limits: Arc<Limits>, slot: ConnectionSlot) -> Self {
        let probation = Self::new(app, plan, limits);
        let _ = probation.decided.set(true);
        probation.lock().slot = Some(slot);
        probation
    }

    /// Probation is over (the slot was taken or refused, or the session ended).
    pub fn is_over(&self) -> bool {
        self.decided.initialized()
    }

    /// Over the ceiling when probation ended.
    pub fn refused(&self) -> bool {
        self.decided.get() == Some(&false)
    }

    /// Ends probation: takes one of the app's slots, once. `false`: the app is at its ceiling
    /// (or the cluster cannot say), and the session must end with 4004.
    pub async fn put_in_use(&self) -> bool {
        *self
            .decided
            .get_or_init(|| async {
                let admitted = self.limits.admit_connection(&self.app, &self.plan).await;
                let slot = admitted.unwrap_or_else(|error| {
                    tracing::warn!(%error, "connection count unavailable; refusing the session");
                    None
                });
                let Some(slot) = slot else {
                    return false;
                };
                let mut state = self.lock();
                if !state.released {
                    state.slot = Some(slot);
                }
                true
            })
            .await
    }

    /// The session is over: gives the slot back, and a later `put_in_use` takes none.
    pub fn release(&self) {
        let _ = self.decided.set(true);
        let slot = {
            let mut state = self.lock();
            state.released = true;
            state.slot.take()
        };
        drop(slot);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, SlotState> {
        self.slot.lock().expect("probation lock poisoned")
    }
}

#[cfg(test)]
impl Limits {
    /// Limits on in-process counters, for unit tests.
    pub fn local_for_tests() -> Arc<Self> {
        Arc::new(Self {
            connections: Arc::new(broker::counters::LocalConnections::default()),
            messages: Arc::new(broker::counters::LocalMessages::default()),
            publish_rates: Arc::new(broker::counters::LocalPublishRates::default()),
            meter: Arc::default(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str) -> AppId {
        AppId::parse(id).unwrap()
    }

    fn plan(max_connections: u64, messages_per_day: u64, burst: u32) -> PlanLimits {
        PlanLimits {
            max_connections: Some(max_connections),
            messages_per_day: Some(messages_per_day),
            burst_multiplier: burst,
            ..PlanLimits::pusher_defaults()
        }
    }

    #[tokio::test]
    async fn paid_plans_burst_to_twice_the_included_amount_and_slots_come_back() {
        let limits = Limits::local_for_tests();
        let paid = plan(2, 10, 2);
        let mut slots = Vec::new();
        for _ in 0..4 {
            slots.push(limits.admit_connection(&app("a"), &paid).await.unwrap());
        }
        assert!(slots.iter().all(Option::is_some));
        assert!(
            limits
                .admit_connection(&app("a"), &paid)
                .await
                .unwrap()
                .is_none()
        );
        slots.pop();
        assert!(
            limits
                .admit_connection(&app("a"), &paid)
                .await
                .unwrap()
                .is_some(),
            "a dropped slot is given back"
        );
    }

    #[tokio::test]
    async fn the_daily_ceiling_applies_to_the_counted_messages() {
        let limits = Limits::local_for_tests();
        let hard = plan(10, 5, 1);
        let now = 20_000 * 86_400 - 1;
        limits.count_messages(&app("a"), 4, now);
        assert!(limits.may_publish(&app("a"), &hard, now).await.unwrap());
        limits.count_messages(&app("a"), 2, now);
        assert!(!limits.may_publish(&app("a"), &hard, now).await.unwrap());
        assert!(limits.may_publish(&app("a"), &hard, now + 1).await.unwrap());
    }

    #[tokio::test]
    async fn probation_takes_one_slot_once_and_a_late_one_goes_back() {
        let limits = Limits::local_for_tests();
        let one = plan(1, 10, 1);
        let first = Probation::new(app("a"), one.clone(), limits.clone());
        assert!(!first.is_over());
        assert!(first.put_in_use().await);
        assert!(first.put_in_use().await, "decided once");
        let second = Probation::new(app("a"), one.clone(), limits.clone());
        assert!(!second.put_in_use().await, "over the ceiling");
        assert!(second.refused());
        first.release();
        let third = Probation::new(app("a"), one.clone(), limits.clone());
        third.release();
        assert!(third.put_in_use().await, "an ended session takes no slot");
        let fourth = Probation::new(app("a"), one, limits);
        assert!(fourth.put_in_use().await, "the released slots are free");
    }
}
