//! Answers to requests the HTTP stack could not parse. hyper answers those itself, before
//! any route or middleware runs (a malformed request line or header such as a bad
//! `Content-Length`: 400; a request target or head over its limit: 414 or 431), with an
//! empty body and none of the hardening headers. [`Answering`] wraps each connection and
//! rewrites such an answer, as it is written, into the server's own: the JSON
//! `{error, message}` and the headers every other answer carries.
//!
//! hyper writes its answer as the last bytes of the connection (it closes it after), and
//! only then; every answer of the server itself carries a `content-security-policy`
//! header ([`crate::console::harden`]), so an answer with a status line of its own and
//! without that header, ending the bytes written, can only be hyper's.

use crate::api::ErrorBody;
use crate::console::HARDENING_HEADERS;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A connection whose bytes pass through unchanged, except hyper's own error answer.
pub struct Answering<IO> {
    inner: IO,
    /// The replacement answer, still to be written (the bytes it replaced were reported
    /// written already).
    pending: Vec<u8>,
}

impl<IO> Answering<IO> {
    /// Wraps a connection.
    pub fn new(inner: IO) -> Self {
        Answering {
            inner,
            pending: Vec::new(),
        }
    }
}

/// The statuses hyper answers by itself, with the code and message the server gives them.
fn explained(status: &[u8]) -> Option<(u16, &'static str, &'static str)> {
    Some(match status {
        b"400" => (
            400,
            "bad-request",
            "the request could not be parsed: its request line or a header (such as Content-Length) is malformed",
        ),
        b"414" => (
            414,
            "uri-too-long",
            "the request target is longer than this server accepts",
        ),
        b"431" => (
            431,
            "request-header-fields-too-large",
            "the request's head (target and headers) is larger than this server accepts",
        ),
        _ => return None,
    })
}

/// If `buf` ends with an answer of hyper's own, where it starts and the answer to write
/// instead.
fn rewrite(buf: &[u8]) -> Option<(usize, Vec<u8>)> {
    let body_end = buf.len().checked_sub(4)?;
    if &buf[body_end..] != b"\r\n\r\n" {
        return None;
    }
    // The status line of the last head: the answer has no body, so its head ends `buf`.
    // hyper's is short; only the end of `buf` is searched.
    let from = body_end.saturating_sub(1024);
    let start = (from..body_end)
        .rev()
        .find(|&i| buf[i..].starts_with(b"HTTP/1."))?;
    let head = &buf[start..];
    let status = head.get(9..12)?;
    let (code, error, message) = explained(status)?;
    let text = String::from_utf8_lossy(head).to_ascii_lowercase();
    if text.contains("\r\ncontent-security-policy:") || text[..text.len() - 4].contains("\r\n\r\n")
    {
        return None;
    }
    let body = serde_json::to_vec(&ErrorBody {
        error: error.to_owned(),
        message: message.to_owned(),
    })
    .ok()?;
    let reason = http::StatusCode::from_u16(code)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
        body.len()
    );
    for (name, value) in HARDENING_HEADERS {
        out.push_str(name);
        out.push_str(": ");
        out.push_str(value);
        out.push_str("\r\n");
    }
    // hyper's `date`, kept.
    if let Some(date) = text.split("\r\n").find(|l| l.starts_with("date:")) {
        let at = text.find(date).unwrap_or(0);
        out.push_str(&String::from_utf8_lossy(&head[at..at + date.len()]));
        out.push_str("\r\n");
    }
    out.push_str("\r\n");
    let mut answer = out.into_bytes();
    answer.extend_from_slice(&body);
    Some((start, answer))
}

impl<IO: AsyncWrite + Unpin> Answering<IO> {
    /// Writes what is pending; ready once nothing is.
    fn drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending.is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.pending))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.pending.drain(..n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Answering<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Not vectored, so that hyper hands over each answer as one contiguous buffer.
impl<IO: AsyncWrite + Unpin> AsyncWrite for Answering<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.drain(cx))?;
        match rewrite(buf) {
            // What comes before hyper's answer (the end of an earlier one) goes first.
            Some((start, _)) if start > 0 => {
                Pin::new(&mut self.inner).poll_write(cx, &buf[..start])
            }
            Some((_, answer)) => {
                self.pending = answer;
                // Reported written: the replacement is written by this call or the next
                // write or flush, which hyper makes before it closes.
                let _ = self.drain(cx)?;
                Poll::Ready(Ok(buf.len()))
            }
            None => Pin::new(&mut self.inner).poll_write(cx, buf),
        }
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.drain(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Sends each write at once. An answer written in parts (an MCP event stream: headers, the
/// event, the end) otherwise waits for the client's delayed ACK between them: 40 ms a call,
/// measured on `/mcp` (bench figure `mcp`).
pub(crate) fn no_delay(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "could not set TCP_NODELAY");
    }
}

/// A TCP listener whose connections are [`Answering`].
pub struct Listener(pub tokio::net::TcpListener);

impl axum::serve::Listener for Listener {
    type Io = Answering<tokio::net::TcpStream>;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok((stream, addr)) => {
                    no_delay(&stream);
                    return (Answering::new(stream), addr);
                }
                Err(e) => {
                    // Out of descriptors and the like: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::rewrite;

    const HYPER_431: &[u8] =
        b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\ndate: Sun, 06 Dec 2026 23:00:00 GMT\r\n\r\n";

    #[test]
    fn hypers_own_answer_becomes_a_json_error_with_the_headers() {
        let (start, answer) = rewrite(HYPER_431).unwrap();
        assert_eq!(start, 0);
        let text = String::from_utf8(answer).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        assert!(
            head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
            "{head}"
        );
        assert!(head.contains("\r\ncontent-security-policy: "), "{head}");
        assert!(
            head.contains("\r\ndate: Sun, 06 Dec 2026 23:00:00 GMT"),
            "{head}"
        );
        assert!(
            head.contains(&format!("\r\ncontent-length: {}", body.len())),
            "{head}"
        );
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["error"], "request-header-fields-too-large");
        // After the end of an earlier answer, it is found where it starts.
        let mut after = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}".to_vec();
        after.extend_from_slice(HYPER_431);
        assert_eq!(rewrite(&after).unwrap().0, after.len() - HYPER_431.len());
    }

    #[test]
    fn the_servers_own_answers_pass_unchanged() {
        for bytes in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-security-policy: x\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 2\r\n\r\n{}",
            b"{\"output\":\"HTTP/1.1 400 Bad Request\"}",
            b"",
        ] {
            assert!(rewrite(bytes).is_none(), "{}", String::from_utf8_lossy(bytes));
        }
    }
}
