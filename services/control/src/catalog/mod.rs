//! `PgCatalog`: the edge's view of apps and keys in Postgres.
//!
//! Lookups are served from memory; a miss reads Postgres once, and a name Postgres does not
//! hold is remembered as unknown (`negative.rs`, bounded) until a NOTIFY says it exists. A
//! listener on the `switchboard_catalog` channel (fed by triggers on apps, keys and plans)
//! reloads a changed app and tells the edge, so a revoked key or disabled app stops working
//! within a second. When Postgres is unreachable, every app already cached keeps being served
//! (fail-static). Misses share a few database connections (`MAX_CONCURRENT_MISSES`), so a
//! flood of unknown names cannot take the pool the `/v1` API uses.

mod negative;
mod static_apps;

pub use static_apps::static_app_clashes;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use protocol::names::{AppId, AppKey};
use sqlx::PgPool;
use sqlx::postgres::PgListener;
use tenancy::{
    AllowedOrigins, App, AppCatalog, CatalogError, IceServers, IceSettings, KeyedApp, PlanLimits,
    Secret,
};
use tokio::sync::{Semaphore, broadcast, watch};

use crate::catalog::negative::NegativeCache;
use crate::crypto::SecretsKey;
use crate::repository::{apps, keys};

/// The NOTIFY channel the migration's triggers write to.
pub const CATALOG_CHANNEL: &str = "switchboard_catalog";
/// How long an unknown key or app id is remembered as unknown. A NOTIFY of its creation ends
/// it sooner; the expiry only bounds how long a lost notification could hide a new app.
const NEGATIVE_TTL: Duration = Duration::from_secs(60);
/// Most unknown keys, and separately app ids, remembered at once (a few MiB at most).
const NEGATIVE_CAPACITY: usize = 50_000;
/// Database connections cache misses may hold at once (the pool has 10, shared with `/v1`).
const MAX_CONCURRENT_MISSES: usize = 3;
/// How long a miss waits for one of those connections before answering "unavailable".
const MISS_WAIT: Duration = Duration::from_secs(3);
/// Counts `miss_queries` for Prometheus too (the edge's `/metrics` renders it).
const MISS_QUERIES_METRIC: &str = "switchboard_catalog_miss_queries_total";
/// Lookups answered from the cache (known apps and remembered unknown keys and ids alike).
const CACHE_HITS_METRIC: &str = "switchboard_catalog_cache_hits_total";
/// Pause between attempts to re-establish the listener while Postgres is down.
const RELISTEN_BACKOFF: Duration = Duration::from_secs(1);

pub struct PgCatalog {
    pool: PgPool,
    secrets: SecretsKey,
    cache: RwLock<Cache>,
    changes: broadcast::Sender<AppId>,
    misses: Semaphore,
    /// Whether the listener is following notifications now.
    listening: watch::Sender<bool>,
    /// Queries made for lookups that missed the cache (reloads after NOTIFY not included).
    miss_queries: AtomicU64,
}

struct Cache {
    apps: HashMap<AppId, Arc<App>>,
    keys: HashMap<AppKey, KeyedApp>,
    unknown_keys: NegativeCache<AppKey>,
    unknown_ids: NegativeCache<AppId>,
}

impl Default for Cache {
    fn default() -> Self {
        Self {
            apps: HashMap::new(),
            keys: HashMap::new(),
            unknown_keys: NegativeCache::new(NEGATIVE_CAPACITY, NEGATIVE_TTL),
            unknown_ids: NegativeCache::new(NEGATIVE_CAPACITY, NEGATIVE_TTL),
        }
    }
}

fn unavailable(error: impl std::fmt::Display) -> CatalogError {
    CatalogError::Unavailable(error.to_string())
}

/// An app record with its plan, and its live keys with their decrypted secrets.
struct Loaded {
    app: Arc<App>,
    keys: Vec<(AppKey, Secret)>,
}

impl PgCatalog {
    pub fn new(pool: PgPool, secrets: SecretsKey) -> Arc<Self> {
        let (changes, _) = broadcast::channel(1024);
        metrics::describe_counter!(
            MISS_QUERIES_METRIC,
            "App catalog lookups that missed the cache and went to Postgres"
        );
        metrics::describe_counter!(
            CACHE_HITS_METRIC,
            "App catalog lookups answered from the cache (unknown keys remembered included)"
        );
        // Both are there from the start, so a hit ratio has its series before any lookup.
        metrics::counter!(MISS_QUERIES_METRIC).increment(0);
        metrics::counter!(CACHE_HITS_METRIC).increment(0);
        Arc::new(Self {
            pool,
            secrets,
            cache: RwLock::new(Cache::default()),
            changes,
            misses: Semaphore::new(MAX_CONCURRENT_MISSES),
            listening: watch::Sender::new(false),
            miss_queries: AtomicU64::new(0),
        })
    }

    /// Resolves once the listener follows notifications (changes made before may be missed).
    pub async fn until_listening(&self) {
        let mut listening = self.listening.subscribe();
        // The sender lives as long as `self`, so this cannot fail while we borrow it.
        let _ = listening.wait_for(|listening| *listening).await;
    }

