//! The state machine driven frame by frame, with no socket and a hand-moved clock.

use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::codes::CloseReason;
use crate::names::{AppKey, ChannelName, SocketId};
use crate::session::{Credentials, Output, Session, SessionConfig};
use crate::sign::{channel_auth_string, hmac_hex};
use crate::wire::ChannelPosition;

pub(crate) const KEY: &str = "app-key";
pub(crate) const SECRET: &str = "app-secret";
pub(crate) const SOCKET: &str = "1234.1234";

pub(crate) fn session(now: Instant) -> Session {
    let credentials = Credentials {
        key: AppKey::parse(KEY).unwrap(),
        secret: SECRET.into(),
    };
    let (session, established) = Session::new(
        SocketId::parse(SOCKET).unwrap(),
        credentials,
        SessionConfig::pusher_defaults(),
        now,
    );
    assert!(established.contains(r#"\"socket_id\":\"1234.1234\""#));
    session
}

pub(crate) fn auth_for(channel: &str, channel_data: Option<&str>) -> String {
    format!(
        "{KEY}:{}",
        hmac_hex(SECRET, &channel_auth_string(SOCKET, channel, channel_data))
    )
}

pub(crate) fn send(session: &mut Session, frame: Value) -> Vec<Output> {
    session.on_text(&frame.to_string(), Instant::now())
}

/// The single frame sent, parsed, for outputs that should be exactly one `Send`.
pub(crate) fn only_sent(outputs: &[Output]) -> Vec<Value> {
    outputs
        .iter()
        .map(|output| match output {
            Output::Send(text) => serde_json::from_str(text).unwrap(),
            other => panic!("expected only sends, got {other:?}"),
        })
        .collect()
}

pub(crate) fn subscribe(channel: &str, auth: &str, channel_data: Option<&str>) -> Value {
    let mut data = json!({ "channel": channel, "auth": auth });
    if let Some(channel_data) = channel_data {
        data["channel_data"] = json!(channel_data);
    }
    json!({ "event": "pusher:subscribe", "data": data })
}

#[test]
fn public_subscribe_needs_no_auth_and_is_confirmed_after_registration() {
    let mut session = session(Instant::now());
    let outputs = send(&mut session, subscribe("news", "", None));
    assert_eq!(
        outputs,
        [Output::Subscribe {
            channel: ChannelName::parse("news").unwrap(),
            member: None,
            resume: None,
            delta: None,
        }]
    );
    assert!(session.is_subscribed(&ChannelName::parse("news").unwrap()));
}

#[test]
fn private_subscribe_checks_the_signature() {
    let mut session = session(Instant::now());
    let good = send(
        &mut session,
        subscribe("private-a", &auth_for("private-a", None), None),
    );
    assert!(matches!(
        good.as_slice(),
        [Output::Subscribe { member: None, .. }]
    ));

    let bad = only_sent(&send(
        &mut session,
        subscribe("private-b", &auth_for("private-a", None), None),
    ));
    assert_eq!(bad[0]["event"], "pusher:error");
    assert_eq!(bad[1]["event"], "pusher:subscription_error");
    assert_eq!(bad[1]["channel"], "private-b");
    let data: Value = serde_json::from_str(bad[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data["status"], 401);
    assert!(!session.is_subscribed(&ChannelName::parse("private-b").unwrap()));
}

#[test]
fn private_signature_may_include_channel_data() {
    let mut session = session(Instant::now());
    let data = r#"{"user_id":"1"}"#;
    let outputs = send(
        &mut session,
        subscribe("private-a", &auth_for("private-a", Some(data)), Some(data)),
    );
    assert!(matches!(
        outputs.as_slice(),
        [Output::Subscribe { member: None, .. }]
    ));
}

#[test]
fn presence_subscribe_yields_the_member_signed_for() {
    let mut session = session(Instant::now());
    let data = r#"{"user_id":10,"user_info":{"name":"Ann"}}"#;
    let outputs = send(
        &mut session,
        subscribe(
            "presence-r",
            &auth_for("presence-r", Some(data)),
            Some(data),
        ),
    );
    let [
        Output::Subscribe {
            member: Some(member),
            ..
        },
    ] = outputs.as_slice()
    else {
        panic!("{outputs:?}");
    };
    assert_eq!(member.user_id.as_str(), "10");
    assert_eq!(member.user_info, json!({"name":"Ann"}));
    let unsubscribe = send(
        &mut session,
        json!({"event":"pusher:unsubscribe","data":{"channel":"presence-r"}}),
    );
    assert!(
        matches!(unsubscribe.as_slice(), [Output::Unsubscribe { member: Some(user), .. }] if user.as_str() == "10")
    );
}

#[test]
fn bad_input_gets_an_error_frame_and_keeps_the_connection() {
    let mut session = session(Instant::now());
    for frame in [
        "{",
        "[]",
        r#"{"event":"pusher:subscribe","data":{}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":"bad name"}}"#,
        r#"{"event":"pusher:subscribe","data":{"channel":""}}"#,
    ] {
        let sent = only_sent(&session.on_text(frame, Instant::now()));
        assert_eq!(sent.len(), 1, "{frame}");
        assert_eq!(sent[0]["event"], "pusher:error", "{frame}");
        assert!(sent[0]["data"]["message"].as_str().unwrap().len() > 5);
    }
}

#[test]
fn client_events_only_on_subscribed_private_or_presence_channels() {
    let mut session = session(Instant::now());
    send(&mut session, subscribe("news", "", None));
    send(
        &mut session,
        subscribe("private-a", &auth_for("private-a", None), None),
    );
    let event = |channel: &str| json!({"event":"client-typing","channel":channel,"data":{"x":1}});

    let public = only_sent(&send(&mut session, event("news")));
    assert!(
        public[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("private and presence")
    );
    let unsubscribed = only_sent(&send(&mut session, event("private-b")));
    assert!(
        unsubscribed[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not subscribed")
    );
    let wrong_prefix = only_sent(&send(
        &mut session,
        json!({"event":"typing","channel":"private-a","data":{}}),
    ));
    assert_eq!(wrong_prefix[0]["event"], "pusher:error");
    assert!(
        send(
            &mut session,
            json!({"event":"pusher_internal:member_added","channel":"private-a","data":{}})
        )
        .is_empty()
    );

    let ok = send(&mut session, event("private-a"));
    let [Output::ClientEvent { frame, .. }] = ok.as_slice() else {
        panic!("{ok:?}")
    };
    assert_eq!(
        frame,
        r#"{"event":"client-typing","channel":"private-a","data":"{\"x\":1}"}"#
    );
}

#[test]
fn a_refused_presence_subscription_leaves_no_channel_behind() {
    let now = Instant::now();
    let credentials = Credentials {
        key: AppKey::parse(KEY).unwrap(),
        secret: SECRET.into(),
    };
    let config = SessionConfig {
        max_channels: 1,
        ..SessionConfig::pusher_defaults()
    };
    let (mut session, _) = Session::new(SocketId::parse(SOCKET).unwrap(), credentials, config, now);
    let data = r#"{"user_id":"u3"}"#;
    let full = "presence-full";
    let outputs = send(
        &mut session,
        subscribe(full, &auth_for(full, Some(data)), Some(data)),
    );
    assert!(matches!(
        outputs.as_slice(),
        [Output::Subscribe {
            member: Some(_),
            ..
        }]
    ));
    // The edge's presence join says the channel is full.
    let channel = ChannelName::parse(full).unwrap();
    session.subscription_refused(&channel);

    assert!(!session.is_subscribed(&channel));
    assert_eq!(session.subscriptions().count(), 0);
    let event = json!({"event":"client-hi","channel":full,"data":"yo"});
    let refused = only_sent(&send(&mut session, event));
    assert!(
        refused[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("not subscribed"),
        "{refused:?}"
    );
    assert!(
        matches!(
            send(&mut session, subscribe("news", "", None)).as_slice(),
            [Output::Subscribe { .. }]
        ),
        "the refused channel takes no slot of the channel limit"
    );
    assert!(session.on_closed().iter().all(
        |output| matches!(output, Output::Unsubscribe { channel, .. } if channel.as_str() == "news")
    ));
}

#[test]
fn error_frames_repeat_at_most_a_short_quoted_excerpt_of_the_input() {
    let mut session = session(Instant::now());
    // Every byte of this name would be escaped several times over if it were echoed whole.
    let name = "\u{1}\"".repeat(20_000);
    let sent = only_sent(&send(&mut session, subscribe(&name, "", None)));
    let message = sent[0]["data"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Invalid channel name \"\\u0001\\\""),
        "{message}"
    );
    // JSON escaping makes a byte at most six: the excerpt is bounded, however long the name.
    assert!(
        message.len() < 7 * crate::wire::MAX_ECHOED_INPUT_BYTES,
        "{}",
        message.len()
    );

    let auth = format!("{}:00", "k".repeat(50_000));
    let sent = only_sent(&send(&mut session, subscribe("private-a", &auth, None)));
    assert!(
        sent.iter().all(|frame| frame.to_string().len() < 1_000),
        "{sent:?}"
    );
    let data = "\"".repeat(50_000);
    let presence = subscribe("presence-a", &format!("{KEY}:00"), Some(&data));
    let sent = only_sent(&send(&mut session, presence));
    assert!(
        sent.iter().all(|frame| frame.to_string().len() < 2_000),
        "{sent:?}"
    );
}

#[test]
fn oversize_client_event_is_refused() {
    let mut session = session(Instant::now());
    send(
        &mut session,
        subscribe("private-a", &auth_for("private-a", None), None),
    );
    let big = "x".repeat(10 * 1024 + 1);
    let sent = only_sent(&send(
        &mut session,
        json!({"event":"client-x","channel":"private-a","data":big}),
    ));
    assert!(
        sent[0]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("10240")
    );
    let fits = "x".repeat(10 * 1024);
    assert!(matches!(
        send(
            &mut session,
            json!({"event":"client-x","channel":"private-a","data":fits})
        )
        .as_slice(),
        [Output::ClientEvent { .. }]
    ));
}

#[test]
fn presence_client_events_carry_the_sender_user_id() {
    let mut session = session(Instant::now());
    let data = r#"{"user_id":"u1"}"#;
    send(
        &mut session,
        subscribe(
            "presence-r",
            &auth_for("presence-r", Some(data)),
            Some(data),
        ),
    );
    let out = send(
        &mut session,
        json!({"event":"client-hi","channel":"presence-r","data":"yo"}),
    );
    let [Output::ClientEvent { frame, .. }] = out.as_slice() else {
        panic!()
    };
    assert!(frame.ends_with(r#""user_id":"u1"}"#), "{frame}");
}

#[test]
fn ping_gets_pong_and_silence_gets_ping_then_close() {
    let start = Instant::now();
    let mut session = session(start);
    let pong = only_sent(&session.on_text(r#"{"event":"pusher:ping","data":{}}"#, start));
    assert_eq!(pong[0]["event"], "pusher:pong");

    assert_eq!(session.on_tick(start + Duration::from_secs(119)), None);
    assert_eq!(session.next_deadline(), start + Duration::from_secs(120));
    let ping = session.on_tick(start + Duration::from_secs(120));
    assert!(matches!(&ping, Some(Output::Send(frame)) if frame.contains("pusher:ping")));
    assert_eq!(session.next_deadline(), start + Duration::from_secs(150));
    assert_eq!(session.on_tick(start + Duration::from_secs(149)), None);
    assert_eq!(
        session.on_tick(start + Duration::from_secs(150)),
        Some(Output::Close(CloseReason::PongTimeout))
    );
}

#[test]
fn an_answered_ping_keeps_the_connection() {
    let start = Instant::now();
    let mut session = session(start);
    session.on_tick(start + Duration::from_secs(120));
    session.on_text(
        r#"{"event":"pusher:pong","data":{}}"#,
        start + Duration::from_secs(125),
    );
    assert_eq!(session.on_tick(start + Duration::from_secs(150)), None);
    assert_eq!(session.next_deadline(), start + Duration::from_secs(245));
}

#[test]
fn closing_unsubscribes_everything() {
    let mut session = session(Instant::now());
    send(&mut session, subscribe("a", "", None));
    send(&mut session, subscribe("b", "", None));
    let mut channels: Vec<String> = session
        .on_closed()
        .into_iter()
        .map(|o| match o {
            Output::Unsubscribe { channel, .. } => channel.to_string(),
            other => panic!("{other:?}"),
        })
        .collect();
    channels.sort();
    assert_eq!(channels, ["a", "b"]);
    assert_eq!(session.subscriptions().count(), 0);
}

#[test]
fn subscriptions_stop_at_the_channel_limit_and_the_limit_can_change() {
    let now = Instant::now();
    let credentials = Credentials {
        key: AppKey::parse(KEY).unwrap(),
        secret: SECRET.into(),
    };
    let config = SessionConfig {
        max_channels: 2,
        ..SessionConfig::pusher_defaults()
    };
    let (mut session, _) = Session::new(SocketId::parse(SOCKET).unwrap(), credentials, config, now);
    assert!(matches!(
        send(&mut session, subscribe("a", "", None)).as_slice(),
        [Output::Subscribe { .. }]
    ));
    assert!(matches!(
        send(&mut session, subscribe("b", "", None)).as_slice(),
        [Output::Subscribe { .. }]
    ));
    assert!(
        matches!(
            send(&mut session, subscribe("a", "", None)).as_slice(),
            [Output::Subscribe { .. }]
        ),
        "re-subscribing is not a new channel"
    );
    let refused = only_sent(&send(&mut session, subscribe("c", "", None)));
    assert_eq!(refused[1]["event"], "pusher:subscription_error");
    assert_eq!(data_of(&refused[1])["type"], "LimitReached");
    assert_eq!(data_of(&refused[1])["status"], 4100);
    session.set_limits(10 * 1024, 3);
    assert!(matches!(
        send(&mut session, subscribe("c", "", None)).as_slice(),
        [Output::Subscribe { .. }]
    ));
}

fn data_of(frame: &Value) -> Value {
    serde_json::from_str(frame["data"].as_str().unwrap()).unwrap()
}

#[test]
fn a_resume_on_subscribe_travels_with_the_subscription() {
    let mut session = session(Instant::now());
    let mut frame = subscribe("news", "", None);
    frame["data"]["resume"] = json!({"serial": 41, "epoch": "e1"});
    let expected = Output::Subscribe {
        channel: ChannelName::parse("news").unwrap(),
        member: None,
        resume: Some(ChannelPosition {
            epoch: "e1".into(),
            serial: 41,
        }),
        delta: None,
    };
    assert_eq!(
        send(&mut session, frame.clone()),
        std::slice::from_ref(&expected)
    );

    // Clients that JSON-encode `data` may resume too.
    let mut session = self::session(Instant::now());
    let encoded = json!({"event": "pusher:subscribe", "data": frame["data"].to_string()});
    assert_eq!(send(&mut session, encoded), [expected]);
}

#[test]
fn a_private_resume_is_authorised_like_any_subscription() {
    let mut session = session(Instant::now());
    let mut forged = subscribe("private-a", "app-key:0000", None);
    forged["data"]["resume"] = json!({"serial": 1, "epoch": "e"});
    let refused = only_sent(&send(&mut session, forged));
    assert_eq!(refused[1]["event"], "pusher:subscription_error");

    let mut good = subscribe("private-a", &auth_for("private-a", None), None);
    good["data"]["resume"] = json!({"serial": 1, "epoch": "e"});
    assert!(matches!(
        send(&mut session, good).as_slice(),
        [Output::Subscribe {
            resume: Some(ChannelPosition { serial: 1, .. }),
            ..
        }]
    ));
}

#[test]
fn a_malformed_resume_refuses_the_subscription_instead_of_being_ignored() {
    let mut session = session(Instant::now());
    for resume in [
        json!({"serial": "7", "epoch": "e"}),
        json!({"serial": 7}),
        json!(7),
    ] {
        let mut frame = subscribe("news", "", None);
        frame["data"]["resume"] = resume.clone();
        let sent = only_sent(&send(&mut session, frame));
        assert_eq!(sent[0]["event"], "pusher:error", "{resume}");
        assert!(
            sent[0]["data"]["message"]
                .as_str()
                .unwrap()
                .contains("resume"),
            "{resume}"
        );
    }
    assert!(!session.is_subscribed(&ChannelName::parse("news").unwrap()));
    let mut null = subscribe("news", "", None);
    null["data"]["resume"] = Value::Null;
    assert!(matches!(
        send(&mut session, null).as_slice(),
        [Output::Subscribe { resume: None, .. }]
    ));
}

proptest::proptest! {
    #[test]
    fn any_resume_position_reaches_the_edge_unchanged(
        serial in proptest::num::u64::ANY,
        epoch in "[0-9a-z]{1,16}",
    ) {
        let mut session = session(Instant::now());
        let mut frame = subscribe("news", "", None);
        frame["data"]["resume"] = json!({"serial": serial, "epoch": epoch});
        let outputs = send(&mut session, frame);
        let expected = Some(ChannelPosition { epoch: epoch.clone(), serial });
        let passed = matches!(
            outputs.as_slice(),
            [Output::Subscribe { resume, .. }] if *resume == expected
        );
        proptest::prop_assert!(passed, "{:?}", outputs);
    }
}

#[test]
fn a_delta_option_travels_with_the_subscription_and_an_unknown_one_is_refused() {
    let mut session = session(Instant::now());
    let mut frame = subscribe("ticker", "", None);
    frame["data"]["delta"] = json!("fossil");
    assert!(matches!(
        send(&mut session, frame).as_slice(),
        [Output::Subscribe {
            delta: Some(crate::delta::DeltaFormat::Fossil),
            ..
        }]
    ));
    let mut unknown = subscribe("other", "", None);
    unknown["data"]["delta"] = json!("vcdiff");
    let refused = only_sent(&send(&mut session, unknown));
    let message = refused[0]["data"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("delta must be"), "{refused:?}");
}
