//! Pusher protocol 7 frames: parsing what clients send and building what the server sends.
//!
//! Server frames always carry `data` as a JSON string (pusher-js tolerates objects, stricter
//! clients do not), except `pusher:error`, whose `data` Pusher sends as an object.
//!
//! Our extensions are extra fields pusher-js ignores: channel events carry top-level
//! `"serial"` and `"epoch"` (spliced in by the broker), `subscription_succeeded` data carries
//! the channel's `epoch` and the subscriber's `serial`, a subscribe may carry `"resume"`, and
//! `switchboard:resume_failed` says when a resume cannot be honoured.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::names::UserId;

/// A frame from a client, before its event is interpreted.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct ClientFrame {
    pub event: String,
    #[serde(default)]
    pub channel: Option<String>,
    #[serde(default)]
    pub data: Value,
    /// Our extension: a client event on a presence channel addressed to one member's user id
    /// (pusher-js never sends it).
    #[serde(default)]
    pub to: Option<Value>,
}

impl ClientFrame {
    pub fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// `data` as an object: pusher-js sends one, some clients send it JSON-encoded in a string.
    pub fn data_object(&self) -> Option<serde_json::Map<String, Value>> {
        match &self.data {
            Value::Object(map) => Some(map.clone()),
            Value::String(text) => match serde_json::from_str(text) {
                Ok(Value::Object(map)) => Some(map),
                _ => None,
            },
            _ => None,
        }
    }

    /// `data` as the string to forward: strings unchanged, anything else JSON-encoded.
    pub fn data_as_string(&self) -> String {
        match &self.data {
            Value::String(text) => text.clone(),
            other => other.to_string(),
        }
    }
}

/// A place in a channel's history: its epoch and a serial in it. A client names the last one
/// it saw to resume (`"resume": {"serial": N, "epoch": "E"}` in `pusher:subscribe` data); the
/// server tells a subscriber where it stands in `subscription_succeeded`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelPosition {
    pub epoch: String,
    pub serial: u64,
}

impl ChannelPosition {
    /// Reads `{"serial": non-negative integer, "epoch": non-empty string}`.
    pub fn from_json(value: &Value) -> Option<Self> {
        let serial = value.get("serial")?.as_u64()?;
        let epoch = value
            .get("epoch")?
            .as_str()
            .filter(|epoch| !epoch.is_empty())?;
        Some(Self {
            epoch: epoch.to_owned(),
            serial,
        })
    }
}

/// Why a resume was not honoured, as `resume_failed` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeFailure {
    /// The channel's history started anew (the client's epoch is not the channel's).
    EpochChanged,
    /// Some missed events are no longer kept (outside the plan's window).
    OutsideWindow,
    /// More missed events than the connection may be sent at once: read them through the
    /// history API.
    TooManyToReplay,
    /// The history could not be read.
    Unavailable,
}

impl ResumeFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::EpochChanged => "epoch_changed",
            Self::OutsideWindow => "outside_window",
            Self::TooManyToReplay => "too_many_to_replay",
            Self::Unavailable => "unavailable",
        }
    }
}

#[derive(Serialize)]
struct ServerFrame<'a> {
    event: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    data: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user_id: Option<&'a str>,
}

/// An event on a channel, as every subscriber receives it. `data` is forwarded byte for byte.
pub fn channel_event(event: &str, channel: &str, data: &str, user_id: Option<&str>) -> String {
    let frame = ServerFrame {
        event,
        channel: Some(channel),
        data,
        user_id,
    };
    serde_json::to_string(&frame).expect("frames of strings always serialise")
}

/// The first bytes of every addressed frame: the recipient comes first, so the edge reads it
/// without parsing the frame (`addressee`) and stamping a serial (appended) keeps it.
const ADDRESSED_PREFIX: &str = "{\"to\":";

#[derive(Serialize)]
struct AddressedFrame<'a> {
    to: &'a str,
    #[serde(flatten)]
    frame: ServerFrame<'a>,
}

/// A client event addressed to one presence member (`to`, a user id): only that member's
/// connections receive it, live or replayed. The recipient is the frame's first field.
pub fn addressed_channel_event(
    to: &str,
    event: &str,
    channel: &str,
    data: &str,
    user_id: Option<&str>,
) -> String {
    let frame = AddressedFrame {
        to,
        frame: ServerFrame {
            event,
            channel: Some(channel),
            data,
            user_id,
        },
    };
    serde_json::to_string(&frame).expect("frames of strings always serialise")
}

