//! From the edge's events to rows of the outbox: leave events wait out Pusher's grace period
//! (`delay`), each event goes to the app's endpoints that asked for its type, alone or (for
//! endpoints with batching) gathered for `batch_window` up to `max_batch` per request, and
//! each request's body is written to `webhook_outbox`, many per statement. Nothing here sends
//! HTTP: the dispatcher (`outbox.rs`) does.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use protocol::names::AppId;
use tenancy::WebhookEvent;
use tokio::sync::{Notify, mpsc, oneshot};
use uuid::Uuid;

use crate::repository::webhook_outbox::{self, NewOutboxEntry};
use crate::repository::webhooks;
use crate::webhooks::WebhookSettings;
use crate::webhooks::config::Configs;
use crate::webhooks::delay::Delayer;
use crate::webhooks::deliver::Status;
use crate::webhooks::failure::Failure;
use crate::webhooks::payload::{Target, body, requests};
use crate::webhooks::shares::QueueShares;

/// Events taken from the queue before the requests they make are written out together.
const EVENTS_PER_ROUND: usize = 512;

/// How often the delivery log is pruned (past its retention, past its rows per app).
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// An endpoint's dropped requests are logged at most this often.
const BACKLOG_LOG_EVERY: Duration = Duration::from_secs(60);

/// Events gathered for one endpoint with batching.
struct Batch {
    app: AppId,
    target: Target,
    events: Vec<WebhookEvent>,
    due: Instant,
}

pub(crate) struct Intake {
    pub(crate) settings: WebhookSettings,
    pub(crate) configs: Arc<Configs>,
    /// Woken when requests were written, so the dispatcher claims them at once.
    pub(crate) enqueued: Arc<Notify>,
    pub(crate) delayer: Delayer,
    batches: HashMap<Uuid, Batch>,
    /// Requests not yet written (kept across a database error, up to `queue_capacity`).
    pending: Vec<NewOutboxEntry>,
    /// Each app's count of queued events, given back as they are taken.
    shares: Arc<QueueShares>,
    /// When each endpoint's dropped requests were last logged (entries expire after
    /// `BACKLOG_LOG_EVERY`).
    backlog_logged: HashMap<Uuid, Instant>,
}

impl Intake {
    pub(crate) fn new(
        settings: WebhookSettings,
        configs: Arc<Configs>,
        enqueued: Arc<Notify>,
        shares: Arc<QueueShares>,
    ) -> Self {
        Self {
            shares,
            backlog_logged: HashMap::new(),
            delayer: Delayer::new(settings.leave_delay),
            settings,
            configs,
            enqueued,
            batches: HashMap::new(),
            pending: Vec::new(),
        }
    }

