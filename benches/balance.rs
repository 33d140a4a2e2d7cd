//! Micro-benchmarks of the balancers' hot paths and table builds (docs/benchmarks-balance.md).
//!
//! Owns: criterion benches only. Must not touch: the algorithms (it measures them as the proxy
//! calls them, through the public API).

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use ringway::balance::{
    Algorithm, Balancer, HashFunction, LoadIndex, Maglev, Member, PickInput, Ring, ServerLoads,
};

/// Loads of a busy pool: everything eligible, small varied in-flight counts.
struct Busy {
    in_flight: Vec<u64>,
}

impl ServerLoads for Busy {
    #[inline]
    fn eligible(&self, index: usize) -> bool {
        index < self.in_flight.len()
    }
    #[inline]
    fn in_flight(&self, index: usize) -> u64 {
        self.in_flight.get(index).copied().unwrap_or(0)
    }
}

/// The same loads, with the sums a pool would keep as running totals.
struct Reported<'a>(&'a Busy, u64);

impl ServerLoads for Reported<'_> {
    #[inline]
    fn eligible(&self, index: usize) -> bool {
        self.0.eligible(index)
    }
    #[inline]
    fn in_flight(&self, index: usize) -> u64 {
        self.0.in_flight(index)
    }
    #[inline]
    fn eligible_totals(&self) -> Option<(u64, usize)> {
        Some((self.1, self.0.in_flight.len()))
    }
}

/// The same loads as a pool reports them: it keeps the balancer's load index current, which
/// gives least requests its tree and bounded loads their sums.
struct Indexed<'a>(&'a Busy, Option<&'a LoadIndex>);

impl<'a> Indexed<'a> {
    /// Reads `busy` into `index` (as the pool does when it attaches its servers).
    fn new(busy: &'a Busy, index: Option<&'a std::sync::Arc<LoadIndex>>) -> Indexed<'a> {
        let index = index.map(|i| &**i);
        if let Some(i) = index {
            i.refresh_all(|m| (busy.in_flight(m), busy.eligible(m)));
        }
        Indexed(busy, index)
    }
}

