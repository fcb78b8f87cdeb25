//! Presence expires with its node: a node that stops heartbeating (dropped without leaving,
//! as a crash leaves it) loses its members within its heartbeat ttl, and each user whose
//! last connection it held is reported once, to one of the live nodes that sweep.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::testing::RecordingSink;
use broker::{Broker, Clock, NodeSettings, PresenceDeparture, Redis};
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;
use testkit::{RedisCluster, RedisServer};

/// The dying node's ttl: short, so the test is quick.
const DYING_TTL: Duration = Duration::from_secs(1);
/// The live nodes' ttl: long, so a loaded machine never makes one miss its deadline.
const LIVE_TTL: Duration = Duration::from_secs(60);
/// Only a real bug takes this long.
const BOUND: Duration = Duration::from_secs(20);

fn node(url: &str, heartbeat_ttl: Duration) -> Redis {
    let settings = NodeSettings {
        heartbeat_ttl,
        ..NodeSettings::new()
    };
    let sink = Arc::new(RecordingSink::default());
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(Redis::connect_node(
            url,
            "sb:",
            sink,
            Clock::system(),
            settings,
        ))
    })
    .expect("connects to redis")
}

fn member(user: &str) -> Member {
    Member {
        user_id: UserId::parse(user).unwrap(),
        user_info: serde_json::json!({ "name": user }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_members_leave_within_its_ttl_and_each_is_reported_once() {
    let server = RedisServer::start();
    a_dead_nodes_members_leave(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_members_leave_on_a_redis_cluster_too() {
    let cluster = RedisCluster::start();
    a_dead_nodes_members_leave(&cluster.url()).await;
}

async fn a_dead_nodes_members_leave(url: &str) {
    let (dying, live_b, live_c) = (
        node(url, DYING_TTL),
        node(url, LIVE_TTL),
        node(url, LIVE_TTL),
    );
    let app = AppId::parse("a").unwrap();
    let (room, other) = (
        ChannelName::parse("presence-room").unwrap(),
        ChannelName::parse("presence-other").unwrap(),
    );
    let socket = |id: &str| SocketId::parse(id).unwrap();
    // Ann only on the dying node (two channels); Cat on the dying node and on B; Bob on B.
    for (channel, id, user) in [
        (&room, "1.1", "ann"),
        (&other, "1.2", "ann"),
        (&room, "1.3", "cat"),
    ] {
        dying
            .presence_join(&app, channel, &socket(id), member(user), 100)
            .await
            .unwrap();
    }
    for (id, user) in [("2.1", "bob"), ("2.2", "cat")] {
        live_b
            .presence_join(&app, &room, &socket(id), member(user), 100)
            .await
            .unwrap();
    }
    assert_eq!(
        live_c.sweep_dead_nodes().await.unwrap(),
        [],
        "nobody is dead yet"
    );

    drop(dying);
    let started = Instant::now();
    let mut departures: Vec<PresenceDeparture> = Vec::new();
    loop {
        // Two live nodes sweep at once: each departure must come out of exactly one.
        let (on_b, on_c) = tokio::join!(live_b.sweep_dead_nodes(), live_c.sweep_dead_nodes());
        departures.extend(on_b.unwrap());
        departures.extend(on_c.unwrap());
        let members = live_c.presence_members(&app, &room).await.unwrap();
        let others = live_c.presence_members(&app, &other).await.unwrap();
        if members == [member("bob"), member("cat")] && others.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "the dead node's members are still listed: {members:?} {others:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reported: Vec<(String, String)> = departures
        .iter()
        .map(|gone| (gone.channel.to_string(), gone.user.to_string()))
        .collect();
    let distinct: HashSet<_> = reported.iter().cloned().collect();
    assert_eq!(
        reported.len(),
        distinct.len(),
        "reported once each: {reported:?}"
    );
    assert_eq!(
        distinct,
        HashSet::from([
            ("presence-room".to_owned(), "ann".to_owned()),
            ("presence-other".to_owned(), "ann".to_owned()),
        ]),
        "Ann left both channels; Cat still has a connection on B"
    );
    assert_eq!(
        live_b.sweep_dead_nodes().await.unwrap(),
        [],
        "nothing is reported twice"
    );

    // The live nodes' own memberships are untouched: Cat leaves with her last connection.
    assert_eq!(
        live_b
            .presence_leave(&app, &room, &socket("2.2"))
            .await
            .unwrap(),
        Some(UserId::parse("cat").unwrap())
    );
}

/// A node paused longer than its ttl (its deadline is set in the past here, as a long pause
/// leaves it) is swept like a dead one; when it beats again it registers its channels anew,
/// so a later real death is still swept, and its leaves announce nobody twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_registers_its_channels_again_when_it_beats() {
    let server = RedisServer::start();
    let url = server.url();
    let paused_settings = NodeSettings {
        heartbeat_ttl: DYING_TTL,
        ..NodeSettings::new()
    };
    let paused_id = paused_settings.node_id.clone();
    let sink = Arc::new(RecordingSink::default());
    let paused = tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(Redis::connect_node(
            &url,
            "sb:",
            sink,
            Clock::system(),
            paused_settings,
        ))
    })
    .unwrap();
    let live = node(&url, LIVE_TTL);
    let app = AppId::parse("a").unwrap();
    let room = ChannelName::parse("presence-room").unwrap();
    let socket = SocketId::parse("1.1").unwrap();
    paused
        .presence_join(&app, &room, &socket, member("ann"), 100)
        .await
        .unwrap();

    let client = redis::Client::open(url.as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let registry = format!("sb:pn:{{nodes}}:{paused_id}");
    let entry = "a\npresence-room".to_owned();
    // Its own heartbeats may put the deadline back meanwhile: then it is set again.
    let started = Instant::now();
    let swept = loop {
        redis::cmd("HSET")
            .arg("sb:pd:{nodes}")
            .arg(&paused_id)
            .arg(0)
            .exec_async(&mut redis)
            .await
            .unwrap();
        let swept = live.sweep_dead_nodes().await.unwrap();
        if !swept.is_empty() {
            break swept;
        }
        assert!(started.elapsed() < BOUND, "the paused node was never swept");
    };
    assert_eq!(
        swept.len(),
        1,
        "taken for dead: Ann is announced gone: {swept:?}"
    );
    assert!(live.presence_members(&app, &room).await.unwrap().is_empty());

    // Its next heartbeat (every third of its ttl) finds its deadline gone and registers again.
    let started = Instant::now();
    loop {
        let registered: Vec<String> = redis::cmd("SMEMBERS")
            .arg(&registry)
            .query_async(&mut redis)
            .await
            .unwrap();
        if registered == [entry.clone()] {
            break;
        }
        assert!(
            started.elapsed() < BOUND,
            "the paused node never registered its channel again: {registered:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        paused.presence_leave(&app, &room, &socket).await.unwrap(),
        None,
        "Ann was announced gone already"
    );
    assert_eq!(
        live.sweep_dead_nodes().await.unwrap(),
        [],
        "the node beats again: alive"
    );
}