    /// Until `stop` fires or the sink is gone; then what is held or batched is written out
    /// (a restart delivers it), and the dispatcher is stopped.
    pub(crate) async fn run(
        mut self,
        mut queue: mpsc::Receiver<(AppId, WebhookEvent)>,
        mut stop: oneshot::Receiver<()>,
        dispatcher: (oneshot::Sender<()>, tokio::task::JoinHandle<()>),
    ) {
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
                _ = &mut stop => break,
                () = tokio::time::sleep_until(wake.into()) => {}
            }
            for _ in 1..EVENTS_PER_ROUND {
                let Ok((app, event)) = queue.try_recv() else {
                    break;
                };
                self.offer(app, event).await;
            }
            self.release_due(Instant::now()).await;
            self.write_pending().await;
        }
        // Stopping: what the edge already reported, then what is held or batched.
        while let Ok((app, event)) = queue.try_recv() {
            self.offer(app, event).await;
        }
        for (app, event) in self.delayer.drain() {
            self.dispatch(app, event).await;
        }
        for (_, batch) in std::mem::take(&mut self.batches) {
            self.enqueue(batch.app, batch.target, batch.events);
        }
        self.write_pending().await;
        let (stop_dispatcher, dispatcher) = dispatcher;
        let _ = stop_dispatcher.send(());
        let _ = dispatcher.await;
    }

    async fn offer(&mut self, app: AppId, event: WebhookEvent) {
        self.shares.give_back(&app);
        let now = Instant::now();
        if let Some(event) = self.delayer.offer(app.clone(), event, now) {
            self.dispatch(app, event).await;
        }
    }

    /// Held leave events and batches whose time has come.
    async fn release_due(&mut self, now: Instant) {
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
                self.enqueue(batch.app, batch.target, batch.events);
            }
        }
    }

    /// Hands the event to each of the app's endpoints that asked for its type.
    async fn dispatch(&mut self, app: AppId, event: WebhookEvent) {
        let Some(config) = self.configs.get(&app).await else {
            return;
        };
        for target in config.targets.iter().filter(|t| t.accepts(event.name())) {
            if !target.batching {
                self.enqueue(app.clone(), target.clone(), vec![event.clone()]);
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
                self.enqueue(batch.app, batch.target, batch.events);
            }
        }
    }

    /// The endpoint's requests for `events`, to be written with the next round.
    fn enqueue(&mut self, app: AppId, target: Target, events: Vec<WebhookEvent>) {
        for events in requests(&target, events, self.settings.max_batch) {
            self.pending.push(NewOutboxEntry {
                id: Uuid::new_v4(),
                webhook_id: target.id,
                app_id: app.as_str().to_owned(),
                body: body(&events, now_ms()),
                event_count: i32::try_from(events.len()).unwrap_or(i32::MAX),
            });
        }
    }

    /// Writes the pending requests in one statement; those refused because their endpoint's
    /// backlog is full are logged as failed, at most once a minute per endpoint.
    async fn write_pending(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        let cap = i64::try_from(self.settings.max_pending_per_webhook).unwrap_or(i64::MAX);
        let result = async {
            let mut conn = self.configs.pool.acquire().await?;
            let inserted = webhook_outbox::enqueue(&mut conn, &self.pending, cap).await?;
            let inserted: HashSet<Uuid> = inserted.into_iter().collect();
            let mut refused: HashMap<Uuid, (String, i32)> = HashMap::new();
            for entry in self.pending.iter().filter(|e| !inserted.contains(&e.id)) {
                let refused = refused
                    .entry(entry.webhook_id)
                    .or_insert_with(|| (entry.app_id.clone(), 0));
                refused.1 = refused.1.saturating_add(entry.event_count);
            }
            let now = Instant::now();
            self.backlog_logged
                .retain(|_, logged| now.duration_since(*logged) < BACKLOG_LOG_EVERY);
            for (webhook_id, (app_id, event_count)) in &refused {
                if self.backlog_logged.contains_key(webhook_id) {
                    continue;
                }
                self.backlog_logged.insert(*webhook_id, now);
                tracing::warn!(%webhook_id, app_id, event_count, "webhook backlog full; requests dropped");
                webhooks::insert_delivery(
                    &mut conn,
                    *webhook_id,
                    app_id,
                    1,
                    Status::Failed.as_str(),
                    None,
                    Some(&Failure::BacklogFull.category()),
                    *event_count,
                )
                .await?;
            }
            Ok::<_, sqlx::Error>(inserted.len())
        }
        .await;
        match result {
            Ok(inserted) => {
                self.pending.clear();
                if inserted > 0 {
                    self.enqueued.notify_one();
                }
            }
            Err(error) => {
                tracing::warn!(%error, pending = self.pending.len(), "cannot write webhook requests; keeping them for the next round");
                let capacity = self.settings.queue_capacity.max(1);
                if self.pending.len() > capacity {
                    let dropped = self.pending.len() - capacity;
                    self.pending.drain(..dropped);
                    tracing::warn!(
                        dropped,
                        "webhook requests dropped while the database is unreachable"
                    );
                }
            }
        }
    }

    async fn prune(&self) {
        let keep = i64::try_from(self.settings.max_log_rows_per_app).unwrap_or(i64::MAX);
        let result = async {
            let mut conn = self.configs.pool.acquire().await?;
            let old =
                webhooks::prune_deliveries(&mut conn, self.settings.log_retention_days).await?;
            let excess = webhooks::trim_deliveries(&mut conn, keep).await?;
            Ok::<_, sqlx::Error>(old + excess)
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
