//! The `user_data` of a `pusher:signin`, parsed: who the user is, what presence shows of them,
//! and the watchlist of users whose online status they follow.
//!
//! Pusher's watchlist holds at most 100 user ids; a longer one is cut to its first 100 and the
//! client is told with error code 4302 (see `codes::ErrorCode::WatchlistLimitExceeded`).

use serde_json::{Map, Value};
use thiserror::Error;

use crate::names::UserId;

/// The most user ids a watchlist may hold, as Pusher documents.
pub const MAX_WATCHLIST_LEN: usize = 100;

/// A signed `user_data` whose every field has been checked.
#[derive(Debug, Clone, PartialEq)]
pub struct UserData {
    pub id: UserId,
    /// What presence channels show for the user; `{}` when the app gave none.
    pub user_info: Value,
    /// Distinct ids in the order given, at most `MAX_WATCHLIST_LEN`.
    pub watchlist: Vec<UserId>,
    /// The app gave more than `MAX_WATCHLIST_LEN` distinct ids; the rest were dropped.
    pub watchlist_truncated: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum UserDataError {
    #[error("user_data must be JSON with a non-empty string id")]
    Id,
    #[error("watchlist must be an array of user ids (strings or integers, 1 to 128 characters)")]
    Watchlist,
}

impl UserData {
    pub fn parse(user_data: &str) -> Result<Self, UserDataError> {
        let mut fields: Map<String, Value> =
            serde_json::from_str(user_data).map_err(|_| UserDataError::Id)?;
        let id = fields
            .get("id")
            .and_then(Value::as_str)
            .and_then(|id| UserId::parse(id).ok())
            .ok_or(UserDataError::Id)?;
        let (watchlist, watchlist_truncated) = match fields.get("watchlist") {
            None | Some(Value::Null) => (Vec::new(), false),
            Some(Value::Array(entries)) => parse_watchlist(entries)?,
            Some(_) => return Err(UserDataError::Watchlist),
        };
        let user_info = fields
            .remove("user_info")
            .unwrap_or_else(|| Value::Object(Map::new()));
        Ok(Self {
            id,
            user_info,
            watchlist,
            watchlist_truncated,
        })
    }
}

/// Every entry must be a user id; duplicates count once; ids past the limit are dropped.
fn parse_watchlist(entries: &[Value]) -> Result<(Vec<UserId>, bool), UserDataError> {
    let mut watchlist: Vec<UserId> = Vec::new();
    let mut truncated = false;
    for entry in entries {
        let id = UserId::from_json(entry).map_err(|_| UserDataError::Watchlist)?;
        if watchlist.contains(&id) {
            continue;
        }
        if watchlist.len() == MAX_WATCHLIST_LEN {
            truncated = true;
            continue;
        }
        watchlist.push(id);
    }
    Ok((watchlist, truncated))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ids(watchlist: &[UserId]) -> Vec<&str> {
        watchlist.iter().map(UserId::as_str).collect()
    }

    #[test]
    fn id_info_and_watchlist() {
        let parsed =
            UserData::parse(r#"{"id":"a","user_info":{"n":1},"watchlist":["b",7,"b"]}"#).unwrap();
        assert_eq!(parsed.id.as_str(), "a");
        assert_eq!(parsed.user_info, json!({"n":1}));
        assert_eq!(ids(&parsed.watchlist), ["b", "7"]);
        assert!(!parsed.watchlist_truncated);
    }

    #[test]
    fn no_watchlist_and_no_info() {
        let parsed = UserData::parse(r#"{"id":"a"}"#).unwrap();
        assert!(parsed.watchlist.is_empty());
        assert_eq!(parsed.user_info, json!({}));
    }

    #[test]
    fn a_watchlist_past_the_limit_keeps_its_first_hundred_distinct_ids() {
        let given: Vec<String> = (0..150).map(|n| format!("u{}", n % 120)).collect();
        let text = json!({ "id": "a", "watchlist": given }).to_string();
        let parsed = UserData::parse(&text).unwrap();
        assert_eq!(parsed.watchlist.len(), MAX_WATCHLIST_LEN);
        assert_eq!(parsed.watchlist[99].as_str(), "u99");
        assert!(parsed.watchlist_truncated);
    }

    #[test]
    fn exactly_the_limit_is_not_truncated() {
        let given: Vec<String> = (0..100).map(|n| format!("u{n}")).collect();
        let text = json!({ "id": "a", "watchlist": given }).to_string();
        assert!(!UserData::parse(&text).unwrap().watchlist_truncated);
    }

    #[test]
    fn malformed_user_data_is_refused() {
        for bad in [r#"[]"#, r#"{"id":""}"#, r#"{"id":5}"#, "not json"] {
            assert_eq!(UserData::parse(bad), Err(UserDataError::Id), "{bad}");
        }
        for bad in [
            r#"{"id":"a","watchlist":"b"}"#,
            r#"{"id":"a","watchlist":[{"id":"b"}]}"#,
            r#"{"id":"a","watchlist":[""]}"#,
        ] {
            assert_eq!(UserData::parse(bad), Err(UserDataError::Watchlist), "{bad}");
        }
    }
}
