//! `POST /apps/{app_id}/events` and `/batch_events`.

use actix_web::{HttpRequest, HttpResponse, web};
use broker::Publication;
use protocol::names::{AppId, ChannelName, EventName, SocketId};
use protocol::wire;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tenancy::{App, ConsoleEvent};

use crate::EdgeState;
use crate::console::report;
use crate::http_api::channels::{channel_attributes, parse_info};
use crate::http_api::{ApiError, authenticate, report_refusal};
use crate::limits::unix_now;
use crate::resume::history_window;

/// Channels one trigger may name, as Pusher allows.
const MAX_CHANNELS_PER_TRIGGER: usize = 100;
/// Events one batch may carry, as Pusher's multi-tenant clusters allow.
const MAX_BATCH_EVENTS: usize = 10;

#[derive(Debug, Deserialize)]
struct EventBody {
    name: String,
    data: Value,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BatchBody {
    batch: Vec<EventBody>,
}

/// An event whose every field has been checked.
struct Trigger {
    name: EventName,
    data: String,
    channels: Vec<ChannelName>,
    except: Option<SocketId>,
    info: Option<String>,
}

impl Trigger {
    fn parse(body: EventBody, app: &App) -> Result<Self, ApiError> {
        let name = EventName::parse(&body.name)
            .map_err(|error| ApiError::BadRequest(error.to_string()))?;
        // SDKs send `data` as a string; an object is JSON-encoded rather than refused.
        let data = match body.data {
            Value::String(text) => text,
            other => other.to_string(),
        };
        let limit = app.limits.max_message_bytes;
        if data.len() > limit {
            return Err(ApiError::TooLarge(format!(
                "data is {} bytes, more than the {limit} allowed",
                data.len()
            )));
        }
        let names = match (body.channels, body.channel) {
            (Some(channels), None) => channels,
            (None, Some(channel)) => vec![channel],
            _ => {
                return Err(ApiError::BadRequest(
                    "give exactly one of channels or channel".into(),
                ));
            }
        };
        if names.is_empty() || names.len() > MAX_CHANNELS_PER_TRIGGER {
            return Err(ApiError::BadRequest(format!(
                "give 1 to {MAX_CHANNELS_PER_TRIGGER} channels"
            )));
        }
        let channels = names
            .iter()
            .map(|name| {
                ChannelName::parse(name)
                    .map_err(|e| ApiError::BadRequest(format!("channel {}: {e}", wire::echo(name))))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let except = body
            .socket_id
            .map(|id| SocketId::parse(&id).map_err(|error| ApiError::BadRequest(error.to_string())))
            .transpose()?;
        Ok(Self {
            name,
            data,
            channels,
            except,
            info: body.info,
        })
    }

    /// Publishes to each channel; the frame is serialised once per channel. Its span carries no
    /// channel name (user data, often a user's id), event name or data.
    #[tracing::instrument(name = "publish", level = "debug", skip_all, fields(otel.kind = "producer", app_id = %app.id, channels = self.channels.len()))]
    async fn publish(&self, state: &EdgeState, app: &App) -> Result<(), ApiError> {
        let window = history_window(&app.limits);
        let app = &app.id;
        for channel in &self.channels {
            let frame = wire::channel_event(self.name.as_str(), channel.as_str(), &self.data, None);
            // Cache channels remember their last API event for new subscribers.
            let cache = &state.cluster.cache;
            cache
                .store(app, channel, &self.data, &frame, window.app_max_bytes)
                .await
                .map_err(|error| ApiError::Unavailable(error.to_string()))?;
            let publication = Publication {
                app: app.clone(),
                channel: channel.clone(),
                frame: frame.into(),
                except: self.except.clone(),
                history: Some(window),
                serial: None,
            };
            state
                .cluster
                .broker
                .publish(publication)
                .await
                .map_err(|error| ApiError::Unavailable(error.to_string()))?;
            state.meter.published(app, 1);
            report::record(state, app, || ConsoleEvent::ApiPublish {
                channel: channel.to_string(),
                event: self.name.as_str().to_owned(),
                bytes: self.data.len(),
            });
            crate::metrics::metrics().published_by_api.increment(1);
            // One message per channel published to; deliveries are counted by the hub.
            state.limits.count_messages(app, 1, unix_now());
        }
        Ok(())
    }

    /// The requested `info` attributes of each channel, or `None` if none were asked for.
    async fn info(
        &self,
        state: &EdgeState,
        app: &AppId,
    ) -> Result<Option<Map<String, Value>>, ApiError> {
        let attributes = parse_info(self.info.as_deref())?;
        if attributes.is_empty() {
            return Ok(None);
        }
        let mut channels = Map::new();
        for channel in &self.channels {
            let fields = channel_attributes(state, app, channel, &attributes).await?;
            channels.insert(channel.to_string(), Value::Object(fields));
        }
        Ok(Some(channels))
    }
}

/// `work`'s refusal, if any, kept for the app's console and refusal log.
async fn reported<T>(
    state: &EdgeState,
    app: &App,
    work: impl Future<Output = Result<T, ApiError>>,
) -> Result<T, ApiError> {
    let result = work.await;
    if let Err(error) = &result {
        report_refusal(state, &app.id, error);
    }
    result
}

/// The plan's publish request rate and the app's fan-out backlog (429), then its daily
/// message quota (403).
async fn admit_publish(state: &EdgeState, app: &App) -> Result<(), ApiError> {
    let limits = &state.limits;
    let unavailable = |error: broker::BrokerError| ApiError::Unavailable(error.to_string());
    let allowed = limits.allow_publish_request(&app.id, &app.limits).await;
    if !allowed.map_err(unavailable)? {
        let rate = app.limits.publish_requests_per_second.unwrap_or_default();
        return Err(ApiError::RateLimited(format!(
            "over the plan's {rate} publish requests per second"
        )));
    }
    // One app's storm waits in its own fan-out queue, not in everyone's (see `fanout`).
    if state.hub.fanout_congested(&app.id) {
        return Err(ApiError::RateLimited(
            "the app's deliveries are backed up on this node; retry after a second".into(),
        ));
    }
    let may = limits.may_publish(&app.id, &app.limits, unix_now()).await;
    if !may.map_err(unavailable)? {
        return Err(ApiError::OverQuota(
            "the app is over its daily message quota".into(),
        ));
    }
    Ok(())
}

fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::BadRequest(format!("invalid JSON body: {error}")))
}

#[tracing::instrument(skip_all, fields(app_id))]
pub async fn trigger(
    state: web::Data<EdgeState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &body).await?;
    let app = &authenticated.app;
    let trigger = reported(&state, app, async {
        let trigger = Trigger::parse(parse_json(&body)?, app)?;
        admit_publish(&state, app).await?;
        trigger.publish(&state, app).await?;
        Ok(trigger)
    })
    .await?;
    let app = &authenticated.app.id;
    let response = match trigger.info(&state, app).await? {
        Some(channels) => json!({ "channels": channels }),
        None => json!({}),
    };
    Ok(HttpResponse::Ok().json(response))
}

