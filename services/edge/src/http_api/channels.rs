//! `GET /apps/{app_id}/channels`, `/channels/{channel}` and `/channels/{channel}/users`.

use actix_web::{HttpRequest, HttpResponse, web};
use protocol::names::{AppId, ChannelKind, ChannelName};
use serde_json::{Map, Value, json};

use crate::EdgeState;
use crate::http_api::{ApiError, authenticate};

/// An attribute a caller may ask for with `info=`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attribute {
    UserCount,
    SubscriptionCount,
    /// A cache channel's cached event: `{"data": …, "ttl": seconds left}`.
    Cache,
}

/// Parses `info=user_count,subscription_count`; unknown names are refused.
pub fn parse_info(info: Option<&str>) -> Result<Vec<Attribute>, ApiError> {
    let Some(info) = info else {
        return Ok(Vec::new());
    };
    info.split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(|name| match name {
            "user_count" => Ok(Attribute::UserCount),
            "subscription_count" => Ok(Attribute::SubscriptionCount),
            "cache" => Ok(Attribute::Cache),
            other => Err(ApiError::BadRequest(format!(
                "unknown info attribute {}",
                protocol::wire::echo(other)
            ))),
        })
        .collect()
}

/// The attributes that apply to the channel (`user_count` only to presence channels, `cache`
/// only to cache channels with an event cached).
pub async fn channel_attributes(
    state: &EdgeState,
    app: &AppId,
    channel: &ChannelName,
    attributes: &[Attribute],
) -> Result<Map<String, Value>, ApiError> {
    let mut fields = Map::new();
    for attribute in attributes {
        match attribute {
            Attribute::UserCount if channel.kind() == ChannelKind::Presence => {
                let members = state.cluster.broker.presence_members(app, channel).await;
                let members = members.map_err(|error| ApiError::Unavailable(error.to_string()))?;
                fields.insert("user_count".into(), json!(members.len()));
            }
            Attribute::UserCount => {}
            Attribute::SubscriptionCount => {
                let count = state
                    .cluster
                    .occupancy
                    .subscription_count(app, channel)
                    .await;
                let count = count.map_err(|error| ApiError::Unavailable(error.to_string()))?;
                fields.insert("subscription_count".into(), json!(count));
            }
            Attribute::Cache => {
                let cached = state.cluster.cache.peek(app, channel).await;
                let cached = cached.map_err(|error| ApiError::Unavailable(error.to_string()))?;
                if let Some((data, ttl)) = cached {
                    fields.insert("cache".into(), json!({ "data": data, "ttl": ttl }));
                }
            }
        }
    }
    Ok(fields)
}

pub fn parse_channel(request: &HttpRequest) -> Result<ChannelName, ApiError> {
    let name = request.match_info().get("channel").unwrap_or_default();
    ChannelName::parse(name)
        .map_err(|error| ApiError::BadRequest(format!("invalid channel name: {error}")))
}

/// Occupied channels, optionally filtered by prefix; `info=user_count` needs a `presence-`
/// prefix, as Pusher requires.
#[tracing::instrument(skip_all, fields(app_id))]
pub async fn list(
    state: web::Data<EdgeState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &[]).await?;
    let prefix = authenticated.param("filter_by_prefix").unwrap_or("");
    let attributes = parse_info(authenticated.param("info"))?;
    if attributes.contains(&Attribute::UserCount) && !prefix.starts_with("presence-") {
        return Err(ApiError::BadRequest(
            "info=user_count needs filter_by_prefix=presence-".into(),
        ));
    }
    let app = &authenticated.app.id;
    let occupied = state.cluster.occupancy.occupied_channels(app, prefix).await;
    let occupied = occupied.map_err(|error| ApiError::Unavailable(error.to_string()))?;
    let mut channels = Map::new();
    for (channel, _) in occupied {
        let fields = channel_attributes(&state, app, &channel, &attributes).await?;
        channels.insert(channel.to_string(), Value::Object(fields));
    }
    Ok(HttpResponse::Ok().json(json!({ "channels": channels })))
}

#[tracing::instrument(skip_all, fields(app_id))]
pub async fn show(
    state: web::Data<EdgeState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &[]).await?;
    let channel = parse_channel(&request)?;
    let attributes = parse_info(authenticated.param("info"))?;
    if attributes.contains(&Attribute::UserCount) && channel.kind() != ChannelKind::Presence {
        return Err(ApiError::BadRequest(
            "user_count is only available for presence channels".into(),
        ));
    }
    if attributes.contains(&Attribute::Cache) && !broker::cache::is_cache_channel(&channel) {
        return Err(ApiError::BadRequest(
            "cache is only available for cache channels".into(),
        ));
    }
    let app = &authenticated.app.id;
    let count = state
        .cluster
        .occupancy
        .subscription_count(app, &channel)
        .await;
    let occupied = count.map_err(|error| ApiError::Unavailable(error.to_string()))? > 0;
    let mut fields = channel_attributes(&state, app, &channel, &attributes).await?;
    fields.insert("occupied".into(), json!(occupied));
    Ok(HttpResponse::Ok().json(fields))
}

/// Distinct users of a presence channel.
#[tracing::instrument(skip_all, fields(app_id))]
pub async fn users(
    state: web::Data<EdgeState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &[]).await?;
    let channel = parse_channel(&request)?;
    if channel.kind() != ChannelKind::Presence {
        return Err(ApiError::BadRequest(
            "users are only available for presence channels".into(),
        ));
    }
    let members = state
        .cluster
        .broker
        .presence_members(&authenticated.app.id, &channel)
        .await;
    let members = members.map_err(|error| ApiError::Unavailable(error.to_string()))?;
    let users: Vec<Value> = members
        .iter()
        .map(|member| json!({ "id": member.user_id.as_str() }))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "users": users })))
}
