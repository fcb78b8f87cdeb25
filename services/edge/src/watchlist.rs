//! Watchlist events: a signed-in connection hears `online` when a user on its watchlist signs
//! in on their first connection, and `offline` when their last signed-in connection closes.
//!
//! `Registry` is the pure bookkeeping of one app (connections, who watches whom, who is
//! online), returning what to tell whom; `Watchlists` keeps one per app behind a lock and
//! pushes the `pusher_internal:watchlist_events` frames into outboxes, so a change and its
//! notices are one step: no watcher sees an `offline` before the `online` it follows.
//!
//! Memory: at most one entry per signed-in connection, each watching at most
//! `protocol::signin::MAX_WATCHLIST_LEN` users; an app's registry goes when its last
//! signed-in connection does. Apps never see each other's users: the registries are keyed by
//! app. Online means signed in on this node (one node per app until the broker spans nodes).

use std::collections::{HashMap, HashSet};
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use bytestring::ByteString;
use protocol::names::{AppId, UserId};
use protocol::wire::{self, OnlineStatus};

use crate::outbox::{Outbox, Outgoing};

/// Statuses to tell, in order: each with the users that now have it.
pub type Events = Vec<(OnlineStatus, Vec<UserId>)>;

/// What one connection must be told: its watched users' new statuses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice<C> {
    pub to: C,
    pub events: Events,
}

impl<C> Notice<C> {
    /// The frame that tells it.
    pub fn frame(&self) -> String {
        let events: Vec<(OnlineStatus, &[UserId])> = self
            .events
            .iter()
            .map(|(status, users)| (*status, users.as_slice()))
            .collect();
        wire::watchlist_events(&events)
    }
}

/// What a signin tells: the signed-in user's watchers, and the connection itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignInNotices<C> {
    pub watchers: Vec<Notice<C>>,
    pub own: Option<Notice<C>>,
}

/// One app's signed-in connections and watchlists; `C` names a connection.
#[derive(Debug)]
pub struct Registry<C> {
    connections: HashMap<C, SignedIn>,
    /// The signed-in connections of each user: online while there is one.
    online: HashMap<UserId, HashSet<C>>,
    /// The connections that watch each user.
    watchers: HashMap<UserId, HashSet<C>>,
}

#[derive(Debug)]
struct SignedIn {
    user: UserId,
    watching: Vec<UserId>,
}

impl<C> Default for Registry<C> {
    fn default() -> Self {
        Self {
            connections: HashMap::new(),
            online: HashMap::new(),
            watchers: HashMap::new(),
        }
    }
}

impl<C: Copy + Eq + Hash> Registry<C> {
    /// Signs `connection` in as `user` watching `watchlist` (a connection signing in again,
    /// as the same user, replaces its watchlist). Returns the `online` notices for those who
    /// watch `user` if this is their first connection, and this connection's initial state:
    /// which of its watched users are online and which are offline.
    pub fn sign_in(
        &mut self,
        connection: C,
        user: UserId,
        watchlist: Vec<UserId>,
    ) -> SignInNotices<C> {
        let mut watchers = Vec::new();
        match self.connections.remove(&connection) {
            Some(previous) => self.stop_watching(connection, &previous.watching),
            None => {
                let sessions = self.online.entry(user.clone()).or_default();
                sessions.insert(connection);
                if sessions.len() == 1 {
                    watchers = self.tell_watchers(&user, OnlineStatus::Online);
                }
            }
        }
        for watched in &watchlist {
            self.watchers
                .entry(watched.clone())
                .or_default()
                .insert(connection);
        }
        let (online, offline): (Vec<UserId>, Vec<UserId>) = watchlist
            .iter()
            .cloned()
            .partition(|watched| self.online.contains_key(watched));
        let events: Vec<_> = [
            (OnlineStatus::Online, online),
            (OnlineStatus::Offline, offline),
        ]
        .into_iter()
        .filter(|(_, users)| !users.is_empty())
        .collect();
        let own = (!events.is_empty()).then_some(Notice {
            to: connection,
            events,
        });
        self.connections.insert(
            connection,
            SignedIn {
                user,
                watching: watchlist,
            },
        );
        SignInNotices { watchers, own }
    }

    /// Forgets a connection that closed; if it was its user's last, those who watch the user
    /// are told `offline`. A connection never signed in changes nothing.
    pub fn sign_out(&mut self, connection: C) -> Vec<Notice<C>> {
        let Some(signed_in) = self.connections.remove(&connection) else {
            return Vec::new();
        };
        self.stop_watching(connection, &signed_in.watching);
        let Some(sessions) = self.online.get_mut(&signed_in.user) else {
            return Vec::new();
        };
        sessions.remove(&connection);
        if !sessions.is_empty() {
            return Vec::new();
        }
        self.online.remove(&signed_in.user);
        self.tell_watchers(&signed_in.user, OnlineStatus::Offline)
    }

    /// True when nothing is kept: the app's registry can go.
    pub fn is_empty(&self) -> bool {
        self.connections.is_empty() && self.online.is_empty() && self.watchers.is_empty()
    }