/// Every event is checked before any is published, so a bad batch publishes nothing.
#[tracing::instrument(skip_all, fields(app_id))]
pub async fn trigger_batch(
    state: web::Data<EdgeState>,
    request: HttpRequest,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &body).await?;
    let app = &authenticated.app;
    let triggers = reported(&state, app, async {
        let batch: BatchBody = parse_json(&body)?;
        if batch.batch.len() > MAX_BATCH_EVENTS {
            return Err(ApiError::BadRequest(format!(
                "a batch holds at most {MAX_BATCH_EVENTS} events"
            )));
        }
        let triggers = batch
            .batch
            .into_iter()
            .map(|event| Trigger::parse(event, app))
            .collect::<Result<Vec<_>, _>>()?;
        admit_publish(&state, app).await?;
        for trigger in &triggers {
            trigger.publish(&state, app).await?;
        }
        Ok(triggers)
    })
    .await?;
    let app = &authenticated.app.id;
    let mut infos = Vec::with_capacity(triggers.len());
    for trigger in &triggers {
        let info = trigger.info(&state, app).await?;
        infos.push(
            info.and_then(|mut channels| channels.values_mut().next().map(Value::take))
                .unwrap_or(json!({})),
        );
    }
    let any_info = triggers.iter().any(|trigger| trigger.info.is_some());
    Ok(HttpResponse::Ok().json(if any_info {
        json!({ "batch": infos })
    } else {
        json!({})
    }))
}
