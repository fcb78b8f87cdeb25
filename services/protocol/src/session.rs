//! The per-connection state machine: client frames and clock ticks in, frames and commands out.
//!
//! It owns every protocol rule that needs no other connection: subscription auth, which
//! events a client may send, liveness. It knows nothing of sockets, brokers or the clock;
//! the edge feeds it and performs what it returns, in order.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::codes::{CloseReason, ErrorCode};
use crate::delta::DeltaFormat;
use crate::names::{AppKey, ChannelKind, ChannelName, EventName, SocketId, UserId};
use crate::sign::{channel_auth_string, user_auth_string, verify_auth_token};
use crate::signin::{MAX_WATCHLIST_LEN, UserData};
use crate::wire::{self, ChannelPosition, ClientFrame, Member};

/// Limits and timings of one connection, from the app's plan and the server's settings.
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Sent in `connection_established`; silence this long from the client earns a ping.
    pub activity_timeout: Duration,
    /// How long a pinged client has to answer before it is closed with 4201.
    pub pong_timeout: Duration,
    /// Largest `data` of a client event, in bytes.
    pub max_client_event_bytes: usize,
    /// Channels the connection may be subscribed to at once.
    pub max_channels: usize,
}

impl SessionConfig {
    /// Pusher's own values: 120 s activity timeout, 30 s pong timeout, 10 KB client events.
    pub fn pusher_defaults() -> Self {
        Self {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            max_client_event_bytes: 10 * 1024,
            max_channels: 100,
        }
    }
}

/// The app key this connection came in on and its secret, for checking signatures.
#[derive(Clone)]
pub struct Credentials {
    pub key: AppKey,
    pub secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("key", &self.key)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// What the edge must do, in the order given.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this frame to this connection.
    Send(String),
    /// Register the connection on the channel, then confirm with `subscription_succeeded`
    /// (for presence: join `member` first and confirm with the member list). With `resume`
    /// (the last place in the channel's history the client saw), replay what it missed after
    /// the confirmation, or say `resume_failed`.
    Subscribe {
        channel: ChannelName,
        member: Option<Member>,
        resume: Option<ChannelPosition>,
        /// Our SDK's opt-in: channel events may come as deltas (`crate::delta`).
        delta: Option<DeltaFormat>,
    },
    /// Remove the connection from the channel (for presence: and leave as `member`).
    Unsubscribe {
        channel: ChannelName,
        member: Option<UserId>,
    },
    /// Publish `frame` to the channel's other subscribers, subject to the edge's rate limit;
    /// with `to` (presence channels only), to that member's connections only.
    ClientEvent {
        channel: ChannelName,
        event: EventName,
        frame: String,
        to: Option<UserId>,
    },
    /// The connection is now signed in as `user`, following the online status of the users in
    /// `watchlist` (distinct, at most `signin::MAX_WATCHLIST_LEN`). Tell the user's watchers,
    /// then send `reply` (`signin_success`), then the watched users' statuses.
    SignedIn {
        user: UserId,
        watchlist: Vec<UserId>,
        reply: String,
    },
    /// Close the connection.
    Close(CloseReason),
}

/// One connection's protocol state.
#[derive(Debug)]
pub struct Session {
    socket_id: SocketId,
    credentials: Credentials,
    config: SessionConfig,
    /// Subscribed channels; presence channels remember the member's user id.
    subscriptions: HashMap<ChannelName, Option<UserId>>,
    signed_in: Option<SignedInUser>,
    last_inbound: Instant,
    ping_sent_at: Option<Instant>,
}

#[derive(Debug, Clone)]
struct SignedInUser {
    id: UserId,
    user_info: Value,
}

impl Session {
    /// A new session and the `connection_established` frame to send first.
    pub fn new(
        socket_id: SocketId,
        credentials: Credentials,
        config: SessionConfig,
        now: Instant,
    ) -> (Self, String) {
        let established =
            wire::connection_established(socket_id.as_str(), config.activity_timeout.as_secs());
        let session = Self {
            socket_id,
            credentials,
            config,
            subscriptions: HashMap::new(),
            signed_in: None,
            last_inbound: now,
            ping_sent_at: None,
        };
        (session, established)
    }

    pub fn socket_id(&self) -> &SocketId {
        &self.socket_id
    }

