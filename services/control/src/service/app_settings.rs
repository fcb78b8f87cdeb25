//! Changing an app: its name, enabled or not, and the settings the edge enforces (client
//! events, subscription counting, allowed origins); and rotating a key in one step. Each
//! change is one transaction with one audit record per kind of change.

use serde_json::json;
use tenancy::{AllowedOrigins, IceServers, check_turn_secret};
use uuid::Uuid;

use crate::crypto::turn_secret_context;
use crate::domain::AppName;
use crate::repository::apps::{self, SettingsChange};
use crate::repository::{audit, keys};

use super::{AppRow, Control, ControlError};

/// What to change on an app; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct AppChange {
    pub name: Option<String>,
    pub enabled: Option<bool>,
    pub subscription_counting: Option<bool>,
    pub client_events: Option<bool>,
    /// Replaces the whole list; empty allows any origin.
    pub allowed_origins: Option<Vec<String>>,
    /// Replaces the STUN/TURN URLs; empty announces none.
    pub ice_servers: Option<Vec<String>>,
    /// Sets the TURN secret (encrypted at rest); an empty string removes it.
    pub turn_secret: Option<String>,
}

impl Control {
    /// Applies every field of `change` at once, or none (a bad name or origin changes
    /// nothing). Audited as `app.renamed`, `app.enabled` / `app.disabled` and
    /// `app.settings_changed`, each only when that part was asked for.
    pub async fn change_app(
        &self,
        account_id: Uuid,
        app_id: &str,
        change: &AppChange,
    ) -> Result<AppRow, ControlError> {
        let name = change
            .name
            .as_deref()
            .map(AppName::parse)
            .transpose()
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let origins = change
            .allowed_origins
            .as_deref()
            .map(AllowedOrigins::parse)
            .transpose()
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let ice_servers = change
            .ice_servers
            .as_deref()
            .map(IceServers::parse)
            .transpose()
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        if let Some(secret) = change.turn_secret.as_deref().filter(|s| !s.is_empty()) {
            check_turn_secret(secret).map_err(|e| ControlError::Validation(e.to_string()))?;
        }
        let mut tx = self.pool.begin().await?;
        let before = apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let mut app = apps::update(
            &mut tx,
            account_id,
            app_id,
            name.as_ref().map(AppName::as_str),
            change.enabled,
        )
        .await?
        .ok_or(ControlError::NotFound)?;
        let settings = SettingsChange {
            subscription_counting: change.subscription_counting,
            client_events: change.client_events,
            allowed_origins: origins.as_ref().map(AllowedOrigins::as_slice),
            ice_servers: ice_servers.as_ref().map(IceServers::as_slice),
        };
        let settings_asked = settings.subscription_counting.is_some()
            || settings.client_events.is_some()
            || settings.allowed_origins.is_some()
            || settings.ice_servers.is_some()
            || change.turn_secret.is_some();
        if let Some(secret) = &change.turn_secret {
            let sealed = (!secret.is_empty())
                .then(|| self.secrets.seal(&turn_secret_context(app_id), secret));
            let parts = sealed
                .as_ref()
                .map(|sealed| (sealed.nonce.as_slice(), sealed.ciphertext.as_slice()));
            if !apps::set_turn_secret(&mut tx, account_id, app_id, parts).await? {
                return Err(ControlError::NotFound);
            }
        }
        if settings_asked {
            app = apps::update_settings(&mut tx, account_id, app_id, &settings)
                .await?
                .ok_or(ControlError::NotFound)?;
        }
        let account = Some(account_id);
        if let Some(name) = &name {
            let details = json!({ "name": name.as_str(), "previous": before.name });
            audit::record(&mut tx, account, "app.renamed", app_id, details).await?;
        }
        if let Some(enabled) = change.enabled {
            let action = if enabled {
                "app.enabled"
            } else {
                "app.disabled"
            };
            audit::record(&mut tx, account, action, app_id, json!({})).await?;
        }
        if settings_asked {
            let details = json!({
                "subscription_counting": settings.subscription_counting,
                "client_events": settings.client_events,
                "allowed_origins": settings.allowed_origins,
                "ice_servers": settings.ice_servers,
                // Whether it was set or removed, never the secret.
                "turn_secret": change.turn_secret.as_ref().map(|s| if s.is_empty() { "removed" } else { "set" }),
            });
            audit::record(&mut tx, account, "app.settings_changed", app_id, details).await?;
        }
        tx.commit().await?;
        Ok(app)
    }

    /// Renames, enables or disables an app (the admin CLI's and tests' short form).
    pub async fn update_app(
        &self,
        account_id: Uuid,
        app_id: &str,
        name: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<AppRow, ControlError> {
        let change = AppChange {
            name: name.map(str::to_owned),
            enabled,
            ..AppChange::default()
        };
        self.change_app(account_id, app_id, &change).await
    }

    /// Turns `pusher_internal:subscription_count` events (and their webhook) on or off.
    pub async fn set_subscription_counting(
        &self,
        account_id: Uuid,
        app_id: &str,
        enabled: bool,
    ) -> Result<AppRow, ControlError> {
        let change = AppChange {
            subscription_counting: Some(enabled),
            ..AppChange::default()
        };
        self.change_app(account_id, app_id, &change).await
    }

    /// Replaces a live key by a new one in one step: the old key's connections are closed
    /// (4009) and its signatures refused as soon as the edges hear of it. Returns the new key
    /// and its secret.
    pub async fn rotate_key(
        &self,
        account_id: Uuid,
        app_id: &str,
        key: &str,
    ) -> Result<(String, String), ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        keys::find(&mut tx, app_id, key)
            .await?
            .filter(|row| row.revoked_at.is_none())
            .ok_or(ControlError::NotFound)?;
        let (new_key, secret) = self.insert_new_key(&mut tx, app_id).await?;
        if !keys::revoke(&mut tx, app_id, key).await? {
            return Err(ControlError::NotFound);
        }
        let details = json!({ "key": key, "new_key": new_key });
        audit::record(&mut tx, Some(account_id), "key.rotated", app_id, details).await?;
        tx.commit().await?;
        Ok((new_key, secret))
    }
}
