//! Why an attempt failed, in the coarse words the delivery log keeps. The log is read by the
//! tenant, so it never holds an error's text: an error chain can carry addresses, host names
//! and banners from the far side, which would make the log a probe of the network.

use std::error::Error as StdError;
use std::io;

use crate::webhooks::guard::{ForbiddenAddress, LookupFailed};

/// One failed attempt's category.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer within the request timeout.
    Timeout,
    /// The host name did not resolve.
    Dns,
    /// The URL or every address of its host is one webhooks may not reach.
    ForbiddenAddress,
    /// The connection was refused.
    ConnectRefused,
    /// The connection failed otherwise (unreachable network or host, …).
    ConnectFailed,
    /// The TLS handshake failed (certificate, protocol).
    Tls,
    /// The connection was closed or reset before an answer.
    ConnectionClosed,
    /// Anything else about the request.
    RequestFailed,
    /// The endpoint answered with a status outside 2xx.
    HttpStatus(u16),
    /// The app has no live key to sign with.
    NoSigningKey,
    /// The endpoint already had `max_pending_per_webhook` requests waiting: dropped unsent.
    BacklogFull,
}

impl Failure {
    /// The text stored in the delivery log's `error`.
    pub fn category(self) -> String {
        match self {
            Self::Timeout => "timeout".into(),
            Self::Dns => "dns".into(),
            Self::ForbiddenAddress => "forbidden_address".into(),
            Self::ConnectRefused => "connect_refused".into(),
            Self::ConnectFailed => "connect_failed".into(),
            Self::Tls => "tls".into(),
            Self::ConnectionClosed => "connection_closed".into(),
            Self::RequestFailed => "request_failed".into(),
            Self::HttpStatus(status) => format!("http_status_{status}"),
            Self::NoSigningKey => "no_signing_key".into(),
            Self::BacklogFull => "backlog_full".into(),
        }
    }

    /// The category of a request error, from the kinds of error in its chain (never its text).
    pub fn of(error: &reqwest::Error) -> Self {
        let mut chain: Vec<&(dyn StdError + 'static)> = Vec::new();
        let mut source: Option<&(dyn StdError + 'static)> = Some(error);
        while let Some(cause) = source {
            chain.push(cause);
            source = cause.source();
        }
        if chain.iter().any(|cause| cause.is::<ForbiddenAddress>()) {
            return Self::ForbiddenAddress;
        }
        if chain.iter().any(|cause| cause.is::<LookupFailed>()) {
            return Self::Dns;
        }
        if error.is_timeout() {
            return Self::Timeout;
        }
        // An `io::Error` wrapping another hides it from `source()`: look inside with `get_ref`.
        let mut io_kinds = Vec::new();
        for cause in &chain {
            let mut inner = cause.downcast_ref::<io::Error>();
            while let Some(io_error) = inner {
                io_kinds.push(io_error.kind());
                inner = io_error
                    .get_ref()
                    .and_then(|wrapped| wrapped.downcast_ref::<io::Error>());
            }
        }
        let io_kind = io_kinds
            .iter()
            .copied()
            .find(|kind| *kind != io::ErrorKind::Other);
        match io_kind {
            Some(io::ErrorKind::TimedOut) => Self::Timeout,
            Some(io::ErrorKind::ConnectionRefused) => Self::ConnectRefused,
            // tokio-rustls reports handshake and certificate errors as invalid data.
            Some(io::ErrorKind::InvalidData) => Self::Tls,
            Some(
                io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
                | io::ErrorKind::UnexpectedEof,
            ) => Self::ConnectionClosed,
            _ if error.is_connect() => Self::ConnectFailed,
            _ => Self::RequestFailed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn categories_are_short_fixed_words() {
        assert_eq!(Failure::HttpStatus(503).category(), "http_status_503");
        assert_eq!(Failure::ForbiddenAddress.category(), "forbidden_address");
        assert_eq!(Failure::ConnectRefused.category(), "connect_refused");
    }

    /// Port 9 (discard) has no listener here: the connection is refused.
    #[tokio::test]
    async fn a_refused_connection_is_connect_refused() {
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let error = client.post("http://127.0.0.1:9/").send().await.unwrap_err();
        assert_eq!(Failure::of(&error), Failure::ConnectRefused);
    }
}
