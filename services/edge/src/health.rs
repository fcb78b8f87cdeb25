//! `GET /healthz`: liveness, and what this node reports about the services it depends on.
//!
//! A dependency in trouble (the cluster broker's Redis unreachable, …) is reported, not fatal:
//! the node keeps serving what it can locally, so `/healthz` stays 200 (a restart would not
//! bring Redis back) and says `"degraded"` with each trouble; `/metrics` has
//! `switchboard_dependency_trouble{dependency}` (0/1). Whatever watches a dependency calls
//! `trouble` when it fails and `recovered` when it is back, e.g. the broker's reconnect loop with
//! `EdgeState::health`. Dependencies are names fixed in code, so the map and the metric's labels
//! are bounded.

use std::collections::BTreeMap;
use std::sync::Mutex;

use actix_web::http::header;
use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

/// Longest trouble description kept (an error's text can be anything).
const MAX_DESCRIPTION: usize = 200;

/// Each dependency ever reported, with its trouble if it is in trouble now.
#[derive(Debug, Default)]
pub struct Health {
    dependencies: Mutex<BTreeMap<&'static str, Option<String>>>,
    /// Counts every change of a dependency's state, for whoever waits on one (`changes`).
    changes: tokio::sync::watch::Sender<u64>,
}

impl Health {
    /// `dependency` is failing (logged when it starts).
    pub fn trouble(&self, dependency: &'static str, what: &str) {
        let what: String = what.chars().take(MAX_DESCRIPTION).collect();
        let mut dependencies = self.dependencies.lock().expect("health lock poisoned");
        let before = dependencies.insert(dependency, Some(what.clone()));
        drop(dependencies);
        if !matches!(before, Some(Some(_))) {
            self.changes.send_modify(|count| *count += 1);
            tracing::warn!(dependency, trouble = %what, "dependency in trouble; serving what this node can alone");
        }
    }

    /// `dependency` works again (logged when it was in trouble).
    pub fn recovered(&self, dependency: &'static str) {
        let mut dependencies = self.dependencies.lock().expect("health lock poisoned");
        let before = dependencies.insert(dependency, None);
        drop(dependencies);
        if matches!(before, Some(Some(_))) {
            self.changes.send_modify(|count| *count += 1);
            tracing::info!(dependency, "dependency recovered");
        }
    }

    /// `dependency` is watched from now on: listed (and in `/metrics`) as fine until a trouble
    /// is reported, so its series exist before anything goes wrong.
    pub fn watching(&self, dependency: &'static str) {
        let mut dependencies = self.dependencies.lock().expect("health lock poisoned");
        dependencies.entry(dependency).or_insert(None);
    }

    /// Notified whenever a dependency falls into trouble or recovers (a test, or anything
    /// that reacts to the node's health, waits on it instead of polling `/healthz`).
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
    }

    /// Every dependency reported so far, by name, with its current trouble.
    pub fn dependencies(&self) -> Vec<(&'static str, Option<String>)> {
        let dependencies = self.dependencies.lock().expect("health lock poisoned");
        dependencies
            .iter()
            .map(|(name, trouble)| (*name, trouble.clone()))
            .collect()
    }

    /// The `/healthz` body: `{"status":"ok"}`, or `"degraded"` with `troubles` by dependency.
    fn report(&self) -> Value {
        let troubles: serde_json::Map<String, Value> = self
            .dependencies()
            .into_iter()
            .filter_map(|(name, trouble)| Some((name.to_owned(), Value::from(trouble?))))
            .collect();
        if troubles.is_empty() {
            return json!({ "status": "ok" });
        }
        json!({ "status": "degraded", "troubles": troubles })
    }
}

/// `GET /healthz`: 200 while the process serves, with what is in trouble (see the module doc).
pub async fn healthz(health: web::Data<Health>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(health.report())
}

/// The cluster's Redis, as the broker's health watch reports it: dependency `broker`.
impl broker::HealthReport for Health {
    fn trouble(&self, what: &str) {
        Health::trouble(self, "broker", what);
    }

    fn recovered(&self) {
        Health::recovered(self, "broker");
    }

    fn pinged(&self, round_trip: std::time::Duration) {
        crate::metrics::redis_pinged(round_trip);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_trouble_is_reported_until_the_dependency_recovers() {
        let health = Health::default();
        assert_eq!(health.report(), json!({"status":"ok"}));
        health.trouble("broker", &format!("redis unreachable {}", "x".repeat(500)));
        let report = health.report();
        assert_eq!(report["status"], "degraded");
        let trouble = report["troubles"]["broker"].as_str().unwrap();
        assert!(trouble.starts_with("redis unreachable"));
        assert_eq!(trouble.chars().count(), MAX_DESCRIPTION, "cut");
        health.recovered("broker");
        assert_eq!(health.report(), json!({"status":"ok"}));
        assert_eq!(health.dependencies(), [("broker", None)], "still listed");
    }
}
