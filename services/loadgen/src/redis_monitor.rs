//! Counts the commands a shared Redis runs during the measured window, through `MONITOR`
//! (one line per command, as its client sent it; commands a Lua script runs are marked
//! `[db lua]` and counted apart), so a report can say how many Redis round trips a publish
//! costs. MONITOR costs Redis some CPU; the servers' own CPU is what the benchmark measures.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, ensure};
use serde::Serialize;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Distinct command keys kept; more (never seen in practice) are counted as `other`.
const MAX_KEYS: usize = 256;

/// A running count, until `stop`.
pub(crate) struct Monitor {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Counts>,
}

/// Commands seen, by key: the command's name, and for `evalsha` the script's first 8 hex digits.
#[derive(Default)]
pub(crate) struct Counts {
    from_clients: BTreeMap<String, u64>,
    in_scripts: u64,
}

/// The window's commands, per successful publish.
#[derive(Serialize)]
pub(crate) struct RedisReport {
    pub(crate) publishes_ok: u64,
    /// Every command a client sent (round trips), pings included.
    pub(crate) commands: u64,
    /// Client commands other than the health watch's pings, per publish.
    pub(crate) round_trips_per_publish: f64,
    /// The health watch's pings, per second (a fixed cost per node, not per publish).
    pub(crate) pings_per_s: f64,
    /// Commands run inside Lua scripts, per publish (no round trip of their own).
    pub(crate) script_commands_per_publish: f64,
    pub(crate) by_command_per_publish: BTreeMap<String, f64>,
}

impl Monitor {
    /// Returns once Redis confirmed MONITOR: every later command is counted.
    pub(crate) async fn start(address: SocketAddr) -> anyhow::Result<Self> {
        let mut stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to Redis at {address}"))?;
        stream.write_all(b"MONITOR\r\n").await?;
        let mut lines = BufReader::new(stream).lines();
        let first = lines.next_line().await?.unwrap_or_default();
        ensure!(first == "+OK", "Redis answered MONITOR with {first:?}");
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let mut counts = Counts::default();
            loop {
                tokio::select! {
                    line = lines.next_line() => match line {
                        Ok(Some(line)) => counts.add(&line),
                        _ => return counts,
                    },
                    _ = &mut stopped => return counts,
                }
            }
        });
        Ok(Self { stop, task })
    }

    pub(crate) async fn stop(self) -> Counts {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

impl Counts {
    /// `+1339518083.107412 [0 127.0.0.1:60866] "evalsha" "3f2a…" …`, or `[0 lua]` inside a script.
    fn add(&mut self, line: &str) {
        let Some((source, command)) = line.split_once("] ") else {
            return;
        };
        if source.ends_with(" lua") {
            self.in_scripts += 1;
            return;
        }
        let mut words = command.split(' ').map(|word| word.trim_matches('"'));
        let name = words.next().unwrap_or("").to_ascii_lowercase();
        let key = match name.as_str() {
            "evalsha" => format!(
                "evalsha {}",
                words.next().unwrap_or("").get(..8).unwrap_or("")
            ),
            _ => name,
        };
        let key = if self.from_clients.len() >= MAX_KEYS && !self.from_clients.contains_key(&key) {
            "other".to_owned()
        } else {
            key
        };
        *self.from_clients.entry(key).or_default() += 1;
    }

    pub(crate) fn report(&self, publishes_ok: u64, window_s: f64) -> RedisReport {
        let per_publish = |count: u64| count as f64 / publishes_ok.max(1) as f64;
        let commands: u64 = self.from_clients.values().sum();
        let pings = self.from_clients.get("ping").copied().unwrap_or(0);
        RedisReport {
            publishes_ok,
            commands,
            round_trips_per_publish: per_publish(commands - pings),
            pings_per_s: pings as f64 / window_s.max(1e-9),
            script_commands_per_publish: per_publish(self.in_scripts),
            by_command_per_publish: self
                .from_clients
                .iter()
                .map(|(key, count)| (key.clone(), per_publish(*count)))
                .collect(),
        }
    }
}
