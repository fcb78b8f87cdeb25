//! The client's address: the TCP peer, unless the peer is a proxy the operator trusts, in
//! which case the rightmost `X-Forwarded-For` hop that is not itself a trusted proxy.
//!
//! Rightmost, not leftmost: each proxy appends the address it received from, so only the
//! hops a trusted proxy appended are true; anything left of them the client may have written.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use actix_web::HttpRequest;
use ipnet::IpNet;

/// Ranges of proxies whose `X-Forwarded-For` is believed. Empty (the default) trusts no one:
/// the address is always the TCP peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid trusted proxy {0:?}: expected an IP address or a CIDR range such as 10.0.0.0/8")]
pub struct TrustedProxiesError(String);

impl TrustedProxies {
    /// A comma-separated list of addresses and CIDR ranges (`10.0.0.0/8, 192.168.1.7, ::1`);
    /// empty items are skipped.
    pub fn parse(text: &str) -> Result<Self, TrustedProxiesError> {
        text.split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| {
                IpNet::from_str(item)
                    .or_else(|_| IpAddr::from_str(item).map(IpNet::from))
                    .map_err(|_| TrustedProxiesError(item.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }

    pub fn none() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn trusts(&self, address: IpAddr) -> bool {
        let address = canonical(address);
        self.0.iter().any(|range| range.contains(&address))
    }

    /// The client address given the TCP peer and the `X-Forwarded-For` values in the order
    /// they arrived (several headers are one list).
    pub fn resolve<'a>(
        &self,
        peer: IpAddr,
        forwarded_for: impl Iterator<Item = &'a str>,
    ) -> IpAddr {
        let mut client = canonical(peer);
        if !self.trusts(client) {
            return client;
        }
        let hops: Vec<&str> = forwarded_for.flat_map(|value| value.split(',')).collect();
        for hop in hops.iter().rev() {
            // A hop that is not an address ends the walk: nothing left of it can be believed,
            // so the last proxy that spoke is the client as far as we can tell.
            let Some(address) = parse_hop(hop) else {
                return client;
            };
            client = address;
            if !self.trusts(address) {
                return address;
            }
        }
        client
    }
}

/// The client address of `request` (see the module docs); `None` only when the request has
/// no peer (a test request).
pub fn client_address(request: &HttpRequest, trusted: &TrustedProxies) -> Option<IpAddr> {
    let peer = request.peer_addr()?.ip();
    let forwarded_for = request
        .headers()
        .get_all("x-forwarded-for")
        .filter_map(|value| value.to_str().ok());
    Some(trusted.resolve(peer, forwarded_for))
}

/// `203.0.113.7`, `2001:db8::1`, `203.0.113.7:4711` and `[2001:db8::1]:4711` (some proxies
/// add the port).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    let hop = hop.trim();
    IpAddr::from_str(hop)
        .or_else(|_| SocketAddr::from_str(hop).map(|socket| socket.ip()))
        .ok()
        .map(canonical)
}

/// An IPv4 client seen through an IPv6 socket (`::ffff:a.b.c.d`) is that IPv4 address, so
/// both forms share one limit and match IPv4 ranges.
fn canonical(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    #[test]
    fn lists_of_addresses_and_ranges_parse_and_garbage_does_not() {
        let trusted = TrustedProxies::parse(" 10.0.0.0/8, 192.168.1.7,, ::1 ").unwrap();
        assert!(trusted.trusts(ip("10.1.2.3")));
        assert!(trusted.trusts(ip("192.168.1.7")));
        assert!(!trusted.trusts(ip("192.168.1.8")));
        assert!(trusted.trusts(ip("::1")));
        assert!(trusted.trusts(ip("::ffff:10.9.9.9")), "mapped IPv4");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
        assert!(TrustedProxies::parse("10.0.0.0/33").is_err());
        assert!(TrustedProxies::parse("proxy.internal").is_err());
    }

    #[test]
    fn the_peer_is_the_client_unless_it_is_a_trusted_proxy() {
        let none = TrustedProxies::none();
        let forged = ["6.6.6.6"];
        assert_eq!(
            none.resolve(ip("203.0.113.9"), forged.into_iter()),
            ip("203.0.113.9")
        );
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        assert_eq!(
            trusted.resolve(ip("203.0.113.9"), forged.into_iter()),
            ip("203.0.113.9"),
            "an untrusted peer's header is ignored"
        );
    }

    #[test]
    fn the_rightmost_hop_that_is_not_a_trusted_proxy_is_the_client() {
        let trusted = TrustedProxies::parse("10.0.0.0/8").unwrap();
        let peer = ip("10.0.0.2");
        // The client wrote "6.6.6.6" itself; the trusted proxies appended the rest.
        let headers = ["6.6.6.6, 198.51.100.4", "10.0.0.1"];
        assert_eq!(
            trusted.resolve(peer, headers.into_iter()),
            ip("198.51.100.4")
        );
        assert_eq!(
            trusted.resolve(peer, ["[2001:db8::5]:4711, 10.0.0.1:80"].into_iter()),
            ip("2001:db8::5")
        );
        assert_eq!(
            trusted.resolve(peer, ["not-an-ip, 10.0.0.1"].into_iter()),
            ip("10.0.0.1"),
            "garbage ends the walk at the last proxy"
        );
        assert_eq!(
            trusted.resolve(peer, ["10.0.0.3"].into_iter()),
            ip("10.0.0.3"),
            "all trusted: the leftmost"
        );
        assert_eq!(trusted.resolve(peer, std::iter::empty()), peer);
    }
}
