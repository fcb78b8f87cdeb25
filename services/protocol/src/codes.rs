//! Every reason the server closes a connection, and the one exhaustive mapping to Pusher's close
//! codes.
//!
//! The ranges drive pusher-js: 4000–4099 it does not reconnect, 4100–4199 it backs off and
//! reconnects, 4200–4299 it reconnects at once. Codes 4300 and above also stop pusher-js from
//! reconnecting, so they are only ever sent inside `pusher:error` frames, never as a close.

/// Why the server ends a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CloseReason {
    /// The URL named a key no app has.
    UnknownAppKey,
    /// The app exists but is disabled.
    AppDisabled,
    /// The app is at its plan's concurrent connection limit.
    OverConnectionQuota,
    /// The URL is not `/app/{key}`.
    PathNotFound,
    /// The `protocol` query parameter is not a number.
    InvalidProtocolFormat,
    /// The `protocol` query parameter is a number we do not speak.
    UnsupportedProtocol,
    /// The connection was terminated by the app (terminate_connections) or lost its key.
    Unauthorized,
    /// The browser's `Origin` is not among the app's allowed origins.
    OriginNotAllowed,
    /// The connection did not drain its outbound queue fast enough.
    SlowConsumer,
    /// The app catalog (the control plane's database) cannot answer and the key is not
    /// cached: a transient failure of ours, so the client backs off and retries.
    CatalogUnavailable,
    /// The cluster's shared state (connection counts) cannot answer: a transient failure of
    /// ours, so the client backs off and retries.
    ClusterUnavailable,
    /// The app opens connections on this node faster than its per-app admission rate:
    /// pusher-js backs off and reconnects, and the app's other clients are not touched.
    AppConnectRateExceeded,
    /// The node is shutting down or draining; reconnect at once elsewhere.
    ServerShuttingDown,
    /// The client did not answer a `pusher:ping` in time.
    PongTimeout,
    /// This node lost its subscription to the cluster's broker, so live events may have been
    /// missed: reconnect at once and resume (the history replays them, or `resume_failed`
    /// says they are gone).
    DeliveriesInterrupted,
}

/// A close code and the reason text sent with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Disconnect {
    pub code: u16,
    pub reason: &'static str,
}

impl CloseReason {
    pub fn disconnect(self) -> Disconnect {
        let (code, reason) = match self {
            Self::UnknownAppKey => (4001, "App key does not exist"),
            Self::AppDisabled => (4003, "App is disabled"),
            Self::OverConnectionQuota => (4004, "App is over its connection quota"),
            Self::PathNotFound => (4005, "Path not found"),
            Self::InvalidProtocolFormat => (4006, "Invalid version string format"),
            Self::UnsupportedProtocol => (4007, "Unsupported protocol version"),
            Self::Unauthorized => (4009, "Connection is unauthorized"),
            Self::OriginNotAllowed => (4009, "Origin not allowed"),
            Self::SlowConsumer => (4100, "Over capacity: the client did not read fast enough"),
            Self::CatalogUnavailable => (
                4100,
                "Over capacity: apps cannot be looked up right now; retry later",
            ),
            Self::ClusterUnavailable => (
                4100,
                "Over capacity: cluster state cannot be reached right now; retry later",
            ),
            Self::AppConnectRateExceeded => (
                4100,
                "Over capacity: the app opens connections too fast on this node; retry later",
            ),
            Self::ServerShuttingDown => (4200, "Server is restarting; reconnect"),
            Self::PongTimeout => (4201, "Pong reply not received"),
            Self::DeliveriesInterrupted => {
                (4202, "Deliveries were interrupted; reconnect and resume")
            }
        };
        Disconnect { code, reason }
    }
}

/// Codes carried inside `pusher:error` frames that do not close the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// Client event rejected because the connection sends more than its rate allows.
    ClientEventRateLimited,
    /// A signin's watchlist held more than 100 user ids; only the first 100 are watched.
    WatchlistLimitExceeded,
}

impl ErrorCode {
    pub fn code(self) -> u16 {
        match self {
            Self::ClientEventRateLimited => 4301,
            Self::WatchlistLimitExceeded => 4302,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    const ALL: [CloseReason; 15] = [
        CloseReason::UnknownAppKey,
        CloseReason::AppDisabled,
        CloseReason::OverConnectionQuota,
        CloseReason::PathNotFound,
        CloseReason::InvalidProtocolFormat,
        CloseReason::UnsupportedProtocol,
        CloseReason::Unauthorized,
        CloseReason::OriginNotAllowed,
        CloseReason::SlowConsumer,
        CloseReason::CatalogUnavailable,
        CloseReason::ClusterUnavailable,
        CloseReason::AppConnectRateExceeded,
        CloseReason::ServerShuttingDown,
        CloseReason::PongTimeout,
        CloseReason::DeliveriesInterrupted,
    ];

    #[test]
    fn no_close_code_is_in_the_error_only_range() {
        for reason in ALL {
            let code = reason.disconnect().code;
            assert!(
                (4000..4300).contains(&code),
                "{reason:?} closes with {code}"
            );
        }
    }

    #[test]
    fn codes_are_the_documented_ones() {
        let codes: Vec<u16> = ALL.iter().map(|r| r.disconnect().code).collect();
        assert_eq!(
            codes,
            [
                4001, 4003, 4004, 4005, 4006, 4007, 4009, 4009, 4100, 4100, 4100, 4100, 4200, 4201,
                4202
            ]
        );
        assert_eq!(ErrorCode::ClientEventRateLimited.code(), 4301);
        assert_eq!(ErrorCode::WatchlistLimitExceeded.code(), 4302);
    }

    #[test]
    fn every_reason_has_its_own_text() {
        let texts: HashSet<&str> = ALL.iter().map(|r| r.disconnect().reason).collect();
        assert_eq!(texts.len(), ALL.len());
    }
}
