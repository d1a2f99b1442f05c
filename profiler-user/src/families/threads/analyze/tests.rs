//! The section from synthetic maps: time accounting, sorting, percentiles, locks and waits.

use std::collections::{HashMap, HashSet};

use profiler_common::threads::{
    BLOCK_REASONS, BlockKey, BlockReason, EVIDENCE_OWNER_FIELD, EVIDENCE_WAKER, HELD_MAX, Held,
    HolderKey, LOG2_BUCKETS, LockKind, LockStats, LockWaitKey, Tally, ThreadStats, off_kind,
};

use super::{
    Harvest, Options, Resolve, section,
    time::{percentile_from_log2, times},
};
use crate::report::Frame;

/// A resolver over fixed tables: ip -> function, live thread names, lock statics, exited tids.
#[derive(Default)]
pub(super) struct Fake {
    pub functions: HashMap<u64, &'static str>,
    pub alive: HashMap<u32, &'static str>,
    pub statics: HashMap<u64, &'static str>,
    pub exited: HashSet<u32>,
    /// Stacks symbolized, to check the memo.
    pub symbolized: usize,
}

impl Resolve for Fake {
    fn frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        self.symbolized += 1;
        ips.iter()
            .map(|ip| Frame {
                function: self.functions.get(ip).unwrap_or(&"??").to_string(),
                module: "app".into(),
                offset: format!("{ip:#x}"),
                file: None,
                line: None,
            })
            .collect()
    }
    fn thread_name(&self, tid: u32) -> Option<String> {
        self.alive.get(&tid).map(|s| s.to_string())
    }
    fn lock_symbol(&mut self, addr: u64) -> Option<String> {
        self.statics.get(&addr).map(|s| s.to_string())
    }
    fn exited(&self, tid: u32) -> bool {
        self.exited.contains(&tid)
    }
}

pub(super) fn harvest() -> Harvest {
    Harvest::default()
}