    /// How many lookups have gone to Postgres because the cache could not answer them.
    pub fn miss_queries(&self) -> u64 {
        self.miss_queries.load(Ordering::Relaxed)
    }

    /// Listens for changes until the process ends; spawn it once per catalog.
    pub async fn listen(self: Arc<Self>) {
        loop {
            match PgListener::connect_with(&self.pool).await {
                Ok(mut listener) => {
                    if listener.listen(CATALOG_CHANNEL).await.is_ok() {
                        // Anything may have changed while no one was listening, and names
                        // remembered as unknown may exist now.
                        self.forget_unknown_names();
                        self.reload_all_cached().await;
                        self.listening.send_replace(true);
                        self.follow(&mut listener).await;
                        self.listening.send_replace(false);
                    }
                }
                Err(error) => {
                    tracing::warn!(%error, "catalog listener cannot reach Postgres; serving cached apps")
                }
            }
            tokio::time::sleep(RELISTEN_BACKOFF).await;
        }
    }

    /// Handles notifications until the listener's connection is lost.
    async fn follow(&self, listener: &mut PgListener) {
        loop {
            match listener.try_recv().await {
                Ok(Some(notification)) => match notification.payload() {
                    "*" => self.reload_all_cached().await,
                    app_id => {
                        if let Ok(app_id) = AppId::parse(app_id) {
                            self.refresh(&app_id).await;
                        }
                    }
                },
                Ok(None) => {
                    tracing::warn!("catalog listener lost Postgres; reloading after reconnect");
                    return;
                }
                Err(error) => {
                    tracing::warn!(%error, "catalog listener failed");
                    return;
                }
            }
        }
    }

    fn forget_unknown_names(&self) {
        let mut cache = self.cache.write().expect("catalog lock poisoned");
        cache.unknown_keys.clear();
        cache.unknown_ids.clear();
    }

    async fn reload_all_cached(&self) {
        let cached: Vec<AppId> = self
            .cache
            .read()
            .expect("catalog lock poisoned")
            .apps
            .keys()
            .cloned()
            .collect();
        for app_id in cached {
            self.refresh(&app_id).await;
        }
    }

    /// Reloads after a notification; on failure the cached app stays (fail-static).
    async fn refresh(&self, app_id: &AppId) {
        if let Err(error) = self.reload(app_id).await {
            tracing::warn!(%error, app_id = %app_id, "could not reload app; keeping the cached one");
        }
    }

    /// Replaces the app and its keys in the cache with what Postgres holds, then tells the edge.
    async fn reload(&self, app_id: &AppId) -> Result<(), CatalogError> {
        let loaded = self.load(app_id).await?;
        {
            let mut cache = self.cache.write().expect("catalog lock poisoned");
            cache.keys.retain(|_, keyed| keyed.app.id != *app_id);
            match loaded {
                Some(Loaded { app, keys }) => {
                    // Only names that exist now leave the negative caches; clearing them on
                    // every reload would let any app's changes reopen a flood to Postgres.
                    cache.unknown_ids.remove(app_id);
                    for (key, secret) in keys {
                        cache.unknown_keys.remove(&key);
                        cache.keys.insert(
                            key.clone(),
                            KeyedApp {
                                app: app.clone(),
                                key,
                                secret,
                            },
                        );
                    }
                    cache.apps.insert(app_id.clone(), app);
                }
                None => {
                    cache.apps.remove(app_id);
                }
            }
        }
        // No receiver (no edge in this process) is fine.
        let _ = self.changes.send(app_id.clone());
        Ok(())
    }

    /// The app's ICE servers with its TURN secret opened; a secret that does not open (a wrong
    /// secrets key) is logged without its value and left out, so TURN is not announced.
    fn ice_settings(
        &self,
        app_id: &AppId,
        urls: Vec<String>,
        nonce: Option<Vec<u8>>,
        ciphertext: Option<Vec<u8>>,
    ) -> IceSettings {
        let context = crate::crypto::turn_secret_context(app_id.as_str());
        let turn_secret = match (nonce, ciphertext) {
            (Some(nonce), Some(ciphertext)) => {
                match self.secrets.open(&context, &nonce, &ciphertext) {
                    Ok(secret) => Some(Secret::new(secret)),
                    Err(_) => {
                        tracing::error!(app_id = %app_id, "an app's TURN secret could not be decrypted; is the secrets key right?");
                        None
                    }
                }
            }
            _ => None,
        };
        IceSettings {
            servers: IceServers::from_stored(urls),
            turn_secret,
        }
    }

