//! Billing: the Stripe objects standing for our plans, each account's customer and
//! subscription, and the Stripe events already processed. Usage reporting is
//! `billing_usage.rs`.

use sqlx::{AssertSqlSafe, PgConnection};
use time::OffsetDateTime;
use uuid::Uuid;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct MeterRow {
    pub meter: String,
    pub stripe_meter_id: String,
    pub event_name: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct PlanPricesRow {
    pub plan_id: String,
    pub stripe_product_id: String,
    pub flat_price_id: String,
    pub messages_price_id: String,
    pub connections_price_id: String,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct BillingAccountRow {
    pub account_id: Uuid,
    pub stripe_customer_id: String,
    pub subscription_id: Option<String>,
    pub subscription_created: Option<i64>,
    pub plan_id: Option<String>,
    pub status: Option<String>,
    pub cancel_at_period_end: bool,
    pub current_period_start: Option<OffsetDateTime>,
    pub current_period_end: Option<OffsetDateTime>,
    pub past_due_since: Option<OffsetDateTime>,
    pub downgraded: bool,
    /// The plan a downgrade moves to at the period's end, while it waits.
    pub scheduled_plan_id: Option<String>,
}

/// A subscription's state as Stripe holds it, to store on its account.
#[derive(Debug, Clone)]
pub struct SubscriptionState<'a> {
    pub subscription_id: &'a str,
    pub created: i64,
    pub plan_id: Option<&'a str>,
    pub status: &'a str,
    pub cancel_at_period_end: bool,
    pub current_period_start: Option<OffsetDateTime>,
    pub current_period_end: Option<OffsetDateTime>,
    pub past_due_since: Option<OffsetDateTime>,
    pub downgraded: bool,
}

const ACCOUNT_COLUMNS: &str = "account_id, stripe_customer_id, subscription_id, subscription_created, plan_id, status, cancel_at_period_end, current_period_start, current_period_end, past_due_since, downgraded, scheduled_plan_id";

#[tracing::instrument(name = "db.billing.meters", level = "debug", skip_all)]
pub async fn meters(conn: &mut PgConnection) -> sqlx::Result<Vec<MeterRow>> {
    sqlx::query_as("SELECT meter, stripe_meter_id, event_name FROM billing_meters ORDER BY meter")
        .fetch_all(conn)
        .await
}

#[tracing::instrument(name = "db.billing.insert_meter", level = "debug", skip_all)]
pub async fn insert_meter(conn: &mut PgConnection, meter: &MeterRow) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO billing_meters (meter, stripe_meter_id, event_name) VALUES ($1, $2, $3) ON CONFLICT (meter) DO NOTHING")
        .bind(&meter.meter)
        .bind(&meter.stripe_meter_id)
        .bind(&meter.event_name)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.billing.plan_prices", level = "debug", skip_all)]
pub async fn plan_prices(
    conn: &mut PgConnection,
    plan_id: &str,
) -> sqlx::Result<Option<PlanPricesRow>> {
    sqlx::query_as("SELECT plan_id, stripe_product_id, flat_price_id, messages_price_id, connections_price_id FROM billing_plan_prices WHERE plan_id = $1")
        .bind(plan_id)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "db.billing.insert_plan_prices", level = "debug", skip_all)]
pub async fn insert_plan_prices(conn: &mut PgConnection, row: &PlanPricesRow) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO billing_plan_prices (plan_id, stripe_product_id, flat_price_id, messages_price_id, connections_price_id) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (plan_id) DO NOTHING")
        .bind(&row.plan_id)
        .bind(&row.stripe_product_id)
        .bind(&row.flat_price_id)
        .bind(&row.messages_price_id)
        .bind(&row.connections_price_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The plan whose flat price is among `price_ids` (a subscription's items).
#[tracing::instrument(name = "db.billing.plan_of_prices", level = "debug", skip_all)]
pub async fn plan_of_prices(
    conn: &mut PgConnection,
    price_ids: &[String],
) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT plan_id FROM billing_plan_prices WHERE flat_price_id = ANY($1) ORDER BY plan_id LIMIT 1")
        .bind(price_ids)
        .fetch_optional(conn)
        .await
}

#[tracing::instrument(name = "db.billing.find_account", level = "debug", skip_all)]
pub async fn find_account(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> sqlx::Result<Option<BillingAccountRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE account_id = $1"
    )))
    .bind(account_id)
    .fetch_optional(conn)
    .await
}

/// The account's row, locked for this transaction (webhooks for one account apply in turn).
#[tracing::instrument(
    name = "db.billing.lock_account_by_customer",
    level = "debug",
    skip_all
)]
pub async fn lock_account_by_customer(
    conn: &mut PgConnection,
    customer_id: &str,
) -> sqlx::Result<Option<BillingAccountRow>> {
    sqlx::query_as(AssertSqlSafe(format!(
        "SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE stripe_customer_id = $1 FOR UPDATE"
    )))
    .bind(customer_id)
    .fetch_optional(conn)
    .await
}

/// Records the account's customer; the first one recorded stays (a concurrent checkout
/// made with the same idempotency key got the same customer anyway).
#[tracing::instrument(name = "db.billing.insert_account", level = "debug", skip_all)]
pub async fn insert_account(
    conn: &mut PgConnection,
    account_id: Uuid,
    customer_id: &str,
) -> sqlx::Result<()> {
    sqlx::query("INSERT INTO billing_accounts (account_id, stripe_customer_id) VALUES ($1, $2) ON CONFLICT (account_id) DO NOTHING")
        .bind(account_id)
        .bind(customer_id)
        .execute(conn)
        .await?;
    Ok(())
}

