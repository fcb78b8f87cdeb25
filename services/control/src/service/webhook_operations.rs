//! Webhooks and the app setting for `subscription_count` events.

use serde_json::json;
use uuid::Uuid;

use crate::domain::webhook_event_types;
use crate::repository::{apps, audit, plans, webhooks};

use super::{Control, ControlError, DeliveryRow, MAX_WEBHOOKS_PER_APP, WebhookRow};

impl Control {
    /// A new webhook for an app whose plan includes webhooks, to a URL the address policy
    /// accepts (public hosts only, by default).
    pub async fn create_webhook(
        &self,
        account_id: Uuid,
        app_id: &str,
        url: &str,
        event_types: &[String],
        batching: bool,
    ) -> Result<WebhookRow, ControlError> {
        let url = tenancy::parse_webhook_url(url, self.webhook_addresses)
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let event_types = webhook_event_types(event_types)
            .map_err(|e| ControlError::Validation(e.to_string()))?;
        let mut tx = self.pool.begin().await?;
        let app = apps::find(&mut tx, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        let plan = plans::find(&mut tx, &app.plan_id).await?;
        if !plan.is_some_and(|plan| plan.webhooks_allowed) {
            return Err(ControlError::NotInPlan(format!(
                "the {} plan does not include webhooks",
                app.plan_id
            )));
        }
        if webhooks::count_for_app(&mut tx, app_id).await? >= MAX_WEBHOOKS_PER_APP {
            return Err(ControlError::Validation(format!(
                "an app may have at most {MAX_WEBHOOKS_PER_APP} webhooks"
            )));
        }
        let id = Uuid::new_v4();
        let row = webhooks::insert(
            &mut tx,
            account_id,
            app_id,
            id,
            url.as_str(),
            &event_types,
            batching,
        )
        .await?
        .ok_or(ControlError::NotFound)?;
        let details = json!({ "webhook_id": id, "url": url.as_str(), "event_types": event_types, "batching": batching });
        audit::record(
            &mut tx,
            Some(account_id),
            "webhook.created",
            app_id,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(row)
    }

    pub async fn list_webhooks(
        &self,
        account_id: Uuid,
        app_id: &str,
    ) -> Result<Vec<WebhookRow>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        Ok(webhooks::list(&mut conn, account_id, app_id).await?)
    }

    pub async fn delete_webhook(
        &self,
        account_id: Uuid,
        app_id: &str,
        id: Uuid,
    ) -> Result<(), ControlError> {
        let mut tx = self.pool.begin().await?;
        if !webhooks::delete(&mut tx, account_id, app_id, id).await? {
            return Err(ControlError::NotFound);
        }
        let details = json!({ "webhook_id": id });
        audit::record(
            &mut tx,
            Some(account_id),
            "webhook.deleted",
            app_id,
            details,
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The app's newest delivery attempts, newest first.
    pub async fn webhook_deliveries(
        &self,
        account_id: Uuid,
        app_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryRow>, ControlError> {
        let mut conn = self.pool.acquire().await?;
        apps::find(&mut conn, account_id, app_id)
            .await?
            .ok_or(ControlError::NotFound)?;
        Ok(webhooks::list_deliveries(&mut conn, account_id, app_id, limit).await?)
    }
}