/// The user id a frame is addressed to (`addressed_channel_event`), `None` for a frame every
/// subscriber gets. Reads only the leading `{"to":"…"` of frames the edge built.
pub fn addressee(frame: &str) -> Option<String> {
    let rest = frame.strip_prefix(ADDRESSED_PREFIX)?;
    let mut values = serde_json::Deserializer::from_str(rest).into_iter::<String>();
    values.next()?.ok()
}

fn internal(event: &str, channel: Option<&str>, data: &Value) -> String {
    let data = data.to_string();
    let frame = ServerFrame {
        event,
        channel,
        data: &data,
        user_id: None,
    };
    serde_json::to_string(&frame).expect("frames of strings always serialise")
}

pub fn connection_established(socket_id: &str, activity_timeout_secs: u64) -> String {
    let data = json!({ "socket_id": socket_id, "activity_timeout": activity_timeout_secs });
    internal("pusher:connection_established", None, &data)
}

pub fn ping() -> String {
    internal("pusher:ping", None, &json!({}))
}

pub fn pong() -> String {
    internal("pusher:pong", None, &json!({}))
}

/// The most bytes of client input an error message repeats.
pub const MAX_ECHOED_INPUT_BYTES: usize = 200;

/// Client input as an error message may show it: at most `MAX_ECHOED_INPUT_BYTES` (cut on a
/// character boundary, `…` marking the cut), as a JSON string literal, never `Debug`-escaped.
/// An error frame thereby stays small whatever the client sent.
pub fn echo(input: &str) -> String {
    let mut end = input.len().min(MAX_ECHOED_INPUT_BYTES);
    while !input.is_char_boundary(end) {
        end -= 1;
    }
    let mut shown = input[..end].to_owned();
    if end < input.len() {
        shown.push('…');
    }
    serde_json::to_string(&shown).expect("strings always serialise")
}

/// `pusher:error`; `code` is `None` for the non-fatal errors Pusher sends with `code: null`.
pub fn error(code: Option<u16>, message: &str) -> String {
    json!({ "event": "pusher:error", "data": { "code": code, "message": message } }).to_string()
}

/// One member of a presence channel: the user and the info the app signed for them.
#[derive(Debug, Clone, PartialEq)]
pub struct Member {
    pub user_id: UserId,
    /// Always an object (`{}` when the app gave none), never `null` or `true`.
    pub user_info: Value,
}

impl Member {
    /// Reads presence `channel_data`: `{"user_id": string|int, "user_info"?: any}`.
    pub fn from_channel_data(channel_data: &str) -> Option<Self> {
        let Value::Object(mut fields) = serde_json::from_str(channel_data).ok()? else {
            return None;
        };
        let user_id = UserId::from_json(fields.get("user_id")?).ok()?;
        let user_info = match fields.remove("user_info") {
            None | Some(Value::Null) => json!({}),
            Some(info) => info,
        };
        Some(Self { user_id, user_info })
    }
}

/// Adds the subscriber's place in the channel's history to `subscription_succeeded` data:
/// every event with a serial above `serial` in `epoch` follows, in order.
fn with_position(mut data: Value, position: Option<&ChannelPosition>) -> Value {
    if let (Some(position), Value::Object(fields)) = (position, &mut data) {
        fields.insert("epoch".into(), json!(position.epoch));
        fields.insert("serial".into(), json!(position.serial));
    }
    data
}

/// `subscription_succeeded`, with `{"epoch", "serial"}` when the history could be read.
pub fn subscription_succeeded(channel: &str, position: Option<&ChannelPosition>) -> String {
    internal(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &with_position(json!({}), position),
    )
}

/// `subscription_succeeded` for a presence channel: distinct `ids`, `hash` of id → info,
/// and `count` of distinct users (and the position, as for other channels).
pub fn presence_subscription_succeeded(
    channel: &str,
    members: &[Member],
    position: Option<&ChannelPosition>,
) -> String {
    presence_subscription_succeeded_with(channel, members, position, None)
}

