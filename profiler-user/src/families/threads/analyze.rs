//! TEMPORARY STUB (replaced by the analyzer).
use crate::report::{Frame, ThreadsSection, threads::LiveDeadlock};
use profiler_common::threads::*;
use std::collections::HashMap;
pub(crate) struct Harvest {
    pub threads: Vec<ThreadStats>,
    pub stacks: HashMap<u64, Vec<u64>>,
    pub blocks: Vec<(BlockKey, Tally)>,
    pub locks: Vec<(u64, LockStats)>,
    pub waits: Vec<(LockWaitKey, Tally)>,
    pub holders: Vec<(HolderKey, Tally)>,
    pub edges: Vec<(EdgeKey, Edge)>,
    pub end_ktime_ns: u64,
}
pub(crate) trait Resolve {
    fn frames(&mut self, ips: &[u64]) -> Vec<Frame>;
    fn thread_name(&self, tid: u32) -> Option<String>;
    fn lock_symbol(&mut self, addr: u64) -> Option<String>;
    fn exited(&self, tid: u32) -> bool;
}
pub(crate) struct Options {
    pub min_block_ns: u64,
    pub deadlock_after_ns: u64,
    pub top_stacks: usize,
}
pub(crate) struct Waiter {
    pub tid: u32,
    pub lock: u64,
    pub kind: LockKind,
    pub owner: Option<u32>,
    pub evidence: u32,
    pub since_ns: u64,
}
pub(crate) fn wait_for_cycles(_w: &[Waiter], _now: u64, _after: u64) -> Vec<Vec<usize>> {
    Vec::new()
}
pub(crate) fn section(
    h: &Harvest,
    _r: &mut dyn Resolve,
    _o: &Options,
    live: Vec<LiveDeadlock>,
) -> ThreadsSection {
    eprintln!(
        "STUB harvest: {} threads {} stacks {} blocks {} locks {} waits {} holders {} edges",
        h.threads.len(),
        h.stacks.len(),
        h.blocks.len(),
        h.locks.len(),
        h.waits.len(),
        h.holders.len(),
        h.edges.len()
    );
    for t in &h.threads {
        eprintln!(
            "  tid {} on {} blocked {:?} runnable {} vol {} invol {}",
            t.tid, t.on_cpu_ns, t.blocked_ns, t.runnable_ns, t.voluntary, t.involuntary
        );
    }
    for (a, l) in &h.locks {
        eprintln!(
            "  lock {a:#x} kind {} acq {} cont {} wait {} hold {} eagain {}",
            l.kind, l.acquisitions, l.contended, l.wait_ns, l.hold_ns, l.eagain
        );
    }
    for (k, t) in &h.holders {
        eprintln!(
            "  holder {:#x} {} ev {} stack {:#x} n {}",
            k.addr, k.holder, k.evidence, k.stack, t.count
        );
    }
    for (k, e) in &h.edges {
        eprintln!(
            "  edge {:#x}->{:#x} tid {} n {}",
            k.from, k.to, e.tid, e.count
        );
    }
    ThreadsSection {
        deadlocks: crate::report::threads::Deadlocks {
            live,
            potential: vec![],
        },
        ..Default::default()
    }
}
