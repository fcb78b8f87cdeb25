//! How the edge finds an app by its key or id.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use protocol::names::{AppId, AppKey};
use thiserror::Error;

use crate::{App, AppSpec, PlanLimits, Secret};

/// An app together with the key that was presented and that key's secret.
#[derive(Debug, Clone)]
pub struct KeyedApp {
    pub app: Arc<App>,
    pub key: AppKey,
    pub secret: Secret,
}

#[derive(Debug, Error)]
pub enum CatalogError {
    /// The catalog's store could not be reached and the app is not cached.
    #[error("app catalog unavailable: {0}")]
    Unavailable(String),
}

/// Looks apps up for the edge. Implementations cache: the edge calls this on every
/// connection and API request, never per message.
#[async_trait]
pub trait AppCatalog: Send + Sync + 'static {
    async fn find_by_key(&self, key: &AppKey) -> Result<Option<KeyedApp>, CatalogError>;
    async fn find_by_id(&self, id: &AppId) -> Result<Option<Arc<App>>, CatalogError>;

    /// Ids of apps whose record, plan or keys changed, sent after the catalog answers with
    /// the new values; `None` for a catalog that never changes.
    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<AppId>> {
        None
    }
}

/// Apps fixed at start, from `--app ID:KEY:SECRET` or tests.
#[derive(Debug, Default)]
pub struct StaticCatalog {
    by_key: HashMap<AppKey, KeyedApp>,
    by_id: HashMap<AppId, Arc<App>>,
}

impl StaticCatalog {
    /// One app per spec, each on Pusher's default limits. Two specs may share an id to give
    /// one app several keys.
    pub fn new(specs: &[AppSpec]) -> Self {
        Self::with_limits(specs, PlanLimits::pusher_defaults())
    }

    pub fn with_limits(specs: &[AppSpec], limits: PlanLimits) -> Self {
        let mut catalog = Self::default();
        for spec in specs {
            let app = catalog
                .by_id
                .entry(spec.id.clone())
                .or_insert_with(|| {
                    Arc::new(App {
                        id: spec.id.clone(),
                        enabled: true,
                        limits: limits.clone(),
                        subscription_counting: false,
                        client_events: true,
                        allowed_origins: crate::AllowedOrigins::any(),
                        ice: crate::IceSettings::default(),
                    })
                })
                .clone();
            let keyed = KeyedApp {
                app,
                key: spec.key.clone(),
                secret: spec.secret.clone(),
            };
            catalog.by_key.insert(spec.key.clone(), keyed);
        }
        catalog
    }
}

#[async_trait]
impl AppCatalog for StaticCatalog {
    async fn find_by_key(&self, key: &AppKey) -> Result<Option<KeyedApp>, CatalogError> {
        Ok(self.by_key.get(key).cloned())
    }

    async fn find_by_id(&self, id: &AppId) -> Result<Option<Arc<App>>, CatalogError> {
        Ok(self.by_id.get(id).cloned())
    }
}

/// Apps from the command line first, then those of another catalog (the database's).
pub struct LayeredCatalog {
    pub first: StaticCatalog,
    pub then: Arc<dyn AppCatalog>,
}

#[async_trait]
impl AppCatalog for LayeredCatalog {
    async fn find_by_key(&self, key: &AppKey) -> Result<Option<KeyedApp>, CatalogError> {
        match self.first.find_by_key(key).await? {
            Some(keyed) => Ok(Some(keyed)),
            None => self.then.find_by_key(key).await,
        }
    }

    async fn find_by_id(&self, id: &AppId) -> Result<Option<Arc<App>>, CatalogError> {
        match self.first.find_by_id(id).await? {
            Some(app) => Ok(Some(app)),
            None => self.then.find_by_id(id).await,
        }
    }

    fn changes(&self) -> Option<tokio::sync::broadcast::Receiver<AppId>> {
        self.then.changes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn finds_apps_by_key_and_id_and_nothing_else() {
        let specs = AppSpec::parse_list("1:k1:s1,1:k1b:s1b,2:k2:s2").unwrap();
        let catalog = StaticCatalog::new(&specs);
        let found = catalog
            .find_by_key(&AppKey::parse("k1b").unwrap())
            .await
            .unwrap()
            .unwrap();
        assert_eq!((found.app.id.as_str(), found.secret.expose()), ("1", "s1b"));
        assert!(
            catalog
                .find_by_key(&AppKey::parse("nope").unwrap())
                .await
                .unwrap()
                .is_none()
        );
        assert_eq!(
            catalog
                .find_by_id(&AppId::parse("2").unwrap())
                .await
                .unwrap()
                .unwrap()
                .id
                .as_str(),
            "2"
        );
        assert!(
            catalog
                .find_by_id(&AppId::parse("3").unwrap())
                .await
                .unwrap()
                .is_none()
        );
    }
}
