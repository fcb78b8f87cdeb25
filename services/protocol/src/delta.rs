//! Delta updates, our extension for our SDK: a subscriber that asks for them
//! (`"delta": "fossil"` in `pusher:subscribe` data, which pusher-js never sends) may receive
//! a channel event as a fossil delta against the channel's previous event instead of in full.
//!
//! The delta frame is `{"event":"switchboard:delta","channel":C,"base":B,"name":N,
//! "user_id"?:U,"delta":"<base64>","serial":S,"epoch":E}`: applying the decoded fossil delta to the UTF-8
//! bytes of the `data` string of the event of serial `B` (as the subscriber received or
//! rebuilt it) gives the `data` of the event `N` of serial `S`. Fossil's format
//! carries the target's length and a checksum of it, so a client applying it to a wrong base
//! finds out rather than delivering a wrong event. Top-level `serial` and `epoch` keep a delta
//! frame's place in the channel's history readable without applying it (carrier cursors).
//!
//! Everything here is pure: which event is a base (`delta_against`), and which frame a
//! subscriber gets (`pick`). The edge computes a delta once per publication and lets each
//! subscriber's outbox pick.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The event name of a delta frame.
pub const DELTA_EVENT: &str = "switchboard:delta";

/// Events larger than this are never a base nor a delta target: computing a delta is linear
/// in both frames, and a node keeps one base per delta channel.
pub const MAX_DELTA_EVENT_BYTES: usize = 64 * 1024;

/// A delta encoding a client may ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaFormat {
    /// Fossil SCM's delta format (Centrifugo's and sockudo's clients speak it too).
    Fossil,
}

impl DeltaFormat {
    /// Reads the `delta` field of `pusher:subscribe` data: absent or null means full events;
    /// anything but a known format's name is an error (the client asked for something it will
    /// not get).
    pub fn from_subscribe_data(value: Option<&Value>) -> Result<Option<Self>, UnknownDeltaFormat> {
        match value {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(name)) if name == "fossil" => Ok(Some(Self::Fossil)),
            Some(_) => Err(UnknownDeltaFormat),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fossil => "fossil",
        }
    }
}

/// A subscribe asked for a delta format the server does not speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("delta must be \"fossil\" or absent")]
pub struct UnknownDeltaFormat;

/// A channel event's stamp, as the broker spliced it into the frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    pub serial: u64,
    pub epoch: String,
}

/// The parts of a stamped channel event frame a delta is made of: the delta applies to the
/// event's `data` string (what every carrier forwards exactly, whereas a frame's bytes may be
/// re-serialised on the way, as long polling does), and the delta frame names the rest.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ChannelEvent {
    pub event: String,
    pub data: String,
    #[serde(default)]
    pub user_id: Option<String>,
    pub serial: u64,
    pub epoch: String,
}

impl ChannelEvent {
    /// Reads a stamped channel event frame (`None` for an unstamped one, or one whose `data`
    /// is not a string).
    pub fn parse(frame: &str) -> Option<Self> {
        serde_json::from_str(frame).ok()
    }

    pub fn stamp(&self) -> Stamp {
        Stamp {
            serial: self.serial,
            epoch: self.epoch.clone(),
        }
    }
}

/// The previous event of a channel, kept as the base of the next one's delta.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Base {
    pub stamp: Stamp,
    pub data: String,
}

impl Base {
    /// Bytes the base holds.
    pub fn len(&self) -> usize {
        self.data.len() + self.stamp.epoch.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A publication's delta frame, computed once and shared by every subscriber that holds its
/// base.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delta<F> {
    /// The serial of the event the delta applies to.
    pub base: u64,
    pub frame: F,
}

/// The delta frame of `next` (whose complete frame is `full_len` bytes) against `previous`,
/// when there is one worth sending: only for the next serial of the same epoch (a gap in
/// serials means this node may not have the event before, so no delta until a new base),
/// within the size bound, and only when the delta frame is smaller than the full one.
pub fn delta_against(
    channel: &str,
    previous: Option<&Base>,
    next: &ChannelEvent,
    full_len: usize,
) -> Option<Delta<String>> {
    let previous = previous?;
    let consecutive = previous.stamp.epoch == next.epoch
        && previous.stamp.serial.checked_add(1) == Some(next.serial);
    let too_large =
        next.data.len() > MAX_DELTA_EVENT_BYTES || previous.data.len() > MAX_DELTA_EVENT_BYTES;
    if !consecutive || too_large {
        return None;
    }
    // The crate's argument order is (target, source).
    let delta = fossil_delta::delta(&next.data, &previous.data);
    let frame = DeltaFrame {
        event: DELTA_EVENT,
        channel,
        serial: next.serial,
        epoch: &next.epoch,
        base: previous.stamp.serial,
        name: &next.event,
        user_id: next.user_id.as_deref(),
        delta: &STANDARD.encode(delta),
    };
    let encoded = serde_json::to_string(&frame).expect("frames of strings always serialise");
    (encoded.len() < full_len).then_some(Delta {
        base: previous.stamp.serial,
        frame: encoded,
    })
}

#[derive(Serialize)]
struct DeltaFrame<'a> {
    event: &'a str,
    channel: &'a str,
    base: u64,
    /// The event's own name.
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
    delta: &'a str,
    // Last, in the broker's stamp order (`broker::read_stamp`): the carriers read a frame's
    // position from its end without parsing it.
    serial: u64,
    epoch: &'a str,
}

/// What one subscriber is sent of a publication.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    Full,
    Delta,
}

/// A delta only to a subscriber that asked for them and whose last frame of the channel
/// was the delta's base; a full event otherwise: the first event after a subscribe or a
/// resume (nothing delivered yet), after an event it did not get (a client event it sent
/// itself), or when the publication has no delta (a gap, too large, not smaller).
pub fn pick(wants_delta: bool, last_delivered: Option<u64>, delta_base: Option<u64>) -> Pick {
    match (wants_delta, last_delivered, delta_base) {
        (true, Some(last), Some(base)) if last == base => Pick::Delta,
        _ => Pick::Full,
    }
}

#[cfg(test)]
#[path = "delta_tests.rs"]
mod tests;
