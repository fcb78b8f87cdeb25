//! A mailer that keeps the last mails in memory, for tests that follow a mail's link.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::mail::{Mail, MailError, Mailer};

/// Most mails kept; older ones are forgotten.
const KEPT: usize = 100;

#[derive(Debug, Clone, Default)]
pub struct MemoryMailer {
    sent: Arc<Mutex<VecDeque<Mail>>>,
}

impl MemoryMailer {
    pub fn new() -> Self {
        Self::default()
    }

    /// The mails sent so far (the last 100), oldest first.
    pub fn sent(&self) -> Vec<Mail> {
        let sent = self.sent.lock().expect("mailer lock poisoned");
        sent.iter().cloned().collect()
    }
}

#[async_trait]
impl Mailer for MemoryMailer {
    async fn send(&self, mail: Mail) -> Result<(), MailError> {
        let mut sent = self.sent.lock().expect("mailer lock poisoned");
        if sent.len() == KEPT {
            sent.pop_front();
        }
        sent.push_back(mail);
        Ok(())
    }
}
