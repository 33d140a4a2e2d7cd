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

#[test]
fn classic_demonstration_tables() {
    let table = routing_table(&members(&["server-a", "server-b"]), 5, HashFunction::Sha1_28);
    assert_eq!(table.partitions.len(), 10);
    let first = &table.partitions[0];
    assert_eq!(
        (first.start, first.point.as_str(), first.hashes),
        (23_746_828, "server-a-4", 6_848_918)
    );
    let a0 = table
        .partitions
        .iter()
        .find(|p| p.point == "server-a-0")
        .expect("server-a-0");
    assert_eq!(a0.start, 148_456_820);
    // The last point serves the top of the space and, wrapping, everything below the first.
    let last = table.partitions.last().expect("points");
    assert_eq!(last.point, "server-b-1");
    assert_eq!(last.hashes, SPACE_28 - 262_844_523 + 23_746_828);
    assert_eq!(table.partitions.iter().map(|p| p.hashes).sum::<u128>(), SPACE_28);
    assert_eq!(
        table.simplified[0],
        Segment {
            start: 23_746_828,
            server: "server-a".into(),
            hashes: 37_156_400
        }
    );
    assert_eq!(table.simplified.iter().map(|s| s.hashes).sum::<u128>(), SPACE_28);

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
        text.contains("\n   23746828 --> server-a-4 (6848918 hashes)\n"),
        "{text}"
    );
    assert!(text.contains("\n  148456820 --> server-a-0 ("), "{text}");
    assert!(
        text.contains("\n   23746828 --> server-a (37156400 hashes)\n"),
        "{text}"
    );
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
            if runs.len() > 1 {
                assert_ne!(runs[0].server, runs[runs.len() - 1].server);
            }
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
    assert_eq!(value["before"]["partitions"].as_array().map(Vec::len), Some(12));
    assert_eq!(value["migration"]["moved_between_staying"], 0);
    assert_eq!(value["migration"]["added"][0], "server-9");
    // Counts are written as integers even above 2^53.
    let total = p.before.partitions[0].hashes.to_string();
    assert!(json.contains(&format!("\"hashes\": {total}")), "{json}");
    let single = plan(&servers(2), &[], &[], 3, HashFunction::Sha1_28).expect("plan");
    let value: serde_json::Value =
        serde_json::from_str(&render_json(&single).expect("json")).expect("valid JSON");
    assert!(value.get("migration").is_none());
}
