//! The `threads` section: where each thread's time went, the locks they waited for and who held
//! them, and deadlocks (potential, from the lock order; live, from the wait-for graph). Times are
//! seconds.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Frame;

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ThreadsSection {
    /// Blocks shorter than this (seconds) are counted, not stacked (`--min-block`).
    pub min_block: f64,
    /// A wait-for cycle is reported as live once all its threads have waited this long
    /// (seconds, `--deadlock-after`).
    pub deadlock_after: f64,
    /// Whether the pthread lock functions were probed (`lock_probes` says where or why not).
    pub lock_probes: LockProbes,
    /// Every thread seen, by on-CPU + off-CPU time, largest first.
    pub threads: Vec<ThreadEntry>,
    /// Every lock some thread waited for (and every probed lock taken), most wait time first.
    pub locks: Vec<LockEntry>,
    /// Futex waits that are not lock contention (condition variables, thread parking), by site.
    pub waits: Vec<WaitSite>,
    pub deadlocks: Deadlocks,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct LockProbes {
    pub attached: bool,
    /// The libc whose lock functions are probed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The functions probed, with where their probe sits and what it cost.
    pub functions: Vec<LockFunction>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LockFunction {
    pub name: String,
    /// Offset of the probe from the function's address, how the kernel runs the instruction
    /// there ("emulated" or "single_stepped"), the instruction and why the probe is there.
    pub probe_offset: u64,
    pub probe_class: Cow<'static, str>,
    pub probe_instruction: String,
    pub probe_reason: String,
    /// Entry probe hits (of every function of its kind: `pthread_mutex_timedlock` and
    /// `pthread_mutex_clocklock` share theirs), and what they and the return probe's hits cost
    /// the target by the cost model, seconds.
    pub hits: u64,
    pub estimated_cost: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ThreadEntry {
    pub tid: u32,
    pub name: String,
    /// Whether it exited while profiled.
    pub exited: bool,
    pub on_cpu_time: f64,
    /// Off-CPU time: `blocked_time` + `runnable_time`.
    pub off_cpu_time: f64,
    /// Switched out voluntarily until woken, by reason.
    pub blocked_time: f64,
    pub blocked: BlockedBreakdown,
    /// Woken or preempted until it ran again (run-queue latency).
    pub runnable_time: f64,
    /// Run-queue latency percentiles, seconds (from a log2 histogram: within a factor of 2).
    pub runq_latency_p50: f64,
    pub runq_latency_p99: f64,
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
    pub migrations: u64,
    /// Blocks counted, and of them those shorter than `min_block` (not stacked).
    pub blocks: u64,
    pub short_blocks: u64,
    /// The stacks it blocked at longest, most blocked time first.
    pub top_blocking_stacks: Vec<BlockingStack>,
}

/// Blocked time by reason, seconds.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct BlockedBreakdown {
    /// In `futex(2)`: locks, condition variables, parking.
    pub lock: f64,
    pub io: f64,
    pub sleep: f64,
    pub other: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BlockingStack {
    /// "lock", "io", "sleep" or "other".
    pub reason: Cow<'static, str>,
    pub count: u64,
    pub total_time: f64,
    pub max_time: f64,
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LockEntry {
    /// Hex address in the target.
    pub address: String,
    /// "pthread_mutex", "rwlock" or "futex".
    pub kind: Cow<'static, str>,
    /// The static it is (`symbol+offset`), when it is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub symbol: Option<String>,
    /// Where it was allocated, when it is on the heap and the memory family ran (and still
    /// tracked its block at the end): the allocation's stack.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub allocated_at: Vec<Frame>,
    /// Acquisitions through the probed functions (null for a futex-only lock: not seen).
    pub acquisitions: Option<u64>,
    /// Acquisitions that had to wait for another thread (for a futex: waits that blocked).
    pub contended: u64,
    /// Futex waits that never blocked (the word changed first: EAGAIN).
    pub eagain: u64,
    /// Time waited: the off-CPU time inside the lock call or futex wait.
    pub wait_time: f64,
    pub max_wait: f64,
    /// From a log2 histogram: within a factor of 2.
    pub p99_wait: f64,
    /// Time held (probed locks only, else null).
    pub hold_time: Option<f64>,
    pub max_hold: Option<f64>,
    /// Who held the lock when others waited: most wait time first.
    pub holders: Vec<Holder>,
    /// The stacks that waited longest, most wait time first.
    pub top_waiting_stacks: Vec<WaitingStack>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Holder {
    pub tid: u32,
    pub thread: String,
    /// "owner_field" (read from the lock when the waiter arrived) or "waker" (the thread whose
    /// wake-up released the waiter).
    pub evidence: Cow<'static, str>,
    /// Waits it caused, and their time.
    pub waits: u64,
    pub wait_time: f64,
    /// Where it took the lock (empty when not known: a futex-only lock).
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WaitingStack {
    pub count: u64,
    pub total_time: f64,
    pub max_time: f64,
    pub stack: Vec<Frame>,
}

/// Futex waits that are not contention: a condition variable or thread parking, told by the
/// waiting stack's frames.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct WaitSite {
    /// "condvar" or "park".
    pub kind: Cow<'static, str>,
    pub address: String,
    pub waits: u64,
    pub wait_time: f64,
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Deadlocks {
    /// Lock-order cycles: each edge "held `from`, then took `to`", with both stacks.
    pub potential: Vec<PotentialDeadlock>,
    /// Threads blocked in a cycle of waits right now.
    pub live: Vec<LiveDeadlock>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct PotentialDeadlock {
    /// The locks of the cycle, in order (hex addresses).
    pub locks: Vec<String>,
    pub edges: Vec<LockOrderEdge>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LockOrderEdge {
    pub from: String,
    pub to: String,
    pub from_kind: Cow<'static, str>,
    pub to_kind: Cow<'static, str>,
    /// The thread that first took them in this order, and how often it happened.
    pub tid: u32,
    pub thread: String,
    pub count: u64,
    /// Where `from` was taken, and where `to` was taken while `from` was held.
    pub from_stack: Vec<Frame>,
    pub to_stack: Vec<Frame>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LiveDeadlock {
    /// Seconds into profiling when it was found.
    pub detected_at: f64,
    /// How it was seen: "attach" (built from /proc and the target's memory when profiling
    /// began) or "probes" (the waits the probes saw).
    pub found_by: Cow<'static, str>,
    pub threads: Vec<DeadlockedThread>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct DeadlockedThread {
    pub tid: u32,
    pub name: String,
    /// The lock it waits for (hex), the static it is (when it is one), its kind, and the thread
    /// that holds it.
    pub waits_for: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub waits_for_symbol: Option<String>,
    pub lock_kind: Cow<'static, str>,
    pub held_by: u32,
    /// "owner_field" (read from the lock in the target's memory) or "waker".
    pub evidence: Cow<'static, str>,
    /// Seconds it had been seen waiting when the cycle was reported.
    pub waiting_for: f64,
    /// Its stack where it waits.
    pub blocked_stack: Vec<Frame>,
    /// Where it took the lock the next thread of the cycle waits for (empty when the lock was
    /// taken before profiling began).
    pub acquired_stack: Vec<Frame>,
}

/// Per traced function, when the threads family ran beside the functions family.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
pub(crate) struct FunctionCpuSplit {
    /// On-CPU and off-CPU time inside the timed calls, seconds.
    pub on_cpu_time: f64,
    pub off_cpu_time: f64,
    /// The calls' CPU use while they ran (on-CPU over the call's time, percent of one core),
    /// averaged over the calls, and the highest of one call.
    pub average_cpu_peak: f64,
    pub peak_cpu: f64,
}
