//! The `threads` family: every switch, wake-up, lock call and futex wait of the target's
//! threads, accounted in the kernel (see `profiler_common::threads`).
//!
//! `sched_switch` runs for every context switch of the machine, so its first instructions are
//! two loads from the `task_struct`s it is given (their offsets come from the kernel's BTF) and
//! a compare: another process's switch costs no helper call and no map access.

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{
        bpf_get_current_comm, bpf_get_smp_processor_id, bpf_ktime_get_ns, bpf_probe_read_user,
        bpf_task_pt_regs,
    },
    macros::{btf_tracepoint, map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::{BtfTracePointContext, TracePointContext},
};
use profiler_common::{
    counters::Counter,
    threads::{
        BLOCK_STACKS_MAX, BlockKey, BlockSite, EVIDENCE_WAKER, EXEC_RANGES_MAX, Edge, EdgeKey,
        HolderKey, LOCK_EDGES_MAX, LOCK_HOLDERS_MAX, LOCK_STATS_MAX, LOCK_WAITS_MAX, LockKind,
        LockStats, LockWaitKey, StackTrace, TASK_EXITING, THREAD_SLOTS, Tally, ThreadStats,
        USER_STACKS_MAX, block_reason, futex_op, hit, log2_bucket, off_kind,
    },
};

use crate::common::{
    ThreadOwned, count, current_ids, fetch_add, named_as_in_common, stopped, target_tgid,
    thread_slot,
};

/// Byte offsets of `pid` and `tgid` in `struct task_struct` (the process family's globals, set
/// from the kernel's BTF by the loader).
use crate::process::{TASK_PID_OFFSET, TASK_TGID_OFFSET};

mod locks;
mod stack;

pub use locks::{threads_lock_enter, threads_lock_return};
use stack::{Scan, take_stack};

/// Blocks shorter than this are counted, not stacked (`--min-block`), µs.
#[unsafe(no_mangle)]
static THREADS_MIN_BLOCK_US: u32 = 1_000;

/// 1 when the threads family runs (the functions family then splits its calls' time).
#[unsafe(no_mangle)]
pub static THREADS_ON: u32 = 0;

#[map]
static SCHED_THREADS: Array<ThreadStats> = Array::with_max_entries(THREAD_SLOTS, 0);

#[map]
static USER_STACKS: HashMap<u64, StackTrace> =
    HashMap::with_max_entries(USER_STACKS_MAX, BPF_F_NO_PREALLOC);

#[map]
static STACK_SCRATCH: PerCpuArray<StackTrace> = PerCpuArray::with_max_entries(1, 0);

#[map]
static BLOCK_STACKS: HashMap<BlockKey, Tally> =
    HashMap::with_max_entries(BLOCK_STACKS_MAX, BPF_F_NO_PREALLOC);

#[map]
static LOCK_STATS: HashMap<u64, LockStats> =
    HashMap::with_max_entries(LOCK_STATS_MAX, BPF_F_NO_PREALLOC);

#[map]
static LOCK_WAITS: HashMap<LockWaitKey, Tally> =
    HashMap::with_max_entries(LOCK_WAITS_MAX, BPF_F_NO_PREALLOC);

#[map]
static LOCK_HOLDERS: HashMap<HolderKey, Tally> =
    HashMap::with_max_entries(LOCK_HOLDERS_MAX, BPF_F_NO_PREALLOC);

#[map]
static LOCK_EDGES: HashMap<EdgeKey, Edge> =
    HashMap::with_max_entries(LOCK_EDGES_MAX, BPF_F_NO_PREALLOC);

#[map]
static THREAD_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(hit::SLOTS, 0);

#[map]
static EXEC_RANGES: Array<[u64; 2]> = Array::with_max_entries(EXEC_RANGES_MAX, 0);

#[map]
static SCAN_SCRATCH: PerCpuArray<Scan> = PerCpuArray::with_max_entries(1, 0);

named_as_in_common!(
    threads,
    maps: [
        SCHED_THREADS,
        USER_STACKS,
        STACK_SCRATCH,
        BLOCK_STACKS,
        LOCK_STATS,
        LOCK_WAITS,
        LOCK_HOLDERS,
        LOCK_EDGES,
        THREAD_HITS,
        EXEC_RANGES,
        SCAN_SCRATCH,
    ],
    programs: [
        threads_sched_switch => SCHED_SWITCH,
        threads_sched_wakeup => SCHED_WAKEUP,
        threads_sched_wakeup_new => SCHED_WAKEUP_NEW,
        threads_futex_enter => FUTEX_ENTER,
        threads_futex_exit => FUTEX_EXIT,
        threads_futex_waitv_enter => FUTEX_WAITV_ENTER,
        threads_futex_waitv_exit => FUTEX_WAITV_EXIT,
        threads_lock_enter => LOCK_ENTER,
        threads_lock_return => LOCK_RETURN,
    ]
);

