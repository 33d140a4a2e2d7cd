use super::*;
use crate::balance::testutil::servers;

fn members(names: &[&str]) -> Vec<Member> {
    names
        .iter()
        .map(|n| Member {
            name: n.to_string(),
            weight: 1,
        })
        .collect()
}

const SPACE_28: u128 = 1 << 28;

/// The classic demonstration's tables (each line after a newline), as computed from the sha1-28
/// definition of DESIGN.md 6.
const CLASSIC_FULL: &str = "
          0 --> server-b-1 (23746828 hashes)
   23746828 --> server-a-4 (6848918 hashes)
   30595746 --> server-a-3 (27078695 hashes)
   57674441 --> server-a-1 (3228787 hashes)
   60903228 --> server-b-2 (17957108 hashes)
   78860336 --> server-b-0 (7773725 hashes)
   86634061 --> server-b-4 (61822759 hashes)
  148456820 --> server-a-0 (67793598 hashes)
  216250418 --> server-a-2 (17304439 hashes)
  233554857 --> server-b-3 (29289666 hashes)
  262844523 --> server-b-1 (5590933 hashes)
";

const CLASSIC_SIMPLIFIED: &str = "
          0 --> server-b (23746828 hashes)
   23746828 --> server-a (37156400 hashes)
   60903228 --> server-b (87553592 hashes)
  148456820 --> server-a (85098037 hashes)
  233554857 --> server-b (34880599 hashes)
";

#[test]
fn classic_demonstration_tables() {
    let table = routing_table(&members(&["server-a", "server-b"]), 5, HashFunction::Sha1_28);
    // Ten points, and the wrap-around row at 0 before them.
    assert_eq!(table.partitions.len(), 11);
    let wrap = &table.partitions[0];
    assert_eq!(
        (wrap.start, wrap.point.as_str(), wrap.server.as_str(), wrap.hashes),
        (0, "server-b-1", "server-b", 23_746_828)
    );
    let first = &table.partitions[1];
    assert_eq!(
        (first.start, first.point.as_str(), first.hashes),
        (23_746_828, "server-a-4", 6_848_918)
    );
    // The last point serves only its own hashes, up to and including the largest.
    let last = table.partitions.last().expect("points");
    assert_eq!(last.point, "server-b-1");
    assert_eq!(last.hashes, SPACE_28 - 262_844_523);
    assert_eq!(table.partitions.iter().map(|p| p.hashes).sum::<u128>(), SPACE_28);
    assert_eq!(table.simplified.len(), 5);
    assert_eq!(
        table.simplified[0],
        Segment {
            start: 0,
            server: "server-b".into(),
            hashes: 23_746_828
        }
    );
    assert_eq!(table.simplified.iter().map(|s| s.hashes).sum::<u128>(), SPACE_28);
    // The totals are those of the ring: the wrap-around hashes count for server-b once.
    let totals: Vec<(&str, u128)> = table
        .servers
        .iter()
        .map(|s| (s.server.as_str(), s.hashes))
        .collect();
    assert_eq!(totals, [("server-a", 122_254_437), ("server-b", 146_181_019)]);

    let plan = plan(
        &members(&["server-a", "server-b"]),
        &[],
        &[],
        5,
        HashFunction::Sha1_28,
    )
    .expect("plan");
    let text = render_text(&plan);
    assert!(
        text.starts_with("2 servers, 5 points per unit of weight, 10 points, hash sha1-28"),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nRouting table:{CLASSIC_FULL}\n")),
        "{text}"
    );
    assert!(
        text.contains(&format!("\nSimplified routing table:{CLASSIC_SIMPLIFIED}\n")),
        "{text}"
    );
}

#[test]
fn a_point_at_zero_has_no_wrap_around_row() {
    // Whatever the names, the table covers the space from 0 and its rows follow each other.
    for n in 1..6 {
        let table = routing_table(&servers(n), 3, HashFunction::Sha1_28);
        assert_eq!(table.partitions[0].start, 0);
        for pair in table.partitions.windows(2) {
            assert_eq!(
                u128::from(pair[0].start) + pair[0].hashes,
                u128::from(pair[1].start),
                "{pair:?}"
            );
        }
    }
    // A ring whose smallest point is 0 has nothing to wrap: one row per point.
    let point = |hash, member, vnode| RingPoint { hash, member, vnode };
    let two = members(&["a", "b"]);
    let (rows, totals) = partitions(&two, &[point(0, 1, 0), point(6, 0, 0)], 10);
    let rows: Vec<(u64, &str, u128)> = rows
        .iter()
        .map(|p| (p.start, p.point.as_str(), p.hashes))
        .collect();
    assert_eq!(rows, [(0, "b-0", 6), (6, "a-0", 4)]);
    assert_eq!(totals, [4, 6]);
    // Equal points: the first of the last group (by name) owns the wrapped hashes too.
    let (rows, totals) = partitions(&two, &[point(3, 0, 0), point(7, 0, 1), point(7, 1, 0)], 10);
    let rows: Vec<(u64, &str, u128)> = rows
        .iter()
        .map(|p| (p.start, p.point.as_str(), p.hashes))
        .collect();
    assert_eq!(rows, [(0, "a-1", 3), (3, "a-0", 4), (7, "a-1", 3), (7, "b-0", 0)]);
    assert_eq!(totals, [10, 0]);
}

