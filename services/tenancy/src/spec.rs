//! `ID:KEY:SECRET`, the operator's way to name an app on the command line and in
//! `SWITCHBOARD_APPS`.

use protocol::names::{AppId, AppKey};
use thiserror::Error;

use crate::Secret;

/// One app given as `ID:KEY:SECRET`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppSpec {
    pub id: AppId,
    pub key: AppKey,
    pub secret: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AppSpecError {
    #[error("expected ID:KEY:SECRET, got {0} part(s)")]
    Parts(usize),
    #[error("invalid app id: {0}")]
    Id(protocol::names::NameError),
    #[error("invalid app key: {0}")]
    Key(protocol::names::NameError),
    #[error("the secret must not be empty")]
    EmptySecret,
}

impl AppSpec {
    pub fn parse(text: &str) -> Result<Self, AppSpecError> {
        let parts: Vec<&str> = text.trim().splitn(3, ':').collect();
        let [id, key, secret] = parts.as_slice() else {
            return Err(AppSpecError::Parts(parts.len()));
        };
        if secret.is_empty() {
            return Err(AppSpecError::EmptySecret);
        }
        Ok(Self {
            id: AppId::parse(id).map_err(AppSpecError::Id)?,
            key: AppKey::parse(key).map_err(AppSpecError::Key)?,
            secret: Secret::new(*secret),
        })
    }

    /// A comma-separated list, as `SWITCHBOARD_APPS` holds it; empty items are skipped.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, AppSpecError> {
        text.split(',')
            .filter(|item| !item.trim().is_empty())
            .map(Self::parse)
            .collect()
    }

    /// A demo app with random key and secret, for `serve` with no app configured.
    pub fn random_demo() -> Self {
        let random_hex = |bytes: usize| {
            hex::encode(
                (0..bytes)
                    .map(|_| rand::random::<u8>())
                    .collect::<Vec<u8>>(),
            )
        };
        Self {
            id: AppId::parse("demo").expect("valid literal"),
            key: AppKey::parse(&random_hex(10)).expect("hex is a valid key"),
            secret: Secret::new(random_hex(16)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_id_key_secret() {
        let spec = AppSpec::parse("1:key:se:cret").unwrap();
        assert_eq!(
            (spec.id.as_str(), spec.key.as_str(), spec.secret.expose()),
            ("1", "key", "se:cret")
        );
        assert_eq!(AppSpec::parse("1:key"), Err(AppSpecError::Parts(2)));
        assert_eq!(AppSpec::parse("1:key:"), Err(AppSpecError::EmptySecret));
        assert!(matches!(
            AppSpec::parse("1:bad key:s"),
            Err(AppSpecError::Key(_))
        ));
        assert_eq!(AppSpec::parse_list("a:b:c, d:e:f,").unwrap().len(), 2);
    }

    #[test]
    fn secrets_never_print() {
        let spec = AppSpec::random_demo();
        assert!(!format!("{spec:?}").contains(spec.secret.expose()));
    }
}
