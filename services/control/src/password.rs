//! Passwords: a policy checked at sign-up, and argon2id hashes.

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};

pub const MIN_PASSWORD_LENGTH: usize = 10;
pub const MAX_PASSWORD_LENGTH: usize = 256;

/// The most common passwords of breach corpora that meet the length rule; refused outright.
const COMMON_PASSWORDS: &[&str] = &[
    "1234567890",
    "12345678910",
    "123456789a",
    "qwertyuiop",
    "1q2w3e4r5t",
    "password12",
    "password123",
    "password1234",
    "passw0rd123",
    "iloveyou123",
    "qwerty1234",
    "qwerty12345",
    "1qaz2wsx3edc",
    "zaq12wsxcde",
    "abc1234567",
    "abcdefghij",
    "letmein123",
    "welcome123",
    "administrator",
    "0987654321",
    "1111111111",
    "0000000000",
    "123123123123",
    "football123",
    "baseball123",
    "sunshine123",
    "princess123",
    "dragon1234",
    "monkey1234",
    "starwars123",
    "trustno1234",
    "superman123",
    "michael123",
    "shadow1234",
    "master1234",
    "changeme123",
    "qazwsxedcrfv",
    "asdfghjkl1",
    "asdfghjkl;",
    "zxcvbnm123",
    "switchboard",
    "switchboard1",
    "password!!",
    "p@ssw0rd123",
    "Password123",
    "Password1!",
    "Qwerty123!",
    "Welcome123!",
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("password must be at least {MIN_PASSWORD_LENGTH} characters")]
    TooShort,
    #[error("password must be at most {MAX_PASSWORD_LENGTH} characters")]
    TooLong,
    #[error("password is too common; choose another")]
    Common,
}

/// A password that meets the policy.
pub struct Password(String);

impl Password {
    pub fn parse(text: &str) -> Result<Self, PasswordError> {
        let length = text.chars().count();
        if length < MIN_PASSWORD_LENGTH {
            return Err(PasswordError::TooShort);
        }
        if length > MAX_PASSWORD_LENGTH {
            return Err(PasswordError::TooLong);
        }
        let lowered = text.to_lowercase();
        if COMMON_PASSWORDS
            .iter()
            .any(|common| common.to_lowercase() == lowered)
        {
            return Err(PasswordError::Common);
        }
        Ok(Self(text.to_owned()))
    }

    /// An argon2id PHC string with a fresh salt.
    pub fn hash(&self) -> String {
        Argon2::default()
            .hash_password(self.0.as_bytes())
            .expect("argon2 with default parameters")
            .to_string()
    }
}

/// Checks a password attempt against a stored PHC string.
pub fn verify(attempt: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(attempt.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash to verify against when the account does not exist, so a login for an unknown email
/// costs as much as one for a known email.
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| Password("decoy password that never matches".into()).hash())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_refuses_short_long_and_common() {
        assert_eq!(
            Password::parse("short").err(),
            Some(PasswordError::TooShort)
        );
        assert_eq!(
            Password::parse(&"x".repeat(257)).err(),
            Some(PasswordError::TooLong)
        );
        assert_eq!(
            Password::parse("PASSWORD123").err(),
            Some(PasswordError::Common)
        );
        assert!(Password::parse("correct horse battery").is_ok());
    }

    #[test]
    fn hashes_are_argon2id_and_verify() {
        let hash = Password::parse("correct horse battery").unwrap().hash();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify("correct horse battery", &hash));
        assert!(!verify("wrong horse battery", &hash));
        assert!(!verify("anything", "not a hash"));
    }
}
