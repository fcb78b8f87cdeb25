//! The webhook sender: `PgWebhookSink` is the edge's `WebhookSink` on Postgres.
//!
//! `emit` only `try_send`s onto a bounded queue (on overflow the event is dropped, logged and
//! counted). One worker task drains it: leave events wait out Pusher's grace period
//! (`delay`), each event goes to the app's endpoints that asked for its type, alone or (for
//! endpoints with batching) gathered for `batch_window` up to `max_batch` per request, signed
//! with the app's oldest live key, and delivered by a task of its own that retries with
//! backoff (`deliver`), logging every attempt in `webhook_deliveries`.
//!
//! An app's endpoints are cached; a trigger on `webhooks` NOTIFYs `switchboard_webhooks`, and
//! `switchboard_catalog` (keys, plans) is followed too, so changes apply within a second; the
//! cache is also re-read every `config_ttl` in case a notification was lost.

pub mod delay;
pub mod deliver;
pub mod payload;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use protocol::names::AppId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenancy::{Secret, WebhookEvent, WebhookSink};
use tokio::sync::{Semaphore, mpsc};
use uuid::Uuid;

use crate::catalog::CATALOG_CHANNEL;
use crate::crypto::SecretsKey;
use crate::repository::{keys, webhooks};
use crate::webhooks::delay::Delayer;
use crate::webhooks::deliver::{Attempt, DeliveryLog, Job, RetryPolicy};
use crate::webhooks::payload::{Target, requests, sign};

/// The NOTIFY channel of the `webhooks` table's trigger.
pub const WEBHOOKS_CHANNEL: &str = "switchboard_webhooks";

/// The sender's tunables; the defaults are Pusher's behaviour.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    /// Events queued between the edge and the worker before new ones are dropped.
    pub queue_capacity: usize,
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
    /// Requests (with their retries) under way at once.
    pub max_in_flight: usize,
    /// Requests under way at once to one endpoint; past it (an endpoint failing under a flood
    /// of events) further requests are dropped and logged as failed, so one tenant's dead
    /// endpoint cannot hold every slot.
    pub max_in_flight_per_webhook: usize,
    /// Delivery attempts older than this many days are deleted.
    pub log_retention_days: i32,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Self {
            queue_capacity: 10_000,
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
            max_in_flight_per_webhook: 32,
            log_retention_days: 7,
        }
    }
}

/// An app's endpoints and the key that signs for it.
#[derive(Debug)]
struct AppWebhooks {
    targets: Vec<Target>,
    /// The oldest live key and its secret; `None` when the app has no endpoints (not needed)
    /// or no live key (nothing can be signed).
    signer: Option<(String, Secret)>,
    loaded_at: Instant,
}

impl AppWebhooks {
    fn accepts(&self, name: &str) -> bool {
        self.targets.iter().any(|target| target.accepts(name))
    }
}

/// Cached endpoint configuration per app.
struct Configs {
    pool: PgPool,
    secrets: SecretsKey,
    ttl: Duration,
    apps: RwLock<HashMap<AppId, Arc<AppWebhooks>>>,
}

impl Configs {
    fn fresh(&self, app: &AppId) -> Option<Arc<AppWebhooks>> {
        let apps = self.apps.read().expect("webhook config lock poisoned");
        apps.get(app)
            .filter(|config| config.loaded_at.elapsed() < self.ttl)
            .cloned()
    }

    /// True unless the app is known (and fresh) to have no endpoint for the event. A join
    /// counts as wanted when its leave is, so the grace period can cancel the pair.
    fn wants(&self, app: &AppId, name: &str) -> bool {
        let Some(config) = self.fresh(app) else {
            return true;
        };
        let partner = match name {
            "channel_occupied" => "channel_vacated",
            "member_added" => "member_removed",
            other => other,
        };
        config.accepts(name) || config.accepts(partner)
    }

