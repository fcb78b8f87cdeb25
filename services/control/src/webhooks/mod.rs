//! The webhook sender: `PgWebhookSink` is the edge's `WebhookSink` on Postgres.
//!
//! `emit` only `try_send`s onto a bounded queue (on overflow the event is dropped, logged and
//! counted). The intake task (`intake.rs`) turns events into requests (leave delay, filtering
//! per endpoint, batching) and writes each to the `webhook_outbox` table; the dispatcher
//! (`outbox.rs`) claims due requests fairly between apps and makes one attempt each, signed
//! with the app's oldest live key at that moment, through a client that refuses internal
//! addresses after DNS resolution (`guard.rs`); failures are retried with backoff by making
//! the row due later (`deliver.rs`), never by sleeping in a slot. Every attempt is logged in
//! `webhook_deliveries` with a coarse category (`failure.rs`), never an error's text.
//! Pending requests live in Postgres, so a restart loses none of them (at least once).
//!
//! An app's endpoints are cached (`config.rs`).

mod config;
pub mod delay;
pub mod deliver;
pub mod failure;
pub mod guard;
mod intake;
mod outbox;
pub mod payload;
mod shares;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use protocol::names::AppId;
use sqlx::PgPool;
use tenancy::{AddressPolicy, WebhookEvent, WebhookSink};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::crypto::SecretsKey;
use crate::webhooks::config::{Configs, follow_changes};
use crate::webhooks::deliver::RetryPolicy;
use crate::webhooks::guard::{NameLookup, webhook_http_client};
use crate::webhooks::intake::Intake;
use crate::webhooks::outbox::{Attempts, Dispatcher, LEASE_MARGIN};
use crate::webhooks::shares::QueueShares;

/// The NOTIFY channel of the `webhooks` table's trigger.
pub const WEBHOOKS_CHANNEL: &str = "switchboard_webhooks";

/// The sender's tunables; the defaults are Pusher's behaviour.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Events queued between the edge and the intake before new ones are dropped.
    pub queue_capacity: usize,
    /// Events one app may have in that queue; past it the app's new events are dropped, so
    /// one app's flood cannot crowd the others out.
    pub max_queued_per_app: usize,
    /// How long `channel_vacated` / `member_removed` wait for the channel or member to return.
    pub leave_delay: Duration,
    /// How long an endpoint with batching gathers events before a request goes out.
    pub batch_window: Duration,
    /// Most events in one request.
    pub max_batch: usize,
    pub retry: RetryPolicy,
    /// Per-request timeout.
    pub request_timeout: Duration,
    /// How long an app's cached endpoints are trusted without a notification.
    pub config_ttl: Duration,
    /// Attempts under way at once in this process.
    pub max_in_flight: usize,
    /// Attempts under way at once for one app in this process, so that an app whose endpoints
    /// never answer cannot hold every slot.
    pub max_in_flight_per_app: usize,
    /// Requests waiting in the outbox for one endpoint; past it new ones are dropped and
    /// logged (`backlog_full`), which bounds what a dead endpoint can pile up.
    pub max_pending_per_webhook: usize,
    /// How often the outbox is looked at for requests that came due (retries, and requests
    /// written by other processes); requests written here are claimed at once.
    pub poll_interval: Duration,
    /// Which targets may be reached: public addresses only unless the operator allows
    /// private ones (`--webhooks-allow-private`).
    pub addresses: AddressPolicy,
    /// The name lookup under the address guard (the system's; tests give their own).
    pub lookup: NameLookup,
    /// Delivery attempts older than this many days are deleted.
    pub log_retention_days: i32,
    /// Delivery attempts kept per app (the newest); older ones are deleted every minute, so a
    /// flood of failing requests cannot grow the log without bound.
    pub max_log_rows_per_app: usize,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
            max_queued_per_app: 1_000,
            leave_delay: Duration::from_secs(3),
            batch_window: Duration::from_secs(1),
            max_batch: 100,
            retry: RetryPolicy {
                initial: Duration::from_secs(1),
                max_interval: Duration::from_secs(60),
                window: Duration::from_secs(5 * 60),
            },
            request_timeout: Duration::from_secs(10),
            config_ttl: Duration::from_secs(30),
            max_in_flight: 256,
            max_in_flight_per_app: 16,
            max_pending_per_webhook: 1_000,
            poll_interval: Duration::from_secs(1),
            addresses: AddressPolicy::PublicOnly,
            lookup: NameLookup::system(),
            log_retention_days: 7,
            max_log_rows_per_app: 10_000,
        }
    }
}

