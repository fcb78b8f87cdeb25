//! Metering rows: per app per UTC minute, hour and day. Writes add to what is stored (counts
//! add, the peak is the greater); reads are scoped by the app's account.

use sqlx::PgConnection;
use time::OffsetDateTime;
use uuid::Uuid;

/// Counts for one app and one period (minute, hour or day), in the columns' types. Each `Vec`
/// of rows given to an upsert must name each (app, period) once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageDelta {
    pub app_id: String,
    pub period: OffsetDateTime,
    pub peak_connections: i64,
    pub connections_opened: i64,
    pub messages_published: i64,
    pub messages_delivered: i64,
    pub bytes_out: i64,
}

/// The rows' columns as arrays, for one `UNNEST` per statement.
struct Columns {
    app_ids: Vec<String>,
    periods: Vec<OffsetDateTime>,
    peaks: Vec<i64>,
    opened: Vec<i64>,
    published: Vec<i64>,
    delivered: Vec<i64>,
    bytes_out: Vec<i64>,
}

impl Columns {
    fn of(rows: &[UsageDelta]) -> Self {
        Self {
            app_ids: rows.iter().map(|row| row.app_id.clone()).collect(),
            periods: rows.iter().map(|row| row.period).collect(),
            peaks: rows.iter().map(|row| row.peak_connections).collect(),
            opened: rows.iter().map(|row| row.connections_opened).collect(),
            published: rows.iter().map(|row| row.messages_published).collect(),
            delivered: rows.iter().map(|row| row.messages_delivered).collect(),
            bytes_out: rows.iter().map(|row| row.bytes_out).collect(),
        }
    }
}

/// The upsert that adds one period's deltas; only the table and its period column differ.
macro_rules! add_usage_sql {
    ($table:literal, $period:literal) => {
        concat!(
            "INSERT INTO ",
            $table,
            " AS u (app_id, ",
            $period,
            ", peak_connections, connections_opened, \
             messages_published, messages_delivered, bytes_out) \
             SELECT * FROM UNNEST($1::text[], $2::timestamptz[], $3::bigint[], $4::bigint[], \
             $5::bigint[], $6::bigint[], $7::bigint[]) \
             ON CONFLICT (app_id, ",
            $period,
            ") DO UPDATE SET \
             peak_connections = GREATEST(u.peak_connections, EXCLUDED.peak_connections), \
             connections_opened = u.connections_opened + EXCLUDED.connections_opened, \
             messages_published = u.messages_published + EXCLUDED.messages_published, \
             messages_delivered = u.messages_delivered + EXCLUDED.messages_delivered, \
             bytes_out = u.bytes_out + EXCLUDED.bytes_out"
        )
    };
}

/// The table a delta is added to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    Minutes,
    Hours,
    Days,
}

/// Adds the deltas to the table's rows (counts add up, peaks take the greatest).
#[tracing::instrument(name = "db.usage.add", level = "debug", skip_all)]
pub async fn add(conn: &mut PgConnection, table: Table, rows: &[UsageDelta]) -> sqlx::Result<()> {
    let sql = match table {
        Table::Minutes => add_usage_sql!("usage_minutes", "minute"),
        Table::Hours => add_usage_sql!("usage_hours", "hour"),
        Table::Days => add_usage_sql!("usage_days", "day"),
    };
    let columns = Columns::of(rows);
    sqlx::query(sql)
        .bind(columns.app_ids)
        .bind(columns.periods)
        .bind(columns.peaks)
        .bind(columns.opened)
        .bind(columns.published)
        .bind(columns.delivered)
        .bind(columns.bytes_out)
        .execute(conn)
        .await?;
    Ok(())
}

/// One stored period of an app's usage.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct UsageRow {
    pub time: OffsetDateTime,
    pub peak_connections: i64,
    pub connections_opened: i64,
    pub messages_published: i64,
    pub messages_delivered: i64,
    pub bytes_out: i64,
}

/// The read of one table's periods; only the table and its period column differ.
macro_rules! read_usage_sql {
    ($table:literal, $period:literal) => {
        concat!(
            "SELECT u.",
            $period,
            " AS time, u.peak_connections, u.connections_opened, \
             u.messages_published, u.messages_delivered, u.bytes_out \
             FROM ",
            $table,
            " u JOIN apps a ON a.id = u.app_id \
             WHERE u.app_id = $1 AND a.account_id = $2 AND u.",
            $period,
            " >= $3 AND u.",
            $period,
            " < $4 \
             ORDER BY u.",
            $period
        )
    };
}

/// The account's app's periods in `[from, to)` from `table`, oldest first.
#[tracing::instrument(name = "db.usage.read", level = "debug", skip_all)]
pub async fn read(
    conn: &mut PgConnection,
    table: Table,
    account_id: Uuid,
    app_id: &str,
    from: OffsetDateTime,
    to: OffsetDateTime,
) -> sqlx::Result<Vec<UsageRow>> {
    let sql = match table {
        Table::Minutes => read_usage_sql!("usage_minutes", "minute"),
        Table::Hours => read_usage_sql!("usage_hours", "hour"),
        Table::Days => read_usage_sql!("usage_days", "day"),
    };
    sqlx::query_as(sql)
        .bind(app_id)
        .bind(account_id)
        .bind(from)
        .bind(to)
        .fetch_all(conn)
        .await
}
