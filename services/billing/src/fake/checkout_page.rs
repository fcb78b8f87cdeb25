//! The fake's browser side: Stripe's hosted checkout page at the session's `url`, whose
//! "Pay" button completes the checkout, POSTs the events to the webhook endpoint set with
//! `FakeStripe::deliver_webhooks_to` (signed, in Stripe's order; unless held, see
//! `delivery.rs`) and sends the browser to the session's `success_url`, as Stripe does. For
//! browser tests of the upgrade.

use actix_web::{HttpResponse, web};

use crate::fake::routes::Shared;

pub(super) fn configure(config: &mut web::ServiceConfig) {
    config
        .route("/checkout/{session}", web::get().to(page))
        .route("/checkout/{session}/pay", web::post().to(pay));
}

async fn page(session: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let found = shared
        .state
        .lock()
        .expect("fake stripe state")
        .checkout_sessions
        .get(session.as_str())
        .map(|session| session["status"] == "open");
    match found {
        Some(true) => HttpResponse::Ok().content_type("text/html; charset=utf-8").body(format!(
            "<!doctype html><title>Fake Stripe Checkout</title><h1>Fake Stripe Checkout</h1>\
             <form method=post action=\"/checkout/{id}/pay\"><button id=pay type=submit>Pay</button></form>",
            id = html_escape(&session)
        )),
        Some(false) => HttpResponse::Gone().body("this checkout is complete"),
        None => HttpResponse::NotFound().body("no such checkout"),
    }
}

async fn pay(session: web::Path<String>, shared: web::Data<Shared>) -> HttpResponse {
    let success_url = {
        let mut state = shared.state.lock().expect("fake stripe state");
        let Some(events) = state.complete_checkout(&session) else {
            return HttpResponse::NotFound().body("no open checkout");
        };
        state.queue_events(events);
        state.checkout_sessions[session.as_str()]["success_url"]
            .as_str()
            .unwrap_or("/")
            .to_owned()
    };
    // Sent before the browser is redirected (unless held), so a test that sees the redirect
    // knows Stripe has spoken.
    crate::fake::delivery::deliver_pending(&shared).await;
    HttpResponse::SeeOther()
        .insert_header(("location", success_url))
        .finish()
}

fn html_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('"', "&quot;")
}
