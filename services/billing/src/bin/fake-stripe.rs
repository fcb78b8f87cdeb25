//! `fake-stripe`: the fake Stripe (`billing::fake`) as a process, for tests outside Rust (the
//! dashboard's Playwright upgrade test). Prints its base URL (what `STRIPE_API_BASE` should
//! be) on stdout once it listens, then serves until killed.
//!
//! ```sh
//! fake-stripe --port 0 --secret-key sk_test_x --webhook-secret whsec_x \
//!   --webhook-url http://127.0.0.1:6001/v1/stripe/webhook [--hold-webhooks]
//! ```

use std::io::Write;

use billing::fake::FakeStripe;
use clap::Parser;

#[derive(Debug, Parser)]
#[command(name = "fake-stripe", about = "A local fake Stripe for tests")]
struct Args {
    /// Port on 127.0.0.1 (0: a free one).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// The API key it accepts (`Authorization: Bearer …`).
    #[arg(long, env = "STRIPE_SECRET_KEY", hide_env_values = true)]
    secret_key: String,
    /// The secret it signs webhook events with, as Stripe does.
    #[arg(long, env = "STRIPE_WEBHOOK_SECRET", hide_env_values = true)]
    webhook_secret: String,
    /// Where it POSTs events (`…/v1/stripe/webhook`); without it events are only kept.
    #[arg(long)]
    webhook_url: Option<String>,
    /// Hold every event until `POST /_fake/webhooks/release`.
    #[arg(long)]
    hold_webhooks: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let fake = FakeStripe::start_on(args.port, &args.secret_key, &args.webhook_secret).await?;
    if let Some(url) = &args.webhook_url {
        fake.deliver_webhooks_to(url);
    }
    fake.with_state(|state| state.hold_webhooks = args.hold_webhooks);
    let mut stdout = std::io::stdout();
    writeln!(stdout, "{}", fake.base_url())?;
    stdout.flush()?;
    std::future::pending::<()>().await;
    Ok(())
}
