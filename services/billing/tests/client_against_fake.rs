//! The production client (`StripeApi`) against the fake, over HTTP: the requests parse on
//! the fake's side as Stripe's forms and the replies parse on ours.

use billing::StripeApi;
use billing::fake::FakeStripe;

async fn start() -> (FakeStripe, StripeApi) {
    let fake = FakeStripe::start("sk_test_client", "whsec_client")
        .await
        .expect("fake stripe");
    let api = StripeApi::new(fake.secret_key(), fake.base_url()).expect("client");
    (fake, api)
}

#[tokio::test]
async fn catalog_objects_are_created_once_and_a_repeated_product_is_refused() {
    let (fake, api) = start().await;
    let product = api
        .create_product("sb_plan_pro", "Pro")
        .await
        .expect("product");
    assert_eq!(product.id, "sb_plan_pro");
    let meter = api
        .create_meter("sb_messages", "Messages")
        .await
        .expect("meter");
    assert_eq!(meter.event_name, "sb_messages");
    let flat = api
        .create_flat_monthly_price(&product.id, 9900, "pro_flat")
        .await
        .expect("flat");
    let metered = api
        .create_metered_price(&product.id, &meter.id, "0.00015", "pro_messages")
        .await
        .expect("metered");
    fake.with_state(|state| {
        assert_eq!(state.prices[&flat.id]["unit_amount"], 9900);
        assert_eq!(
            state.prices[&metered.id]["recurring"]["usage_type"],
            "metered"
        );
        assert_eq!(
            state.prices[&metered.id]["recurring"]["meter"],
            meter.id.as_str()
        );
        assert_eq!(state.prices[&metered.id]["unit_amount_decimal"], "0.00015");
    });
    // The same call again is an idempotent replay: the same product, not an error.
    let again = api
        .create_product("sb_plan_pro", "Pro")
        .await
        .expect("replayed");
    assert_eq!(again.id, "sb_plan_pro");
    assert_eq!(fake.with_state(|state| state.products.len()), 1);
}

#[tokio::test]
async fn a_meter_event_sent_twice_counts_once() {
    let (fake, api) = start().await;
    let customer = api
        .create_customer("acct-1", "owner@example.com")
        .await
        .expect("customer");
    api.create_meter("sb_messages", "Messages")
        .await
        .expect("meter");
    for _ in 0..2 {
        api.create_meter_event("sb_messages", &customer.id, 1234, "usage-1", 1_700_000_000)
            .await
            .expect("meter event");
    }
    assert_eq!(
        fake.with_state(|state| state.meter_total(&customer.id, "sb_messages")),
        1234
    );
}

#[tokio::test]
async fn an_outage_is_a_retryable_failure_and_a_wrong_key_is_not() {
    let (fake, api) = start().await;
    fake.set_meter_outage(true);
    let failure = api
        .create_meter_event("sb_messages", "cus_x", 1, "usage-2", 1_700_000_000)
        .await
        .expect_err("outage");
    assert!(failure.retryable, "{failure:?}");
    let wrong = StripeApi::new("sk_test_wrong", fake.base_url()).expect("client");
    let failure = wrong
        .create_customer("acct", "a@example.com")
        .await
        .expect_err("401");
    assert_eq!(failure.status, Some(401));
    assert!(!failure.retryable);
}

#[tokio::test]
async fn checkout_then_subscription_and_invoices_read_back() {
    let (fake, api) = start().await;
    let customer = api
        .create_customer("acct-2", "owner@example.com")
        .await
        .expect("customer");
    let product = api
        .create_product("sb_plan_startup", "Startup")
        .await
        .expect("product");
    let flat = api
        .create_flat_monthly_price(&product.id, 2900, "startup_flat")
        .await
        .expect("price");
    let prices = vec![flat.id.clone()];
    let session = api
        .create_checkout_session(&billing::CheckoutRequest {
            customer_id: &customer.id,
            account_id: "acct-2",
            plan_id: "startup",
            price_ids: &prices,
            success_url: "http://localhost/ok",
            cancel_url: "http://localhost/cancel",
        })
        .await
        .expect("session");
    assert!(
        session
            .url
            .as_deref()
            .is_some_and(|url| url.contains(&session.id))
    );
    let events = fake.complete_checkout(&session.id).expect("completed");
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "checkout.session.completed",
            "customer.subscription.created",
            "invoice.paid"
        ]
    );
    let completed: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    let subscription_id = completed["data"]["object"]["subscription"]
        .as_str()
        .unwrap();
    let subscription = api
        .retrieve_subscription(subscription_id)
        .await
        .expect("subscription");
    assert_eq!(subscription.status, "active");
    assert_eq!(subscription.metadata["plan_id"], "startup");
    assert_eq!(
        subscription.price_ids().collect::<Vec<_>>(),
        [flat.id.as_str()]
    );
    assert!(subscription.current_period_end().is_some());
    let canceled = api
        .set_cancel_at_period_end(subscription_id, true)
        .await
        .expect("cancel");
    assert!(canceled.cancel_at_period_end);
    let invoices = api.invoices(&customer.id, 10).await.expect("invoices");
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0].amount_paid, 2900);
    let portal = api
        .create_portal_session(&customer.id, "http://localhost/back")
        .await
        .expect("portal");
    assert!(portal.url.starts_with(fake.base_url()));
}

