//! Client-supplied strings in log fields: `tracing::info!(key = %Untrusted(key))`.
//!
//! A raw key or channel name with a newline would forge a log line (and a huge one would
//! flood the log), so every control character, quote and backslash is escaped as Rust's
//! `escape_debug` does, and the value is cut after `MAX_CHARS` characters.

use std::fmt;

/// Characters of an untrusted value kept in a log line; the rest is replaced by `…`.
pub const MAX_CHARS: usize = 200;

/// Displays a client-supplied string escaped and bounded.
#[derive(Clone, Copy)]
pub struct Untrusted<'a>(pub &'a str);

impl fmt::Display for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut chars = self.0.chars();
        for character in chars.by_ref().take(MAX_CHARS) {
            write!(f, "{}", character.escape_debug())?;
        }
        if chars.next().is_some() {
            f.write_str("…")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Untrusted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "\"{self}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_and_long_values_cut() {
        let forged = "k\n2026-12-01T00:00:00Z  INFO admin logged in\r\u{1b}[31m\"";
        let shown = Untrusted(forged).to_string();
        assert!(!shown.contains('\n') && !shown.contains('\r') && !shown.contains('\u{1b}'));
        assert!(shown.starts_with("k\\n2026"), "{shown}");
        let long = "x".repeat(10_000);
        assert_eq!(Untrusted(&long).to_string().chars().count(), MAX_CHARS + 1);
        assert_eq!(format!("{:?}", Untrusted("a\tb")), "\"a\\tb\"");
    }
}