impl ThreadOwned for ThreadStats {
    unsafe fn owner(this: *mut Self) -> *mut u64 {
        // SAFETY: the caller passes a valid value.
        unsafe { &raw mut (*this).tid }
    }
}

/// `-EAGAIN`.
const EAGAIN: i64 = -11;
/// Set in [`ThreadStats::lock_op`] once the thread blocked inside the lock call.
const LOCK_BLOCKED: u32 = 0x100;
/// Fields of `struct pt_regs` (x86-64): the syscall number, the program counter, the stack and
/// frame pointers.
const ORIG_AX: usize = 120;
const REG_IP: usize = 128;
const REG_SP: usize = 152;
const REG_BP: usize = 32;
/// `sys_enter_futex` record offsets (see its format file), and `sys_exit`'s return value.
const FUTEX_UADDR: usize = 16;
const FUTEX_OP: usize = 24;
const SYSCALL_RET: usize = 16;
/// `struct futex_waitv`: the address of the first waiter's word.
const WAITV_UADDR: u64 = 8;

/// Field `offset` of the `task_struct` at `task` (a BTF pointer the verifier lets us load from).
#[inline(always)]
fn task_field(task: *const u8, offset: u32) -> u32 {
    // SAFETY: `task` is a tracepoint's `struct task_struct *` argument and `offset` a member's
    // offset from the kernel's BTF; the verifier checks the load against the type.
    unsafe { core::ptr::read_volatile(task.add(offset as usize).cast::<u32>()) }
}

#[inline(always)]
fn tgid_of(task: *const u8) -> u32 {
    // SAFETY: a global the loader set.
    task_field(task, unsafe { core::ptr::read_volatile(&TASK_TGID_OFFSET) })
}

#[inline(always)]
fn tid_of(task: *const u8) -> u32 {
    // SAFETY: a global the loader set.
    task_field(task, unsafe { core::ptr::read_volatile(&TASK_PID_OFFSET) })
}

#[inline(always)]
fn min_block_ns() -> u64 {
    // SAFETY: a global the loader set.
    u64::from(unsafe { core::ptr::read_volatile(&THREADS_MIN_BLOCK_US) }) * 1_000
}

#[inline(always)]
fn bump(slot: u32) {
    if let Some(v) = THREAD_HITS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned u64 of this CPU's value.
        unsafe { fetch_add(v, 1) };
    }
}

/// Thread `tid`'s stats, claiming its slot when `claim`.
#[inline(always)]
fn stats(tid: u32, claim: bool) -> Option<&'static mut ThreadStats> {
    match thread_slot::<ThreadStats, THREAD_SLOTS>(&SCHED_THREADS, tid, claim, || {}) {
        // SAFETY: an array value, valid for the program's run.
        Some(p) => Some(unsafe { &mut *p }),
        None => {
            if claim {
                count(Counter::ThreadSlotTaken);
            }
            None
        }
    }
}

/// Adds `ns` to the tally of `key` in `map`, creating it.
#[inline(always)]
fn tally<K>(map: &HashMap<K, Tally>, key: &K, ns: u64) {
    let mut value = map.get_ptr_mut(key);
    if value.is_none() {
        let _ = map.insert(key, Tally::default(), BPF_NOEXIST as u64);
        value = map.get_ptr_mut(key);
    }
    let Some(t) = value else {
        count(Counter::ThreadMapFull);
        return;
    };
    // SAFETY: valid, aligned u64s of a map value.
    unsafe {
        fetch_add(&raw mut (*t).count, 1);
        fetch_add(&raw mut (*t).total_ns, ns);
        if ns > (*t).max_ns {
            (*t).max_ns = ns;
        }
    }
}

/// The totals of lock `addr`, created with `kind`.
#[inline(always)]
fn lock_stats(addr: u64, kind: LockKind) -> Option<&'static mut LockStats> {
    if LOCK_STATS.get_ptr_mut(addr).is_none() {
        let fresh = LockStats {
            kind: kind as u32,
            eagain: 0,
            acquisitions: 0,
            contended: 0,
            wait_ns: 0,
            wait_max_ns: 0,
            hold_ns: 0,
            hold_max_ns: 0,
            releases: 0,
            wait_hist: [0; profiler_common::threads::LOG2_BUCKETS],
        };
        let _ = LOCK_STATS.insert(addr, fresh, BPF_NOEXIST as u64);
    }
    match LOCK_STATS.get_ptr_mut(addr) {
        // SAFETY: a map value, valid for the program's run.
        Some(p) => Some(unsafe { &mut *p }),
        None => {
            count(Counter::ThreadMapFull);
            None
        }
    }
}

