//! Live deadlocks: threads blocked on locks whose holders are blocked in turn, in a cycle.
//!
//! The graph is built from outside the target, so that it works on a process that was already
//! stuck when the profiler attached (its threads never call a lock function again, and no probe
//! sees them): `/proc/PID/task/TID/syscall` says which futex each blocked thread waits on, and
//! the lock's owner field is read from the target's memory (glibc's mutex `__owner`, the rwlock's
//! `__cur_writer`, a PI futex word). The probes add when each wait began and where the holder
//! took its lock. The target is never stopped or written to.

use std::collections::{HashMap, HashSet};

use aya::Ebpf;
use profiler_common::threads::{
    EVIDENCE_OWNER_FIELD, FUTEX_TID_MASK, LockKind, LockOp, MUTEX_OWNER_OFFSET,
    RWLOCK_WRITER_OFFSET, ThreadStats, futex_op,
};

use super::{
    analyze::{self, Harvest, Resolve, Waiter},
    kernel,
};
use crate::{
    report::threads::{DeadlockedThread, LiveDeadlock},
    symbols::unwind::Unwinder,
    tracee::task,
};

/// How often the graph is rebuilt, ns.
const CHECK_EVERY_NS: u64 = 500_000_000;
/// `futex(2)` and `futex_waitv(2)` on x86-64.
const SYS_FUTEX: i64 = 202;
const SYS_FUTEX_WAITV: i64 = 449;
/// Frames unwound per blocked thread.
const MAX_FRAMES: usize = 48;

/// One thread of a cycle, as found (addresses unresolved).
#[derive(Debug, Clone)]
pub(crate) struct RawThread {
    pub tid: u32,
    pub lock: u64,
    pub kind: LockKind,
    pub owner: u32,
    pub evidence: u32,
    pub since_ns: u64,
    pub blocked_ips: Vec<u64>,
}

/// A cycle found.
#[derive(Debug, Clone)]
pub(crate) struct RawLive {
    pub detected_ns: u64,
    /// Whether every thread of the cycle was already waiting when profiling began.
    pub at_attach: bool,
    pub threads: Vec<RawThread>,
}

/// The watch over the target's blocked threads.
pub(crate) struct Watch {
    after_ns: u64,
    last_ns: u64,
    /// (thread, futex) -> when it was first seen waiting there, ns.
    since: HashMap<(u32, u64), u64>,
    /// Threads waiting when profiling began.
    at_attach: HashSet<(u32, u64)>,
    reported: HashSet<Vec<u32>>,
    found: Vec<RawLive>,
    unwinder: Unwinder,
}

impl Watch {
    pub(crate) fn new(after_ns: u64) -> Self {
        Self {
            after_ns,
            last_ns: 0,
            since: HashMap::new(),
            at_attach: HashSet::new(),
            reported: HashSet::new(),
            found: Vec::new(),
            unwinder: Unwinder::default(),
        }
    }

    pub(crate) fn due(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_ns) >= CHECK_EVERY_NS
    }

    pub(crate) fn found(&self) -> &[RawLive] {
        &self.found
    }

    /// Rebuilds the wait-for graph of process `pid` and returns the cycles found for the first
    /// time (`first`: profiling is just beginning).
    pub(crate) fn check(
        &mut self,
        ebpf: &Ebpf,
        pid: i32,
        now_ns: u64,
        first: bool,
    ) -> Vec<RawLive> {
        self.last_ns = now_ns;
        let tids: Vec<i32> = task::thread_ids(pid);
        let alive: HashSet<u32> = tids.iter().map(|&t| t as u32).collect();
        let mut waiters = Vec::new();
        let mut regs = HashMap::new();
        let mut waiting_now = HashSet::new();
        for &tid in &tids {
            let Ok(Some(call)) = task::blocked_syscall(pid, tid) else {
                continue;
            };
            let tid = tid as u32;
            let op = call.args[1] as u32 & futex_op::CMD_MASK;
            let addr = match call.nr {
                SYS_FUTEX if futex_op::waits(op) => call.args[0],
                SYS_FUTEX_WAITV => task::read_u64(pid, call.args[0] + 8).unwrap_or(0),
                _ => continue,
            };
            if addr == 0 {
                continue;
            }
            // The kernel's view of the thread (its slot), read only for a thread in a futex wait.
            let st: Option<ThreadStats> = kernel::read_thread(ebpf, tid);
            let key = (tid, addr);
            waiting_now.insert(key);
            let mut since = *self.since.entry(key).or_insert(now_ns);
            if first {
                self.at_attach.insert(key);
            }
            if let Some(st) = &st
                && st.futex_addr == addr
                && st.futex_since != 0
            {
                since = since.min(st.futex_since);
            }
            let (kind, owner) = owner_of(pid, addr, op, tid, &alive);
            // Inside a probed lock call, its return probe hid the caller's return address.
            let hidden = st
                .as_ref()
                .filter(|st| st.lock_addr != 0 && st.lock_ret != 0)
                .filter(|st| LockOp::from_u8(st.lock_op as u8).is_some_and(LockOp::returns))
                .map(|st| st.lock_ret);
            regs.insert(tid, (call.pc, call.sp, hidden));
            waiters.push(Waiter {
                tid,
                lock: addr,
                kind,
                owner,
                evidence: EVIDENCE_OWNER_FIELD,
                since_ns: since,
            });
        }
        self.since.retain(|k, _| waiting_now.contains(k));
        let mut new = Vec::new();
        for cycle in analyze::wait_for_cycles(&waiters, now_ns, self.after_ns) {
            let mut tids: Vec<u32> = cycle.iter().map(|&i| waiters[i].tid).collect();
            tids.sort_unstable();
            if !self.reported.insert(tids) {
                continue;
            }
            let threads: Vec<RawThread> = cycle
                .iter()
                .map(|&i| {
                    let w = &waiters[i];
                    let blocked_ips = regs
                        .get(&w.tid)
                        .map(|&(pc, sp, hidden)| {
                            let hidden: Vec<u64> = hidden.into_iter().collect();
                            self.unwinder
                                .unwind_hidden(pid, pc, sp, MAX_FRAMES, &hidden)
                        })
                        .unwrap_or_default();
                    RawThread {
                        tid: w.tid,
                        lock: w.lock,
                        kind: w.kind,
                        owner: w.owner.unwrap_or(0),
                        evidence: w.evidence,
                        since_ns: w.since_ns,
                        blocked_ips,
                    }
                })
                .collect();
            let at_attach = threads
                .iter()
                .all(|t| self.at_attach.contains(&(t.tid, t.lock)));
            let found = RawLive {
                detected_ns: now_ns,
                at_attach,
                threads,
            };
            self.found.push(found.clone());
            new.push(found);
        }
        new
    }
}

