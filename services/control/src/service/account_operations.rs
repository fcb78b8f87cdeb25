//! Accounts, browser sessions and API tokens.

use serde_json::json;
use time::OffsetDateTime;
use uuid::Uuid;

use crate::crypto::{random_hex, token_hash};
use crate::domain::{Email, TokenName};
use crate::password::{self, Password};
use crate::repository::{self, accounts, audit, sessions, tokens};

use super::{ApiTokenRow, Control, ControlError, NewSession, SESSION_LIFETIME};

impl Control {
    pub async fn sign_up(&self, email: &str, password: &str) -> Result<Uuid, ControlError> {
        let email = Email::parse(email).map_err(|e| ControlError::Validation(e.to_string()))?;
        let password =
            Password::parse(password).map_err(|e| ControlError::Validation(e.to_string()))?;
        let hash = self.hash_password(move || password.hash()).await?;
        let id = Uuid::new_v4();
        let mut tx = self.pool.begin().await?;
        match accounts::insert(&mut tx, id, email.as_str(), &hash).await {
            Err(error) if repository::is_unique_violation(&error) => {
                return Err(ControlError::EmailTaken);
            }
            result => result?,
        }
        audit::record(
            &mut tx,
            Some(id),
            "account.created",
            &id.to_string(),
            json!({ "email": email.as_str() }),
        )
        .await?;
        let token = Self::issue_verification_token(&mut tx, id).await?;
        tx.commit().await?;
        // Signed up and signed in at once; the mail proves the address later.
        self.outbox
            .send_in_background(self.links.verification(email.as_str(), &token));
        Ok(id)
    }

    /// The account whose password this is. Unknown emails cost a hash too, so timing does
    /// not reveal which emails have accounts.
    pub async fn check_password(&self, email: &str, password: &str) -> Result<Uuid, ControlError> {
        let account =
            accounts::find_by_email(&mut *self.pool.acquire().await?, email.trim()).await?;
        let stored = account.as_ref().map(|a| a.password_hash.clone());
        let attempt = password.to_owned();
        // The decoy is hashed once, on first use: inside the slot, off the async threads.
        let matches = self
            .hash_password(move || {
                let stored = stored.as_deref().unwrap_or_else(|| password::decoy_hash());
                password::verify(&attempt, stored)
            })
            .await?;
        match account {
            Some(account) if matches => Ok(account.id),
            _ => Err(ControlError::InvalidCredentials),
        }
    }

    pub async fn account_email(&self, account_id: Uuid) -> Result<String, ControlError> {
        let account = accounts::find(&mut *self.pool.acquire().await?, account_id).await?;
        account.map(|a| a.email).ok_or(ControlError::NotFound)
    }

    pub async fn account_id_by_email(&self, email: &str) -> Result<Uuid, ControlError> {
        let account =
            accounts::find_by_email(&mut *self.pool.acquire().await?, email.trim()).await?;
        account.map(|a| a.id).ok_or(ControlError::NotFound)
    }

    pub async fn create_session(&self, account_id: Uuid) -> Result<NewSession, ControlError> {
        let session = NewSession {
            token: random_hex(32),
            csrf_token: random_hex(16),
        };
        let expires_at = OffsetDateTime::now_utc() + SESSION_LIFETIME;
        let mut conn = self.pool.acquire().await?;
        sessions::insert(
            &mut conn,
            &token_hash(&session.token),
            account_id,
            &session.csrf_token,
            expires_at,
        )
        .await?;
        audit::record(
            &mut conn,
            Some(account_id),
            "session.created",
            &account_id.to_string(),
            json!({}),
        )
        .await?;
        Ok(session)
    }

    /// The account and CSRF token of a live session.
    pub async fn session(&self, token: &str) -> Result<Option<(Uuid, String)>, ControlError> {
        let row = sessions::find_live(&mut *self.pool.acquire().await?, &token_hash(token)).await?;
        Ok(row.map(|row| (row.account_id, row.csrf_token)))
    }

    pub async fn end_session(&self, token: &str) -> Result<(), ControlError> {
        sessions::delete(&mut *self.pool.acquire().await?, &token_hash(token)).await?;
        Ok(())
    }

    /// A new API token, returned this once; only its hash is kept.
    pub async fn create_api_token(
        &self,
        account_id: Uuid,
        name: &str,
    ) -> Result<(Uuid, String), ControlError> {
        let name = TokenName::parse(name).map_err(|e| ControlError::Validation(e.to_string()))?;
        let (id, token) = (Uuid::new_v4(), format!("sbt_{}", random_hex(32)));
        let mut tx = self.pool.begin().await?;
        tokens::insert(&mut tx, id, account_id, name.as_str(), &token_hash(&token)).await?;
        audit::record(
            &mut tx,
            Some(account_id),
            "api_token.created",
            &id.to_string(),
            json!({ "name": name.as_str() }),
        )
        .await?;
        tx.commit().await?;
        Ok((id, token))
    }

    pub async fn api_token_account(&self, token: &str) -> Result<Option<Uuid>, ControlError> {
        Ok(tokens::find_account(&mut *self.pool.acquire().await?, &token_hash(token)).await?)
    }

    pub async fn list_api_tokens(
        &self,
        account_id: Uuid,
    ) -> Result<Vec<ApiTokenRow>, ControlError> {
        Ok(tokens::list(&mut *self.pool.acquire().await?, account_id).await?)
    }

    pub async fn revoke_api_token(&self, account_id: Uuid, id: Uuid) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !tokens::revoke(&mut tx, account_id, id).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(
            &mut tx,
            Some(account_id),
            "api_token.revoked",
            &id.to_string(),
            json!({}),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
