//! Whether this node takes new clients, and `GET /readyz`, which tells a load balancer.
//!
//! A drain (SIGTERM; the steps are `switchboard::startup::Stopper::drain`) first marks the node
//! draining: `/readyz` answers 503 and every new WebSocket or carrier session is refused with
//! 4200 (`connection::admit`), while connected clients and the HTTP API go on. Only after the
//! drain delay, once the load balancer has stopped sending clients here, are the connected
//! ones closed with 4200, so pusher-js reconnects at once, to another node.

use std::sync::atomic::{AtomicBool, Ordering};

use actix_web::http::header;
use actix_web::{HttpResponse, web};

/// This node's readiness: ready from the start, draining for good once a drain has begun.
#[derive(Debug, Default)]
pub struct Readiness {
    draining: AtomicBool,
}

impl Readiness {
    /// Marks the node draining; true the first time (later calls change nothing).
    pub fn start_draining(&self) -> bool {
        !self.draining.swap(true, Ordering::SeqCst)
    }

    /// Whether a drain has begun: new clients are refused and `/readyz` answers 503.
    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }
}

/// `GET /readyz`: 200 `{"status":"ready"}` while the node takes clients, 503
/// `{"status":"draining"}` once it is draining (for good: a drained process exits). `/healthz` stays the
/// liveness check: a draining node is alive.
pub async fn readyz(readiness: web::Data<Readiness>) -> HttpResponse {
    if readiness.is_draining() {
        return HttpResponse::ServiceUnavailable()
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .json(serde_json::json!({ "status": "draining" }));
    }
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(serde_json::json!({ "status": "ready" }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drain_begins_once_and_never_ends() {
        let readiness = Readiness::default();
        assert!(!readiness.is_draining());
        assert!(readiness.start_draining());
        assert!(
            !readiness.start_draining(),
            "the second call is not a new drain"
        );
        assert!(readiness.is_draining());
    }
}
