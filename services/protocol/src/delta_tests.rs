//! `protocol::delta` driven directly: deltas rebuild their target, the cases that give none, and which frame a subscriber gets.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

fn stamp(serial: u64, epoch: &str) -> Stamp {
    Stamp {
        serial,
        epoch: epoch.to_owned(),
    }
}

/// A ticker frame of 50 prices, stamped as the broker stamps it.
fn ticker(serial: u64, epoch: &str, changed: &[usize]) -> String {
    let prices: Vec<Value> = (0..50)
        .map(|i| {
            let bump = if changed.contains(&i) { 0.25 } else { 0.0 };
            json!({"symbol": format!("SYM{i:02}"), "bid": 100.0 + i as f64 + bump, "ask": 100.5 + i as f64})
        })
        .collect();
    let data = json!({ "prices": prices }).to_string();
    stamped(serial, epoch, &data)
}

fn stamped(serial: u64, epoch: &str, data: &str) -> String {
    let frame = crate::wire::channel_event("tick", "ticker", data, None);
    format!(
        "{},\"serial\":{serial},\"epoch\":\"{epoch}\"}}",
        frame.trim_end_matches('}')
    )
}

fn base_of(frame: &str) -> Base {
    let event = ChannelEvent::parse(frame).unwrap();
    Base {
        stamp: event.stamp(),
        data: event.data,
    }
}

fn next(frame: &str) -> ChannelEvent {
    ChannelEvent::parse(frame).unwrap()
}

/// Applies a delta frame to its base frame the way a client does: to the base's `data`.
fn apply(base: &str, delta_frame: &str) -> Vec<u8> {
    let frame: Value = serde_json::from_str(delta_frame).unwrap();
    let delta = STANDARD.decode(frame["delta"].as_str().unwrap()).unwrap();
    fossil_delta::apply(base_of(base).data, delta).unwrap()
}

fn delta_of(previous: Option<&Base>, frame: &str) -> Option<Delta<String>> {
    delta_against("ticker", previous, &next(frame), frame.len())
}

#[test]
fn a_delta_against_the_previous_event_rebuilds_the_next_one_byte_for_byte() {
    let first = ticker(7, "e1", &[]);
    let second = ticker(8, "e1", &[3, 17, 40]);
    let delta = delta_of(Some(&base_of(&first)), &second).unwrap();
    assert_eq!(delta.base, 7);
    assert_eq!(apply(&first, &delta.frame), next(&second).data.as_bytes());
    let frame: Value = serde_json::from_str(&delta.frame).unwrap();
    assert_eq!(
        (
            &frame["event"],
            &frame["channel"],
            &frame["serial"],
            &frame["epoch"],
            &frame["base"]
        ),
        (
            &json!(DELTA_EVENT),
            &json!("ticker"),
            &json!(8),
            &json!("e1"),
            &json!(7)
        )
    );
    assert_eq!(
        (&frame["name"], frame.get("user_id")),
        (&json!("tick"), None)
    );
    assert!(
        delta.frame.len() * 4 <= second.len(),
        "{} of {}",
        delta.frame.len(),
        second.len()
    );
}

#[test]
fn a_wrong_base_fails_the_checksum_instead_of_giving_a_wrong_event() {
    let first = ticker(7, "e1", &[]);
    let second = ticker(8, "e1", &[3]);
    let delta = delta_of(Some(&base_of(&first)), &second).unwrap();
    let other_base = base_of(&ticker(7, "e1", &[3, 9])).data;
    let frame: Value = serde_json::from_str(&delta.frame).unwrap();
    let bytes = STANDARD.decode(frame["delta"].as_str().unwrap()).unwrap();
    assert!(fossil_delta::apply(other_base, bytes).is_err());
}

#[test]
fn no_delta_without_a_base_across_a_gap_or_an_epoch_change() {
    let base = base_of(&ticker(7, "e1", &[]));
    assert_eq!(delta_of(None, &ticker(8, "e1", &[1])), None);
    assert_eq!(delta_of(Some(&base), &ticker(9, "e1", &[1])), None);
    assert_eq!(delta_of(Some(&base), &ticker(7, "e1", &[1])), None);
    assert_eq!(delta_of(Some(&base), &ticker(8, "e2", &[1])), None);
}

