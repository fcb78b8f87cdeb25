//! The conformance suite against the in-process broker.

use broker::Local;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_broker_conforms() {
    broker::testing::conformance(|sink, clock, limits| Local::with_limits(sink, clock, limits))
        .await;
    broker::testing::memory_conformance(|sink, clock, limits| {
        Local::with_limits(sink, clock, limits)
    })
    .await;
}

/// Local only: the memory of channels used once is bounded by forgetting idle ones.
#[tokio::test]
async fn an_idle_channel_with_nothing_kept_is_forgotten_and_a_resume_gets_a_gap() {
    use std::sync::Arc;
    use std::time::Duration;

    use broker::{Broker, Clock, History, HistoryWindow, Publication};
    use protocol::names::{AppId, ChannelName};

    let clock = Clock::manual();
    let broker = Local::with_clock(
        Arc::new(broker::testing::RecordingSink::default()),
        clock.clone(),
    );
    let (app, channel) = (AppId::parse("a").unwrap(), ChannelName::parse("c").unwrap());
    let publication = Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: r#"{"event":"e","channel":"c","data":"x"}"#.into(),
        except: None,
        history: Some(HistoryWindow {
            max_events: 10,
            max_age: Duration::from_secs(60),
            app_max_bytes: usize::MAX,
        }),
        serial: None,
    };
    broker.publish(publication).await.unwrap();
    let before = broker.position(&app, &channel).await.unwrap();

    clock.advance(Duration::from_secs(30 * 60));
    let kept = broker.position(&app, &channel).await.unwrap();
    assert_eq!(
        kept, before,
        "used within the hour: kept, though its event expired"
    );

    clock.advance(broker::FORGET_IDLE_CHANNELS_AFTER);
    // Any later use sweeps; the channel's next use then starts a new epoch.
    let other = ChannelName::parse("other").unwrap();
    broker.position(&app, &other).await.unwrap();
    let restarted = broker.position(&app, &channel).await.unwrap();
    assert_ne!(restarted.epoch, before.epoch);
    assert_eq!(restarted.serial, 0);
    let resume = broker
        .history(&app, &channel, Some(1), Some(&before.epoch))
        .await
        .unwrap();
    assert!(matches!(resume, History::Gap { .. }), "{resume:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_connection_counter_conforms() {
    broker::testing::connection_counter_conformance(broker::counters::LocalConnections::default)
        .await;
}

#[tokio::test]
async fn local_message_counter_conforms() {
    broker::testing::message_counter_conformance(broker::counters::LocalMessages::default).await;
}

#[tokio::test]
async fn local_publish_rate_conforms() {
    broker::testing::publish_rate_conformance(broker::counters::LocalPublishRates::default).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn local_occupancy_conforms() {
    broker::testing::occupancy_conformance(broker::occupancy::LocalOccupancy::default).await;
}

#[tokio::test]
async fn local_broadcast_conforms() {
    broker::testing::broadcast_conformance(|sink| broker::broadcast::LocalBroadcast::new(sink))
        .await;
}

#[tokio::test]
async fn local_cache_conforms() {
    broker::testing::cache_conformance(broker::cache::LocalCache::new).await;
}
