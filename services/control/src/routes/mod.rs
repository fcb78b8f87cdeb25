//! The JSON management API under `/v1`: thin handlers, one file per resource group.
//!
//! Every handler extracts (the caller through `auth::Caller`, the body as a DTO), calls the
//! `service::Control` operation, and maps the result; every failure is an `error::ApiError`,
//! whose one exhaustive `match` picks the HTTP status. The OpenAPI document (`openapi.rs`) is
//! generated from the handlers' `#[utoipa::path]` annotations.

pub mod account_mail;
pub mod accounts;
pub mod apps;
pub mod audit;
pub mod auth;
pub mod billing;
pub mod console;
pub mod error;
pub mod keys;
pub mod login_limit;
pub mod openapi;
pub mod plans;
pub mod tokens;
pub mod usage;
pub mod webhooks;

use std::num::NonZeroU32;

use actix_web::web;
use governor::Quota;

use ingress::TrustedProxies;

use crate::routes::login_limit::{LoginLimiter, MailLimiter, SignupLimiter};
use crate::service::Control;

/// Largest JSON body the API reads; every request body here is a few short fields.
const JSON_BODY_LIMIT: usize = 16 * 1024;

/// How the API behaves in one deployment.
#[derive(Debug, Clone)]
pub struct ControlSettings {
    /// Marks the session and CSRF cookies `Secure` (the binary sets it whenever the public
    /// URL is https, which is everywhere but a developer's machine).
    pub secure_cookies: bool,
    /// Proxies whose `X-Forwarded-For` names the client for every per-address limit; none by
    /// default (a client could otherwise name a fresh address on every attempt).
    pub trusted_proxies: TrustedProxies,
    /// Login attempts allowed per account email and, separately, per client address.
    pub login_quota: Quota,
    /// Sign-ups allowed per client address (IPv6: per /64).
    pub signup_quota: Quota,
    /// Verification and reset mails per recipient address.
    pub mail_quota: Quota,
    /// Password-reset requests per client address (IPv6: per /64).
    pub reset_request_quota: Quota,
}

/// Sign-ups per client address per hour by default (and the burst allowed at once).
pub const DEFAULT_SIGNUPS_PER_HOUR: u32 = 10;

impl Default for ControlSettings {
    fn default() -> Self {
        let five = NonZeroU32::new(5).expect("5 is not zero");
        Self {
            secure_cookies: false,
            trusted_proxies: TrustedProxies::none(),
            login_quota: Quota::per_minute(five).allow_burst(five),
            signup_quota: signups_per_hour(DEFAULT_SIGNUPS_PER_HOUR),
            mail_quota: per_hour(DEFAULT_MAILS_PER_ADDRESS_PER_HOUR),
            reset_request_quota: per_hour(DEFAULT_RESET_REQUESTS_PER_HOUR),
        }
    }
}

/// Verification and reset mails per recipient address per hour by default.
pub const DEFAULT_MAILS_PER_ADDRESS_PER_HOUR: u32 = 5;
/// Password-reset requests per client address per hour by default.
pub const DEFAULT_RESET_REQUESTS_PER_HOUR: u32 = 20;

/// `per_hour` sign-ups an hour per address, all of them allowed at once (at least one).
pub fn signups_per_hour(per_hour: u32) -> Quota {
    self::per_hour(per_hour)
}

/// `count` an hour, all of them allowed at once (at least one).
pub fn per_hour(count: u32) -> Quota {
    let count = NonZeroU32::new(count.max(1)).expect("at least 1");
    Quota::per_hour(count).allow_burst(count)
}

/// What every `/v1` handler shares.
pub struct ControlState {
    pub control: Control,
    pub settings: ControlSettings,
    pub login_limiter: LoginLimiter,
    pub signup_limiter: SignupLimiter,
    pub mail_limiter: MailLimiter,
    /// The edge's console (refusal log), when an edge runs in this process; set by the binary.
    pub console: Option<std::sync::Arc<dyn tenancy::ConsoleFeed>>,
    /// Stripe billing, when configured (`None`: paid plans are set by an operator).
    pub billing: Option<crate::billing::Billing>,
}

impl ControlState {
    /// Development settings: cookies without `Secure`, peer addresses as client addresses, 5
    /// login attempts a minute per email and per address, 10 sign-ups an hour per address.
    pub fn new(control: Control) -> Self {
        Self::with_settings(control, ControlSettings::default())
    }

    pub fn with_settings(control: Control, settings: ControlSettings) -> Self {
        let login_limiter = LoginLimiter::new(settings.login_quota);
        let signup_limiter = SignupLimiter::new(settings.signup_quota);
        let mail_limiter = MailLimiter::new(settings.mail_quota, settings.reset_request_quota);
        Self {
            control,
            settings,
            login_limiter,
            signup_limiter,
            mail_limiter,
            console: None,
            billing: None,
        }
    }

    /// The same state with Stripe billing on.
    pub fn with_billing(mut self, billing: crate::billing::Billing) -> Self {
        self.billing = Some(billing);
        self
    }
}

