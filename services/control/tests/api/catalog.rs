//! The edge's Postgres catalog: misses are remembered (bounded) until a NOTIFY says the name
//! exists, so floods of unknown keys or ids cost one query per name.

use std::sync::Arc;

use control::catalog::PgCatalog;
use protocol::names::{AppId, AppKey};
use tenancy::AppCatalog;

use crate::helpers::spawn_app;

async fn listening_catalog(app: &crate::helpers::TestApp) -> Arc<PgCatalog> {
    let catalog = PgCatalog::new(app.pool.clone(), app.secrets.clone());
    tokio::spawn(catalog.clone().listen());
    catalog.until_listening().await;
    catalog
}

#[tokio::test]
async fn an_unknown_key_costs_one_query_until_its_creation_is_notified() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (app_id, _, _) = app.app(&session, "chat").await;
    let catalog = listening_catalog(&app).await;
    let key = AppKey::parse("0123456789abcdef0123").unwrap();

    for _ in 0..200 {
        assert!(catalog.find_by_key(&key).await.unwrap().is_none());
    }
    assert_eq!(catalog.miss_queries(), 1, "the miss is remembered");
    // Other apps' changes do not forget it (a reload used to clear every miss).
    let (other_id, _, _) = app.app(&session, "other").await;
    let mut changes = catalog.changes().unwrap();
    sqlx::query("UPDATE apps SET name = 'renamed' WHERE id = $1")
        .bind(&other_id)
        .execute(&app.pool)
        .await
        .unwrap();
    while changes.recv().await.unwrap().as_str() != other_id {}
    assert!(catalog.find_by_key(&key).await.unwrap().is_none());
    assert_eq!(catalog.miss_queries(), 1);

    // The key is created: its NOTIFY makes it known without another miss.
    let sealed = app.secrets.seal(key.as_str(), "new secret");
    let mut conn = app.pool.acquire().await.unwrap();
    control::repository::keys::insert(
        &mut conn,
        &app_id,
        key.as_str(),
        &sealed.nonce,
        &sealed.ciphertext,
    )
    .await
    .unwrap();
    while changes.recv().await.unwrap().as_str() != app_id {}
    let found = catalog.find_by_key(&key).await.unwrap().expect("known now");
    assert_eq!(found.app.id.as_str(), app_id);
    assert_eq!(found.secret.expose(), "new secret");
    assert_eq!(catalog.miss_queries(), 1);
}

#[tokio::test]
async fn an_unknown_app_id_costs_one_query_until_its_creation_is_notified() {
    let app = spawn_app().await;
    let session = app.signed_up("ann@example.com").await;
    let (known_id, _, _) = app.app(&session, "chat").await;
    let catalog = listening_catalog(&app).await;
    let unknown = AppId::parse("424242").unwrap();

    for _ in 0..200 {
        assert!(catalog.find_by_id(&unknown).await.unwrap().is_none());
    }
    assert_eq!(catalog.miss_queries(), 1, "the miss is remembered");

    let mut changes = catalog.changes().unwrap();
    sqlx::query("INSERT INTO apps (id, account_id, name) SELECT '424242', account_id, 'made' FROM apps WHERE id = $1")
        .bind(&known_id)
        .execute(&app.pool)
        .await
        .unwrap();
    while changes.recv().await.unwrap().as_str() != "424242" {}
    let found = catalog
        .find_by_id(&unknown)
        .await
        .unwrap()
        .expect("known now");
    assert_eq!(found.id.as_str(), "424242");
    assert_eq!(catalog.miss_queries(), 1);
}
