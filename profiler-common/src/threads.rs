//! The `threads` family: where each of the target's threads spends its time, which locks they
//! wait for and who held them, and the lock order they take them in.
//!
//! - Scheduling: `sched_switch` accounts every switch of a target thread in its [`ThreadStats`]
//!   (on-CPU, blocked by reason, runnable), takes the user stack of a thread that blocks, and adds
//!   a block at least `--min-block` long to [`BLOCK_STACKS`](maps::BLOCK_STACKS) by (thread,
//!   reason, stack). `sched_waking` ends the blocked part of the off-CPU time and starts the
//!   runnable part, and names the waker of a thread waiting on a futex.
//! - pthread locks: entry and return uprobes on the mutex and rwlock functions of libc
//!   ([`LockOp`] in the cookie) note the wait, the owner the lock had at entry, the locks the
//!   thread holds (and the stacks where it took them), the lock-order edges, and the hold time.
//! - Futexes: the `futex` syscall's own tracepoints time every wait (the off-CPU time inside the
//!   call), so locks without probes (Rust std, parking_lot, the GIL) are seen too.

/// Slots of the per-thread array (a power of two): thread `tid` owns slot `tid % THREAD_SLOTS`.
/// A thread whose slot another holds is not accounted ([`Counter`](crate::counters::Counter)
/// `ThreadSlotTaken`).
pub const THREAD_SLOTS: u32 = 4096;

/// Most user frames kept per stack.
pub const STACK_DEPTH: usize = 32;

/// Buckets of the run-queue and wait-time histograms: bucket `b` holds values in
/// `[2^(b-1), 2^b)` ns (bucket 0: 0 ns).
pub const LOG2_BUCKETS: usize = 40;

/// The log2 bucket of `ns`.
#[inline(always)]
pub const fn log2_bucket(ns: u64) -> usize {
    let b = (64 - ns.leading_zeros()) as usize;
    if b >= LOG2_BUCKETS {
        LOG2_BUCKETS - 1
    } else {
        b
    }
}

/// Locks held at once per thread that are tracked (deeper ones are counted, not tracked).
pub const HELD_MAX: usize = 8;

/// Why a thread was switched out voluntarily.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BlockReason {
    /// In `futex(2)` or `futex_waitv(2)`: a lock, condition variable or parking.
    Lock = 0,
    /// In a read, write, poll or sync call, or in uninterruptible sleep.
    Io = 1,
    /// In `nanosleep(2)` or `clock_nanosleep(2)`.
    Sleep = 2,
    /// Anything else (`wait4`, `pause`, page faults, ...).
    Other = 3,
}

/// Number of [`BlockReason`]s.
pub const BLOCK_REASONS: usize = 4;

impl BlockReason {
    pub const ALL: [BlockReason; BLOCK_REASONS] = [
        BlockReason::Lock,
        BlockReason::Io,
        BlockReason::Sleep,
        BlockReason::Other,
    ];

    pub const fn name(self) -> &'static str {
        match self {
            BlockReason::Lock => "lock",
            BlockReason::Io => "io",
            BlockReason::Sleep => "sleep",
            BlockReason::Other => "other",
        }
    }

    pub const fn from_u32(v: u32) -> BlockReason {
        match v {
            0 => BlockReason::Lock,
            1 => BlockReason::Io,
            2 => BlockReason::Sleep,
            _ => BlockReason::Other,
        }
    }
}

/// `TASK_UNINTERRUPTIBLE` in a switch-out state: disk I/O and other waits that cannot be
/// interrupted.
pub const TASK_UNINTERRUPTIBLE: u32 = 0x2;
/// `EXIT_DEAD | EXIT_ZOMBIE | TASK_DEAD` in a switch-out state: the thread's last switch.
pub const TASK_EXITING: u32 = 0x10 | 0x20 | 0x80;