#[tracing::instrument(name = "db.billing.save_subscription", level = "debug", skip_all)]
pub async fn save_subscription(
    conn: &mut PgConnection,
    account_id: Uuid,
    state: &SubscriptionState<'_>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE billing_accounts SET subscription_id = $2, subscription_created = $3, plan_id = $4, status = $5, cancel_at_period_end = $6, current_period_start = $7, current_period_end = $8, past_due_since = $9, downgraded = $10, updated_at = now() WHERE account_id = $1")
        .bind(account_id)
        .bind(state.subscription_id)
        .bind(state.created)
        .bind(state.plan_id)
        .bind(state.status)
        .bind(state.cancel_at_period_end)
        .bind(state.current_period_start)
        .bind(state.current_period_end)
        .bind(state.past_due_since)
        .bind(state.downgraded)
        .execute(conn)
        .await?;
    Ok(())
}

/// Records the plan a change waiting for the period's end moves to (`None`: none waits).
pub async fn set_scheduled_plan(
    conn: &mut PgConnection,
    account_id: Uuid,
    plan_id: Option<&str>,
) -> sqlx::Result<()> {
    sqlx::query("UPDATE billing_accounts SET scheduled_plan_id = $2, updated_at = now() WHERE account_id = $1")
        .bind(account_id)
        .bind(plan_id)
        .execute(conn)
        .await?;
    Ok(())
}

/// The paid plan the account's apps run on now: held by its subscription and not dropped
/// to the free plan after an unpaid grace period. New apps of the account get it.
pub async fn held_plan(conn: &mut PgConnection, account_id: Uuid) -> sqlx::Result<Option<String>> {
    sqlx::query_scalar("SELECT plan_id FROM billing_accounts WHERE account_id = $1 AND plan_id IS NOT NULL AND NOT downgraded")
        .bind(account_id)
        .fetch_optional(conn)
        .await
}

/// Unpaid accounts whose grace period ended before `cutoff` and whose apps are still on
/// the paid plan.
#[tracing::instrument(name = "db.billing.lock_overdue_accounts", level = "debug", skip_all)]
pub async fn lock_overdue_accounts(
    conn: &mut PgConnection,
    cutoff: OffsetDateTime,
) -> sqlx::Result<Vec<BillingAccountRow>> {
    sqlx::query_as(AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE past_due_since < $1 AND NOT downgraded ORDER BY account_id LIMIT 100 FOR UPDATE SKIP LOCKED")))
        .bind(cutoff)
        .fetch_all(conn)
        .await
}

#[tracing::instrument(name = "db.billing.set_downgraded", level = "debug", skip_all)]
pub async fn set_downgraded(conn: &mut PgConnection, account_id: Uuid) -> sqlx::Result<()> {
    sqlx::query(
        "UPDATE billing_accounts SET downgraded = TRUE, updated_at = now() WHERE account_id = $1",
    )
    .bind(account_id)
    .execute(conn)
    .await?;
    Ok(())
}

/// Puts every app of the account on `plan_id`; the apps trigger tells the edges, which
/// reload the apps' limits without reconnecting anyone.
#[tracing::instrument(name = "db.billing.set_apps_plan", level = "debug", skip_all)]
pub async fn set_apps_plan(
    conn: &mut PgConnection,
    account_id: Uuid,
    plan_id: &str,
) -> sqlx::Result<u64> {
    let done = sqlx::query("UPDATE apps SET plan_id = $2 WHERE account_id = $1 AND plan_id <> $2")
        .bind(account_id)
        .bind(plan_id)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The owner's email, and whether it is verified.
#[tracing::instrument(name = "db.billing.owner_email", level = "debug", skip_all)]
pub async fn owner_email(
    conn: &mut PgConnection,
    account_id: Uuid,
) -> sqlx::Result<Option<(String, bool)>> {
    sqlx::query_as("SELECT email, email_verified_at IS NOT NULL FROM accounts WHERE id = $1")
        .bind(account_id)
        .fetch_optional(conn)
        .await
}

/// Records the event; false when it was recorded before (already processed).
#[tracing::instrument(name = "db.billing.record_event", level = "debug", skip_all)]
pub async fn record_event(
    conn: &mut PgConnection,
    event_id: &str,
    kind: &str,
) -> sqlx::Result<bool> {
    let done = sqlx::query("INSERT INTO stripe_events (event_id, kind) VALUES ($1, $2) ON CONFLICT (event_id) DO NOTHING")
        .bind(event_id)
        .bind(kind)
        .execute(conn)
        .await?;
    Ok(done.rows_affected() == 1)
}

/// Accounts with a subscription period, for reconciliation (at most 10,000 at once).
#[tracing::instrument(name = "db.billing.accounts_in_a_period", level = "debug", skip_all)]
pub async fn accounts_in_a_period(conn: &mut PgConnection) -> sqlx::Result<Vec<BillingAccountRow>> {
    sqlx::query_as(AssertSqlSafe(format!("SELECT {ACCOUNT_COLUMNS} FROM billing_accounts WHERE current_period_start IS NOT NULL ORDER BY account_id LIMIT 10000")))
        .fetch_all(conn)
        .await
}