    fn stop_watching(&mut self, connection: C, watching: &[UserId]) {
        for watched in watching {
            if let Some(watchers) = self.watchers.get_mut(watched) {
                watchers.remove(&connection);
                if watchers.is_empty() {
                    self.watchers.remove(watched);
                }
            }
        }
    }

    fn tell_watchers(&self, user: &UserId, status: OnlineStatus) -> Vec<Notice<C>> {
        let Some(watchers) = self.watchers.get(user) else {
            return Vec::new();
        };
        watchers
            .iter()
            .map(|&watcher| Notice {
                to: watcher,
                events: vec![(status, vec![user.clone()])],
            })
            .collect()
    }
}

/// This node's watchlists, one registry per app, delivering notices into outboxes.
#[derive(Default)]
pub struct Watchlists {
    apps: Mutex<HashMap<AppId, AppWatchlists>>,
}

#[derive(Default)]
struct AppWatchlists {
    registry: Registry<usize>,
    /// The outbox of every connection in the registry, by its address.
    outboxes: HashMap<usize, Arc<Outbox>>,
}

/// Names an outbox by its address, unique while the registry holds it.
fn id_of(outbox: &Arc<Outbox>) -> usize {
    Arc::as_ptr(outbox) as usize
}

/// A connection signing in: as whom, watching whom, and the `signin_success` frame to send.
pub struct SignIn<'a> {
    pub user: &'a UserId,
    pub watchlist: Vec<UserId>,
    pub reply: String,
}

impl Watchlists {
    /// The connection signed in: its user's watchers hear `online` if it is the user's first
    /// connection, then it gets `reply` and its watched users' statuses. All under the lock,
    /// so no change can slip between the statuses it is told and the changes it hears next.
    pub fn sign_in(&self, app: &AppId, signin: SignIn<'_>, outbox: &Arc<Outbox>) {
        let mut apps = self.apps.lock().expect("watchlists lock poisoned");
        let of_app = apps.entry(app.clone()).or_default();
        of_app.outboxes.insert(id_of(outbox), outbox.clone());
        let notices = of_app
            .registry
            .sign_in(id_of(outbox), signin.user.clone(), signin.watchlist);
        of_app.deliver(&notices.watchers);
        outbox.send(Outgoing::Text(signin.reply.into()));
        if let Some(own) = notices.own {
            outbox.push(own.frame().into());
        }
    }

    /// The connection closed: if it was its user's last, their watchers hear `offline`.
    pub fn sign_out(&self, app: &AppId, outbox: &Arc<Outbox>) {
        let mut apps = self.apps.lock().expect("watchlists lock poisoned");
        let Some(of_app) = apps.get_mut(app) else {
            return;
        };
        let notices = of_app.registry.sign_out(id_of(outbox));
        of_app.deliver(&notices);
        of_app.outboxes.remove(&id_of(outbox));
        if of_app.registry.is_empty() {
            apps.remove(app);
        }
    }
}

