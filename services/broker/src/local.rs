//! The single-node broker: publications go straight to this node's sink, presence lives in a
//! map.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use protocol::names::{AppId, ChannelName, SocketId, UserId};
use protocol::wire::Member;

use crate::{Broker, BrokerError, DeliverySink, PresenceJoin, Publication};

type ChannelKey = (AppId, ChannelName);

/// In-process pub/sub and presence for one node.
pub struct Local {
    sink: Arc<dyn DeliverySink>,
    // A std mutex: it is never held across an await, and presence changes are short.
    presence: Mutex<HashMap<ChannelKey, PresenceChannel>>,
}

#[derive(Default)]
struct PresenceChannel {
    users: BTreeMap<UserId, PresenceUser>,
    user_of_socket: HashMap<SocketId, UserId>,
}

struct PresenceUser {
    user_info: serde_json::Value,
    sockets: HashSet<SocketId>,
}

impl PresenceChannel {
    fn members(&self) -> Vec<Member> {
        self.users
            .iter()
            .map(|(user_id, user)| Member {
                user_id: user_id.clone(),
                user_info: user.user_info.clone(),
            })
            .collect()
    }
}

impl Local {
    pub fn new(sink: Arc<dyn DeliverySink>) -> Self {
        Self {
            sink,
            presence: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl Broker for Local {
    async fn publish(&self, publication: Publication) -> Result<(), BrokerError> {
        self.sink.deliver(&publication);
        Ok(())
    }

    async fn presence_join(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
        member: Member,
        max_members: usize,
    ) -> Result<PresenceJoin, BrokerError> {
        let mut presence = self.presence.lock().expect("presence lock poisoned");
        let entry = presence.entry((app.clone(), channel.clone())).or_default();
        if entry.user_of_socket.contains_key(socket) {
            return Ok(PresenceJoin {
                members: entry.members(),
                first_for_user: false,
            });
        }
        let new_user = !entry.users.contains_key(&member.user_id);
        if new_user && entry.users.len() >= max_members {
            return Err(BrokerError::PresenceFull { max: max_members });
        }
        entry
            .user_of_socket
            .insert(socket.clone(), member.user_id.clone());
        let user = entry
            .users
            .entry(member.user_id)
            .or_insert_with(|| PresenceUser {
                user_info: member.user_info,
                sockets: HashSet::new(),
            });
        user.sockets.insert(socket.clone());
        let first_for_user = user.sockets.len() == 1;
        Ok(PresenceJoin {
            members: entry.members(),
            first_for_user,
        })
    }

    async fn presence_leave(
        &self,
        app: &AppId,
        channel: &ChannelName,
        socket: &SocketId,
    ) -> Result<Option<UserId>, BrokerError> {
        let mut presence = self.presence.lock().expect("presence lock poisoned");
        let key = (app.clone(), channel.clone());
        let Some(entry) = presence.get_mut(&key) else {
            return Ok(None);
        };
        let Some(user_id) = entry.user_of_socket.remove(socket) else {
            return Ok(None);
        };
        let mut left = None;
        if let Some(user) = entry.users.get_mut(&user_id) {
            user.sockets.remove(socket);
            if user.sockets.is_empty() {
                entry.users.remove(&user_id);
                left = Some(user_id);
            }
        }
        if entry.users.is_empty() {
            presence.remove(&key);
        }
        Ok(left)
    }

    async fn presence_members(
        &self,
        app: &AppId,
        channel: &ChannelName,
    ) -> Result<Vec<Member>, BrokerError> {
        let presence = self.presence.lock().expect("presence lock poisoned");
        let key = (app.clone(), channel.clone());
        Ok(presence
            .get(&key)
            .map(PresenceChannel::members)
            .unwrap_or_default())
    }
}
