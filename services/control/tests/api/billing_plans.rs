//! Paid plans changed inside the subscription (an upgrade at once, a downgrade at the
//! period's end, each applied from Stripe's webhook) and new apps of a subscribed account on
//! the account's plan, through the fake Stripe.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::billing_support::spawn_billing;

#[tokio::test]
async fn an_upgrade_applies_at_once_from_the_webhook_with_the_difference_invoiced() {
    let test = spawn_billing().await;
    let (caller, app_id, _) = test.subscribed("upgrader@example.com", "pro").await;
    let response = test
        .app
        .post(
            &caller,
            "/v1/billing/change-plan",
            json!({"plan": "business"}),
        )
        .await;
    assert!(response.ok(StatusCode::OK)["scheduled_plan"].is_null());
    assert_eq!(
        test.app_plan(&app_id).await,
        "pro",
        "the answer alone changes no app: Stripe's webhook does"
    );
    let events = test.fake.take_events();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["customer.subscription.updated", "invoice.paid"]);
    test.deliver_all(&events).await;
    assert_eq!(test.app_plan(&app_id).await, "business");

    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(StatusCode::OK);
    assert_eq!(summary["plan"], "business");
    assert_eq!(summary["projected_cents"], 29900);
    // Newest first: the proration (business's price less pro's), then the first invoice.
    assert_eq!(summary["invoices"][0]["amount_paid"], 29900 - 9900);
    assert_eq!(summary["invoices"][1]["amount_paid"], 9900);
}

#[tokio::test]
async fn a_downgrade_waits_for_the_period_end_then_applies_from_the_webhook() {
    let test = spawn_billing().await;
    let (caller, app_id, subscription) = test.subscribed("saver@example.com", "business").await;
    let response = test
        .app
        .post(&caller, "/v1/billing/change-plan", json!({"plan": "pro"}))
        .await;
    let summary = response.ok(StatusCode::OK);
    assert_eq!(summary["plan"], "business");
    assert_eq!(summary["scheduled_plan"], "pro");
    assert!(test.fake.take_events().is_empty(), "nothing changes yet");
    assert_eq!(test.app_plan(&app_id).await, "business");

    let renewal = test.fake.end_period(&subscription).unwrap();
    test.deliver_all(&renewal).await;
    assert_eq!(test.app_plan(&app_id).await, "pro");
    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(StatusCode::OK);
    assert_eq!(summary["plan"], "pro");
    assert!(summary["scheduled_plan"].is_null());
    assert_eq!(summary["invoices"][0]["amount_paid"], 9900);
    // The next period renews on pro: the schedule was released.
    test.deliver_all(&test.fake.end_period(&subscription).unwrap())
        .await;
    assert_eq!(test.app_plan(&app_id).await, "pro");
}

#[tokio::test]
async fn choosing_the_current_plan_again_drops_a_waiting_downgrade() {
    let test = spawn_billing().await;
    let (caller, app_id, subscription) = test.subscribed("undecided@example.com", "business").await;
    test.app
        .post(
            &caller,
            "/v1/billing/change-plan",
            json!({"plan": "startup"}),
        )
        .await
        .ok(StatusCode::OK);
    // Another cheaper plan replaces the waiting one.
    let instead = test
        .app
        .post(&caller, "/v1/billing/change-plan", json!({"plan": "pro"}))
        .await;
    assert_eq!(instead.ok(StatusCode::OK)["scheduled_plan"], "pro");
    let kept = test
        .app
        .post(
            &caller,
            "/v1/billing/change-plan",
            json!({"plan": "business"}),
        )
        .await;
    assert!(kept.ok(StatusCode::OK)["scheduled_plan"].is_null());
    test.deliver_all(&test.fake.end_period(&subscription).unwrap())
        .await;
    assert_eq!(test.app_plan(&app_id).await, "business");
}

#[tokio::test]
async fn plan_changes_need_a_paid_synced_plan_and_a_subscription() {
    let test = spawn_billing().await;
    let (unsubscribed, _) = test.app.signed_up_with_app("window@example.com", "a").await;
    let none = test
        .app
        .post(
            &unsubscribed,
            "/v1/billing/change-plan",
            json!({"plan": "pro"}),
        )
        .await;
    assert_eq!(none.status, StatusCode::CONFLICT);
    let (caller, _, subscription) = test.subscribed("owner@example.com", "pro").await;
    for (plan, status) in [
        ("sandbox", StatusCode::BAD_REQUEST),
        ("no-such-plan", StatusCode::BAD_REQUEST),
    ] {
        let response = test
            .app
            .post(&caller, "/v1/billing/change-plan", json!({"plan": plan}))
            .await;
        assert_eq!(response.status, status, "{plan}");
    }
    // Unpaid: no change until what is due is paid.
    test.deliver_all(&test.fake.fail_payment(&subscription).unwrap())
        .await;
    let unpaid = test
        .app
        .post(
            &caller,
            "/v1/billing/change-plan",
            json!({"plan": "business"}),
        )
        .await;
    assert!(
        unpaid
            .error(StatusCode::BAD_REQUEST)
            .contains("pay what is due")
    );
    let no_csrf = test
        .app
        .post(
            &caller.without_csrf(),
            "/v1/billing/change-plan",
            json!({"plan": "business"}),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn new_apps_of_a_subscribed_account_start_on_its_plan() {
    let test = spawn_billing().await;
    let (caller, _, subscription) = test.subscribed("grower@example.com", "startup").await;
    let (second, _, _) = test.app.app(&caller, "second").await;
    assert_eq!(test.app_plan(&second).await, "startup");
    let listed = test.app.get(&caller, &format!("/v1/apps/{second}")).await;
    assert_eq!(listed.ok(StatusCode::OK)["plan"], "startup");
    // The account's own plan may be picked for an app; another paid plan is still 402.
    let picked = test
        .app
        .request(
            &caller,
            Method::POST,
            "/v1/apps",
            Some(json!({"name": "third", "plan": "startup"})),
        )
        .await;
    assert_eq!(picked.ok(StatusCode::CREATED)["plan"], "startup");
    let dearer = test
        .app
        .request(
            &caller,
            Method::PUT,
            &format!("/v1/apps/{second}/plan"),
            Some(json!({"plan": "pro"})),
        )
        .await;
    assert_eq!(dearer.status, StatusCode::PAYMENT_REQUIRED);

    // Another account's subscription gives nothing to this one.
    let (other, _) = test
        .app
        .signed_up_with_app("neighbour@example.com", "n")
        .await;
    let (theirs, _, _) = test.app.app(&other, "theirs").await;
    assert_eq!(test.app_plan(&theirs).await, "sandbox");

    // After the subscription ends, new apps are on the free plan again.
    test.app
        .post(&caller, "/v1/billing/cancel", json!({"cancel": true}))
        .await
        .ok(StatusCode::OK);
    test.deliver_all(&test.fake.end_period(&subscription).unwrap())
        .await;
    let (later, _, _) = test.app.app(&caller, "later").await;
    assert_eq!(test.app_plan(&later).await, "sandbox");
}
