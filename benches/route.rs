//! Micro-benchmarks of what every request pays to be routed: the path normalisation
//! (`route::normalize`) and the route table match on its result.
//!
//! Owns: criterion benches only. Must not touch: the route code (it is measured through the
//! public API, as the proxy calls it).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use ringway::route::{HostMatch, RouteKey, RouteTable, normalize};

fn normalisation(c: &mut Criterion) {
    let mut g = c.benchmark_group("normalize");
    // The common request: already normal, borrowed, no allocation.
    for (name, path) in [
        ("normal_api_path", "/api/v1/users/123"),
        ("normal_asset_path", "/assets/css/site.4f2a9c.min.css"),
        ("normal_with_escape", "/search/caf%C3%A9%20cr%C3%A8me"),
        ("rewritten_dots", "/pub/../admin/./x//y"),
        ("rewritten_escapes", "/%61dmin/%7euser/caf%c3%a9"),
    ] {
        g.bench_function(name, |b| b.iter(|| normalize(black_box(path)).map(|p| p.len())));
    }
    g.finish();
}

fn matching(c: &mut Criterion) {
    let key = |host: HostMatch, path: &str| RouteKey {
        host,
        path: path.to_owned(),
    };
    let table = RouteTable::new(&[
        key(HostMatch::Any, "/"),
        key(HostMatch::Any, "/api/"),
        key(HostMatch::Any, "/admin/"),
        key(HostMatch::Any, "/assets/"),
        key(HostMatch::Exact("api.example.com".into()), "/v2/"),
    ]);
    // What `decide` does for a request `GET /api/v1/users/123?x=1`: normalise, then match.
    c.bench_function("route/normalize_and_find", |b| {
        b.iter(|| {
            let path = normalize(black_box("/api/v1/users/123")).ok()?;
            table.find(black_box("www.example.com"), &path)
        })
    });
    c.bench_function("route/find_only", |b| {
        b.iter(|| table.find(black_box("www.example.com"), black_box("/api/v1/users/123")))
    });
}

criterion_group!(benches, normalisation, matching);
criterion_main!(benches);
