//! The frames a session reads and writes besides the connection's own: the close event,
//! and what it notes from frames (requested channels, channel positions).

use std::collections::BTreeMap;

use bytestring::ByteString;
use protocol::codes::CloseReason;
use protocol::names::ChannelName;
use serde_json::{Value, json};

use super::CLOSED_EVENT;
use crate::link::closing_frames;
use crate::outbox::Outgoing;

pub(super) fn closed_event(code: u16, reason: &str) -> ByteString {
    json!({"event": CLOSED_EVENT, "data": {"code": code, "reason": reason}})
        .to_string()
        .into()
}

/// A refusal as a carrier sends it: the `pusher:error`, then `switchboard:closed`.
pub(crate) fn closing_events(reason: CloseReason) -> Vec<ByteString> {
    closing_frames(reason)
        .into_iter()
        .filter_map(|item| match item {
            Outgoing::Text(frame) => Some(frame),
            Outgoing::Close { code, reason } => Some(closed_event(code, &reason)),
            Outgoing::Pong(_) => None,
        })
        .collect()
}

/// The channel of a subscribe or unsubscribe frame (`data` an object or a JSON string), if
/// it is a valid name.
pub(super) fn frame_channel(frame: &Value) -> Option<ChannelName> {
    let data = match &frame["data"] {
        Value::String(text) => serde_json::from_str(text).ok()?,
        other => other.clone(),
    };
    ChannelName::parse(data["channel"].as_str()?).ok()
}

/// Updates the channel positions from a frame: a channel event's serial and epoch, or the
/// position `subscription_succeeded` announces. At most `bound` channels are kept.
pub(super) fn note_position(
    channels: &mut BTreeMap<String, (String, u64)>,
    frame: &str,
    bound: usize,
) {
    #[derive(serde::Deserialize)]
    struct Peek {
        event: String,
        channel: Option<String>,
        serial: Option<u64>,
        epoch: Option<String>,
        data: Option<Value>,
    }
    let Ok(peek) = serde_json::from_str::<Peek>(frame) else {
        return;
    };
    let Some(channel) = peek.channel else {
        return;
    };
    let position = if let (Some(serial), Some(epoch)) = (peek.serial, peek.epoch) {
        Some((epoch, serial))
    } else if peek.event == "pusher_internal:subscription_succeeded" {
        let data = match peek.data {
            Some(Value::String(text)) => serde_json::from_str(&text).unwrap_or(Value::Null),
            Some(other) => other,
            None => Value::Null,
        };
        match (data["serial"].as_u64(), data["epoch"].as_str()) {
            (Some(serial), Some(epoch)) => Some((epoch.to_owned(), serial)),
            _ => None,
        }
    } else {
        None
    };
    if let Some(position) = position
        && (channels.len() < bound || channels.contains_key(&channel))
    {
        channels.insert(channel, position);
    }
}