/// A contended wait of `ns` at `lock`.
#[inline(always)]
fn add_wait(lock: &mut LockStats, ns: u64) {
    // SAFETY: valid, aligned u64s of a map value.
    unsafe {
        fetch_add(&raw mut lock.contended, 1);
        fetch_add(&raw mut lock.wait_ns, ns);
    }
    if ns > lock.wait_max_ns {
        lock.wait_max_ns = ns;
    }
    let b = log2_bucket(ns) & 63;
    if b < lock.wait_hist.len() {
        lock.wait_hist[b] = lock.wait_hist[b].wrapping_add(1);
    }
}

// ---- scheduling ----

/// `sched_switch(bool preempt, struct task_struct *prev, struct task_struct *next,
/// unsigned int prev_state)`.
#[btf_tracepoint(function = "sched_switch")]
pub fn threads_sched_switch(ctx: BtfTracePointContext) -> u32 {
    let prev: *const u8 = ctx.arg(1);
    let next: *const u8 = ctx.arg(2);
    let target = target_tgid();
    let prev_is = tgid_of(prev) == target;
    let next_is = tgid_of(next) == target;
    if !prev_is && !next_is {
        return 0;
    }
    if stopped() {
        return 0;
    }
    bump(hit::SWITCH);
    // SAFETY: helpers without arguments.
    let (now, cpu) = unsafe { (bpf_ktime_get_ns(), bpf_get_smp_processor_id()) };
    if prev_is {
        let preempt: u64 = ctx.arg(0);
        let state: u64 = ctx.arg(3);
        switch_out(&ctx, prev, preempt as u8 != 0, state as u32, now, cpu);
    }
    if next_is {
        switch_in(tid_of(next), now, cpu);
    }
    0
}

#[inline(always)]
fn switch_out(
    ctx: &BtfTracePointContext,
    task: *const u8,
    preempt: bool,
    state: u32,
    now: u64,
    cpu: u32,
) {
    let tid = tid_of(task);
    let Some(st) = stats(tid, true) else {
        return;
    };
    if st.offcpu_since != 0 {
        // Off the CPU already: the kernel ran the thread again without a `sched_switch` that
        // named it as the next task (seen on 6.18 under load, in the kernel's own trace events
        // too). Its last time off the CPU ends here, at its wake-up if one was seen: a block it
        // ended is still a block.
        count(Counter::ThreadSwitchInUnseen);
        let back = if st.woken_at >= st.offcpu_since && st.woken_at <= now {
            st.woken_at
        } else {
            now
        };
        switch_in(tid, back, cpu);
    }
    let Some(st) = stats(tid, false) else {
        return;
    };
    if st.oncpu_since != 0 && now > st.oncpu_since {
        st.on_cpu_ns += now - st.oncpu_since;
    }
    st.oncpu_since = 0;
    st.offcpu_since = now;
    st.cpu_plus1 = cpu + 1;
    // `prev` is the current task. Read at every switch-out, so that a name the thread gives
    // itself after it starts is the one kept, even if it exits before the user side looks.
    if let Ok(comm) = bpf_get_current_comm() {
        st.comm = comm;
    }
    if state & TASK_EXITING != 0 {
        st.off_kind = off_kind::DEAD;
        return;
    }
    if preempt || state == 0 {
        st.involuntary += 1;
        st.off_kind = off_kind::RUNNABLE;
        st.woken_at = now;
        return;
    }
    st.voluntary += 1;
    st.off_kind = off_kind::BLOCKED;
    st.woken_at = 0;
    // SAFETY: `task` is the tracepoint's task argument; the helper returns its user registers.
    let regs = unsafe { bpf_task_pt_regs(task as *mut _) } as *const u8;
    let nr = if regs.is_null() {
        -1
    } else {
        // SAFETY: `orig_ax` of the `struct pt_regs` the helper returned (a BTF pointer).
        unsafe { core::ptr::read_volatile(regs.add(ORIG_AX).cast::<i64>()) }
    };
    st.reason = block_reason(nr, state) as u32;
    // A Python thread's Python stack (a CPython target's; nothing where there is none).
    st.block_python = crate::python::tracepoint_stack(tid_of(task));
    if !regs.is_null() {
        // SAFETY: fields of the `struct pt_regs` the helper returned (a BTF pointer).
        let (pc, sp, bp) = unsafe {
            (
                core::ptr::read_volatile(regs.add(REG_IP).cast::<u64>()),
                core::ptr::read_volatile(regs.add(REG_SP).cast::<u64>()),
                core::ptr::read_volatile(regs.add(REG_BP).cast::<u64>()),
            )
        };
        for site in st.sites {
            if site.stack != 0 && (pc, sp, bp) == (site.pc, site.sp, site.bp) {
                // Blocking where it blocked before: the same stack.
                st.block_stack = site.stack;
                return;
            }
        }
        let stack = take_stack(ctx, regs, hidden_return(st));
        st.sites[(st.site_next & 1) as usize] = BlockSite { pc, sp, bp, stack };
        st.site_next ^= 1;
        st.block_stack = stack;
        return;
    }
    st.block_stack = take_stack(ctx, regs, hidden_return(st));
}

