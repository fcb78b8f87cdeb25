//! Client events addressed to one presence member (our `"to"` extension): what the session
//! accepts, and the frame the edge routes by its recipient.

use serde_json::{Value, json};

use crate::names::UserId;
use crate::session::{Output, Session};
use crate::session_tests::{auth_for, only_sent, send, session, subscribe};
use crate::wire::{self, addressee};

fn joined(channel: &str, user: &str) -> Session {
    let mut session = session(std::time::Instant::now());
    let data = json!({ "user_id": user }).to_string();
    let out = send(
        &mut session,
        subscribe(channel, &auth_for(channel, Some(&data)), Some(&data)),
    );
    assert!(
        matches!(out.as_slice(), [Output::Subscribe { .. }]),
        "{out:?}"
    );
    session
}

fn rejected(outputs: &[Output]) -> String {
    let sent = only_sent(outputs);
    let [error] = sent.as_slice() else {
        panic!("expected one error frame, got {sent:?}")
    };
    assert_eq!(error["event"], "pusher:error");
    error["data"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn an_addressed_event_names_its_recipient_first_and_keeps_the_sender() {
    let mut session = joined("presence-call", "alice");
    let out = send(
        &mut session,
        json!({"event":"client-signal","channel":"presence-call","to":"bob","data":{"sdp":"x"}}),
    );
    let [Output::ClientEvent { frame, to, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(to, &Some(UserId::parse("bob").unwrap()));
    assert!(frame.starts_with(r#"{"to":"bob","#), "{frame}");
    assert_eq!(addressee(frame).as_deref(), Some("bob"));
    let parsed: Value = serde_json::from_str(frame).unwrap();
    assert_eq!(parsed["user_id"], "alice");
    assert_eq!(parsed["event"], "client-signal");
    assert_eq!(parsed["channel"], "presence-call");
    assert_eq!(parsed["data"], r#"{"sdp":"x"}"#);
}

#[test]
fn integer_recipients_are_normalised_like_presence_user_ids() {
    let mut session = joined("presence-call", "1");
    let out = send(
        &mut session,
        json!({"event":"client-signal","channel":"presence-call","to":42,"data":{}}),
    );
    let [Output::ClientEvent { to, frame, .. }] = out.as_slice() else {
        panic!("{out:?}")
    };
    assert_eq!(to.as_ref().map(UserId::as_str), Some("42"));
    assert_eq!(addressee(frame).as_deref(), Some("42"));
}

#[test]
fn an_event_without_to_is_for_every_subscriber() {
    let mut session = joined("presence-call", "alice");
    let out = send(
        &mut session,
        json!({"event":"client-hi","channel":"presence-call","data":{"to":"bob"}}),
    );
    // A `to` inside data is the app's own business: the event still goes to everyone.
    let [
        Output::ClientEvent {
            to: None, frame, ..
        },
    ] = out.as_slice()
    else {
        panic!("{out:?}")
    };
    assert_eq!(addressee(frame), None);
}

#[test]
fn addressing_is_refused_off_presence_channels_and_for_bad_recipients() {
    let mut session = session(std::time::Instant::now());
    send(
        &mut session,
        subscribe("private-a", &auth_for("private-a", None), None),
    );
    let out = send(
        &mut session,
        json!({"event":"client-x","channel":"private-a","to":"bob","data":{}}),
    );
    assert!(rejected(&out).contains("only presence channels"));

    let mut session = joined("presence-call", "alice");
    for bad in [
        json!(""),
        json!({"id":"bob"}),
        json!(true),
        json!("x".repeat(300)),
    ] {
        let out = send(
            &mut session,
            json!({"event":"client-x","channel":"presence-call","to":bad,"data":{}}),
        );
        assert!(rejected(&out).contains("to must be"), "{bad}");
    }
}

#[test]
fn an_addressed_event_from_a_non_member_is_refused() {
    let mut session = session(std::time::Instant::now());
    let out = send(
        &mut session,
        json!({"event":"client-x","channel":"presence-call","to":"bob","data":{}}),
    );
    assert!(rejected(&out).contains("not subscribed"));
}

#[test]
fn the_addressee_survives_escaping_and_stamping_and_is_never_read_from_other_frames() {
    let frame = wire::addressed_channel_event("a\"b\\c", "client-x", "presence-c", "{}", None);
    assert_eq!(addressee(&frame).as_deref(), Some("a\"b\\c"));
    let stamped = crate::wire::channel_event("client-x", "presence-c", r#"{"to":"bob"}"#, None);
    assert_eq!(addressee(&stamped), None);
    assert_eq!(addressee(r#"{"to":"#), None);
    assert_eq!(addressee(r#"{"to":12,"event":"x"}"#), None);
    assert_eq!(addressee(""), None);
}
