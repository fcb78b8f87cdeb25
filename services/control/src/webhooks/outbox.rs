//! The dispatcher: claims due requests from `webhook_outbox` and makes one attempt each.
//!
//! Slots: at most `max_in_flight` attempts under way in this process, at most
//! `max_in_flight_per_app` of them for one app, and claims are fair between apps (each app's
//! oldest due request, then each app's second, …), so an app whose endpoints never answer holds
//! no more than its share. A slot is held for one attempt only: after a failure the request is
//! made due again after its backoff (`next_attempt_at`) and the slot goes to whoever is due.
//! Each attempt is logged, and the row deleted or rescheduled, in one transaction. A claim
//! leases its rows for `request_timeout + LEASE_MARGIN`, so the rows of a process that died
//! mid-attempt are claimed again by any process afterwards (at least once).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use protocol::names::AppId;
use sqlx::PgPool;
use tenancy::AddressPolicy;
use tokio::sync::{Notify, oneshot};
use tokio::task::JoinSet;
use uuid::Uuid;

use crate::repository::webhook_outbox::{self, ClaimedEntry};
use crate::repository::webhooks;
use crate::webhooks::config::Configs;
use crate::webhooks::deliver::{self, AfterFailure, Job, RetryPolicy, Status};
use crate::webhooks::failure::Failure;
use crate::webhooks::payload::sign_body;

/// How much longer than the request timeout a claim is leased.
pub const LEASE_MARGIN: Duration = Duration::from_secs(10);

/// What every attempt needs.
pub(crate) struct Attempts {
    pub(crate) pool: PgPool,
    pub(crate) configs: Arc<Configs>,
    pub(crate) http: reqwest::Client,
    pub(crate) addresses: AddressPolicy,
    pub(crate) retry: RetryPolicy,
    /// The edge's console, once attached (`PgWebhookSink::attach_console`): each attempt is
    /// reported to its app's console while someone watches it.
    pub(crate) console: Arc<std::sync::OnceLock<Arc<dyn tenancy::ConsoleFeed>>>,
}

pub(crate) struct Dispatcher {
    pub(crate) attempts: Arc<Attempts>,
    pub(crate) enqueued: Arc<Notify>,
    pub(crate) max_in_flight: usize,
    pub(crate) max_in_flight_per_app: usize,
    pub(crate) lease: Duration,
    pub(crate) poll_interval: Duration,
}

/// The attempts under way: which row each is for, and how many per app.
#[derive(Default)]
struct InFlight {
    tasks: JoinSet<Uuid>,
    rows: HashMap<Uuid, String>,
    per_app: HashMap<String, usize>,
}

impl InFlight {
    fn start(&mut self, attempts: &Arc<Attempts>, entry: ClaimedEntry) {
        self.rows.insert(entry.id, entry.app_id.clone());
        *self.per_app.entry(entry.app_id.clone()).or_default() += 1;
        let attempts = attempts.clone();
        self.tasks.spawn(async move {
            let id = entry.id;
            if let Err(error) = attempts.run(entry).await {
                tracing::warn!(%error, outbox_id = %id, "cannot record a webhook attempt; it will be retried after its lease");
            }
            id
        });
    }

    fn finished(&mut self, id: Uuid) {
        let Some(app) = self.rows.remove(&id) else {
            return;
        };
        if let Some(count) = self.per_app.get_mut(&app) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.per_app.remove(&app);
            }
        }
    }

    fn busy(&self) -> Vec<(String, i32)> {
        self.per_app
            .iter()
            .map(|(app, count)| (app.clone(), i32::try_from(*count).unwrap_or(i32::MAX)))
            .collect()
    }
}

impl Dispatcher {
    pub(crate) async fn run(self, mut stop: oneshot::Receiver<()>) {
        let mut in_flight = InFlight::default();
        loop {
            let room = self.max_in_flight.saturating_sub(in_flight.rows.len());
            if room > 0 {
                match self.claim(&in_flight, room).await {
                    Ok(claimed) => {
                        for entry in claimed {
                            in_flight.start(&self.attempts, entry);
                        }
                    }
                    Err(error) => tracing::warn!(%error, "cannot claim webhook requests"),
                }
            }
            tokio::select! {
                _ = &mut stop => break,
                Some(done) = in_flight.tasks.join_next(), if !in_flight.tasks.is_empty() => {
                    if let Ok(id) = done {
                        in_flight.finished(id);
                    }
                }
                () = self.enqueued.notified() => {}
                () = tokio::time::sleep(self.poll_interval) => {}
            }
            while let Some(done) = in_flight.tasks.try_join_next() {
                if let Ok(id) = done {
                    in_flight.finished(id);
                }
            }
        }
        // Stopping: attempts cut short are handed back, due now, for the next process.
        in_flight.tasks.abort_all();
        while let Some(done) = in_flight.tasks.join_next().await {
            if let Ok(id) = done {
                in_flight.finished(id);
            }
        }
        let cut_short: Vec<Uuid> = in_flight.rows.keys().copied().collect();
        if !cut_short.is_empty() {
            let released = async {
                let mut conn = self.attempts.pool.acquire().await?;
                webhook_outbox::release(&mut conn, &cut_short).await
            }
            .await;
            if let Err(error) = released {
                tracing::warn!(%error, "cannot hand back webhook requests; they return after their lease");
            }
        }
    }

