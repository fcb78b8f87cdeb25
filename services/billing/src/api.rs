//! `StripeApi`: every Stripe call billing makes, through the real `async-stripe` client (its
//! base URL from `STRIPE_API_BASE`, so tests point it at `fake::FakeStripe`).

use std::collections::HashMap;

use stripe::{Client, ClientBuilder, IdempotencyKey, RequestStrategy, StripeRequest};
use stripe_billing::billing_meter::{
    CreateBillingMeter, CreateBillingMeterCustomerMapping, CreateBillingMeterCustomerMappingType,
    CreateBillingMeterDefaultAggregation, CreateBillingMeterDefaultAggregationFormula,
    CreateBillingMeterValueSettings,
};
use stripe_billing::billing_meter_event::CreateBillingMeterEvent;
use stripe_billing::billing_meter_event_summary::ListIdBillingMeterEventSummary;
use stripe_billing::billing_portal_session::CreateBillingPortalSession;
use stripe_billing::invoice::ListInvoice;
use stripe_billing::subscription::{
    RetrieveSubscription, UpdateSubscription, UpdateSubscriptionItems,
    UpdateSubscriptionPaymentBehavior, UpdateSubscriptionProrationBehavior,
};
use stripe_billing::subscription_schedule::{
    CreateSubscriptionSchedule, ReleaseSubscriptionSchedule, UpdateSubscriptionSchedule,
    UpdateSubscriptionSchedulePhases, UpdateSubscriptionSchedulePhasesEndDate,
    UpdateSubscriptionSchedulePhasesItems, UpdateSubscriptionSchedulePhasesStartDate,
};
use stripe_checkout::checkout_session::{CreateCheckoutSession, CreateCheckoutSessionLineItems};
use stripe_core::customer::CreateCustomer;
use stripe_product::price::{
    CreatePrice, CreatePriceRecurring, CreatePriceRecurringInterval, CreatePriceRecurringUsageType,
};
use stripe_product::product::CreateProduct;

use crate::objects::{
    CheckoutSession, Created, Invoice, List, Meter, MeterEvent, MeterEventSummary, PortalSession,
    Subscription, SubscriptionSchedule,
};

/// The meter event payload key naming the customer (Stripe's default mapping).
pub const CUSTOMER_PAYLOAD_KEY: &str = "stripe_customer_id";
/// The meter event payload key holding the quantity (Stripe's default).
pub const VALUE_PAYLOAD_KEY: &str = "value";

/// Stripe's production API.
pub const DEFAULT_API_BASE: &str = "https://api.stripe.com/";

/// A Stripe call failed: `retryable` when trying the same request again may succeed.
#[derive(Debug, thiserror::Error)]
#[error("stripe: {message}")]
pub struct StripeFailure {
    pub message: String,
    pub status: Option<u16>,
    pub retryable: bool,
}

impl From<stripe::StripeError> for StripeFailure {
    fn from(error: stripe::StripeError) -> Self {
        let status = match &error {
            stripe::StripeError::Stripe(_, status) => Some(*status),
            _ => None,
        };
        let retryable = match status {
            Some(status) => matches!(status, 409 | 429 | 500..=599),
            None => true,
        };
        Self {
            message: error.to_string(),
            status,
            retryable,
        }
    }
}

pub type StripeResult<T> = Result<T, StripeFailure>;

/// What a checkout needs: who pays, what they buy, where the browser goes after.
#[derive(Debug, Clone)]
pub struct CheckoutRequest<'a> {
    pub customer_id: &'a str,
    pub account_id: &'a str,
    pub plan_id: &'a str,
    /// The flat monthly price, then each metered price.
    pub price_ids: &'a [String],
    pub success_url: &'a str,
    pub cancel_url: &'a str,
}

#[derive(Clone)]
pub struct StripeApi {
    client: Client,
}

impl std::fmt::Debug for StripeApi {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StripeApi { .. }")
    }
}

