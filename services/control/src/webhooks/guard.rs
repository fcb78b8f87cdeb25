//! The HTTP client webhooks are sent with, and the guard that keeps it off the operator's
//! network: every name is resolved by `GuardedResolver`, which drops the addresses
//! `tenancy::forbidden_range` refuses (unless private targets are allowed) before the
//! connector sees them, so the address checked is the address connected to and DNS
//! rebinding gains nothing. IP literals never reach a resolver; the sender checks the URL
//! itself (`tenancy::parse_webhook_url`) before each attempt. Redirects and proxies are off:
//! a redirect would be a second, unchecked target, and a proxy would resolve names itself.

use std::fmt;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use tenancy::{AddressPolicy, forbidden_range};

/// The name lookup under the guard: the system's resolver, or a test's.
#[derive(Clone)]
pub struct NameLookup(pub Arc<dyn Resolve>);

impl NameLookup {
    /// `getaddrinfo`, on Tokio's blocking pool.
    pub fn system() -> Self {
        Self(Arc::new(SystemResolver))
    }
}

impl fmt::Debug for NameLookup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("NameLookup")
    }
}

/// Every address the name has is one webhooks must not reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the name resolves only to addresses webhooks may not reach")]
pub struct ForbiddenAddress;

/// The name could not be resolved (or has no address).
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve the name: {0}")]
pub struct LookupFailed(String);

/// Resolves with `lookup`, then keeps only the addresses `policy` allows.
pub struct GuardedResolver {
    lookup: NameLookup,
    policy: AddressPolicy,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let resolving = self.lookup.0.resolve(name);
        let policy = self.policy;
        Box::pin(async move {
            let addresses: Vec<SocketAddr> = resolving
                .await
                .map_err(|error| LookupFailed(error.to_string()))?
                .collect();
            if addresses.is_empty() {
                return Err(LookupFailed("no address".into()).into());
            }
            let allowed: Vec<SocketAddr> = match policy {
                AddressPolicy::AllowPrivate => addresses,
                AddressPolicy::PublicOnly => addresses
                    .into_iter()
                    .filter(|address| forbidden_range(address.ip()).is_none())
                    .collect(),
            };
            if allowed.is_empty() {
                return Err(ForbiddenAddress.into());
            }
            Ok(Box::new(allowed.into_iter()) as Addrs)
        })
    }
}

struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addresses: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addresses.into_iter()) as Addrs)
        })
    }
}

/// The client webhooks are sent with: HTTPS with the system's roots (reqwest's rustls with its
/// aws-lc-rs provider, the only one in the build), names resolved through the guard, no
/// redirects (a receiver must answer itself), no proxy.
pub fn webhook_http_client(
    timeout: Duration,
    policy: AddressPolicy,
    lookup: NameLookup,
) -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(timeout)
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .dns_resolver(Arc::new(GuardedResolver { lookup, policy }))
        .user_agent("switchboard-webhooks")
        .build()
        .expect("the webhook HTTP client builds")
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::IpAddr;

    use super::*;

    /// Answers from a fixed table.
    struct Table(HashMap<String, Vec<IpAddr>>);

    impl Resolve for Table {
        fn resolve(&self, name: Name) -> Resolving {
            let found = self.0.get(name.as_str()).cloned().unwrap_or_default();
            Box::pin(async move {
                let addresses = found.into_iter().map(|ip| SocketAddr::new(ip, 0));
                Ok(Box::new(addresses.collect::<Vec<_>>().into_iter()) as Addrs)
            })
        }
    }

    fn guard(policy: AddressPolicy) -> GuardedResolver {
        let table = HashMap::from([
            (
                "inward.example".to_owned(),
                vec!["127.0.0.1".parse().unwrap()],
            ),
            (
                "mixed.example".to_owned(),
                vec![
                    "10.0.0.1".parse().unwrap(),
                    "93.184.216.34".parse().unwrap(),
                ],
            ),
            (
                "meta.example".to_owned(),
                vec!["::ffff:169.254.169.254".parse().unwrap()],
            ),
        ]);
        GuardedResolver {
            lookup: NameLookup(Arc::new(Table(table))),
            policy,
        }
    }

    async fn resolve(resolver: &GuardedResolver, name: &str) -> Result<Vec<IpAddr>, String> {
        match resolver.resolve(name.parse().unwrap()).await {
            Ok(addresses) => Ok(addresses.map(|address| address.ip()).collect()),
            Err(error) if error.is::<ForbiddenAddress>() => Err("forbidden".into()),
            Err(error) if error.is::<LookupFailed>() => Err("lookup".into()),
            Err(error) => Err(error.to_string()),
        }
    }

    #[tokio::test]
    async fn only_public_addresses_come_out_of_the_guard() {
        let strict = guard(AddressPolicy::PublicOnly);
        assert_eq!(
            resolve(&strict, "inward.example").await,
            Err("forbidden".into())
        );
        assert_eq!(
            resolve(&strict, "meta.example").await,
            Err("forbidden".into())
        );
        assert_eq!(
            resolve(&strict, "mixed.example").await,
            Ok(vec!["93.184.216.34".parse().unwrap()])
        );
        assert_eq!(
            resolve(&strict, "unknown.example").await,
            Err("lookup".into())
        );
        let open = guard(AddressPolicy::AllowPrivate);
        assert_eq!(
            resolve(&open, "inward.example").await,
            Ok(vec!["127.0.0.1".parse().unwrap()])
        );
    }
}
