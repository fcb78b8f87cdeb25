//! The frames a session reads and writes besides the connection's own: the close event,
//! and what it notes from frames (requested channels, channel positions).

use std::borrow::Cow;
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
///
/// Every delivered frame passes here, so channel events are read without a parse: the
/// broker's stamp from the frame's end, the channel from the first `"channel":"` (a JSON
/// string cannot hold an unescaped quote, and channel names hold no quote or backslash).
/// Only `subscription_succeeded`, once per subscription, is parsed.
pub(super) fn note_position(
    channels: &mut BTreeMap<String, (String, u64)>,
    frame: &str,
    bound: usize,
) {
    const SUCCEEDED: &str = r#"{"event":"pusher_internal:subscription_succeeded""#;
    let Some(channel) = frame_channel_name(frame) else {
        return;
    };
    let (serial, epoch): (u64, Cow<'_, str>) = match broker::read_stamp(frame) {
        Some((serial, epoch)) => (serial, epoch.into()),
        None if frame.starts_with(SUCCEEDED) => match announced_position(frame) {
            Some((serial, epoch)) => (serial, epoch.into()),
            None => return,
        },
        None => return,
    };
    if let Some(known) = channels.get_mut(channel) {
        known.1 = serial;
        if known.0 != epoch {
            known.0 = epoch.into_owned();
        }
    } else if channels.len() < bound {
        channels.insert(channel.to_owned(), (epoch.into_owned(), serial));
    }
}

/// The value of a server frame's `channel` field, read from the text.
fn frame_channel_name(frame: &str) -> Option<&str> {
    const FIELD: &str = r#""channel":""#;
    let start = frame.find(FIELD)? + FIELD.len();
    let length = frame[start..].find('"')?;
    let name = &frame[start..start + length];
    (!name.contains('\\')).then_some(name)
}

/// The position a `subscription_succeeded` frame's data announces.
fn announced_position(frame: &str) -> Option<(u64, String)> {
    #[derive(serde::Deserialize)]
    struct Peek {
        data: Option<Value>,
    }
    let peek = serde_json::from_str::<Peek>(frame).ok()?;
    let data = match peek.data? {
        Value::String(text) => serde_json::from_str(&text).ok()?,
        other => other,
    };
    Some((data["serial"].as_u64()?, data["epoch"].as_str()?.to_owned()))
}