/// Why a thread in syscall `nr` (-1: none) was switched out in `state`.
#[inline(always)]
pub const fn block_reason(nr: i64, state: u32) -> BlockReason {
    match nr {
        // futex, futex_waitv
        202 | 449 => BlockReason::Lock,
        // nanosleep, clock_nanosleep
        35 | 230 => BlockReason::Sleep,
        // read, write, poll, pread64, pwrite64, readv, writev, select, sendfile, connect,
        // accept, sendto, recvfrom, sendmsg, recvmsg, fsync, fdatasync, io_getevents,
        // epoll_wait, openat, pselect6, ppoll, splice, sync_file_range, epoll_pwait, accept4,
        // preadv, pwritev, recvmmsg, sendmmsg, copy_file_range, preadv2, pwritev2,
        // io_uring_enter, epoll_pwait2
        0 | 1 | 7 | 17 | 18 | 19 | 20 | 23 | 40 | 42 | 43 | 44 | 45 | 46 | 47 | 74 | 75 | 208
        | 232 | 257 | 270 | 271 | 275 | 277 | 281 | 288 | 295 | 296 | 299 | 307 | 326 | 327
        | 328 | 426 | 441 => BlockReason::Io,
        _ if state & TASK_UNINTERRUPTIBLE != 0 => BlockReason::Io,
        _ => BlockReason::Other,
    }
}

/// A lock function of libc, in the low byte of the attach cookie.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockOp {
    MutexLock = 0,
    MutexTrylock = 1,
    MutexTimedlock = 2,
    MutexUnlock = 3,
    RdLock = 4,
    WrLock = 5,
    TryRdLock = 6,
    TryWrLock = 7,
    TimedRdLock = 8,
    TimedWrLock = 9,
    RwUnlock = 10,
}

/// Number of [`LockOp`]s.
pub const LOCK_OPS: usize = 11;

impl LockOp {
    /// Every op with the libc functions it probes (the `clock` variants of glibc 2.30+ time
    /// like the `timed` ones).
    pub const FUNCTIONS: [(LockOp, &'static [&'static str]); LOCK_OPS] = [
        (LockOp::MutexLock, &["pthread_mutex_lock"]),
        (LockOp::MutexTrylock, &["pthread_mutex_trylock"]),
        (
            LockOp::MutexTimedlock,
            &["pthread_mutex_timedlock", "pthread_mutex_clocklock"],
        ),
        (LockOp::MutexUnlock, &["pthread_mutex_unlock"]),
        (LockOp::RdLock, &["pthread_rwlock_rdlock"]),
        (LockOp::WrLock, &["pthread_rwlock_wrlock"]),
        (LockOp::TryRdLock, &["pthread_rwlock_tryrdlock"]),
        (LockOp::TryWrLock, &["pthread_rwlock_trywrlock"]),
        (
            LockOp::TimedRdLock,
            &["pthread_rwlock_timedrdlock", "pthread_rwlock_clockrdlock"],
        ),
        (
            LockOp::TimedWrLock,
            &["pthread_rwlock_timedwrlock", "pthread_rwlock_clockwrlock"],
        ),
        (LockOp::RwUnlock, &["pthread_rwlock_unlock"]),
    ];

    pub const fn from_u8(v: u8) -> Option<LockOp> {
        Some(match v {
            0 => LockOp::MutexLock,
            1 => LockOp::MutexTrylock,
            2 => LockOp::MutexTimedlock,
            3 => LockOp::MutexUnlock,
            4 => LockOp::RdLock,
            5 => LockOp::WrLock,
            6 => LockOp::TryRdLock,
            7 => LockOp::TryWrLock,
            8 => LockOp::TimedRdLock,
            9 => LockOp::TimedWrLock,
            10 => LockOp::RwUnlock,
            _ => return None,
        })
    }

    pub const fn is_unlock(self) -> bool {
        matches!(self, LockOp::MutexUnlock | LockOp::RwUnlock)
    }

    pub const fn is_try(self) -> bool {
        matches!(
            self,
            LockOp::MutexTrylock | LockOp::TryRdLock | LockOp::TryWrLock
        )
    }

    pub const fn is_rwlock(self) -> bool {
        !matches!(
            self,
            LockOp::MutexLock | LockOp::MutexTrylock | LockOp::MutexTimedlock | LockOp::MutexUnlock
        )
    }

    /// Whether its function gets a return probe: the ones that may fail as a matter of course
    /// (try, timed). A blocking lock function acquires when it returns, bar misuse (a
    /// relock of an error-checking mutex), so its acquisition is taken at its entry and its
    /// wait from the futex wait inside it: no `uretprobe(2)` a call.
    pub const fn returns(self) -> bool {
        matches!(
            self,
            LockOp::MutexTrylock
                | LockOp::MutexTimedlock
                | LockOp::TryRdLock
                | LockOp::TryWrLock
                | LockOp::TimedRdLock
                | LockOp::TimedWrLock
        )
    }

    pub const fn is_read(self) -> bool {
        matches!(
            self,
            LockOp::RdLock | LockOp::TryRdLock | LockOp::TimedRdLock
        )
    }

    /// The lock kind it takes.
    pub const fn kind(self) -> LockKind {
        if self.is_rwlock() {
            LockKind::Rwlock
        } else {
            LockKind::PthreadMutex
        }
    }
}

