//! A capture of every byte the TCP transport moves, in both directions, for the test that
//! checks what crosses the wire (`tests/tests/privacy.rs`). Off unless a test turns it on;
//! when off it costs one relaxed atomic load per socket read or write.

use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};

/// The most a capture keeps; bytes past it are dropped (and counted).
pub const MAX_CAPTURE_BYTES: usize = 64 * 1024 * 1024;

static ON: AtomicBool = AtomicBool::new(false);
static CAPTURE: Mutex<Capture> = Mutex::new(Capture {
    bytes: Vec::new(),
    dropped: 0,
});

/// What a capture saw: the raw socket bytes of every TCP connection in this process.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capture {
    pub bytes: Vec<u8>,
    /// Bytes past `MAX_CAPTURE_BYTES`, not kept.
    pub dropped: u64,
}

fn record(bytes: &[u8]) {
    let mut capture = CAPTURE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let room = MAX_CAPTURE_BYTES.saturating_sub(capture.bytes.len());
    let kept = bytes.len().min(room);
    capture
        .bytes
        .extend_from_slice(bytes.get(..kept).unwrap_or_default());
    capture.dropped += (bytes.len() - kept) as u64;
}

/// Starts capturing (discarding any earlier capture).
pub fn start() {
    *CAPTURE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Capture::default();
    ON.store(true, Ordering::SeqCst);
}

/// Stops capturing and returns what was captured.
pub fn stop() -> Capture {
    ON.store(false, Ordering::SeqCst);
    std::mem::take(
        &mut *CAPTURE
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
    )
}

/// A transport stream whose bytes go to the capture while it is on.
#[derive(Debug)]
pub struct Tapped<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Tapped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll
            && ON.load(Ordering::Relaxed)
        {
            record(buf.get(..*n).unwrap_or_default());
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tapped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.0).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll
            && ON.load(Ordering::Relaxed)
        {
            record(buf.get(..*n).unwrap_or_default());
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_close(cx)
    }
}
