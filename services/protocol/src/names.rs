//! Newtypes for every name that crosses the wire, parsed once at the edge of the system.
//!
//! Inner code takes these types only, so an unchecked string can never reach a channel table,
//! a signature or a frame.

use std::fmt;

use thiserror::Error;

/// Longest channel name accepted (pusher-http-node validates 200; the docs say 164).
pub const MAX_CHANNEL_NAME_LEN: usize = 200;
/// Longest event name accepted, as pusher-http-node and soketi enforce.
pub const MAX_EVENT_NAME_LEN: usize = 200;
/// Longest presence user id, as Pusher documents.
pub const MAX_USER_ID_LEN: usize = 128;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum NameError {
    #[error("channel name must not be empty")]
    EmptyChannel,
    #[error("channel name is longer than {MAX_CHANNEL_NAME_LEN} characters")]
    ChannelTooLong,
    #[error("channel name may only contain A-Z a-z 0-9 _ - = @ , . ;")]
    ChannelCharacters,
    #[error("event name must be 1 to {MAX_EVENT_NAME_LEN} characters")]
    EventLength,
    #[error("invalid socket id: expected digits.digits")]
    SocketId,
    #[error("user id must be 1 to {MAX_USER_ID_LEN} characters")]
    UserId,
    #[error("app id must be 1 to 64 characters of A-Z a-z 0-9 _ -")]
    AppId,
    #[error("app key must be 1 to 64 characters of A-Z a-z 0-9 _ -")]
    AppKey,
}

/// What a channel's name prefix makes it. Checked in the order Pusher checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ChannelKind {
    Public,
    Private,
    PrivateEncrypted,
    Presence,
    /// `#server-to-user-{id}`: only the connection signed in as `{id}` may subscribe.
    ServerToUser,
}

impl ChannelKind {
    /// Private, encrypted and presence channels need a signature to subscribe.
    pub fn requires_auth(self) -> bool {
        matches!(
            self,
            Self::Private | Self::PrivateEncrypted | Self::Presence
        )
    }

    /// Client events are allowed on private and presence channels only.
    pub fn allows_client_events(self) -> bool {
        matches!(
            self,
            Self::Private | Self::PrivateEncrypted | Self::Presence
        )
    }
}

const SERVER_TO_USER_PREFIX: &str = "#server-to-user-";

/// A valid channel name, knowing its kind.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ChannelName(Box<str>);

