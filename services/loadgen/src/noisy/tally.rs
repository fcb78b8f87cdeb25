//! What the noisy-neighbour run counts while it runs (B's latency per phase, A's deliveries,
//! close codes, burst outcomes) and the report made of it at the end.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;
use serde::Serialize;

use crate::noisy::client::Held;
use crate::noisy::publishers::StatusReport;
use crate::stats::{Seen, parse_payload, unix_ns};

/// Latencies in nanoseconds, 1 µs to 60 s, 3 significant digits.
const HIST_MAX_NS: u64 = 60_000_000_000;

/// B's two phases: "B alone" and "B with A's storm". B's sequence numbers run on across
/// them, so a delivery's phase is read from its number.
pub(crate) const PHASES: usize = 2;

pub(crate) struct PhaseStats {
    histogram: Mutex<Histogram<u64>>,
    unique: AtomicU64,
    duplicates: AtomicU64,
}

/// B's deliveries, by phase.
pub(crate) struct BStats {
    phases: [PhaseStats; PHASES],
    /// Sequence numbers below this are phase 1's.
    phase_one_events: u64,
    /// B's events per second: a phase's `n`th event was sent `n ÷ this` seconds into it.
    rate: f64,
    /// Per sequence number, its slowest delivery's latency in nanoseconds (0: none yet).
    worst: Vec<AtomicU64>,
    malformed: AtomicU64,
}

impl BStats {
    /// Sequence numbers run from 0 to twice `phase_one_events`.
    pub(crate) fn new(phase_one_events: u64, rate: f64) -> Self {
        let phase = || PhaseStats {
            histogram: Mutex::new(
                Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid bounds"),
            ),
            unique: AtomicU64::new(0),
            duplicates: AtomicU64::new(0),
        };
        Self {
            phases: [phase(), phase()],
            phase_one_events,
            rate,
            worst: (0..2 * phase_one_events)
                .map(|_| AtomicU64::new(0))
                .collect(),
            malformed: AtomicU64::new(0),
        }
    }

    pub(crate) fn phase_of(&self, seq: u64) -> usize {
        usize::from(seq >= self.phase_one_events)
    }