/// What a lock is, as the report names it.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LockKind {
    /// Seen only through `futex(2)` (Rust std, parking_lot, the GIL, a condition variable).
    Futex = 0,
    PthreadMutex = 1,
    Rwlock = 2,
}

impl LockKind {
    pub const fn name(self) -> &'static str {
        match self {
            LockKind::Futex => "futex",
            LockKind::PthreadMutex => "pthread_mutex",
            LockKind::Rwlock => "rwlock",
        }
    }

    pub const fn from_u32(v: u32) -> LockKind {
        match v {
            1 => LockKind::PthreadMutex,
            2 => LockKind::Rwlock,
            _ => LockKind::Futex,
        }
    }
}

/// Byte offset of the owner's thread id in glibc's `pthread_mutex_t` (x86-64: `__lock`,
/// `__count`, `__owner`).
pub const MUTEX_OWNER_OFFSET: u64 = 8;
/// Byte offset of the writer's thread id in glibc's `pthread_rwlock_t` (x86-64: `__cur_writer`).
pub const RWLOCK_WRITER_OFFSET: u64 = 24;
/// The owner thread id bits of a PI futex word.
pub const FUTEX_TID_MASK: u32 = 0x3fff_ffff;

/// `futex(2)` operations (the command, `op & FUTEX_CMD_MASK`).
pub mod futex_op {
    pub const WAIT: u32 = 0;
    pub const WAKE: u32 = 1;
    pub const LOCK_PI: u32 = 6;
    pub const UNLOCK_PI: u32 = 7;
    pub const WAIT_BITSET: u32 = 9;
    pub const WAIT_REQUEUE_PI: u32 = 11;
    pub const LOCK_PI2: u32 = 13;
    /// Not a `futex(2)` op: the profiler's mark for `futex_waitv(2)`.
    pub const WAITV: u32 = 0xff;
    /// Clears `FUTEX_PRIVATE_FLAG` and `FUTEX_CLOCK_REALTIME`.
    pub const CMD_MASK: u32 = !(128 | 256);

    /// Whether `cmd` may block the caller until another thread acts.
    pub const fn waits(cmd: u32) -> bool {
        matches!(
            cmd,
            WAIT | WAIT_BITSET | LOCK_PI | LOCK_PI2 | WAIT_REQUEUE_PI | WAITV
        )
    }

    /// Whether `cmd` takes a PI lock (the futex word holds the owner's thread id).
    pub const fn is_pi(cmd: u32) -> bool {
        matches!(cmd, LOCK_PI | LOCK_PI2 | WAIT_REQUEUE_PI)
    }
}

/// What a thread was doing when it was switched out, in [`ThreadStats::off_kind`].
pub mod off_kind {
    /// Running, or never seen switched out.
    pub const NONE: u32 = 0;
    /// Preempted or yielded: runnable until it runs again.
    pub const RUNNABLE: u32 = 1;
    /// Switched out voluntarily: blocked until woken.
    pub const BLOCKED: u32 = 2;
    /// Exited.
    pub const DEAD: u32 = 3;
}

/// A lock a thread holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Held {
    pub addr: u64,
    /// `bpf_ktime_get_ns()` when it was taken.
    pub since: u64,
    /// The stack where it was taken (a [`StackTrace`] key).
    pub stack: u64,
    /// The [`LockOp`] that took it.
    pub op: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<Held>() == 32);

