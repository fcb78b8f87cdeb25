//! Black-box tests of the `/v1` management API: the real routes on port 0, each test over its
//! own fresh Postgres database.

mod helpers;

mod account_mail;
mod accounts;
mod app_settings;
mod apps;
mod audit;
mod billing;
mod billing_plans;
mod billing_support;
mod billing_usage;
mod catalog;
mod isolation;
mod keys;
mod login_limit;
mod openapi;
mod smtp;
mod tokens;
mod webhook_delivery;
mod webhook_receiver;
mod webhook_support;
mod webhook_targets;
mod webhooks;
