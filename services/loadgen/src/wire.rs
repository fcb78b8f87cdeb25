//! Byte counting at the TCP level and a minimal HTTP/1.1 client over a counted stream, for
//! `loadgen traffic`: every byte the client's socket reads or writes is counted (request and
//! response headers, chunk framing, WebSocket frame headers, bodies).

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

#[derive(Default)]
pub struct Counters {
    /// Bytes read by the clients (server → client).
    pub down: AtomicU64,
    /// Bytes written by the clients (client → server).
    pub up: AtomicU64,
    /// Benchmark events seen by the clients.
    pub events: AtomicU64,
    /// HTTP requests made (polling carriers re-request; every request counts).
    pub requests: AtomicU64,
    /// Delta frames (`switchboard:delta`) among the events.
    pub deltas: AtomicU64,
}

/// A TCP stream that adds what it reads to `down` and what it writes to `up`.
pub struct Counted {
    inner: TcpStream,
    counters: Arc<Counters>,
}

impl Counted {
    /// A stream already connected (bound to a chosen source address, say).
    pub fn from_stream(inner: TcpStream, counters: Arc<Counters>) -> Self {
        Self { inner, counters }
    }

    pub async fn connect(addr: std::net::SocketAddr, counters: Arc<Counters>) -> io::Result<Self> {
        let inner = TcpStream::connect(addr).await?;
        inner.set_nodelay(true)?;
        Ok(Self { inner, counters })
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = poll {
            let n = (buf.filled().len() - before) as u64;
            self.counters.down.fetch_add(n, Ordering::Relaxed);
        }
        poll
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = poll {
            self.counters.up.fetch_add(n as u64, Ordering::Relaxed);
        }
        poll
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Counts occurrences of a needle in a byte stream read in arbitrary pieces.
pub struct Scanner {
    needle: &'static [u8],
    window: Vec<u8>,
}

impl Scanner {
    pub fn new(needle: &'static str) -> Self {
        Self {
            needle: needle.as_bytes(),
            window: Vec::new(),
        }
    }
    pub fn feed(&mut self, data: &[u8]) -> u64 {
        // The kept tail is shorter than the needle, so every match includes new bytes.
        self.window.extend_from_slice(data);
        let n = self.needle.len();
        let found = self.window.windows(n).filter(|w| *w == self.needle).count() as u64;
        let keep = self.window.len().saturating_sub(n - 1);
        self.window.drain(..keep);
        found
    }
}

/// An HTTP/1.1 connection (keep-alive) over a counted stream.
pub struct Http {
    pub stream: Counted,
    buf: Vec<u8>,
    /// The last response head read, as sent.
    pub last_head: String,
}

impl Http {
    pub fn new(stream: Counted) -> Self {
        Self {
            stream,
            buf: Vec::new(),
            last_head: String::new(),
        }
    }

    pub async fn send(&mut self, head: &str, body: &[u8]) -> anyhow::Result<()> {
        self.stream
            .counters
            .requests
            .fetch_add(1, Ordering::Relaxed);
        let mut out = head.as_bytes().to_vec();
        out.extend_from_slice(body);
        self.stream.write_all(&out).await?;
        Ok(())
    }

    /// Reads more bytes into the buffer; errors at end of stream.
    async fn fill(&mut self) -> anyhow::Result<()> {
        let mut chunk = [0u8; 16 * 1024];
        let n = self.stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("connection closed");
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }

    /// Reads a response head; returns the status, the content length, whether it is chunked.
    pub async fn head(&mut self) -> anyhow::Result<(u16, Option<usize>, bool)> {
        let end = loop {
            if let Some(i) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
            self.fill().await?;
        };
        self.last_head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
        let head = self.last_head.to_ascii_lowercase();
        self.buf.drain(..end);
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .context("bad status line")?;
        let header = |name: &str| {
            head.lines()
                .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_owned()))
        };
        let length = header("content-length:").and_then(|v| v.parse().ok());
        let chunked = header("transfer-encoding:").is_some_and(|v| v.contains("chunked"));
        Ok((status, length, chunked))
    }

    /// A header of the last response head (the name matched case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.last_head.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// Reads the next chunk of a chunked body into `body`; `false` after the last (empty) one.
    pub async fn next_chunk(&mut self, body: &mut Vec<u8>) -> anyhow::Result<bool> {
        let line_end = loop {
            if let Some(i) = self.buf.windows(2).position(|w| w == b"\r\n") {
                break i;
            }
            self.fill().await?;
        };
        let size_text = String::from_utf8_lossy(&self.buf[..line_end]).into_owned();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .context("bad chunk size")?;
        while self.buf.len() < line_end + 2 + size + 2 {
            self.fill().await?;
        }
        body.extend_from_slice(&self.buf[line_end + 2..line_end + 2 + size]);
        self.buf.drain(..line_end + 2 + size + 2);
        Ok(size > 0)
    }

    /// Reads a whole response (head and body); returns the status and the body.
    pub async fn response(&mut self) -> anyhow::Result<(u16, Vec<u8>)> {
        let (status, length, chunked) = self.head().await?;
        let mut body = Vec::new();
        if chunked {
            while self.next_chunk(&mut body).await? {}
        } else {
            let length = length.unwrap_or(0);
            while self.buf.len() < length {
                self.fill().await?;
            }
            body = self.buf.drain(..length).collect();
        }
        Ok((status, body))
    }

    /// Reads whatever arrives next on a streaming response (what is buffered first).
    pub async fn next_bytes(&mut self) -> anyhow::Result<Vec<u8>> {
        if self.buf.is_empty() {
            self.fill().await?;
        }
        Ok(std::mem::take(&mut self.buf))
    }
}

#[cfg(test)]
mod tests {
    use super::Scanner;

    #[test]
    fn a_needle_split_across_reads_counts_once() {
        let mut scanner = Scanner::new("MARK");
        assert_eq!(scanner.feed(b"xxMA"), 0);
        assert_eq!(scanner.feed(b"RKyyMARKMA"), 2);
        assert_eq!(scanner.feed(b"RK"), 1);
        assert_eq!(scanner.feed(b"K"), 0);
    }
}
