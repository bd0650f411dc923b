//! Ingest throughput: one node's validate-and-store path, `Engine::ingest` (envelope
//! decode, XChaCha20-Poly1305, ed25519 `verify_strict`, body rules, rate limit, and the
//! sled writes), next to raw ed25519 verification measured in the same run, and their
//! ratio.
//!
//! ```sh
//! cargo bench -p porchlight-node --bench ingest
//! ```
//!
//! Every ingested envelope is a new report (sealing happens outside the timed part), so
//! the store grows through the run as a real node's does; reports are created one second
//! apart and arrive oldest first, as gossip and sync deliver them. The final lines give the mean
//! time per item over every timed run of each benchmark and the ratio the performance
//! target is stated in (ingest throughput / single-core verification throughput).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::cell::RefCell;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use porchlight_node::engine::{Engine, Ingest};
use porchlight_node::store::Store;
use porchlight_proto::testkit::TestHood;
use porchlight_proto::validate::{self, Context, RateLimiter, Verdict};
use porchlight_proto::{Body, Policy};

/// Members whose reports are ingested (spread so that no rate window fills).
const AUTHORS: usize = 16;

/// Mean time per iteration over every timed run, kept beside criterion's own report.
#[derive(Default)]
struct Tally {
    total: Duration,
    iters: u64,
}

impl Tally {
    fn add(&mut self, d: Duration, iters: u64) {
        self.total += d;
        self.iters += iters;
    }

    fn per_iter(&self) -> Duration {
        self.total / u32::try_from(self.iters.max(1)).unwrap_or(u32::MAX)
    }
}

/// Reports are created one second apart, oldest first, as a node receives them, starting
/// this long before now (within their 72-hour lifetime, so none is expired at the end).
const SPAN_SECS: u64 = 250_000;

struct Maker {
    hood: TestHood,
    start: u64,
    next: usize,
}

impl Maker {
    fn new() -> Maker {
        let mut policy = Policy::default();
        policy.rate_limit.max_items = u16::MAX;
        let mut hood = TestHood::with_policy(7, policy);
        let start = porchlight_node::now();
        hood.now = start;
        for _ in 0..AUTHORS {
            hood.join(0, 0);
        }
        Maker {
            hood,
            start,
            next: 0,
        }
    }

    /// A new sealed report, about as long as a real one.
    fn envelope(&mut self) -> Vec<u8> {
        let i = self.next;
        self.next += 1;
        // (Past the span, which the ingest benchmark does not reach, times start over.)
        self.hood.now = self.start - SPAN_SECS + i as u64 % SPAN_SECS;
        let body: Body = self.hood.report(&format!(
            "report {i}: a parcel was taken from a porch on the 400 block, around noon"
        ));
        self.hood.seal(1 + i % AUTHORS, &body)
    }
}

fn main() {
    let mut c = Criterion::default()
        .measurement_time(Duration::from_secs(8))
        .configure_from_args();
    let mut maker = Maker::new();

    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("db")).expect("store");
    let log: Vec<_> = maker.hood.roster.items().cloned().collect();
    let mut engine = Engine::from_log(
        store,
        maker.hood.members[0].keys.clone(),
        &maker.hood.hood(),
        &log,
    )
    .expect("engine");
    let now = maker.start;

    let ingest = RefCell::new(Tally::default());
    let validate_only = RefCell::new(Tally::default());
    let verify = RefCell::new(Tally::default());
    let verify_member = RefCell::new(Tally::default());

    let mut group = c.benchmark_group("ingest");
    group.throughput(Throughput::Elements(1));
    group.bench_function("engine_ingest", |b| {
        b.iter_custom(|iters| {
            let batch: Vec<Vec<u8>> = (0..iters).map(|_| maker.envelope()).collect();
            let t = Instant::now();
            for bytes in &batch {
                match engine.ingest(bytes, now).expect("store works") {
                    Ingest::New(_) => {}
                    other => panic!("benchmark item refused: {other:?}"),
                }
            }
            let d = t.elapsed();
            ingest.borrow_mut().add(d, iters);
            d
        })
    });
    // The same verdicts with no store: what the sled writes and lookups cost is the rest.
    group.bench_function("validate_only", |b| {
        let rate = RateLimiter::new();
        let ring = maker.hood.members[0].ring.clone();
        b.iter_custom(|iters| {
            let batch: Vec<Vec<u8>> = (0..iters).map(|_| maker.envelope()).collect();
            let cx = Context {
                roster: &maker.hood.roster,
                keys: &ring,
                rate: &rate,
                lookup: &(),
                now,
            };
            let t = Instant::now();
            for bytes in &batch {
                let verdict = validate::validate(bytes, &cx);
                assert!(matches!(verdict, Verdict::Accept(_)), "{verdict:?}");
            }
            let d = t.elapsed();
            validate_only.borrow_mut().add(d, iters);
            d
        })
    });

    // Raw ed25519 over a message as long as a report's signed bytes.
    let signing = SigningKey::from_bytes(&[42; 32]);
    let key: VerifyingKey = signing.verifying_key();
    let message = vec![7u8; 420];
    let signature = signing.sign(&message);
    group.bench_function("ed25519_verify_strict", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                key.verify_strict(black_box(&message), black_box(&signature))
                    .expect("valid signature");
            }
            let d = t.elapsed();
            verify.borrow_mut().add(d, iters);
            d
        })
    });
    // As `MemberId::verify` does it: decompress the key and join the parts first.
    let member = porchlight_proto::MemberId(key.to_bytes());
    let parts: [&[u8]; 2] = [&message[..20], &message[20..]];
    let sig = porchlight_proto::identity::Signature(signature.to_bytes());
    group.bench_function("member_verify", |b| {
        b.iter_custom(|iters| {
            let t = Instant::now();
            for _ in 0..iters {
                assert!(member.verify(black_box(&parts), black_box(&sig)));
            }
            let d = t.elapsed();
            verify_member.borrow_mut().add(d, iters);
            d
        })
    });
    group.finish();
    c.final_summary();

    let per = |t: &RefCell<Tally>| t.borrow().per_iter();
    let rate = |d: Duration| 1.0 / d.as_secs_f64().max(1e-12);
    let (i, v, m, vo) = (
        per(&ingest),
        per(&verify),
        per(&verify_member),
        per(&validate_only),
    );
    println!();
    println!("mean over all timed runs (one core):");
    println!(
        "  engine ingest     {:>8.1} µs/item  {:>8.0} items/s  (store holds {} items at the end)",
        i.as_secs_f64() * 1e6,
        rate(i),
        engine.store().item_count()
    );
    println!(
        "  validate only     {:>8.1} µs/item  {:>8.0} items/s",
        vo.as_secs_f64() * 1e6,
        rate(vo)
    );
    println!(
        "  ed25519 strict    {:>8.1} µs/sig   {:>8.0} sigs/s",
        v.as_secs_f64() * 1e6,
        rate(v)
    );
    println!(
        "  MemberId::verify  {:>8.1} µs/sig   {:>8.0} sigs/s",
        m.as_secs_f64() * 1e6,
        rate(m)
    );
    println!(
        "  ingest / verify throughput ratio: {:.2} (target: at least 0.50)",
        rate(i) / rate(v)
    );
}
