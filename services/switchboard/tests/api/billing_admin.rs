//! The operator's billing commands, run as the binary: `admin sync-stripe` against a fake
//! Stripe (twice: nothing is made again) and `admin reconcile-billing`; both refuse to run
//! without Stripe keys.

use billing::fake::FakeStripe;
use control::crypto::SecretsKey;
use serde_json::Value;

use crate::binary::switchboard_command;
use crate::platform::fresh_database;

async fn admin(
    args: &[&str],
    url: &str,
    key: &str,
    fake: Option<&FakeStripe>,
) -> (bool, String, String) {
    let mut command = switchboard_command(url, key);
    command.arg("admin").args(args);
    command
        .env_remove("STRIPE_SECRET_KEY")
        .env_remove("STRIPE_WEBHOOK_SECRET");
    if let Some(fake) = fake {
        command
            .env("STRIPE_SECRET_KEY", fake.secret_key())
            .env("STRIPE_WEBHOOK_SECRET", fake.webhook_secret())
            .env("STRIPE_API_BASE", fake.base_url());
    }
    // The fake runs on this test's runtime: wait for the child off it.
    let output = tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap();
    let text = |bytes: Vec<u8>| String::from_utf8(bytes).unwrap();
    (
        output.status.success(),
        text(output.stdout),
        text(output.stderr),
    )
}

#[tokio::test]
async fn sync_stripe_makes_the_catalog_once_and_reconcile_prints_each_meter() {
    let (url, _database) = fresh_database().await;
    let key = SecretsKey::generate_base64();
    let fake = FakeStripe::start("sk_test_admin", "whsec_admin")
        .await
        .unwrap();

    let (ok, _, err) = admin(&["sync-stripe"], &url, &key, None).await;
    assert!(!ok);
    assert!(err.contains("STRIPE_SECRET_KEY"), "{err}");

    let (ok, out, err) = admin(&["sync-stripe"], &url, &key, Some(&fake)).await;
    assert!(ok, "{err}");
    let lines: Vec<Value> = out
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 5, "two meters and three paid plans: {out}");
    assert!(lines.iter().all(|line| line["created"] == true), "{out}");

    let (ok, out, err) = admin(&["sync-stripe"], &url, &key, Some(&fake)).await;
    assert!(ok, "{err}");
    assert!(
        out.lines().all(|line| line.contains("\"created\":false")),
        "{out}"
    );
    assert_eq!(
        fake.with_state(|state| (state.products.len(), state.prices.len())),
        (3, 9)
    );

    // No account subscribes here: nothing to compare, and the command says so by printing nothing.
    let (ok, out, err) = admin(&["reconcile-billing"], &url, &key, Some(&fake)).await;
    assert!(ok, "{err}");
    assert_eq!(out, "");
}
