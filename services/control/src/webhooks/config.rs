//! Each app's webhook endpoints and signing key, cached: a trigger on `webhooks` NOTIFYs
//! `switchboard_webhooks`, and `switchboard_catalog` (keys, plans) is followed too, so changes
//! apply within a second; an entry is also re-read after `ttl` in case a notification was lost.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use protocol::names::AppId;
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenancy::Secret;

use crate::catalog::CATALOG_CHANNEL;
use crate::crypto::SecretsKey;
use crate::repository::{keys, webhooks};
use crate::webhooks::WEBHOOKS_CHANNEL;
use crate::webhooks::payload::Target;

/// An app's endpoints and the key that signs for it.
#[derive(Debug)]
pub(crate) struct AppWebhooks {
    pub(crate) targets: Vec<Target>,
    /// The oldest live key and its secret; `None` when the app has no endpoints (not needed)
    /// or no live key (nothing can be signed).
    pub(crate) signer: Option<(String, Secret)>,
    loaded_at: Instant,
}

impl AppWebhooks {
    fn accepts(&self, name: &str) -> bool {
        self.targets.iter().any(|target| target.accepts(name))
    }
}

/// Cached endpoint configuration per app.
pub(crate) struct Configs {
    pub(crate) pool: PgPool,
    pub(crate) secrets: SecretsKey,
    pub(crate) ttl: Duration,
    pub(crate) apps: RwLock<HashMap<AppId, Arc<AppWebhooks>>>,
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
    pub(crate) fn wants(&self, app: &AppId, name: &str) -> bool {
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
    pub(crate) async fn get(&self, app: &AppId) -> Option<Arc<AppWebhooks>> {
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

    pub(crate) fn invalidate(&self, app: &AppId) {
        self.apps
            .write()
            .expect("webhook config lock poisoned")
            .remove(app);
    }

    pub(crate) fn invalidate_all(&self) {
        self.apps
            .write()
            .expect("webhook config lock poisoned")
            .clear();
    }
}

/// Pause between attempts to re-establish the listener while Postgres is down.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

/// Drops an app's cached endpoints when its webhooks, keys or plan change; stops with the sink.
pub(crate) async fn follow_changes(pool: PgPool, configs: std::sync::Weak<Configs>) {
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