/// As `presence_subscription_succeeded`, with the app's `ice_servers` (an `RTCIceServer`
/// list, our extension for WebRTC; pusher-js ignores the field) when it has any.
pub fn presence_subscription_succeeded_with(
    channel: &str,
    members: &[Member],
    position: Option<&ChannelPosition>,
    ice_servers: Option<Value>,
) -> String {
    let ids: Vec<&str> = members.iter().map(|m| m.user_id.as_str()).collect();
    let hash: serde_json::Map<String, Value> = members
        .iter()
        .map(|m| (m.user_id.to_string(), m.user_info.clone()))
        .collect();
    let mut data = json!({ "presence": { "ids": ids, "hash": hash, "count": members.len() } });
    if let Some(ice_servers) = ice_servers {
        data["ice_servers"] = ice_servers;
    }
    let data = with_position(data, position);
    internal(
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &data,
    )
}

/// `switchboard:resume_failed`: the missed events cannot be replayed; the subscription goes on
/// live from the position `subscription_succeeded` gave. `oldest_available` is the oldest
/// serial still kept (the history API can read from there).
pub fn resume_failed(
    channel: &str,
    epoch: Option<&str>,
    oldest_available: Option<u64>,
    reason: ResumeFailure,
) -> String {
    let data = json!({
        "epoch": epoch,
        "oldest_available": oldest_available,
        "reason": reason.as_str(),
    });
    internal("switchboard:resume_failed", Some(channel), &data)
}

pub fn member_added(channel: &str, member: &Member) -> String {
    let data = json!({ "user_id": member.user_id.as_str(), "user_info": member.user_info });
    internal("pusher_internal:member_added", Some(channel), &data)
}

pub fn member_removed(channel: &str, user_id: &UserId) -> String {
    internal(
        "pusher_internal:member_removed",
        Some(channel),
        &json!({ "user_id": user_id.as_str() }),
    )
}

/// The channel-level error soketi and sockudo send, in the shape pusher-js uses for its own
/// auth failures, so apps can bind one handler for both.
pub fn subscription_error(channel: &str, error_type: &str, error: &str, status: u16) -> String {
    let data = json!({ "type": error_type, "error": error, "status": status });
    internal("pusher:subscription_error", Some(channel), &data)
}

pub fn signin_success(user_data: &str) -> String {
    internal(
        "pusher:signin_success",
        None,
        &json!({ "user_data": user_data }),
    )
}

/// Whether a watched user came online (their first signed-in connection) or went offline
/// (their last one closed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnlineStatus {
    Online,
    Offline,
}

impl OnlineStatus {
    /// The event name pusher-js emits on `pusher.user.watchlist`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Offline => "offline",
        }
    }
}