    pub fn signed_in_user(&self) -> Option<&UserId> {
        self.signed_in.as_ref().map(|user| &user.id)
    }

    /// Channels this connection is on, with the presence user id where there is one.
    pub fn subscriptions(&self) -> impl Iterator<Item = (&ChannelName, Option<&UserId>)> {
        self.subscriptions
            .iter()
            .map(|(channel, user)| (channel, user.as_ref()))
    }

    /// Applies a new plan's limits without reconnecting; channels already joined stay.
    pub fn set_limits(&mut self, max_client_event_bytes: usize, max_channels: usize) {
        self.config.max_client_event_bytes = max_client_event_bytes;
        self.config.max_channels = max_channels;
    }

    /// The edge could not complete an `Output::Subscribe` (a full presence channel, presence
    /// unavailable) and sent the refusal: the connection is not on the channel, so it may not
    /// send client events there and the channel does not count toward its limit.
    pub fn subscription_refused(&mut self, channel: &ChannelName) {
        self.subscriptions.remove(channel);
    }

    pub fn is_subscribed(&self, channel: &ChannelName) -> bool {
        self.subscriptions.contains_key(channel)
    }

    /// Any traffic from the client (a frame, a WebSocket ping or pong) proves it alive.
    pub fn note_activity(&mut self, now: Instant) {
        self.last_inbound = now;
        self.ping_sent_at = None;
    }

    /// When `on_tick` next has something to do.
    pub fn next_deadline(&self) -> Instant {
        match self.ping_sent_at {
            Some(sent) => sent + self.config.pong_timeout,
            None => self.last_inbound + self.config.activity_timeout,
        }
    }

    /// Pings a quiet client, and closes one that did not answer the ping in time.
    pub fn on_tick(&mut self, now: Instant) -> Option<Output> {
        match self.ping_sent_at {
            Some(sent) if now >= sent + self.config.pong_timeout => {
                Some(Output::Close(CloseReason::PongTimeout))
            }
            None if now >= self.last_inbound + self.config.activity_timeout => {
                self.ping_sent_at = Some(now);
                Some(Output::Send(wire::ping()))
            }
            _ => None,
        }
    }

    /// Handles one text frame from the client.
    pub fn on_text(&mut self, text: &str, now: Instant) -> Vec<Output> {
        self.note_activity(now);
        let frame = match ClientFrame::parse(text) {
            Ok(frame) => frame,
            Err(_) => {
                return vec![error(
                    None,
                    "Invalid JSON: frames must be JSON objects with an event",
                )];
            }
        };
        match frame.event.as_str() {
            "pusher:ping" => vec![Output::Send(wire::pong())],
            "pusher:pong" => Vec::new(),
            "pusher:subscribe" => self.on_subscribe(&frame),
            "pusher:unsubscribe" => self.on_unsubscribe(&frame),
            "pusher:signin" => self.on_signin(&frame),
            _ => self.on_client_event(&frame),
        }
    }

    /// The commands that undo every subscription, for when the connection ends.
    pub fn on_closed(&mut self) -> Vec<Output> {
        self.subscriptions
            .drain()
            .map(|(channel, member)| Output::Unsubscribe { channel, member })
            .collect()
    }

