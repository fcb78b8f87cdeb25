//! Where a webhook may be sent. `parse_webhook_url` turns untrusted text into a `WebhookUrl`
//! (an absolute http(s) URL of bounded length); under `AddressPolicy::PublicOnly` it refuses
//! hosts that are not on the public internet: IP literals in any notation the WHATWG URL parser
//! accepts (`127.1`, `0x7f000001`, `[::ffff:127.0.0.1]`, …) that `forbidden_range` classifies,
//! and local names (`localhost`, `*.localhost`, `.local`, `.internal`, `home.arpa`, single-label
//! names that search domains would complete). Without this a tenant could point webhooks at
//! the operator's network and read status codes back from the delivery log.
//!
//! Pure: there is no DNS here. The sender applies `forbidden_range` to every address a name
//! resolves to, right before it connects, so a name that later resolves inward is refused too.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::{Ipv4Net, Ipv6Net};
use url::{Host, Url};

/// The longest webhook URL accepted, in bytes.
pub const MAX_WEBHOOK_URL_BYTES: usize = 2048;

/// Ports browsers refuse to fetch (the WHATWG fetch standard's "bad ports": SMTP, SSH, IRC,
/// …): a POST there is a cross-protocol attack on a public host, not a webhook.
const BAD_PORTS: [u16; 83] = [
    0, 1, 7, 9, 11, 13, 15, 17, 19, 20, 21, 22, 23, 25, 37, 42, 43, 53, 69, 77, 79, 87, 95, 101,
    102, 103, 104, 109, 110, 111, 113, 115, 117, 119, 123, 135, 137, 139, 143, 161, 179, 389, 427,
    465, 512, 513, 514, 515, 526, 530, 531, 532, 540, 548, 554, 556, 563, 587, 601, 636, 989, 990,
    993, 995, 1719, 1720, 1723, 2049, 3659, 4045, 4190, 5060, 5061, 6000, 6566, 6665, 6666, 6667,
    6668, 6669, 6679, 6697, 10080,
];

/// The longest host name echoed back in an error.
const MAX_ECHOED_HOST_CHARS: usize = 64;

/// Which targets webhooks may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AddressPolicy {
    /// Public internet addresses only: the default for a hosted service.
    #[default]
    PublicOnly,
    /// Any address (on-premises use, tests): an operator setting.
    AllowPrivate,
}

/// A webhook URL that passed `parse_webhook_url`, normalised as the URL parser writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl(Url);

impl WebhookUrl {
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// Why a webhook URL is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookUrlError {
    #[error("webhook url must be an http:// or https:// URL with a host, at most 2048 characters")]
    Malformed,
    #[error(
        "webhook url points at {address}, a {range} address; webhooks are sent to public addresses only"
    )]
    ForbiddenAddress {
        address: IpAddr,
        range: ForbiddenRange,
    },
    #[error("webhook url host {host:?} is a local name; webhooks are sent to public hosts only")]
    LocalName { host: String },
    #[error("webhook url port {port} belongs to another protocol (a fetch-standard bad port)")]
    ForbiddenPort { port: u16 },
}

/// A kind of address that is not the public internet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ForbiddenRange {
    Unspecified,
    Loopback,
    Private,
    LinkLocal,
    SharedCgnat,
    UniqueLocal,
    Multicast,
    Broadcast,
    /// Documentation, benchmarking, IETF protocol assignments, reserved for future use,
    /// "this network", deprecated site-local and the like: nothing a webhook should reach.
    SpecialPurpose,
}

impl fmt::Display for ForbiddenRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Unspecified => "unspecified",
            Self::Loopback => "loopback",
            Self::Private => "private",
            Self::LinkLocal => "link-local",
            Self::SharedCgnat => "shared (CGNAT)",
            Self::UniqueLocal => "unique-local",
            Self::Multicast => "multicast",
            Self::Broadcast => "broadcast",
            Self::SpecialPurpose => "special-purpose",
        })
    }
}

/// Parses a webhook URL from untrusted input; never panics, whatever the input.
pub fn parse_webhook_url(text: &str, policy: AddressPolicy) -> Result<WebhookUrl, WebhookUrlError> {
    let text = text.trim();
    if text.len() > MAX_WEBHOOK_URL_BYTES {
        return Err(WebhookUrlError::Malformed);
    }
    let url = Url::parse(text).map_err(|_| WebhookUrlError::Malformed)?;
    if !matches!(url.scheme(), "http" | "https") || url.as_str().len() > MAX_WEBHOOK_URL_BYTES {
        return Err(WebhookUrlError::Malformed);
    }
    let host = match url.host() {
        Some(Host::Domain("")) | None => return Err(WebhookUrlError::Malformed),
        Some(host) => host,
    };
    if policy == AddressPolicy::PublicOnly {
        check_host(&host)?;
        if let Some(port) = url.port().filter(|port| BAD_PORTS.contains(port)) {
            return Err(WebhookUrlError::ForbiddenPort { port });
        }
    }
    Ok(WebhookUrl(url))
}

