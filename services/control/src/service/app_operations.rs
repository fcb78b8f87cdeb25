//! Apps, plan changes and keys.

use serde_json::json;
use uuid::Uuid;

use crate::crypto::random_hex;
use crate::domain::{AppName, Plan};
use crate::repository::{accounts, apps, audit, billing, keys, plans};

use super::{AppRow, Control, ControlError, CreatedApp, DEFAULT_PLAN, KeyInfo};

/// Who picks a plan. Until billing exists, an account serving itself may pick only free
/// plans (price 0); an operator (`switchboard admin`) may pick any.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlanAuthority {
    SelfServe,
    Operator,
}

/// The plan if it exists and `authority` may pick it for the account. A paid plan needs a
/// verified email first (`EmailUnverified`), then to be the plan the account's subscription
/// pays for (`PaymentRequired` otherwise: paid plans come from Stripe or the operator).
async fn allowed_plan(
    conn: &mut sqlx::PgConnection,
    account_id: Uuid,
    plan: &str,
    authority: PlanAuthority,
) -> Result<Plan, ControlError> {
    let found = plans::find(conn, plan)
        .await?
        .ok_or_else(|| ControlError::UnknownPlan(plan.to_owned()))?;
    match authority {
        PlanAuthority::SelfServe if found.price_cents > 0 => {
            let verified = accounts::find(conn, account_id)
                .await?
                .is_some_and(|account| account.email_verified);
            if !verified {
                return Err(ControlError::EmailUnverified);
            }
            match billing::held_plan(conn, account_id).await? {
                Some(held) if held == plan => Ok(found),
                Some(_) | None => Err(ControlError::PaymentRequired(plan.to_owned())),
            }
        }
        PlanAuthority::SelfServe | PlanAuthority::Operator => Ok(found),
    }
}

impl Control {
    /// A new app on any plan, as an operator makes it (`admin create-app`); the `/v1` API
    /// calls `create_app_as(PlanAuthority::SelfServe, …)`.
    pub async fn create_app(
        &self,
        account_id: Uuid,
        name: &str,
        plan: Option<&str>,
    ) -> Result<CreatedApp, ControlError> {
        self.create_app_as(PlanAuthority::Operator, account_id, name, plan)
            .await
    }

