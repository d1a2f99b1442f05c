//! The live view of the threads family: the maps read as at the end, analyzed as the report
//! is, the family's own state left alone, so that the report at the end is the one a run
//! without the live view would give.

use profiler_common::threads::{Edge, EdgeKey, LockOp};

use super::*;
use crate::family_testing::TestReporting;

const START: u64 = 1_000_000_000_000;
const S: u64 = 1_000_000_000;
const LOCK_A: u64 = 0x7000;
const LOCK_B: u64 = 0x7040;

/// The maps after `rounds` rounds of lock_a then lock_b (thread 10) and lock_b then lock_a
/// (thread 11), read at `at_ns`.
fn maps(rounds: u64, at_ns: u64) -> Harvest {
    let edge = |tid| Edge {
        count: rounds,
        tid,
        from_op: LockOp::MutexLock as u16,
        to_op: LockOp::MutexLock as u16,
        from_stack: 0,
        to_stack: 0,
    };
    Harvest {
        edges: vec![
            (
                EdgeKey {
                    from: LOCK_A,
                    to: LOCK_B,
                },
                edge(10),
            ),
            (
                EdgeKey {
                    from: LOCK_B,
                    to: LOCK_A,
                },
                edge(11),
            ),
        ],
        end_ktime_ns: at_ns,
        ..Harvest::default()
    }
}

/// The probes' hits after `rounds` rounds: four lock calls each.
fn hits(rounds: u64) -> Hits {
    let mut hits = [0; hit::SLOTS as usize];
    hits[(hit::LOCK_OP + LockOp::MutexLock as u32) as usize] = 4 * rounds;
    hits
}

/// The family as attached (on no process), with the names it knows.
fn family() -> Threads {
    let mut t = Threads::new(Options::default(), None);
    t.attached = true;
    t.names.insert(10, "order-ab".into());
    t.names.insert(11, "order-ba".into());
    t
}

fn json(section: &ThreadsSection) -> serde_json::Value {
    serde_json::to_value(section).expect("a section serializes")
}

/// The lock-order cycle of a section: its locks and each edge's (thread, count).
fn cycle(section: &ThreadsSection) -> (Vec<String>, Vec<(String, u64)>) {
    let [p] = &section.deadlocks.potential[..] else {
        panic!("want one potential deadlock: {:?}", section.deadlocks);
    };
    let mut locks = p.locks.clone();
    locks.sort();
    let edges = p
        .edges
        .iter()
        .map(|e| (e.thread.clone(), e.count))
        .collect();
    (locks, edges)
}

/// A live snapshot names the lock-order cycle seen so far with its threads and counts; made
/// twice it is the same, and the family's names and harvest are as they were.
#[test]
fn a_live_snapshot_has_the_cycle_so_far_and_takes_nothing() {
    let mut r = TestReporting::new();
    let t = family();
    let names = t.names.clone();
    let now = START + 2 * S;
    let mut data = Default::default();
    let read = || Some((maps(3, now), hits(3)));
    let live = t
        .live_section(read(), t.names.clone(), &mut data, &mut r.ctx(START, now))
        .expect("a snapshot");
    let (locks, mut edges) = cycle(&live);
    edges.sort();
    assert_eq!(locks, ["0x7000", "0x7040"]);
    assert_eq!(
        edges,
        [("order-ab".to_string(), 3), ("order-ba".to_string(), 3)]
    );
    let again = t
        .live_section(read(), t.names.clone(), &mut data, &mut r.ctx(START, now))
        .expect("a snapshot");
    assert_eq!(json(&again), json(&live));
    assert_eq!(t.names, names);
    assert!(t.harvest.is_none());
    assert_eq!(t.hits, [0; hit::SLOTS as usize]);
}

/// With snapshots made along the way, the report at the end is exactly that of a run without
/// them; once the probes are gone (shed), the live view shows what was read then.
#[test]
fn the_report_after_live_snapshots_is_the_whole_run() {
    let mut r = TestReporting::new();
    let mut watched = family();
    let mut unwatched = family();
    let mut data = Default::default();
    for rounds in [1, 2] {
        let now = START + rounds * S;
        let read = Some((maps(rounds, now), hits(rounds)));
        let live = watched
            .live_section(
                read,
                watched.names.clone(),
                &mut data,
                &mut r.ctx(START, now),
            )
            .expect("a snapshot");
        assert_eq!(cycle(&live).1[0].1, rounds);
    }
    let end = START + 5 * S;
    let mut sections = Vec::new();
    for t in [&mut watched, &mut unwatched] {
        // What `harvest` (or shedding the probes) reads.
        t.harvest = Some(maps(5, end));
        t.hits = hits(5);
        let shed = t
            .live_section(None, t.names.clone(), &mut data, &mut r.ctx(START, end))
            .expect("what was read");
        assert_eq!(cycle(&shed).1[0].1, 5);
        let section = t.final_section(&mut r.ctx(START, end)).expect("a section");
        sections.push(json(&section));
    }
    assert_eq!(sections[0], sections[1]);
    assert_eq!(
        sections[0]["deadlocks"]["potential"][0]["edges"][0]["count"],
        5
    );
}
