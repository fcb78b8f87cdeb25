//! The OpenAPI document of `/v1`, generated from the handlers' `#[utoipa::path]` annotations
//! and the DTOs' `ToSchema` derives, served at `GET /v1/openapi.json`.

use std::sync::OnceLock;

use actix_web::HttpResponse;
use actix_web::http::header::ContentType;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::routes::{
    account_mail, accounts, apps, audit, billing, console, keys, plans, tokens, usage, webhooks,
};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Switchboard control API",
        version = "1",
        description = "Accounts, apps, keys and plans. Sign in with `POST /v1/login` (a session \
            cookie; state-changing calls then need `X-CSRF-Token`) or send \
            `Authorization: Bearer sbt_...` with an API token. Every error body is \
            `{\"error\": \"...\"}`."
    ),
    paths(
        accounts::sign_up,
        accounts::log_in,
        accounts::log_out,
        accounts::me,
        account_mail::resend_verification,
        account_mail::verify_email,
        account_mail::request_password_reset,
        account_mail::reset_password,
        account_mail::change_password,
        tokens::create,
        tokens::list,
        tokens::revoke,
        apps::create,
        apps::list,
        apps::show,
        apps::update,
        apps::delete,
        keys::list,
        keys::create,
        keys::revoke,
        keys::rotate,
        keys::reveal_secret,
        plans::list,
        plans::show_for_app,
        plans::change_for_app,
        audit::list,
        usage::show,
        webhooks::list,
        webhooks::create,
        webhooks::delete,
        webhooks::deliveries,
        console::info,
        console::authorize,
        console::refusals,
        billing::summary,
        billing::checkout,
        billing::portal,
        billing::cancel,
        billing::change_plan,
        billing::stripe_webhook,
    ),
    modifiers(&SecuritySchemes),
    tags(
        (name = "accounts", description = "Sign up, sessions, the signed-in account, email verification and passwords"),
        (name = "tokens", description = "Account API tokens for scripts"),
        (name = "apps", description = "Apps of the account"),
        (name = "keys", description = "App keys and secrets; rotation"),
        (name = "plans", description = "The plan ladder and each app's plan"),
        (name = "audit", description = "Who changed what"),
        (name = "usage", description = "Metered usage per minute, hour and day"),
        (name = "webhooks", description = "Webhooks of an app and their delivery log"),
        (name = "console", description = "The debug console and live view (on the system app), and the refusal log"),
        (name = "billing", description = "Stripe billing: plan, usage, invoices, checkout, portal, Stripe's webhook"),
    )
)]
pub struct ApiDoc;

/// The two ways to authenticate, named by the paths' `security(...)`.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An account API token, `sbt_...`; no CSRF token needed",
                    ))
                    .build(),
            ),
        );
        components.add_security_scheme(
            "session",
            SecurityScheme::ApiKey(ApiKey::Cookie(ApiKeyValue::with_description(
                "sb_session",
                "The session cookie from signup or login; POST, PUT, PATCH and DELETE also \
                 need the header `X-CSRF-Token`",
            ))),
        );
    }
}

/// The document as JSON, built once.
pub fn document_json() -> &'static str {
    static DOCUMENT: OnceLock<String> = OnceLock::new();
    DOCUMENT.get_or_init(|| {
        ApiDoc::openapi()
            .to_json()
            .expect("the OpenAPI document serialises")
    })
}

pub async fn document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type(ContentType::json())
        .body(document_json())
}