    /// The app's endpoints, from the cache or Postgres; on a database error the stale entry
    /// if there is one.
    async fn get(&self, app: &AppId) -> Option<Arc<AppWebhooks>> {
        if let Some(config) = self.fresh(app) {
            return Some(config);
        }
        match self.load(app).await {
            Ok(config) => {
                let config = Arc::new(config);
                let mut apps = self.apps.write().expect("webhook config lock poisoned");
                apps.insert(app.clone(), config.clone());
                Some(config)
            }
            Err(error) => {
                tracing::warn!(%error, app_id = %app, "cannot load webhooks; using what is cached");
                let apps = self.apps.read().expect("webhook config lock poisoned");
                apps.get(app).cloned()
            }
        }
    }

    async fn load(&self, app: &AppId) -> sqlx::Result<AppWebhooks> {
        let mut conn = self.pool.acquire().await?;
        let targets: Vec<Target> = webhooks::list_for_delivery(&mut conn, app.as_str())
            .await?
            .into_iter()
            .map(|row| Target {
                id: row.id,
                url: row.url,
                event_types: row.event_types,
                batching: row.batching,
            })
            .collect();
        let mut signer = None;
        if !targets.is_empty() {
            let mut live = keys::list_live(&mut conn, app.as_str()).await?;
            live.sort_by(|a, b| (a.created_at, &a.key).cmp(&(b.created_at, &b.key)));
            signer = live.into_iter().find_map(|row| {
                let secret = self
                    .secrets
                    .open(&row.key, &row.secret_nonce, &row.secret_ciphertext)
                    .ok()?;
                Some((row.key, Secret::new(secret)))
            });
            if signer.is_none() {
                tracing::warn!(app_id = %app, "app has webhooks but no usable live key; events are dropped");
            }
        }
        Ok(AppWebhooks {
            targets,
            signer,
            loaded_at: Instant::now(),
        })
    }

    fn invalidate(&self, app: &AppId) {
        self.apps
            .write()
            .expect("webhook config lock poisoned")
            .remove(app);
    }

    fn invalidate_all(&self) {
        self.apps
            .write()
            .expect("webhook config lock poisoned")
            .clear();
    }
}

/// The edge's webhook sink on Postgres.
pub struct PgWebhookSink {
    queue: mpsc::Sender<(AppId, WebhookEvent)>,
    configs: Arc<Configs>,
    dropped: AtomicU64,
}

/// The client webhooks are sent with: HTTPS with the system's roots (reqwest's rustls with
/// its aws-lc-rs provider, the only one in the build), no redirects (a receiver must answer
/// itself).
pub fn webhook_http_client(timeout: std::time::Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent("switchboard-webhooks")
        .build()
        .expect("the webhook HTTP client builds")
}

impl PgWebhookSink {
    /// Starts the worker and the change listener on the current Tokio runtime.
    pub fn start(pool: PgPool, secrets: SecretsKey, settings: WebhookSettings) -> Arc<Self> {
        let (queue, receiver) = mpsc::channel(settings.queue_capacity.max(1));
        let configs = Arc::new(Configs {
            pool: pool.clone(),
            secrets,
            ttl: settings.config_ttl,
            apps: RwLock::new(HashMap::new()),
        });
        let http = webhook_http_client(settings.request_timeout);
        let worker = Worker {
            delayer: Delayer::new(settings.leave_delay),
            batches: HashMap::new(),
            in_flight: Arc::new(Semaphore::new(settings.max_in_flight.max(1))),
            in_flight_per_webhook: HashMap::new(),
            log: Arc::new(PgDeliveryLog { pool: pool.clone() }),
            configs: configs.clone(),
            http,
            settings,
        };
        tokio::spawn(worker.run(receiver));
        tokio::spawn(follow_changes(pool, Arc::downgrade(&configs)));
        Arc::new(Self {
            queue,
            configs,
            dropped: AtomicU64::new(0),
        })
    }

    /// Events dropped because the queue was full.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }
}

impl WebhookSink for PgWebhookSink {
    fn emit(&self, app: &AppId, event: WebhookEvent) {
        if let Err(error) = self.queue.try_send((app.clone(), event)) {
            let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
            // Logged on the first drop and then once per thousand, so a flood stays readable.
            if dropped % 1000 == 1 {
                let reason = match error {
                    mpsc::error::TrySendError::Full(_) => "queue full",
                    mpsc::error::TrySendError::Closed(_) => "sender stopped",
                };
                tracing::warn!(app_id = %app, dropped, reason, "webhook event dropped");
            }
        }
    }

