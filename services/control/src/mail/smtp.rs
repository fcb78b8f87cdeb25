//! Mail over SMTP with `lettre` (async on tokio, TLS by rustls), when `--smtp-url` is set.
//!
//! The URL is lettre's: `smtp://host:25` (plain, for a local relay), `smtp://host:587?tls=required`
//! (STARTTLS), `smtps://user:password@host:465` (TLS from the start).

use async_trait::async_trait;
use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use crate::mail::{Mail, MailError, Mailer};

#[derive(Debug, thiserror::Error)]
pub enum SmtpSettingsError {
    #[error("--smtp-url is not a valid SMTP URL: {0}")]
    Url(String),
    #[error("--mail-from is not a valid address: {0}")]
    From(String),
}

pub struct SmtpMailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
}

impl SmtpMailer {
    /// A mailer sending through `url` as `from` (such as `Switchboard <no-reply@example.com>`).
    pub fn new(url: &str, from: &str) -> Result<Self, SmtpSettingsError> {
        let transport = AsyncSmtpTransport::<Tokio1Executor>::from_url(url)
            // The error may quote the URL, password included: say only what kind it is.
            .map_err(|error| SmtpSettingsError::Url(kind_of(&error)))?
            .build();
        let from = from
            .parse()
            .map_err(|error: lettre::address::AddressError| {
                SmtpSettingsError::From(error.to_string())
            })?;
        Ok(Self { transport, from })
    }
}

fn kind_of(error: &lettre::transport::smtp::Error) -> String {
    if error.is_client() {
        "malformed URL".to_owned()
    } else {
        "unsupported URL".to_owned()
    }
}

#[async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let to: Mailbox = mail
            .to
            .parse()
            .map_err(|error: lettre::address::AddressError| {
                MailError::Address(error.to_string())
            })?;
        let message = Message::builder()
            .from(self.from.clone())
            .to(to)
            .subject(mail.subject)
            .header(ContentType::TEXT_PLAIN)
            .body(mail.text)
            .map_err(|error| MailError::Transport(error.to_string()))?;
        self.transport
            .send(message)
            .await
            .map_err(|error| MailError::Transport(error.to_string()))?;
        Ok(())
    }
}
