//! The Redis key layout. Every key of a channel carries the hash tag `{app:channel}` (app ids
//! and channel names hold neither braces nor colons), so Redis Cluster keeps a channel's keys
//! on one shard and its Lua steps stay atomic.
//!
//! - `<ns>h:{app:channel}`: hash of epoch `e`, last serial `s`, window `n` (events), `a` (ms)
//! - `<ns>l:{app:channel}`: list of stored frames, oldest first, `<unix ms>:<stamped frame>`
//! - `<ns>m:{app:channel}`: the pub/sub channel of its publications
//! - `<ns>ps:{app:channel}:<node>`: presence hash of one node's sockets → users;
//!   `<ns>pc:` / `<ns>pi:{app:channel}`: user → connections (cluster-wide), user → info JSON
//! - `<ns>pd:{nodes}`: node → heartbeat deadline; `<ns>pn:{nodes}:<node>`: the set of
//!   `app\nchannel` where the node holds presence memberships (see `presence`)
//! - `<ns>bq:{app}` / `<ns>bt:{app}`: the app's byte budget: its charges in publication
//!   order (`channel\nepoch\nserial\nbytes`) and their total

use protocol::names::{AppId, ChannelName};

pub struct Keys {
    namespace: String,
}

pub struct ChannelKeys {
    pub meta: String,
    pub list: String,
}

pub struct PresenceKeys {
    pub sockets: String,
    pub counts: String,
    pub infos: String,
}

impl Keys {
    pub fn new(namespace: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
        }
    }

    fn key(&self, kind: &str, app: &AppId, channel: &ChannelName) -> String {
        format!(
            "{}{kind}:{{{}:{}}}",
            self.namespace,
            app.as_str(),
            channel.as_str()
        )
    }

    pub fn channel(&self, app: &AppId, channel: &ChannelName) -> ChannelKeys {
        ChannelKeys {
            meta: self.key("h", app, channel),
            list: self.key("l", app, channel),
        }
    }

    pub fn messages(&self, app: &AppId, channel: &ChannelName) -> String {
        self.key("m", app, channel)
    }

    /// The app's budget keys: charges and total, on the app's own shard.
    pub fn budget(&self, app: &AppId) -> (String, String) {
        let tag = app.as_str();
        (
            format!("{}bq:{{{tag}}}", self.namespace),
            format!("{}bt:{{{tag}}}", self.namespace),
        )
    }

    /// A channel's presence keys, with `node`'s own sockets.
    pub fn presence(&self, app: &AppId, channel: &ChannelName, node: &str) -> PresenceKeys {
        PresenceKeys {
            sockets: format!("{}:{node}", self.key("ps", app, channel)),
            counts: self.key("pc", app, channel),
            infos: self.key("pi", app, channel),
        }
    }

    /// Every node's presence heartbeat deadline, beside the registries (one shard).
    pub fn node_deadlines(&self) -> String {
        format!("{}pd:{{nodes}}", self.namespace)
    }

    /// The channels where `node` holds presence memberships.
    pub fn node_registry(&self, node: &str) -> String {
        format!("{}pn:{{nodes}}:{node}", self.namespace)
    }
}
