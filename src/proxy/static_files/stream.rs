//! Adapter: a file's bytes read from disk in chunks while the response is sent.
//!
//! Owns: reading a byte range of an open file one chunk at a time, so a download of any size
//! holds one chunk. A chunk the page cache holds is read at once on the worker
//! (`preadv2(RWF_NOWAIT)`, no thread hop: what a static site's files cost); one that must come
//! from the disk is read in the blocking pool, so a cold file never stalls the worker's other
//! connections (nginx, by default, would block its worker there).
//! Must not touch: the response head or the client connection.

use std::fs::File;
use std::future::Future;
use std::io::{self, IoSliceMut};
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use rustix::io::{Errno, ReadWriteFlags};
use tokio::task::JoinHandle;

/// Bytes read from disk at a time.
pub const CHUNK: usize = 64 * 1024;

/// Most bytes one `sendfile` call is asked for: each piece's last byte is first checked to be
/// in the page cache, so that the call cannot wait for the disk on the worker.
const SEND_PIECE: usize = 256 * 1024;

/// The rest of a byte range of a file, read chunk by chunk.
#[derive(Debug)]
pub struct FileStream {
    file: Arc<File>,
    /// Offset of the next byte to read.
    offset: u64,
    /// Bytes still to hand out.
    left: u64,
    /// The read under way in the blocking pool.
    reading: Option<JoinHandle<io::Result<Bytes>>>,
    /// A read failed: the stream ends short (and `left` says by how much).
    failed: bool,
}

impl FileStream {
    /// Streams `len` bytes of `file` from `offset`.
    pub fn new(file: File, offset: u64, len: u64) -> FileStream {
        FileStream {
            file: Arc::new(file),
            offset,
            left: len,
            reading: None,
            failed: false,
        }
    }

    /// Bytes not handed out yet (after a failed read: those that will never be).
    pub fn remaining(&self) -> u64 {
        self.left
    }

    /// The next chunk; `None` at the end. A file that ends before the range does is an error,
    /// so that the client sees a cut answer rather than a short one taken for whole.
    pub fn poll_chunk(&mut self, cx: &mut Context<'_>) -> Poll<Option<io::Result<Bytes>>> {
        if self.left == 0 || self.failed {
            return Poll::Ready(None);
        }
        if self.reading.is_none() {
            let len = usize::try_from(self.left).unwrap_or(usize::MAX).min(CHUNK);
            let mut buf = BytesMut::zeroed(len);
            match read_now(&self.file, self.offset, &mut buf) {
                Ok(Some(n)) => {
                    buf.truncate(n);
                    return self.hand_out(buf.freeze());
                }
                Ok(None) => {
                    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
                        return self.fail(io::Error::other("no runtime to read the file in"));
                    };
                    let (file, offset) = (self.file.clone(), self.offset);
                    self.reading = Some(runtime.spawn_blocking(move || read_chunk(&file, offset, buf)));
                }
                Err(e) => return self.fail(e),
            }
        }
        let Some(reading) = self.reading.as_mut() else {
            return Poll::Ready(None);
        };
        let chunk = match Pin::new(reading).poll(cx) {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Ok(Ok(chunk))) => chunk,
            Poll::Ready(Ok(Err(e))) => return self.fail(e),
            Poll::Ready(Err(e)) => return self.fail(io::Error::other(e)),
        };
        self.reading = None;
        self.hand_out(chunk)
    }

    /// Sends the next piece of the range straight from the page cache to `out` with
    /// `sendfile` (no copy through Ringway's memory, as nginx's `sendfile on`): the bytes the
    /// socket took, `Ok(0)` when the range is done or when the piece is not all in the page
    /// cache (the rest then goes through [`FileStream::poll_chunk`], which reads from the disk
    /// in the blocking pool). A full socket is `WouldBlock`.
    pub fn send_to(&mut self, out: BorrowedFd<'_>) -> io::Result<usize> {
        if self.left == 0 || self.failed || self.reading.is_some() {
            return Ok(0);
        }
        let count = usize::try_from(self.left).unwrap_or(usize::MAX).min(SEND_PIECE);
        // Page-cache readahead fills a file front to back: a cached last byte says the piece
        // is cached, and a piece that is not is left to the reads that may wait.
        let mut last = [0u8; 1];
        if read_now(&self.file, self.offset + count as u64 - 1, &mut last)? != Some(1) {
            return Ok(0);
        }
        let mut offset = self.offset;
        let sent = loop {
            match rustix::fs::sendfile(out, &*self.file, Some(&mut offset), count) {
                Ok(n) => break n,
                Err(Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        };
        if sent == 0 {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        self.offset += sent as u64;
        self.left -= sent as u64;
        Ok(sent)
    }

    fn hand_out(&mut self, chunk: Bytes) -> Poll<Option<io::Result<Bytes>>> {
        if chunk.is_empty() {
            return self.fail(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the file shrank while it was sent",
            ));
        }
        self.offset += chunk.len() as u64;
        self.left -= chunk.len() as u64;
        Poll::Ready(Some(Ok(chunk)))
    }

    fn fail(&mut self, e: io::Error) -> Poll<Option<io::Result<Bytes>>> {
        self.failed = true;
        self.reading = None;
        Poll::Ready(Some(Err(e)))
    }
}

impl Drop for FileStream {
    fn drop(&mut self) {
        // A read already running finishes in the blocking pool; its chunk is dropped there.
        if let Some(r) = self.reading.take() {
            r.abort();
        }
    }
}

/// Reads into `buf` at `offset` only what the page cache holds: `Some(bytes read)` (0 at the
/// end of the file), `None` when the read would wait for the disk (or the file system cannot
/// tell).
pub(super) fn read_now(file: &File, offset: u64, buf: &mut [u8]) -> io::Result<Option<usize>> {
    loop {
        match rustix::io::preadv2(file, &mut [IoSliceMut::new(buf)], offset, ReadWriteFlags::NOWAIT) {
            Ok(n) => return Ok(Some(n)),
            Err(Errno::INTR) => {}
            Err(Errno::AGAIN | Errno::OPNOTSUPP | Errno::NOSYS | Errno::INVAL) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Fills `buf` from `offset`, waiting for the disk: shorter only where the file ends.
fn read_chunk(file: &File, offset: u64, mut buf: BytesMut) -> io::Result<Bytes> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(filled);
    Ok(buf.freeze())
}
