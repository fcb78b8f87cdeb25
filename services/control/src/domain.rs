//! Values parsed at the API's edge.

use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("email must look like name@example.com and be at most 254 characters")]
    Email,
    #[error("name must be 1 to 100 characters")]
    AppName,
    #[error("token name must be 1 to 100 characters")]
    TokenName,
    #[error("webhook url must be an http:// or https:// URL with a host, at most 2048 characters")]
    WebhookUrl,
    #[error("unknown webhook event type {0:?}; known: {known}", known = tenancy::WEBHOOK_EVENT_NAMES.join(", "))]
    WebhookEventType(String),
}

/// An email address, trimmed; compared case-insensitively by the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let text = text.trim();
        let Some((local, domain)) = text.split_once('@') else {
            return Err(DomainError::Email);
        };
        let valid = !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && text.len() <= 254
            && !text.chars().any(char::is_whitespace);
        if valid {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::Email)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn bounded_name(text: &str, error: DomainError) -> Result<String, DomainError> {
    let text = text.trim();
    let length = text.chars().count();
    if (1..=100).contains(&length) && !text.chars().any(char::is_control) {
        Ok(text.to_owned())
    } else {
        Err(error)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppName(String);

impl AppName {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        bounded_name(text, DomainError::AppName).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenName(String);

impl TokenName {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        bounded_name(text, DomainError::TokenName).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Longest webhook URL stored, in bytes, after normalisation.
pub const MAX_WEBHOOK_URL_LEN: usize = 2048;

/// Where a webhook is delivered: an absolute http(s) URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let text = text.trim();
        if text.len() > MAX_WEBHOOK_URL_LEN {
            return Err(DomainError::WebhookUrl);
        }
        let url = reqwest::Url::parse(text).map_err(|_| DomainError::WebhookUrl)?;
        // The bound is on what is stored: normalising percent-encodes spaces and non-ASCII,
        // so 2,048 characters given can become three times as many.
        let valid = matches!(url.scheme(), "http" | "https")
            && url.host_str().is_some_and(|host| !host.is_empty())
            && url.as_str().len() <= MAX_WEBHOOK_URL_LEN;
        if valid {
            Ok(Self(url.to_string()))
        } else {
            Err(DomainError::WebhookUrl)
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Checked, deduplicated webhook event types, in the order Pusher documents them; empty means
/// every event.
pub fn webhook_event_types(types: &[String]) -> Result<Vec<String>, DomainError> {
    if let Some(unknown) = types
        .iter()
        .find(|name| !tenancy::WEBHOOK_EVENT_NAMES.contains(&name.as_str()))
    {
        return Err(DomainError::WebhookEventType(unknown.clone()));
    }
    Ok(tenancy::WEBHOOK_EVENT_NAMES
        .iter()
        .filter(|name| types.iter().any(|given| given == *name))
        .map(|name| (*name).to_owned())
        .collect())
}

/// A plan as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema, sqlx::FromRow)]
pub struct Plan {
    pub id: String,
    pub display_name: String,
    pub price_cents: i32,
    pub max_connections: i32,
    pub messages_per_day: i64,
    pub max_message_bytes: i32,
    pub client_events_per_second: i32,
    pub publish_requests_per_second: i32,
    pub max_presence_members: i32,
    pub max_channels_per_connection: i32,
    pub history_events: i32,
    pub history_seconds: i32,
    pub burst_multiplier: i32,
    pub webhooks_allowed: bool,
    pub overage_cents_per_million_messages: i32,
    pub overage_cents_per_thousand_connections: i32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_names_are_checked() {
        assert_eq!(
            Email::parse("  Ann@Example.com ").unwrap().as_str(),
            "Ann@Example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@x.com",
            "ann@x",
            "a b@x.com",
            "ann@x.com.",
            "a@b@x.com",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad}");
        }
        assert!(AppName::parse("  ").is_err());
        assert!(AppName::parse(&"n".repeat(101)).is_err());
        assert_eq!(AppName::parse(" chat ").unwrap().as_str(), "chat");
    }

    #[test]
    fn webhook_urls_and_event_types_are_checked() {
        assert_eq!(
            WebhookUrl::parse(" https://example.com/hook ")
                .unwrap()
                .as_str(),
            "https://example.com/hook"
        );
        assert!(WebhookUrl::parse("http://127.0.0.1:9000/x?y=1").is_ok());
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com",
            "http://",
            "javascript:alert(1)",
        ] {
            assert!(WebhookUrl::parse(bad).is_err(), "{bad}");
        }
        let types = [
            "member_added".to_owned(),
            "channel_occupied".to_owned(),
            "member_added".to_owned(),
        ];
        assert_eq!(
            webhook_event_types(&types).unwrap(),
            ["channel_occupied", "member_added"]
        );
        assert!(webhook_event_types(&[]).unwrap().is_empty());
        assert_eq!(
            webhook_event_types(&["nope".to_owned()]),
            Err(DomainError::WebhookEventType("nope".into()))
        );
    }
}