/// A subscribed customer on `cents` a month: the subscription id and a dearer and a cheaper
/// price of other products.
async fn subscribed(fake: &FakeStripe, api: &StripeApi) -> (String, String, String) {
    let customer = api
        .create_customer("acct-3", "owner@example.com")
        .await
        .expect("customer");
    let mut prices = Vec::new();
    for (plan, cents) in [("pro", 9900), ("business", 29900), ("startup", 2900)] {
        let product = api
            .create_product(&format!("sb_plan_{plan}"), plan)
            .await
            .expect("product");
        let price = api
            .create_flat_monthly_price(&product.id, cents, &format!("{plan}_flat"))
            .await
            .expect("price");
        prices.push(price.id);
    }
    let session = api
        .create_checkout_session(&billing::CheckoutRequest {
            customer_id: &customer.id,
            account_id: "acct-3",
            plan_id: "pro",
            price_ids: &prices[..1],
            success_url: "http://localhost/ok",
            cancel_url: "http://localhost/cancel",
        })
        .await
        .expect("session");
    let events = fake.complete_checkout(&session.id).expect("completed");
    let completed: serde_json::Value = serde_json::from_str(&events[0].payload).unwrap();
    let subscription = completed["data"]["object"]["subscription"]
        .as_str()
        .unwrap()
        .to_owned();
    (subscription, prices[1].clone(), prices[2].clone())
}

#[tokio::test]
async fn prices_switched_now_invoice_the_difference_and_stripe_says_so() {
    let (fake, api) = start().await;
    let (subscription_id, dearer, _) = subscribed(&fake, &api).await;
    let subscription = api.retrieve_subscription(&subscription_id).await.unwrap();
    let switched = api
        .switch_prices_now(&subscription, std::slice::from_ref(&dearer))
        .await
        .expect("switched");
    assert_eq!(switched.price_ids().collect::<Vec<_>>(), [dearer.as_str()]);
    let events = fake.take_events();
    let kinds: Vec<&str> = events.iter().map(|event| event.kind.as_str()).collect();
    assert_eq!(kinds, ["customer.subscription.updated", "invoice.paid"]);
    let invoice: serde_json::Value = serde_json::from_str(&events[1].payload).unwrap();
    assert_eq!(invoice["data"]["object"]["amount_paid"], 29900 - 9900);
    assert!(fake.take_events().is_empty(), "taken once");
}

#[tokio::test]
async fn prices_switched_at_period_end_wait_for_it_through_a_schedule() {
    let (fake, api) = start().await;
    let (subscription_id, _, cheaper) = subscribed(&fake, &api).await;
    let subscription = api.retrieve_subscription(&subscription_id).await.unwrap();
    let original: Vec<String> = subscription.price_ids().map(str::to_owned).collect();
    let schedule = api
        .switch_prices_at_period_end(&subscription, std::slice::from_ref(&cheaper))
        .await
        .expect("scheduled");
    assert_eq!(schedule.phases.len(), 2);
    assert_eq!(
        schedule.phases[0].end_date,
        subscription.current_period_end()
    );
    let waiting = api.retrieve_subscription(&subscription_id).await.unwrap();
    assert_eq!(waiting.schedule.as_deref(), Some(schedule.id.as_str()));
    assert_eq!(
        waiting.price_ids().collect::<Vec<_>>(),
        original.iter().map(String::as_str).collect::<Vec<_>>(),
        "nothing changes before the period ends"
    );
    fake.end_period(&subscription_id).expect("renewed");
    let moved = api.retrieve_subscription(&subscription_id).await.unwrap();
    assert_eq!(moved.price_ids().collect::<Vec<_>>(), [cheaper.as_str()]);
    assert!(
        moved.schedule.is_none(),
        "released after its last phase began"
    );

    // A schedule made and released changes nothing.
    let again = api
        .switch_prices_at_period_end(&moved, &original)
        .await
        .expect("scheduled again");
    let released = api.release_schedule(&again.id).await.expect("released");
    assert_eq!(released.status, "released");
    fake.end_period(&subscription_id).expect("renewed");
    let kept = api.retrieve_subscription(&subscription_id).await.unwrap();
    assert_eq!(kept.price_ids().collect::<Vec<_>>(), [cheaper.as_str()]);
}