impl ServerLoads for Indexed<'_> {
    #[inline]
    fn eligible(&self, index: usize) -> bool {
        self.0.eligible(index)
    }
    #[inline]
    fn in_flight(&self, index: usize) -> u64 {
        self.0.in_flight(index)
    }
    #[inline]
    fn eligible_totals(&self) -> Option<(u64, usize)> {
        self.1.map(LoadIndex::totals)
    }
    #[inline]
    fn indexed(&self) -> bool {
        self.1.is_some()
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn servers(n: usize) -> Vec<Member> {
    (0..n)
        .map(|i| Member {
            name: format!("server-{i}"),
            weight: 1,
        })
        .collect()
}

fn busy(n: usize) -> Busy {
    let mut s = 1;
    Busy {
        in_flight: (0..n).map(|_| 1 + splitmix(&mut s) % 20).collect(),
    }
}

/// 64 Ki distinct 16-byte keys, so lookups are spread over the whole table as in real traffic.
fn keys() -> Vec<[u8; 16]> {
    let mut s = 42;
    (0..1 << 16)
        .map(|_| {
            let mut k = [0u8; 16];
            k[..8].copy_from_slice(&splitmix(&mut s).to_le_bytes());
            k[8..].copy_from_slice(&splitmix(&mut s).to_le_bytes());
            k
        })
        .collect()
}

fn hashed(c: &mut Criterion) {
    let members = servers(1000);
    let keys = keys();
    let loads = busy(1000);
    let f = HashFunction::Xxh3;

    let ring = Ring::new(&members, 160, f, None);
    let mut i = 0usize;
    c.bench_function("ring/lookup 1000x160, 16-byte key incl. xxh3", |b| {
        b.iter(|| {
            i = (i + 1) & 0xFFFF;
            ring.pick(Some(f.hash(black_box(&keys[i]))), &loads)
        })
    });
    let bounded = Ring::new(&members, 160, f, Some(1.25));
    c.bench_function("ring/lookup 1000x160 bounded_load 1.25", |b| {
        b.iter(|| {
            i = (i + 1) & 0xFFFF;
            bounded.pick(Some(f.hash(black_box(&keys[i]))), &loads)
        })
    });
    let reported = Reported(&loads, loads.in_flight.iter().sum());
    c.bench_function("ring/lookup 1000x160 bounded_load 1.25, caller totals", |b| {
        b.iter(|| {
            i = (i + 1) & 0xFFFF;
            bounded.pick(Some(f.hash(black_box(&keys[i]))), &reported)
        })
    });
    c.bench_function("ring/build 1000x160", |b| {
        b.iter(|| Ring::new(black_box(&members), 160, f, None))
    });

    let maglev = Maglev::new(&members, 65_537, f, None);
    c.bench_function("maglev/lookup 1000, 16-byte key incl. xxh3", |b| {
        b.iter(|| {
            i = (i + 1) & 0xFFFF;
            maglev.pick(Some(f.hash(black_box(&keys[i]))), &loads)
        })
    });
    c.bench_function("maglev/build 1000 members, 65537 entries", |b| {
        b.iter(|| Maglev::new(black_box(&members), 65_537, f, None))
    });
    let mut shuffled = members.clone();
    shuffled.reverse();
    c.bench_function("maglev/build 1000 members (reversed input)", |b| {
        b.iter_batched(
            || shuffled.clone(),
            |m| Maglev::new(&m, 65_537, f, None),
            BatchSize::LargeInput,
        )
    });
}

/// Bounded-load picks of the hashed balancers at three pool sizes, as the proxy makes them.
fn bounded(c: &mut Criterion) {
    let keys = keys();
    let f = HashFunction::Xxh3;
    for n in [10usize, 100, 1000] {
        let members = servers(n);
        let loads = busy(n);
        let ring = Ring::new(&members, 160, f, Some(1.25));
        let maglev = Maglev::new(&members, 65_537, f, Some(1.25));
        let ring_loads = Indexed::new(&loads, ring.load_index());
        let maglev_loads = Indexed::new(&loads, maglev.load_index());
        let mut i = 0usize;
        c.bench_function(&format!("ring/pick bounded_load 1.25 {n}"), |b| {
            b.iter(|| {
                i = (i + 1) & 0xFFFF;
                ring.pick(Some(f.hash(black_box(&keys[i]))), &ring_loads)
            })
        });
        c.bench_function(&format!("ring/pick bounded_load 1.25 {n}, balancer sums"), |b| {
            b.iter(|| {
                i = (i + 1) & 0xFFFF;
                ring.pick(Some(f.hash(black_box(&keys[i]))), &loads)
            })
        });
        c.bench_function(&format!("maglev/pick bounded_load 1.25 {n}"), |b| {
            b.iter(|| {
                i = (i + 1) & 0xFFFF;
                maglev.pick(Some(f.hash(black_box(&keys[i]))), &maglev_loads)
            })
        });
        c.bench_function(
            &format!("maglev/pick bounded_load 1.25 {n}, balancer sums"),
            |b| {
                b.iter(|| {
                    i = (i + 1) & 0xFFFF;
                    maglev.pick(Some(f.hash(black_box(&keys[i]))), &loads)
                })
            },
        );
    }
}

fn pickers(c: &mut Criterion) {
    for n in [10usize, 32, 64, 100, 1000] {
        let members = servers(n);
        let loads = busy(n);
        for (name, alg) in [
            ("round_robin", Algorithm::RoundRobin),
            ("least_requests", Algorithm::LeastRequests),
            ("random_two", Algorithm::RandomTwo),
        ] {
            let balancer = Balancer::new(&alg, &members);
            let indexed = Indexed::new(&loads, balancer.load_index());
            let mut s = 7u64;
            c.bench_function(&format!("{name}/pick {n}"), |b| {
                b.iter(|| {
                    let input = PickInput {
                        key_hash: None,
                        random: splitmix(&mut s),
                    };
                    balancer.pick(black_box(input), &indexed)
                })
            });
            if balancer.load_index().is_some() {
                // The same balancer without its index: the pass over every member.
                c.bench_function(&format!("{name}/scan {n}"), |b| {
                    b.iter(|| {
                        let input = PickInput {
                            key_hash: None,
                            random: splitmix(&mut s),
                        };
                        balancer.pick(black_box(input), &loads)
                    })
                });
            }
        }
    }
}

/// What the index costs the request path: one request starting and ending on one member (two
/// refreshes), members taken in turn; and the tree's pick alone, at sizes around the point
/// where least requests starts keeping a tree.
fn reports(c: &mut Criterion) {
    for n in [10usize, 32, 64, 100, 1000] {
        let loads = busy(n);
        let index = LoadIndex::with_tree(&vec![1; n]);
        index.refresh_all(|m| (loads.in_flight(m), true));
        let mut start = 0usize;
        c.bench_function(&format!("load_index/lightest {n}"), |b| {
            b.iter(|| {
                start = if start + 1 == n { 0 } else { start + 1 };
                index.lightest(black_box(start), |m| loads.eligible(m))
            })
        });
    }
    for n in [10usize, 100, 1000] {
        let loads = busy(n);
        let weights = vec![1; n];
        for (name, index) in [
            ("tree", LoadIndex::with_tree(&weights)),
            ("sums", LoadIndex::sums_only(n)),
        ] {
            index.refresh_all(|m| (loads.in_flight(m), true));
            let mut m = 0usize;
            c.bench_function(&format!("load_index/{name} start+end {n}"), |b| {
                b.iter(|| {
                    m = if m + 1 == n { 0 } else { m + 1 };
                    let f = loads.in_flight(m);
                    index.refresh(black_box(m), || (f + 1, true));
                    index.refresh(black_box(m), || (f, true));
                })
            });
        }
    }
}

/// A request's start and end on a server as the proxy counts them (`Server::request_started`,
/// `request_ended`): the in-flight counter, the look-up of the server's load index and the
/// reports to it, for a pool that keeps no index, the sums and the tree (100 servers).
fn server_reports(c: &mut Criterion) {
    use ringway::proxy::state::{Health, PoolMembers, Server};
    use std::sync::Arc;
    let members = servers(100);
    for (name, alg) in [
        ("no index", Algorithm::RoundRobin),
        (
            "sums",
            Algorithm::ConsistentHash {
                vnodes: 160,
                hash: HashFunction::Xxh3,
                bounded_load: Some(1.25),
            },
        ),
        ("tree", Algorithm::LeastRequests),
    ] {
        let servers: Vec<Arc<Server>> = members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let addr = std::net::SocketAddr::from(([127, 0, 0, 1], 1 + i as u16));
                Arc::new(Server::new(m.name.clone(), addr.to_string(), addr, 1, Health::Up))
            })
            .collect();
        let pool = PoolMembers {
            balancer: Balancer::new(&alg, &members),
            servers,
        };
        pool.attach();
        let mut m = 0usize;
        if name == "no index" {
            // What the request path did before servers reported to an index: the counters alone.
            use std::sync::atomic::Ordering;
            c.bench_function("server/request start+end, counters only, 100", |b| {
                b.iter(|| {
                    m = if m + 1 == 100 { 0 } else { m + 1 };
                    let s = black_box(&pool.servers[m]);
                    s.in_flight.fetch_add(1, Ordering::Relaxed);
                    s.requests.fetch_add(1, Ordering::Relaxed);
                    s.in_flight.fetch_sub(1, Ordering::Relaxed);
                })
            });
        }
        c.bench_function(&format!("server/request start+end, {name}, 100"), |b| {
            b.iter(|| {
                m = if m + 1 == 100 { 0 } else { m + 1 };
                let s = black_box(&pool.servers[m]);
                s.request_started();
                s.request_ended();
            })
        });
    }
}

criterion_group!(benches, hashed, bounded, pickers, reports, server_reports);
criterion_main!(benches);