#[test]
fn no_delta_when_it_is_not_smaller_or_an_event_is_too_large() {
    let (small, second) = (stamped(1, "e1", "1"), stamped(2, "e1", "2"));
    assert_eq!(delta_of(Some(&base_of(&small)), &second), None);
    let huge = |serial| stamped(serial, "e1", &"x".repeat(MAX_DELTA_EVENT_BYTES + 1));
    let (first, second) = (huge(1), huge(2));
    assert_eq!(delta_of(Some(&base_of(&first)), &second), None);
}
#[test]
fn a_subscriber_gets_a_delta_only_when_it_asked_and_holds_the_base() {
    let cases = [
        (true, Some(7), Some(7), Pick::Delta),
        (false, Some(7), Some(7), Pick::Full),
        // The first event after a subscribe or a resume.
        (true, None, Some(7), Pick::Full),
        // It missed the base (its own client event, or a frame it never got).
        (true, Some(6), Some(7), Pick::Full),
        // The publication has no delta (a gap, too large, not smaller).
        (true, Some(7), None, Pick::Full),
    ];
    for (wants, last, base, expected) in cases {
        assert_eq!(
            pick(wants, last, base),
            expected,
            "{wants} {last:?} {base:?}"
        );
    }
}

#[test]
fn the_subscribe_option_is_fossil_or_absent() {
    assert_eq!(DeltaFormat::from_subscribe_data(None), Ok(None));
    assert_eq!(
        DeltaFormat::from_subscribe_data(Some(&Value::Null)),
        Ok(None)
    );
    assert_eq!(
        DeltaFormat::from_subscribe_data(Some(&json!("fossil"))),
        Ok(Some(DeltaFormat::Fossil))
    );
    for bad in [
        json!("vcdiff"),
        json!(true),
        json!({"format": "fossil"}),
        json!(""),
    ] {
        assert_eq!(
            DeltaFormat::from_subscribe_data(Some(&bad)),
            Err(UnknownDeltaFormat),
            "{bad}"
        );
    }
}

#[test]
fn a_stamped_channel_event_is_read_with_its_user() {
    let event = ChannelEvent::parse(&ticker(42, "abc", &[])).unwrap();
    assert_eq!(
        (event.stamp(), event.event.as_str()),
        (stamp(42, "abc"), "tick")
    );
    let frame =
        r#"{"event":"client-x","channel":"c","data":"1","user_id":"u","serial":1,"epoch":"e"}"#;
    assert_eq!(
        ChannelEvent::parse(frame).unwrap().user_id.as_deref(),
        Some("u")
    );
    assert_eq!(
        ChannelEvent::parse(r#"{"event":"e","channel":"c","data":"1"}"#),
        None
    );
    assert_eq!(ChannelEvent::parse("not json"), None);
}

proptest! {
    #[test]
    fn any_delta_sent_rebuilds_its_target(
        base in "[ -~é€\"\\\\]{0,600}",
        target in "[ -~é€\"\\\\]{0,600}",
    ) {
        let (first, second) = (stamped(1, "e1", &base), stamped(2, "e1", &target));
        if let Some(delta) = delta_of(Some(&base_of(&first)), &second) {
            prop_assert!(delta.frame.len() < second.len());
            prop_assert_eq!(apply(&first, &delta.frame), target.as_bytes());
        }
    }
}

#[test]
fn a_delta_frame_ends_with_its_stamp_as_the_broker_writes_it() {
    // The carriers read each frame's position from its end (`broker::read_stamp`), unparsed.
    let first = ticker(7, "e1", &[]);
    let second = ticker(8, "e1", &[3]);
    let delta = delta_of(Some(&base_of(&first)), &second).unwrap();
    assert!(
        delta.frame.ends_with(r#","serial":8,"epoch":"e1"}"#),
        "{}",
        delta.frame
    );
}
