//! pthread mutexes and rwlocks: entry and return uprobes on libc's lock functions (the
//! [`LockOp`] in the cookie): the wait, the owner at entry, the locks each thread holds and where
//! it took them, the lock-order edges, and the hold time.

use aya_ebpf::{
    EbpfContext,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_common::{
    counters::Counter,
    threads::{
        EVIDENCE_OWNER_FIELD, EVIDENCE_WAKER, Edge, EdgeKey, HELD_MAX, Held, HolderKey, LockKind,
        LockOp, LockStats, LockWaitKey, MUTEX_OWNER_OFFSET, RWLOCK_WRITER_OFFSET, ThreadStats, hit,
    },
};

use super::{
    LOCK_BLOCKED, LOCK_EDGES, LOCK_HOLDERS, LOCK_WAITS, add_wait, bump, lock_stats, stats,
    take_stack, tally,
};
use crate::common::{count, current_ids, fetch_add, stack_pointer, stopped, target_tgid};

#[uprobe]
pub fn threads_lock_enter(ctx: ProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || stopped() {
        return 0;
    }
    bump(hit::LOCK_ENTRY);
    // SAFETY: the helper only reads the cookie of the link that ran this program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let Some(op) = LockOp::from_u8(cookie as u8) else {
        return 0;
    };
    bump(hit::LOCK_OP + op as u32);
    let addr: u64 = ctx.arg(0).unwrap_or(0);
    if addr == 0 {
        return 0;
    }
    let Some(st) = stats(tid, true) else {
        return 0;
    };
    if op.is_unlock() {
        release(st, addr, op.kind());
        return 0;
    }
    // SAFETY: a helper without arguments.
    st.lock_since = unsafe { bpf_ktime_get_ns() };
    st.lock_addr = addr;
    st.lock_off_start = st.off_cpu_ns;
    st.lock_op = op as u32;
    let owner_at = if op.is_rwlock() {
        RWLOCK_WRITER_OFFSET
    } else {
        MUTEX_OWNER_OFFSET
    };
    // SAFETY: reads the lock's owner field in the target's memory through the checked helper.
    let owner = unsafe { bpf_probe_read_user((addr + owner_at) as *const u32) }.unwrap_or(0);
    st.lock_owner = if owner == tid { 0 } else { owner };
    // The return address is still the caller's here: the return probe swaps it for its
    // trampoline only after the entry programs ran.
    let sp = stack_pointer(ctx.regs);
    // SAFETY: reads the top of the target's stack through the checked helper.
    st.lock_ret = unsafe { bpf_probe_read_user(sp as *const u64) }.unwrap_or(0);
    st.lock_sp = sp;
    // Where the owner took the lock: read now, while it still holds it.
    st.lock_stack = if st.lock_owner != 0 {
        held_stack(st.lock_owner, addr)
    } else {
        0
    };
    if !op.returns() {
        // A blocking lock function: acquired by the time it returns (its wait, if any, is
        // accounted when the futex wait inside it ends, see `wait_ended`).
        let stack = entry_stack(&ctx, st, sp);
        acquired(st, tid, addr, op, st.lock_since, stack, false, 0);
    }
    0
}

/// The caller's stack at a lock function's entry: the walk from the caller's frame pointer with
/// the return address in front (the walk starts past it). A call from where the thread last
/// called one (same return address, stack and frame pointers) reuses that stack.
#[inline(always)]
fn entry_stack(ctx: &ProbeContext, st: &mut ThreadStats, sp: u64) -> u64 {
    // SAFETY: the program's context is the probed thread's `struct pt_regs`.
    let bp = unsafe { (*ctx.regs).rbp };
    if st.acq_stack != 0 && (st.lock_ret, sp, bp) == (st.acq_ret, st.acq_sp, st.acq_bp) {
        return st.acq_stack;
    }
    let stack = take_stack(ctx, core::ptr::null(), st.lock_ret);
    (st.acq_ret, st.acq_sp, st.acq_bp, st.acq_stack) = (st.lock_ret, sp, bp, stack);
    stack
}