/// `pusher_internal:watchlist_events`: `{"events":[{"name":"online","user_ids":[…]},…]}`, as
/// pusher-js's `watchlist.ts` reads it (one emit per element, by `name`).
pub fn watchlist_events(events: &[(OnlineStatus, &[UserId])]) -> String {
    let events: Vec<Value> = events
        .iter()
        .map(|(status, users)| {
            let user_ids: Vec<&str> = users.iter().map(UserId::as_str).collect();
            json!({ "name": status.as_str(), "user_ids": user_ids })
        })
        .collect();
    internal(
        "pusher_internal:watchlist_events",
        None,
        &json!({ "events": events }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watchlist_events_double_encode_their_data() {
        let online = [UserId::parse("b").unwrap()];
        let offline = [UserId::parse("c").unwrap(), UserId::parse("d").unwrap()];
        assert_eq!(
            watchlist_events(&[
                (OnlineStatus::Online, &online),
                (OnlineStatus::Offline, &offline)
            ]),
            r#"{"event":"pusher_internal:watchlist_events","data":"{\"events\":[{\"name\":\"online\",\"user_ids\":[\"b\"]},{\"name\":\"offline\",\"user_ids\":[\"c\",\"d\"]}]}"}"#
        );
    }

    #[test]
    fn connection_established_double_encodes_data() {
        assert_eq!(
            connection_established("1.2", 120),
            r#"{"event":"pusher:connection_established","data":"{\"activity_timeout\":120,\"socket_id\":\"1.2\"}"}"#
        );
    }

    #[test]
    fn channel_event_forwards_data_verbatim() {
        assert_eq!(
            channel_event("e", "c", r#"{"a":1}"#, None),
            r#"{"event":"e","channel":"c","data":"{\"a\":1}"}"#
        );
        assert_eq!(
            channel_event("client-x", "presence-c", "hi", Some("7")),
            r#"{"event":"client-x","channel":"presence-c","data":"hi","user_id":"7"}"#
        );
    }

    #[test]
    fn presence_payload_has_ids_array_hash_of_objects_and_count() {
        let members = vec![
            Member::from_channel_data(r#"{"user_id":10,"user_info":{"name":"a"}}"#).unwrap(),
            Member::from_channel_data(r#"{"user_id":"u2"}"#).unwrap(),
        ];
        let frame: Value = serde_json::from_str(&presence_subscription_succeeded(
            "presence-r",
            &members,
            None,
        ))
        .unwrap();
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            json!({"presence":{"ids":["10","u2"],"hash":{"10":{"name":"a"},"u2":{}},"count":2}})
        );
    }

    #[test]
    fn subscription_succeeded_carries_the_position_beside_what_pusher_js_reads() {
        let position = ChannelPosition {
            epoch: "e1".into(),
            serial: 7,
        };
        assert_eq!(
            subscription_succeeded("c", Some(&position)),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{\"epoch\":\"e1\",\"serial\":7}"}"#
        );
        assert_eq!(
            subscription_succeeded("c", None),
            r#"{"event":"pusher_internal:subscription_succeeded","channel":"c","data":"{}"}"#
        );
        let presence = presence_subscription_succeeded("presence-r", &[], Some(&position));
        let frame: Value = serde_json::from_str(&presence).unwrap();
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["presence"]["count"], 0);
        assert_eq!(data["serial"], 7);
    }

    #[test]
    fn resume_failed_names_the_epoch_the_oldest_serial_and_why() {
        let frame: Value = serde_json::from_str(&resume_failed(
            "c",
            Some("e2"),
            Some(40),
            ResumeFailure::OutsideWindow,
        ))
        .unwrap();
        assert_eq!(frame["event"], "switchboard:resume_failed");
        assert_eq!(frame["channel"], "c");
        let data: Value = serde_json::from_str(frame["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            json!({"epoch":"e2","oldest_available":40,"reason":"outside_window"})
        );
    }

    #[test]
    fn a_resume_needs_an_integer_serial_and_an_epoch() {
        assert_eq!(
            ChannelPosition::from_json(&json!({"serial": 3, "epoch": "e"})),
            Some(ChannelPosition {
                epoch: "e".into(),
                serial: 3
            })
        );
        for bad in [
            json!({"serial": "3", "epoch": "e"}),
            json!({"serial": -1, "epoch": "e"}),
            json!({"serial": 3}),
            json!({"serial": 3, "epoch": ""}),
            json!("3"),
        ] {
            assert_eq!(ChannelPosition::from_json(&bad), None, "{bad}");
        }
    }

    #[test]
    fn client_data_is_accepted_as_object_or_string() {
        let object =
            ClientFrame::parse(r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#).unwrap();
        let string =
            ClientFrame::parse(r#"{"event":"pusher:subscribe","data":"{\"channel\":\"a\"}"}"#)
                .unwrap();
        assert_eq!(object.data_object(), string.data_object());
        assert!(ClientFrame::parse("{").is_err());
        assert!(ClientFrame::parse(r#"{"channel":"a"}"#).is_err());
    }

    #[test]
    fn echoed_input_is_cut_on_a_character_boundary_and_json_quoted() {
        assert_eq!(echo("a\"b"), r#""a\"b""#);
        assert_eq!(echo("\u{0}"), r#""\u0000""#);
        let long = "é".repeat(MAX_ECHOED_INPUT_BYTES);
        let shown: String = serde_json::from_str(&echo(&long)).unwrap();
        assert_eq!(
            shown,
            format!("{}…", "é".repeat(MAX_ECHOED_INPUT_BYTES / 2))
        );
        let odd = format!("x{long}");
        let shown: String = serde_json::from_str(&echo(&odd)).unwrap();
        assert!(
            shown.len() <= MAX_ECHOED_INPUT_BYTES + '…'.len_utf8(),
            "{}",
            shown.len()
        );
    }

    #[test]
    fn member_rejects_missing_or_bad_user_id() {
        assert!(Member::from_channel_data(r#"{"user_info":{}}"#).is_none());
        assert!(Member::from_channel_data(r#"{"user_id":true}"#).is_none());
        assert!(Member::from_channel_data("not json").is_none());
    }
}