/// Inside a lock call with a return probe, the probe's trampoline hides the call's return
/// address: the one its entry saw.
#[inline(always)]
fn hidden_return(st: &ThreadStats) -> u64 {
    let returns =
        profiler_common::threads::LockOp::from_u8(st.lock_op as u8).is_some_and(|op| op.returns());
    if st.lock_addr != 0 && returns {
        st.lock_ret
    } else {
        0
    }
}

#[inline(always)]
fn switch_in(tid: u32, now: u64, cpu: u32) {
    let Some(st) = stats(tid, true) else {
        return;
    };
    let since = st.offcpu_since;
    if since != 0 && now > since {
        let off = now - since;
        let runnable = if st.off_kind == off_kind::BLOCKED {
            let woke = if st.woken_at >= since && st.woken_at <= now {
                st.woken_at
            } else {
                now
            };
            let blocked = woke - since;
            let reason = (st.reason & 3) as usize;
            st.blocked_ns[reason] += blocked;
            st.blocks[reason] += 1;
            if blocked < min_block_ns() {
                st.short_blocks += 1;
            } else {
                // A block whose stack could not be taken (counted in `ThreadStackFailed`) is
                // tallied under stack 0, so that every long block is in the tallies.
                let key = BlockKey {
                    tid,
                    reason: reason as u32,
                    stack: st.block_stack,
                    python: st.block_python,
                };
                tally(&BLOCK_STACKS, &key, blocked);
            }
            now - woke
        } else {
            off
        };
        st.runnable_ns += runnable;
        st.off_cpu_ns += off;
        let b = log2_bucket(runnable) & 63;
        if b < st.runq_hist.len() {
            st.runq_hist[b] = st.runq_hist[b].wrapping_add(1);
        }
    }
    if st.cpu_plus1 != 0 && st.cpu_plus1 != cpu + 1 {
        st.migrations += 1;
    }
    st.cpu_plus1 = cpu + 1;
    st.oncpu_since = now;
    st.offcpu_since = 0;
    st.off_kind = off_kind::NONE;
}

/// `sched_waking(struct task_struct *p)`: ends the blocked part of `p`'s off-CPU time, and
/// names the target thread that woke a futex waiter. `sched_waking` runs in the waker's context;
/// `sched_wakeup` may run on the wakee's CPU when the wake-up is queued there (then the current
/// task is whatever ran on that CPU, and the waker would be lost).
#[btf_tracepoint(function = "sched_waking")]
pub fn threads_sched_wakeup(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    if tgid_of(task) != target_tgid() || stopped() {
        return 0;
    }
    bump(hit::WAKEUP);
    let tid = tid_of(task);
    let Some(st) = stats(tid, false) else {
        return 0;
    };
    if st.off_kind == off_kind::BLOCKED && st.woken_at == 0 {
        // SAFETY: a helper without arguments.
        st.woken_at = unsafe { bpf_ktime_get_ns() };
    }
    if st.futex_addr != 0 && st.waker == 0 {
        let (waker, tgid) = current_ids();
        if tgid == target_tgid() && waker != tid {
            st.waker = waker;
        }
    }
    0
}

/// `sched_wakeup_new(struct task_struct *p)`: a new thread, runnable from now.
#[btf_tracepoint(function = "sched_wakeup_new")]
pub fn threads_sched_wakeup_new(ctx: BtfTracePointContext) -> u32 {
    let task: *const u8 = ctx.arg(0);
    if tgid_of(task) != target_tgid() || stopped() {
        return 0;
    }
    bump(hit::WAKEUP);
    let Some(st) = stats(tid_of(task), true) else {
        return 0;
    };
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    st.offcpu_since = now;
    st.woken_at = now;
    st.off_kind = off_kind::RUNNABLE;
    0
}

