//! Connecting to the control plane's Postgres and migrating it.

use std::time::Duration;

use anyhow::Context;
use control::crypto::SecretsKey;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::cli::DatabaseArgs;

/// A pool for `url`, failing fast when Postgres is down so edges fall back to cached apps.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(3))
        .connect(url)
        .await
        .context("connecting to Postgres (DATABASE_URL)")
}

pub async fn migrate(pool: &PgPool) -> anyhow::Result<()> {
    control::MIGRATOR
        .run(pool)
        .await
        .context("applying migrations")
}

/// The pool and the secrets key, both required once a database is named.
pub async fn open(args: &DatabaseArgs) -> anyhow::Result<Option<(PgPool, SecretsKey)>> {
    let Some(url) = args.database_url.as_deref().filter(|url| !url.is_empty()) else {
        return Ok(None);
    };
    let key = args.secrets_key.as_deref().context(
        "SWITCHBOARD_SECRETS_KEY is required with a database (make one: switchboard admin generate-secrets-key)",
    )?;
    let key = SecretsKey::from_base64(key).context("SWITCHBOARD_SECRETS_KEY")?;
    let pool = connect(url).await?;
    Ok(Some((pool, key)))
}