impl AppWatchlists {
    /// Pushes without awaiting (under the lock, so notices keep their order); a watcher that
    /// does not read is closed as a slow consumer like any other. The watchers of one change
    /// share one frame, a refcount each, as in fan-out.
    fn deliver(&self, notices: &[Notice<usize>]) {
        let mut shared: Option<(&Events, ByteString)> = None;
        for notice in notices {
            let frame = match &shared {
                Some((events, frame)) if *events == &notice.events => frame.clone(),
                _ => {
                    let frame = ByteString::from(notice.frame());
                    shared = Some((&notice.events, frame.clone()));
                    frame
                }
            };
            if let Some(outbox) = self.outboxes.get(&notice.to) {
                outbox.push(frame);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use OnlineStatus::{Offline, Online};

    fn user(id: &str) -> UserId {
        UserId::parse(id).unwrap()
    }

    fn users(ids: &[&str]) -> Vec<UserId> {
        ids.iter().map(|id| user(id)).collect()
    }

    fn signed_in(watchers: Vec<Notice<u32>>, own: Option<Notice<u32>>) -> SignInNotices<u32> {
        SignInNotices { watchers, own }
    }

    fn notice(to: u32, events: &[(OnlineStatus, &[&str])]) -> Notice<u32> {
        Notice {
            to,
            events: events
                .iter()
                .map(|(status, ids)| (*status, users(ids)))
                .collect(),
        }
    }

    #[test]
    fn a_watcher_hears_the_first_connection_and_the_last() {
        let mut registry = Registry::default();
        // A (connection 1) watches B and C: both offline at first.
        assert_eq!(
            registry.sign_in(1, user("a"), users(&["b", "c"])),
            signed_in(vec![], Some(notice(1, &[(Offline, &["b", "c"])])))
        );
        // B's first connection: A hears online; B watches nobody.
        assert_eq!(
            registry.sign_in(2, user("b"), Vec::new()),
            signed_in(vec![notice(1, &[(Online, &["b"])])], None)
        );
        // B's second connection changes nothing for A.
        assert_eq!(
            registry.sign_in(3, user("b"), Vec::new()),
            signed_in(vec![], None)
        );
        assert_eq!(registry.sign_out(2), []);
        // B's last connection: A hears offline.
        assert_eq!(registry.sign_out(3), [notice(1, &[(Offline, &["b"])])]);
    }

    #[test]
    fn a_new_watcher_learns_who_is_already_online() {
        let mut registry = Registry::default();
        registry.sign_in(2, user("b"), Vec::new());
        assert_eq!(
            registry.sign_in(1, user("a"), users(&["b", "c"])),
            signed_in(
                vec![],
                Some(notice(1, &[(Online, &["b"]), (Offline, &["c"])]))
            )
        );
    }

    #[test]
    fn two_users_watching_each_other() {
        let mut registry = Registry::default();
        registry.sign_in(1, user("a"), users(&["b"]));
        assert_eq!(
            registry.sign_in(2, user("b"), users(&["a"])),
            signed_in(
                vec![notice(1, &[(Online, &["b"])])],
                Some(notice(2, &[(Online, &["a"])]))
            )
        );
        assert_eq!(registry.sign_out(1), [notice(2, &[(Offline, &["a"])])]);
    }

    #[test]
    fn a_closed_watcher_hears_nothing_more_and_leaves_nothing_behind() {
        let mut registry = Registry::default();
        registry.sign_in(1, user("a"), users(&["b"]));
        assert_eq!(registry.sign_out(1), []);
        assert_eq!(
            registry.sign_in(2, user("b"), Vec::new()),
            signed_in(vec![], None)
        );
        assert_eq!(registry.sign_out(2), []);
        assert!(registry.is_empty());
    }

    #[test]
    fn signing_in_again_replaces_the_watchlist_without_a_second_online() {
        let mut registry = Registry::default();
        registry.sign_in(9, user("w"), users(&["a"]));
        registry.sign_in(1, user("a"), users(&["b"]));
        assert_eq!(
            registry.sign_in(1, user("a"), users(&["c"])),
            signed_in(vec![], Some(notice(1, &[(Offline, &["c"])])))
        );
        // No longer watching B.
        assert_eq!(
            registry.sign_in(2, user("b"), Vec::new()),
            signed_in(vec![], None)
        );
        assert_eq!(registry.sign_out(1), [notice(9, &[(Offline, &["a"])])]);
    }

    #[test]
    fn a_connection_that_never_signed_in_changes_nothing() {
        let mut registry: Registry<u32> = Registry::default();
        assert_eq!(registry.sign_out(5), []);
        assert!(registry.is_empty());
    }

    fn outbox(socket_id: &str) -> Arc<Outbox> {
        let socket_id = protocol::names::SocketId::parse(socket_id).unwrap();
        Arc::new(Outbox::new(
            socket_id,
            crate::outbox::OutboxBounds::frames_for_test(16),
        ))
    }

    fn texts(outbox: &Outbox) -> Vec<String> {
        outbox
            .drain()
            .into_iter()
            .map(|item| match item {
                Outgoing::Text(text) => text.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect()
    }

    fn signin(user: &UserId, watchlist: Vec<UserId>) -> SignIn<'_> {
        SignIn {
            user,
            watchlist,
            reply: "signed in".into(),
        }
    }

    #[test]
    fn apps_are_apart_and_an_app_leaves_nothing_behind() {
        let watchlists = Watchlists::default();
        let (one, two) = (AppId::parse("1").unwrap(), AppId::parse("2").unwrap());
        let (watcher, foreign, local) = (outbox("1.1"), outbox("1.2"), outbox("1.3"));
        watchlists.sign_in(&one, signin(&user("a"), users(&["b"])), &watcher);
        watchlists.sign_in(&two, signin(&user("b"), Vec::new()), &foreign);
        let offline = notice(0, &[(Offline, &["b"])]).frame();
        assert_eq!(texts(&watcher), ["signed in".to_owned(), offline]);
        // Another app's "b" told app 1's watcher nothing; app 1's "b" does.
        watchlists.sign_in(&one, signin(&user("b"), Vec::new()), &local);
        assert_eq!(texts(&watcher), [notice(0, &[(Online, &["b"])]).frame()]);
        for (app, outbox) in [(&one, &watcher), (&two, &foreign), (&one, &local)] {
            watchlists.sign_out(app, outbox);
        }
        assert!(watchlists.apps.lock().unwrap().is_empty());
    }

    #[test]
    fn the_frame_is_what_pusher_js_reads() {
        let frame = notice(1, &[(Online, &["b"])]).frame();
        let parsed: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(parsed["event"], "pusher_internal:watchlist_events");
        let data: serde_json::Value =
            serde_json::from_str(parsed["data"].as_str().unwrap()).unwrap();
        assert_eq!(
            data,
            serde_json::json!({"events":[{"name":"online","user_ids":["b"]}]})
        );
    }
}
