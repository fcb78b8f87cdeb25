//! Secrets at rest and random tokens.
//!
//! App secrets are encrypted with ChaCha20-Poly1305 under the control plane's secrets key,
//! with the app key as associated data so a ciphertext cannot be moved to another key's row.
//! Session and API tokens are stored only as SHA-256 hashes.

use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use rand::RngCore;
use sha2::{Digest, Sha256};

/// The key that encrypts app secrets. Its `Debug` never shows it.
#[derive(Clone)]
pub struct SecretsKey(Key);

impl std::fmt::Debug for SecretsKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretsKey(<redacted>)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("the secrets key must be 32 bytes, base64-encoded")]
    KeyFormat,
    #[error("an app secret could not be decrypted: wrong secrets key or tampered row")]
    Decrypt,
}

/// An encrypted secret as stored.
pub struct Sealed {
    pub nonce: Vec<u8>,
    pub ciphertext: Vec<u8>,
}

impl SecretsKey {
    pub fn from_base64(text: &str) -> Result<Self, CryptoError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(text.trim())
            .map_err(|_| CryptoError::KeyFormat)?;
        let key: [u8; 32] = bytes.try_into().map_err(|_| CryptoError::KeyFormat)?;
        Ok(Self(key.into()))
    }

    /// A value derived from this key for `label` (HMAC-SHA256, hex): the same on every node
    /// that shares the key, and telling nothing about the key.
    pub fn derive_hex(&self, label: &str) -> String {
        protocol::sign::hmac_hex(&hex::encode(self.0.as_slice()), label)
    }

    /// A fresh random key, base64-encoded, for development setups.
    pub fn generate_base64() -> String {
        base64::engine::general_purpose::STANDARD.encode(random_bytes::<32>())
    }

    pub fn seal(&self, app_key: &str, secret: &str) -> Sealed {
        let nonce = random_bytes::<12>();
        let payload = Payload {
            msg: secret.as_bytes(),
            aad: app_key.as_bytes(),
        };
        let ciphertext = ChaCha20Poly1305::new(&self.0)
            .encrypt(Nonce::from_slice(&nonce), payload)
            .expect("encrypting in memory cannot fail");
        Sealed {
            nonce: nonce.to_vec(),
            ciphertext,
        }
    }

    pub fn open(
        &self,
        app_key: &str,
        nonce: &[u8],
        ciphertext: &[u8],
    ) -> Result<String, CryptoError> {
        if nonce.len() != 12 {
            return Err(CryptoError::Decrypt);
        }
        let payload = Payload {
            msg: ciphertext,
            aad: app_key.as_bytes(),
        };
        let plain = ChaCha20Poly1305::new(&self.0)
            .decrypt(Nonce::from_slice(nonce), payload)
            .map_err(|_| CryptoError::Decrypt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Decrypt)
    }
}

/// The associated data sealing an app's TURN secret, so its ciphertext opens on its row only
/// (app keys never contain a colon, so it never equals a key's).
pub fn turn_secret_context(app_id: &str) -> String {
    format!("turn:{app_id}")
}

pub fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

/// A random token of `bytes` bytes as lowercase hex.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut buffer);
    hex::encode(buffer)
}

/// The stored form of a session or API token.
pub fn token_hash(token: &str) -> Vec<u8> {
    Sha256::digest(token.as_bytes()).to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key_and_row() {
        let key = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
        let sealed = key.seal("key-a", "the secret");
        assert_ne!(sealed.ciphertext, b"the secret");
        assert_eq!(
            key.open("key-a", &sealed.nonce, &sealed.ciphertext)
                .unwrap(),
            "the secret"
        );
        assert!(
            key.open("key-b", &sealed.nonce, &sealed.ciphertext)
                .is_err(),
            "bound to its app key"
        );
        let other = SecretsKey::from_base64(&SecretsKey::generate_base64()).unwrap();
        assert!(
            other
                .open("key-a", &sealed.nonce, &sealed.ciphertext)
                .is_err()
        );
        assert!(SecretsKey::from_base64("c2hvcnQ=").is_err());
    }
}