impl StripeApi {
    /// A client for `secret_key` at `api_base` (ends with `/`; Stripe's own by default).
    pub fn new(secret_key: &str, api_base: &str) -> StripeResult<Self> {
        let base = if api_base.ends_with('/') {
            api_base.to_owned()
        } else {
            format!("{api_base}/")
        };
        let client = ClientBuilder::new(secret_key)
            .url(base)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self { client })
    }

    async fn send<T: miniserde::Deserialize>(
        &self,
        request: &impl StripeRequest,
        idempotency_key: Option<&str>,
    ) -> StripeResult<T> {
        let strategy = match idempotency_key {
            Some(key) => RequestStrategy::Idempotent(IdempotencyKey::new(key).map_err(|e| {
                StripeFailure {
                    message: e.to_string(),
                    status: None,
                    retryable: false,
                }
            })?),
            None => RequestStrategy::Once,
        };
        Ok(request
            .build()
            .customize::<T>()
            .request_strategy(strategy)
            .send(&self.client)
            .await?)
    }

    /// A product with our own id (`sb_plan_<plan>`), so creating it twice is refused rather
    /// than duplicated; the idempotency key covers a retry of the same call.
    #[tracing::instrument(name = "stripe.create_product", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_product(&self, product_id: &str, name: &str) -> StripeResult<Created> {
        let request = CreateProduct::new(name).id(product_id);
        self.send(&request, Some(&format!("product-{product_id}")))
            .await
    }

    #[tracing::instrument(name = "stripe.create_flat_monthly_price", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_flat_monthly_price(
        &self,
        product_id: &str,
        cents: i64,
        lookup_key: &str,
    ) -> StripeResult<Created> {
        let request = CreatePrice::new(stripe_types::Currency::USD)
            .product(product_id)
            .unit_amount(cents)
            .lookup_key(lookup_key)
            .recurring(CreatePriceRecurring::new(
                CreatePriceRecurringInterval::Month,
            ));
        self.send(&request, Some(&format!("price-{lookup_key}")))
            .await
    }

    /// A monthly price billed per unit reported to `meter_id`; `unit_cents` may be a
    /// fraction ("0.00015").
    #[tracing::instrument(name = "stripe.create_metered_price", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_metered_price(
        &self,
        product_id: &str,
        meter_id: &str,
        unit_cents: &str,
        lookup_key: &str,
    ) -> StripeResult<Created> {
        let mut recurring = CreatePriceRecurring::new(CreatePriceRecurringInterval::Month);
        recurring.meter = Some(meter_id.to_owned());
        recurring.usage_type = Some(CreatePriceRecurringUsageType::Metered);
        let request = CreatePrice::new(stripe_types::Currency::USD)
            .product(product_id)
            .unit_amount_decimal(unit_cents)
            .lookup_key(lookup_key)
            .recurring(recurring);
        self.send(&request, Some(&format!("price-{lookup_key}")))
            .await
    }

    /// A meter summing the `value` of each event, per customer.
    #[tracing::instrument(name = "stripe.create_meter", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_meter(&self, event_name: &str, display_name: &str) -> StripeResult<Meter> {
        let request = CreateBillingMeter::new(
            CreateBillingMeterDefaultAggregation::new(
                CreateBillingMeterDefaultAggregationFormula::Sum,
            ),
            display_name,
            event_name,
        )
        .customer_mapping(CreateBillingMeterCustomerMapping::new(
            CUSTOMER_PAYLOAD_KEY,
            CreateBillingMeterCustomerMappingType::ById,
        ))
        .value_settings(CreateBillingMeterValueSettings::new(VALUE_PAYLOAD_KEY));
        self.send(&request, Some(&format!("meter-{event_name}")))
            .await
    }

    /// The account's customer; the idempotency key makes a retried creation return the first.
    #[tracing::instrument(name = "stripe.create_customer", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_customer(&self, account_id: &str, email: &str) -> StripeResult<Created> {
        let metadata = HashMap::from([("account_id".to_owned(), account_id.to_owned())]);
        let request = CreateCustomer::new().email(email).metadata(metadata);
        self.send(&request, Some(&format!("customer-{account_id}")))
            .await
    }

    #[tracing::instrument(name = "stripe.create_checkout_session", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_checkout_session(
        &self,
        checkout: &CheckoutRequest<'_>,
    ) -> StripeResult<CheckoutSession> {
        let metadata = HashMap::from([
            ("account_id".to_owned(), checkout.account_id.to_owned()),
            ("plan_id".to_owned(), checkout.plan_id.to_owned()),
        ]);
        let line_items = checkout
            .price_ids
            .iter()
            .enumerate()
            .map(|(index, price)| {
                let mut item = CreateCheckoutSessionLineItems::new();
                item.price = Some(price.clone());
                // Only the flat price has a quantity; metered prices are billed by usage.
                item.quantity = (index == 0).then_some(1);
                item
            })
            .collect::<Vec<_>>();
        let mut subscription_data =
            stripe_checkout::checkout_session::CreateCheckoutSessionSubscriptionData::new();
        subscription_data.metadata = Some(metadata.clone());
        let request = CreateCheckoutSession::new()
            .mode(stripe_shared::CheckoutSessionMode::Subscription)
            .customer(checkout.customer_id)
            .client_reference_id(checkout.account_id)
            .line_items(line_items)
            .metadata(metadata)
            .subscription_data(subscription_data)
            .success_url(checkout.success_url)
            .cancel_url(checkout.cancel_url);
        self.send(&request, None).await
    }

    #[tracing::instrument(name = "stripe.create_portal_session", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_portal_session(
        &self,
        customer_id: &str,
        return_url: &str,
    ) -> StripeResult<PortalSession> {
        let request = CreateBillingPortalSession::new()
            .customer(customer_id)
            .return_url(return_url);
        self.send(&request, None).await
    }

    #[tracing::instrument(name = "stripe.retrieve_subscription", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn retrieve_subscription(&self, subscription_id: &str) -> StripeResult<Subscription> {
        self.send(&RetrieveSubscription::new(subscription_id), None)
            .await
    }

    /// Cancels at the end of the paid period (`cancel: true`) or takes that back.
    #[tracing::instrument(name = "stripe.set_cancel_at_period_end", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn set_cancel_at_period_end(
        &self,
        subscription_id: &str,
        cancel: bool,
    ) -> StripeResult<Subscription> {
        let request = UpdateSubscription::new(subscription_id).cancel_at_period_end(cancel);
        self.send(&request, None).await
    }

    /// Replaces the subscription's prices with `price_ids` (the flat price first, as at
    /// checkout) at once, invoicing the prorated difference now. With
    /// `pending_if_incomplete`, Stripe keeps the old prices until that invoice is paid, so an
    /// upgrade never outruns its payment.
    pub async fn switch_prices_now(
        &self,
        subscription: &Subscription,
        price_ids: &[String],
    ) -> StripeResult<Subscription> {
        let removed = subscription.items.data.iter().map(|item| {
            let mut removal = UpdateSubscriptionItems::new();
            removal.id = Some(item.id.clone());
            removal.deleted = Some(true);
            removal
        });
        let added = price_ids.iter().enumerate().map(|(index, price)| {
            let mut item = UpdateSubscriptionItems::new();
            item.price = Some(price.clone());
            item.quantity = (index == 0).then_some(1);
            item
        });
        let request = UpdateSubscription::new(subscription.id.as_str())
            .items(removed.chain(added).collect::<Vec<_>>())
            .proration_behavior(UpdateSubscriptionProrationBehavior::AlwaysInvoice)
            .payment_behavior(UpdateSubscriptionPaymentBehavior::PendingIfIncomplete);
        self.send(&request, None).await
    }

    /// Moves the subscription to `price_ids` when its current period ends (Stripe's way: a
    /// subscription schedule of two phases, released after the second starts). Until then
    /// nothing changes; at the period's end Stripe updates the subscription and says so.
    pub async fn switch_prices_at_period_end(
        &self,
        subscription: &Subscription,
        price_ids: &[String],
    ) -> StripeResult<SubscriptionSchedule> {
        let schedule: SubscriptionSchedule = match &subscription.schedule {
            Some(existing) => {
                self.send(
                    &stripe_billing::subscription_schedule::RetrieveSubscriptionSchedule::new(
                        existing.as_str(),
                    ),
                    None,
                )
                .await?
            }
            None => {
                let request =
                    CreateSubscriptionSchedule::new().from_subscription(subscription.id.as_str());
                self.send(&request, None).await?
            }
        };
        let period_end = subscription.current_period_end().unwrap_or_default();
        let phase_start = schedule
            .phases
            .first()
            .map_or(period_end, |phase| phase.start_date);
        let items = |prices: Vec<String>| {
            prices
                .into_iter()
                .enumerate()
                .map(|(index, price)| {
                    let mut item = UpdateSubscriptionSchedulePhasesItems::new();
                    item.price = Some(price);
                    item.quantity = (index == 0).then_some(1);
                    item
                })
                .collect::<Vec<_>>()
        };
        let current_prices: Vec<String> = subscription.price_ids().map(str::to_owned).collect();
        let mut current = UpdateSubscriptionSchedulePhases::new(items(current_prices));
        current.start_date = Some(UpdateSubscriptionSchedulePhasesStartDate::Timestamp(
            phase_start,
        ));
        current.end_date = Some(UpdateSubscriptionSchedulePhasesEndDate::Timestamp(
            period_end,
        ));
        let next = UpdateSubscriptionSchedulePhases::new(items(price_ids.to_vec()));
        let request = UpdateSubscriptionSchedule::new(schedule.id.as_str())
            .phases(vec![current, next])
            .end_behavior(stripe_shared::SubscriptionScheduleEndBehavior::Release);
        self.send(&request, None).await
    }

    /// Drops a pending change: the subscription carries on as it is.
    pub async fn release_schedule(&self, schedule_id: &str) -> StripeResult<SubscriptionSchedule> {
        self.send(&ReleaseSubscriptionSchedule::new(schedule_id), None)
            .await
    }

    /// Reports `value` units for the customer; Stripe keeps one event per `identifier`, so
    /// sending it again (after a crash, a timeout) never counts twice.
    #[tracing::instrument(name = "stripe.create_meter_event", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn create_meter_event(
        &self,
        event_name: &str,
        customer_id: &str,
        value: i64,
        identifier: &str,
        timestamp: i64,
    ) -> StripeResult<MeterEvent> {
        let payload = HashMap::from([
            (CUSTOMER_PAYLOAD_KEY.to_owned(), customer_id.to_owned()),
            (VALUE_PAYLOAD_KEY.to_owned(), value.to_string()),
        ]);
        let request = CreateBillingMeterEvent::new(event_name, payload)
            .identifier(identifier)
            .timestamp(timestamp);
        self.send(&request, Some(identifier)).await
    }

    /// What Stripe holds for the customer on the meter in `[start, end)` (unix seconds).
    #[tracing::instrument(name = "stripe.meter_total", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn meter_total(
        &self,
        meter_id: &str,
        customer_id: &str,
        start: i64,
        end: i64,
    ) -> StripeResult<f64> {
        let request =
            ListIdBillingMeterEventSummary::new(meter_id, customer_id, end, start).limit(100);
        let summaries: List<MeterEventSummary> = self.send(&request, None).await?;
        Ok(summaries
            .data
            .iter()
            .map(|summary| summary.aggregated_value)
            .sum())
    }

    /// The customer's latest invoices, newest first.
    #[tracing::instrument(name = "stripe.invoices", level = "debug", skip_all, fields(otel.kind = "client"))]
    pub async fn invoices(&self, customer_id: &str, limit: i64) -> StripeResult<Vec<Invoice>> {
        let request = ListInvoice::new().customer(customer_id).limit(limit);
        let list: List<Invoice> = self.send(&request, None).await?;
        Ok(list.data)
    }
}
