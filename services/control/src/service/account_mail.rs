//! The account flows that go through the owner's mailbox, each by a one-time token (stored
//! hashed, expiring, single use): email verification and password reset; and changing the
//! password with the current one.

use serde_json::json;
use time::{Duration, OffsetDateTime};
use uuid::Uuid;

use crate::crypto::{random_hex, token_hash};
use crate::password::Password;
use crate::repository::account_tokens::{self, Purpose};
use crate::repository::{accounts, audit, sessions};

use super::{Control, ControlError};

/// How long a verification link works.
pub const VERIFICATION_LIFETIME: Duration = Duration::hours(24);
/// How long a password-reset link works.
pub const RESET_LIFETIME: Duration = Duration::hours(1);

/// A token as it appears in a link: 32 random bytes in hex.
const TOKEN_BYTES: usize = 32;

impl Control {
    /// Stores a fresh verification token for the account (replacing an unused one) and
    /// returns it, for the caller to mail once its transaction is committed.
    pub(super) async fn issue_verification_token(
        conn: &mut sqlx::PgConnection,
        account_id: Uuid,
    ) -> Result<String, ControlError> {
        let token = random_hex(TOKEN_BYTES);
        let expires_at = OffsetDateTime::now_utc() + VERIFICATION_LIFETIME;
        account_tokens::replace(
            conn,
            &token_hash(&token),
            account_id,
            Purpose::VerifyEmail,
            expires_at,
        )
        .await?;
        Ok(token)
    }

    /// Mails a new verification link to an account whose email is not verified yet; the
    /// earlier link stops working.
    pub async fn resend_verification(&self, account_id: Uuid) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        let account = accounts::find(&mut tx, account_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if account.email_verified {
            return Err(ControlError::AlreadyVerified);
        }
        let token = Self::issue_verification_token(&mut tx, account_id).await?;
        let details = json!({ "email": account.email });
        let subject = account_id.to_string();
        audit::record(
            &mut tx,
            Some(account_id),
            "email.verification_sent",
            &subject,
            details,
        )
        .await?;
        tx.commit().await?;
        self.outbox
            .send_in_background(self.links.verification(&account.email, &token));
        Ok(())
    }

    /// Verifies the email of the account the token was mailed to.
    pub async fn verify_email(&self, token: &str) -> Result<Uuid, ControlError> {
        let mut tx = self.pool.begin().await?;
        let account_id = account_tokens::consume(&mut tx, &token_hash(token), Purpose::VerifyEmail)
            .await?
            .ok_or(ControlError::InvalidToken)?;
        accounts::mark_verified(&mut tx, account_id).await?;
        let subject = account_id.to_string();
        audit::record(
            &mut tx,
            Some(account_id),
            "email.verified",
            &subject,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(account_id)
    }

    pub async fn email_verified(&self, account_id: Uuid) -> Result<bool, ControlError> {
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id).await?;
        account
            .map(|a| a.email_verified)
            .ok_or(ControlError::NotFound)
    }

    /// Mails a reset link if an account has this email; says nothing either way (the route
    /// answers 202 whatever happens), and takes about as long either way (the mail goes out
    /// in the background).
    pub async fn request_password_reset(&self, email: &str) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        let Some(account) = accounts::find_by_email(&mut tx, email.trim()).await? else {
            return Ok(());
        };
        let token = random_hex(TOKEN_BYTES);
        let expires_at = OffsetDateTime::now_utc() + RESET_LIFETIME;
        account_tokens::replace(
            &mut tx,
            &token_hash(&token),
            account.id,
            Purpose::ResetPassword,
            expires_at,
        )
        .await?;
        let subject = account.id.to_string();
        audit::record(
            &mut tx,
            Some(account.id),
            "password.reset_requested",
            &subject,
            json!({}),
        )
        .await?;
        tx.commit().await?;
        self.outbox
            .send_in_background(self.links.password_reset(&account.email, &token));
        Ok(())
    }

    /// Sets a new password with a reset token and ends every session of the account (whoever
    /// held the old password is signed out). Following the link also proves the address, so
    /// the email counts as verified.
    pub async fn reset_password(&self, token: &str, password: &str) -> Result<(), ControlError> {
        let password =
            Password::parse(password).map_err(|e| ControlError::Validation(e.to_string()))?;
        let hashed = token_hash(token);
        // The token is checked before the (costly) hash and consumed in the transaction
        // that stores it, so a refused password leaves the link usable.
        if !account_tokens::is_live(
            &mut *self.pool.acquire().await?,
            &hashed,
            Purpose::ResetPassword,
        )
        .await?
        {
            return Err(ControlError::InvalidToken);
        }
        let hash = self.hash_password(move || password.hash()).await?;
        let mut tx = self.pool.begin().await?;
        let account_id = account_tokens::consume(&mut tx, &hashed, Purpose::ResetPassword)
            .await?
            .ok_or(ControlError::InvalidToken)?;
        accounts::set_password_hash(&mut tx, account_id, &hash).await?;
        accounts::mark_verified(&mut tx, account_id).await?;
        let ended = sessions::delete_for_account(&mut tx, account_id, None).await?;
        let subject = account_id.to_string();
        let details = json!({ "sessions_ended": ended });
        audit::record(
            &mut tx,
            Some(account_id),
            "password.reset",
            &subject,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// Changes the password given the current one; every other session of the account ends
    /// (the caller's own, `keep_session`, stays) and unused reset links stop working.
    pub async fn change_password(
        &self,
        account_id: Uuid,
        current: &str,
        new: &str,
        keep_session: Option<&str>,
    ) -> Result<(), ControlError> {
        let new = Password::parse(new).map_err(|e| ControlError::Validation(e.to_string()))?;
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let (attempt, stored) = (current.to_owned(), account.password_hash);
        let matches = self
            .hash_password(move || crate::password::verify(&attempt, &stored))
            .await?;
        if !matches {
            return Err(ControlError::WrongPassword);
        }
        let hash = self.hash_password(move || new.hash()).await?;
        let keep = keep_session.map(token_hash);
        let mut tx = self.pool.begin().await?;
        accounts::set_password_hash(&mut tx, account_id, &hash).await?;
        account_tokens::delete_unused(&mut tx, account_id, Purpose::ResetPassword).await?;
        let ended = sessions::delete_for_account(&mut tx, account_id, keep.as_deref()).await?;
        let subject = account_id.to_string();
        let details = json!({ "sessions_ended": ended });
        audit::record(
            &mut tx,
            Some(account_id),
            "password.changed",
            &subject,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
