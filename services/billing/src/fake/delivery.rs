//! How the fake sends what Stripe would send: the events waiting in `FakeState::pending_events`
//! go, signed, to the endpoint set with `FakeStripe::deliver_webhooks_to` (one at a time, in
//! order), unless deliveries are held; `/_fake/webhooks/*` lets a test out of process hold
//! them and release them when it is ready to see the webhook's effect.

use actix_web::{HttpResponse, web};
use serde_json::json;

use crate::fake::routes::Shared;

pub(super) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/_fake/webhooks", web::get().to(status))
        .route("/_fake/webhooks/hold", web::post().to(hold))
        .route("/_fake/webhooks/release", web::post().to(release));
}

/// Delivers every pending event when there is an endpoint and nothing holds them; answers
/// how many were sent (a failed POST is logged: Stripe would retry, the test sees it missing).
pub(super) async fn deliver_pending(shared: &Shared) -> usize {
    let (endpoint, events) = {
        let mut state = shared.state.lock().expect("fake stripe state");
        match (&state.webhook_endpoint, state.hold_webhooks) {
            (Some(endpoint), false) => {
                let endpoint = endpoint.clone();
                (endpoint, state.pending_events.drain(..).collect::<Vec<_>>())
            }
            (Some(_), true) | (None, _) => return 0,
        }
    };
    let client = reqwest::Client::new();
    for event in &events {
        let signed = shared.signer.sign(event);
        let delivered = client
            .post(&endpoint)
            .header("content-type", "application/json")
            .header("stripe-signature", signed.signature)
            .body(signed.payload)
            .send()
            .await;
        match delivered {
            Ok(response) if response.status().is_success() => {}
            Ok(response) => {
                tracing::warn!(status = %response.status(), kind = %signed.kind, "fake stripe: webhook refused")
            }
            Err(error) => tracing::warn!(%error, "fake stripe: webhook not delivered"),
        }
    }
    events.len()
}

/// Delivers the pending events later, as Stripe does after answering the request.
pub(super) fn deliver_soon(shared: web::Data<Shared>) {
    actix_web::rt::spawn(async move {
        deliver_pending(&shared).await;
    });
}

async fn status(shared: web::Data<Shared>) -> HttpResponse {
    let state = shared.state.lock().expect("fake stripe state");
    HttpResponse::Ok().json(json!({
        "held": state.hold_webhooks,
        "pending": state.pending_events.iter().map(|event| &event["type"]).collect::<Vec<_>>(),
    }))
}

async fn hold(shared: web::Data<Shared>) -> HttpResponse {
    shared
        .state
        .lock()
        .expect("fake stripe state")
        .hold_webhooks = true;
    HttpResponse::Ok().json(json!({ "held": true }))
}

/// Stops holding and delivers what waited; answers once they were all sent.
async fn release(shared: web::Data<Shared>) -> HttpResponse {
    shared
        .state
        .lock()
        .expect("fake stripe state")
        .hold_webhooks = false;
    let delivered = deliver_pending(&shared).await;
    HttpResponse::Ok().json(json!({ "delivered": delivered }))
}
