//! One channel's serials and bounded history, as pure logic: time comes in as an argument.
//!
//! Every publication that asks for history gets the channel's next serial (1-based, strictly
//! increasing, never reused within an epoch) and is stamped: `,"serial":N,"epoch":"E"` is
//! spliced in before the frame's final `}`. The splice is a byte operation, not a parse (the
//! broker never parses frames): it relies on the frame being one JSON object with nothing
//! after its closing brace, which every frame the edge builds is (`protocol::wire`).
//!
//! The stored frames are the stamped ones, kept while they are within the window (the newest
//! `max_events`, none older than `max_age`). Their serials are contiguous: frames only ever
//! leave from the oldest end, so a replay after serial `n` is a suffix found by arithmetic.
//!
//! Frames leave by the window (count, age) or by the byte budget (`evict_through`). Those
//! the window drops are recorded (`take_removed`) so the broker can give their bytes back to
//! the app's budget.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use bytestring::ByteString;

use crate::History;

/// How much of a channel's past its plan keeps: the newest `max_events`, none older than
/// `max_age`. Either being zero keeps nothing (serials are still assigned). `app_max_bytes`
/// bounds what all the app's channels keep together on a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryWindow {
    pub max_events: usize,
    pub max_age: Duration,
    pub app_max_bytes: usize,
}

/// The frame with `,"serial":N,"epoch":"E"` spliced in before its final `}`. A frame that does
/// not end with `}` (never one the edge builds) is returned unchanged rather than corrupted.
/// `epoch` must need no JSON escaping (brokers make epochs of `[0-9a-z]`).
pub fn stamp(frame: &str, serial: u64, epoch: &str) -> ByteString {
    let trimmed = frame.trim_end();
    let Some(open) = trimmed.strip_suffix('}') else {
        return ByteString::from(frame);
    };
    let mut stamped = String::with_capacity(trimmed.len() + epoch.len() + 34);
    stamped.push_str(open);
    // `{}` has no field to follow: no comma then (no frame the edge builds is empty).
    if open.trim_end() != "{" {
        stamped.push(',');
    }
    stamped.push_str("\"serial\":");
    stamped.push_str(&serial.to_string());
    stamped.push_str(",\"epoch\":\"");
    stamped.push_str(epoch);
    stamped.push_str("\"}");
    ByteString::from(stamped)
}

/// The serial and epoch `stamp` spliced into `frame`, read back from its end without parsing
/// it (a carrier needs them for every frame it delivers). `None` for a frame without one.
pub fn read_stamp(frame: &str) -> Option<(u64, &str)> {
    let open = frame.strip_suffix("\"}")?;
    let (rest, epoch) = open.rsplit_once(",\"epoch\":\"")?;
    let (_, serial) = rest.rsplit_once("\"serial\":")?;
    let valid_epoch = !epoch.is_empty() && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
    if !valid_epoch || serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((serial.parse().ok()?, epoch))
}

/// One channel's epoch, latest serial and stored frames.
#[derive(Debug)]
pub struct ChannelHistory {
    epoch: String,
    /// The serial of the last publication; 0 before the first.
    latest: u64,
    /// The window of the last publication (a plan change applies from the next one).
    window: Option<HistoryWindow>,
    entries: VecDeque<Entry>,
    /// Bytes of the stored frames.
    bytes: usize,
    /// `(serial, bytes)` of frames the window dropped since the last `take_removed`.
    removed: Vec<(u64, usize)>,
    /// The last publication or read, for forgetting idle channels.
    last_touched: Instant,
}

#[derive(Debug)]
struct Entry {
    serial: u64,
    at: Instant,
    frame: ByteString,
}

impl ChannelHistory {
    /// A history that starts now, in a new epoch, with nothing published yet.
    pub fn new(epoch: String, now: Instant) -> Self {
        Self {
            epoch,
            latest: 0,
            window: None,
            entries: VecDeque::new(),
            bytes: 0,
            removed: Vec::new(),
            last_touched: now,
        }
    }