/// One thread of the target (a slot of `SCHED_THREADS`), written by its own switches, its
/// wake-ups and its probes.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadStats {
    /// The owner of the slot (0: free).
    pub tid: u64,
    /// On-CPU time up to the last switch-out, ns (add `now - oncpu_since` while it runs).
    pub on_cpu_ns: u64,
    /// Blocked time by [`BlockReason`], ns.
    pub blocked_ns: [u64; BLOCK_REASONS],
    /// Blocks by [`BlockReason`].
    pub blocks: [u64; BLOCK_REASONS],
    /// Of the blocks, those shorter than `--min-block` (counted, not stacked).
    pub short_blocks: u64,
    /// Runnable (run-queue) time, ns.
    pub runnable_ns: u64,
    /// Voluntary and involuntary switches, migrations between CPUs.
    pub voluntary: u64,
    pub involuntary: u64,
    pub migrations: u64,
    /// `bpf_ktime_get_ns()` of its last switch-in (0: off CPU).
    pub oncpu_since: u64,
    /// Of its last switch-out.
    pub offcpu_since: u64,
    /// Of the wake-up that ended its current block (0: none yet).
    pub woken_at: u64,
    /// [`off_kind`] of its last switch-out.
    pub off_kind: u32,
    /// [`BlockReason`] of its current block.
    pub reason: u32,
    /// The CPU it last ran on + 1 (0: not seen running).
    pub cpu_plus1: u32,
    /// Locks in `held` (may exceed [`HELD_MAX`]: those past it are not tracked).
    pub held_n: u32,
    /// The user stack taken at its last voluntary switch-out (a [`StackTrace`] key, 0: none).
    pub block_stack: u64,
    /// The Python stack there (`crate::python`'s `PY_STACKS` key, 0: none).
    pub block_python: u64,
    /// Total off-CPU time (blocked + runnable) so far, ns: a futex wait is the difference over
    /// the call.
    pub off_cpu_ns: u64,
    /// The futex wait in progress: its address (0: none), op, start, `off_cpu_ns` at entry and
    /// the thread that woke it (0: none yet).
    pub futex_addr: u64,
    pub futex_since: u64,
    pub futex_off_start: u64,
    pub futex_op: u32,
    pub waker: u32,
    /// The lock call in progress: its lock (0: none), start, the owner the lock had at entry
    /// (0: free or unknown), its [`LockOp`], and whether the thread blocked in it.
    pub lock_addr: u64,
    pub lock_since: u64,
    pub lock_off_start: u64,
    pub lock_owner: u32,
    pub lock_op: u32,
    /// Where the lock call's owner took the lock, read at the call's entry (a [`StackTrace`]
    /// key; 0: unknown).
    pub lock_stack: u64,
    /// The lock call's return address, and the stack pointer at its entry (the slot that holds
    /// it while the call runs): a return probe replaces it on the stack with the kernel's
    /// trampoline, so a stack taken while the call blocks gets it from here; a call without a
    /// return probe is still running while the slot holds it.
    pub lock_ret: u64,
    pub lock_sp: u64,
    /// The last lock acquisition's stack (without a return probe, taken at the entry) and the
    /// return address, stack and frame pointers it was taken at: the next call from the same
    /// place reuses it.
    pub acq_stack: u64,
    pub acq_ret: u64,
    pub acq_sp: u64,
    pub acq_bp: u64,
    /// Run-queue latencies, by [`log2_bucket`].
    pub runq_hist: [u32; LOG2_BUCKETS],
    /// Its name at its last switch-out.
    pub comm: [u8; 16],
    /// Locks it holds, oldest first.
    pub held: [Held; HELD_MAX],
    /// The last two places it blocked at, and the one to replace next: a thread that blocks
    /// again where it blocked before (a loop's wait, or two waits in turn) has the same stack,
    /// which is not walked again.
    pub sites: [BlockSite; 2],
    pub site_next: u32,
    pub _pad: u32,
}

/// Where a thread blocked: its user registers then (program counter, stack and frame pointers)
/// and the stack taken there (a [`StackTrace`] key).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct BlockSite {
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
    pub stack: u64,
}

const _: () = assert!(
    core::mem::size_of::<ThreadStats>()
        == 8 * 34 + 4 * 8 + 4 * LOG2_BUCKETS + 16 + 32 * HELD_MAX + 32 * 2 + 8
);

/// A user stack (value of `USER_STACKS`, keyed by its hash, [`stack_hash`]).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct StackTrace {
    /// Valid entries in `ips`.
    pub len: u64,
    /// Innermost first.
    pub ips: [u64; STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<StackTrace>() == 8 + 8 * STACK_DEPTH);

