//! The `session` target: a script run through `session::Session`, one step per line.
//!
//! - `tick SECONDS`: the clock moves on and `on_tick` runs;
//! - `activity`: a WebSocket ping or pong arrives (`note_activity`);
//! - `limits BYTES CHANNELS`: the plan changes (`set_limits`);
//! - `subscribe CHANNEL [CHANNEL_DATA]`: a subscribe signed as the app's auth endpoint would;
//! - `signin USER_DATA`: a signin signed as the app's auth endpoint would;
//! - `refuse CHANNEL`: the edge could not complete that subscription
//!   (`subscription_refused`, as for a full presence channel);
//! - `close`: the connection ends (`on_closed`) and the script with it;
//! - any other line: a text frame from the client, as sent.
//!
//! The harness signs because a fuzzer cannot forge an HMAC: without it, no private or presence
//! subscription would ever succeed. After every step it checks that the machine's outputs
//! and its state agree (the edge keeps its own view only from the outputs), and at the end
//! that every presence membership the machine asked for was given back.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::codes::CloseReason;
use crate::names::{AppKey, ChannelKind, ChannelName, SocketId, UserId};
use crate::session::{Credentials, Output, Session, SessionConfig};
use crate::sign::{channel_auth_string, hmac_hex, user_auth_string};
use crate::signin::MAX_WATCHLIST_LEN;
use crate::wire;

const KEY: &str = "fuzz-key";
const SECRET: &str = "fuzz-secret";
const SOCKET_ID: &str = "123.456";
/// Steps per script: enough for any state the machine has, few enough to stay fast.
const MAX_STEPS: usize = 256;
/// The largest clock move a step makes (a day), so `Instant` arithmetic cannot overflow.
const MAX_TICK_SECS: u64 = 86_400;

/// Runs `data` as a script (see the module docs), the clock starting at `start`.
pub fn session_script(data: &[u8], start: Instant) {
    let Ok(script) = std::str::from_utf8(data) else {
        return;
    };
    let mut run = Run::new(start);
    for line in script.lines().take(MAX_STEPS) {
        if run.step(line) == Step::Ended {
            return;
        }
    }
    run.close();
}

#[derive(Debug, PartialEq, Eq)]
enum Step {
    Continue,
    Ended,
}

/// The session under test and the edge's view of it, built only from the outputs.
struct Run {
    session: Session,
    now: Instant,
    max_client_event_bytes: usize,
    max_channels: usize,
    pong_timeout: Duration,
    subscribed: HashMap<ChannelName, Option<UserId>>,
    /// The presence member joined on each channel and not yet left (one per socket and
    /// channel, as the broker keeps them).
    joined: HashMap<ChannelName, UserId>,
    user: Option<UserId>,
}

impl Run {
    fn new(start: Instant) -> Self {
        let config = SessionConfig {
            activity_timeout: Duration::from_secs(120),
            pong_timeout: Duration::from_secs(30),
            max_client_event_bytes: 100,
            max_channels: 4,
        };
        let credentials = Credentials {
            key: AppKey::parse(KEY).expect("a valid key"),
            secret: SECRET.into(),
        };
        let socket_id = SocketId::parse(SOCKET_ID).expect("a valid socket id");
        let (max_client_event_bytes, max_channels, pong_timeout) = (
            config.max_client_event_bytes,
            config.max_channels,
            config.pong_timeout,
        );
        let (session, established) = Session::new(socket_id, credentials, config, start);
        check_frame(&established);
        Self {
            session,
            now: start,
            max_client_event_bytes,
            max_channels,
            pong_timeout,
            subscribed: HashMap::new(),
            joined: HashMap::new(),
            user: None,
        }
    }