/// A futex wait on `addr` that waited `waited` ns (off the CPU) ended: if it is the wait of the
/// thread's lock call in progress, account it to the lock (true); false when it is not (the
/// futex is then another wait, or a probed lock's word waited on outside its lock functions).
#[inline(always)]
pub(super) fn wait_ended(st: &mut ThreadStats, addr: u64, waited: u64) -> bool {
    if st.lock_addr == 0 || addr.wrapping_sub(st.lock_addr) >= 32 {
        return false;
    }
    let Some(op) = LockOp::from_u8(st.lock_op as u8) else {
        return false;
    };
    if op.returns() {
        // Accounted when the call returns.
        if waited > 0 {
            st.lock_op |= LOCK_BLOCKED;
        }
        return true;
    }
    // Without a return probe, the call is still running while its return slot holds its
    // return address: past it, the word is waited on for another reason (a condition variable
    // taking its mutex back).
    // SAFETY: reads the target's stack through the checked helper.
    let slot = unsafe { bpf_probe_read_user(st.lock_sp as *const u64) }.unwrap_or(0);
    if slot != st.lock_ret {
        st.lock_addr = 0;
        return false;
    }
    if waited == 0 {
        return true;
    }
    let lock_addr = st.lock_addr;
    let Some(lock) = lock_stats(lock_addr, op.kind()) else {
        return true;
    };
    if st.lock_op & LOCK_BLOCKED == 0 {
        st.lock_op |= LOCK_BLOCKED;
        contention(st, lock, lock_addr, waited);
    } else {
        // Another wait of the same call (woken, but another thread took the lock first).
        // SAFETY: a valid, aligned u64 of a map value.
        unsafe { fetch_add(&raw mut lock.wait_ns, waited) };
    }
    // The lock is taken once the wait is over: its hold starts now.
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let n = st.held_n as usize;
    for i in 0..HELD_MAX {
        if i < n && st.held[i].addr == lock_addr {
            st.held[i].since = now;
        }
    }
    true
}

/// A contended acquisition of `addr` that waited `waited` ns: the lock's wait, the waiting stack
/// and who held the lock.
#[inline(always)]
fn contention(st: &ThreadStats, lock: &mut LockStats, addr: u64, waited: u64) {
    add_wait(lock, waited);
    tally(
        &LOCK_WAITS,
        &LockWaitKey {
            addr,
            stack: st.block_stack,
        },
        waited,
    );
    let (holder, evidence, holder_stack) = if st.lock_owner != 0 {
        (st.lock_owner, EVIDENCE_OWNER_FIELD, st.lock_stack)
    } else {
        (st.waker, EVIDENCE_WAKER, 0)
    };
    if holder != 0 {
        let key = HolderKey {
            addr,
            holder,
            evidence,
            stack: holder_stack,
        };
        tally(&LOCK_HOLDERS, &key, waited);
    }
}

#[uretprobe]
pub fn threads_lock_return(ctx: RetProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || stopped() {
        return 0;
    }
    bump(hit::LOCK_RETURN);
    let Some(st) = stats(tid, false) else {
        return 0;
    };
    let addr = st.lock_addr;
    if addr == 0 {
        return 0;
    }
    st.lock_addr = 0;
    let ret: u64 = ctx.ret();
    if ret as u32 != 0 {
        return 0;
    }
    let Some(op) = LockOp::from_u8(st.lock_op as u8) else {
        return 0;
    };
    let blocked = st.lock_op & LOCK_BLOCKED != 0;
    let waited = st.off_cpu_ns.saturating_sub(st.lock_off_start);
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // The caller's stack: the return probe runs at the return address, with the caller's frame
    // pointer restored, so the walk starts at the call site.
    let stack = take_stack(&ctx, core::ptr::null(), 0);
    acquired(st, tid, addr, op, now, stack, blocked, waited);
    0
}

