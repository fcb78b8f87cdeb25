//! Apps given on the command line beside the database's: they must not take a database app's
//! id or key, or they would share that tenant's channels (the edge keys everything by app id).

use sqlx::PgPool;
use tenancy::AppSpec;

use crate::repository::{apps, keys};

/// The first id the `app_ids` sequence hands out; every database app id is a number from here.
const FIRST_DATABASE_APP_ID: u64 = 100_001;

/// Why each static app would clash with the database's apps, now or later; empty when none
/// does. A numeric id at or above the sequence's start is refused too: a future app would get
/// it.
pub async fn static_app_clashes(pool: &PgPool, specs: &[AppSpec]) -> sqlx::Result<Vec<String>> {
    let mut clashes = Vec::new();
    let ids: Vec<String> = specs.iter().map(|spec| spec.id.to_string()).collect();
    let keys: Vec<String> = specs.iter().map(|spec| spec.key.to_string()).collect();
    let mut conn = pool.acquire().await?;
    let taken_ids = apps::existing_ids(&mut conn, &ids).await?;
    let taken_keys = keys::existing_keys(&mut conn, &keys).await?;
    for id in &taken_ids {
        clashes.push(format!(
            "static app id {id:?} is the id of an app in the database"
        ));
    }
    for id in &ids {
        let reserved = id
            .parse::<u64>()
            .is_ok_and(|number| number >= FIRST_DATABASE_APP_ID);
        if reserved && !taken_ids.contains(id) {
            clashes.push(format!(
                "static app id {id:?} is in the range the database gives its apps (numbers from {FIRST_DATABASE_APP_ID}); pick another id"
            ));
        }
    }
    for key in &taken_keys {
        clashes.push(format!(
            "static app key {key:?} is a key of an app in the database"
        ));
    }
    Ok(clashes)
}
