//! Deadlocks, two ways.
//!
//! - Potential: a cycle in the lock-order graph (lock `to` taken while `from` was held, as the
//!   probes saw it). Threads that take the locks of a cycle in its orders at the same time can
//!   deadlock, even if this run did not. Edges that cannot close a deadlock are left out: a
//!   lock taken again while held (`from == to`: a recursive mutex, or the self-deadlock the live
//!   check sees), a trylock (it fails instead of waiting), and read after read (readers do not
//!   exclude each other; glibc's default rwlock prefers readers). A cycle whose edges were all
//!   first seen on one thread is reported too, as lockdep does: the map keeps only the first
//!   thread of each edge, so "one thread" may be "first seen on one thread", and an inversion
//!   within one thread deadlocks as soon as a second thread runs the same code.
//! - Live: a cycle in the wait-for graph right now (a blocked thread -> the owner of the lock
//!   it waits for), once every thread of it has waited `--deadlock-after`.

use std::collections::{BTreeMap, HashMap};

use profiler_common::threads::{Edge, EdgeKey, LockKind, LockOp};

use super::input::{Ctx, hex};
use crate::report::threads::{LockOrderEdge, PotentialDeadlock};

/// Most lock-order cycles reported: past a handful, more cycles say the same thing (a lock
/// order that is not kept) and enumerating them all can take exponential time.
pub(crate) const MAX_CYCLES: usize = 100;
/// Most locks in a reported lock-order cycle.
pub(crate) const MAX_CYCLE_LEN: usize = 8;
/// Most search steps (edges followed) for lock-order cycles, so a dense graph cannot stall the
/// report.
const MAX_STEPS: usize = 200_000;

/// Whether the lock-order edge can be part of a deadlock (see the module doc).
fn can_deadlock(k: &EdgeKey, e: &Edge) -> bool {
    let op = |v: u16| u8::try_from(v).ok().and_then(LockOp::from_u8);
    let (from, to) = (op(e.from_op), op(e.to_op));
    let read = |op: Option<LockOp>| op.is_some_and(LockOp::is_read);
    k.from != k.to && !to.is_some_and(LockOp::is_try) && !(read(from) && read(to))
}

/// Every elementary cycle of the lock-order graph, as indexes into `edges` in cycle order, each
/// once, starting at the edge out of its lowest lock address; cycles ordered by that address,
/// then by the next ones. At most [`MAX_CYCLES`], each of at most [`MAX_CYCLE_LEN`] locks.
pub(crate) fn lock_order_cycles(edges: &[(EdgeKey, Edge)]) -> Vec<Vec<usize>> {
    let mut out: BTreeMap<u64, Vec<(u64, usize)>> = BTreeMap::new();
    for (i, (k, e)) in edges.iter().enumerate() {
        if can_deadlock(k, e) {
            out.entry(k.from).or_default().push((k.to, i));
        }
    }
    for next in out.values_mut() {
        next.sort_unstable();
    }
    let mut search = Search {
        out: &out,
        path: Vec::new(),
        on_path: Vec::new(),
        cycles: Vec::new(),
        steps: 0,
    };
    for &start in out.keys() {
        search.from(start, start);
        if search.done() {
            break;
        }
    }
    search.cycles
}

/// A depth-first search for the cycles through `start` that visit only locks above it: each
/// cycle is then found once, from its lowest lock.
struct Search<'g> {
    out: &'g BTreeMap<u64, Vec<(u64, usize)>>,
    /// Edges of the current path, and the locks they start at.
    path: Vec<usize>,
    on_path: Vec<u64>,
    cycles: Vec<Vec<usize>>,
    steps: usize,
}

impl Search<'_> {
    fn done(&self) -> bool {
        self.cycles.len() >= MAX_CYCLES || self.steps >= MAX_STEPS
    }

    fn from(&mut self, start: u64, node: u64) {
        let Some(next) = self.out.get(&node) else {
            return;
        };
        self.on_path.push(node);
        for &(to, edge) in next {
            if self.done() {
                break;
            }
            self.steps += 1;
            if to == start {
                let mut cycle = self.path.clone();
                cycle.push(edge);
                self.cycles.push(cycle);
            } else if to > start
                && self.on_path.len() < MAX_CYCLE_LEN
                && !self.on_path.contains(&to)
            {
                self.path.push(edge);
                self.from(start, to);
                self.path.pop();
            }
        }
        self.on_path.pop();
    }
}