/// A step of the stack hash (FNV-style mixing; both sides compute it, so the user side can check
/// a stack against its key).
#[inline(always)]
pub const fn stack_hash_step(h: u64, v: u64) -> u64 {
    (h.rotate_left(29) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Seed of [`stack_hash_step`]; a hash of 0 is made 1 (0 means "no stack").
pub const STACK_HASH_SEED: u64 = 0x1319_8a2e_0370_7344;

/// The hash of the first `len` frames of `ips`.
pub fn stack_hash(ips: &[u64]) -> u64 {
    let mut h = STACK_HASH_SEED;
    for &ip in ips {
        h = stack_hash_step(h, ip);
    }
    if h == 0 { 1 } else { h }
}

/// Key of `BLOCK_STACKS`: one thread's blocks of one reason at one stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct BlockKey {
    pub tid: u32,
    pub reason: u32,
    pub stack: u64,
    /// The Python stack of the block (a CPython target's thread; 0: none).
    pub python: u64,
}

const _: () = assert!(core::mem::size_of::<BlockKey>() == 24);

/// Count and time of something that happened at one place (blocks at a stack, waits at a lock).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    pub count: u64,
    pub total_ns: u64,
    pub max_ns: u64,
}

const _: () = assert!(core::mem::size_of::<Tally>() == 24);

/// One lock's totals (value of `LOCK_STATS`, keyed by address).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct LockStats {
    /// [`LockKind`].
    pub kind: u32,
    /// Futex waits that returned EAGAIN (the word changed first: never blocked).
    pub eagain: u32,
    /// Acquisitions through the probed functions (0 for a futex-only lock: not seen).
    pub acquisitions: u64,
    /// Acquisitions (or futex waits) that had to wait for another thread.
    pub contended: u64,
    /// Time waited, ns: the off-CPU time inside the lock call or futex wait.
    pub wait_ns: u64,
    pub wait_max_ns: u64,
    /// Time held (probed locks only), ns.
    pub hold_ns: u64,
    pub hold_max_ns: u64,
    /// Releases seen (probed locks only).
    pub releases: u64,
    /// Contended waits, by [`log2_bucket`] of the time waited.
    pub wait_hist: [u32; LOG2_BUCKETS],
}

const _: () = assert!(core::mem::size_of::<LockStats>() == 8 * 8 + 4 * LOG2_BUCKETS);

/// Key of `LOCK_WAITS`: the waits at one lock from one stack.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LockWaitKey {
    pub addr: u64,
    pub stack: u64,
}

/// Key of `LOCK_HOLDERS`: who held (or released) a lock another thread waited for.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct HolderKey {
    pub addr: u64,
    pub holder: u32,
    /// 1: read from the lock's owner field; 2: the thread whose wake-up released the waiter.
    pub evidence: u32,
    /// Where the holder took the lock (a [`StackTrace`] key; 0: unknown).
    pub stack: u64,
}

const _: () = assert!(core::mem::size_of::<HolderKey>() == 24);

/// [`HolderKey::evidence`] values.
pub const EVIDENCE_OWNER_FIELD: u32 = 1;
pub const EVIDENCE_WAKER: u32 = 2;

/// Key of `LOCK_EDGES`: lock `to` taken while `from` was held.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EdgeKey {
    pub from: u64,
    pub to: u64,
}

/// The first time an edge was seen, and how often.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct Edge {
    pub count: u64,
    pub tid: u32,
    /// [`LockOp`]s that took `from` and `to`.
    pub from_op: u16,
    pub to_op: u16,
    /// Where `from` and `to` were taken.
    pub from_stack: u64,
    pub to_stack: u64,
}

const _: () = assert!(core::mem::size_of::<Edge>() == 32);

/// Probe hits of the family, by kind (slots of the per-CPU `THREAD_HITS`), for the overhead
/// model.
pub mod hit {
    /// `sched_switch` runs that concerned the target (either side).
    pub const SWITCH: u32 = 0;
    /// `sched_waking`/`sched_wakeup_new` runs for a target thread.
    pub const WAKEUP: u32 = 1;
    /// Lock function entries.
    pub const LOCK_ENTRY: u32 = 2;
    /// Lock function returns (`uretprobe`s).
    pub const LOCK_RETURN: u32 = 3;
    /// `futex` syscall entries and exits of the target.
    pub const FUTEX: u32 = 4;
    /// User stacks walked.
    pub const STACK: u32 = 5;
    /// Switches of other processes (filtered out in the first instructions).
    pub const OTHER_SWITCH: u32 = 6;
    /// Lock function entries by [`super::LockOp`]: slot `LOCK_OP + op` (each op's probe has its
    /// own cost, see the placement).
    pub const LOCK_OP: u32 = 8;
    pub const SLOTS: u32 = LOCK_OP + super::LOCK_OPS as u32;
}