impl ChannelName {
    /// Parses a name as clients may subscribe to it: the public character set, or the
    /// reserved `#server-to-user-{id}` form.
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() {
            return Err(NameError::EmptyChannel);
        }
        if name.len() > MAX_CHANNEL_NAME_LEN {
            return Err(NameError::ChannelTooLong);
        }
        let body = name.strip_prefix(SERVER_TO_USER_PREFIX).unwrap_or(name);
        if body.is_empty() || !body.bytes().all(is_channel_byte) {
            return Err(NameError::ChannelCharacters);
        }
        Ok(Self(name.into()))
    }

    /// The channel that carries server-to-user events for `user`.
    pub fn server_to_user(user: &UserId) -> Result<Self, NameError> {
        Self::parse(&format!("{SERVER_TO_USER_PREFIX}{}", user.as_str()))
    }

    pub fn kind(&self) -> ChannelKind {
        let name = &*self.0;
        if name.starts_with("private-encrypted-") {
            ChannelKind::PrivateEncrypted
        } else if name.starts_with("private-") {
            ChannelKind::Private
        } else if name.starts_with("presence-") {
            ChannelKind::Presence
        } else if name.starts_with(SERVER_TO_USER_PREFIX) {
            ChannelKind::ServerToUser
        } else {
            ChannelKind::Public
        }
    }

    /// For `#server-to-user-{id}` channels, the `{id}`.
    pub fn server_to_user_id(&self) -> Option<&str> {
        self.0.strip_prefix(SERVER_TO_USER_PREFIX)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_channel_byte(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"_-=@,.;".contains(&byte)
}

impl fmt::Display for ChannelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for ChannelName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// An event name: 1 to 200 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct EventName(Box<str>);

impl EventName {
    pub fn parse(name: &str) -> Result<Self, NameError> {
        if name.is_empty() || name.len() > MAX_EVENT_NAME_LEN {
            return Err(NameError::EventLength);
        }
        Ok(Self(name.into()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_client_event(&self) -> bool {
        self.0.starts_with("client-")
    }

    /// `pusher:` and `pusher_internal:` names are the protocol's own; clients may not send
    /// them as events to other clients.
    pub fn is_reserved(&self) -> bool {
        self.0.starts_with("pusher:") || self.0.starts_with("pusher_internal:")
    }
}

/// A connection's id, `digits.digits`, as pusher-http-node validates it.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SocketId(Box<str>);

impl SocketId {
    pub fn parse(id: &str) -> Result<Self, NameError> {
        let (left, right) = id.split_once('.').ok_or(NameError::SocketId)?;
        let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
        if digits(left) && digits(right) && id.len() <= 41 {
            Ok(Self(id.into()))
        } else {
            Err(NameError::SocketId)
        }
    }

    /// Builds an id from its two numbers (the edge draws both at random).
    pub fn from_parts(left: u32, right: u64) -> Self {
        Self(format!("{left}.{right}").into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SocketId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A user's id in presence and user authentication; numbers are normalised to their decimal
/// string, as PHP apps often send ints.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(Box<str>);

impl UserId {
    pub fn parse(id: &str) -> Result<Self, NameError> {
        if id.is_empty() || id.len() > MAX_USER_ID_LEN {
            return Err(NameError::UserId);
        }
        Ok(Self(id.into()))
    }

    /// Accepts a JSON string or integer, as presence `channel_data` may carry either.
    pub fn from_json(value: &serde_json::Value) -> Result<Self, NameError> {
        match value {
            serde_json::Value::String(text) => Self::parse(text),
            serde_json::Value::Number(number) if number.is_i64() || number.is_u64() => {
                Self::parse(&number.to_string())
            }
            _ => Err(NameError::UserId),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

macro_rules! identifier {
    ($name:ident, $error:expr) => {
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Box<str>);

        impl $name {
            pub fn parse(text: &str) -> Result<Self, NameError> {
                let valid = !text.is_empty()
                    && text.len() <= 64
                    && text
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
                if valid {
                    Ok(Self(text.into()))
                } else {
                    Err($error)
                }
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

identifier!(AppId, NameError::AppId);
identifier!(AppKey, NameError::AppKey);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_kinds_follow_prefix_order() {
        let kind = |name: &str| ChannelName::parse(name).unwrap().kind();
        assert_eq!(kind("news"), ChannelKind::Public);
        assert_eq!(kind("private-a"), ChannelKind::Private);
        assert_eq!(kind("private-encrypted-a"), ChannelKind::PrivateEncrypted);
        assert_eq!(kind("presence-room"), ChannelKind::Presence);
        assert_eq!(kind("#server-to-user-42"), ChannelKind::ServerToUser);
        assert_eq!(kind("cache-x"), ChannelKind::Public);
    }

    #[test]
    fn channel_names_reject_bad_input() {
        assert_eq!(ChannelName::parse(""), Err(NameError::EmptyChannel));
        assert_eq!(ChannelName::parse("a b"), Err(NameError::ChannelCharacters));
        assert_eq!(
            ChannelName::parse("#other"),
            Err(NameError::ChannelCharacters)
        );
        assert_eq!(
            ChannelName::parse("#server-to-user-"),
            Err(NameError::ChannelCharacters)
        );
        assert_eq!(
            ChannelName::parse(&"a".repeat(201)),
            Err(NameError::ChannelTooLong)
        );
        assert!(ChannelName::parse(&"a".repeat(200)).is_ok());
        assert!(ChannelName::parse("A-z_0=9@,.;").is_ok());
    }

    #[test]
    fn socket_ids_are_digits_dot_digits() {
        assert!(SocketId::parse("123.456").is_ok());
        for bad in ["", "1", "1.", ".1", "a.1", "1.2.3", "1.2 "] {
            assert_eq!(SocketId::parse(bad), Err(NameError::SocketId), "{bad:?}");
        }
        assert_eq!(SocketId::from_parts(7, 9).as_str(), "7.9");
    }

    #[test]
    fn numeric_user_ids_become_strings() {
        assert_eq!(
            UserId::from_json(&serde_json::json!(10)).unwrap().as_str(),
            "10"
        );
        assert_eq!(
            UserId::from_json(&serde_json::json!("u")).unwrap().as_str(),
            "u"
        );
        assert!(UserId::from_json(&serde_json::json!(1.5)).is_err());
        assert!(UserId::from_json(&serde_json::json!("")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_parsed_channel_name_is_within_the_rules(name in "\\PC{0,210}") {
            if let Ok(channel) = ChannelName::parse(&name) {
                proptest::prop_assert!(channel.as_str().len() <= MAX_CHANNEL_NAME_LEN);
                let body = channel.as_str().trim_start_matches(SERVER_TO_USER_PREFIX);
                proptest::prop_assert!(body.bytes().all(is_channel_byte));
            }
        }
    }
}
