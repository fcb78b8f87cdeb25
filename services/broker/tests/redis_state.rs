//! The counter and occupancy conformance suites against Redis, and what only many nodes can
//! show: two nodes on one Redis share one ceiling and one occupancy, and a node that stops
//! heartbeating stops counting within its window.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker::counters::ConnectionCounter;
use broker::occupancy::Occupancy;
use broker::{NodeSettings, RedisCounters, RedisOccupancy, RedisPublishRates};
use protocol::names::{AppId, ChannelName};
use testkit::RedisServer;

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn counters(server: &RedisServer, namespace: &str, settings: NodeSettings) -> RedisCounters {
    block_on(RedisCounters::connect(&server.url(), namespace, settings)).expect("connects")
}

fn occupancy(server: &RedisServer, namespace: &str, settings: NodeSettings) -> RedisOccupancy {
    block_on(RedisOccupancy::connect(&server.url(), namespace, settings)).expect("connects")
}

fn short_heartbeat() -> NodeSettings {
    NodeSettings {
        heartbeat_ttl: Duration::from_millis(600),
        ..NodeSettings::new()
    }
}

/// A survivor's: a loaded machine never makes it miss its deadline.
fn long_heartbeat() -> NodeSettings {
    NodeSettings {
        heartbeat_ttl: Duration::from_secs(60),
        ..NodeSettings::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_counters_and_occupancy_conform() {
    let server = RedisServer::start();
    let made = AtomicUsize::new(0);
    let namespace = || format!("t{}:", made.fetch_add(1, Ordering::Relaxed));
    broker::testing::connection_counter_conformance(|| {
        counters(&server, &namespace(), NodeSettings::new())
    })
    .await;
    broker::testing::message_counter_conformance(|| {
        counters(&server, &namespace(), NodeSettings::new())
    })
    .await;
    broker::testing::occupancy_conformance(|| {
        occupancy(&server, &namespace(), NodeSettings::new())
    })
    .await;
    broker::testing::publish_rate_conformance(|| {
        block_on(RedisPublishRates::connect(&server.url(), &namespace())).expect("connects")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_publish_allowance() {
    use broker::counters::PublishRate;
    let server = RedisServer::start();
    let connect = || block_on(RedisPublishRates::connect(&server.url(), "sb:")).expect("connects");
    let (a, b) = (connect(), connect());
    let app = AppId::parse("rated").unwrap();
    let mut allowed = 0;
    for node in [&a, &b, &a, &b, &a, &b] {
        if node.take(&app, 3).await.unwrap() {
            allowed += 1;
        }
    }
    assert_eq!(
        allowed, 3,
        "one burst of the rate for the cluster, not one per node"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_share_one_ceiling_one_daily_count_and_one_occupancy() {
    let server = RedisServer::start();
    let (a, b) = (
        counters(&server, "sb:", NodeSettings::new()),
        counters(&server, "sb:", NodeSettings::new()),
    );
    let app = AppId::parse("shared").unwrap();
    assert!(a.acquire(&app, Some(2)).await.unwrap());
    assert!(b.acquire(&app, Some(2)).await.unwrap());
    assert!(!a.acquire(&app, Some(2)).await.unwrap(), "full on node A");
    assert!(!b.acquire(&app, Some(2)).await.unwrap(), "full on node B");
    assert_eq!(a.count(&app).await.unwrap(), 2);

    use broker::counters::MessageCounter;
    a.add(&app, 3, 1_000_000);
    b.add(&app, 4, 1_000_000);
    let deadline = Instant::now() + Duration::from_secs(10);
    while a.today(&app, 1_000_000).await.unwrap() != 7 {
        assert!(Instant::now() < deadline, "node A never saw B's messages");
        tokio::task::yield_now().await;
    }

    let (on_a, on_b) = (
        occupancy(&server, "sb:", NodeSettings::new()),
        occupancy(&server, "sb:", NodeSettings::new()),
    );
    let channel = ChannelName::parse("c").unwrap();
    assert_eq!(
        on_a.subscribed(&app, &channel).await.unwrap(),
        1,
        "occupied"
    );
    assert_eq!(on_b.subscribed(&app, &channel).await.unwrap(), 2);
    assert_eq!(
        on_b.occupied_channels(&app, "").await.unwrap(),
        [(channel.clone(), 2)]
    );
    assert_eq!(on_a.unsubscribed(&app, &channel).await.unwrap(), 1);
    assert_eq!(
        on_a.unsubscribed(&app, &channel).await.unwrap(),
        1,
        "a node cannot take away another node's subscription"
    );
    assert_eq!(
        on_b.unsubscribed(&app, &channel).await.unwrap(),
        0,
        "vacant"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_heartbeating_stops_counting_within_its_ttl() {
    let server = RedisServer::start();
    let app = AppId::parse("deadnode").unwrap();
    let channel = ChannelName::parse("c").unwrap();
    let (dying, survivor) = (
        counters(&server, "sb:", short_heartbeat()),
        counters(&server, "sb:", short_heartbeat()),
    );
    let (dying_occupancy, surviving_occupancy) = (
        occupancy(&server, "sb:", short_heartbeat()),
        occupancy(&server, "sb:", short_heartbeat()),
    );
    assert!(dying.acquire(&app, Some(2)).await.unwrap());
    assert!(dying.acquire(&app, Some(2)).await.unwrap());
    dying_occupancy.subscribed(&app, &channel).await.unwrap();
    assert_eq!(
        surviving_occupancy
            .subscribed(&app, &channel)
            .await
            .unwrap(),
        2
    );

    // The live node's heartbeats keep its own slots and subscriptions while it waits.
    let stopped = Instant::now();
    drop((dying, dying_occupancy));
    let bound = Duration::from_secs(10);
    while !survivor.acquire(&app, Some(2)).await.unwrap() {
        assert!(
            stopped.elapsed() < bound,
            "the dead node's slots never came back"
        );
        tokio::task::yield_now().await;
    }
    while surviving_occupancy
        .subscription_count(&app, &channel)
        .await
        .unwrap()
        != 1
    {
        assert!(
            stopped.elapsed() < bound,
            "the dead node's subscription never left"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(
        survivor.count(&app).await.unwrap(),
        1,
        "only the survivor's slot"
    );
    // The survivor still counts: its heartbeats keep its deadline ahead.
    assert!(survivor.acquire(&app, Some(2)).await.unwrap());
    assert!(!survivor.acquire(&app, Some(2)).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_counters_and_occupancy_conform_on_a_redis_cluster() {
    let cluster = testkit::RedisCluster::start();
    let url = cluster.url();
    let made = AtomicUsize::new(0);
    let namespace = || format!("t{}:", made.fetch_add(1, Ordering::Relaxed));
    let settings = NodeSettings::new;
    broker::testing::connection_counter_conformance(|| {
        block_on(RedisCounters::connect(&url, &namespace(), settings())).expect("connects")
    })
    .await;
    broker::testing::message_counter_conformance(|| {
        block_on(RedisCounters::connect(&url, &namespace(), settings())).expect("connects")
    })
    .await;
    broker::testing::occupancy_conformance(|| {
        block_on(RedisOccupancy::connect(&url, &namespace(), settings())).expect("connects")
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_a_dead_node_leaves_empty_is_reported_vacated_once() {
    let server = RedisServer::start();
    let dying_node = short_heartbeat();
    let dying_id = dying_node.node_id.clone();
    let dying = occupancy(&server, "sb:", dying_node);
    let survivor = occupancy(&server, "sb:", long_heartbeat());
    let app = AppId::parse("a").unwrap();
    let (alone, shared, quiet) = (
        ChannelName::parse("presence-alone").unwrap(),
        ChannelName::parse("shared").unwrap(),
        ChannelName::parse("quiet").unwrap(),
    );
    for channel in [&alone, &shared, &quiet] {
        dying.subscribed(&app, channel).await.unwrap();
    }
    survivor.subscribed(&app, &shared).await.unwrap();
    drop(dying);

    // Named dead (as presence's sweep names it), the node's subscriptions leave at once.
    let vacated = survivor
        .sweep_dead_nodes(&[(app.clone(), dying_id.clone())])
        .await
        .unwrap();
    let mut vacated: Vec<_> = vacated.into_iter().map(|(_, c)| c.to_string()).collect();
    vacated.sort();
    assert_eq!(
        vacated,
        ["presence-alone", "quiet"],
        "the shared one stays occupied"
    );
    assert_eq!(survivor.subscription_count(&app, &shared).await.unwrap(), 1);
    assert_eq!(
        survivor
            .sweep_dead_nodes(&[(app.clone(), dying_id)])
            .await
            .unwrap(),
        [],
        "each vacancy is reported once"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_step_that_sweeps_a_dead_node_keeps_what_it_vacated_for_the_edge() {
    let server = RedisServer::start();
    let dying = occupancy(&server, "sb:", short_heartbeat());
    let survivor = occupancy(&server, "sb:", long_heartbeat());
    let app = AppId::parse("a").unwrap();
    let channel = ChannelName::parse("left-behind").unwrap();
    dying.subscribed(&app, &channel).await.unwrap();
    drop(dying);
    let stopped = Instant::now();
    let mut vacated = Vec::new();
    // The survivor's reads sweep the node once its deadline passed.
    while vacated.is_empty() {
        assert!(
            stopped.elapsed() < Duration::from_secs(20),
            "the dead node's channel was never reported vacated"
        );
        survivor.subscription_count(&app, &channel).await.unwrap();
        vacated = survivor.sweep_dead_nodes(&[]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(vacated, [(app.clone(), channel.clone())]);
    assert_eq!(
        survivor.subscription_count(&app, &channel).await.unwrap(),
        0
    );
    assert_eq!(survivor.sweep_dead_nodes(&[]).await.unwrap(), []);
}
