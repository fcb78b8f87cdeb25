//! Metering's vocabulary: one app's counts for one UTC minute, and the `UsageSink` trait the
//! edge flushes them to. The Postgres sink lives in `control`; `MemoryUsageSink` is for tests
//! and the edge alone.

use std::collections::BTreeMap;
use std::sync::Mutex;

use async_trait::async_trait;
use protocol::names::AppId;
use thiserror::Error;

/// What one app did in one UTC minute. Every field but `peak_connections` is a count that adds
/// up across flushes and nodes; `peak_connections` combines by taking the larger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageMinute {
    pub app: AppId,
    /// The minute since the Unix epoch: `unix_seconds / 60`, UTC.
    pub minute: i64,
    /// The most connections the app held at once on this node during the minute.
    pub peak_connections: u64,
    /// Connections admitted.
    pub connections_opened: u64,
    /// Messages published: one per channel an API trigger names, one per client event.
    pub messages_published: u64,
    /// Messages delivered: one per subscriber a message reached.
    pub messages_delivered: u64,
    /// Bytes of delivered frames (WebSocket payload, before framing).
    pub bytes_out: u64,
}

impl UsageMinute {
    pub fn new(app: AppId, minute: i64) -> Self {
        Self {
            app,
            minute,
            peak_connections: 0,
            connections_opened: 0,
            messages_published: 0,
            messages_delivered: 0,
            bytes_out: 0,
        }
    }

    /// Adds `other`'s counts to this one's; the peak is the larger of the two.
    pub fn absorb(&mut self, other: &UsageMinute) {
        self.peak_connections = self.peak_connections.max(other.peak_connections);
        self.connections_opened += other.connections_opened;
        self.messages_published += other.messages_published;
        self.messages_delivered += other.messages_delivered;
        self.bytes_out += other.bytes_out;
    }
}

#[derive(Debug, Error)]
#[error("usage could not be recorded: {0}")]
pub struct UsageError(pub String);

/// Where the edge writes closed minutes. `record` must be all or nothing: on `Ok` every row is
/// stored (the edge then forgets them), on `Err` none is (the edge keeps them and retries).
#[async_trait]
pub trait UsageSink: Send + Sync + 'static {
    async fn record(&self, rows: &[UsageMinute]) -> Result<(), UsageError>;
}

/// Usage kept in memory, merged by (app, minute) as the Postgres sink merges it.
#[derive(Debug, Default)]
pub struct MemoryUsageSink {
    rows: Mutex<BTreeMap<(AppId, i64), UsageMinute>>,
}

impl MemoryUsageSink {
    /// Every (app, minute) recorded so far, in app then minute order.
    pub fn rows(&self) -> Vec<UsageMinute> {
        let rows = self.rows.lock().expect("usage lock poisoned");
        rows.values().cloned().collect()
    }
}

#[async_trait]
impl UsageSink for MemoryUsageSink {
    async fn record(&self, rows: &[UsageMinute]) -> Result<(), UsageError> {
        let mut stored = self.rows.lock().expect("usage lock poisoned");
        for row in rows {
            stored
                .entry((row.app.clone(), row.minute))
                .or_insert_with(|| UsageMinute::new(row.app.clone(), row.minute))
                .absorb(row);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(app: &str, minute: i64, opened: u64, peak: u64) -> UsageMinute {
        UsageMinute {
            connections_opened: opened,
            peak_connections: peak,
            ..UsageMinute::new(AppId::parse(app).unwrap(), minute)
        }
    }

    #[tokio::test]
    async fn the_memory_sink_adds_counts_and_keeps_the_higher_peak() {
        let sink = MemoryUsageSink::default();
        sink.record(&[row("a", 1, 2, 5), row("b", 1, 1, 1)])
            .await
            .unwrap();
        sink.record(&[row("a", 1, 3, 4)]).await.unwrap();
        assert_eq!(sink.rows(), [row("a", 1, 5, 5), row("b", 1, 1, 1)]);
    }
}
