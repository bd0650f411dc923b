//! Process-wide counters for benchmarks and diagnostics: the bytes every node in this
//! process moved over TCP (counted on the raw socket, so Noise, yamux and multistream
//! framing are included), and, when a benchmark turned them on, gossipsub's own counters
//! (messages received with and without duplicates).
//!
//! TCP counting is always on: one relaxed atomic add per socket read or write. Gossipsub
//! metrics cost memory per node, so they are off unless [`enable_gossip_metrics`] was
//! called before the nodes started. A capture of the bytes themselves
//! ([`start_capture`], for the traffic-privacy test) is off unless started: one relaxed
//! atomic load per read or write.

use std::borrow::Cow;
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

/// A transport stream that adds what it moves to the process's [`traffic`].
#[derive(Debug)]
pub struct Counted<S>(pub S);

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.0).poll_read(cx, buf);
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
        let poll = Pin::new(&mut self.0).poll_read_vectored(cx, bufs);
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
        let poll = Pin::new(&mut self.0).poll_write(cx, buf);
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
        let poll = Pin::new(&mut self.0).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &poll {
            SENT.fetch_add(*n as u64, Ordering::Relaxed);
            capture(bufs.iter().map(|b| &b[..]), *n);
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
