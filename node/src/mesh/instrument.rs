//! Process-wide counters for benchmarks and diagnostics: the bytes every node in this
//! process moved over TCP (counted on the raw socket, so Noise, yamux and multistream
//! framing are included), and, when a benchmark turned them on, gossipsub's own counters
//! (messages received with and without duplicates).
//!
//! TCP counting is always on: one relaxed atomic add per socket read or write. A
//! benchmark can also give every TCP connection made afterwards an emulated one-way
//! latency ([`set_link_delay`]: what a socket reads is handed on that much later), to
//! measure propagation as it would be between homes rather than on loopback. Gossipsub
//! metrics cost memory per node, so they are off unless [`enable_gossip_metrics`] was
//! called before the nodes started. A capture of the bytes themselves
//! ([`start_capture`], for the traffic-privacy test) is off unless started: one relaxed
//! atomic load per read or write.

use std::borrow::Cow;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use libp2p::gossipsub;
use prometheus_client::registry::Registry;

static SENT: AtomicU64 = AtomicU64::new(0);
static RECEIVED: AtomicU64 = AtomicU64::new(0);
static GOSSIP: Mutex<Option<Registry>> = Mutex::new(None);

/// Bytes moved over TCP by every node in this process since it started.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    pub sent: u64,
    pub received: u64,
}

pub fn traffic() -> Traffic {
    Traffic {
        sent: SENT.load(Ordering::Relaxed),
        received: RECEIVED.load(Ordering::Relaxed),
    }
}

static LINK_DELAY_US: AtomicU64 = AtomicU64::new(0);

/// For benchmarks: every TCP connection made from now on in this process hands on what
/// it reads `delay` after the socket delivered it (an emulated one-way link latency,
/// both directions, unlimited bandwidth). Zero (the default) turns it off for new
/// connections.
pub fn set_link_delay(delay: std::time::Duration) {
    LINK_DELAY_US.store(
        u64::try_from(delay.as_micros()).unwrap_or(u64::MAX),
        Ordering::SeqCst,
    );
}

/// Most bytes a delayed connection holds back; past it, it stops reading the socket.
const MAX_DELAYED_BYTES: usize = 1 << 20;
/// Most bytes read from the socket at once by a delayed connection.
const DELAYED_READ: usize = 16 * 1024;

/// A transport stream that adds what it moves to the process's [`traffic`], and delays
/// what it reads if [`set_link_delay`] was set when it was made.
#[derive(Debug)]
pub struct Counted<S> {
    inner: S,
    delayed: Option<Delayed>,
}

/// Bytes read from the socket, each chunk with the time it may be handed on.
#[derive(Debug)]
struct Delayed {
    delay: std::time::Duration,
    chunks: std::collections::VecDeque<(tokio::time::Instant, Vec<u8>)>,
    /// Bytes of the front chunk already handed on.
    offset: usize,
    held: usize,
    timer: Option<Pin<Box<tokio::time::Sleep>>>,
    /// The socket's end (or error), handed on once the chunks before it are.
    end: Option<io::Result<()>>,
}

impl<S> Counted<S> {
    pub fn new(inner: S) -> Counted<S> {
        let us = LINK_DELAY_US.load(Ordering::Relaxed);
        Counted::with_delay(inner, std::time::Duration::from_micros(us))
    }

    fn with_delay(inner: S, delay: std::time::Duration) -> Counted<S> {
        let delayed = (!delay.is_zero()).then(|| Delayed {
            delay,
            chunks: Default::default(),
            offset: 0,
            held: 0,
            timer: None,
            end: None,
        });
        Counted { inner, delayed }
    }
}

impl<S: AsyncRead + Unpin> Counted<S> {
    fn poll_read_delayed(
        &mut self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let Some(d) = self.delayed.as_mut() else {
            return Poll::Ready(Ok(0));
        };
        // Take in what the socket has, stamped with when it may be handed on.
        while d.end.is_none() && d.held < MAX_DELAYED_BYTES {
            let mut chunk = vec![0u8; DELAYED_READ];
            match Pin::new(&mut self.inner).poll_read(cx, &mut chunk) {
                Poll::Ready(Ok(0)) => d.end = Some(Ok(())),
                Poll::Ready(Ok(n)) => {
                    RECEIVED.fetch_add(n as u64, Ordering::Relaxed);
                    chunk.truncate(n);
                    capture([&chunk[..]], n);
                    d.held += n;
                    d.chunks
                        .push_back((tokio::time::Instant::now() + d.delay, chunk));
                }
                Poll::Ready(Err(e)) => d.end = Some(Err(e)),
                Poll::Pending => break,
            }
        }
        loop {
            let Some((due, chunk)) = d.chunks.front() else {
                return match d.end.take() {
                    Some(Ok(())) => {
                        d.end = Some(Ok(()));
                        Poll::Ready(Ok(0))
                    }
                    Some(Err(e)) => Poll::Ready(Err(e)),
                    // The socket registered our waker.
                    None => Poll::Pending,
                };
            };
            if *due <= tokio::time::Instant::now() {
                let rest = chunk.get(d.offset..).unwrap_or_default();
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                d.offset += n;
                d.held -= n;
                if d.offset >= chunk.len() {
                    d.chunks.pop_front();
                    d.offset = 0;
                }
                return Poll::Ready(Ok(n));
            }
            let due = *due;
            let timer = d
                .timer
                .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(due)));
            timer.as_mut().reset(due);
            match timer.as_mut().poll(cx) {
                Poll::Ready(()) => continue,
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        if self.delayed.is_some() {
            return self.poll_read_delayed(cx, buf);
        }
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            RECEIVED.fetch_add(*n as u64, Ordering::Relaxed);
            capture([&buf[..]], *n);
        }
        poll
    }

    fn poll_read_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &mut [io::IoSliceMut<'_>],
    ) -> Poll<io::Result<usize>> {
        if self.delayed.is_some() {
            let Some(buf) = bufs.iter_mut().find(|b| !b.is_empty()) else {
                return Poll::Ready(Ok(0));
            };
            return self.poll_read_delayed(cx, buf);
        }
        let poll = Pin::new(&mut self.inner).poll_read_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            RECEIVED.fetch_add(*n as u64, Ordering::Relaxed);
            capture(bufs.iter().map(|b| &b[..]), *n);
        }
        poll
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &poll {
            SENT.fetch_add(*n as u64, Ordering::Relaxed);
            capture([buf], *n);
        }
        poll
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            SENT.fetch_add(*n as u64, Ordering::Relaxed);
            capture(bufs.iter().map(|b| &b[..]), *n);
        }
        poll
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

