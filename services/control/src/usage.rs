//! Metering in Postgres: `PgUsageSink`, the edge's `UsageSink`, and the resolutions of the
//! usage API.
//!
//! One flush is one transaction: the minute rows get the flushed counts added, and the same
//! deltas are rolled into the hour and day rows (UTC), so the three tables always agree. The
//! edge forgets rows only after the commit, and retries them after a failure; since a failed
//! transaction wrote nothing, nothing is lost or counted twice.

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tenancy::{UsageError, UsageMinute, UsageSink};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::repository::usage::{self, UsageDelta};

/// The period of each point of a usage series.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Resolution {
    #[default]
    Minute,
    Hour,
    Day,
}

impl Resolution {
    pub fn seconds(self) -> i64 {
        match self {
            Resolution::Minute => 60,
            Resolution::Hour => 3600,
            Resolution::Day => 86_400,
        }
    }
}

/// Writes the edge's usage minutes to Postgres, with hourly and daily rollups.
#[derive(Clone)]
pub struct PgUsageSink {
    pool: PgPool,
}

impl PgUsageSink {
    /// A sink on the same database as `pool`, through a small pool of its own: a connection
    /// belongs to the runtime that opened it, and the shutdown flush runs after the server's
    /// worker runtimes (which open connections of the shared pool) have stopped. Only the
    /// flushes, which all run on the runtime that started the server, use this pool.
    pub fn new(pool: &PgPool) -> Self {
        let options = pool.connect_options().as_ref().clone();
        let pool = PgPoolOptions::new()
            .max_connections(2)
            .connect_lazy_with(options);
        Self { pool }
    }
}

/// Per (app, period start in unix seconds): the counts in the columns' types.
type Rollup = BTreeMap<(String, i64), [i64; 5]>;

fn clamp(count: u64) -> i64 {
    i64::try_from(count).unwrap_or(i64::MAX)
}

/// Adds each minute's counts to the period (of `seconds`) it falls in; peaks take the greater.
fn roll_up(rows: &[UsageMinute], seconds: i64) -> Result<Rollup, UsageError> {
    let mut rollup = Rollup::new();
    for row in rows {
        let start = row
            .minute
            .checked_mul(60)
            .ok_or_else(|| UsageError(format!("minute {} out of range", row.minute)))?;
        let period = start - start.rem_euclid(seconds);
        let counts = rollup
            .entry((row.app.as_str().to_owned(), period))
            .or_default();
        counts[0] = counts[0].max(clamp(row.peak_connections));
        counts[1] = counts[1].saturating_add(clamp(row.connections_opened));
        counts[2] = counts[2].saturating_add(clamp(row.messages_published));
        counts[3] = counts[3].saturating_add(clamp(row.messages_delivered));
        counts[4] = counts[4].saturating_add(clamp(row.bytes_out));
    }
    Ok(rollup)
}

fn deltas(rollup: Rollup) -> Result<Vec<UsageDelta>, UsageError> {
    rollup
        .into_iter()
        .map(|((app_id, start), counts)| {
            let period = OffsetDateTime::from_unix_timestamp(start)
                .map_err(|error| UsageError(error.to_string()))?;
            let [peak, opened, published, delivered, bytes_out] = counts;
            Ok(UsageDelta {
                app_id,
                period,
                peak_connections: peak,
                connections_opened: opened,
                messages_published: published,
                messages_delivered: delivered,
                bytes_out,
            })
        })
        .collect()
}

#[async_trait]
impl UsageSink for PgUsageSink {
    async fn record(&self, rows: &[UsageMinute]) -> Result<(), UsageError> {
        if rows.is_empty() {
            return Ok(());
        }
        let minutes = deltas(roll_up(rows, Resolution::Minute.seconds())?)?;
        let hours = deltas(roll_up(rows, Resolution::Hour.seconds())?)?;
        let days = deltas(roll_up(rows, Resolution::Day.seconds())?)?;
        let write = async {
            let mut tx = self.pool.begin().await?;
            usage::add(&mut tx, usage::Table::Minutes, &minutes).await?;
            usage::add(&mut tx, usage::Table::Hours, &hours).await?;
            usage::add(&mut tx, usage::Table::Days, &days).await?;
            tx.commit().await
        };
        write
            .await
            .map_err(|error: sqlx::Error| UsageError(error.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use protocol::names::AppId;

    use super::*;

    fn minute(app: &str, minute: i64, peak: u64, published: u64) -> UsageMinute {
        UsageMinute {
            peak_connections: peak,
            messages_published: published,
            ..UsageMinute::new(AppId::parse(app).unwrap(), minute)
        }
    }

    #[test]
    fn minutes_roll_up_into_utc_hours_and_days_adding_counts_and_keeping_the_peak() {
        // 2026-11-26T23:59Z and 2026-11-27T00:00Z: two hours, two days.
        let before_midnight = 1_795_737_540 / 60;
        let rows = [
            minute("a", before_midnight - 1, 2, 1),
            minute("a", before_midnight, 5, 2),
            minute("a", before_midnight + 1, 3, 4),
            minute("b", before_midnight, 1, 8),
        ];
        let hours = roll_up(&rows, 3600).unwrap();
        let hour = |app: &str, start: i64| hours[&(app.to_owned(), start)];
        assert_eq!(hours.len(), 3);
        assert_eq!(hour("a", 1_795_734_000), [5, 0, 3, 0, 0]);
        assert_eq!(hour("a", 1_795_737_600), [3, 0, 4, 0, 0]);
        assert_eq!(hour("b", 1_795_734_000), [1, 0, 8, 0, 0]);
        let days = roll_up(&rows, 86_400).unwrap();
        assert_eq!(days.len(), 3);
        assert_eq!(days[&("a".to_owned(), 1_795_651_200)], [5, 0, 3, 0, 0]);
        assert_eq!(days[&("a".to_owned(), 1_795_737_600)], [3, 0, 4, 0, 0]);
    }
}