    /// One B payload received by the subscriber whose record is `seen`.
    pub(crate) fn record(&self, seen: &mut Seen, payload: &str) {
        let now = unix_ns();
        let Some((seq, sent)) = parse_payload(payload) else {
            self.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let phase = &self.phases[self.phase_of(seq)];
        match seen.insert(seq) {
            Some(true) => phase.unique.fetch_add(1, Ordering::Relaxed),
            Some(false) => phase.duplicates.fetch_add(1, Ordering::Relaxed),
            None => self.malformed.fetch_add(1, Ordering::Relaxed),
        };
        let latency = now.saturating_sub(sent).max(1);
        if let Some(worst) = self.worst.get(seq as usize) {
            worst.fetch_max(latency, Ordering::Relaxed);
        }
        phase
            .histogram
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .saturating_record(latency);
    }

    pub(crate) fn unique(&self, phase: usize) -> u64 {
        self.phases[phase].unique.load(Ordering::Relaxed)
    }

    /// Phase `phase`'s figures: `expected` = B's accepted events of the phase × subscribers;
    /// `lost` counted per subscriber by sequence number.
    /// `answered`: per event, the microseconds its accepted publish took to be answered.
    pub(crate) fn phase_report(
        &self,
        phase: usize,
        answered: &[Option<u32>],
        subscribers: &[Seen],
        window_s: f64,
    ) -> PhaseReport {
        let seqs: Vec<u64> = (0..answered.len() as u64)
            .filter(|&seq| answered[seq as usize].is_some() && self.phase_of(seq) == phase)
            .collect();
        let mut answers: Vec<u32> = seqs.iter().filter_map(|&s| answered[s as usize]).collect();
        answers.sort_unstable();
        let answer_ms = |q: f64| {
            let last = answers.len().checked_sub(1)?;
            Some(f64::from(answers[(q * last as f64).round() as usize]) / 1e3)
        };
        let lost = subscribers
            .iter()
            .map(|seen| seqs.iter().filter(|&&seq| !seen.contains(seq)).count() as u64)
            .sum();
        let stats = &self.phases[phase];
        let histogram = stats.histogram.lock().unwrap_or_else(|e| e.into_inner());
        let quantile =
            |q: f64| (!histogram.is_empty()).then(|| histogram.value_at_quantile(q) as f64 / 1e6);
        PhaseReport {
            worst_ms_by_second: self.worst_by_second(phase, &seqs),
            window_s,
            published_ok: seqs.len() as u64,
            expected: seqs.len() as u64 * subscribers.len() as u64,
            deliveries: histogram.len(),
            unique: stats.unique.load(Ordering::Relaxed),
            lost,
            duplicated: stats.duplicates.load(Ordering::Relaxed),
            latency_ms_p50: quantile(0.5),
            latency_ms_p99: quantile(0.99),
            latency_ms_p999: quantile(0.999),
            latency_ms_max: quantile(1.0),
            publish_answer_ms_p50: answer_ms(0.5),
            publish_answer_ms_p99: answer_ms(0.99),
            publish_answer_ms_max: answer_ms(1.0),
        }
    }

    /// For each second of phase `phase` (its accepted events `seqs`), the slowest delivery of any
    /// of its events: where in the phase the tail lies (a connect burst at the start, or the
    /// whole storm).
    fn worst_by_second(&self, phase: usize, seqs: &[u64]) -> Vec<f64> {
        let first = if phase == 0 { 0 } else { self.phase_one_events };
        let mut seconds: Vec<u64> = Vec::new();
        for &seq in seqs {
            let second = ((seq - first) as f64 / self.rate) as usize;
            if seconds.len() <= second {
                seconds.resize(second + 1, 0);
            }
            let worst = self
                .worst
                .get(seq as usize)
                .map_or(0, |w| w.load(Ordering::Relaxed));
            seconds[second] = seconds[second].max(worst);
        }
        seconds.into_iter().map(|ns| ns as f64 / 1e6).collect()
    }

    pub(crate) fn malformed(&self) -> u64 {
        self.malformed.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct PhaseReport {
    /// Per second of the phase, the slowest delivery of that second's events.
    pub(crate) worst_ms_by_second: Vec<f64>,
    /// B's publishing window plus its drain.
    pub(crate) window_s: f64,
    pub(crate) published_ok: u64,
    pub(crate) expected: u64,
    pub(crate) deliveries: u64,
    pub(crate) unique: u64,
    pub(crate) lost: u64,
    pub(crate) duplicated: u64,
    pub(crate) latency_ms_p50: Option<f64>,
    pub(crate) latency_ms_p99: Option<f64>,
    pub(crate) latency_ms_p999: Option<f64>,
    pub(crate) latency_ms_max: Option<f64>,
    /// How long B's accepted publishes took to be answered: the share of B's latency spent
    /// before the server's fan-out.
    pub(crate) publish_answer_ms_p50: Option<f64>,
    pub(crate) publish_answer_ms_p99: Option<f64>,
    pub(crate) publish_answer_ms_max: Option<f64>,
}

/// How connections ended, by close code: `"4100"`, `"no code"` (a close frame without one),
/// `"dropped"` (no close frame). At most 65,538 keys, however the server answers.
#[derive(Default)]
pub(crate) struct Closes(Mutex<BTreeMap<String, u64>>);

impl Closes {
    pub(crate) fn record(&self, held: &Held) {
        let key = match held {
            Held::Stopped => return,
            Held::Closed(Some(code)) => code.to_string(),
            Held::Closed(None) => "no code".to_owned(),
            Held::Dropped => "dropped".to_owned(),
        };
        *self
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(key)
            .or_default() += 1;
    }

    pub(crate) fn snapshot(&self) -> BTreeMap<String, u64> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// A's burst connections by outcome.
#[derive(Default)]
pub(crate) struct BurstCounts {
    pub(crate) admitted: AtomicU64,
    pub(crate) refused_4100: AtomicU64,
    pub(crate) refused_4004: AtomicU64,
    pub(crate) refused_other: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// The first few distinct refusal codes other than 4100 and 4004, and failure reasons.
    pub(crate) first_errors: Mutex<Vec<String>>,
}

/// Distinct first errors kept per kind.
const FIRST_ERRORS: usize = 5;

impl BurstCounts {
    pub(crate) fn refused(&self, code: u16) {
        let counter = match code {
            4100 => &self.refused_4100,
            4004 => &self.refused_4004,
            other => {
                self.note(format!("refused with {other}"));
                &self.refused_other
            }
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn failed(&self, error: String) {
        self.failed.fetch_add(1, Ordering::Relaxed);
        self.note(error);
    }

    fn note(&self, error: String) {
        let mut errors = self.first_errors.lock().unwrap_or_else(|e| e.into_inner());
        if errors.len() < FIRST_ERRORS && !errors.contains(&error) {
            errors.push(error);
        }
    }

    pub(crate) fn report(&self, attempted: u64) -> BurstReport {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let (admitted, r4100, r4004, other, failed) = (
            load(&self.admitted),
            load(&self.refused_4100),
            load(&self.refused_4004),
            load(&self.refused_other),
            load(&self.failed),
        );
        BurstReport {
            attempted,
            admitted,
            refused_4100: r4100,
            refused_4004: r4004,
            refused_other: other,
            failed,
            unfinished: attempted.saturating_sub(admitted + r4100 + r4004 + other + failed),
            first_errors: self
                .first_errors
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct BurstReport {
    pub(crate) attempted: u64,
    pub(crate) admitted: u64,
    pub(crate) refused_4100: u64,
    pub(crate) refused_4004: u64,
    pub(crate) refused_other: u64,
    /// Never answered: TCP or WebSocket handshake errors, timeouts.
    pub(crate) failed: u64,
    /// Still handshaking when the run ended.
    pub(crate) unfinished: u64,
    pub(crate) first_errors: Vec<String>,
}

#[derive(Debug, Default, Serialize)]
pub(crate) struct Ramp {
    pub(crate) established: u64,
    pub(crate) failed: u64,
    pub(crate) ramp_s: f64,
    /// Handshakes refused with 4100 (the app's connect pace) and tried again after a back-off.
    pub(crate) retried_after_4100: u64,
    pub(crate) first_errors: Vec<String>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Workload {
    pub(crate) url: String,
    pub(crate) b_subscribers: usize,
    pub(crate) b_rate: f64,
    pub(crate) a_subscribers: usize,
    pub(crate) a_publishers: usize,
    pub(crate) a_burst: usize,
    pub(crate) payload_bytes: usize,
    pub(crate) phase_s: f64,
    pub(crate) source_addrs: usize,
    pub(crate) client_threads: usize,
    /// The nice value of the threads running A's clients (0: B's priority).
    pub(crate) a_nice: i32,
    pub(crate) nproc: usize,
    pub(crate) loadavg_at_start: Option<[f64; 3]>,
}

#[derive(Debug, Serialize)]
pub(crate) struct BReport {
    pub(crate) ramp: Ramp,
    pub(crate) alone: Option<PhaseReport>,
    pub(crate) storm: Option<PhaseReport>,
    pub(crate) publish: StatusReport,
    /// B's subscribers the server closed, by code.
    pub(crate) closed: BTreeMap<String, u64>,
    pub(crate) malformed: u64,
}

#[derive(Debug, Serialize)]
pub(crate) struct AReport {
    pub(crate) ramp: Ramp,
    /// Storm frames received by A's subscribers (burst connections included) during B's
    /// phase-2 publishing window, and per second of it.
    pub(crate) deliveries: u64,
    pub(crate) deliveries_per_s: f64,
    pub(crate) publish: StatusReport,
    pub(crate) burst: BurstReport,
    pub(crate) subscribers_closed: BTreeMap<String, u64>,
    pub(crate) burst_closed: BTreeMap<String, u64>,
}

#[derive(Debug, Serialize)]
pub(crate) struct NoisyReport {
    pub(crate) workload: Workload,
    pub(crate) b: BReport,
    /// B's p99 with the storm ÷ B's p99 alone (target ≤ 2).
    pub(crate) p99_ratio: Option<f64>,
    pub(crate) a: AReport,
    pub(crate) client_cpu_s_total: Option<f64>,
    /// The load client's CPU over the two measured phases.
    pub(crate) client_cpu_s_phases: Option<f64>,
    /// Why the run ended early, when it did; the figures are those collected until then.
    pub(crate) aborted: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::make_payload;

    #[test]
    fn deliveries_land_in_their_phase_and_losses_are_counted_per_subscriber() {
        let stats = BStats::new(3, 2.0);
        let (mut first, mut second) = (Seen::new(Some(6)), Seen::new(Some(6)));
        for seq in [0, 1, 2, 3, 4, 5] {
            stats.record(&mut first, &make_payload(seq, unix_ns(), 100));
        }
        for seq in [0, 2, 2, 4] {
            stats.record(&mut second, &make_payload(seq, unix_ns(), 100));
        }
        stats.record(&mut second, "not a payload");
        // Event 5 was never accepted: its delivery is counted, its absence is no loss.
        let accepted = [
            Some(1_000),
            Some(3_000),
            Some(2_000),
            Some(500),
            Some(700),
            None,
        ];
        let subscribers = [first, second];
        let alone = stats.phase_report(0, &accepted, &subscribers, 1.0);
        assert_eq!((alone.published_ok, alone.expected), (3, 6));
        let answers = (alone.publish_answer_ms_p50, alone.publish_answer_ms_max);
        assert_eq!(answers, (Some(2.0), Some(3.0)), "events 0-2's answers");
        assert_eq!((alone.unique, alone.duplicated, alone.lost), (5, 1, 1));
        let storm = stats.phase_report(1, &accepted, &subscribers, 1.0);
        assert_eq!((storm.published_ok, storm.expected), (2, 4));
        assert_eq!((storm.unique, storm.lost), (4, 1));
        assert_eq!(stats.malformed(), 1);
        assert!(alone.latency_ms_p99.is_some());
        // Events 0-1 are phase 1's first second, event 2 its second; 3-4 phase 2's first.
        assert_eq!(alone.worst_ms_by_second.len(), 2);
        assert_eq!(storm.worst_ms_by_second.len(), 1);
    }

    #[test]
    fn each_second_reports_its_slowest_delivery() {
        let stats = BStats::new(4, 2.0);
        let mut seen = Seen::new(Some(8));
        let now = unix_ns();
        for (seq, late_ms) in [(4, 5), (5, 40), (6, 7), (7, 3)] {
            stats.record(
                &mut seen,
                &make_payload(seq, now - late_ms * 1_000_000, 100),
            );
        }
        let accepted = [Some(1); 8];
        let storm = stats.phase_report(1, &accepted, &[seen], 1.0);
        let worst = &storm.worst_ms_by_second;
        assert_eq!(worst.len(), 2);
        assert!(worst[0] >= 40.0 && worst[0] < 1_000.0, "{worst:?}");
        assert!(worst[1] >= 7.0 && worst[1] < 40.0, "{worst:?}");
    }

    #[test]
    fn closes_are_counted_by_code_and_stops_are_not_closes() {
        let closes = Closes::default();
        for held in [
            Held::Closed(Some(4100)),
            Held::Closed(Some(4100)),
            Held::Closed(None),
            Held::Dropped,
            Held::Stopped,
        ] {
            closes.record(&held);
        }
        let counted = closes.snapshot();
        assert_eq!(counted.get("4100"), Some(&2));
        assert_eq!(counted.get("no code"), Some(&1));
        assert_eq!(counted.get("dropped"), Some(&1));
        assert_eq!(counted.len(), 3);
    }

    #[test]
    fn burst_refusals_are_sorted_by_code() {
        let burst = BurstCounts::default();
        burst.admitted.fetch_add(2, Ordering::Relaxed);
        burst.refused(4100);
        burst.refused(4004);
        burst.refused(4200);
        burst.failed("timeout".into());
        let report = burst.report(7);
        assert_eq!(report.admitted, 2);
        assert_eq!(
            (
                report.refused_4100,
                report.refused_4004,
                report.refused_other
            ),
            (1, 1, 1)
        );
        assert_eq!((report.failed, report.unfinished), (1, 1));
        assert_eq!(report.first_errors, ["refused with 4200", "timeout"]);
    }
}