/// The most a capture keeps; bytes past it are dropped (and counted).
pub const MAX_CAPTURE_BYTES: usize = 64 * 1024 * 1024;

static CAPTURING: AtomicBool = AtomicBool::new(false);
static CAPTURE: Mutex<Capture> = Mutex::new(Capture {
    bytes: Vec::new(),
    dropped: 0,
});

/// What a capture saw: the raw socket bytes, both directions, of every TCP connection in
/// this process (for the test that checks what crosses the wire, `tests/tests/privacy.rs`).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Capture {
    pub bytes: Vec<u8>,
    /// Bytes past `MAX_CAPTURE_BYTES`, not kept.
    pub dropped: u64,
}

fn lock_capture() -> std::sync::MutexGuard<'static, Capture> {
    CAPTURE
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Keeps the first `n` bytes of `bufs` while a capture is on (off: one atomic load).
fn capture<'a>(bufs: impl IntoIterator<Item = &'a [u8]>, mut n: usize) {
    if !CAPTURING.load(Ordering::Relaxed) {
        return;
    }
    let mut capture = lock_capture();
    for buf in bufs {
        if n == 0 {
            break;
        }
        let take = buf.get(..n.min(buf.len())).unwrap_or_default();
        n -= take.len();
        let room = MAX_CAPTURE_BYTES.saturating_sub(capture.bytes.len());
        let kept = take.len().min(room);
        capture
            .bytes
            .extend_from_slice(take.get(..kept).unwrap_or_default());
        capture.dropped += (take.len() - kept) as u64;
    }
}

/// Starts capturing every TCP byte (discarding any earlier capture).
pub fn start_capture() {
    *lock_capture() = Capture::default();
    CAPTURING.store(true, Ordering::SeqCst);
}

/// Stops capturing and returns what was captured.
pub fn stop_capture() -> Capture {
    CAPTURING.store(false, Ordering::SeqCst);
    std::mem::take(&mut *lock_capture())
}

fn registry() -> std::sync::MutexGuard<'static, Option<Registry>> {
    // A panic while holding the lock leaves counters, not invariants: keep using them.
    GOSSIP
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Makes every gossipsub behaviour created from now on in this process keep its metrics.
pub fn enable_gossip_metrics() {
    let mut registry = registry();
    if registry.is_none() {
        *registry = Some(Registry::default());
    }
}

/// `behaviour` with metrics registered under `node`, if metrics are enabled.
pub fn with_gossip_metrics(behaviour: gossipsub::Behaviour, node: String) -> gossipsub::Behaviour {
    match registry().as_mut() {
        Some(registry) => behaviour.with_metrics(
            registry.sub_registry_with_label((Cow::Borrowed("node"), Cow::Owned(node))),
            gossipsub::MetricsConfig::default(),
        ),
        None => behaviour,
    }
}

/// Gossipsub messages received by every instrumented node in this process.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GossipCounters {
    /// Every copy that arrived, duplicates included.
    pub received: u64,
    /// First copies only (what gossipsub handed on for validation).
    pub unique: u64,
}

impl GossipCounters {
    pub fn duplicates(&self) -> u64 {
        self.received.saturating_sub(self.unique)
    }
}

/// The summed counters, or `None` if metrics were never enabled.
pub fn gossip_counters() -> Option<GossipCounters> {
    let registry = registry();
    let registry = registry.as_ref()?;
    let mut text = String::new();
    prometheus_client::encoding::text::encode(&mut text, registry).ok()?;
    let mut counters = GossipCounters::default();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((name, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let Ok(value) = value.parse::<f64>() else {
            continue;
        };
        let metric = name.split('{').next().unwrap_or(name);
        if metric.ends_with("topic_msg_recv_counts_unfiltered_total") {
            counters.received += value as u64;
        } else if metric.ends_with("topic_msg_recv_counts_total") {
            counters.unique += value as u64;
        }
    }
    Some(counters)
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::AsyncReadExt;

    #[tokio::test]
    async fn a_delayed_stream_hands_on_every_byte_in_order_after_the_delay() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let delay = std::time::Duration::from_millis(40);
        let mut stream = Counted::with_delay(futures::io::Cursor::new(data.clone()), delay);
        let started = tokio::time::Instant::now();
        let mut first = [0u8; 1];
        stream.read_exact(&mut first).await.unwrap();
        assert!(
            started.elapsed() >= delay,
            "the first byte came before the delay"
        );
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).await.unwrap();
        assert_eq!(first[0], data[0]);
        assert_eq!(rest, data[1..]);
        // Without a delay, nothing is held back.
        let mut plain = Counted::with_delay(
            futures::io::Cursor::new(data.clone()),
            std::time::Duration::ZERO,
        );
        let mut all = Vec::new();
        plain.read_to_end(&mut all).await.unwrap();
        assert_eq!(all, data);
    }
}
