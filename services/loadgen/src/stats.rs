//! Delivery accounting shared by all connection tasks: a latency histogram and counters split
//! over a few mutex-guarded shards (a connection always uses the same shard), plus the
//! per-connection record of which sequence numbers arrived.

use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;

const SHARDS: usize = 32;
/// Latencies are recorded in nanoseconds, from 1 µs resolution up to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// Nanoseconds since the Unix epoch. Every published payload carries this, so receivers in
/// any process on this machine can compute publish→deliver latency.
pub fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

/// `{seq}:{unix_ns}:` padded with `x` to `size` bytes (longer when the header does not fit).
pub fn make_payload(seq: u64, ts_ns: u64, size: usize) -> String {
    let mut s = format!("{seq}:{ts_ns}:");
    if s.len() < size {
        let pad = size - s.len();
        s.extend(std::iter::repeat_n('x', pad));
    }
    s
}

/// Inverse of [`make_payload`]: `(seq, publish unix ns)`.
pub fn parse_payload(s: &str) -> Option<(u64, u64)> {
    let mut it = s.splitn(3, ':');
    let seq = it.next()?.parse().ok()?;
    let ts = it.next()?.parse().ok()?;
    it.next()?;
    Some((seq, ts))
}

struct Shard {
    hist: Histogram<u64>,
    deliveries: u64,
    unique: u64,
    duplicates: u64,
    malformed: u64,
}

pub struct Shared {
    shards: Vec<Mutex<Shard>>,
}

#[derive(Debug)]
pub struct Totals {
    pub hist: Histogram<u64>,
    pub deliveries: u64,
    pub unique: u64,
    pub duplicates: u64,
    pub malformed: u64,
}

impl Shared {
    pub fn new() -> Self {
        let shards = (0..SHARDS)
            .map(|_| {
                Mutex::new(Shard {
                    hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid bounds"),
                    deliveries: 0,
                    unique: 0,
                    duplicates: 0,
                    malformed: 0,
                })
            })
            .collect();
        Shared { shards }
    }

    fn shard(&self, conn: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[conn % SHARDS]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    /// One received benchmark payload on connection `conn`.
    pub fn record(&self, conn: usize, seen: &mut Seen, payload: &str) {
        let now = unix_ns();
        let Some((seq, ts)) = parse_payload(payload) else {
            self.shard(conn).malformed += 1;
            return;
        };
        let fresh = seen.insert(seq);
        let latency = now.saturating_sub(ts).max(1);
        let mut shard = self.shard(conn);
        shard.deliveries += 1;
        match fresh {
            Some(true) => shard.unique += 1,
            Some(false) => shard.duplicates += 1,
            None => shard.malformed += 1,
        }
        shard.hist.saturating_record(latency);
    }

    /// Unique deliveries so far (used to end the drain early).
    pub fn unique(&self) -> u64 {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).unique)
            .sum()
    }

    pub fn totals(&self) -> Totals {
        let mut t = Totals {
            hist: Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid bounds"),
            deliveries: 0,
            unique: 0,
            duplicates: 0,
            malformed: 0,
        };
        for s in &self.shards {
            let s = s.lock().unwrap_or_else(|e| e.into_inner());
            t.hist.add(&s.hist).expect("same bounds");
            t.deliveries += s.deliveries;
            t.unique += s.unique;
            t.duplicates += s.duplicates;
            t.malformed += s.malformed;
        }
        t
    }
}

/// Which per-channel sequence numbers one subscriber has received (a growable bitset,
/// bounded by the number of events that will be published to its channel).
pub struct Seen {
    bits: Vec<u64>,
    /// `None`: this process does not publish, so nothing is tracked (every payload counts as
    /// new; duplicates cannot be told apart).
    limit: Option<u64>,
}

impl Seen {
    pub fn new(limit: Option<u64>) -> Self {
        Seen {
            bits: Vec::new(),
            limit,
        }
    }

    /// Whether `seq` has arrived (always false when untracked).
    pub fn contains(&self, seq: u64) -> bool {
        self.bits
            .get((seq / 64) as usize)
            .is_some_and(|word| word & (1u64 << (seq % 64)) != 0)
    }

    /// `Some(true)` first time, `Some(false)` duplicate, `None` out of range.
    pub fn insert(&mut self, seq: u64) -> Option<bool> {
        let Some(limit) = self.limit else {
            return Some(true);
        };
        if seq >= limit {
            return None;
        }
        let word = (seq / 64) as usize;
        if word >= self.bits.len() {
            self.bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (seq % 64);
        let fresh = self.bits[word] & mask == 0;
        self.bits[word] |= mask;
        Some(fresh)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_round_trip_and_size() {
        let p = make_payload(42, 1_700_000_000_123_456_789, 100);
        assert_eq!(p.len(), 100);
        assert_eq!(parse_payload(&p), Some((42, 1_700_000_000_123_456_789)));
        let short = make_payload(7, 1_700_000_000_123_456_789, 4);
        assert_eq!(parse_payload(&short), Some((7, 1_700_000_000_123_456_789)));
        assert_eq!(parse_payload("hello"), None);
    }

    #[test]
    fn seen_detects_duplicates_and_range() {
        let mut s = Seen::new(Some(200));
        assert_eq!(s.insert(130), Some(true));
        assert_eq!(s.insert(130), Some(false));
        assert_eq!(s.insert(0), Some(true));
        assert_eq!(s.insert(200), None);
        assert!(s.contains(130) && s.contains(0));
        assert!(!s.contains(1) && !s.contains(199) && !s.contains(10_000));
        let mut untracked = Seen::new(None);
        assert_eq!(untracked.insert(7), Some(true));
        assert_eq!(untracked.insert(7), Some(true));
    }
}