    async fn claim(&self, in_flight: &InFlight, room: usize) -> sqlx::Result<Vec<ClaimedEntry>> {
        let mut conn = self.attempts.pool.acquire().await?;
        webhook_outbox::claim_due(
            &mut conn,
            &in_flight.busy(),
            i32::try_from(self.max_in_flight_per_app.max(1)).unwrap_or(i32::MAX),
            i64::try_from(room).unwrap_or(i64::MAX),
            self.lease,
        )
        .await
    }
}

impl Attempts {
    /// One attempt of a claimed request, logged; the row is then deleted (delivered, given
    /// up, or its webhook gone) or made due after its backoff.
    async fn run(&self, entry: ClaimedEntry) -> sqlx::Result<()> {
        let Ok(app) = AppId::parse(&entry.app_id) else {
            let mut conn = self.pool.acquire().await?;
            return webhook_outbox::remove(&mut conn, entry.id).await;
        };
        // `None` only when the endpoints cannot be read (the database is unreachable): the row
        // stays leased and comes back after its lease.
        let Some(config) = self.configs.get(&app).await else {
            return Ok(());
        };
        let Some(target) = config
            .targets
            .iter()
            .find(|target| target.id == entry.webhook_id)
        else {
            // Deleted, or the app's plan no longer has webhooks.
            let mut conn = self.pool.acquire().await?;
            return webhook_outbox::remove(&mut conn, entry.id).await;
        };
        let outcome = match &config.signer {
            None => Err(Failure::NoSigningKey),
            Some((key, secret)) => {
                let event_count = usize::try_from(entry.event_count).unwrap_or(0);
                let job = Job {
                    webhook_id: entry.webhook_id,
                    app_id: entry.app_id.clone(),
                    url: target.url.clone(),
                    signed: sign_body(entry.body.clone(), event_count, key, secret.expose()),
                };
                deliver::attempt(&self.http, self.addresses, &job).await
            }
        };
        let attempt = u32::try_from(entry.attempts.max(1)).unwrap_or(u32::MAX);
        let since_first =
            Duration::try_from_secs_f64(entry.seconds_since_first_attempt).unwrap_or_default();
        let (status, http_status, failure, retry_after) = match outcome {
            Ok(code) => (Status::Delivered, Some(code), None, None),
            Err(failure) => {
                let http_status = match failure {
                    Failure::HttpStatus(code) => Some(code),
                    _ => None,
                };
                match self.retry.after_failure(attempt, since_first) {
                    AfterFailure::RetryAfter(wait) => {
                        (Status::Retrying, http_status, Some(failure), Some(wait))
                    }
                    AfterFailure::GiveUp => (Status::Failed, http_status, Some(failure), None),
                }
            }
        };
        crate::metrics::webhook_attempted(status);
        let error = failure.map(Failure::category);
        if let Some(console) = self.console.get()
            && console.watching(&app)
        {
            console.record(
                &app,
                tenancy::ConsoleEvent::WebhookSent {
                    webhook_id: entry.webhook_id.to_string(),
                    status: status.as_str(),
                    http_status,
                    error: error.clone(),
                    events: i64::from(entry.event_count),
                },
            );
        }
        if let Some(error) = &error {
            tracing::info!(webhook_id = %entry.webhook_id, app_id = %entry.app_id, attempt, error, status = status.as_str(), "webhook delivery failed");
        }
        let mut tx = self.pool.begin().await?;
        webhooks::insert_delivery(
            &mut tx,
            entry.webhook_id,
            &entry.app_id,
            entry.attempts.max(1),
            status.as_str(),
            http_status.map(i32::from),
            error.as_deref(),
            entry.event_count,
        )
        .await?;
        match retry_after {
            Some(wait) => webhook_outbox::reschedule(&mut tx, entry.id, wait).await?,
            None => webhook_outbox::remove(&mut tx, entry.id).await?,
        }
        tx.commit().await
    }
}