    fn on_subscribe(&mut self, frame: &ClientFrame) -> Vec<Output> {
        let data = frame.data_object().unwrap_or_default();
        let Some(name) = data.get("channel").and_then(Value::as_str) else {
            return vec![error(None, "Subscribe rejected: data.channel is required")];
        };
        let channel = match ChannelName::parse(name) {
            Ok(channel) => channel,
            Err(reason) => {
                return vec![error(
                    None,
                    &format!("Invalid channel name {}: {reason}", wire::echo(name)),
                )];
            }
        };
        let at_limit = self.subscriptions.len() >= self.config.max_channels;
        if at_limit && !self.subscriptions.contains_key(&channel) {
            let message = format!(
                "a connection may join at most {} channels",
                self.config.max_channels
            );
            return Refusal::limit(message).into_outputs(&channel);
        }
        // Our extension (pusher-js never sends it): refused when malformed rather than
        // ignored, so a client asking to resume always learns whether it did.
        let resume = match data.get("resume") {
            None | Some(Value::Null) => None,
            Some(resume) => match ChannelPosition::from_json(resume) {
                Some(position) => Some(position),
                None => {
                    return vec![error(
                        None,
                        "Subscribe rejected: resume must be {\"serial\": integer, \"epoch\": string}",
                    )];
                }
            },
        };
        let delta = match DeltaFormat::from_subscribe_data(data.get("delta")) {
            Ok(delta) => delta,
            Err(unknown) => return vec![error(None, &format!("Subscribe rejected: {unknown}"))],
        };
        let channel_data = data.get("channel_data").and_then(Value::as_str);
        let auth = data.get("auth").and_then(Value::as_str).unwrap_or("");
        match self.authorize_subscription(&channel, auth, channel_data) {
            Ok(member) => {
                let user = member.as_ref().map(|m| m.user_id.clone());
                // The broker keeps one membership per connection and channel, and a
                // re-subscribe leaves it as it is: taking another user here would make client
                // events carry one user while the member list shows another.
                if let Some(Some(held)) = self.subscriptions.get(&channel)
                    && user.as_ref() != Some(held)
                {
                    return Refusal::forbidden(
                        "already on this presence channel as another user: unsubscribe first",
                    )
                    .into_outputs(&channel);
                }
                self.subscriptions.insert(channel.clone(), user);
                vec![Output::Subscribe {
                    channel,
                    member,
                    resume,
                    delta,
                }]
            }
            Err(refusal) => refusal.into_outputs(&channel),
        }
    }

    /// Checks the subscription's signature and returns the presence member, if any.
    fn authorize_subscription(
        &self,
        channel: &ChannelName,
        auth: &str,
        channel_data: Option<&str>,
    ) -> Result<Option<Member>, Refusal> {
        let kind = channel.kind();
        if kind == ChannelKind::ServerToUser {
            let own = self
                .signed_in_user()
                .is_some_and(|u| Some(u.as_str()) == channel.server_to_user_id());
            return if own {
                Ok(None)
            } else {
                Err(Refusal::forbidden(
                    "only the user signed in as this id may subscribe",
                ))
            };
        }
        if !kind.requires_auth() {
            return Ok(None);
        }
        let signed = channel_auth_string(self.socket_id.as_str(), channel.as_str(), channel_data);
        verify_auth_token(
            auth,
            self.credentials.key.as_str(),
            &self.credentials.secret,
            signed,
        )
        .map_err(|reason| Refusal::auth(reason.to_string()))?;
        if kind != ChannelKind::Presence {
            return Ok(None);
        }
        match (channel_data, &self.signed_in) {
            (Some(text), _) => Member::from_channel_data(text)
                .map(Some)
                .ok_or_else(|| Refusal::auth("channel_data must be JSON with a user_id".into())),
            (None, Some(user)) => Ok(Some(Member {
                user_id: user.id.clone(),
                user_info: user.user_info.clone(),
            })),
            (None, None) => Err(Refusal::auth(
                "presence channels need channel_data or a signed-in user".into(),
            )),
        }
    }

    fn on_unsubscribe(&mut self, frame: &ClientFrame) -> Vec<Output> {
        let data = frame.data_object().unwrap_or_default();
        let channel = data
            .get("channel")
            .and_then(Value::as_str)
            .and_then(|n| ChannelName::parse(n).ok());
        match channel.and_then(|c| self.subscriptions.remove_entry(&c)) {
            Some((channel, member)) => vec![Output::Unsubscribe { channel, member }],
            None => Vec::new(),
        }
    }

