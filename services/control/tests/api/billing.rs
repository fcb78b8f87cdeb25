//! Billing through a fake Stripe: checkout activates a plan only from its webhook, forged /
//! stale / replayed events, events out of order, a failed payment's grace period, cancelling
//! at the period's end, and billing off without keys.

use reqwest::StatusCode;
use serde_json::json;
use time::{Duration, OffsetDateTime};

use control::billing::BillingSettings;

use crate::billing_support::{RETURN_URL, spawn_billing, subscription_of};
use crate::helpers::{Caller, spawn_app};

#[tokio::test]
async fn without_both_stripe_keys_billing_is_off_and_its_routes_say_so() {
    assert!(BillingSettings::from_keys(None, Some("whsec"), None, RETURN_URL).is_none());
    assert!(BillingSettings::from_keys(Some("sk"), None, None, RETURN_URL).is_none());
    assert!(BillingSettings::from_keys(Some("sk"), Some(""), None, RETURN_URL).is_none());
    let on = BillingSettings::from_keys(Some("sk"), Some("whsec"), None, RETURN_URL).unwrap();
    assert_eq!(on.api_base, billing::DEFAULT_API_BASE);

    let app = spawn_app().await;
    let (caller, _) = app.signed_up_with_app("off@example.com", "a").await;
    let summary = app.get(&caller, "/v1/billing").await;
    assert_eq!(summary.ok(StatusCode::OK)["enabled"], false);
    let checkout = app
        .post(&caller, "/v1/billing/checkout", json!({"plan": "pro"}))
        .await;
    assert_eq!(checkout.status, StatusCode::NOT_FOUND);
    let webhook = app
        .post(&Caller::Anonymous, "/v1/stripe/webhook", json!({}))
        .await;
    assert_eq!(webhook.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn sync_stripe_is_idempotent() {
    let test = spawn_billing().await;
    let before = test
        .fake
        .with_state(|s| (s.products.len(), s.prices.len(), s.meters.len()));
    // Three paid plans: three products, three prices each; two meters.
    assert_eq!(before, (3, 9, 2));
    let again = test.billing.sync_stripe().await.expect("second sync");
    assert!(again.iter().all(|line| !line.created), "{again:?}");
    let after = test
        .fake
        .with_state(|s| (s.products.len(), s.prices.len(), s.meters.len()));
    assert_eq!(after, before);
    assert_eq!(test.app.count("billing_plan_prices").await, 3);
}

#[tokio::test]
async fn the_plan_becomes_active_from_the_webhook_not_from_the_checkout() {
    let test = spawn_billing().await;
    let (caller, app_id) = test.app.signed_up_with_app("buyer@example.com", "a").await;
    let session = test.checkout(&caller, "startup").await;
    // The browser is on Stripe's page: nothing is paid, nothing changes.
    assert_eq!(test.app_plan(&app_id).await, "sandbox");
    let events = test.fake.complete_checkout(&session).unwrap();
    test.deliver_all(&events).await;
    assert_eq!(test.app_plan(&app_id).await, "startup");

    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(StatusCode::OK);
    assert_eq!(summary["enabled"], true);
    assert_eq!(summary["plan"], "startup");
    assert_eq!(summary["status"], "active");
    assert_eq!(summary["projected_cents"], 2900);
    assert_eq!(summary["invoices"][0]["amount_paid"], 2900);
    assert!(
        summary["invoices"][0]["hosted_invoice_url"]
            .as_str()
            .unwrap()
            .starts_with(test.fake.base_url())
    );
    // A second checkout while subscribed is refused: changes go through the portal.
    let again = test
        .app
        .post(&caller, "/v1/billing/checkout", json!({"plan": "pro"}))
        .await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    let portal = test
        .app
        .post(&caller, "/v1/billing/portal", json!({}))
        .await;
    assert!(
        portal.ok(StatusCode::OK)["url"]
            .as_str()
            .unwrap()
            .starts_with(test.fake.base_url())
    );
}

#[tokio::test]
async fn a_paid_plan_needs_a_verified_email() {
    let test = spawn_billing().await;
    let (caller, _) = test
        .app
        .signed_up_with_app("unverified@example.com", "a")
        .await;
    let refused = test
        .app
        .post(&caller, "/v1/billing/checkout", json!({"plan": "pro"}))
        .await;
    assert!(refused.error(StatusCode::FORBIDDEN).contains("verify"));
    assert_eq!(test.fake.with_state(|s| s.checkout_sessions.len()), 0);
    test.checkout(&caller, "pro").await;
}

#[tokio::test]
async fn free_unknown_and_unsynced_plans_are_refused_at_checkout() {
    let test = spawn_billing().await;
    let (caller, _) = test.app.signed_up_with_app("picky@example.com", "a").await;
    for plan in ["sandbox", "no-such-plan"] {
        let response = test
            .app
            .post(&caller, "/v1/billing/checkout", json!({"plan": plan}))
            .await;
        assert_eq!(response.status, StatusCode::BAD_REQUEST, "{plan}");
    }
    sqlx::query("INSERT INTO plans SELECT 'enterprise', 'Enterprise', 99900, max_connections, messages_per_day, max_message_bytes, client_events_per_second, publish_requests_per_second, max_presence_members, max_channels_per_connection, history_events, history_seconds, burst_multiplier, webhooks_allowed, overage_cents_per_million_messages, overage_cents_per_thousand_connections, 9 FROM plans WHERE id = 'business'")
        .execute(&test.app.pool)
        .await
        .unwrap();
    let response = test
        .app
        .post(
            &caller,
            "/v1/billing/checkout",
            json!({"plan": "enterprise"}),
        )
        .await;
    assert!(
        response
            .error(StatusCode::BAD_REQUEST)
            .contains("sync-stripe")
    );
}

#[tokio::test]
async fn forged_stale_unsigned_and_replayed_events_change_nothing() {
    let test = spawn_billing().await;
    let (caller, app_id) = test.app.signed_up_with_app("target@example.com", "a").await;
    let session = test.checkout(&caller, "pro").await;
    let events = test.fake.complete_checkout(&session).unwrap();
    let completed = &events[0];

    let forged = billing::signature::sign(
        completed.payload.as_bytes(),
        "whsec_attacker",
        OffsetDateTime::now_utc().unix_timestamp(),
    );
    let response = test.deliver_raw(&completed.payload, Some(&forged)).await;
    assert_eq!(response.status, StatusCode::BAD_REQUEST);
    let event: serde_json::Value = serde_json::from_str(&completed.payload).unwrap();
    let stale = test
        .fake
        .sign_at(&event, OffsetDateTime::now_utc().unix_timestamp() - 301);
    assert_eq!(test.deliver(&stale).await.status, StatusCode::BAD_REQUEST);
    assert_eq!(
        test.deliver_raw(&completed.payload, None).await.status,
        StatusCode::BAD_REQUEST
    );
    let tampered = completed.payload.replace("\"pro\"", "\"business\"");
    assert_eq!(
        test.deliver_raw(&tampered, Some(&completed.signature))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(test.app.count("stripe_events").await, 0);
    assert_eq!(test.app_plan(&app_id).await, "sandbox");

    let first = test.deliver(completed).await;
    assert_eq!(first.ok(StatusCode::OK)["outcome"], "applied");
    let replayed = test.deliver(completed).await;
    assert_eq!(replayed.ok(StatusCode::OK)["outcome"], "duplicate");
    assert_eq!(test.app.count("stripe_events").await, 1);
    assert_eq!(test.app_plan(&app_id).await, "pro");
}

#[tokio::test]
async fn events_out_of_order_end_in_stripes_state() {
    let test = spawn_billing().await;
    let (caller, app_id) = test.app.signed_up_with_app("late@example.com", "a").await;
    let session = test.checkout(&caller, "startup").await;
    let events = test.fake.complete_checkout(&session).unwrap();
    let subscription = subscription_of(&events[0]);
    // The customer cancels at once and the period ends; Stripe's `deleted` arrives before
    // the checkout's own events.
    let canceled = test
        .billing
        .api()
        .set_cancel_at_period_end(&subscription, true)
        .await
        .unwrap();
    assert!(canceled.cancel_at_period_end);
    let deleted = test.fake.end_period(&subscription).unwrap();
    test.deliver_all(&deleted).await;
    // `deleted` before `checkout.session.completed`: the re-fetch says canceled.
    assert_eq!(test.app_plan(&app_id).await, "sandbox");
    for event in events.iter().rev() {
        assert_eq!(test.deliver(event).await.status, StatusCode::OK);
    }
    assert_eq!(
        test.app_plan(&app_id).await,
        "sandbox",
        "late events of a canceled subscription do not revive it"
    );
    let summary = test.app.get(&caller, "/v1/billing").await;
    assert_eq!(summary.ok(StatusCode::OK)["status"], "canceled");
}

#[tokio::test]
async fn subscription_updated_before_checkout_completed_ends_active() {
    let test = spawn_billing().await;
    let (caller, app_id) = test.app.signed_up_with_app("early@example.com", "a").await;
    let session = test.checkout(&caller, "business").await;
    let mut events = test.fake.complete_checkout(&session).unwrap();
    events.reverse();
    test.deliver_all(&events).await;
    assert_eq!(test.app_plan(&app_id).await, "business");
}

#[tokio::test]
async fn a_failed_payment_keeps_the_plan_through_grace_then_drops_to_free_until_paid() {
    let test = spawn_billing().await;
    let (caller, app_id, subscription) = test.subscribed("late-payer@example.com", "pro").await;
    test.deliver_all(&test.fake.fail_payment(&subscription).unwrap())
        .await;
    assert_eq!(
        test.app_plan(&app_id).await,
        "pro",
        "apps keep working through the grace period"
    );
    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(StatusCode::OK);
    assert_eq!(summary["status"], "past_due");
    assert!(summary["grace_ends_at"].is_string());
    assert_eq!(test.notices.kinds(), ["payment_failed"]);

    let now = OffsetDateTime::now_utc();
    assert_eq!(test.billing.enforce_grace_period(now).await.unwrap(), 0);
    assert_eq!(test.app_plan(&app_id).await, "pro");
    let after_grace = now + control::billing::DEFAULT_GRACE_PERIOD + Duration::minutes(1);
    assert_eq!(
        test.billing
            .enforce_grace_period(after_grace)
            .await
            .unwrap(),
        1
    );
    assert_eq!(test.app_plan(&app_id).await, "sandbox");
    assert_eq!(
        test.billing
            .enforce_grace_period(after_grace)
            .await
            .unwrap(),
        0,
        "once"
    );
    // A retried charge failing again keeps the apps on the free plan.
    test.deliver_all(&test.fake.fail_payment(&subscription).unwrap())
        .await;
    assert_eq!(test.app_plan(&app_id).await, "sandbox");

    test.deliver_all(&test.fake.pay(&subscription).unwrap())
        .await;
    assert_eq!(test.app_plan(&app_id).await, "pro");
    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(StatusCode::OK);
    assert_eq!(summary["downgraded"], false);
    assert!(summary["past_due_since"].is_null());
    assert_eq!(
        test.notices.kinds(),
        ["payment_failed", "downgraded", "restored"]
    );
}

#[tokio::test]
async fn cancelling_keeps_the_plan_until_the_period_ends() {
    let test = spawn_billing().await;
    let (caller, app_id, subscription) = test.subscribed("leaving@example.com", "startup").await;
    let response = test
        .app
        .post(&caller, "/v1/billing/cancel", json!({"cancel": true}))
        .await;
    assert_eq!(response.ok(StatusCode::OK)["cancel_at_period_end"], true);
    assert_eq!(test.app_plan(&app_id).await, "startup");
    test.deliver_all(&test.fake.end_period(&subscription).unwrap())
        .await;
    assert_eq!(test.app_plan(&app_id).await, "sandbox");
    let none = test
        .app
        .post(
            &Caller::Anonymous,
            "/v1/billing/cancel",
            json!({"cancel": true}),
        )
        .await;
    assert_eq!(none.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn the_fake_checkout_page_pays_delivers_the_events_and_returns_to_the_dashboard() {
    let test = spawn_billing().await;
    test.fake
        .deliver_webhooks_to(&format!("{}/v1/stripe/webhook", test.app.address));
    let (caller, app_id) = test
        .app
        .signed_up_with_app("browser@example.com", "a")
        .await;
    test.verify_every_email().await;
    let response = test
        .app
        .post(&caller, "/v1/billing/checkout", json!({"plan": "pro"}))
        .await;
    let url = response.ok(StatusCode::OK)["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let page = reqwest::get(&url).await.unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    assert!(page.text().await.unwrap().contains("id=pay"));
    let browser = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let paid = browser.post(format!("{url}/pay")).send().await.unwrap();
    assert_eq!(paid.status(), StatusCode::SEE_OTHER);
    let location = paid.headers()["location"].to_str().unwrap();
    assert_eq!(location, format!("{RETURN_URL}?checkout=success"));
    assert_eq!(test.app_plan(&app_id).await, "pro");
    assert_eq!(reqwest::get(&url).await.unwrap().status(), StatusCode::GONE);
}
