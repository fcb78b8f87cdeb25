//! The forever frame: an HTML document that never ends, loaded in a hidden iframe; each frame
//! is a `<script>` calling `parent.<callback>({"cursor":…,"frame":…})`.

use bytes::BytesMut;

use super::stream::{Format, quoted};

/// Bytes of padding before the first script: browsers render (and run scripts of) a document
/// loading incrementally only after its first kilobyte or so.
const PADDING: usize = 1024;

pub(crate) struct Iframe {
    callback: String,
}

impl Iframe {
    /// `None` unless `callback` is a plain JavaScript identifier path.
    pub(crate) fn new(callback: &str) -> Option<Self> {
        valid_callback(callback).then(|| Self {
            callback: callback.to_owned(),
        })
    }
}

/// `^[A-Za-z_$][A-Za-z0-9_$.]{0,63}$`.
pub(crate) fn valid_callback(callback: &str) -> bool {
    let mut bytes = callback.bytes();
    let first_ok = bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_' || b == b'$');
    first_ok
        && callback.len() <= 64
        && bytes.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'$' | b'.'))
}

/// JSON made safe inside `<script>`: no `<` (so no `</script>` or `<!--`), and no line
/// separators older engines reject in string literals.
fn script_safe(json: &str) -> String {
    json.replace('<', "\\u003c")
        .replace('\u{2028}', "\\u2028")
        .replace('\u{2029}', "\\u2029")
}

impl Format for Iframe {
    fn prelude(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>");
        out.extend_from_slice(b"<!--");
        out.extend_from_slice(&[b' '; PADDING]);
        out.extend_from_slice(b"-->\n");
    }

    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut) {
        let payload = format!("{{\"cursor\":{},\"frame\":{frame}}}", quoted(cursor));
        out.extend_from_slice(b"<script>parent.");
        out.extend_from_slice(self.callback.as_bytes());
        out.extend_from_slice(b"(");
        out.extend_from_slice(script_safe(&payload).as_bytes());
        out.extend_from_slice(b");</script>\n");
    }

    fn heartbeat(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"<!-- -->\n");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn callbacks_are_plain_identifiers() {
        for good in ["cb", "_x", "$", "sb.frames.push1", "a".repeat(64).as_str()] {
            assert!(valid_callback(good), "{good}");
        }
        for bad in [
            "",
            "1a",
            "a(b)",
            "a;b",
            "a b",
            "x</script>",
            "a".repeat(65).as_str(),
        ] {
            assert!(!valid_callback(bad), "{bad}");
        }
    }

    #[test]
    fn a_frame_cannot_close_the_script() {
        let iframe = Iframe::new("cb").unwrap();
        let mut out = BytesMut::new();
        iframe.frame(
            "c",
            r#"{"data":"</script><script>alert(1)</script>"}"#,
            &mut out,
        );
        let text = std::str::from_utf8(&out).unwrap();
        assert_eq!(text.matches("</script>").count(), 1, "{text}");
        assert!(text.contains(r"\u003c/script>"));
    }
}