    pub async fn create_app_as(
        &self,
        authority: PlanAuthority,
        account_id: Uuid,
        name: &str,
        plan: Option<&str>,
    ) -> Result<CreatedApp, ControlError> {
        let name = AppName::parse(name).map_err(|e| ControlError::Validation(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        // The plan is the account's (billing puts every app on the plan it pays for), so a
        // new app of a subscribed account starts on that plan, not on the free one.
        let held = match plan {
            Some(_) => None,
            None => billing::held_plan(&mut tx, account_id).await?,
        };
        let plan = plan.or(held.as_deref()).unwrap_or(DEFAULT_PLAN);
        allowed_plan(&mut tx, account_id, plan, authority).await?;
        let app = apps::insert(&mut tx, account_id, name.as_str(), plan).await?;
        let (key, secret) = self.insert_new_key(&mut tx, &app.id).await?;
        let details = json!({ "name": name.as_str(), "plan": plan, "key": key });
        audit::record(&mut tx, Some(account_id), "app.created", &app.id, details).await?;
        tx.commit().await?;
        Ok(CreatedApp { app, key, secret })
    }

    pub(super) async fn insert_new_key(
        &self,
        conn: &mut sqlx::PgConnection,
        app_id: &str,
    ) -> Result<(String, String), ControlError> {
        let (key, secret) = (random_hex(10), random_hex(16));
        let sealed = self.secrets.seal(&key, &secret);
        keys::insert(conn, app_id, &key, &sealed.nonce, &sealed.ciphertext).await?;
        Ok((key, secret))
    }

    pub async fn list_apps(&self, account_id: Uuid) -> Result<Vec<AppRow>, ControlError> {
        Ok(apps::list(&mut *self.pool.acquire().await?, account_id).await?)
    }

    pub async fn app(&self, account_id: Uuid, app_id: &str) -> Result<AppRow, ControlError> {
        let app = apps::find(&mut *self.pool.acquire().await?, account_id, app_id).await?;
        app.ok_or(ControlError::NotFound)
    }

    pub async fn delete_app(&self, account_id: Uuid, app_id: &str) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !apps::delete(&mut tx, account_id, app_id).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(&mut tx, Some(account_id), "app.deleted", app_id, json!({})).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Moves one of the account's apps to any plan (an operator's or a test's move); the
    /// `/v1` API calls `change_plan_self_serve`.
    pub async fn change_plan(
        &self,
        account_id: Uuid,
        app_id: &str,
        plan: &str,
    ) -> Result<AppRow, ControlError> {
        self.change_plan_as(PlanAuthority::Operator, account_id, app_id, plan)
            .await
    }

    /// Moves one of the account's apps to another free plan; a paid one is `PaymentRequired`.
    pub async fn change_plan_self_serve(
        &self,
        account_id: Uuid,
        app_id: &str,
        plan: &str,
    ) -> Result<AppRow, ControlError> {
        self.change_plan_as(PlanAuthority::SelfServe, account_id, app_id, plan)
            .await
    }

    async fn change_plan_as(
        &self,
        authority: PlanAuthority,
        account_id: Uuid,
        app_id: &str,
        plan: &str,
    ) -> Result<AppRow, ControlError> {
        let mut tx = self.pool.begin().await?;
        // Another account's app is not found, whatever the plan.
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        allowed_plan(&mut tx, account_id, plan, authority).await?;
        let app = apps::set_plan(&mut tx, account_id, app_id, plan)
            .await?
            .ok_or(ControlError::NotFound)?;
        audit::record(
            &mut tx,
            Some(account_id),
            "app.plan_changed",
            app_id,
            json!({ "plan": plan }),
        )
        .await?;
        tx.commit().await?;
        Ok(app)
    }

    /// The operator's `admin set-plan`: moves any app, paid plans included. Audited under the
    /// app's account (so its owner sees the change), marked as the operator's.
    pub async fn set_plan_as_operator(
        &self,
        app_id: &str,
        plan: &str,
    ) -> Result<AppRow, ControlError> {
        let mut tx = self.pool.begin().await?;
        allowed_plan(&mut tx, Uuid::nil(), plan, PlanAuthority::Operator).await?;
        let app = apps::set_plan_as_operator(&mut tx, app_id, plan)
            .await?
            .ok_or(ControlError::NotFound)?;
        audit::record(
            &mut tx,
            Some(app.account_id),
            "app.plan_changed",
            app_id,
            json!({ "plan": plan, "by": "operator" }),
        )
        .await?;
        tx.commit().await?;
        Ok(app)
    }

    pub async fn list_keys(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<Vec<KeyInfo>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let rows = keys::list(&mut conn, app_id).await?;
        Ok(rows
            .into_iter()
            .map(|row| KeyInfo {
                key: row.key,
                created_at: row.created_at,
                revoked_at: row.revoked_at,
            })
            .collect())
    }

    /// A new key beside the existing ones: rotation is create, move clients, revoke the old.
    pub async fn create_key(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<(String, String), ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let (key, secret) = self.insert_new_key(&mut tx, app_id).await?;
        audit::record(
            &mut tx,
            Some(account_id),
            "key.created",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok((key, secret))
    }

    pub async fn revoke_key(
        &self,
        account_id: Uuid,
        app_id: &str,
        key: &str,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        if keys::count_live(&mut tx, app_id).await? <= 1
            && keys::find(&mut tx, app_id, key)
                .await?
                .is_some_and(|k| k.revoked_at.is_none())
        {
            return Err(ControlError::LastKey);
        }
        if !keys::revoke(&mut tx, app_id, key).await? {
            return Err(ControlError::NotFound);
        }
        audit::record(
            &mut tx,
            Some(account_id),
            "key.revoked",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The secret of a live key, on explicit request (audited).
    pub async fn reveal_secret(
        &self,
        account_id: Uuid,
        app_id: &str,
        key: &str,
    ) -> Result<String, ControlError> {
        let mut tx = self.pool.begin().await?;
        apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let row = keys::find(&mut tx, app_id, key)
            .await?
            .filter(|row| row.revoked_at.is_none())
            .ok_or(ControlError::NotFound)?;
        let secret = self
            .secrets
            .open(&row.key, &row.secret_nonce, &row.secret_ciphertext)
            .map_err(anyhow::Error::new)?;
        audit::record(
            &mut tx,
            Some(account_id),
            "key.secret_revealed",
            app_id,
            json!({ "key": key }),
        )
        .await?;
        tx.commit().await?;
        Ok(secret)
    }
}
