//! The only place with SQL. Functions take a `&mut PgConnection` so callers own transactions;
//! every query about an account's data is scoped by that account's id.

pub mod account_tokens;
pub mod accounts;
pub mod apps;
pub mod audit;
pub mod billing;
pub mod billing_usage;
pub mod keys;
pub mod plans;
pub mod sessions;
pub mod tokens;
pub mod usage;
pub mod webhook_outbox;
pub mod webhooks;

/// Rows waiting in an outbox table, and how long the oldest has waited (operators' figures).
#[derive(Debug, Clone, Copy, PartialEq, sqlx::FromRow)]
pub struct Backlog {
    pub waiting: i64,
    /// 0 when nothing waits.
    pub oldest_age_seconds: f64,
}

/// True when the error is a unique-constraint violation (SQLSTATE 23505).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}

/// True when the error is a foreign-key violation (SQLSTATE 23503).
pub fn is_foreign_key_violation(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(db) if db.code().as_deref() == Some("23503"))
}
