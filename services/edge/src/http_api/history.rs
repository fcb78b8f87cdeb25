//! `GET /apps/{app_id}/channels/{channel}/history`: the events a channel still keeps.
//!
//! Query: `since` (a serial: only events after it), `epoch` (the epoch `since` belongs to;
//! another one is a gap), `limit` (1 to 1000, default 100). Answers
//! `{"epoch": E, "serial": latest, "events": [{"serial", "event", "data", "user_id"?}]}`, oldest
//! first; page on with `since` = the last serial returned until it reaches `serial`. When some
//! events after `since` are gone (outside the window) or the epoch differs, answers
//! 410 Gone with `{"error", "epoch", "serial", "oldest_available"}`.
//!
//! The stored frames are parsed back here; this is a read API, not the fan-out path.

use actix_web::{HttpRequest, HttpResponse, web};
use broker::History;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::EdgeState;
use crate::http_api::channels::parse_channel;
use crate::http_api::{ApiError, authenticate};

/// Events one request returns when it names no `limit`.
const DEFAULT_LIMIT: usize = 100;
/// The most events one request returns.
const MAX_LIMIT: usize = 1000;

/// The fields of a stored frame this API returns.
#[derive(Deserialize)]
struct StoredFrame {
    event: String,
    data: String,
    #[serde(default)]
    user_id: Option<String>,
}

// No channel field: spans are exported as traces, whose attributes carry no channel names.
#[tracing::instrument(skip_all, fields(app_id))]
pub async fn history(
    state: web::Data<EdgeState>,
    request: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let authenticated = authenticate(&state, &request, &[]).await?;
    let channel = parse_channel(&request)?;
    let since = authenticated
        .param("since")
        .map(|since| {
            since
                .parse::<u64>()
                .map_err(|_| ApiError::BadRequest("since must be a serial (an integer)".into()))
        })
        .transpose()?;
    let limit = match authenticated.param("limit") {
        None => DEFAULT_LIMIT,
        Some(limit) => limit
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| ApiError::BadRequest(format!("limit must be 1 to {MAX_LIMIT}")))?,
    };
    let epoch = authenticated.param("epoch");
    let history = state
        .cluster
        .broker
        .history(&authenticated.app.id, &channel, since, epoch)
        .await
        .map_err(|error| ApiError::Unavailable(error.to_string()))?;
    match history {
        History::Replay {
            epoch,
            latest,
            frames,
        } => {
            let events: Vec<Value> = frames
                .iter()
                .take(limit)
                .filter_map(|(serial, frame)| event_of(*serial, frame))
                .collect();
            Ok(HttpResponse::Ok().json(json!({
                "epoch": epoch,
                "serial": latest,
                "events": events,
            })))
        }
        History::Gap {
            epoch,
            latest,
            oldest_available,
        } => Err(ApiError::HistoryGap {
            epoch,
            latest,
            oldest_available,
        }),
    }
}

/// One stored frame as the API returns it. Every stored frame is one the edge built, so none
/// is skipped in practice.
fn event_of(serial: u64, frame: &str) -> Option<Value> {
    let stored: StoredFrame = serde_json::from_str(frame).ok()?;
    let mut event = json!({ "serial": serial, "event": stored.event, "data": stored.data });
    if let Some(user_id) = stored.user_id {
        event["user_id"] = json!(user_id);
    }
    Some(event)
}
