//! The system app the dashboard's debug console and live view ride on (see `edge::console`).
//!
//! It is not a customer app: it has no row in Postgres (so no account sees it in `/v1/apps`,
//! and no usage is written for it), and its key and secret are derived from the secrets key,
//! so every node that shares that key serves the same system app without storing it, and the
//! secret never leaves the server (the control plane signs its channels itself).

use protocol::names::{AppId, AppKey};
use tenancy::{AppSpec, Secret};

use crate::crypto::SecretsKey;

/// The system app's id: not numeric, so it can never be a database app's (those are numbers
/// from the `app_ids` sequence).
pub const SYSTEM_APP_ID: &str = "switchboard-console";

/// The system app of this deployment (the same on every node with this secrets key).
pub fn system_app(secrets: &SecretsKey) -> AppSpec {
    let key = format!("sbconsole{}", &secrets.derive_hex("console app key")[..20]);
    AppSpec {
        id: AppId::parse(SYSTEM_APP_ID).expect("a valid literal id"),
        key: AppKey::parse(&key).expect("hex makes a valid key"),
        secret: Secret::new(secrets.derive_hex("console app secret")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_system_app_is_fixed_by_the_secrets_key_only() {
        let key = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
        let again = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
        assert_eq!(system_app(&key), system_app(&key.clone()));
        assert_ne!(system_app(&key).key, system_app(&again).key);
        assert_ne!(
            system_app(&key).secret.expose(),
            system_app(&again).secret.expose()
        );
        assert!(
            !system_app(&key)
                .secret
                .expose()
                .contains(&system_app(&key).key.to_string())
        );
    }
}
