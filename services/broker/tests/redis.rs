//! The conformance suite against the Redis broker, on a throwaway `redis-server`, and what
//! only many nodes can show: two brokers on one Redis are one platform.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use broker::testing::RecordingSink;
use broker::{Broker, Clock, HistoryWindow, Publication, Redis};
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use testkit::RedisServer;

/// A broker in a namespace of its own, so every broker the suite makes starts empty.
fn connect(server: &RedisServer, namespace: &str, sink: Arc<RecordingSink>, clock: Clock) -> Redis {
    let url = server.url();
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(Redis::connect(&url, namespace, sink, clock))
    })
    .expect("connects to redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broker_conforms() {
    let server = RedisServer::start();
    let made = AtomicUsize::new(0);
    broker::testing::conformance(|sink, clock, _limits| {
        let namespace = format!("t{}:", made.fetch_add(1, Ordering::Relaxed));
        connect(&server, &namespace, sink, clock)
    })
    .await;
}

fn member(user: &str) -> Member {
    Member {
        user_id: UserId::parse(user).unwrap(),
        user_info: serde_json::json!({ "name": user }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_share_fan_out_serials_and_presence() {
    let server = RedisServer::start();
    let (sink_a, sink_b) = (
        Arc::new(RecordingSink::default()),
        Arc::new(RecordingSink::default()),
    );
    let node_a = connect(&server, "sb:", sink_a.clone(), Clock::system());
    let node_b = connect(&server, "sb:", sink_b.clone(), Clock::system());
    let (app, channel) = (AppId::parse("a").unwrap(), ChannelName::parse("c").unwrap());
    node_b.subscribe(&app, &channel).await.unwrap();
    let publication = |n: u32| Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: format!(r#"{{"event":"e","channel":"c","data":"{n}"}}"#).into(),
        except: None,
        history: Some(HistoryWindow {
            max_events: 10,
            max_age: Duration::from_secs(60),
            app_max_bytes: usize::MAX,
        }),
        serial: None,
    };
    node_a.publish(publication(1)).await.unwrap();
    node_a.publish(publication(2)).await.unwrap();
    sink_b.wait_for(2).await;
    let serials: Vec<_> = sink_b
        .received
        .lock()
        .unwrap()
        .iter()
        .map(|p| p.serial)
        .collect();
    assert_eq!(
        serials,
        [Some(1), Some(2)],
        "node B gets node A's events with their serials"
    );
    assert!(
        sink_a.received.lock().unwrap().is_empty(),
        "a node not subscribed to the channel gets nothing"
    );
    assert_eq!(
        node_b.position(&app, &channel).await.unwrap(),
        node_a.position(&app, &channel).await.unwrap(),
        "one position cluster-wide"
    );

    let room = ChannelName::parse("presence-room").unwrap();
    let (on_a, on_b) = (
        SocketId::parse("1.1").unwrap(),
        SocketId::parse("2.1").unwrap(),
    );
    let join_a = node_a
        .presence_join(&app, &room, &on_a, member("ann"), 10)
        .await
        .unwrap();
    let join_b = node_b
        .presence_join(&app, &room, &on_b, member("ann"), 10)
        .await
        .unwrap();
    assert!(join_a.first_for_user);
    assert!(
        !join_b.first_for_user,
        "one user on two nodes is one member: added once"
    );
    assert_eq!(
        node_b.presence_members(&app, &room).await.unwrap(),
        [member("ann")]
    );
    assert_eq!(
        node_a.presence_leave(&app, &room, &on_a).await.unwrap(),
        None
    );
    assert_eq!(
        node_b.presence_leave(&app, &room, &on_b).await.unwrap(),
        Some(member("ann").user_id),
        "removed once, by the node where the user's last connection left"
    );
    assert!(
        node_a
            .presence_members(&app, &room)
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broker_conforms_on_a_redis_cluster() {
    let cluster = testkit::RedisCluster::start();
    let url = cluster.url();
    let made = AtomicUsize::new(0);
    broker::testing::conformance(|sink, clock, _limits| {
        let namespace = format!("t{}:", made.fetch_add(1, Ordering::Relaxed));
        tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current()
                .block_on(Redis::connect(&url, &namespace, sink, clock))
        })
        .expect("connects to the cluster")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unlimited_window_is_kept_without_a_redis_error() {
    let server = RedisServer::start();
    let sink = Arc::new(RecordingSink::default());
    let broker = connect(&server, "sb:", sink.clone(), Clock::system());
    let (app, channel) = (AppId::parse("a").unwrap(), ChannelName::parse("c").unwrap());
    broker.subscribe(&app, &channel).await.unwrap();
    let publication = Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: r#"{"event":"e","channel":"c","data":"x"}"#.into(),
        except: None,
        history: Some(HistoryWindow {
            max_events: usize::MAX,
            max_age: Duration::MAX,
            app_max_bytes: usize::MAX - 1,
        }),
        serial: None,
    };
    broker.publish(publication).await.expect("published");
    sink.wait_for(1).await;
    let history = broker.history(&app, &channel, Some(0), None).await.unwrap();
    assert!(
        matches!(&history, broker::History::Replay { frames, .. } if frames.len() == 1),
        "{history:?}"
    );
}

/// Scripts clients ran since the last `CONFIG RESETSTAT`: the broker's round trips here (the
/// commands a script runs, its `PUBLISH` too, count under their own names).
async fn round_trips(server: &RedisServer) -> u64 {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut connection)
        .await
        .unwrap();
    info.lines()
        .filter(|line| {
            ["cmdstat_evalsha:", "cmdstat_eval:"]
                .iter()
                .any(|name| line.starts_with(name))
        })
        .filter_map(|line| {
            let calls = line.split("calls=").nth(1)?.split(',').next()?;
            calls.parse::<u64>().ok()
        })
        .sum()
}

async fn reset_stats(server: &RedisServer) {
    let client = redis::Client::open(server.url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .exec_async(&mut connection)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_round_trip_per_publication_whatever_the_number_of_nodes() {
    let server = RedisServer::start();
    let (app, channel) = (AppId::parse("a").unwrap(), ChannelName::parse("c").unwrap());
    let publication = |n: u32| Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: format!(r#"{{"event":"e","channel":"c","data":"{n}"}}"#).into(),
        except: None,
        history: Some(HistoryWindow {
            max_events: 100,
            max_age: Duration::from_secs(60),
            app_max_bytes: usize::MAX,
        }),
        serial: None,
    };
    let mut per_publication = Vec::new();
    for nodes in [1, 3] {
        let sinks: Vec<_> = (0..nodes)
            .map(|_| Arc::new(RecordingSink::default()))
            .collect();
        let namespace = format!("n{nodes}:");
        // Heartbeats (scripts too) far apart, so none lands among the counted steps.
        let quiet = broker::NodeSettings {
            heartbeat_ttl: Duration::from_secs(3600),
            ..broker::NodeSettings::new()
        };
        let brokers: Vec<_> = sinks
            .iter()
            .map(|sink| {
                let url = server.url();
                let node = broker::NodeSettings {
                    node_id: broker::NodeSettings::new().node_id,
                    ..quiet.clone()
                };
                block_on(Redis::connect_node(
                    &url,
                    &namespace,
                    sink.clone(),
                    Clock::system(),
                    node,
                ))
                .expect("connects to redis")
            })
            .collect();
        for broker in &brokers {
            broker.subscribe(&app, &channel).await.unwrap();
        }
        // Warm the script cache, so a first NOSCRIPT retry is not counted.
        brokers[0].publish(publication(0)).await.unwrap();
        reset_stats(&server).await;
        for n in 1..=10 {
            brokers[0].publish(publication(n)).await.unwrap();
        }
        for sink in &sinks {
            sink.wait_for(11).await;
        }
        per_publication.push(round_trips(&server).await);
    }
    assert_eq!(
        per_publication,
        [10, 10],
        "one step per publication, for 1 node and for 3"
    );
}

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn redis_broadcast(
    url: &str,
    namespace: &str,
    sink: Arc<broker::testing::RecordingNodeSink>,
) -> broker::RedisBroadcast {
    block_on(broker::RedisBroadcast::connect(url, namespace, sink)).expect("connects to redis")
}

fn redis_cache(
    url: &str,
    namespace: &str,
    limits: broker::cache::CacheLimits,
    clock: Clock,
) -> broker::RedisCache {
    block_on(broker::RedisCache::connect(url, namespace, limits, clock)).expect("connects to redis")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broadcast_conforms() {
    let server = RedisServer::start();
    let made = AtomicUsize::new(0);
    broker::testing::broadcast_conformance(|sink| {
        let namespace = format!("b{}:", made.fetch_add(1, Ordering::Relaxed));
        redis_broadcast(&server.url(), &namespace, sink)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_cache_conforms() {
    let server = RedisServer::start();
    let made = AtomicUsize::new(0);
    broker::testing::cache_conformance(|limits, clock| {
        let namespace = format!("c{}:", made.fetch_add(1, Ordering::Relaxed));
        redis_cache(&server.url(), &namespace, limits, clock)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_redis_share_broadcasts_and_cache_channels() {
    use broker::broadcast::{Broadcast, NodeMessage};
    use broker::cache::{CacheChannels, CacheLimits, Replay};

    let server = RedisServer::start();
    let (sink_a, sink_b) = (
        Arc::new(broker::testing::RecordingNodeSink::default()),
        Arc::new(broker::testing::RecordingNodeSink::default()),
    );
    let node_a = redis_broadcast(&server.url(), "sb:", sink_a.clone());
    let _node_b = redis_broadcast(&server.url(), "sb:", sink_b.clone());
    let terminate = NodeMessage::TerminateUser {
        app: AppId::parse("a").unwrap(),
        user: UserId::parse("u1").unwrap(),
    };
    node_a.broadcast(terminate.clone()).await.unwrap();
    assert_eq!(
        sink_b.wait_for(1).await,
        std::slice::from_ref(&terminate),
        "node B gets node A's broadcast"
    );
    assert_eq!(sink_a.wait_for(1).await, [terminate], "and so does node A");

    let limits = CacheLimits {
        max_bytes: usize::MAX,
        max_channels_per_app: 100,
    };
    let cache_a = redis_cache(&server.url(), "sb:", limits, Clock::system());
    let cache_b = redis_cache(&server.url(), "sb:", limits, Clock::system());
    let (app, channel) = (
        AppId::parse("a").unwrap(),
        ChannelName::parse("cache-c").unwrap(),
    );
    cache_a
        .store(&app, &channel, "d", "frame", usize::MAX)
        .await
        .unwrap();
    assert_eq!(
        cache_b.replay(&app, &channel).await.unwrap(),
        Some(Replay::Hit("frame".into())),
        "a store on node A is replayed on node B"
    );
    let peeked = cache_b.peek(&app, &channel).await.unwrap();
    assert_eq!(peeked.map(|(data, _)| data), Some("d".to_owned()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_broadcast_and_cache_conform_on_a_redis_cluster() {
    let cluster = testkit::RedisCluster::start();
    let url = cluster.url();
    let made = AtomicUsize::new(0);
    broker::testing::broadcast_conformance(|sink| {
        let namespace = format!("b{}:", made.fetch_add(1, Ordering::Relaxed));
        redis_broadcast(&url, &namespace, sink)
    })
    .await;
    broker::testing::cache_conformance(|limits, clock| {
        let namespace = format!("c{}:", made.fetch_add(1, Ordering::Relaxed));
        redis_cache(&url, &namespace, limits, clock)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_subscription_is_reported_to_the_sink_and_a_new_subscriber_gets_deliveries() {
    let mut server = RedisServer::start();
    let sink = Arc::new(RecordingSink::default());
    let broker = connect(&server, "sb:", sink.clone(), Clock::system());
    let (app, channel) = (AppId::parse("a").unwrap(), ChannelName::parse("c").unwrap());
    broker.subscribe(&app, &channel).await.unwrap();

    server.stop();
    sink.wait_for_interruptions(1).await;
    tokio::task::block_in_place(|| server.restart());
    // A second local subscriber: the node already counts the channel, but its subscription
    // was lost, so this subscribe asks Redis again (the first request after a failed
    // reconnect may fail while it reconnects; the edge's client would retry too).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while broker.subscribe(&app, &channel).await.is_err() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "subscribe never worked again"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let publication = Publication {
        app: app.clone(),
        channel: channel.clone(),
        frame: r#"{"event":"e","channel":"c","data":"after"}"#.into(),
        except: None,
        history: None,
        serial: None,
    };
    broker.publish(publication).await.expect("published");
    sink.wait_for(1).await;
    assert_eq!(
        &*sink.received.lock().unwrap()[0].frame,
        r#"{"event":"e","channel":"c","data":"after"}"#
    );
}
