//! The `client_frame` target: any text a client may send, through `wire::ClientFrame` and the
//! name parsers the session applies to its fields.

use serde_json::Value;

use crate::names::{
    ChannelKind, ChannelName, EventName, MAX_CHANNEL_NAME_LEN, MAX_USER_ID_LEN, SocketId, UserId,
};
use crate::wire::{self, ChannelPosition, ClientFrame, Member};

/// Parses `data` as a client frame and reads every field the session reads. Checks that what
/// is forwarded is valid JSON, that every parsed name keeps its rules, and that a channel event
/// built from the frame reads back as the same event, channel and data.
pub fn client_frame(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(frame) = ClientFrame::parse(text) else {
        return;
    };
    let forwarded = frame.data_as_string();
    match &frame.data {
        Value::String(original) => {
            assert_eq!(&forwarded, original, "strings are forwarded as sent")
        }
        _ => {
            serde_json::from_str::<Value>(&forwarded).expect("non-string data forwards as JSON");
        }
    }
    if let Some(object) = frame.data_object() {
        check_subscribe_fields(&object);
    }
    let event = EventName::parse(&frame.event);
    let channel = frame.channel.as_deref().map(ChannelName::parse);
    if let (Ok(event), Some(Ok(channel))) = (event, channel) {
        check_channel(&channel);
        check_channel_event_reads_back(&event, &channel, &forwarded);
    }
}

/// The fields of a subscribe or signin: channel, resume position, presence member, user id.
fn check_subscribe_fields(object: &serde_json::Map<String, Value>) {
    if let Some(Ok(channel)) = object
        .get("channel")
        .and_then(Value::as_str)
        .map(ChannelName::parse)
    {
        check_channel(&channel);
    }
    if let Some(position) = object.get("resume").and_then(ChannelPosition::from_json) {
        assert!(!position.epoch.is_empty(), "a resume epoch is never empty");
    }
    if let Some(member) = object
        .get("channel_data")
        .and_then(Value::as_str)
        .and_then(Member::from_channel_data)
    {
        assert!(!member.user_id.as_str().is_empty());
        let frame = wire::member_added("presence-fuzz", &member);
        serde_json::from_str::<Value>(&frame).expect("member_added is JSON");
    }
    if let Some(Ok(id)) = object.get("user_id").map(UserId::from_json) {
        assert!(!id.as_str().is_empty() && id.as_str().len() <= MAX_USER_ID_LEN);
    }
    if let Some(socket_id) = object.get("socket_id").and_then(Value::as_str)
        && let Ok(parsed) = SocketId::parse(socket_id)
    {
        assert_eq!(parsed.as_str(), socket_id);
        assert!(parsed.as_str().bytes().filter(|&b| b == b'.').count() == 1);
    }
}

/// A parsed channel name keeps the rules its parser promises, and its kind follows its prefix.
fn check_channel(channel: &ChannelName) {
    let name = channel.as_str();
    assert!(!name.is_empty() && name.len() <= MAX_CHANNEL_NAME_LEN);
    assert_eq!(ChannelName::parse(name).as_ref(), Ok(channel));
    let kind = channel.kind();
    assert_eq!(
        kind == ChannelKind::ServerToUser,
        channel.server_to_user_id().is_some()
    );
    assert_eq!(kind.requires_auth(), kind.allows_client_events());
    if kind == ChannelKind::Public {
        assert!(!name.starts_with("private-") && !name.starts_with("presence-"));
    }
}

/// A frame the server builds from a client's event, read back as a client frame, gives the
/// same event, channel and data byte for byte.
fn check_channel_event_reads_back(event: &EventName, channel: &ChannelName, data: &str) {
    let built = wire::channel_event(event.as_str(), channel.as_str(), data, Some("user"));
    let read = ClientFrame::parse(&built).expect("server frames parse");
    assert_eq!(read.event, event.as_str());
    assert_eq!(read.channel.as_deref(), Some(channel.as_str()));
    assert_eq!(read.data, Value::String(data.to_owned()));
    let error = wire::error(None, data);
    let error: Value = serde_json::from_str(&error).expect("error frames are JSON");
    assert_eq!(error["data"]["message"].as_str(), Some(data));
}
