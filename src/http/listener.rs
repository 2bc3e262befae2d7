//! The connections the service serves. hyper answers a request head it will
//! not take (431 past its header limits, 400 when it cannot parse it, 414
//! for an over-long URI) by itself, before the router sees a request, with
//! an empty body and no hook to change that. Each connection rewrites that
//! one answer into the problem+json every other error gets.

use std::{
    io,
    net::SocketAddr,
    pin::Pin,
    task::{Context, Poll, ready},
};

use axum::{
    http::{StatusCode, header},
    serve::Listener,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
};

use super::error::{Cause, PROBLEM_JSON, Problem};

/// Accepts connections for `axum::serve`.
pub struct Connections(TcpListener);

impl Connections {
    pub fn new(listener: TcpListener) -> Self {
        Self(listener)
    }
}

impl Listener for Connections {
    type Io = ProblemAnswers<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        // axum's own accept loop, which backs off on errors such as EMFILE.
        let (stream, address) = Listener::accept(&mut self.0).await;
        // Responses go out as soon as they are written: with Nagle's
        // algorithm a response's last segment can wait for the client's
        // delayed ACK (40 ms).
        if let Err(err) = stream.set_nodelay(true) {
            tracing::debug!(error = %err, "cannot set TCP_NODELAY");
        }
        (ProblemAnswers::new(stream), address)
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// A connection whose writes pass through, except hyper's own error answer
/// (see the module comment), which is replaced by a problem+json one.
pub struct ProblemAnswers<S> {
    inner: S,
    /// The replacement answer and how much of it has been written.
    replacement: Option<(Vec<u8>, usize)>,
}

impl<S> ProblemAnswers<S> {
    pub fn new(inner: S) -> Self {
        Self {
            inner,
            replacement: None,
        }
    }
}

impl<S: AsyncWrite + Unpin> ProblemAnswers<S> {
    /// Writes what is left of a replacement; ready once it is all out.
    fn poll_replacement(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while let Some((bytes, written)) = &mut self.replacement {
            if *written == bytes.len() {
                self.replacement = None;
                break;
            }
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        Poll::Ready(Ok(()))
    }

    /// Takes `head` in place of hyper's bare error answer when it is one;
    /// the replacement is written from here on (hyper flushes next).
    fn replaced(&mut self, head: &[u8]) -> bool {
        let Some((status, answer)) = problem_answer(head) else {
            return false;
        };
        // Such requests never reach the request log; this line stands in.
        tracing::info!(status = status.as_u16(), "request refused before routing");
        self.replacement = Some((answer, 0));
        true
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for ProblemAnswers<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ProblemAnswers<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        if self.replaced(buf) {
            return Poll::Ready(Ok(buf.len()));
        }
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        ready!(self.poll_replacement(cx))?;
        // hyper keeps a response head in a buffer of its own, so the answer
        // to replace is a whole slice; taking only it is a short write.
        if let Some(first) = bufs.iter().find(|buf| !buf.is_empty())
            && self.replaced(first)
        {
            return Poll::Ready(Ok(first.len()));
        }
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_replacement(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The problem+json answer for `head` when it is hyper's own error answer:
/// a whole 4xx head with `content-length: 0` and no `content-type`. Every
/// error the router answers has a `content-type` (see
/// `problem_for_bare_errors`), so none is mistaken for it.
fn problem_answer(head: &[u8]) -> Option<(StatusCode, Vec<u8>)> {
    // Cheap refusals first: this sees every write of every response.
    if !head.starts_with(b"HTTP/1.1 4") {
        return None;
    }
    let head = std::str::from_utf8(head.strip_suffix(b"\r\n\r\n")?).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let code = status_line.strip_prefix("HTTP/1.1 ")?.get(..3)?;
    let status = StatusCode::from_bytes(code.as_bytes()).ok()?;
    let mut kept = Vec::new();
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        if name.eq_ignore_ascii_case(header::CONTENT_TYPE.as_str()) {
            return None;
        }
        if name.eq_ignore_ascii_case(header::CONTENT_LENGTH.as_str()) {
            empty = value.trim() == "0";
        } else {
            kept.push(line);
        }
    }
    if !empty {
        return None;
    }
    let problem = match status {
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => Problem::new(
            Cause::RequestHeaderFieldsTooLarge,
            "the request has more than 100 header fields, or its head is larger than 400 KiB",
        ),
        StatusCode::URI_TOO_LONG => Problem::new(Cause::UriTooLong, "the request URI is too long"),
        StatusCode::BAD_REQUEST => {
            Problem::new(Cause::MalformedRequest, "the request is not valid HTTP/1.1")
        }
        _ => Problem::blank(status, status.canonical_reason().unwrap_or("error")),
    };
    let body = serde_json::to_string(&problem).ok()?;
    let mut answer = format!("{status_line}\r\n");
    for line in kept {
        answer.push_str(line);
        answer.push_str("\r\n");
    }
    answer.push_str(&format!(
        "content-type: {PROBLEM_JSON}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    ));
    Some((status, answer.into_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_bare_client_error_head_is_replaced() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 11:18:46 GMT\r\n\r\n";
        let (status, answer) = problem_answer(hyper_431).unwrap();
        assert_eq!(status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
        let answer = String::from_utf8(answer).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert_eq!(
            head,
            format!(
                "HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
                 date: Wed, 02 Dec 2026 11:18:46 GMT\r\ncontent-type: application/problem+json\r\n\
                 content-length: {}",
                body.len()
            )
        );
        let problem: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(problem["type"], "/problems/request-header-fields-too-large");
        assert_eq!(problem["status"], 431);

        for passes in [
            // The router's own errors carry a body and its type.
            &b"HTTP/1.1 404 Not Found\r\ncontent-type: application/problem+json\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 12\r\n\r\n",
            // A head together with its body is not hyper's bare answer.
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n{}",
            b"{\"status\":\"alive\"}",
        ] {
            assert_eq!(problem_answer(passes), None);
        }
    }
}
