//! Plans: the public ladder, and an app's plan (read and change).

use actix_web::web;
use serde::Deserialize;
use utoipa::ToSchema;

use crate::domain::Plan;
use crate::routes::ControlState;
use crate::routes::auth::Caller;
use crate::routes::error::{ApiError, ErrorBody};

#[derive(Debug, Deserialize, ToSchema)]
pub struct PlanChoice {
    /// A plan id from `GET /v1/plans`.
    #[schema(example = "pro")]
    pub plan: String,
}

/// Every plan with its limits and price, cheapest first. Needs no sign-in.
#[utoipa::path(
    get, path = "/v1/plans", tag = "plans",
    responses((status = 200, body = [Plan]))
)]
#[tracing::instrument(name = "list_plans", skip_all)]
pub async fn list(state: web::Data<ControlState>) -> Result<web::Json<Vec<Plan>>, ApiError> {
    Ok(web::Json(state.control.list_plans().await?))
}

/// The app's plan.
#[utoipa::path(
    get, path = "/v1/apps/{app_id}/plan", tag = "plans",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    responses(
        (status = 200, body = Plan),
        (status = 401, body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "show_app_plan", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn show_for_app(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
) -> Result<web::Json<Plan>, ApiError> {
    let app = state.control.app(caller.account_id, &app_id).await?;
    Ok(web::Json(state.control.plan(&app.plan_id).await?))
}

/// Moves the app to another free plan; its limits change without reconnects. Paid plans are
/// set by an operator until billing exists (402 here), and need a verified email first (403).
#[utoipa::path(
    put, path = "/v1/apps/{app_id}/plan", tag = "plans",
    security(("session" = []), ("bearer" = [])),
    params(("app_id" = String, Path)),
    request_body = PlanChoice,
    responses(
        (status = 200, description = "the app's new plan", body = Plan),
        (status = 400, description = "unknown plan or malformed JSON", body = ErrorBody),
        (status = 401, body = ErrorBody),
        (status = 402, description = "a paid plan: set by an operator until billing exists", body = ErrorBody),
        (status = 403, description = "a paid plan while the account's email is not verified, or a missing or wrong `X-CSRF-Token`", body = ErrorBody),
        (status = 404, description = "no such app in this account", body = ErrorBody),
    )
)]
#[tracing::instrument(name = "change_app_plan", skip_all, fields(account_id = %caller.account_id, app_id = %ingress::Untrusted(app_id.as_str())))]
pub async fn change_for_app(
    state: web::Data<ControlState>,
    caller: Caller,
    app_id: web::Path<String>,
    body: web::Json<PlanChoice>,
) -> Result<web::Json<Plan>, ApiError> {
    let app = state
        .control
        .change_plan_self_serve(caller.account_id, &app_id, &body.plan)
        .await?;
    Ok(web::Json(state.control.plan(&app.plan_id).await?))
}
