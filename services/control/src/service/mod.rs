//! The control plane's operations, each one transaction with its audit record. Routes and the
//! admin CLI call these; only `repository` holds SQL.

mod account_mail;
mod account_operations;
mod app_operations;
mod app_settings;
mod webhook_operations;

use std::sync::Arc;

use sqlx::PgPool;
use time::{Duration, OffsetDateTime};
use tokio::sync::Semaphore;
use uuid::Uuid;

use crate::crypto::SecretsKey;
use crate::domain::Plan;
use crate::mail::{LogMailer, MailLinks, Mailer, Outbox};
use crate::repository::{self, apps, audit, plans};

pub use app_operations::PlanAuthority;
pub use app_settings::AppChange;
pub use repository::apps::AppRow;
pub use repository::tokens::ApiTokenRow;
pub use repository::webhooks::{DeliveryRow, WebhookRow};

/// How long a browser session lasts.
pub const SESSION_LIFETIME: Duration = Duration::days(14);
/// The free plan: new apps start on it, and unpaid ones drop back to it.
pub const DEFAULT_PLAN: &str = "sandbox";

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
    /// Every password-hash slot is taken (each argon2 hash holds ~19 MiB); try again shortly.
    #[error("too many sign-ins under way; try again in a moment")]
    Busy,
    #[error("{0}")]
    NotInPlan(String),
    /// A paid plan asked for through the self-serve API, which has no billing yet.
    #[error(
        "plan {0:?} is a paid plan: until billing exists, paid plans are set by an operator (switchboard admin set-plan); self-serve apps may move between free plans only"
    )]
    PaymentRequired(String),
    /// A paid plan asked for by an account whose email is not verified yet (checked before
    /// `PaymentRequired`).
    #[error(
        "verify your email address before choosing a paid plan: follow the link mailed at sign-up, or ask for a new one with POST /v1/account/verification"
    )]
    EmailUnverified,
    #[error("this email address is already verified")]
    AlreadyVerified,
    /// A verification or reset token that is unknown, expired or used.
    #[error("this link is invalid, has expired or was already used; ask for a new one")]
    InvalidToken,
    /// A password change whose current password is wrong.
    #[error("the current password is wrong")]
    WrongPassword,
    #[error("billing is not enabled on this deployment")]
    BillingDisabled,
    #[error("the account already has a subscription: change its plan instead")]
    AlreadySubscribed,
    #[error("the account has no subscription")]
    NoSubscription,
    #[error("invalid webhook: {0}")]
    InvalidWebhook(String),
    #[error("stripe did not answer; try again shortly")]
    StripeUnavailable,
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

/// Argon2 hashes computed at once by default: each holds ~19 MiB for ~0.1 s on a core.
pub const DEFAULT_CONCURRENT_PASSWORD_HASHES: usize = 4;
/// How long a sign-up or login waits for a hash slot by default before it is answered `Busy`
/// (503).
pub const DEFAULT_PASSWORD_HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Clone)]
pub struct Control {
    pool: PgPool,
    secrets: SecretsKey,
    /// Which webhook targets are accepted: public addresses only unless the operator allows
    /// private ones (`--webhooks-allow-private`).
    webhook_addresses: tenancy::AddressPolicy,
    /// Bounds the argon2 hashes (sign-up, login, password change) under way at once, so their
    /// memory and blocking threads are bounded whatever arrives.
    password_hashes: Arc<Semaphore>,
    password_hash_wait: std::time::Duration,
    /// Verification and reset mails, sent in the background.
    outbox: Outbox,
    links: MailLinks,
}

impl Control {
    /// The system app the dashboard's console rides on (`crate::console`).
    pub fn system_app(&self) -> tenancy::AppSpec {
        crate::console::system_app(&self.secrets)
    }

    pub fn new(pool: PgPool, secrets: SecretsKey) -> Self {
        Self {
            pool,
            secrets,
            webhook_addresses: tenancy::AddressPolicy::PublicOnly,
            password_hashes: Arc::new(Semaphore::new(DEFAULT_CONCURRENT_PASSWORD_HASHES)),
            password_hash_wait: DEFAULT_PASSWORD_HASH_WAIT,
            outbox: Outbox::new(Arc::new(LogMailer)),
            links: MailLinks::default(),
        }
    }

    /// The same control plane sending its mails through `mailer`, with links under `links`
    /// (the log mailer and `http://localhost:6001` by default).
    pub fn with_mailer(mut self, mailer: Arc<dyn Mailer>, links: MailLinks) -> Self {
        self.outbox = Outbox::new(mailer);
        self.links = links;
        self
    }

    /// Billing notices mailed to owners through this control plane's mailer and links.
    pub fn billing_notices(&self) -> crate::billing::MailNotices {
        crate::billing::MailNotices::new(self.outbox.clone(), self.links.clone())
    }

    /// The same control plane, accepting webhook targets under `policy`.
    pub fn with_webhook_addresses(mut self, policy: tenancy::AddressPolicy) -> Self {
        self.webhook_addresses = policy;
        self
    }

    /// The same control plane with at most `hashes` (at least 1) password hashes at once, each
    /// waiting at most `wait` for its slot.
    pub fn with_password_hash_limit(mut self, hashes: usize, wait: std::time::Duration) -> Self {
        self.password_hashes = Arc::new(Semaphore::new(hashes.max(1)));
        self.password_hash_wait = wait;
        self
    }

    /// The slots password hashes take (one each while it runs); tests hold them to show that
    /// no hash runs without one.
    pub fn password_hash_slots(&self) -> &Arc<Semaphore> {
        &self.password_hashes
    }

    /// Runs an argon2 hash or verification on the blocking pool once a slot is free.
    async fn hash_password<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ControlError> {
        let _slot = tokio::time::timeout(self.password_hash_wait, self.password_hashes.acquire())
            .await
            .map_err(|_| ControlError::Busy)?
            .map_err(|e| ControlError::Unexpected(e.into()))?;
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ControlError::Unexpected(e.into()))
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn list_plans(&self) -> Result<Vec<Plan>, ControlError> {
        Ok(plans::list(&mut *self.pool.acquire().await?).await?)
    }

    pub async fn plan(&self, plan_id: &str) -> Result<Plan, ControlError> {
        let plan = plans::find(&mut *self.pool.acquire().await?, plan_id).await?;
        plan.ok_or_else(|| ControlError::UnknownPlan(plan_id.to_owned()))
    }

    /// A new app on `plan` (sandbox by default) with its first key.
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
        let table = match resolution {
            Resolution::Minute => repository::usage::Table::Minutes,
            Resolution::Hour => repository::usage::Table::Hours,
            Resolution::Day => repository::usage::Table::Days,
        };
        let rows = repository::usage::read(&mut conn, table, account_id, app_id, from, to).await?;
        Ok(rows)
    }
}

/// Most webhooks one app may have.
pub const MAX_WEBHOOKS_PER_APP: i64 = 10;