/// Mounts `/v1/*`; the edge's routes (`/app/*`, `/apps/*`, `/healthz`) live beside it.
pub fn configure(state: web::Data<ControlState>) -> impl FnOnce(&mut web::ServiceConfig) {
    move |config| {
        config.service(
            web::scope("/v1")
                .app_data(state)
                .app_data(error::json_config(JSON_BODY_LIMIT))
                .app_data(error::path_config())
                .app_data(error::query_config())
                .service(resource("/openapi.json", "GET").route(web::get().to(openapi::document)))
                .service(resource("/signup", "POST").route(web::post().to(accounts::sign_up)))
                .service(resource("/login", "POST").route(web::post().to(accounts::log_in)))
                .service(resource("/logout", "POST").route(web::post().to(accounts::log_out)))
                .service(resource("/me", "GET").route(web::get().to(accounts::me)))
                .service(
                    resource("/account/verification", "POST")
                        .route(web::post().to(account_mail::resend_verification)),
                )
                .service(
                    resource("/account/verify", "POST")
                        .route(web::post().to(account_mail::verify_email)),
                )
                .service(
                    resource("/account/password", "PUT")
                        .route(web::put().to(account_mail::change_password)),
                )
                .service(
                    resource("/account/password-reset", "POST")
                        .route(web::post().to(account_mail::request_password_reset)),
                )
                .service(
                    resource("/account/password-reset/confirm", "POST")
                        .route(web::post().to(account_mail::reset_password)),
                )
                .service(resource("/plans", "GET").route(web::get().to(plans::list)))
                .service(resource("/audit", "GET").route(web::get().to(audit::list)))
                .service(
                    resource("/tokens", "GET, POST")
                        .route(web::get().to(tokens::list))
                        .route(web::post().to(tokens::create)),
                )
                .service(
                    resource("/tokens/{token_id}", "DELETE")
                        .route(web::delete().to(tokens::revoke)),
                )
                .service(
                    resource("/apps", "GET, POST")
                        .route(web::get().to(apps::list))
                        .route(web::post().to(apps::create)),
                )
                .service(
                    resource("/apps/{app_id}", "GET, PATCH, DELETE")
                        .route(web::get().to(apps::show))
                        .route(web::patch().to(apps::update))
                        .route(web::delete().to(apps::delete)),
                )
                .service(
                    resource("/apps/{app_id}/plan", "GET, PUT")
                        .route(web::get().to(plans::show_for_app))
                        .route(web::put().to(plans::change_for_app)),
                )
                .service(
                    resource("/apps/{app_id}/keys", "GET, POST")
                        .route(web::get().to(keys::list))
                        .route(web::post().to(keys::create)),
                )
                .service(
                    resource("/apps/{app_id}/keys/{key}/revoke", "POST")
                        .route(web::post().to(keys::revoke)),
                )
                .service(
                    resource("/apps/{app_id}/keys/{key}/rotate", "POST")
                        .route(web::post().to(keys::rotate)),
                )
                .service(
                    resource("/apps/{app_id}/keys/{key}/secret", "GET")
                        .route(web::get().to(keys::reveal_secret)),
                )
                .service(resource("/apps/{app_id}/usage", "GET").route(web::get().to(usage::show)))
                .service(resource("/console", "GET").route(web::get().to(console::info)))
                .service(
                    resource("/console/auth", "POST").route(web::post().to(console::authorize)),
                )
                .service(
                    resource("/apps/{app_id}/refusals", "GET")
                        .route(web::get().to(console::refusals)),
                )
                .service(
                    resource("/apps/{app_id}/webhooks", "GET, POST")
                        .route(web::get().to(webhooks::list))
                        .route(web::post().to(webhooks::create)),
                )
                // Before `/webhooks/{id}`, which would otherwise claim this path.
                .service(
                    resource("/apps/{app_id}/webhooks/deliveries", "GET")
                        .route(web::get().to(webhooks::deliveries)),
                )
                .service(
                    resource("/apps/{app_id}/webhooks/{id}", "DELETE")
                        .route(web::delete().to(webhooks::delete)),
                )
                .service(resource("/billing", "GET").route(web::get().to(billing::summary)))
                .service(
                    resource("/billing/checkout", "POST").route(web::post().to(billing::checkout)),
                )
                .service(resource("/billing/portal", "POST").route(web::post().to(billing::portal)))
                .service(resource("/billing/cancel", "POST").route(web::post().to(billing::cancel)))
                .service(
                    resource("/billing/change-plan", "POST")
                        .route(web::post().to(billing::change_plan)),
                )
                .service(
                    resource("/stripe/webhook", "POST")
                        .app_data(billing::webhook_body_config())
                        .route(web::post().to(billing::stripe_webhook)),
                )
                .default_service(web::to(error::not_found)),
        );
    }
}

/// A resource whose other methods get a JSON 405 with `Allow: allow` (the methods routed on it;
/// a test checks them against the OpenAPI document).
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move |request: actix_web::HttpRequest| {
        error::method_not_allowed(request, allow)
    }))
}