/// The kind of the lock whose futex word is at `addr`, and its owner when the lock keeps one:
/// a PI futex's word; glibc's mutex `__owner` (the word is the mutex's first field); a rwlock's
/// `__cur_writer` (writers wait on `__writers_futex` at +12, readers on `__wrphase_futex` at +8).
/// An owner counts only if it is another live thread of the target.
fn owner_of(
    pid: i32,
    addr: u64,
    op: u32,
    waiter: u32,
    alive: &HashSet<u32>,
) -> (LockKind, Option<u32>) {
    let valid = |v: u32| (v != 0 && v != waiter && alive.contains(&v)).then_some(v);
    if futex_op::is_pi(op) {
        let word = task::read_u32(pid, addr).unwrap_or(0) & FUTEX_TID_MASK;
        return (LockKind::Futex, valid(word));
    }
    if let Some(owner) = task::read_u32(pid, addr + MUTEX_OWNER_OFFSET)
        .ok()
        .and_then(valid)
    {
        return (LockKind::PthreadMutex, Some(owner));
    }
    for word_offset in [12, 8] {
        let writer = addr - word_offset + RWLOCK_WRITER_OFFSET;
        if let Some(owner) = task::read_u32(pid, writer).ok().and_then(valid) {
            return (LockKind::Rwlock, Some(owner));
        }
    }
    (LockKind::Futex, None)
}

impl RawLive {
    /// The report's entry: stacks symbolized, and where each holder took its lock (from the
    /// probes, when they saw it).
    pub(crate) fn resolve(
        &self,
        r: &mut dyn Resolve,
        harvest: &Harvest,
        start_ns: u64,
        names: &HashMap<u32, String>,
    ) -> LiveDeadlock {
        let held_stack = |tid: u32, lock: u64| -> Vec<u64> {
            harvest
                .threads
                .iter()
                .find(|t| t.tid as u32 == tid)
                .and_then(|t| {
                    let n = (t.held_n as usize).min(t.held.len());
                    t.held[..n].iter().find(|h| h.addr == lock).map(|h| h.stack)
                })
                .and_then(|hash| harvest.stacks.get(&hash).cloned())
                .unwrap_or_default()
        };
        let threads = self
            .threads
            .iter()
            .map(|t| {
                // The lock this thread holds that another thread of the cycle waits for.
                let held = self
                    .threads
                    .iter()
                    .find(|o| o.owner == t.tid)
                    .map(|o| held_stack(t.tid, o.lock))
                    .unwrap_or_default();
                DeadlockedThread {
                    tid: t.tid,
                    name: names.get(&t.tid).cloned().unwrap_or_default(),
                    waits_for: format!("{:#x}", t.lock),
                    waits_for_symbol: r.lock_symbol(t.lock),
                    lock_kind: t.kind.name().into(),
                    held_by: t.owner,
                    evidence: if t.evidence == EVIDENCE_OWNER_FIELD {
                        "owner_field"
                    } else {
                        "waker"
                    }
                    .into(),
                    waiting_for: self.detected_ns.saturating_sub(t.since_ns) as f64 * 1e-9,
                    blocked_stack: r.frames(&t.blocked_ips),
                    acquired_stack: r.frames(&held),
                }
            })
            .collect();
        LiveDeadlock {
            detected_at: self.detected_ns.saturating_sub(start_ns) as f64 * 1e-9,
            found_by: if self.at_attach { "attach" } else { "probes" }.into(),
            threads,
        }
    }
}

/// The stderr line for a cycle found.
pub(crate) fn describe(found: &RawLive, names: &HashMap<u32, String>) -> String {
    let parts: Vec<String> = found
        .threads
        .iter()
        .map(|t| {
            format!(
                "thread {} ({}) waits for {} {:#x} held by thread {}",
                t.tid,
                names.get(&t.tid).map_or("?", String::as_str),
                t.kind.name(),
                t.lock,
                t.owner
            )
        })
        .collect();
    format!(
        "live deadlock: {} (see deadlocks.live in the report; profiling goes on)",
        parts.join("; ")
    )
}