pub(super) fn functions(stack: &[&'static str]) -> Vec<String> {
    stack.iter().map(|s| s.to_string()).collect()
}

pub(super) fn names(frames: &[Frame]) -> Vec<String> {
    frames.iter().map(|f| f.function.clone()).collect()
}

/// A thread that ran `on` ns, off CPU since it last switched out (accounted nothing more).
fn thread(tid: u32, comm: &str, on: u64) -> ThreadStats {
    let mut name = [0u8; 16];
    name[..comm.len()].copy_from_slice(comm.as_bytes());
    ThreadStats {
        tid: u64::from(tid),
        on_cpu_ns: on,
        blocked_ns: [0; BLOCK_REASONS],
        blocks: [0; BLOCK_REASONS],
        short_blocks: 0,
        runnable_ns: 0,
        voluntary: 0,
        involuntary: 0,
        migrations: 0,
        oncpu_since: 0,
        offcpu_since: 0,
        woken_at: 0,
        off_kind: off_kind::NONE,
        reason: 0,
        cpu_plus1: 0,
        held_n: 0,
        block_stack: 0,
        block_python: 0,
        off_cpu_ns: 0,
        futex_addr: 0,
        futex_since: 0,
        futex_off_start: 0,
        futex_op: 0,
        waker: 0,
        lock_addr: 0,
        lock_since: 0,
        lock_off_start: 0,
        lock_owner: 0,
        lock_op: 0,
        lock_stack: 0,
        lock_ret: 0,
        lock_sp: 0,
        acq_stack: 0,
        acq_ret: 0,
        acq_sp: 0,
        acq_bp: 0,
        runq_hist: [0; LOG2_BUCKETS],
        comm: name,
        held: [Held::default(); HELD_MAX],
        sites: [Default::default(); 2],
        site_next: 0,
        _pad: 0,
    }
}

fn lock(kind: LockKind, contended: u64, wait_ns: u64) -> LockStats {
    LockStats {
        kind: kind as u32,
        eagain: 0,
        acquisitions: 0,
        contended,
        wait_ns,
        wait_max_ns: wait_ns,
        hold_ns: 0,
        hold_max_ns: 0,
        releases: 0,
        wait_hist: [0; LOG2_BUCKETS],
    }
}

fn tally(count: u64, total_ns: u64) -> Tally {
    Tally {
        count,
        total_ns,
        max_ns: total_ns,
    }
}

#[test]
fn running_intervals_are_closed_at_the_end() {
    let end = 10_000;
    let mut on = thread(1, "on", 100);
    on.oncpu_since = 9_000;
    assert_eq!(times(&on, end).on_cpu, 1_100);

    let mut blocked = thread(2, "blocked", 0);
    (blocked.off_kind, blocked.reason, blocked.offcpu_since) = (off_kind::BLOCKED, 1, 4_000);
    blocked.blocked_ns[1] = 50;
    let t = times(&blocked, end);
    assert_eq!(t.blocked[BlockReason::Io as usize], 6_050);
    assert_eq!((t.runnable, t.on_cpu), (0, 0));

    // Woken: the kernel accounts the block when the thread runs again, so both parts are
    // closed here: blocked until the wake-up, runnable since.
    blocked.woken_at = 7_000;
    let t = times(&blocked, end);
    assert_eq!((t.blocked[1], t.runnable), (3_050, 3_000));
    assert_eq!(t.off_cpu(), 6_050);

    let mut preempted = thread(3, "preempted", 0);
    (preempted.off_kind, preempted.offcpu_since) = (off_kind::RUNNABLE, 9_500);
    assert_eq!(times(&preempted, end).runnable, 500);

    let mut dead = thread(4, "dead", 70);
    (dead.off_kind, dead.offcpu_since) = (off_kind::DEAD, 5_000);
    assert_eq!(times(&dead, end).on_cpu + times(&dead, end).off_cpu(), 70);
    // A clock read before the switch it closes adds nothing rather than wrapping.
    on.oncpu_since = end + 5;
    assert_eq!(times(&on, end).on_cpu, 100);
}

#[test]
fn percentiles_are_the_upper_bound_of_the_bucket() {
    assert_eq!(percentile_from_log2(&[0; LOG2_BUCKETS], 0.5), 0.0);
    let mut hist = [0u32; LOG2_BUCKETS];
    hist[10] = 98; // [512, 1024) ns
    hist[20] = 2; // [2^19, 2^20) ns
    assert_eq!(percentile_from_log2(&hist, 0.5), 1024e-9);
    assert_eq!(percentile_from_log2(&hist, 0.98), 1024e-9);
    assert_eq!(percentile_from_log2(&hist, 0.99), 1_048_576e-9);
    assert_eq!(percentile_from_log2(&hist, 1.0), 1_048_576e-9);
    // Only zero-length samples.
    assert_eq!(percentile_from_log2(&[5], 0.99), 0.0);
}

#[test]
fn threads_by_total_time_with_their_blocking_stacks() {
    let mut h = harvest();
    h.end_ktime_ns = 2_000_000_000;
    let mut worker = thread(11, "worker", 100_000_000);
    (worker.off_kind, worker.offcpu_since, worker.reason) = (off_kind::BLOCKED, 1_000_000_000, 0);
    worker.blocks = [3, 1, 0, 0];
    worker.short_blocks = 2;
    worker.runq_hist[5] = 10;
    worker.voluntary = 4;
    let main = thread(10, "main", 500_000_000);
    let mut gone = thread(12, "gone", 1_000);
    gone.off_kind = off_kind::DEAD;
    h.threads = vec![main, gone, worker];
    h.stacks.insert(7, vec![0x10, 0x20]);
    h.stacks.insert(8, vec![0x30]);
    let block = |tid, reason: BlockReason, stack| BlockKey {
        python: 0,
        tid,
        reason: reason as u32,
        stack,
    };
    h.blocks = vec![
        (block(11, BlockReason::Io, 8), tally(1, 5_000)),
        (block(11, BlockReason::Lock, 7), tally(3, 9_000)),
        (block(11, BlockReason::Lock, 99), tally(1, 1_000)), // its stack was lost
        (block(10, BlockReason::Sleep, 8), tally(1, 20_000)),
    ];
    let mut r = Fake::default();
    r.functions.insert(0x10, "futex_wait");
    r.functions.insert(0x20, "app::work");
    r.alive.insert(10, "main-renamed");
    let o = Options {
        top_stacks: 2,
        ..Options::default()
    };
    let s = section(&h, &mut r, &o, Vec::new());

    let tids: Vec<u32> = s.threads.iter().map(|t| t.tid).collect();
    assert_eq!(tids, [11, 10, 12]);
    let w = &s.threads[0];
    assert_eq!(w.name, "worker");
    assert_eq!(
        (w.on_cpu_time, w.blocked.lock, w.blocked_time),
        (0.1, 1.0, 1.0)
    );
    assert_eq!(w.off_cpu_time, 1.0);
    assert_eq!((w.blocks, w.short_blocks, w.voluntary_switches), (4, 2, 4));
    assert_eq!(w.runq_latency_p50, 32e-9);
    assert!(!w.exited);
    let stacks: Vec<_> = w
        .top_blocking_stacks
        .iter()
        .map(|b| (&*b.reason, b.count, names(&b.stack)))
        .collect();
    assert_eq!(
        stacks,
        [
            ("lock", 3, functions(&["futex_wait", "app::work"])),
            ("io", 1, functions(&["??"])),
        ]
    );
    assert_eq!(s.threads[1].name, "main-renamed");
    assert_eq!(s.threads[1].top_blocking_stacks.len(), 1);
    assert!(s.threads[2].exited);
    // Stack 8 is shown twice but symbolized once.
    assert_eq!(r.symbolized, 2);
    assert_eq!((s.min_block, s.deadlock_after), (0.001, 1.0));
}

#[test]
fn locks_by_wait_time_with_holders_and_waiting_stacks() {
    let mut h = harvest();
    h.threads = vec![thread(21, "holder", 0)];
    let mut mutex = lock(LockKind::PthreadMutex, 2, 3_000);
    (mutex.acquisitions, mutex.hold_ns, mutex.hold_max_ns) = (10, 8_000, 4_000);
    mutex.wait_hist[12] = 2;
    let futex = lock(LockKind::Futex, 5, 9_000);
    let idle = lock(LockKind::Futex, 0, 0);
    h.locks = vec![(0x1000, mutex), (0x2000, futex), (0x3000, idle)];
    h.stacks.insert(1, vec![0x1]);
    h.stacks.insert(2, vec![0x2]);
    h.waits = vec![
        (
            LockWaitKey {
                addr: 0x1000,
                stack: 1,
            },
            tally(1, 1_000),
        ),
        (
            LockWaitKey {
                addr: 0x1000,
                stack: 2,
            },
            tally(1, 2_000),
        ),
        (
            LockWaitKey {
                addr: 0x2000,
                stack: 1,
            },
            tally(5, 9_000),
        ),
    ];
    let holder = |holder, evidence, stack| HolderKey {
        addr: 0x1000,
        holder,
        evidence,
        stack,
    };
    h.holders = vec![
        (holder(21, EVIDENCE_OWNER_FIELD, 2), tally(1, 1_000)),
        (holder(22, EVIDENCE_WAKER, 0), tally(1, 2_000)),
    ];
    let mut r = Fake::default();
    r.statics.insert(0x1000, "LOCK_A");
    let s = section(&h, &mut r, &Options::default(), Vec::new());

    let addresses: Vec<&str> = s.locks.iter().map(|l| l.address.as_str()).collect();
    assert_eq!(addresses, ["0x2000", "0x1000"]);
    let (f, m) = (&s.locks[0], &s.locks[1]);
    assert_eq!(
        (&*f.kind, f.acquisitions, f.hold_time),
        ("futex", None, None)
    );
    assert_eq!((f.contended, f.wait_time), (5, 9e-6));
    assert_eq!(
        (&*m.kind, m.symbol.as_deref()),
        ("pthread_mutex", Some("LOCK_A"))
    );
    assert_eq!(
        (m.acquisitions, m.hold_time, m.max_hold),
        (Some(10), Some(8e-6), Some(4e-6))
    );
    assert_eq!(m.p99_wait, 4096e-9);
    let waited: Vec<u64> = m.top_waiting_stacks.iter().map(|w| w.count).collect();
    assert_eq!(waited, [1, 1]);
    assert_eq!(m.top_waiting_stacks[0].total_time, 2e-6);
    let holders: Vec<_> = m
        .holders
        .iter()
        .map(|h| (h.tid, h.thread.as_str(), &*h.evidence, h.stack.len()))
        .collect();
    // 22 is unknown to /proc and the kernel's slots; 21's name is its comm.
    assert_eq!(
        holders,
        [(22, "?", "waker", 0), (21, "holder", "owner_field", 1)]
    );
    assert!(s.waits.is_empty());
}

#[test]
fn condvar_and_park_waits_are_not_locks() {
    let mut h = harvest();
    h.stacks.insert(1, vec![0x1, 0x2]); // a condvar wait
    h.stacks.insert(2, vec![0x1, 0x3]); // a parked thread
    h.stacks.insert(3, vec![0x1, 0x4]); // a std mutex
    h.stacks.insert(4, vec![0x5]); // a pthread mutex's wait inside pthread_mutex_lock
    let mut r = Fake::default();
    r.functions.insert(0x1, "syscall");
    r.functions
        .insert(0x2, "std::sys::sync::condvar::futex::Condvar::wait");
    r.functions.insert(0x3, "std::thread::park");
    r.functions
        .insert(0x4, "std::sys::sync::mutex::futex::Mutex::lock_contended");
    r.functions.insert(0x5, "__lll_lock_wait");
    let wait = |addr, stack| LockWaitKey { addr, stack };
    // 0xa: a condvar word only; 0xb: a futex both parked on and contended; 0xc: a probed
    // mutex, whose waits are contention whatever the stack.
    h.locks = vec![
        (0xa, lock(LockKind::Futex, 4, 40_000)),
        (0xb, lock(LockKind::Futex, 3, 30_000)),
        (0xc, lock(LockKind::PthreadMutex, 1, 1_000)),
    ];
    h.waits = vec![
        (wait(0xa, 1), tally(4, 40_000)),
        (wait(0xb, 2), tally(2, 25_000)),
        (wait(0xb, 3), tally(1, 5_000)),
        (wait(0xc, 1), tally(1, 1_000)),
    ];
    let s = section(&h, &mut r, &Options::default(), Vec::new());

    let sites: Vec<_> = s
        .waits
        .iter()
        .map(|w| (&*w.kind, w.address.as_str(), w.waits, w.wait_time))
        .collect();
    assert_eq!(
        sites,
        [("condvar", "0xa", 4, 40e-6), ("park", "0xb", 2, 25e-6)]
    );
    let locks: Vec<_> = s
        .locks
        .iter()
        .map(|l| (l.address.as_str(), l.contended, l.wait_time))
        .collect();
    // 0xb keeps only its contention.
    assert_eq!(locks, [("0xb", 1, 5e-6), ("0xc", 1, 1e-6)]);
    assert_eq!(s.locks[0].top_waiting_stacks.len(), 1);
    assert_eq!(s.locks[1].top_waiting_stacks.len(), 1);
}

/// A wait whose stack names nothing (cut short) at a word whose other waits are condition
/// waits is a condition wait too; at a word with no named waits it stays a lock wait.
#[test]
fn a_cut_short_wait_follows_its_words_other_waits() {
    let mut h = harvest();
    h.stacks.insert(1, vec![0x1, 0x2]); // a condvar wait
    h.stacks.insert(2, vec![0x1]); // cut short: names nothing
    let mut r = Fake::default();
    r.functions.insert(0x1, "__futex_abstimed_wait_common");
    r.functions.insert(0x2, "___pthread_cond_wait");
    let wait = |addr, stack| LockWaitKey { addr, stack };
    h.locks = vec![
        (0xa, lock(LockKind::Futex, 5, 50_000)),
        (0xb, lock(LockKind::Futex, 1, 7_000)),
    ];
    h.waits = vec![
        (wait(0xa, 1), tally(4, 40_000)),
        (wait(0xa, 2), tally(1, 10_000)),
        (wait(0xb, 2), tally(1, 7_000)),
    ];
    let s = section(&h, &mut r, &Options::default(), Vec::new());
    let sites: Vec<_> = s
        .waits
        .iter()
        .map(|w| (&*w.kind, w.address.as_str(), w.waits))
        .collect();
    assert_eq!(sites, [("condvar", "0xa", 4), ("condvar", "0xa", 1)]);
    let locks: Vec<_> = s
        .locks
        .iter()
        .map(|l| (l.address.as_str(), l.contended))
        .collect();
    assert_eq!(locks, [("0xb", 1)]);
}