    fn on_signin(&mut self, frame: &ClientFrame) -> Vec<Output> {
        let data = frame.data_object().unwrap_or_default();
        let auth = data.get("auth").and_then(Value::as_str).unwrap_or("");
        let Some(user_data) = data.get("user_data").and_then(Value::as_str) else {
            return vec![error(None, "Signin rejected: user_data is required")];
        };
        let signed = user_auth_string(self.socket_id.as_str(), user_data);
        if let Err(reason) = verify_auth_token(
            auth,
            self.credentials.key.as_str(),
            &self.credentials.secret,
            signed,
        ) {
            return vec![error(None, &format!("Signin rejected: {reason}"))];
        }
        let parsed = match UserData::parse(user_data) {
            Ok(parsed) => parsed,
            Err(reason) => return vec![error(None, &format!("Signin rejected: {reason}"))],
        };
        if self
            .signed_in
            .as_ref()
            .is_some_and(|user| user.id != parsed.id)
        {
            return vec![error(
                None,
                "Signin rejected: a connection may not change its user",
            )];
        }
        self.signed_in = Some(SignedInUser {
            id: parsed.id.clone(),
            user_info: parsed.user_info,
        });
        let mut outputs = vec![Output::SignedIn {
            user: parsed.id,
            watchlist: parsed.watchlist,
            reply: wire::signin_success(user_data),
        }];
        if parsed.watchlist_truncated {
            let message = format!(
                "Watchlist limit exceeded: only the first {MAX_WATCHLIST_LEN} user ids are watched"
            );
            let code = ErrorCode::WatchlistLimitExceeded.code();
            outputs.push(error(Some(code), &message));
        }
        outputs
    }

    fn on_client_event(&mut self, frame: &ClientFrame) -> Vec<Output> {
        let event = match EventName::parse(&frame.event) {
            Ok(event) if event.is_client_event() => event,
            Ok(event) if event.is_reserved() => return Vec::new(),
            _ => {
                return vec![error(
                    None,
                    "Client event rejected - event names must start with client-",
                )];
            }
        };
        let channel = frame
            .channel
            .as_deref()
            .and_then(|name| ChannelName::parse(name).ok());
        let Some(channel) = channel.filter(|c| c.kind().allows_client_events()) else {
            return vec![error(
                None,
                "Client event rejected - only supported on private and presence channels",
            )];
        };
        let Some(member) = self.subscriptions.get(&channel) else {
            return vec![error(
                None,
                "Client event rejected - not subscribed to the channel",
            )];
        };
        let data = frame.data_as_string();
        if data.len() > self.config.max_client_event_bytes {
            let message = format!(
                "Client event rejected - data is {} bytes, more than the {} allowed",
                data.len(),
                self.config.max_client_event_bytes
            );
            return vec![error(None, &message)];
        }
        let user_id = member.as_ref().map(UserId::as_str);
        let to = match addressee(frame, &channel) {
            Ok(to) => to,
            Err(message) => return vec![error(None, message)],
        };
        let frame = match &to {
            None => wire::channel_event(event.as_str(), channel.as_str(), &data, user_id),
            Some(to) => wire::addressed_channel_event(
                to.as_str(),
                event.as_str(),
                channel.as_str(),
                &data,
                user_id,
            ),
        };
        vec![Output::ClientEvent {
            channel,
            event,
            frame,
            to,
        }]
    }
}

/// The member a client event is addressed to (our `"to"` extension), checked: presence
/// channels only, where every sender is a member, and a valid user id.
fn addressee(frame: &ClientFrame, channel: &ChannelName) -> Result<Option<UserId>, &'static str> {
    let Some(to) = &frame.to else {
        return Ok(None);
    };
    if channel.kind() != ChannelKind::Presence {
        return Err(
            "Client event rejected - only presence channels take events addressed to a member",
        );
    }
    UserId::from_json(to)
        .map(Some)
        .map_err(|_| "Client event rejected - to must be a member's user id")
}

fn error(code: Option<u16>, message: &str) -> Output {
    Output::Send(wire::error(code, message))
}

/// Why a subscription was refused: sent both as Pusher's `pusher:error` and as the
/// channel-level `pusher:subscription_error` so pusher-js fires the channel's handler.
struct Refusal {
    error_type: &'static str,
    status: u16,
    message: String,
}

impl Refusal {
    fn auth(message: String) -> Self {
        Self {
            error_type: "AuthError",
            status: 401,
            message,
        }
    }

    fn forbidden(message: &str) -> Self {
        Self {
            error_type: "AuthError",
            status: 403,
            message: message.to_owned(),
        }
    }

    /// A plan limit; status 4100 as soketi uses for the same refusal.
    fn limit(message: String) -> Self {
        Self {
            error_type: "LimitReached",
            status: 4100,
            message,
        }
    }

    fn into_outputs(self, channel: &ChannelName) -> Vec<Output> {
        vec![
            error(None, &self.message),
            Output::Send(wire::subscription_error(
                channel.as_str(),
                self.error_type,
                &self.message,
                self.status,
            )),
        ]
    }
}