    fn step(&mut self, line: &str) -> Step {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "tick" => {
                let secs = rest.trim().parse::<u64>().unwrap_or(1).min(MAX_TICK_SECS);
                self.now += Duration::from_secs(secs);
                return self.tick();
            }
            "activity" => self.session.note_activity(self.now),
            "limits" => {
                let mut numbers = rest.split(' ').map(|n| n.parse::<usize>().unwrap_or(0));
                self.max_client_event_bytes = numbers.next().unwrap_or(0).min(1 << 20);
                self.max_channels = numbers.next().unwrap_or(0).min(1000);
                self.session
                    .set_limits(self.max_client_event_bytes, self.max_channels);
            }
            "subscribe" => {
                let (channel, channel_data) = match rest.split_once(' ') {
                    Some((channel, data)) => (channel, Some(data)),
                    None => (rest, None),
                };
                self.feed(&signed_subscribe(channel, channel_data));
            }
            "signin" => self.feed(&signed_signin(rest)),
            "refuse" => self.refuse(rest),
            "close" => {
                self.close();
                return Step::Ended;
            }
            _ => self.feed(line),
        }
        Step::Continue
    }

    /// `on_tick` acts exactly when its deadline has come: a ping first, then the close.
    fn tick(&mut self) -> Step {
        let deadline = self.session.next_deadline();
        match self.session.on_tick(self.now) {
            None => assert!(self.now < deadline, "a due deadline was not acted on"),
            Some(Output::Send(ping)) => {
                assert!(self.now >= deadline, "pinged before the activity timeout");
                assert_eq!(frame_event(&ping), "pusher:ping");
                assert_eq!(self.session.next_deadline(), self.now + self.pong_timeout);
            }
            Some(Output::Close(reason)) => {
                assert!(self.now >= deadline, "closed before the pong timeout");
                assert_eq!(reason, CloseReason::PongTimeout);
                self.close();
                return Step::Ended;
            }
            Some(other) => panic!("a tick only pings or closes, not {other:?}"),
        }
        Step::Continue
    }

    fn feed(&mut self, text: &str) {
        let outputs = self.session.on_text(text, self.now);
        for output in outputs {
            self.apply(output);
        }
        self.check_state();
    }

    /// The machine's state is what its outputs said.
    fn check_state(&self) {
        let held: HashMap<ChannelName, Option<UserId>> = self
            .session
            .subscriptions()
            .map(|(channel, user)| (channel.clone(), user.cloned()))
            .collect();
        assert_eq!(held, self.subscribed, "state and outputs disagree");
        assert_eq!(self.session.signed_in_user(), self.user.as_ref());
        assert!(self.session.next_deadline() > self.now);
    }

    fn apply(&mut self, output: Output) {
        match output {
            Output::Send(frame) => check_frame(&frame),
            Output::Subscribe {
                channel, member, ..
            } => {
                assert!(
                    self.subscribed.len() < self.max_channels
                        || self.subscribed.contains_key(&channel),
                    "subscribed past the channel limit"
                );
                match channel.kind() {
                    ChannelKind::Presence => assert!(member.is_some(), "presence without member"),
                    ChannelKind::ServerToUser => {
                        assert!(member.is_none());
                        let own = self.user.as_ref().map(UserId::as_str);
                        assert_eq!(channel.server_to_user_id(), own, "another user's channel");
                    }
                    _ => assert!(member.is_none(), "a member outside presence"),
                }
                let user = member.map(|member| member.user_id);
                if let Some(user) = &user {
                    // The broker joins a socket once per channel; a re-subscribe is a no-op
                    // there, so the machine must not change the member it holds.
                    let joined = self.joined.entry(channel.clone()).or_insert(user.clone());
                    assert_eq!(joined, user, "a re-subscribe changed the presence member");
                }
                self.subscribed.insert(channel, user);
            }
            Output::Unsubscribe { channel, member } => {
                let held = self.subscribed.remove(&channel);
                assert_eq!(
                    held,
                    Some(member.clone()),
                    "unsubscribed from a channel not held"
                );
                if let Some(user) = member {
                    let joined = self.joined.remove(&channel);
                    assert_eq!(joined, Some(user), "left presence as a member never joined");
                }
            }
            Output::ClientEvent {
                channel,
                event,
                frame,
                to,
            } => {
                if let Some(to) = &to {
                    assert_eq!(
                        channel.kind(),
                        ChannelKind::Presence,
                        "addressed off presence"
                    );
                    let addressee = wire::addressee(&frame);
                    assert_eq!(addressee.as_deref(), Some(to.as_str()), "addressee lost");
                } else {
                    assert_eq!(wire::addressee(&frame), None, "broadcast read as addressed");
                }
                let member = self.subscribed.get(&channel);
                assert!(member.is_some(), "client event on a channel not held");
                assert!(event.is_client_event() && channel.kind().allows_client_events());
                let sent: Value = serde_json::from_str(&frame).expect("client events are JSON");
                assert_eq!(sent["event"].as_str(), Some(event.as_str()));
                assert_eq!(sent["channel"].as_str(), Some(channel.as_str()));
                let data = sent["data"].as_str().expect("data is a string");
                assert!(
                    data.len() <= self.max_client_event_bytes,
                    "client event too large"
                );
                let user = member.cloned().flatten();
                assert_eq!(sent["user_id"].as_str(), user.as_ref().map(UserId::as_str));
            }
            Output::SignedIn {
                user,
                watchlist,
                reply,
            } => {
                if let Some(previous) = &self.user {
                    assert_eq!(previous, &user, "a connection changed its user");
                }
                assert!(
                    watchlist.len() <= MAX_WATCHLIST_LEN,
                    "watchlist past its bound"
                );
                let distinct: HashSet<&UserId> = watchlist.iter().collect();
                assert_eq!(distinct.len(), watchlist.len(), "a user watched twice");
                assert_eq!(frame_event(&reply), "pusher:signin_success");
                check_frame(&reply);
                self.user = Some(user);
            }
            Output::Close(reason) => panic!("a client frame never closes, got {reason:?}"),
        }
    }

    /// The edge refused a subscription the machine granted: the connection is then off the
    /// channel, and a presence member was never joined.
    fn refuse(&mut self, channel: &str) {
        let Ok(channel) = ChannelName::parse(channel) else {
            return;
        };
        if self.subscribed.remove(&channel).is_none() {
            return;
        }
        self.joined.remove(&channel);
        self.session.subscription_refused(&channel);
        assert!(!self.session.is_subscribed(&channel));
        self.check_state();
    }

    /// The connection ends: every subscription is undone, and with it every membership.
    fn close(&mut self) {
        for output in self.session.on_closed() {
            let Output::Unsubscribe { .. } = output else {
                panic!("closing only unsubscribes, not {output:?}");
            };
            self.apply(output);
        }
        assert!(self.subscribed.is_empty(), "channels left after close");
        assert_eq!(self.session.subscriptions().count(), 0);
        assert!(
            self.joined.is_empty(),
            "presence memberships never left: {:?}",
            self.joined
        );
    }
}

