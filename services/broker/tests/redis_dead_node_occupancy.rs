//! A dead node's subscriptions in apps where no live node takes an occupancy step: each
//! node's registry of its apps lets the live nodes' `sweep_dead_nodes` find them, vacate
//! each channel once (two live nodes sweeping at once; one Redis and a Redis Cluster),
//! bounded per call; a node taken for dead registers its apps again; and the registry
//! follows a node's subscriptions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use broker::occupancy::Occupancy;
use broker::{NodeSettings, RedisOccupancy};
use protocol::names::{AppId, ChannelName};
use testkit::RedisServer;

fn block_on<T>(future: impl std::future::Future<Output = T>) -> T {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(future))
}

fn occupancy(server: &RedisServer, settings: NodeSettings) -> RedisOccupancy {
    block_on(RedisOccupancy::connect(&server.url(), "sb:", settings)).expect("connects")
}

/// A survivor's: a loaded machine never makes it miss its deadline.
fn long_heartbeat() -> NodeSettings {
    NodeSettings {
        heartbeat_ttl: Duration::from_secs(60),
        ..NodeSettings::new()
    }
}

/// The members of a node's registry of apps, read directly.
async fn registered_apps(server: &RedisServer, node: &str) -> Vec<String> {
    let client = redis::Client::open(server.url().as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    redis::cmd("SMEMBERS")
        .arg(format!("sb:oa:{{nodes}}:{node}"))
        .query_async(&mut redis)
        .await
        .unwrap()
}
/// A dying node's ttl here: beats every third of it, so a loaded machine keeps it alive
/// until it is dropped.
fn dying_heartbeat() -> NodeSettings {
    NodeSettings {
        heartbeat_ttl: Duration::from_secs(1),
        ..NodeSettings::new()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_channels_in_apps_nobody_touches_are_vacated_by_the_sweep() {
    let server = RedisServer::start();
    quiet_apps_are_vacated_by_the_sweep(&server.url()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_nodes_channels_in_apps_nobody_touches_are_vacated_on_a_redis_cluster_too() {
    let cluster = testkit::RedisCluster::start();
    quiet_apps_are_vacated_by_the_sweep(&cluster.url()).await;
}

/// No occupancy step runs in the dead node's apps after it dies: only the sweep's registry
/// of its apps finds them. Two live nodes sweep at once; each channel is reported once.
async fn quiet_apps_are_vacated_by_the_sweep(url: &str) {
    let connect =
        |settings| block_on(RedisOccupancy::connect(url, "sb:", settings)).expect("connects");
    let dying = connect(dying_heartbeat());
    let (live_b, live_c) = (connect(long_heartbeat()), connect(long_heartbeat()));
    let (first, second) = (
        AppId::parse("quiet-1").unwrap(),
        AppId::parse("quiet-2").unwrap(),
    );
    let channel = |name| ChannelName::parse(name).unwrap();
    let (alone, shared, other) = (channel("alone"), channel("shared"), channel("other"));
    for (app, channel) in [(&first, &alone), (&first, &shared), (&second, &other)] {
        dying.subscribed(app, channel).await.unwrap();
    }
    assert_eq!(live_b.subscribed(&first, &shared).await.unwrap(), 2);
    drop(dying);

    let expected = [(first.clone(), alone.clone()), (second.clone(), other)];
    let started = Instant::now();
    let mut vacated = Vec::new();
    while !expected.iter().all(|channel| vacated.contains(channel)) {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the dead node's channels were never all reported vacated: {vacated:?}"
        );
        let (on_b, on_c) = tokio::join!(live_b.sweep_dead_nodes(&[]), live_c.sweep_dead_nodes(&[]));
        vacated.extend(on_b.unwrap());
        vacated.extend(on_c.unwrap());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    vacated.sort();
    assert_eq!(
        vacated, expected,
        "each once; the shared channel stays occupied"
    );
    let (on_b, on_c) = tokio::join!(live_b.sweep_dead_nodes(&[]), live_c.sweep_dead_nodes(&[]));
    assert_eq!(
        (on_b.unwrap(), on_c.unwrap()),
        (vec![], vec![]),
        "never twice"
    );
    assert_eq!(live_c.subscription_count(&first, &shared).await.unwrap(), 1);
    assert_eq!(live_c.subscription_count(&first, &alone).await.unwrap(), 0);
    assert_eq!(live_c.occupied_channels(&second, "").await.unwrap(), []);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_node_with_more_apps_than_one_sweep_takes_is_finished_by_the_next_sweeps() {
    let server = RedisServer::start();
    let dying = occupancy(&server, dying_heartbeat());
    let survivor = occupancy(&server, long_heartbeat());
    let apps = RedisOccupancy::MAX_APPS_PER_SWEEP + 44;
    let channel = ChannelName::parse("c").unwrap();
    for app in 0..apps {
        let app = AppId::parse(&format!("app-{app}")).unwrap();
        dying.subscribed(&app, &channel).await.unwrap();
    }
    drop(dying);

    let started = Instant::now();
    let (mut vacated, mut sweeps_that_found_some) = (Vec::new(), 0);
    while vacated.len() < apps {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "only {} of {apps} apps were swept",
            vacated.len()
        );
        let found = survivor.sweep_dead_nodes(&[]).await.unwrap();
        assert!(
            found.len() <= RedisOccupancy::MAX_APPS_PER_SWEEP,
            "one sweep took {} apps",
            found.len()
        );
        sweeps_that_found_some += usize::from(!found.is_empty());
        vacated.extend(found);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        sweeps_that_found_some >= 2,
        "bounded: the rest came next time"
    );
    let distinct: std::collections::HashSet<_> = vacated.iter().collect();
    assert_eq!(
        (vacated.len(), distinct.len()),
        (apps, apps),
        "each app's channel once"
    );
    assert_eq!(survivor.sweep_dead_nodes(&[]).await.unwrap(), []);
}

/// A node paused longer than its ttl (its deadline set in the past here, as a long pause
/// leaves it) is swept like a dead one; its next heartbeat registers its apps again, so a
/// later real death is still found.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_taken_for_dead_registers_its_apps_again_when_it_beats() {
    let server = RedisServer::start();
    let paused_settings = dying_heartbeat();
    let paused_id = paused_settings.node_id.clone();
    let paused = occupancy(&server, paused_settings);
    let live = occupancy(&server, long_heartbeat());
    let app = AppId::parse("paused").unwrap();
    let channel = ChannelName::parse("c").unwrap();
    paused.subscribed(&app, &channel).await.unwrap();

    let client = redis::Client::open(server.url().as_str()).unwrap();
    let mut redis = client.get_multiplexed_async_connection().await.unwrap();
    let bound = Duration::from_secs(20);
    // Its own heartbeats may put the deadline back meanwhile: then it is set again.
    let started = Instant::now();
    let swept = loop {
        redis::cmd("ZADD")
            .arg("sb:oh:{nodes}")
            .arg(0)
            .arg(&paused_id)
            .exec_async(&mut redis)
            .await
            .unwrap();
        let swept = live.sweep_dead_nodes(&[]).await.unwrap();
        if !swept.is_empty() {
            break swept;
        }
        assert!(started.elapsed() < bound, "the paused node was never swept");
    };
    assert_eq!(swept, [(app.clone(), channel.clone())], "taken for dead");

    let started = Instant::now();
    loop {
        let registered = registered_apps(&server, &paused_id).await;
        if registered == ["paused"] {
            break;
        }
        assert!(
            started.elapsed() < bound,
            "the paused node never registered its app again: {registered:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        live.sweep_dead_nodes(&[]).await.unwrap(),
        [],
        "it beats again: alive"
    );
}

/// Registered before the first subscription in an app (concurrent ones too), unregistered
/// after the last: the registry is exactly the apps the node holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_registry_holds_exactly_the_apps_it_has_subscriptions_in() {
    let server = RedisServer::start();
    let settings = long_heartbeat();
    let node_id = settings.node_id.clone();
    let node = Arc::new(occupancy(&server, settings));
    let (busy, other) = (
        AppId::parse("busy").unwrap(),
        AppId::parse("other").unwrap(),
    );
    let channel = |index: usize| ChannelName::parse(&format!("c{index}")).unwrap();
    let mut changes = tokio::task::JoinSet::new();
    for index in 0..16 {
        let (node, app, channel) = (node.clone(), busy.clone(), channel(index));
        changes.spawn(async move { node.subscribed(&app, &channel).await.unwrap() });
    }
    changes.join_all().await;
    node.subscribed(&other, &channel(0)).await.unwrap();
    let mut registered = registered_apps(&server, &node_id).await;
    registered.sort();
    assert_eq!(registered, ["busy", "other"]);

    let mut changes = tokio::task::JoinSet::new();
    for index in 0..16 {
        let (node, app, channel) = (node.clone(), busy.clone(), channel(index));
        changes.spawn(async move { node.unsubscribed(&app, &channel).await.unwrap() });
    }
    assert_eq!(
        changes.join_all().await.iter().sum::<u64>(),
        0,
        "each channel vacant"
    );
    assert_eq!(registered_apps(&server, &node_id).await, ["other"]);
    node.unsubscribed(&other, &channel(0)).await.unwrap();
    assert_eq!(
        registered_apps(&server, &node_id).await,
        Vec::<String>::new()
    );
}