    fn wants(&self, app: &AppId, name: &str) -> bool {
        self.configs.wants(app, name)
    }
}

/// Delivery attempts into `webhook_deliveries`.
struct PgDeliveryLog {
    pool: PgPool,
}

#[async_trait]
impl DeliveryLog for PgDeliveryLog {
    async fn record(&self, attempt: Attempt) {
        let result = async {
            let mut conn = self.pool.acquire().await?;
            webhooks::insert_delivery(
                &mut conn,
                attempt.webhook_id,
                &attempt.app_id,
                i32::try_from(attempt.attempt).unwrap_or(i32::MAX),
                attempt.status.as_str(),
                attempt.http_status.map(i32::from),
                attempt.error.as_deref(),
                i32::try_from(attempt.event_count).unwrap_or(i32::MAX),
            )
            .await
        }
        .await;
        if let Err(error) = result {
            tracing::warn!(%error, webhook_id = %attempt.webhook_id, "cannot log a webhook delivery");
        }
    }
}

/// Events gathered for one endpoint with batching.
struct Batch {
    app: AppId,
    target: Target,
    events: Vec<WebhookEvent>,
    due: Instant,
}

struct Worker {
    settings: WebhookSettings,
    configs: Arc<Configs>,
    http: reqwest::Client,
    log: Arc<dyn DeliveryLog>,
    delayer: Delayer,
    batches: HashMap<Uuid, Batch>,
    in_flight: Arc<Semaphore>,
    in_flight_per_webhook: HashMap<Uuid, Arc<Semaphore>>,
}

/// How often delivery attempts past their retention are deleted.
const PRUNE_EVERY: Duration = Duration::from_secs(3600);

