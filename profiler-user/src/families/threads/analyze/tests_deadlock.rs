//! Lock-order cycles (potential deadlocks) and wait-for cycles (live ones).

use profiler_common::threads::{EVIDENCE_OWNER_FIELD, Edge, EdgeKey, LockKind, LockOp};

use super::{
    Options, Waiter,
    deadlock::{MAX_CYCLE_LEN, MAX_CYCLES, lock_order_cycles},
    section,
    tests::{Fake, functions, harvest, names},
    wait_for_cycles,
};

const A: u64 = 0x100;
const B: u64 = 0x200;
const C: u64 = 0x300;

fn edge(from: u64, to: u64, ops: (LockOp, LockOp), tid: u32) -> (EdgeKey, Edge) {
    let key = EdgeKey { from, to };
    let edge = Edge {
        count: 1,
        tid,
        from_op: ops.0 as u16,
        to_op: ops.1 as u16,
        from_stack: 0,
        to_stack: 0,
    };
    (key, edge)
}

const MUTEX: (LockOp, LockOp) = (LockOp::MutexLock, LockOp::MutexLock);

#[test]
fn an_inversion_of_two_locks_is_a_potential_deadlock_with_its_stacks() {
    let mut h = harvest();
    let (mut ab, mut ba) = (edge(A, B, MUTEX, 1), edge(B, A, MUTEX, 2));
    (ab.1.count, ab.1.from_stack, ab.1.to_stack) = (3, 1, 2);
    (ba.1.from_stack, ba.1.to_stack) = (2, 1);
    h.edges = vec![ba, ab];
    h.stacks.insert(1, vec![0x10, 0x30]);
    h.stacks.insert(2, vec![0x20, 0x30]);
    let mut r = Fake::default();
    r.functions.insert(0x10, "lock_a");
    r.functions.insert(0x20, "lock_b");
    r.functions.insert(0x30, "transfer");
    r.alive.insert(1, "t1");
    let s = section(&h, &mut r, &Options::default(), Vec::new());

    let [d] = s.deadlocks.potential.as_slice() else {
        panic!("one cycle: {:?}", s.deadlocks.potential);
    };
    assert_eq!(d.locks, ["0x100", "0x200"]);
    let e = &d.edges[0];
    assert_eq!((e.from.as_str(), e.to.as_str()), ("0x100", "0x200"));
    assert_eq!(
        (&*e.from_kind, &*e.to_kind),
        ("pthread_mutex", "pthread_mutex")
    );
    assert_eq!((e.tid, e.thread.as_str(), e.count), (1, "t1", 3));
    assert_eq!(names(&e.from_stack), functions(&["lock_a", "transfer"]));
    assert_eq!(names(&e.to_stack), functions(&["lock_b", "transfer"]));
    let back = &d.edges[1];
    assert_eq!(
        (back.from.as_str(), back.tid, back.thread.as_str()),
        ("0x200", 2, "?")
    );
    assert_eq!(names(&back.from_stack), functions(&["lock_b", "transfer"]));
    assert!(s.deadlocks.live.is_empty());
}

#[test]
fn edges_that_cannot_deadlock_close_no_cycle() {
    let read = (LockOp::RdLock, LockOp::TimedRdLock);
    let try_to = (LockOp::MutexLock, LockOp::MutexTrylock);
    let none: &[&[(EdgeKey, Edge)]] = &[
        &[edge(A, B, read, 1), edge(B, A, read, 2)],
        &[edge(A, B, MUTEX, 1), edge(B, A, try_to, 2)],
        &[edge(A, A, MUTEX, 1)],
        &[edge(A, B, MUTEX, 1), edge(B, C, MUTEX, 1)],
    ];
    for edges in none {
        assert!(lock_order_cycles(edges).is_empty(), "{edges:?}");
    }
    // A writer on either side excludes the reader: that can deadlock.
    let write_read = (LockOp::WrLock, LockOp::RdLock);
    let read_write = (LockOp::RdLock, LockOp::WrLock);
    let edges = [edge(A, B, write_read, 1), edge(B, A, read_write, 2)];
    assert_eq!(lock_order_cycles(&edges), [[0, 1]]);
    // Both edges first seen on one thread: still reported.
    let edges = [edge(A, B, MUTEX, 1), edge(B, A, MUTEX, 1)];
    assert_eq!(lock_order_cycles(&edges).len(), 1);
}

#[test]
fn a_three_lock_cycle_and_its_chord_each_once() {
    // A -> B -> C -> A, and the chord A -> C closes A -> C -> A as well.
    let edges = [
        edge(C, A, MUTEX, 3),
        edge(B, C, MUTEX, 2),
        edge(A, C, MUTEX, 4),
        edge(A, B, MUTEX, 1),
    ];
    assert_eq!(lock_order_cycles(&edges), [vec![3, 1, 0], vec![2, 0]]);
}

#[test]
fn the_search_is_bounded() {
    // Every lock after every other among 12: far more cycles than are reported.
    let locks: Vec<u64> = (1..=12).map(|i| i * 0x10).collect();
    let mut edges = Vec::new();
    for &from in &locks {
        for &to in &locks {
            edges.push(edge(from, to, MUTEX, 1));
        }
    }
    let cycles = lock_order_cycles(&edges);
    assert_eq!(cycles.len(), MAX_CYCLES);
    assert!(
        cycles
            .iter()
            .all(|c| (2..=MAX_CYCLE_LEN).contains(&c.len()))
    );
}

fn waiter(tid: u32, owner: Option<u32>, since_ns: u64) -> Waiter {
    Waiter {
        tid,
        lock: 0x1000 + u64::from(tid),
        kind: LockKind::PthreadMutex,
        owner,
        evidence: EVIDENCE_OWNER_FIELD,
        since_ns,
    }
}

#[test]
fn a_wait_cycle_is_live_once_all_its_threads_waited_long_enough() {
    // 6 waits for 5, 5 for 6; 7 -> 8 -> 9 -> 7, 9 the latest to wait.
    let waiters = [
        waiter(6, Some(5), 0),
        waiter(5, Some(6), 10),
        waiter(8, Some(9), 0),
        waiter(9, Some(7), 500),
        waiter(7, Some(8), 0),
    ];
    assert!(wait_for_cycles(&waiters, 99, 100).is_empty());
    assert_eq!(wait_for_cycles(&waiters, 110, 100), [vec![1, 0]]);
    assert_eq!(
        wait_for_cycles(&waiters, 600, 100),
        [vec![1, 0], vec![4, 2, 3]]
    );
}

#[test]
fn chains_and_unknown_owners_are_no_cycle() {
    let waiters = [
        // 1 -> 2 -> 3, and 3 is not waiting.
        waiter(1, Some(2), 0),
        waiter(2, Some(3), 0),
        // 4 -> 10, whose owner is unknown; 10 -> ? would have closed it.
        waiter(4, Some(10), 0),
        waiter(10, None, 0),
    ];
    assert!(wait_for_cycles(&waiters, 1_000, 100).is_empty());
}

#[test]
fn each_cycle_once_with_its_tails_left_out() {
    let waiters = [
        // Tails 20 -> 21 and 30 -> 20 lead into 21 <-> 22.
        waiter(20, Some(21), 0),
        waiter(22, Some(21), 0),
        waiter(21, Some(22), 0),
        waiter(30, Some(20), 0),
        // A second entry for 21 does not make a second cycle.
        waiter(21, Some(30), 0),
        // A mutex taken twice by its owner.
        waiter(40, Some(40), 0),
    ];
    assert_eq!(wait_for_cycles(&waiters, 100, 100), [vec![2, 1], vec![5]]);
}