/// The edge's webhook sink on Postgres.
pub struct PgWebhookSink {
    queue: mpsc::Sender<(AppId, WebhookEvent)>,
    configs: Arc<Configs>,
    shares: Arc<QueueShares>,
    dropped: AtomicU64,
    /// Where the dispatcher reports attempts (the edge's console), once attached.
    console: Arc<std::sync::OnceLock<Arc<dyn tenancy::ConsoleFeed>>>,
    /// Stops the intake (which then stops the dispatcher); taken by `shutdown`.
    running: Mutex<Option<(oneshot::Sender<()>, tokio::task::JoinHandle<()>)>>,
}

impl PgWebhookSink {
    /// Starts the intake, the dispatcher and the change listener on the current Tokio runtime.
    pub fn start(pool: PgPool, secrets: SecretsKey, settings: WebhookSettings) -> Arc<Self> {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let configs = Arc::new(Configs {
            pool: pool.clone(),
            secrets,
            ttl: settings.config_ttl,
            apps: RwLock::new(HashMap::new()),
        });
        let enqueued = Arc::new(Notify::new());
        let console = Arc::new(std::sync::OnceLock::new());
        let dispatcher = Dispatcher {
            attempts: Arc::new(Attempts {
                pool: pool.clone(),
                configs: configs.clone(),
                http: webhook_http_client(
                    settings.request_timeout,
                    settings.addresses,
                    settings.lookup.clone(),
                ),
                addresses: settings.addresses,
                retry: settings.retry,
                console: console.clone(),
            }),
            enqueued: enqueued.clone(),
            max_in_flight: settings.max_in_flight.max(1),
            max_in_flight_per_app: settings.max_in_flight_per_app.max(1),
            lease: settings.request_timeout + LEASE_MARGIN,
            poll_interval: settings.poll_interval,
        };
        let (stop_dispatcher, dispatcher_stopped) = oneshot::channel();
        let dispatcher = tokio::spawn(dispatcher.run(dispatcher_stopped));
        let shares = Arc::new(QueueShares::new(settings.max_queued_per_app));
        let intake = Intake::new(settings, configs.clone(), enqueued, shares.clone());
        let (stop_intake, intake_stopped) = oneshot::channel();
        let intake =
            tokio::spawn(intake.run(receiver, intake_stopped, (stop_dispatcher, dispatcher)));
        tokio::spawn(follow_changes(pool, Arc::downgrade(&configs)));
        Arc::new(Self {
            queue,
            configs,
            shares,
            dropped: AtomicU64::new(0),
            console,
            running: Mutex::new(Some((stop_intake, intake))),
        })
    }

    /// Reports each delivery attempt to `console` from now on (set once; later calls are
    /// ignored). The binary attaches the edge's console once both exist.
    pub fn attach_console(&self, console: Arc<dyn tenancy::ConsoleFeed>) {
        let _ = self.console.set(console);
    }

    /// Events dropped because the queue, or the app's share of it, was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Stops sending: events already emitted, held or batched are written to the outbox,
    /// attempts under way are cut short and handed back, so the next process (on the same
    /// database) delivers all of them. Events emitted afterwards are dropped.
    pub async fn shutdown(&self) {
        let running = self
            .running
            .lock()
            .expect("webhook sink lock poisoned")
            .take();
        if let Some((stop, intake)) = running {
            let _ = stop.send(());
            let _ = intake.await;
        }
    }
}

impl WebhookSink for PgWebhookSink {
    fn emit(&self, app: &AppId, event: WebhookEvent) {
        let refused = if !self.shares.try_take(app) {
            Some("the app's share of the queue is full")
        } else {
            match self.queue.try_send((app.clone(), event)) {
                Ok(()) => None,
                Err(error) => {
                    self.shares.give_back(app);
                    Some(match error {
                        mpsc::error::TrySendError::Full(_) => "queue full",
                        mpsc::error::TrySendError::Closed(_) => "sender stopped",
                    })
                }
            }
        };
        if let Some(reason) = refused {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged on the first drop and then once per thousand, so a flood stays readable.
            if dropped % 1000 == 1 {
                tracing::warn!(app_id = %app, dropped, reason, "webhook event dropped");
            }
        }
    }

    fn wants(&self, app: &AppId, name: &str) -> bool {
        self.configs.wants(app, name)
    }
}
