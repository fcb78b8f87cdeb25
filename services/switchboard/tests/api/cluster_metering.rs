//! Usage metering across edges: two edges on one Redis and one Postgres write one app's
//! usage rows, and the peak of concurrent connections is the cluster's, not one node's.

use std::sync::Arc;

use control::catalog::PgCatalog;
use control::usage::PgUsageSink;
use edge::EdgeSettings;
use sqlx::{Connection, PgConnection};
use switchboard::startup::{Application, Parts};
use tenancy::AppCatalog;
use testkit::RedisServer;

use crate::helpers::{TestApp, WsClient};
use crate::platform::{TestPlatform, spawn_platform};

/// An edge on the platform's database (catalog and usage) and on the Redis at `broker_url`.
async fn edge_on(platform: &TestPlatform, broker_url: &str) -> TestApp {
    let settings = EdgeSettings::default();
    let node = switchboard::broker::build_node(broker_url, &settings, broker::NodeSettings::new())
        .await
        .expect("joins the cluster");
    let catalog = PgCatalog::new(platform.pool.clone(), platform.secrets.clone());
    tokio::spawn(catalog.clone().listen());
    let catalog: Arc<dyn AppCatalog> = catalog;
    let parts = Parts {
        edge: Some((catalog, settings)),
        control: None,
        usage: Some(Arc::new(PgUsageSink::new(&platform.pool))),
        webhooks: None,
    };
    let application =
        Application::build_on("127.0.0.1", 0, parts, Some(node)).expect("server binds");
    let port = application.port();
    let stopper = application.stopper();
    tokio::spawn(application.run_until_stopped());
    TestApp {
        port,
        http: reqwest::Client::new(),
        stopper,
    }
}

/// The app's highest minute peak and its connections opened, over every stored minute.
async fn peak_and_opened(platform: &TestPlatform, app_id: &str) -> (i64, i64) {
    // A connection of its own: the shared pool's may belong to the stopped servers' runtimes.
    let mut conn = PgConnection::connect_with(&platform.pool.connect_options())
        .await
        .unwrap();
    sqlx::query_as(
        "SELECT COALESCE(MAX(peak_connections), 0)::bigint, \
         COALESCE(SUM(connections_opened), 0)::bigint FROM usage_minutes WHERE app_id = $1",
    )
    .bind(app_id)
    .fetch_one(&mut conn)
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_peak_of_connections_is_the_clusters_across_two_edges() {
    let platform = spawn_platform().await;
    let redis = RedisServer::start();
    let (_, created) = platform.account_with_app("peaks@example.com", None).await;
    let (app_id, key) = (&created.app.id, &created.key);
    let edge_a = edge_on(&platform, &redis.url()).await;
    let edge_b = edge_on(&platform, &redis.url()).await;

    // Three on A, then two on B, all open at once: five in the cluster, at most three on one
    // node.
    let mut clients: Vec<WsClient> = Vec::new();
    for edge in [&edge_a, &edge_a, &edge_a, &edge_b, &edge_b] {
        clients.push(edge.connected(key).await.0);
    }
    edge_a.stopper.stop().await;
    edge_b.stopper.stop().await;
    drop(clients);

    let (peak, opened) = peak_and_opened(&platform, app_id).await;
    assert_eq!(opened, 5, "both edges' rows are stored");
    assert_eq!(peak, 5, "the cluster's peak, not one node's (3)");
}
