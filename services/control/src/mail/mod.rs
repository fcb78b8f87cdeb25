//! Mail to account owners: email verification and password reset, each carrying a link with
//! a one-time token. `Mailer` is the seam: `LogMailer` (the default) writes each mail to the
//! log, `SmtpMailer` sends it over SMTP when `--smtp-url` is set, and `MemoryMailer` keeps
//! the last ones in memory for tests.
//!
//! Architecture invariant: no operation waits for a mail to go out. `Control` hands each mail
//! to `send_in_background`, so SMTP's latency is never an answer's, and a password-reset
//! request for an unknown address takes as long as one for a known address.

mod log;
mod memory;
mod smtp;

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::Semaphore;

pub use log::LogMailer;
pub use memory::MemoryMailer;
pub use smtp::{SmtpMailer, SmtpSettingsError};

/// One mail: plain text, with the one link it is about.
#[derive(Clone, PartialEq, Eq)]
pub struct Mail {
    pub to: String,
    pub subject: String,
    pub text: String,
    /// The action link (with its one-time token) the text contains.
    pub link: String,
}

/// The token is a credential: a `Debug` of a mail shows where it goes, not its link.
impl std::fmt::Debug for Mail {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mail")
            .field("to", &self.to)
            .field("subject", &self.subject)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum MailError {
    #[error("invalid address: {0}")]
    Address(String),
    #[error("the mail could not be sent: {0}")]
    Transport(String),
}

#[async_trait]
pub trait Mailer: Send + Sync {
    async fn send(&self, mail: Mail) -> Result<(), MailError>;
}

/// Mails being sent at once at most; past it a mail is dropped (and logged) rather than
/// queued without bound. Every mail is behind a rate limit, so this is reached only when
/// the mail server stalls.
pub const MAX_MAILS_IN_FLIGHT: usize = 64;

/// Sends mails off the request path, at most `MAX_MAILS_IN_FLIGHT` at once.
#[derive(Clone)]
pub struct Outbox {
    mailer: Arc<dyn Mailer>,
    in_flight: Arc<Semaphore>,
}

impl Outbox {
    pub fn new(mailer: Arc<dyn Mailer>) -> Self {
        Self {
            mailer,
            in_flight: Arc::new(Semaphore::new(MAX_MAILS_IN_FLIGHT)),
        }
    }

    /// Starts sending `mail`; a failure is logged, never returned.
    pub fn send_in_background(&self, mail: Mail) {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            tracing::warn!(subject = %mail.subject, "mail dropped: too many mails in flight");
            return;
        };
        let mailer = self.mailer.clone();
        tokio::spawn(async move {
            let subject = mail.subject.clone();
            if let Err(error) = mailer.send(mail).await {
                tracing::warn!(%error, %subject, "mail not sent");
            }
            drop(permit);
        });
    }
}

/// Where links in mails point: the dashboard's pages at the public URL.
#[derive(Debug, Clone)]
pub struct MailLinks {
    base_url: String,
}

impl MailLinks {
    /// `base_url` is the public URL the dashboard is served at (`--public-url`).
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// A notice about the account's plan and payments, pointing at the dashboard's plans page.
    pub fn billing_notice(&self, to: &str, subject: &str, body: &str) -> Mail {
        let link = format!("{}/plans", self.base_url);
        Mail {
            to: to.to_owned(),
            subject: subject.to_owned(),
            text: format!("{body}\n\nSee your plan and payments: {link}"),
            link,
        }
    }

    /// The verification mail: the dashboard's `/verify-email?token=…` page.
    pub fn verification(&self, to: &str, token: &str) -> Mail {
        let link = format!("{}/verify-email?token={token}", self.base_url);
        Mail {
            to: to.to_owned(),
            subject: "Verify your email address for Switchboard".to_owned(),
            text: format!(
                "Welcome to Switchboard.\n\nConfirm that this is your email address by opening \
                 this link within 24 hours:\n\n{link}\n\nIf you did not sign up, ignore this mail."
            ),
            link,
        }
    }

    /// The password-reset mail: the dashboard's `/reset-password?token=…` page.
    pub fn password_reset(&self, to: &str, token: &str) -> Mail {
        let link = format!("{}/reset-password?token={token}", self.base_url);
        Mail {
            to: to.to_owned(),
            subject: "Reset your Switchboard password".to_owned(),
            text: format!(
                "Someone asked to reset the password of your Switchboard account. To choose a \
                 new one, open this link within an hour:\n\n{link}\n\nIf it was not you, ignore \
                 this mail: your password stays as it is."
            ),
            link,
        }
    }
}

impl Default for MailLinks {
    /// The address of `switchboard serve` on a developer's machine.
    fn default() -> Self {
        Self::new("http://localhost:6001")
    }
}
