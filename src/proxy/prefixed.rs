//! A client stream with bytes already read from it put back in front, for the rare cleartext
//! client whose first bytes alone did not tell HTTP/1.1 from HTTP/2 (see `server.rs`).
//!
//! Must not touch: what the bytes mean.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::server::{FirstBytes, H2_PREFACE_START};

/// `inner`, read after `prefix`.
pub(super) struct Prefixed<S> {
    pub(super) prefix: Bytes,
    pub(super) inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = self.get_mut();
        if !this.prefix.is_empty() {
            let n = this.prefix.len().min(buf.remaining());
            buf.put_slice(&this.prefix[..n]);
            this.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut this.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write(cx, buf)
    }
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// Reads from a client whose first bytes were a prefix of the HTTP/2 preface until they tell
/// which protocol it speaks; `None` if it closed first.
pub(super) async fn read_until_decided(mut stream: TcpStream) -> Option<(Prefixed<TcpStream>, FirstBytes)> {
    use tokio::io::AsyncReadExt;
    let mut read = Vec::with_capacity(H2_PREFACE_START.len());
    let mut byte = [0u8; 1];
    // One byte at a time: nothing after the decision is taken from the stream.
    while H2_PREFACE_START.starts_with(&read) && read.len() < H2_PREFACE_START.len() {
        match stream.read(&mut byte).await {
            Ok(1) => read.push(byte[0]),
            _ => return None,
        }
    }
    let speaks = if read == H2_PREFACE_START {
        FirstBytes::Http2
    } else {
        FirstBytes::Http1
    };
    let stream = Prefixed {
        prefix: bytes::Bytes::from(read),
        inner: stream,
    };
    Some((stream, speaks))
}
