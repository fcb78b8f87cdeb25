//! The control plane's operations, each one transaction with its audit record. Routes and the
//! admin CLI call these; only `repository` holds SQL.

use serde_json::json;
use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::crypto::{SecretsKey, random_hex, token_hash};
use crate::domain::{AppName, Email, Plan, TokenName, WebhookUrl, webhook_event_types};
use crate::password::{self, Password};
use crate::repository::{self, accounts, apps, audit, keys, plans, sessions, tokens, webhooks};

pub use repository::apps::AppRow;
pub use repository::tokens::ApiTokenRow;
pub use repository::webhooks::{DeliveryRow, WebhookRow};

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::days(14);
const DEFAULT_PLAN: &str = "sandbox";

/// Every way an operation fails; `routes::error` maps each to one HTTP status.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("{0}")]
    Validation(String),
    #[error("an account with this email already exists")]
    EmailTaken,
    #[error("wrong email or password")]
    InvalidCredentials,
    #[error("not signed in")]
    Unauthenticated,
    #[error("missing or wrong CSRF token")]
    Csrf,
    #[error("not found")]
    NotFound,
    #[error("unknown plan {0:?}")]
    UnknownPlan(String),
    #[error("an app must keep at least one live key: create a new key before revoking this one")]
    LastKey,
    #[error("too many attempts; try again later")]
    RateLimited,
    #[error("{0}")]
    NotInPlan(String),
    #[error("internal error")]
    Unexpected(#[from] anyhow::Error),
}

impl From<sqlx::Error> for ControlError {
    fn from(error: sqlx::Error) -> Self {
        Self::Unexpected(anyhow::Error::new(error).context("database"))
    }
}

/// A new app with its first key; the secret is shown this once (and on explicit reveal).
#[derive(Debug, Clone)]
pub struct CreatedApp {
    pub app: AppRow,
    pub key: String,
    pub secret: String,
}

/// A key as listed: never its secret.
#[derive(Debug, Clone)]
pub struct KeyInfo {
    pub key: String,
    pub created_at: OffsetDateTime,
    pub revoked_at: Option<OffsetDateTime>,
}

/// A new browser session: the cookie token and its CSRF token.
#[derive(Debug, Clone)]
pub struct NewSession {
    pub token: String,
    pub csrf_token: String,
}

#[derive(Clone)]
pub struct Control {
    pool: PgPool,
    secrets: SecretsKey,
}