/// Every frame the server sends is a JSON object with an event; errors carry a message.
fn check_frame(frame: &str) {
    let value: Value = serde_json::from_str(frame).expect("server frames are JSON");
    let event = value["event"]
        .as_str()
        .expect("server frames have an event");
    if event == "pusher:error" {
        assert!(value["data"]["message"].is_string());
    } else {
        assert!(value["data"].is_string(), "data is a JSON string");
    }
}

fn frame_event(frame: &str) -> String {
    let value: Value = serde_json::from_str(frame).expect("server frames are JSON");
    value["event"].as_str().unwrap_or_default().to_owned()
}

fn signed_subscribe(channel: &str, channel_data: Option<&str>) -> String {
    let signature = hmac_hex(
        SECRET,
        &channel_auth_string(SOCKET_ID, channel, channel_data),
    );
    let mut data = json!({ "channel": channel, "auth": format!("{KEY}:{signature}") });
    if let Some(channel_data) = channel_data {
        data["channel_data"] = json!(channel_data);
    }
    json!({ "event": "pusher:subscribe", "data": data }).to_string()
}

fn signed_signin(user_data: &str) -> String {
    let signature = hmac_hex(SECRET, &user_auth_string(SOCKET_ID, user_data));
    json!({
        "event": "pusher:signin",
        "data": { "user_data": user_data, "auth": format!("{KEY}:{signature}") },
    })
    .to_string()
}
