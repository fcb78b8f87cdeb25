//! `switchboard admin …`: operator commands. Their output is a contract for scripts.

use std::io::BufRead;

use anyhow::Context;
use control::crypto::SecretsKey;
use control::service::{Control, ControlError};

use crate::cli::{AdminCommand, DatabaseArgs};
use crate::database;

pub async fn run(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::CreateAccount {
            email,
            password_stdin: _,
            database,
        } => {
            let control = open(&database).await?;
            let mut password = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut password)
                .context("reading the password from stdin")?;
            let password = password.trim_end_matches(['\r', '\n']);
            let id = control
                .sign_up(&email, password)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}",
                serde_json::json!({ "account_id": id, "email": email.trim() })
            );
        }
        AdminCommand::CreateApp {
            email,
            name,
            plan,
            database,
        } => {
            let control = open(&database).await?;
            let account = control
                .account_id_by_email(&email)
                .await
                .map_err(|_| anyhow::anyhow!("no account with email {email}"))?;
            let created = control
                .create_app(account, &name, plan.as_deref())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            println!(
                "{}",
                serde_json::json!({ "app_id": created.app.id, "key": created.key, "secret": created.secret })
            );
        }
        AdminCommand::SetPlan {
            app_id,
            plan,
            database,
        } => {
            let control = open(&database).await?;
            let app = control
                .set_plan_as_operator(&app_id, &plan)
                .await
                .map_err(|error| match error {
                    ControlError::NotFound => anyhow::anyhow!("no app with id {app_id:?}"),
                    other => anyhow::anyhow!("{other}"),
                })?;
            tracing::info!(app_id = ?app.id, plan = ?app.plan_id, "plan set by operator");
            println!(
                "{}",
                serde_json::json!({ "app_id": app.id, "plan": app.plan_id })
            );
        }
        AdminCommand::GenerateSecretsKey => println!("{}", SecretsKey::generate_base64()),
        AdminCommand::SyncStripe { database, billing } => {
            crate::billing::sync_stripe(&database, &billing).await?
        }
        AdminCommand::ReconcileBilling { database, billing } => {
            crate::billing::reconcile(&database, &billing).await?
        }
    }
    Ok(())
}

async fn open(args: &DatabaseArgs) -> anyhow::Result<Control> {
    let (pool, key) = database::open(args)
        .await?
        .context("DATABASE_URL is required")?;
    database::migrate(&pool).await?;
    Ok(Control::new(pool, key))
}