impl Worker {
    async fn run(mut self, mut queue: mpsc::Receiver<(AppId, WebhookEvent)>) {
        let mut next_prune = Instant::now();
        loop {
            let now = Instant::now();
            if now >= next_prune {
                self.prune().await;
                next_prune = now + PRUNE_EVERY;
            }
            let wake = [
                Some(next_prune),
                self.delayer.next_due(),
                self.batches.values().map(|batch| batch.due).min(),
            ]
            .into_iter()
            .flatten()
            .min()
            .unwrap_or(next_prune);
            tokio::select! {
                received = queue.recv() => match received {
                    Some((app, event)) => self.offer(app, event).await,
                    None => break,
                },
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            let now = Instant::now();
            for (app, event) in self.delayer.due(now) {
                self.dispatch(app, event).await;
            }
            let due: Vec<Uuid> = self
                .batches
                .iter()
                .filter(|(_, batch)| batch.due <= now)
                .map(|(id, _)| *id)
                .collect();
            for id in due {
                if let Some(batch) = self.batches.remove(&id) {
                    self.send(batch.app, batch.target, batch.events).await;
                }
            }
        }
        // The edge is gone: send what is held rather than lose it.
        for (app, event) in self.delayer.drain() {
            self.dispatch(app, event).await;
        }
        for (_, batch) in std::mem::take(&mut self.batches) {
            self.send(batch.app, batch.target, batch.events).await;
        }
    }

    async fn offer(&mut self, app: AppId, event: WebhookEvent) {
        let now = Instant::now();
        if let Some(event) = self.delayer.offer(app.clone(), event, now) {
            self.dispatch(app, event).await;
        }
    }

    /// Hands the event to each of the app's endpoints that asked for its type.
    async fn dispatch(&mut self, app: AppId, event: WebhookEvent) {
        let Some(config) = self.configs.get(&app).await else {
            return;
        };
        for target in config.targets.iter().filter(|t| t.accepts(event.name())) {
            if !target.batching {
                self.send(app.clone(), target.clone(), vec![event.clone()])
                    .await;
                continue;
            }
            let window = self.settings.batch_window;
            let batch = self.batches.entry(target.id).or_insert_with(|| Batch {
                app: app.clone(),
                target: target.clone(),
                events: Vec::new(),
                due: Instant::now() + window,
            });
            batch.events.push(event.clone());
            if batch.events.len() >= self.settings.max_batch {
                let batch = self.batches.remove(&target.id).expect("just inserted");
                self.send(batch.app, batch.target, batch.events).await;
            }
        }
    }

    /// Signs the events for the endpoint (per endpoint, after filtering) and starts their
    /// delivery; waits while `max_in_flight` requests are under way, drops (logging a failed
    /// attempt) past `max_in_flight_per_webhook` for this endpoint.
    async fn send(&mut self, app: AppId, target: Target, events: Vec<WebhookEvent>) {
        let Some(config) = self.configs.get(&app).await else {
            return;
        };
        let Some((key, secret)) = &config.signer else {
            return;
        };
        for events in requests(&target, events, self.settings.max_batch) {
            let signed = sign(&events, now_ms(), key, secret.expose());
            let job = Job {
                webhook_id: target.id,
                app_id: app.as_str().to_owned(),
                url: target.url.clone(),
                signed,
            };
            let per_webhook = self.settings.max_in_flight_per_webhook.max(1);
            let endpoint = self
                .in_flight_per_webhook
                .entry(target.id)
                .or_insert_with(|| Arc::new(Semaphore::new(per_webhook)))
                .clone();
            let Ok(endpoint_permit) = endpoint.try_acquire_owned() else {
                let log = self.log.clone();
                tokio::spawn(async move {
                    log.record(Attempt {
                        webhook_id: job.webhook_id,
                        app_id: job.app_id,
                        attempt: 1,
                        status: deliver::Status::Failed,
                        http_status: None,
                        error: Some(format!(
                            "dropped: {per_webhook} requests to this endpoint already under way"
                        )),
                        event_count: job.signed.event_count,
                    })
                    .await;
                });
                continue;
            };
            let Ok(permit) = self.in_flight.clone().acquire_owned().await else {
                return;
            };
            let (http, log, policy) = (self.http.clone(), self.log.clone(), self.settings.retry);
            tokio::spawn(async move {
                deliver::deliver(&http, policy, log.as_ref(), job).await;
                drop((permit, endpoint_permit));
            });
        }
    }

    async fn prune(&self) {
        let result = async {
            let mut conn = self.configs.pool.acquire().await?;
            webhooks::prune_deliveries(&mut conn, self.settings.log_retention_days).await
        }
        .await;
        match result {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned old webhook delivery records"),
            Err(error) => tracing::warn!(%error, "cannot prune webhook delivery records"),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| {
            u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX)
        })
}

/// Pause between attempts to re-establish the listener while Postgres is down.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

/// Drops an app's cached endpoints when its webhooks, keys or plan change; stops with the sink.
async fn follow_changes(pool: PgPool, configs: std::sync::Weak<Configs>) {
    loop {
        if let Ok(mut listener) = PgListener::connect_with(&pool).await
            && listener
                .listen_all([WEBHOOKS_CHANNEL, CATALOG_CHANNEL])
                .await
                .is_ok()
        {
            // Notifications sent while no one listened are lost.
            match configs.upgrade() {
                Some(configs) => configs.invalidate_all(),
                None => return,
            }
            // Until the connection is lost (`Ok(None)` or an error).
            while let Ok(Some(notification)) = listener.try_recv().await {
                let Some(configs) = configs.upgrade() else {
                    return;
                };
                match AppId::parse(notification.payload()) {
                    Ok(app) => configs.invalidate(&app),
                    Err(_) => configs.invalidate_all(),
                }
            }
        }
        if configs.strong_count() == 0 {
            return;
        }
        tokio::time::sleep(RELISTEN_BACKOFF).await;
    }
}

#[cfg(test)]
mod tls_tests {
    /// An https endpoint is attempted over TLS: the failure is the connection, not a missing
    /// TLS implementation.
    #[tokio::test]
    async fn https_webhooks_are_attempted_over_tls() {
        let client = super::webhook_http_client(std::time::Duration::from_secs(5));
        let error = client
            .post("https://127.0.0.1:9/")
            .body("{}")
            .send()
            .await
            .unwrap_err();
        assert!(error.is_connect(), "{error:?}");
    }
}