/// `None` for a public address; otherwise the range that makes it unfit for webhooks.
/// IPv6 forms that carry an IPv4 address (mapped, compatible, NAT64, 6to4) are judged by it.
pub fn forbidden_range(address: IpAddr) -> Option<ForbiddenRange> {
    match address {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn check_host(host: &Host<&str>) -> Result<(), WebhookUrlError> {
    let address = match host {
        Host::Ipv4(v4) => IpAddr::V4(*v4),
        Host::Ipv6(v6) => IpAddr::V6(*v6),
        Host::Domain(name) if is_local_name(name) => {
            return Err(WebhookUrlError::LocalName {
                host: name.chars().take(MAX_ECHOED_HOST_CHARS).collect(),
            });
        }
        Host::Domain(_) => return Ok(()),
    };
    match forbidden_range(address) {
        Some(range) => Err(WebhookUrlError::ForbiddenAddress { address, range }),
        None => Ok(()),
    }
}

/// Names that resolve on the operator's side only (RFC 6761 `localhost`, mDNS `.local`,
/// ICANN's private-use `.internal`, RFC 8375 `home.arpa`), and single-label names, which a
/// resolver completes with its search domains (`http://metadata/`).
fn is_local_name(name: &str) -> bool {
    const LOCAL_SUFFIXES: [&str; 5] =
        ["localhost", "local", "internal", "home.arpa", "localdomain"];
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    !name.contains('.')
        || LOCAL_SUFFIXES.iter().any(|suffix| {
            name == *suffix
                || name
                    .strip_suffix(suffix)
                    .is_some_and(|rest| rest.ends_with('.'))
        })
}

/// IPv4 special-purpose blocks beyond what `Ipv4Addr`'s stable predicates name.
const V4_SPECIAL: [(Ipv4Net, ForbiddenRange); 6] = [
    (v4net(0, 0, 0, 0, 8), ForbiddenRange::SpecialPurpose),
    (v4net(100, 64, 0, 0, 10), ForbiddenRange::SharedCgnat),
    (v4net(192, 0, 0, 0, 24), ForbiddenRange::SpecialPurpose),
    (v4net(192, 88, 99, 0, 24), ForbiddenRange::SpecialPurpose),
    (v4net(198, 18, 0, 0, 15), ForbiddenRange::SpecialPurpose),
    (v4net(240, 0, 0, 0, 4), ForbiddenRange::SpecialPurpose),
];

const fn v4net(a: u8, b: u8, c: u8, d: u8, prefix: u8) -> Ipv4Net {
    Ipv4Net::new_assert(Ipv4Addr::new(a, b, c, d), prefix)
}

fn forbidden_v4(address: Ipv4Addr) -> Option<ForbiddenRange> {
    let range = if address.is_unspecified() {
        ForbiddenRange::Unspecified
    } else if address.is_loopback() {
        ForbiddenRange::Loopback
    } else if address.is_private() {
        ForbiddenRange::Private
    } else if address.is_link_local() {
        ForbiddenRange::LinkLocal
    } else if address.is_multicast() {
        ForbiddenRange::Multicast
    } else if address.is_broadcast() {
        ForbiddenRange::Broadcast
    } else if address.is_documentation() {
        ForbiddenRange::SpecialPurpose
    } else {
        return V4_SPECIAL
            .iter()
            .find(|(net, _)| net.contains(&address))
            .map(|(_, range)| *range);
    };
    Some(range)
}

const fn v6net(segments: [u16; 8], prefix: u8) -> Ipv6Net {
    let [a, b, c, d, e, f, g, h] = segments;
    Ipv6Net::new_assert(Ipv6Addr::new(a, b, c, d, e, f, g, h), prefix)
}

/// IPv6 blocks whose last 32 bits are an IPv4 address: mapped (`::ffff:a.b.c.d`), SIIT
/// translated (`::ffff:0:a.b.c.d`), the deprecated compatible form (`::a.b.c.d`) and NAT64's
/// well-known prefix (`64:ff9b::a.b.c.d`).
const V6_EMBEDDING_V4_AT_END: [Ipv6Net; 4] = [
    v6net([0, 0, 0, 0, 0, 0xffff, 0, 0], 96),
    v6net([0, 0, 0, 0, 0xffff, 0, 0, 0], 96),
    v6net([0, 0, 0, 0, 0, 0, 0, 0], 96),
    v6net([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96),
];

/// 6to4: `2002:AABB:CCDD::/48` carries `AA.BB.CC.DD`.
const V6_SIX_TO_FOUR: Ipv6Net = v6net([0x2002, 0, 0, 0, 0, 0, 0, 0], 16);

const V6_SPECIAL: [(Ipv6Net, ForbiddenRange); 6] = [
    // NAT64 local use: translates into the operator's own IPv4 space.
    (
        v6net([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        ForbiddenRange::Private,
    ),
    // Discard-only.
    (
        v6net([0x100, 0, 0, 0, 0, 0, 0, 0], 64),
        ForbiddenRange::SpecialPurpose,
    ),
    // IETF protocol assignments (Teredo included).
    (
        v6net([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        ForbiddenRange::SpecialPurpose,
    ),
    // Documentation.
    (
        v6net([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        ForbiddenRange::SpecialPurpose,
    ),
    (
        v6net([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20),
        ForbiddenRange::SpecialPurpose,
    ),
    // Deprecated site-local.
    (
        v6net([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10),
        ForbiddenRange::SpecialPurpose,
    ),
];

fn forbidden_v6(address: Ipv6Addr) -> Option<ForbiddenRange> {
    if address.is_unspecified() {
        return Some(ForbiddenRange::Unspecified);
    }
    if address.is_loopback() {
        return Some(ForbiddenRange::Loopback);
    }
    if V6_EMBEDDING_V4_AT_END
        .iter()
        .any(|net| net.contains(&address))
    {
        let [.., a, b, c, d] = address.octets();
        return forbidden_v4(Ipv4Addr::new(a, b, c, d));
    }
    if V6_SIX_TO_FOUR.contains(&address) {
        let [_, _, a, b, c, d, ..] = address.octets();
        return forbidden_v4(Ipv4Addr::new(a, b, c, d));
    }
    if address.is_multicast() {
        return Some(ForbiddenRange::Multicast);
    }
    if address.is_unicast_link_local() {
        return Some(ForbiddenRange::LinkLocal);
    }
    if address.is_unique_local() {
        return Some(ForbiddenRange::UniqueLocal);
    }
    V6_SPECIAL
        .iter()
        .find(|(net, _)| net.contains(&address))
        .map(|(_, range)| *range)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn public(text: &str) -> Result<WebhookUrl, WebhookUrlError> {
        parse_webhook_url(text, AddressPolicy::PublicOnly)
    }

    #[test]
    fn public_urls_are_accepted_and_normalised() {
        assert_eq!(
            public(" https://example.com/hook ").unwrap().as_str(),
            "https://example.com/hook"
        );
        for good in [
            "http://hooks.example.com:8080/x?y=1",
            "https://93.184.216.34/hook",
            "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
            "https://8.8.8.8/",
            "https://example.com./hook",
            "https://my-localhost.example.com/",
        ] {
            assert!(public(good).is_ok(), "{good}: {:?}", public(good));
        }
    }

    #[test]
    fn malformed_urls_are_refused() {
        for bad in [
            "",
            "example.com/hook",
            "ftp://example.com",
            "http://",
            "javascript:alert(1)",
            "file:///etc/passwd",
            "http://exa mple.com/",
        ] {
            assert_eq!(public(bad), Err(WebhookUrlError::Malformed), "{bad}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_WEBHOOK_URL_BYTES));
        assert_eq!(public(&long), Err(WebhookUrlError::Malformed));
    }

    /// Every notation the URL parser reads as an internal address, and the range it is in.
    #[test]
    fn internal_addresses_are_refused_in_every_notation() {
        let table = [
            ("http://127.0.0.1:9000/x", ForbiddenRange::Loopback),
            ("http://127.1/", ForbiddenRange::Loopback),
            ("http://2130706433/", ForbiddenRange::Loopback),
            ("http://0x7f000001/", ForbiddenRange::Loopback),
            ("http://0177.0.0.1/", ForbiddenRange::Loopback),
            ("http://0x7f.0.0.1/", ForbiddenRange::Loopback),
            ("http://127.0.0.1./", ForbiddenRange::Loopback),
            ("http://%31%32%37.0.0.1/", ForbiddenRange::Loopback),
            ("http://[::1]/", ForbiddenRange::Loopback),
            ("http://[::ffff:127.0.0.1]/", ForbiddenRange::Loopback),
            ("http://[::ffff:7f00:1]/", ForbiddenRange::Loopback),
            ("http://[::127.0.0.1]/", ForbiddenRange::Loopback),
            ("http://[64:ff9b::127.0.0.1]/", ForbiddenRange::Loopback),
            ("http://[2002:7f00:1::]/", ForbiddenRange::Loopback),
            ("http://0.0.0.0/", ForbiddenRange::Unspecified),
            ("http://0/", ForbiddenRange::Unspecified),
            ("http://[::]/", ForbiddenRange::Unspecified),
            ("http://10.0.0.1/", ForbiddenRange::Private),
            ("http://10.255.255.255/", ForbiddenRange::Private),
            ("http://172.16.0.1/", ForbiddenRange::Private),
            ("http://172.31.255.254/", ForbiddenRange::Private),
            ("http://192.168.1.1/", ForbiddenRange::Private),
            ("http://[::ffff:10.1.2.3]/", ForbiddenRange::Private),
            ("http://[::ffff:0:192.168.0.1]/", ForbiddenRange::Private),
            ("http://[64:ff9b:1::a01:203]/", ForbiddenRange::Private),
            (
                "http://169.254.169.254/latest/meta-data/",
                ForbiddenRange::LinkLocal,
            ),
            (
                "http://[::ffff:169.254.169.254]/",
                ForbiddenRange::LinkLocal,
            ),
            ("http://[fe80::1]/", ForbiddenRange::LinkLocal),
            ("http://100.64.0.1/", ForbiddenRange::SharedCgnat),
            ("http://100.127.255.255/", ForbiddenRange::SharedCgnat),
            ("http://[fc00::1]/", ForbiddenRange::UniqueLocal),
            ("http://[fd12:3456::1]/", ForbiddenRange::UniqueLocal),
            ("http://224.0.0.1/", ForbiddenRange::Multicast),
            ("http://239.255.255.250/", ForbiddenRange::Multicast),
            ("http://[ff02::1]/", ForbiddenRange::Multicast),
            ("http://255.255.255.255/", ForbiddenRange::Broadcast),
            ("http://192.0.2.1/", ForbiddenRange::SpecialPurpose),
            ("http://198.18.0.1/", ForbiddenRange::SpecialPurpose),
            ("http://240.0.0.1/", ForbiddenRange::SpecialPurpose),
            ("http://0.1.2.3/", ForbiddenRange::SpecialPurpose),
            ("http://[2001:db8::1]/", ForbiddenRange::SpecialPurpose),
            ("http://[fec0::1]/", ForbiddenRange::SpecialPurpose),
        ];
        for (text, range) in table {
            match public(text) {
                Err(WebhookUrlError::ForbiddenAddress { range: got, .. }) => {
                    assert_eq!(got, range, "{text}");
                }
                other => panic!("{text} gave {other:?}"),
            }
        }
        // The message names the address and why.
        let refused = public("http://0x7f000001/").unwrap_err().to_string();
        assert!(
            refused.contains("127.0.0.1") && refused.contains("loopback"),
            "{refused}"
        );
    }

    #[test]
    fn local_names_are_refused() {
        for text in [
            "http://localhost/",
            "http://LOCALHOST:8080/",
            "http://localhost./",
            "http://api.localhost/",
            "http://printer.local/",
            "http://metadata.google.internal/computeMetadata/v1/",
            "http://router.home.arpa/",
            "http://box.localdomain/",
            "http://metadata/",
            "http://intranet./",
        ] {
            assert!(
                matches!(public(text), Err(WebhookUrlError::LocalName { .. })),
                "{text}: {:?}",
                public(text)
            );
        }
    }

    #[test]
    fn ports_of_other_protocols_are_refused() {
        for (text, port) in [
            ("http://mail.example.com:25/", 25),
            ("https://example.com:22/", 22),
            ("http://irc.example.com:6667/", 6667),
        ] {
            assert_eq!(
                public(text),
                Err(WebhookUrlError::ForbiddenPort { port }),
                "{text}"
            );
        }
        for good in [
            "http://example.com:8080/",
            "https://example.com:443/",
            "http://example.com/",
        ] {
            assert!(public(good).is_ok(), "{good}");
        }
        assert!(parse_webhook_url("http://10.0.0.1:25/", AddressPolicy::AllowPrivate).is_ok());
    }

    #[test]
    fn the_operator_can_allow_private_targets() {
        for text in [
            "http://127.0.0.1:9000/x",
            "http://localhost/",
            "http://10.0.0.1/",
            "http://hooks/",
        ] {
            assert!(
                parse_webhook_url(text, AddressPolicy::AllowPrivate).is_ok(),
                "{text}"
            );
        }
        assert_eq!(
            parse_webhook_url("ftp://x", AddressPolicy::AllowPrivate),
            Err(WebhookUrlError::Malformed)
        );
    }

    #[test]
    fn public_addresses_have_no_forbidden_range() {
        for address in [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "2606:4700:4700::1111",
            "2001:4860:4860::8888",
            "2002:808:808::",
            "::ffff:8.8.8.8",
        ] {
            let address: IpAddr = address.parse().unwrap();
            assert_eq!(forbidden_range(address), None, "{address}");
        }
    }

    #[test]
    fn errors_never_echo_more_than_a_short_host() {
        let long = format!("http://{}/", "a".repeat(1000));
        let error = public(&long).unwrap_err().to_string();
        assert!(error.len() < 200, "{error}");
    }
}