/// Executable ranges of the target kept for the kernel (`EXEC_RANGES`): a word on the stack
/// that falls in one is taken for a return address.
pub const EXEC_RANGES_MAX: u32 = 16;
/// Words of the user stack scanned above the stack pointer of a thread that blocks, for the
/// return addresses the frame-pointer walk misses (see `EXEC_RANGES`).
pub const SCAN_WORDS: usize = 64;
/// Most return addresses the scan adds.
pub const SCAN_KEEP: usize = 4;

/// Map capacities.
pub const USER_STACKS_MAX: u32 = 1 << 15;
pub const BLOCK_STACKS_MAX: u32 = 1 << 15;
pub const LOCK_STATS_MAX: u32 = 1 << 14;
pub const LOCK_WAITS_MAX: u32 = 1 << 14;
pub const LOCK_HOLDERS_MAX: u32 = 1 << 14;
pub const LOCK_EDGES_MAX: u32 = 1 << 14;

/// Globals the loader sets.
pub mod globals {
    /// Blocks shorter than this (µs) are counted, not stacked (`--min-block`).
    pub const MIN_BLOCK_US: &str = "THREADS_MIN_BLOCK_US";
    /// 1 when the threads family runs: the functions family then splits calls into on-CPU and
    /// off-CPU time.
    pub const THREADS_ON: &str = "THREADS_ON";
}

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// [`super::ThreadStats`] by `tid % THREAD_SLOTS`.
    pub const SCHED_THREADS: &str = "SCHED_THREADS";
    /// [`super::StackTrace`] by hash.
    pub const USER_STACKS: &str = "USER_STACKS";
    /// Per-CPU scratch [`super::StackTrace`] (kernel side only).
    pub const STACK_SCRATCH: &str = "STACK_SCRATCH";
    /// [`super::Tally`] by [`super::BlockKey`].
    pub const BLOCK_STACKS: &str = "BLOCK_STACKS";
    /// [`super::LockStats`] by lock address.
    pub const LOCK_STATS: &str = "LOCK_STATS";
    /// [`super::Tally`] by [`super::LockWaitKey`].
    pub const LOCK_WAITS: &str = "LOCK_WAITS";
    /// [`super::Tally`] by [`super::HolderKey`].
    pub const LOCK_HOLDERS: &str = "LOCK_HOLDERS";
    /// [`super::Edge`] by [`super::EdgeKey`].
    pub const LOCK_EDGES: &str = "LOCK_EDGES";
    /// Per-CPU probe hits by [`super::hit`].
    pub const THREAD_HITS: &str = "THREAD_HITS";
    /// The target's executable ranges, `[start, end)` pairs (start 0: unused), written by the
    /// user side: a thread blocked in a libc function that keeps no frame pointer has its
    /// caller's return address on the stack above the stack pointer, where the frame-pointer
    /// walk does not look; the switch-out scans a few words there for addresses in these ranges.
    pub const EXEC_RANGES: &str = "EXEC_RANGES";
    /// Per-CPU scratch for the scan (kernel side only).
    pub const SCAN_SCRATCH: &str = "SCAN_SCRATCH";
}

/// Program names in the eBPF object.
pub mod programs {
    /// `tp_btf/sched_switch`.
    pub const SCHED_SWITCH: &str = "threads_sched_switch";
    /// `tp_btf/sched_waking` (the waker's context: see the program).
    pub const SCHED_WAKEUP: &str = "threads_sched_wakeup";
    /// `tp_btf/sched_wakeup_new`.
    pub const SCHED_WAKEUP_NEW: &str = "threads_sched_wakeup_new";
    /// `syscalls/sys_enter_futex`.
    pub const FUTEX_ENTER: &str = "threads_futex_enter";
    /// `syscalls/sys_exit_futex`.
    pub const FUTEX_EXIT: &str = "threads_futex_exit";
    /// `syscalls/sys_enter_futex_waitv`.
    pub const FUTEX_WAITV_ENTER: &str = "threads_futex_waitv_enter";
    /// `syscalls/sys_exit_futex_waitv`.
    pub const FUTEX_WAITV_EXIT: &str = "threads_futex_waitv_exit";
    /// Entry uprobe of every lock function (multi-uprobe link, [`super::LockOp`] cookie).
    pub const LOCK_ENTER: &str = "threads_lock_enter";
    /// Return uprobe of the lock functions that acquire.
    pub const LOCK_RETURN: &str = "threads_lock_return";
}