#[test]
fn classic_demonstration_add_server_c() {
    let plan = plan(
        &members(&["server-a", "server-b"]),
        &members(&["server-c"]),
        &[],
        5,
        HashFunction::Sha1_28,
    )
    .expect("plan");
    let after = plan.after.as_ref().expect("after");
    let m = plan.migration.as_ref().expect("migration");
    assert_eq!(m.added, vec!["server-c".to_string()]);
    assert!(m.removed.is_empty());
    assert_eq!(m.moved_between_staying, 0);
    assert!(m.flows.iter().all(|f| f.to == "server-c"));
    let c = after
        .servers
        .iter()
        .find(|s| s.server == "server-c")
        .expect("server-c");
    // Everything server-c serves came from a or b, and nothing else moved.
    assert_eq!(m.moved_hashes, c.hashes);
    let text = render_text(&plan);
    assert!(
        text.contains("Nothing moves between two servers that stay."),
        "{text}"
    );
    assert!(text.contains("=== After adding server-c ==="), "{text}");
}

#[test]
fn removing_moves_only_the_removed_servers_hashes() {
    let names = servers(6);
    let plan = plan(&names, &[], &["server-2".to_string()], 50, HashFunction::Xxh3).expect("plan");
    let m = plan.migration.expect("migration");
    assert!(m.flows.iter().all(|f| f.from == "server-2"));
    let gone = plan
        .before
        .servers
        .iter()
        .find(|s| s.server == "server-2")
        .expect("server-2");
    assert_eq!(m.moved_hashes, gone.hashes);
    assert_eq!(m.moved_between_staying, 0);
}

#[test]
fn xxh3_counts_cover_two_to_the_sixty_four() {
    let table = routing_table(&servers(5), 20, HashFunction::Xxh3);
    let space = 1u128 << 64;
    assert_eq!(table.partitions.iter().map(|p| p.hashes).sum::<u128>(), space);
    assert_eq!(table.simplified.iter().map(|s| s.hashes).sum::<u128>(), space);
    assert_eq!(table.servers.iter().map(|s| s.hashes).sum::<u128>(), space);
    let shares: f64 = table.servers.iter().map(|s| s.share).sum();
    assert!((shares - 1.0).abs() < 1e-9);
    let single = routing_table(&servers(1), 3, HashFunction::Xxh3);
    assert_eq!(single.simplified.len(), 1);
    assert_eq!(single.simplified[0].hashes, space);
}

#[test]
fn simplified_runs_alternate_around_the_ring() {
    for n in 2..8 {
        for f in [HashFunction::Sha1_28, HashFunction::Xxh3] {
            let table = routing_table(&servers(n), 7, f);
            let runs = &table.simplified;
            for pair in runs.windows(2) {
                assert_ne!(pair[0].server, pair[1].server);
            }
            // The row at 0 holds the wrapped hashes of the last point's server.
            assert_eq!(runs[0].start, 0);
            assert_eq!(runs[0].server, runs[runs.len() - 1].server);
            let total: u128 = runs.iter().map(|s| s.hashes).sum();
            assert_eq!(total, u128::from(f.max_hash()) + 1);
        }
    }
}

#[test]
fn shares_match_the_balancer() {
    // The planner's counts and the ring's lookups agree on who owns every partition start.
    let members = servers(4);
    let table = routing_table(&members, 30, HashFunction::Xxh3);
    let ring = crate::balance::Ring::new(&members, 30, HashFunction::Xxh3, None);
    for p in table.partitions.iter().filter(|p| p.hashes > 0) {
        let owner = ring.owner(p.start).map(|i| members[i].name.clone());
        assert_eq!(owner.as_deref(), Some(p.server.as_str()));
    }
}

#[test]
fn bad_changes_are_errors() {
    let set = members(&["a", "b"]);
    let f = HashFunction::Xxh3;
    assert!(plan(&[], &[], &[], 5, f).is_err());
    assert!(plan(&members(&["a", "a"]), &[], &[], 5, f).is_err());
    assert!(plan(&set, &[], &["c".to_string()], 5, f).is_err());
    assert!(plan(&set, &members(&["b"]), &[], 5, f).is_err());
    assert!(plan(&set, &members(&["c", "c"]), &[], 5, f).is_err());
    assert!(plan(&set, &[], &["a".to_string(), "b".to_string()], 5, f).is_err());
    assert!(plan(&members(&[""]), &[], &[], 5, f).is_err());
    // Replacing a server by itself is allowed and moves nothing.
    let p = plan(&set, &members(&["a"]), &["a".to_string()], 5, f).expect("plan");
    assert_eq!(p.migration.map(|m| m.moved_hashes), Some(0));
}

#[test]
fn json_has_exact_counts() {
    let p = plan(&servers(3), &members(&["server-9"]), &[], 4, HashFunction::Xxh3).expect("plan");
    let json = render_json(&p).expect("json");
    let value: serde_json::Value = serde_json::from_str(&json).expect("valid JSON");
    assert_eq!(value["before"]["hash"], "xxh3");
    assert_eq!(value["before"]["vnodes"], 4);
    // 12 points, and the wrap-around row at 0.
    assert_eq!(value["before"]["partitions"].as_array().map(Vec::len), Some(13));
    assert_eq!(value["before"]["partitions"][0]["start"], 0);
    assert_eq!(value["migration"]["moved_between_staying"], 0);
    assert_eq!(value["migration"]["added"][0], "server-9");
    // Counts are written as integers even above 2^53.
    let total = p.before.partitions[1].hashes.to_string();
    assert!(json.contains(&format!("\"hashes\": {total}")), "{json}");
    let single = plan(&servers(2), &[], &[], 3, HashFunction::Sha1_28).expect("plan");
    let value: serde_json::Value =
        serde_json::from_str(&render_json(&single).expect("json")).expect("valid JSON");
    assert!(value.get("migration").is_none());
}
