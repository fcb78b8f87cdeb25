//! Billing: the summary, checkout, changing plan, the customer portal, cancelling at the
//! period's end, and Stripe's webhook. Without Stripe keys the summary says `enabled: false` and the rest
//! answer 404.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::billing::{Billing, BillingSummary, WebhookOutcome};
use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};
use crate::service::ControlError;

#[derive(Debug, Deserialize, ToSchema)]
pub struct CheckoutRequest {
    /// A paid plan id from `GET /v1/plans`.
    #[schema(example = "pro")]
    pub plan: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct ChangePlanRequest {
    /// The paid plan to move the subscription to: a dearer one at once, a cheaper one at the
    /// period's end; the current plan drops a change still waiting.
    #[schema(example = "business")]
    pub plan: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RedirectLink {
    /// Where to send the browser (Stripe's page).
    pub url: String,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct CancelRequest {
    /// True cancels at the end of the paid period (the apps then drop to the free plan);
    /// false keeps the subscription going.
    pub cancel: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookReceipt {
    pub received: bool,
    /// `applied`, `duplicate` (seen before, not applied again) or `ignored`.
    pub outcome: String,
}

fn billing(state: &ControlState) -> Result<&Billing, ApiError> {
    state
        .billing
        .as_ref()
        .ok_or_else(|| ControlError::BillingDisabled.into())
}

/// The account's plan, this period's usage, the projected bill and its invoices.
#[utoipa::path(
    get, path = "/v1/billing", tag = "billing",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, body = BillingSummary),
        (status = 401, body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "billing_summary", skip_all, fields(account_id = %caller.account_id))]
pub async fn summary(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<web::Json<BillingSummary>, ApiError> {
    match &state.billing {
        Some(billing) => Ok(web::Json(billing.summary(caller.account_id).await?)),
        None => Ok(web::Json(crate::billing::disabled_summary())),
    }
}

/// Starts a Stripe Checkout for a paid plan and answers its URL. The plan becomes the
/// account's (every app's) only when Stripe's webhook confirms the payment.
#[utoipa::path(
    post, path = "/v1/billing/checkout", tag = "billing",
    security(("session" = []), ("bearer" = [])),
    request_body = CheckoutRequest,
    responses(
        (status = 200, body = RedirectLink),
        (status = 400, description = "unknown, free or unsynced plan; malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "email not verified, or missing `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "billing is not enabled here", body = ErrorBody),
        (status = 409, description = "already subscribed: use the portal", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "billing_checkout", skip_all, fields(account_id = %caller.account_id))]
pub async fn checkout(
    state: web::Data<ControlState>,
    caller: Caller,
    body: web::Json<CheckoutRequest>,
) -> Result<web::Json<RedirectLink>, ApiError> {
    let url = billing(&state)?
        .start_checkout(caller.account_id, &body.plan)
        .await?;
    Ok(web::Json(RedirectLink { url }))
}

/// A Stripe Customer Portal link: payment method, invoices.
#[utoipa::path(
    post, path = "/v1/billing/portal", tag = "billing",
    security(("session" = []), ("bearer" = [])),
    responses(
        (status = 200, body = RedirectLink),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "billing is not enabled here", body = ErrorBody),
        (status = 409, description = "the account has never subscribed", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "billing_portal", skip_all, fields(account_id = %caller.account_id))]
pub async fn portal(
    state: web::Data<ControlState>,
    caller: Caller,
) -> Result<web::Json<RedirectLink>, ApiError> {
    let url = billing(&state)?.portal_link(caller.account_id).await?;
    Ok(web::Json(RedirectLink { url }))
}

/// Cancels at the end of the paid period (a downgrade to the free plan then), or takes that
/// back.
#[utoipa::path(
    post, path = "/v1/billing/cancel", tag = "billing",
    security(("session" = []), ("bearer" = [])),
    request_body = CancelRequest,
    responses(
        (status = 200, body = BillingSummary),
        (status = 400, description = "malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "billing is not enabled here", body = ErrorBody),
        (status = 409, description = "no subscription to cancel", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "billing_cancel", skip_all, fields(account_id = %caller.account_id))]
pub async fn cancel(
    state: web::Data<ControlState>,
    caller: Caller,
    body: web::Json<CancelRequest>,
) -> Result<web::Json<BillingSummary>, ApiError> {
    let summary = billing(&state)?
        .cancel_at_period_end(caller.account_id, body.cancel)
        .await?;
    Ok(web::Json(summary))
}

/// Changes the subscription's plan: an upgrade at once (the prorated difference invoiced
/// now), a downgrade at the end of the period. The apps move when Stripe's webhook confirms.
#[utoipa::path(
    post, path = "/v1/billing/change-plan", tag = "billing",
    security(("session" = []), ("bearer" = [])),
    request_body = ChangePlanRequest,
    responses(
        (status = 200, body = BillingSummary),
        (status = 400, description = "unknown, free or unsynced plan; unpaid subscription; malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 403, description = "missing `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "billing is not enabled here", body = ErrorBody),
        (status = 409, description = "no subscription to change: start a checkout", body = ErrorBody),
        (status = 503, description = "Stripe did not answer", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "billing_change_plan", skip_all, fields(account_id = %caller.account_id))]
pub async fn change_plan(
    state: web::Data<ControlState>,
    caller: Caller,
    body: web::Json<ChangePlanRequest>,
) -> Result<web::Json<BillingSummary>, ApiError> {
    let summary = billing(&state)?
        .change_plan(caller.account_id, &body.plan)
        .await?;
    Ok(web::Json(summary))
}

/// Stripe's events, signed with the endpoint's secret (`Stripe-Signature`); each applied
/// once by its id.
#[utoipa::path(
    post, path = "/v1/stripe/webhook", tag = "billing",
    request_body(content = String, content_type = "application/json", description = "a Stripe event"),
    responses(
        (status = 200, body = WebhookReceipt),
        (status = 400, description = "missing, forged or stale signature; not an event", body = ErrorBody),
        (status = 404, description = "billing is not enabled here", body = ErrorBody),
        (status = 503, description = "Stripe did not answer while applying; Stripe retries", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "stripe_webhook", skip_all)]
pub async fn stripe_webhook(
    state: web::Data<ControlState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let signature = request
        .headers()
        .get("stripe-signature")
        .and_then(|value| value.to_str().ok());
    let outcome = billing(&state)?.handle_webhook(&body, signature).await?;
    let outcome = match outcome {
        WebhookOutcome::Applied => "applied",
        WebhookOutcome::Duplicate => "duplicate",
        WebhookOutcome::Ignored => "ignored",
    };
    Ok(HttpResponse::Ok().json(WebhookReceipt {
        received: true,
        outcome: outcome.to_owned(),
    }))
}

/// The webhook's body limit (Stripe's events are a few KiB).
pub fn webhook_body_config() -> web::PayloadConfig {
    web::PayloadConfig::new(crate::billing::MAX_WEBHOOK_BYTES)
}