    /// Bytes of the frames stored now.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// The `(serial, bytes)` of every frame the window dropped since the last call, oldest
    /// first.
    pub fn take_removed(&mut self) -> impl Iterator<Item = (u64, usize)> + '_ {
        self.removed.drain(..)
    }

    /// Whether the window dropped frames not yet taken with `take_removed`.
    pub fn has_removed(&self) -> bool {
        !self.removed.is_empty()
    }

    /// Drops every stored frame up to and including `serial` (the byte budget evicted them);
    /// they are not recorded as removed.
    pub fn evict_through(&mut self, serial: u64) {
        while let Some(entry) = self.entries.front()
            && entry.serial <= serial
        {
            self.bytes -= entry.frame.len();
            self.entries.pop_front();
        }
    }

    /// Drops every stored frame, recording each as removed (the channel is being forgotten).
    pub fn remove_all(&mut self) {
        while self.pop_oldest() {}
    }

    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The serial of the last publication (0 before the first).
    pub fn latest(&self) -> u64 {
        self.latest
    }

    /// Gives `frame` the next serial, stamps it, and keeps the stamped frame within `window`.
    /// Returns the serial and the stamped frame.
    pub fn append(
        &mut self,
        frame: &str,
        window: HistoryWindow,
        now: Instant,
    ) -> (u64, ByteString) {
        self.latest += 1;
        self.last_touched = now;
        self.window = Some(window);
        let stamped = stamp(frame, self.latest, &self.epoch);
        self.bytes += stamped.len();
        self.entries.push_back(Entry {
            serial: self.latest,
            at: now,
            frame: stamped.clone(),
        });
        self.trim(now);
        (self.latest, stamped)
    }

    /// The frames after `since` (all stored frames for `None`), or a gap when the client's
    /// `epoch` is another one, `since` is older than the oldest stored frame's predecessor,
    /// or `since` is a serial this epoch never reached.
    pub fn read(&mut self, since: Option<u64>, epoch: Option<&str>, now: Instant) -> History {
        self.trim(now);
        self.last_touched = now;
        let oldest_available = self.oldest_available();
        let gap = History::Gap {
            epoch: self.epoch.clone(),
            latest: self.latest,
            oldest_available,
        };
        if epoch.is_some_and(|epoch| epoch != self.epoch) {
            return gap;
        }
        let skip = match since {
            None => 0,
            Some(since) if since > self.latest || since.saturating_add(1) < oldest_available => {
                return gap;
            }
            // Serials are contiguous, so the frame after `since` is at this index.
            Some(since) => usize::try_from(since + 1 - oldest_available).unwrap_or(usize::MAX),
        };
        History::Replay {
            epoch: self.epoch.clone(),
            latest: self.latest,
            frames: self
                .entries
                .iter()
                .skip(skip)
                .map(|entry| (entry.serial, entry.frame.clone()))
                .collect(),
        }
    }

    /// Marks the channel as in use (a subscriber asked where it stands).
    pub fn touch(&mut self, now: Instant) {
        self.last_touched = now;
    }

    /// Whether nothing is left to replay and no one has used the channel for `idle`: then
    /// the whole history, epoch included, may be forgotten (a later resume gets a gap).
    pub fn is_forgettable(&mut self, now: Instant, idle: Duration) -> bool {
        self.trim(now);
        self.entries.is_empty() && now.saturating_duration_since(self.last_touched) >= idle
    }

    /// The serial of the oldest stored frame; the next serial when none is stored.
    fn oldest_available(&self) -> u64 {
        self.entries
            .front()
            .map_or(self.latest + 1, |entry| entry.serial)
    }

    fn trim(&mut self, now: Instant) {
        let Some(window) = self.window else {
            return;
        };
        while self.entries.len() > window.max_events {
            self.pop_oldest();
        }
        while self
            .entries
            .front()
            .is_some_and(|entry| now.saturating_duration_since(entry.at) >= window.max_age)
        {
            self.pop_oldest();
        }
    }

    /// Drops the oldest stored frame, recording it as removed; false when none is stored.
    fn pop_oldest(&mut self) -> bool {
        let Some(entry) = self.entries.pop_front() else {
            return false;
        };
        self.bytes -= entry.frame.len();
        self.removed.push((entry.serial, entry.frame.len()));
        true
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn window(max_events: usize, seconds: u64) -> HistoryWindow {
        HistoryWindow {
            max_events,
            max_age: Duration::from_secs(seconds),
            app_max_bytes: usize::MAX,
        }
    }

    #[test]
    fn stored_bytes_follow_appends_trims_and_evictions() {
        let now = Instant::now();
        let mut history = ChannelHistory::new("e".into(), now);
        let mut sizes = Vec::new();
        for n in 1..=4 {
            let (_, stamped) = history.append(&frame(n), window(3, 60), now);
            sizes.push(stamped.len());
        }
        assert_eq!(history.bytes(), sizes[1] + sizes[2] + sizes[3]);
        assert_eq!(history.take_removed().collect::<Vec<_>>(), [(1, sizes[0])]);
        history.evict_through(2);
        assert_eq!(history.bytes(), sizes[2] + sizes[3]);
        assert_eq!(
            history.take_removed().count(),
            0,
            "evictions are not recorded"
        );
        assert!(matches!(
            history.read(Some(1), None, now),
            History::Gap {
                oldest_available: 3,
                ..
            }
        ));
        history.remove_all();
        assert_eq!(history.bytes(), 0);
        assert_eq!(
            history.take_removed().collect::<Vec<_>>(),
            [(3, sizes[2]), (4, sizes[3])]
        );
    }

    fn frame(n: u64) -> String {
        format!(r#"{{"event":"e","channel":"c","data":"{n}"}}"#)
    }

    fn serials(history: &History) -> Vec<u64> {
        match history {
            History::Replay { frames, .. } => frames.iter().map(|(serial, _)| *serial).collect(),
            History::Gap { .. } => panic!("expected a replay, got {history:?}"),
        }
    }

    #[test]
    fn a_stamp_reads_back_without_a_parse() {
        let frame = stamp(
            r#"{"event":"e","channel":"c","data":"{\"serial\":1}"}"#,
            42,
            "k3x",
        );
        assert_eq!(read_stamp(&frame), Some((42, "k3x")));
        for unstamped in [r#"{"event":"e","data":"x"}"#, "", "}", r#"{"epoch":"a"}"#] {
            assert_eq!(read_stamp(unstamped), None, "{unstamped}");
        }
    }

    #[test]
    fn stamping_splices_serial_and_epoch_before_the_final_brace() {
        assert_eq!(
            &*stamp(r#"{"event":"e","data":"{}"}"#, 7, "ab12"),
            r#"{"event":"e","data":"{}","serial":7,"epoch":"ab12"}"#
        );
        assert_eq!(
            &*stamp("{}", 1, "e"),
            r#"{"serial":1,"epoch":"e"}"#,
            "an empty object gets no leading comma"
        );
        assert_eq!(
            &*stamp("not an object", 1, "e"),
            "not an object",
            "never corrupted"
        );
        let stamped = stamp(&frame(3), 3, "x");
        let parsed: serde_json::Value = serde_json::from_str(&stamped).unwrap();
        assert_eq!(parsed["serial"], 3);
        assert_eq!(parsed["epoch"], "x");
        assert_eq!(parsed["data"], "3");
    }

    #[test]
    fn the_window_keeps_the_newest_events_by_count_and_by_age() {
        let start = Instant::now();
        let mut history = ChannelHistory::new("e".into(), start);
        for n in 1..=5 {
            history.append(&frame(n), window(3, 60), start);
        }
        assert_eq!(serials(&history.read(None, None, start)), [3, 4, 5]);
        let later = start + Duration::from_secs(30);
        history.append(&frame(6), window(3, 60), later);
        let expired = start + Duration::from_secs(60);
        assert_eq!(serials(&history.read(None, None, expired)), [6]);
        assert!(matches!(
            history.read(Some(4), None, expired),
            History::Gap {
                oldest_available: 6,
                latest: 6,
                ..
            }
        ));
        assert_eq!(serials(&history.read(Some(5), None, expired)), [6]);
    }

    #[test]
    fn an_empty_window_still_assigns_serials_and_resumes_from_the_latest() {
        let now = Instant::now();
        let mut history = ChannelHistory::new("e".into(), now);
        let (serial, _) = history.append(&frame(1), window(0, 60), now);
        assert_eq!(serial, 1);
        assert_eq!(
            serials(&history.read(Some(1), Some("e"), now)),
            [] as [u64; 0]
        );
        assert!(matches!(
            history.read(Some(0), Some("e"), now),
            History::Gap {
                oldest_available: 2,
                ..
            }
        ));
    }

    #[test]
    fn another_epoch_or_a_future_serial_is_a_gap() {
        let now = Instant::now();
        let mut history = ChannelHistory::new("e1".into(), now);
        history.append(&frame(1), window(10, 60), now);
        assert!(matches!(
            history.read(Some(0), Some("e0"), now),
            History::Gap { .. }
        ));
        assert!(matches!(
            history.read(Some(2), Some("e1"), now),
            History::Gap { .. }
        ));
    }

    #[test]
    fn idle_channels_with_nothing_stored_may_be_forgotten() {
        let start = Instant::now();
        let mut history = ChannelHistory::new("e".into(), start);
        history.append(&frame(1), window(10, 60), start);
        let idle = Duration::from_secs(3600);
        assert!(!history.is_forgettable(start + Duration::from_secs(59), idle));
        assert!(!history.is_forgettable(start + Duration::from_secs(61), idle));
        assert!(history.is_forgettable(start + idle, idle));
    }

    proptest! {
        /// Whatever the window and wherever a client left off, a replay is exactly the frames
        /// it missed, in order, or an explicit gap when some of them are gone.
        #[test]
        fn a_replay_after_resume_equals_the_missed_suffix(
            events in 1u64..300,
            max_events in 0usize..120,
            seen in 0u64..300,
            steps_apart_ms in 0u64..2_000,
        ) {
            let start = Instant::now();
            let window = HistoryWindow { max_events, max_age: Duration::from_secs(60), app_max_bytes: usize::MAX };
            let mut history = ChannelHistory::new("e".into(), start);
            let mut published = Vec::new();
            for n in 1..=events {
                let at = start + Duration::from_millis(n * steps_apart_ms);
                let (serial, stamped) = history.append(&frame(n), window, at);
                prop_assert_eq!(serial, n, "serials are 1-based and increase by one");
                published.push((serial, stamped));
            }
            let now = start + Duration::from_millis(events * steps_apart_ms);
            let seen = seen.min(events);
            let missed: Vec<(u64, ByteString)> =
                published.iter().filter(|(serial, _)| *serial > seen).cloned().collect();
            match history.read(Some(seen), Some("e"), now) {
                History::Replay { frames, latest, .. } => {
                    prop_assert_eq!(latest, events);
                    prop_assert_eq!(frames, missed);
                }
                History::Gap { oldest_available, .. } => {
                    prop_assert!(oldest_available > seen + 1, "a gap only when a missed frame is gone");
                    let kept = published.iter().filter(|(serial, _)| *serial >= oldest_available).count();
                    prop_assert!(kept <= max_events);
                }
            }
        }
    }
}