// ---- futexes ----

#[tracepoint]
pub fn threads_futex_enter(ctx: TracePointContext) -> u32 {
    // SAFETY: offsets inside the record described by the tracepoint's format file.
    let (Ok(addr), Ok(op)) = (unsafe { ctx.read_at::<u64>(FUTEX_UADDR) }, unsafe {
        ctx.read_at::<u64>(FUTEX_OP)
    }) else {
        return 0;
    };
    futex_enter(addr, op as u32 & futex_op::CMD_MASK);
    0
}

#[tracepoint]
pub fn threads_futex_waitv_enter(ctx: TracePointContext) -> u32 {
    // SAFETY: an offset inside the record described by the tracepoint's format file.
    let Ok(waiters) = (unsafe { ctx.read_at::<u64>(FUTEX_UADDR) }) else {
        return 0;
    };
    // The first waiter's word stands for the wait (the report names one address per wait).
    // SAFETY: reads the target's memory through the checked helper.
    let addr = unsafe { bpf_probe_read_user((waiters + WAITV_UADDR) as *const u64) }.unwrap_or(0);
    futex_enter(addr, futex_op::WAITV);
    0
}

#[inline(always)]
fn futex_enter(addr: u64, cmd: u32) {
    if !futex_op::waits(cmd) || addr == 0 {
        return;
    }
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || stopped() {
        return;
    }
    bump(hit::FUTEX);
    let Some(st) = stats(tid, true) else {
        return;
    };
    // SAFETY: a helper without arguments.
    st.futex_since = unsafe { bpf_ktime_get_ns() };
    st.futex_addr = addr;
    st.futex_off_start = st.off_cpu_ns;
    st.futex_op = cmd;
    st.waker = 0;
}

#[tracepoint]
pub fn threads_futex_exit(ctx: TracePointContext) -> u32 {
    futex_exit(&ctx)
}

#[tracepoint]
pub fn threads_futex_waitv_exit(ctx: TracePointContext) -> u32 {
    futex_exit(&ctx)
}

#[inline(always)]
fn futex_exit(ctx: &TracePointContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || stopped() {
        return 0;
    }
    let Some(st) = stats(tid, false) else {
        return 0;
    };
    let addr = st.futex_addr;
    if addr == 0 {
        return 0;
    }
    bump(hit::FUTEX);
    st.futex_addr = 0;
    // SAFETY: an offset inside the record described by the tracepoint's format file.
    let ret = unsafe { ctx.read_at::<i64>(SYSCALL_RET) }.unwrap_or(0);
    let waited = st.off_cpu_ns.saturating_sub(st.futex_off_start);
    if locks::wait_ended(st, addr, waited) {
        return 0;
    }
    if ret != EAGAIN && waited == 0 {
        return 0;
    }
    let Some(lock) = lock_stats(addr, LockKind::Futex) else {
        return 0;
    };
    if lock.kind != LockKind::Futex as u32 {
        // A probed lock's word waited on outside its lock functions: glibc's condition variable
        // taking its mutex back. Part of the condition wait, not contention.
        return 0;
    }
    if ret == EAGAIN {
        lock.eagain = lock.eagain.wrapping_add(1);
        return 0;
    }
    add_wait(lock, waited);
    let stack = st.block_stack;
    tally(&LOCK_WAITS, &LockWaitKey { addr, stack }, waited);
    if ret == 0 && st.waker != 0 {
        let key = HolderKey {
            addr,
            holder: st.waker,
            evidence: EVIDENCE_WAKER,
            stack: 0,
        };
        tally(&LOCK_HOLDERS, &key, waited);
    }
    0
}

/// The on-CPU time of thread `tid` so far, ns, for the functions family (None: the threads
/// family does not run, or the thread is not accounted).
#[inline(always)]
pub fn on_cpu_now(tid: u32, now: u64) -> Option<u64> {
    // SAFETY: a global the loader set.
    if unsafe { core::ptr::read_volatile(&THREADS_ON) } == 0 {
        return None;
    }
    let st = stats(tid, false)?;
    let running = if st.oncpu_since != 0 && now > st.oncpu_since {
        now - st.oncpu_since
    } else {
        0
    };
    Some(st.on_cpu_ns + running)
}
