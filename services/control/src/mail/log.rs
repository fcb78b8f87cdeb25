//! The default mailer: each mail goes to the log (tracing, at info), link included, so a
//! developer's machine and the tests read verification and reset links there.

use async_trait::async_trait;

use crate::mail::{Mail, MailError, Mailer};

#[derive(Debug, Clone, Default)]
pub struct LogMailer;

#[async_trait]
impl Mailer for LogMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        // The address came from a client: `?` escapes it, so it cannot forge a log line.
        tracing::info!(
            to = ?mail.to,
            subject = %mail.subject,
            link = %mail.link,
            "mail written to the log (no SMTP configured)"
        );
        Ok(())
    }
}
