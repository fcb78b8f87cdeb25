//! Overage from the metering rollups to Stripe's meters: exactly the metered amount, once,
//! across a crash between reporting and marking and across a Stripe outage; and the
//! reconciliation of the two.

use std::sync::Arc;

use time::{Duration, OffsetDateTime};

use control::repository::billing_usage;
use control::usage::PgUsageSink;
use protocol::names::AppId;
use tenancy::{UsageMinute, UsageSink};

use crate::billing_support::spawn_billing;

/// The startup plan: 2,000,000 messages a day and 1,000 connections included.
const PLAN: &str = "startup";

fn minute_of(at: OffsetDateTime) -> i64 {
    at.unix_timestamp() / 60
}

#[tokio::test]
async fn metered_overage_reaches_stripe_exactly_once_across_a_crash_and_an_outage() {
    let test = spawn_billing().await;
    let (caller, app_id, _) = test.subscribed("metered@example.com", PLAN).await;
    let customer: String = sqlx::query_scalar("SELECT stripe_customer_id FROM billing_accounts")
        .fetch_one(&test.app.pool)
        .await
        .unwrap();
    // Traffic through the metering sink the edges flush to: today (the period's first day)
    // 2,500,000 messages and a peak of 1,300 connections; tomorrow 2,100,000 and 1,250.
    let today = OffsetDateTime::now_utc().replace_time(time::Time::from_hms(12, 0, 0).unwrap());
    let tomorrow = today + Duration::days(1);
    let app = AppId::parse(&app_id).unwrap();
    let minute = |at, published, delivered, peak| UsageMinute {
        app: app.clone(),
        minute: minute_of(at),
        peak_connections: peak,
        connections_opened: peak,
        messages_published: published,
        messages_delivered: delivered,
        bytes_out: 0,
    };
    let sink = Arc::new(PgUsageSink::new(&test.app.pool));
    sink.record(&[minute(today, 1_000_000, 1_000_000, 1_300)])
        .await
        .unwrap();
    sink.record(&[minute(today + Duration::minutes(1), 500_000, 0, 900)])
        .await
        .unwrap();
    sink.record(&[minute(tomorrow, 1_100_000, 1_000_000, 1_250)])
        .await
        .unwrap();
    let (expected_messages, expected_connections) = (500_000 + 100_000, 300);

    // The dashboard's summary projects the bill from the same rollups: $29 + 600,000 messages
    // at $1.50 a million (90 cents) + 300 connections at $10 a thousand (300 cents).
    let summary = test.app.get(&caller, "/v1/billing").await;
    let summary = summary.ok(reqwest::StatusCode::OK);
    assert_eq!(summary["usage"]["messages"], 2_500_000 + 2_100_000);
    assert_eq!(summary["usage"]["peak_connections"], 1_300);
    assert_eq!(summary["usage"]["overage_messages"], expected_messages);
    assert_eq!(
        summary["usage"]["overage_connections"],
        expected_connections
    );
    assert_eq!(summary["projected_cents"], 2900 + 90 + 300);

    let day_after = (tomorrow + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    // Only days that are over are reported: at the start of tomorrow, only today.
    assert_eq!(
        test.billing
            .enqueue_overage(tomorrow.replace_time(time::Time::MIDNIGHT))
            .await
            .unwrap(),
        2
    );
    assert_eq!(test.billing.enqueue_overage(day_after).await.unwrap(), 1);
    assert_eq!(
        test.billing.enqueue_overage(day_after).await.unwrap(),
        0,
        "each row once"
    );
    assert_eq!(test.app.count("billing_usage_outbox").await, 3);

    // A reporter sends a row and crashes before marking it.
    let meters = test.billing.meter_event_names().await.unwrap();
    let mut crashed = test.app.pool.begin().await.unwrap();
    let row = billing_usage::claim_next(&mut crashed)
        .await
        .unwrap()
        .unwrap();
    test.billing.send_usage_row(&row, &meters).await.unwrap();
    drop(crashed);

    // Then Stripe is down: nothing is marked, the error is kept.
    test.fake.set_meter_outage(true);
    let outcome = test.billing.report_usage(100).await.unwrap();
    assert_eq!((outcome.reported, outcome.failed), (0, 1));
    let pending: i64 = sqlx::query_scalar("SELECT count(*) FROM billing_usage_outbox WHERE reported_at IS NULL AND last_error IS NULL")
        .fetch_one(&test.app.pool)
        .await
        .unwrap();
    assert_eq!(pending, 2, "the failed row keeps its error; two untouched");

    test.fake.set_meter_outage(false);
    let outcome = test.billing.report_usage(100).await.unwrap();
    assert_eq!((outcome.reported, outcome.failed), (3, 0));
    assert_eq!(test.billing.report_usage(100).await.unwrap().reported, 0);

    let (messages, connections) = test.fake.with_state(|state| {
        (
            state.meter_total(&customer, "sb_messages"),
            state.meter_total(&customer, "sb_peak_connections"),
        )
    });
    assert_eq!(messages, expected_messages);
    assert_eq!(connections, expected_connections);
    assert_eq!(test.fake.with_state(|state| state.meter_events.len()), 3);

    let lines = test.billing.reconcile(day_after).await.unwrap();
    assert_eq!(lines.len(), 2);
    for line in &lines {
        assert_eq!(line.difference(), 0.0, "{line:?}");
        assert_eq!(line.metered, line.reported);
    }
}

#[tokio::test]
async fn reconcile_shows_what_is_not_reported_yet() {
    let test = spawn_billing().await;
    let (_, app_id, _) = test.subscribed("pending@example.com", PLAN).await;
    let today = OffsetDateTime::now_utc().replace_time(time::Time::from_hms(12, 0, 0).unwrap());
    let sink = PgUsageSink::new(&test.app.pool);
    sink.record(&[UsageMinute {
        app: AppId::parse(&app_id).unwrap(),
        minute: minute_of(today),
        peak_connections: 10,
        connections_opened: 10,
        messages_published: 2_000_042,
        messages_delivered: 0,
        bytes_out: 0,
    }])
    .await
    .unwrap();
    let tomorrow = (today + Duration::days(1)).replace_time(time::Time::MIDNIGHT);
    test.billing.enqueue_overage(tomorrow).await.unwrap();
    let lines = test.billing.reconcile(tomorrow).await.unwrap();
    let messages = lines.iter().find(|line| line.meter == "messages").unwrap();
    assert_eq!(
        (messages.metered, messages.reported, messages.stripe),
        (42, 0, 0.0)
    );
    assert_eq!(messages.difference(), 42.0);
}