/// The potential deadlocks of the harvest's lock-order edges, each edge with its thread, count
/// and both stacks.
pub(crate) fn potential_deadlocks(cx: &mut Ctx<'_>) -> Vec<PotentialDeadlock> {
    let h = cx.h;
    let edges = &h.edges;
    lock_order_cycles(edges)
        .into_iter()
        .map(|cycle| PotentialDeadlock {
            locks: cycle.iter().map(|&i| hex(edges[i].0.from)).collect(),
            edges: cycle
                .iter()
                .map(|&i| order_edge(cx, &edges[i].0, &edges[i].1))
                .collect(),
        })
        .collect()
}

fn order_edge(cx: &mut Ctx<'_>, k: &EdgeKey, e: &Edge) -> LockOrderEdge {
    let kind = |v: u16| {
        u8::try_from(v)
            .ok()
            .and_then(LockOp::from_u8)
            .map_or("unknown", |op| op.kind().name())
    };
    LockOrderEdge {
        from: hex(k.from),
        to: hex(k.to),
        from_kind: kind(e.from_op).into(),
        to_kind: kind(e.to_op).into(),
        tid: e.tid,
        thread: cx.name(e.tid),
        count: e.count,
        from_stack: cx.frames(e.from_stack),
        to_stack: cx.frames(e.to_stack),
    }
}

/// One blocked thread as seen now: waiting on `lock` (futex address) since `since_ns`
/// (monotonic), and the owner read for it (None: unknown).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub tid: u32,
    pub lock: u64,
    pub kind: LockKind,
    pub owner: Option<u32>,
    /// `EVIDENCE_*`: how the owner was found.
    pub evidence: u32,
    pub since_ns: u64,
}

/// Every cycle in the wait-for graph (a thread -> the waiter that owns the lock it waits for)
/// whose threads have all waited at least `after_ns` at `now_ns`; each cycle once, as indexes
/// into `waiters` rotated to start at its smallest tid, cycles ordered by that tid.
///
/// A waiter with no known owner, or whose owner is not itself waiting, ends a chain: no cycle
/// goes through it. A thread that owns the lock it waits for (a non-recursive mutex taken
/// twice) is a cycle of one. When a tid is listed twice, its first entry counts.
pub(crate) fn wait_for_cycles(waiters: &[Waiter], now_ns: u64, after_ns: u64) -> Vec<Vec<usize>> {
    let ripe = |w: &Waiter| w.owner.is_some() && now_ns.saturating_sub(w.since_ns) >= after_ns;
    let mut by_tid: HashMap<u32, usize> = HashMap::new();
    for (i, w) in waiters.iter().enumerate() {
        if ripe(w) {
            by_tid.entry(w.tid).or_insert(i);
        }
    }
    // Each waiter waits for one lock: the graph has at most one edge out of each node, so a
    // walk from any node reaches at most one cycle.
    let next = |i: usize| waiters[i].owner.and_then(|o| by_tid.get(&o).copied());
    const NEW: u8 = 0;
    const WALKING: u8 = 1;
    const DONE: u8 = 2;
    let mut state = vec![NEW; waiters.len()];
    let mut cycles = Vec::new();
    let mut starts: Vec<usize> = by_tid.values().copied().collect();
    starts.sort_unstable();
    for start in starts {
        let mut walk = Vec::new();
        let mut at = Some(start);
        while let Some(i) = at {
            match state[i] {
                NEW => {
                    state[i] = WALKING;
                    walk.push(i);
                    at = next(i);
                }
                WALKING => {
                    let first = walk.iter().position(|&j| j == i).unwrap_or(0);
                    cycles.push(rotated(waiters, &walk[first..]));
                    break;
                }
                _ => break,
            }
        }
        for i in walk {
            state[i] = DONE;
        }
    }
    cycles.sort_by_key(|c| waiters[c[0]].tid);
    cycles
}

/// `cycle` rotated to start at its smallest tid.
fn rotated(waiters: &[Waiter], cycle: &[usize]) -> Vec<usize> {
    let first = (0..cycle.len())
        .min_by_key(|&k| waiters[cycle[k]].tid)
        .unwrap_or(0);
    cycle[first..]
        .iter()
        .chain(&cycle[..first])
        .copied()
        .collect()
}