    async fn load(&self, app_id: &AppId) -> Result<Option<Loaded>, CatalogError> {
        let mut conn = self.pool.acquire().await.map_err(unavailable)?;
        let Some(row) = apps::find_for_catalog(&mut conn, app_id.as_str())
            .await
            .map_err(unavailable)?
        else {
            return Ok(None);
        };
        let limits = PlanLimits {
            max_connections: u64::try_from(row.max_connections).ok(),
            messages_per_day: u64::try_from(row.messages_per_day).ok(),
            burst_multiplier: u32::try_from(row.burst_multiplier).unwrap_or(1),
            max_message_bytes: usize::try_from(row.max_message_bytes).unwrap_or(10 * 1024),
            client_events_per_second: u32::try_from(row.client_events_per_second).unwrap_or(10),
            publish_requests_per_second: u32::try_from(row.publish_requests_per_second).ok(),
            max_presence_members: usize::try_from(row.max_presence_members).unwrap_or(100),
            max_channels_per_connection: usize::try_from(row.max_channels_per_connection)
                .unwrap_or(100),
            webhooks_allowed: row.webhooks_allowed,
            history_events: usize::try_from(row.history_events).unwrap_or(0),
            history_seconds: u64::try_from(row.history_seconds).unwrap_or(0),
            history_bytes: usize::try_from(row.history_bytes).unwrap_or(0),
        };
        let app = Arc::new(App {
            id: app_id.clone(),
            enabled: row.enabled,
            limits,
            subscription_counting: row.subscription_counting,
            client_events: row.client_events,
            allowed_origins: AllowedOrigins::from_stored(row.allowed_origins),
            ice: self.ice_settings(
                app_id,
                row.ice_servers,
                row.turn_secret_nonce,
                row.turn_secret_ciphertext,
            ),
        });
        let mut live = Vec::new();
        for key_row in keys::list_live(&mut conn, app_id.as_str())
            .await
            .map_err(unavailable)?
        {
            let (Ok(key), Ok(secret)) = (
                AppKey::parse(&key_row.key),
                self.secrets.open(
                    &key_row.key,
                    &key_row.secret_nonce,
                    &key_row.secret_ciphertext,
                ),
            ) else {
                tracing::error!(app_id = %app_id, "an app key could not be decrypted; is the secrets key right?");
                continue;
            };
            live.push((key, Secret::new(secret)));
        }
        Ok(Some(Loaded { app, keys: live }))
    }

    fn cached_key(&self, key: &AppKey) -> Option<Option<KeyedApp>> {
        let cache = self.cache.read().expect("catalog lock poisoned");
        let found = match cache.keys.get(key) {
            Some(keyed) => Some(Some(keyed.clone())),
            None => cache
                .unknown_keys
                .contains(key, Instant::now())
                .then_some(None),
        };
        count_hit(found.is_some());
        found
    }

    fn cached_id(&self, id: &AppId) -> Option<Option<Arc<App>>> {
        let cache = self.cache.read().expect("catalog lock poisoned");
        let found = match cache.apps.get(id) {
            Some(app) => Some(Some(app.clone())),
            None => cache
                .unknown_ids
                .contains(id, Instant::now())
                .then_some(None),
        };
        count_hit(found.is_some());
        found
    }

    /// One of the few connections misses may use; counted, so tests can see floods cost
    /// nothing.
    async fn miss_permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, CatalogError> {
        let permit = tokio::time::timeout(MISS_WAIT, self.misses.acquire())
            .await
            .map_err(|_| unavailable("too many app lookups waiting for the database"))?
            .map_err(unavailable)?;
        self.miss_queries.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(MISS_QUERIES_METRIC).increment(1);
        Ok(permit)
    }
}

fn count_hit(hit: bool) {
    if hit {
        metrics::counter!(CACHE_HITS_METRIC).increment(1);
    }
}

#[async_trait]
impl AppCatalog for PgCatalog {
    async fn find_by_key(&self, key: &AppKey) -> Result<Option<KeyedApp>, CatalogError> {
        if let Some(cached) = self.cached_key(key) {
            return Ok(cached);
        }
        let permit = self.miss_permit().await?;
        let row = {
            let mut conn = self.pool.acquire().await.map_err(unavailable)?;
            keys::find_live(&mut conn, key.as_str())
                .await
                .map_err(unavailable)?
        };
        let Some(app_id) = row.and_then(|row| AppId::parse(&row.app_id).ok()) else {
            // A key created meanwhile is safe: its NOTIFY's reload puts it among the known
            // keys, which are looked at before the unknown ones.
            let mut cache = self.cache.write().expect("catalog lock poisoned");
            cache.unknown_keys.insert(key.clone(), Instant::now());
            return Ok(None);
        };
        self.reload(&app_id).await?;
        drop(permit);
        Ok(self.cached_key(key).flatten())
    }

    async fn find_by_id(&self, id: &AppId) -> Result<Option<Arc<App>>, CatalogError> {
        if let Some(cached) = self.cached_id(id) {
            return Ok(cached);
        }
        let permit = self.miss_permit().await?;
        self.reload(id).await?;
        drop(permit);
        let mut cache = self.cache.write().expect("catalog lock poisoned");
        match cache.apps.get(id) {
            Some(app) => Ok(Some(app.clone())),
            None => {
                cache.unknown_ids.insert(id.clone(), Instant::now());
                Ok(None)
            }
        }
    }

    fn changes(&self) -> Option<broadcast::Receiver<AppId>> {
        Some(self.changes.subscribe())
    }
}
