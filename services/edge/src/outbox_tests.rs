//! The outbox driven directly: bounds in frames and bytes, holds, closes.

use super::*;

fn outbox(capacity: usize) -> Outbox {
    bounded(capacity, usize::MAX / 4, Arc::default())
}

fn bounded(frames: usize, bytes: usize, stats: Arc<OutboxStats>) -> Outbox {
    let bounds = OutboxBounds {
        frames,
        bytes,
        stats,
    };
    Outbox::new(SocketId::parse("1.1").unwrap(), bounds)
}

#[test]
fn the_byte_bound_closes_a_slow_consumer_and_the_node_totals_follow() {
    let stats = Arc::new(OutboxStats::default());
    let outbox = bounded(100, 10, stats.clone());
    outbox.push("12345".into());
    outbox.push("1234".into());
    assert_eq!((outbox.queued_bytes(), stats.queued_bytes()), (9, 9));
    assert_eq!(
        outbox.room(),
        Room {
            frames: 98,
            bytes: 1
        }
    );
    outbox.push("12".into());
    assert_eq!(outbox.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(stats.overflows(), 1);
    assert_eq!(
        outbox.drain().len(),
        2,
        "the frame past the bound is dropped"
    );
    assert_eq!(stats.queued_bytes(), 0);
    assert_eq!(stats.peak_bytes(), 9);

    let replies = bounded(100, 10, stats.clone());
    for _ in 0..4 {
        replies.send(text("12345"));
    }
    assert_eq!(
        replies.close_reason(),
        None,
        "replies may take twice the bound"
    );
    replies.send(text("1"));
    assert_eq!(replies.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(stats.peak_bytes(), 20);

    let one_big = bounded(100, 10, stats.clone());
    one_big.push("a frame larger than the bound".into());
    assert_eq!(
        one_big.close_reason(),
        None,
        "an empty queue takes any one frame"
    );
    one_big.close_with([text("bye")]);
    assert_eq!(one_big.queued_bytes(), 3, "closing drops the backlog");
    drop((outbox, replies, one_big));
    assert_eq!(
        stats.queued_bytes(),
        0,
        "a dropped outbox gives its bytes back"
    );
}

fn text(frame: &str) -> Outgoing {
    Outgoing::Text(frame.into())
}

#[test]
fn frames_drain_in_order() {
    let outbox = outbox(4);
    outbox.push("a".into());
    outbox.send(text("b"));
    assert_eq!(outbox.drain(), [text("a"), text("b")]);
    assert!(outbox.drain().is_empty());
    assert_eq!(outbox.close_reason(), None);
}

#[test]
fn a_full_queue_closes_as_slow_consumer_and_stops_growing() {
    let outbox = outbox(2);
    for frame in ["a", "b", "c", "d"] {
        outbox.push(frame.into());
    }
    assert_eq!(outbox.close_reason(), Some(CloseReason::SlowConsumer));
    assert_eq!(outbox.drain().len(), 2);
    outbox.terminate();
    assert_eq!(
        outbox.close_reason(),
        Some(CloseReason::SlowConsumer),
        "the first reason stays"
    );
}

#[test]
fn closing_replaces_the_backlog_and_ignores_later_pushes() {
    let outbox = outbox(8);
    outbox.push("backlog".into());
    let close = Outgoing::Close {
        code: 4100,
        reason: "slow".into(),
    };
    outbox.close_with([text("error"), close.clone()]);
    outbox.push("late".into());
    assert_eq!(outbox.drain(), [text("error"), close]);
}

#[test]
fn a_held_channel_waits_and_is_released_after_the_subscribers_position() {
    let outbox = outbox(8);
    let (news, other) = (
        ChannelName::parse("news").unwrap(),
        ChannelName::parse("other").unwrap(),
    );
    outbox.hold(&news);
    outbox.push_from(&news, Some(4), "4".into());
    outbox.push_from(&other, Some(9), "other".into());
    outbox.push_from(&news, None, "member_added".into());
    outbox.push_from(&news, Some(5), "5".into());
    assert_eq!(
        outbox.drain(),
        [text("other")],
        "only the held channel waits"
    );
    assert_eq!(
        outbox.room().frames,
        5,
        "held frames count toward the bound"
    );
    outbox.send(text("subscription_succeeded"));
    outbox.push("replayed 4".into());
    assert_eq!(
        outbox.release(&news, Some(4)),
        (1, 1),
        "the duplicate 4 is dropped"
    );
    outbox.push_from(&news, Some(6), "6".into());
    assert_eq!(
        outbox.drain(),
        [
            text("subscription_succeeded"),
            text("replayed 4"),
            text("member_added"),
            text("5"),
            text("6")
        ]
    );

    outbox.hold(&news);
    outbox.push_from(&news, Some(7), "7".into());
    outbox.discard_held(&news);
    outbox.release(&news, None);
    assert!(
        outbox.drain().is_empty(),
        "a failed subscription drops what it held"
    );
}

#[tokio::test]
async fn a_push_wakes_the_waiting_task_only_for_close_requests() {
    let outbox = std::sync::Arc::new(outbox(2));
    let waiter = tokio::spawn({
        let outbox = outbox.clone();
        async move {
            outbox.task_wakeup().await;
            outbox.close_reason()
        }
    });
    outbox.push("x".into());
    outbox.terminate();
    assert_eq!(waiter.await.unwrap(), Some(CloseReason::Unauthorized));
}

fn delta(base: u64, frame: &str) -> Delta<ByteString> {
    Delta {
        base,
        frame: frame.into(),
    }
}

#[test]
fn a_delta_subscriber_gets_a_delta_only_after_a_full_event_of_its_base() {
    let (outbox, plain) = (outbox(16), self::outbox(16));
    let ticker = ChannelName::parse("ticker").unwrap();
    assert!(outbox.enable_delta(&ticker));
    for subscriber in [&outbox, &plain] {
        subscriber.hold(&ticker);
        subscriber.push_publication(&ticker, Some(5), "full 5".into(), Some(&delta(4, "d5")));
        subscriber.release(&ticker, Some(4));
        subscriber.push_publication(&ticker, Some(6), "full 6".into(), Some(&delta(5, "d6")));
        // Serial 7 was not fan-out to it (its own client event): 8's base is missing.
        subscriber.push_publication(&ticker, Some(8), "full 8".into(), Some(&delta(7, "d8")));
        subscriber.push_publication(&ticker, Some(9), "full 9".into(), Some(&delta(8, "d9")));
        // A gap: no delta computed.
        subscriber.push_publication(&ticker, Some(12), "full 12".into(), None);
        subscriber.push_from(&ticker, None, "member_added".into());
        subscriber.push_publication(&ticker, Some(13), "full 13".into(), Some(&delta(12, "d13")));
    }
    assert_eq!(
        outbox.drain(),
        [
            "full 5",
            "d6",
            "full 8",
            "d9",
            "full 12",
            "member_added",
            "d13"
        ]
        .map(text)
    );
    assert_eq!(
        plain.drain(),
        [
            "full 5",
            "full 6",
            "full 8",
            "full 9",
            "full 12",
            "member_added",
            "full 13"
        ]
        .map(text),
        "a client that did not ask gets full events"
    );

    // A re-subscribe (a resume) starts from a full event again.
    outbox.hold(&ticker);
    outbox.push("replayed 14".into());
    outbox.release(&ticker, Some(14));
    outbox.push_publication(&ticker, Some(15), "full 15".into(), Some(&delta(14, "d15")));
    outbox.push_publication(&ticker, Some(16), "full 16".into(), Some(&delta(15, "d16")));
    assert_eq!(outbox.drain(), ["replayed 14", "full 15", "d16"].map(text));
    assert!(outbox.disable_delta(&ticker));
    outbox.push_publication(&ticker, Some(17), "full 17".into(), Some(&delta(16, "d17")));
    assert_eq!(outbox.drain(), [text("full 17")]);
}