pub const MAPS: &[&str] = &[
    maps::SCHED_THREADS,
    maps::USER_STACKS,
    maps::STACK_SCRATCH,
    maps::BLOCK_STACKS,
    maps::LOCK_STATS,
    maps::LOCK_WAITS,
    maps::LOCK_HOLDERS,
    maps::LOCK_EDGES,
    maps::THREAD_HITS,
    maps::EXEC_RANGES,
    maps::SCAN_SCRATCH,
];

pub const PROGRAMS: &[&str] = &[
    programs::SCHED_SWITCH,
    programs::SCHED_WAKEUP,
    programs::SCHED_WAKEUP_NEW,
    programs::FUTEX_ENTER,
    programs::FUTEX_EXIT,
    programs::FUTEX_WAITV_ENTER,
    programs::FUTEX_WAITV_EXIT,
    programs::LOCK_ENTER,
    programs::LOCK_RETURN,
];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for ThreadStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockSite {}
    // SAFETY: as above.
    unsafe impl aya::Pod for StackTrace {}
    // SAFETY: as above.
    unsafe impl aya::Pod for BlockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Tally {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LockStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LockWaitKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for HolderKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for EdgeKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Edge {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn futex_ops_are_the_kernel_values() {
        assert_eq!(futex_op::WAIT, libc::FUTEX_WAIT as u32);
        assert_eq!(futex_op::WAKE, libc::FUTEX_WAKE as u32);
        assert_eq!(futex_op::LOCK_PI, libc::FUTEX_LOCK_PI as u32);
        assert_eq!(futex_op::WAIT_BITSET, libc::FUTEX_WAIT_BITSET as u32);
        assert_eq!(
            futex_op::WAIT_REQUEUE_PI,
            libc::FUTEX_WAIT_REQUEUE_PI as u32
        );
        assert_eq!(futex_op::LOCK_PI2, 13);
        let private_wait = (libc::FUTEX_WAIT | libc::FUTEX_PRIVATE_FLAG) as u32;
        assert_eq!(private_wait & futex_op::CMD_MASK, futex_op::WAIT);
        assert!(!futex_op::waits(futex_op::WAKE));
    }

    #[test]
    fn block_reasons_follow_the_syscall() {
        use syscalls::Sysno;
        let reason = |s: Sysno| block_reason(s.id() as i64, 1);
        assert_eq!(reason(Sysno::futex), BlockReason::Lock);
        assert_eq!(reason(Sysno::futex_waitv), BlockReason::Lock);
        assert_eq!(reason(Sysno::clock_nanosleep), BlockReason::Sleep);
        assert_eq!(reason(Sysno::nanosleep), BlockReason::Sleep);
        for io in [
            Sysno::read,
            Sysno::write,
            Sysno::poll,
            Sysno::epoll_wait,
            Sysno::epoll_pwait,
            Sysno::recvfrom,
            Sysno::accept4,
            Sysno::fsync,
            Sysno::io_uring_enter,
            Sysno::ppoll,
            Sysno::pselect6,
        ] {
            assert_eq!(reason(io), BlockReason::Io, "{io}");
        }
        assert_eq!(reason(Sysno::wait4), BlockReason::Other);
        assert_eq!(block_reason(-1, TASK_UNINTERRUPTIBLE), BlockReason::Io);
    }

    #[test]
    fn lock_ops_round_trip_and_log2_buckets() {
        for (i, (op, names)) in LockOp::FUNCTIONS.iter().enumerate() {
            assert_eq!(*op as usize, i);
            assert_eq!(LockOp::from_u8(i as u8), Some(*op));
            assert!(!names.is_empty());
        }
        assert_eq!(LockOp::from_u8(LOCK_OPS as u8), None);
        assert_eq!(log2_bucket(0), 0);
        assert_eq!(log2_bucket(1), 1);
        assert_eq!(log2_bucket(1023), 10);
        assert_eq!(log2_bucket(1024), 11);
        assert_eq!(log2_bucket(u64::MAX), LOG2_BUCKETS - 1);
    }
}