impl Control {
    pub fn new(pool: PgPool, secrets: SecretsKey) -> Self {
        Self { pool, secrets }
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn sign_up(&self, email: &str, password: &str) -> Result<Uuid, ControlError> {
        let email = Email::parse(email).map_err(|e| ControlError::Validation(e.to_string()))?;
        let password =
            Password::parse(password).map_err(|e| ControlError::Validation(e.to_string()))?;
        let hash = tokio::task::spawn_blocking(move || password.hash())
            .await
            .map_err(|e| ControlError::Unexpected(e.into()))?;
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        match accounts::insert(&mut tx, id, email.as_str(), &hash).await {
            Err(error) if repository::is_unique_violation(&error) => {
                return Err(ControlError::EmailTaken);
            }
            result => result?,
        }
        audit::record(
            &mut tx,
            Some(id),
            "account.created",
            &id.to_string(),
            json!({ "email": email.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// The account whose password this is. Unknown emails cost a hash too, so timing does
    /// not reveal which emails have accounts.
    pub async fn check_password(&self, email: &str, password: &str) -> Result<Uuid, ControlError> {
        let account =
            accounts::find_by_email(&mut *self.pool.acquire().await?, email.trim()).await?;
        let stored = account.as_ref().map_or_else(
            || password::decoy_hash().to_owned(),
            |a| a.password_hash.clone(),
        );
        let attempt = password.to_owned();
        let matches = tokio::task::spawn_blocking(move || password::verify(&attempt, &stored))
            .await
            .map_err(|e| ControlError::Unexpected(e.into()))?;
        match account {
            Some(account) if matches => Ok(account.id),
            _ => Err(ControlError::InvalidCredentials),
        }
    }

    pub async fn account_email(&self, account_id: Uuid) -> Result<String, ControlError> {
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id).await?;
        account.map(|a| a.email).ok_or(ControlError::NotFound)
    }

    pub async fn account_id_by_email(&self, email: &str) -> Result<Uuid, ControlError> {
        let account =
            accounts::find_by_email(&mut *self.pool.acquire().await?, email.trim()).await?;
        account.map(|a| a.id).ok_or(ControlError::NotFound)
    }

    pub async fn create_session(&self, account_id: Uuid) -> Result<NewSession, ControlError> {
        let session = NewSession {
            token: random_hex(32),
            csrf_token: random_hex(16),
        };
        let expires_at = OffsetDateTime::now_utc() + SESSION_LIFETIME;
        let mut conn = self.pool.acquire().await?;
        sessions::insert(
            &mut conn,
            &token_hash(&session.token),
            account_id,
            &session.csrf_token,
            expires_at,
        )
        .await?;
        audit::record(
            &mut conn,
            Some(account_id),
            "session.created",
            &account_id.to_string(),
            json!({}),
        )
        .await?;
        Ok(session)
    }

    /// The account and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(Uuid, String)>, ControlError> {
        let row = sessions::find_live(&mut *self.pool.acquire().await?, &token_hash(token)).await?;
        Ok(row.map(|row| (row.account_id, row.csrf_token)))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), ControlError> {
        sessions::delete(&mut *self.pool.acquire().await?, &token_hash(token)).await?;
        Ok(())
    }

    /// A new API token, returned this once; only its hash is kept.
    pub async fn create_api_token(
        &self,
        account_id: Uuid,
        name: &str,
    ) -> Result<(Uuid, String), ControlError> {
        let name = TokenName::parse(name).map_err(|e| ControlError::Validation(e.to_string()))?;
        let (id, token) = (Uuid::new_v4(), format!("sbt_{}", random_hex(32)));
        let mut tx = self.pool.begin().await?;
        tokens::insert(&mut tx, id, account_id, name.as_str(), &token_hash(&token)).await?;
        audit::record(
            &mut tx,
            Some(account_id),
            "api_token.created",
            &id.to_string(),
            json!({ "name": name.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok((id, token))
    }

    pub async fn api_token_account(&self, token: &str) -> Result<Option<Uuid>, ControlError> {
        Ok(tokens::find_account(&mut *self.pool.acquire().await?, &token_hash(token)).await?)
    }

    pub async fn list_api_tokens(
        &self,
        account_id: Uuid,
    ) -> Result<Vec<ApiTokenRow>, ControlError> {
        Ok(tokens::list(&mut *self.pool.acquire().await?, account_id).await?)
    }

    pub async fn revoke_api_token(&self, account_id: Uuid, id: Uuid) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !tokens::revoke(&mut tx, account_id, id).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(
            &mut tx,
            Some(account_id),
            "api_token.revoked",
            &id.to_string(),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn list_plans(&self) -> Result<Vec<Plan>, ControlError> {
        Ok(plans::list(&mut *self.pool.acquire().await?).await?)
    }

    pub async fn plan(&self, plan_id: &str) -> Result<Plan, ControlError> {
        let plan = plans::find(&mut *self.pool.acquire().await?, plan_id).await?;
        plan.ok_or_else(|| ControlError::UnknownPlan(plan_id.to_owned()))
    }

    /// A new app on `plan` (sandbox by default) with its first key.
    pub async fn create_app(
        &self,
        account_id: Uuid,
        name: &str,
        plan: Option<&str>,
    ) -> Result<CreatedApp, ControlError> {
        let name = AppName::parse(name).map_err(|e| ControlError::Validation(e.to_string()))?;
        let plan = plan.unwrap_or(DEFAULT_PLAN);
        let mut tx = self.pool.begin().await?;
        if plans::find(&mut tx, plan).await?.is_none() {
            return Err(ControlError::UnknownPlan(plan.to_owned()));
        }
        let app = apps::insert(&mut tx, account_id, name.as_str(), plan).await?;
        let (key, secret) = self.insert_new_key(&mut tx, &app.id).await?;
        let details = json!({ "name": name.as_str(), "plan": plan, "key": key });
        audit::record(&mut tx, Some(account_id), "app.created", &app.id, details).await?;
        tx.commit().await?;
        Ok(CreatedApp { app, key, secret })
    }

    async fn insert_new_key(
        &self,
        conn: &mut sqlx::PgConnection,
        app_id: &str,
    ) -> Result<(String, String), ControlError> {
        let (key, secret) = (random_hex(10), random_hex(16));
        let sealed = self.secrets.seal(&key, &secret);
        keys::insert(conn, app_id, &key, &sealed.nonce, &sealed.ciphertext).await?;
        Ok((key, secret))
    }

    pub async fn list_apps(&self, account_id: Uuid) -> Result<Vec<AppRow>, ControlError> {
        Ok(apps::list(&mut *self.pool.acquire().await?, account_id).await?)
    }

    pub async fn app(&self, account_id: Uuid, app_id: &str) -> Result<AppRow, ControlError> {
        let app = apps::find(&mut *self.pool.acquire().await?, account_id, app_id).await?;
        app.ok_or(ControlError::NotFound)
    }

    pub async fn update_app(
        &self,
        account_id: Uuid,
        app_id: &str,
        name: Option<&str>,
        enabled: Option<bool>,
    ) -> Result<AppRow, ControlError> {
        let name = name
            .map(AppName::parse)
            .transpose()
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let app = apps::update(
            &mut tx,
            account_id,
            app_id,
            name.as_ref().map(AppName::as_str),
            enabled,
        )
        .await?;
        let app = app.ok_or(ControlError::NotFound)?;
        let details = json!({ "name": name.as_ref().map(AppName::as_str), "enabled": enabled });
        audit::record(&mut tx, Some(account_id), "app.updated", app_id, details).await?;
        tx.commit().await?;
        Ok(app)
    }

    pub async fn delete_app(&self, account_id: Uuid, app_id: &str) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !apps::delete(&mut tx, account_id, app_id).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(&mut tx, Some(account_id), "app.deleted", app_id, json!({})).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn change_plan(
        &self,
        account_id: Uuid,
        app_id: &str,
        plan: &str,
    ) -> Result<AppRow, ControlError> {
        let mut tx = self.pool.begin().await?;
        if plans::find(&mut tx, plan).await?.is_none() {
            return Err(ControlError::UnknownPlan(plan.to_owned()));
        }
        let app = apps::set_plan(&mut tx, account_id, app_id, plan)
            .await?
            .ok_or(ControlError::NotFound)?;
        audit::record(
            &mut tx,
            Some(account_id),
            "app.plan_changed",
            app_id,
            json!({ "plan": plan }),
        )
        .await?;
        tx.commit().await?;
        Ok(app)
    }

    pub async fn list_keys(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<Vec<KeyInfo>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let rows = keys::list(&mut conn, app_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| KeyInfo {
                key: row.key,
                created_at: row.created_at,
                revoked_at: row.revoked_at,
            })
            .collect())
    }

    /// A new key beside the existing ones: rotation is create, move clients, revoke the old.
    pub async fn create_key(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<(String, String), ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let (key, secret) = self.insert_new_key(&mut tx, app_id).await?;
        audit::record(
            &mut tx,
            Some(account_id),
            "key.created",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok((key, secret))
    }

    pub async fn revoke_key(
        &self,
        account_id: Uuid,
        app_id: &str,
        key: &str,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if keys::count_live(&mut tx, app_id).await? <= 1
            && keys::find(&mut tx, app_id, key)
                .await?
                .is_some_and(|k| k.revoked_at.is_none())
        {
            return Err(ControlError::LastKey);
        }
        if !keys::revoke(&mut tx, app_id, key).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(
            &mut tx,
            Some(account_id),
            "key.revoked",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secret of a live key, on explicit request (audited).
    pub async fn reveal_secret(
        &self,
        account_id: Uuid,
        app_id: &str,
        key: &str,
    ) -> Result<String, ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let row = keys::find(&mut tx, app_id, key)
            .await?
            .filter(|row| row.revoked_at.is_none())
            .ok_or(ControlError::NotFound)?;
        let secret = self
            .secrets
            .open(&row.key, &row.secret_nonce, &row.secret_ciphertext)
            .map_err(anyhow::Error::new)?;
        audit::record(
            &mut tx,
            Some(account_id),
            "key.secret_revealed",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok(secret)
    }

    pub async fn audit_log(
        &self,
        account_id: Uuid,
        limit: i64,
    ) -> Result<Vec<audit::AuditRow>, ControlError> {
        Ok(audit::list(&mut *self.pool.acquire().await?, account_id, limit).await?)
    }

    /// The app's usage periods starting in `[from, to)`, oldest first; periods without
    /// activity are absent. Another account's app is not found.
    pub async fn usage(
        &self,
        account_id: Uuid,
        app_id: &str,
        resolution: crate::usage::Resolution,
        from: OffsetDateTime,
        to: OffsetDateTime,
    ) -> Result<Vec<repository::usage::UsageRow>, ControlError> {
        use crate::usage::Resolution;
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let rows = match resolution {
            Resolution::Minute => {
                repository::usage::minutes(&mut conn, account_id, app_id, from, to).await?
            }
            Resolution::Hour => {
                repository::usage::hours(&mut conn, account_id, app_id, from, to).await?
            }
            Resolution::Day => {
                repository::usage::days(&mut conn, account_id, app_id, from, to).await?
            }
        };
        Ok(rows)
    }
}

/// Most webhooks one app may have.
pub const MAX_WEBHOOKS_PER_APP: i64 = 10;

/// Webhooks and the app setting for `subscription_count` events.
impl Control {
    /// A new webhook for an app whose plan includes webhooks.
    pub async fn create_webhook(
        &self,
        account_id: Uuid,
        app_id: &str,
        url: &str,
        event_types: &[String],
        batching: bool,
    ) -> Result<WebhookRow, ControlError> {
        let url = WebhookUrl::parse(url).map_err(|e| ControlError::Validation(e.to_string()))?;
        let event_types = webhook_event_types(event_types)
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let app = apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let plan = plans::find(&mut tx, &app.plan_id).await?;
        if !plan.is_some_and(|plan| plan.webhooks_allowed) {
            return Err(ControlError::NotInPlan(format!(
                "the {} plan does not include webhooks",
                app.plan_id
            )));
        }
        if webhooks::count_for_app(&mut tx, app_id).await? >= MAX_WEBHOOKS_PER_APP {
            return Err(ControlError::Validation(format!(
                "an app may have at most {MAX_WEBHOOKS_PER_APP} webhooks"
            )));
        }
        let id = Uuid::new_v4();
        let row = webhooks::insert(
            &mut tx,
            account_id,
            app_id,
            id,
            url.as_str(),
            &event_types,
            batching,
        )
        .await?
        .ok_or(ControlError::NotFound)?;
        let details = json!({ "webhook_id": id, "url": url.as_str(), "event_types": event_types, "batching": batching });
        audit::record(
            &mut tx,
            Some(account_id),
            "webhook.created",
            app_id,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn list_webhooks(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<Vec<WebhookRow>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        Ok(webhooks::list(&mut conn, account_id, app_id).await?)
    }

    pub async fn delete_webhook(
        &self,
        account_id: Uuid,
        app_id: &str,
        id: Uuid,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !webhooks::delete(&mut tx, account_id, app_id, id).await? {
            return Err(ControlError::NotFound);
        }
        let details = json!({ "webhook_id": id });
        audit::record(
            &mut tx,
            Some(account_id),
            "webhook.deleted",
            app_id,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's newest delivery attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        account_id: Uuid,
        app_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        Ok(webhooks::list_deliveries(&mut conn, account_id, app_id, limit).await?)
    }

    /// Turns `pusher_internal:subscription_count` events (and their webhook) on or off.
    pub async fn set_subscription_counting(
        &self,
        account_id: Uuid,
        app_id: &str,
        enabled: bool,
    ) -> Result<AppRow, ControlError> {
        let mut tx = self.pool.begin().await?;
        let app = apps::set_subscription_counting(&mut tx, account_id, app_id, enabled)
            .await?
            .ok_or(ControlError::NotFound)?;
        let details = json!({ "subscription_counting": enabled });
        audit::record(&mut tx, Some(account_id), "app.updated", app_id, details).await?;
        tx.commit().await?;
        Ok(app)
    }
}
