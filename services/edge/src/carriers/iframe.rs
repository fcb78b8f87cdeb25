//! The forever frame: an HTML document that never ends, loaded in a hidden iframe; each frame
//! is a `<script>` calling `parent.postMessage({"type":"switchboard","callback":…,"cursor":…,
//! "frame":…}, <origin>)`: a message, because the page is usually on another origin than the
//! edge, where the same-origin policy forbids calling into `parent`.

use bytes::BytesMut;

use super::stream::{Format, quoted};

/// Bytes of padding before the first script: browsers render (and run scripts of) a document
/// loading incrementally only after its first kilobyte or so.
const PADDING: usize = 1024;

pub(crate) struct Iframe {
    callback: String,
    origin: String,
}

impl Iframe {
    /// `None` unless `callback` is a plain JavaScript identifier path (the message's tag)
    /// and `origin` a web origin (`postMessage`'s target: only that page gets the frames).
    pub(crate) fn new(callback: &str, origin: &str) -> Option<Self> {
        (valid_callback(callback) && valid_origin(origin)).then(|| Self {
            callback: callback.to_owned(),
            origin: origin.to_owned(),
        })
    }
}

/// `http(s)://host[:port]`, nothing more: host letters, digits, `-` and `.` (or a bracketed
/// IPv6 address), port 1–65535.
pub(crate) fn valid_origin(origin: &str) -> bool {
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let port = if let Some(v6) = rest.strip_prefix('[') {
        let Some((address, after)) = v6.split_once(']') else {
            return false;
        };
        if address.is_empty()
            || !address
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        {
            return false;
        }
        match after {
            "" => return true,
            _ => match after.strip_prefix(':') {
                Some(port) => Some(port),
                None => return false,
            },
        }
    } else {
        let (host, port) = match rest.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (rest, None),
        };
        let host_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.'));
        if !host_ok {
            return false;
        }
        port
    };
    port.is_none_or(|port| {
        !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|n| (1..=65535).contains(&n))
    })
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
    fn content_type(&self) -> &'static str {
        "text/html; charset=utf-8"
    }

    fn prelude(&self, out: &mut BytesMut) {
        out.extend_from_slice(b"<!DOCTYPE html><html><head><meta charset=\"utf-8\"></head><body>");
        out.extend_from_slice(b"<!--");
        out.extend_from_slice(&[b' '; PADDING]);
        out.extend_from_slice(b"-->\n");
    }

    fn frame(&self, cursor: &str, frame: &str, out: &mut BytesMut) {
        let payload = format!(
            "{{\"type\":\"switchboard\",\"callback\":{},\"cursor\":{},\"frame\":{frame}}}",
            quoted(&self.callback),
            quoted(cursor)
        );
        out.extend_from_slice(b"<script>parent.postMessage(");
        out.extend_from_slice(script_safe(&payload).as_bytes());
        out.extend_from_slice(b",");
        out.extend_from_slice(quoted(&self.origin).as_bytes());
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
    fn origins_are_scheme_host_and_port_only() {
        for good in [
            "http://127.0.0.1:8080",
            "https://example.com",
            "http://a-b.example.org:1",
            "https://[::1]:443",
            "http://[::1]",
        ] {
            assert!(valid_origin(good), "{good}");
        }
        for bad in [
            "",
            "*",
            "null",
            "ftp://example.com",
            "http://",
            "http://example.com/",
            "http://example.com/path",
            "http://example.com:",
            "http://example.com:0",
            "http://example.com:65536",
            "http://example.com:80:80",
            "http://user@example.com",
            "http://exa mple.com",
            "http://\");alert(1);//",
            "http://[::1",
            "http://[::1]x",
        ] {
            assert!(!valid_origin(bad), "{bad}");
        }
    }

    #[test]
    fn a_frame_is_a_message_to_the_origin() {
        let iframe = Iframe::new("cb", "http://127.0.0.1:9").unwrap();
        let mut out = BytesMut::new();
        iframe.frame("c", r#"{"event":"e"}"#, &mut out);
        assert_eq!(
            std::str::from_utf8(&out).unwrap(),
            "<script>parent.postMessage({\"type\":\"switchboard\",\"callback\":\"cb\",\
             \"cursor\":\"c\",\"frame\":{\"event\":\"e\"}},\"http://127.0.0.1:9\");</script>\n"
        );
        assert!(Iframe::new("cb", "*").is_none());
        assert!(Iframe::new("a(b)", "http://x").is_none());
    }

    #[test]
    fn a_frame_cannot_close_the_script() {
        let iframe = Iframe::new("cb", "http://127.0.0.1:9").unwrap();
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