/// Thread `tid` took lock `addr` with `op` at `now`, at `stack`, after a wait of `waited` ns if
/// it `blocked`: the acquisition, the contention, the lock-order edges and the held lock.
#[expect(
    clippy::too_many_arguments,
    reason = "one call site per probe, all in this module"
)]
#[inline(always)]
fn acquired(
    st: &mut ThreadStats,
    tid: u32,
    addr: u64,
    op: LockOp,
    now: u64,
    stack: u64,
    blocked: bool,
    waited: u64,
) {
    let Some(lock) = lock_stats(addr, op.kind()) else {
        return;
    };
    // SAFETY: a valid, aligned u64 of a map value.
    unsafe { fetch_add(&raw mut lock.acquisitions, 1) };
    // Contended: the thread blocked in the call, waiting for another to release the lock.
    if blocked {
        contention(st, lock, addr, waited);
    }
    if !op.is_try() {
        add_edges(st, tid, addr, op, stack);
    }
    let n = st.held_n as usize;
    if n < HELD_MAX {
        st.held[n & (HELD_MAX - 1)] = Held {
            addr,
            since: now,
            stack,
            op: op as u32,
            _pad: 0,
        };
    } else {
        count(Counter::HeldLocksOverflow);
    }
    st.held_n += 1;
}

/// Where thread `holder` took lock `addr`, from its held locks (0: not known).
#[inline(always)]
fn held_stack(holder: u32, addr: u64) -> u64 {
    let Some(h) = stats(holder, false) else {
        return 0;
    };
    for i in 0..HELD_MAX {
        if i < h.held_n as usize && h.held[i].addr == addr {
            return h.held[i].stack;
        }
    }
    0
}

/// Lock-order edges from every lock the thread holds to `addr`, taken now at `stack`.
#[inline(always)]
fn add_edges(st: &ThreadStats, tid: u32, addr: u64, op: LockOp, stack: u64) {
    for i in 0..HELD_MAX {
        if i >= st.held_n as usize {
            break;
        }
        let h = st.held[i];
        if h.addr == addr {
            // A recursive re-lock.
            continue;
        }
        let from_read = LockOp::from_u8(h.op as u8).is_some_and(|o| o.is_read());
        if from_read && op.is_read() {
            continue;
        }
        let key = EdgeKey {
            from: h.addr,
            to: addr,
        };
        if let Some(e) = LOCK_EDGES.get_ptr_mut(key) {
            // SAFETY: a valid, aligned u64 of a map value.
            unsafe { fetch_add(&raw mut (*e).count, 1) };
            continue;
        }
        let edge = Edge {
            count: 1,
            tid,
            from_op: h.op as u16,
            to_op: op as u16,
            from_stack: h.stack,
            to_stack: stack,
        };
        if LOCK_EDGES.insert(key, edge, BPF_NOEXIST as u64).is_err()
            && LOCK_EDGES.get_ptr(key).is_none()
        {
            count(Counter::ThreadMapFull);
        }
    }
}

/// The thread releases lock `addr`: its hold time.
#[inline(always)]
fn release(st: &mut ThreadStats, addr: u64, kind: LockKind) {
    let n = st.held_n as usize;
    let mut found = HELD_MAX;
    for i in 0..HELD_MAX {
        if i < n && st.held[i].addr == addr {
            found = i;
        }
    }
    if found == HELD_MAX {
        if n > HELD_MAX {
            // One of the untracked locks past the tracked ones.
            st.held_n -= 1;
        }
        return;
    }
    // SAFETY: a helper without arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let held = now.saturating_sub(st.held[found & (HELD_MAX - 1)].since);
    let last = n.min(HELD_MAX) - 1;
    st.held[found & (HELD_MAX - 1)] = st.held[last & (HELD_MAX - 1)];
    st.held_n -= 1;
    if let Some(lock) = lock_stats(addr, kind) {
        // SAFETY: valid, aligned u64s of a map value.
        unsafe {
            fetch_add(&raw mut lock.releases, 1);
            fetch_add(&raw mut lock.hold_ns, held);
        }
        if held > lock.hold_max_ns {
            lock.hold_max_ns = held;
        }
    }
}
