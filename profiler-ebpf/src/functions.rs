//! The `functions` family: entry and return probes on chosen functions.
//!
//! Entry pushes a frame (function id, return-address slot, start time, the thread's probe-hit
//! count) on the thread's shadow stack. Return pops the frame whose return-address slot is the one
//! just returned through, so a call that never returns (longjmp, unwinding) is recognised as
//! abandoned and cannot corrupt the timing of any other call. A timed call also records how many of
//! this family's probe hits (its own entry and return, and those of the traced calls it made) fell
//! within its time, so the user side can take their cost out of it. All statistics are aggregated
//! here, so nothing is lost however fast the target calls.
//!
//! The per-call path touches little besides the thread's own map value (found once per probe):
//! the shadow stack and, next to it, the thread's tables of totals per function and calls per
//! call site. Only that thread's probes write them (a thread runs one probe at a time), so they
//! are plain loads and stores. A function or call site without room in those tables goes to the
//! shared maps with atomic updates instead. The duration histogram is shared by all threads: one
//! atomic add per call.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_NO_PREALLOC, BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user},
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray, StackTrace},
    programs::{ProbeContext, RetProbeContext, tracing::StackIdContext},
};
use profiler_common::{
    counters::Counter,
    functions::{
        CALLERS_MAX, CallerKey, Frame, FrameMem, FuncCpu, FuncMem, FuncStats, HIST_BUCKETS,
        MAX_DEPTH, NO_CPU, STACK_COUNTS_MAX, STACK_SAMPLE_ALWAYS, STACK_SAMPLE_EVERY, STACKS_MAX,
        ShadowStack, StackKey, THREAD_CALLERS, THREAD_FUNCS, THREAD_SLOT_WORDS, THREAD_SLOTS,
        THREAD_STACKS_MAX, THREAD_STATS_MAX, TIME_ALWAYS, ThreadFunc, ThreadKey, ThreadStats,
        hist_bucket, thread_caller_slot,
    },
};

use core::intrinsics::{AtomicOrdering, atomic_or};

mod calls;
pub(crate) use calls::{hidden_return, restore_returns, running_function};

use crate::common::{
    COUNTERS, compare_exchange, count, current_ids, fetch_add, fetch_max, load, named_as_in_common,
    stack_pointer, stopped, target_tgid, thread_slot,
};

/// `--time-every` − 1, set by the loader: after [`TIME_ALWAYS`] calls of a function on a thread,
/// a call is timed when the thread's random number has none of these bits set (0: every call).
#[unsafe(no_mangle)]
static TIME_EVERY_MASK: u32 = 0;

/// 1 when functions are traced, set by the loader: the memory family's probes then charge their
/// allocations and releases to the thread's traced calls in progress (see [`charge_memory`]).
#[unsafe(no_mangle)]
static FUNCS_ON: u32 = 0;

/// Per-function statistics, indexed by function id; resized by the loader to the number of
/// traced functions.
#[map]
static FUNC_STATS: PerCpuArray<FuncStats> = PerCpuArray::with_max_entries(1, 0);

/// Shadow stacks and the threads' own tables: thread `tid` takes slot `tid % THREAD_SLOTS` if it
/// is free (see [`thread_slot`]).
#[map]
static THREAD_VALUES: Array<ShadowStack> = Array::with_max_entries(THREAD_SLOTS, 0);

/// One bit per slot of `THREAD_VALUES`, set when a thread takes it: the user side reads only the
/// slots in use.
#[map]
static THREAD_VALUES_TAKEN: Array<[u64; THREAD_SLOT_WORDS]> = Array::with_max_entries(1, 0);

/// The values of threads whose slot another thread holds, by thread id (allocated as needed).
#[map]
static THREAD_STACKS: HashMap<u32, ShadowStack> =
    HashMap::with_max_entries(THREAD_STACKS_MAX, BPF_F_NO_PREALLOC);

/// An all-zero value to initialise a new thread's entry from (too big for the eBPF stack).
#[map]
static EMPTY_STACK: PerCpuArray<ShadowStack> = PerCpuArray::with_max_entries(1, 0);

/// Per (function, thread) totals of the calls that found no room in their thread's table (rarely
/// used, so allocated as needed).
#[map]
static THREAD_STATS: HashMap<ThreadKey, ThreadStats> =
    HashMap::with_max_entries(THREAD_STATS_MAX, BPF_F_NO_PREALLOC);

/// Exact call counts per (function, return address) that found no room in their thread's table
/// (allocated as needed).
#[map]
static CALLERS: HashMap<CallerKey, u64> = HashMap::with_max_entries(CALLERS_MAX, BPF_F_NO_PREALLOC);

/// Sampled full user stacks per function.
#[map]
static STACK_COUNTS: HashMap<StackKey, u64> = HashMap::with_max_entries(STACK_COUNTS_MAX, 0);

/// Which links count for each function (see `profiler_common::functions::cookie`).
#[map]
static SITE_LINKS: Array<u32> = Array::with_max_entries(1, 0);

#[map]
static STACKS: StackTrace = StackTrace::with_max_entries(STACKS_MAX, 0);

/// The on-CPU split of the timed calls, when the threads family runs (sized like `FUNC_STATS`).
#[map]
static FUNC_CPU: PerCpuArray<FuncCpu> = PerCpuArray::with_max_entries(1, 0);

/// The memory of the calls that returned, when the memory family runs (sized like `FUNC_STATS`).
#[map]
static FUNC_MEM: PerCpuArray<FuncMem> = PerCpuArray::with_max_entries(1, 0);

named_as_in_common!(
    functions,
    maps: [
        FUNC_STATS,
        THREAD_VALUES,
        THREAD_VALUES_TAKEN,
        THREAD_STACKS,
        EMPTY_STACK,
        THREAD_STATS,
        CALLERS,
        STACK_COUNTS,
        STACKS,
        TRAMPOLINE,
        SITE_LINKS,
        FUNC_CPU,
        FUNC_MEM,
    ],
    programs: [fn_entry => FN_ENTRY, fn_return => FN_RETURN]
);

#[uprobe]
pub fn fn_entry(ctx: ProbeContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_fn_entry(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[uretprobe]
pub fn fn_return(ctx: RetProbeContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_fn_return(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

/// The function id this probe was attached for, unless the hit does not count: the link is not
/// (or no longer) the function's current one, or the budget took the function away.
#[inline(always)]
fn function_id<C: EbpfContext>(ctx: &C) -> Option<u32> {
    // SAFETY: the helper only reads the cookie of the link that ran this program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let (func, generation) = (cookie as u32, (cookie >> 32) as u32);
    (SITE_LINKS.get(func) == Some(&generation)).then_some(func)
}

/// The instruction pointer at the probe: in a return probe, the return address the call went
/// back to (the kernel restores it before running the return probes).
#[inline(always)]
fn instruction_pointer(regs: *mut aya_ebpf::bindings::pt_regs) -> u64 {
    // SAFETY: `regs` is the program's context (struct pt_regs); the verifier allows reads of it.
    unsafe { (*regs).rip }
}

fn try_fn_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    let Some(func) = function_id(ctx) else {
        return Ok(());
    };
    // Entry probes sit where the return address is still on top of the stack.
    let ret_slot = stack_pointer(ctx.regs);

    let Some(stack) = thread_stack(tid) else {
        // No shadow stack (the map is full, counted): the call is not timed, but it began.
        shared_entry(func)?;
        return Ok(());
    };
    // SAFETY: the map value lives for the program's run; only this thread writes its entry.
    let stack = unsafe { &mut *stack };
    let hits_before = stack.hits;
    stack.hits = hits_before + 1;

    // Count the entry: in the thread's table, or in the shared statistics (whose calls are all
    // timed: they are rare, and nothing there counts calls per thread).
    let own = &mut stack.funcs[func_slot(func)];
    let timed = if own.func_plus1 == func.wrapping_add(1) || own.func_plus1 == 0 {
        own.func_plus1 = func.wrapping_add(1);
        own.entries += 1;
        own.entries <= TIME_ALWAYS || pick_for_timing(stack, tid)
    } else {
        shared_entry(func)?;
        true
    };

    let mut depth = pop_abandoned(stack, ret_slot);
    depth = pop_reused_slot(stack, depth, ret_slot);
    if depth >= MAX_DEPTH {
        stack.depth = depth as u32;
        count(Counter::ShadowStackOverflow);
        return Ok(());
    }
    // Read last, so the probe's own work is not part of the call's time.
    // SAFETY: the helper takes no arguments.
    let start_ns = if timed {
        unsafe { bpf_ktime_get_ns() }
    } else {
        0
    };
    let cpu_start = if timed {
        crate::threads::on_cpu_now(tid, start_ns).unwrap_or(NO_CPU)
    } else {
        NO_CPU
    };
    // SAFETY: reads the target's stack through the checked helper.
    let ret_addr = unsafe { bpf_probe_read_user(ret_slot as *const u64) }.unwrap_or(0);
    stack.frames[slot(depth)] = Frame {
        func,
        _pad: 0,
        ret_slot,
        ret_addr,
        hits_before,
        start_ns,
        cpu_start,
        mem: FrameMem {
            allocs: 0,
            alloc_bytes: 0,
            frees: 0,
            freed_bytes: 0,
            peak: 0,
        },
    };
    stack.depth = depth as u32 + 1;
    Ok(())
}

fn try_fn_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    let Some(func) = function_id(ctx) else {
        return Ok(());
    };
    // `ret` has popped the return address: its slot is just below the stack pointer.
    let ret_slot = stack_pointer(ctx.regs).wrapping_sub(8);
    let ret_addr = instruction_pointer(ctx.regs);

    let Some(stack) = own_stack(tid) else {
        unpaired_return(func);
        return Ok(());
    };
    // SAFETY: as in entry: this thread's own map value.
    let stack = unsafe { &mut *stack };
    stack.hits += 1;
    let mut depth = pop_abandoned(stack, ret_slot);
    let mut start = None;
    if depth > 0 {
        let top = &stack.frames[slot(depth - 1)];
        if top.ret_slot == ret_slot && top.func == func {
            start = Some((
                top.start_ns,
                stack.hits.wrapping_sub(top.hits_before),
                top.cpu_start,
                top.mem,
            ));
            depth -= 1;
        }
    }
    stack.depth = depth as u32;
    let Some((start, hits, cpu_start, mem)) = start else {
        unpaired_return(func);
        return Ok(());
    };
    if mem.touched() {
        fold_memory(func, &mem);
    }
    let own = &mut stack.funcs[func_slot(func)];
    let owned = own.func_plus1 == func.wrapping_add(1);
    // Timed calls so far, of this thread (or of this CPU, for the shared statistics); 0 for a
    // call that was not timed (only a function in the thread's table has those).
    let mut timed = 0;
    if start == 0 {
        if owned {
            own.untimed += 1;
        }
    } else {
        // SAFETY: the helper takes no arguments.
        let now = unsafe { bpf_ktime_get_ns() };
        let ns = now.saturating_sub(start);
        if cpu_start != NO_CPU {
            split_cpu(func, tid, now, ns, cpu_start);
        }
        let stats = FUNC_STATS.get_ptr_mut(func).ok_or(())?;
        timed = if owned {
            record_own(own, ns);
            own.probe_hits += hits;
            own.count
        } else {
            record_thread(func, tid, ns);
            // SAFETY: `stats` points at this CPU's value for `func`, valid for the program's run.
            unsafe {
                fetch_add(&raw mut (*stats).probe_hits, hits);
                record_shared(&mut *stats, ns)
            }
        };
        // Opaque for the same reason as in `slot`: the bound must be checked on the value used.
        let bucket = core::hint::black_box(hist_bucket(ns));
        if bucket < HIST_BUCKETS {
            // SAFETY: a valid, aligned u64 in this CPU's map value; `bucket` is in bounds.
            unsafe { fetch_add((*stats).hist.as_mut_ptr().add(bucket), 1) };
        }
    }

    let site = &mut stack.callers[caller_slot(func, ret_addr)];
    if site.func_plus1 == func.wrapping_add(1) && site.ret_addr == ret_addr {
        site.calls += 1;
    } else if site.func_plus1 == 0 {
        site.func_plus1 = func.wrapping_add(1);
        site.ret_addr = ret_addr;
        site.calls = 1;
    } else {
        increment(
            &CALLERS,
            CallerKey {
                func,
                _pad: 0,
                ret_addr,
            },
            Counter::CallerMapFull,
        );
    }

    if timed != 0 && (timed <= STACK_SAMPLE_ALWAYS || timed % STACK_SAMPLE_EVERY == 0) {
        sample_stack(ctx, func, ret_addr);
    }
    Ok(())
}

/// Adds a timed call of `ns` to `func`'s on-CPU split: the thread's on-CPU time now, less
/// `cpu_start` at the entry.
#[inline(always)]
fn split_cpu(func: u32, tid: u32, now: u64, ns: u64, cpu_start: u64) {
    let Some(cpu_now) = crate::threads::on_cpu_now(tid, now) else {
        return;
    };
    let Some(split) = FUNC_CPU.get_ptr_mut(func) else {
        return;
    };
    let on = cpu_now.saturating_sub(cpu_start).min(ns);
    let share = (on * 1_000_000).checked_div(ns).unwrap_or(0);
    // SAFETY: this CPU's value for `func`, valid for the program's run.
    unsafe {
        fetch_add(&raw mut (*split).calls, 1);
        fetch_add(&raw mut (*split).total_ns, ns);
        fetch_add(&raw mut (*split).on_cpu_ns, on);
        fetch_add(&raw mut (*split).share_ppm_sum, share);
        if share > (*split).max_share_ppm {
            (*split).max_share_ppm = share;
        }
    }
}

/// Adds a returned call's allocations and releases to `func`'s memory statistics.
#[inline(always)]
fn fold_memory(func: u32, mem: &FrameMem) {
    let Some(sums) = FUNC_MEM.get_ptr_mut(func) else {
        return;
    };
    // SAFETY: this CPU's value for `func`, valid for the program's run; each pointer is a
    // valid, aligned u64 in it.
    unsafe {
        fetch_add(&raw mut (*sums).allocs, mem.allocs);
        fetch_add(&raw mut (*sums).alloc_bytes, mem.alloc_bytes);
        fetch_add(&raw mut (*sums).frees, mem.frees);
        fetch_add(&raw mut (*sums).freed_bytes, mem.freed_bytes);
        fetch_add(&raw mut (*sums).peak_sum, mem.peak);
        fetch_max(&raw mut (*sums).max_peak, mem.peak);
    }
}

/// Charges an allocator call of the memory family's (`frees` blocks of `freed` bytes released,
/// then `allocs` blocks of `allocated` bytes allocated) to every traced call in progress on
/// thread `tid`: a callee's allocation is its callers' too. Nothing to do unless functions are
/// traced: one load of a global then, whatever the memory probes cost otherwise.
#[inline(always)]
pub(crate) fn charge_memory(tid: u32, allocs: u64, allocated: u64, frees: u64, freed: u64) {
    // SAFETY: a read of a global the loader initialised; volatile so the compiler does not fold
    // the initial value in.
    if unsafe { core::ptr::read_volatile(&FUNCS_ON) } == 0 {
        return;
    }
    let Some(stack) = own_stack(tid) else {
        return;
    };
    // SAFETY: this thread's own map value: only its probes write it, one at a time.
    let stack = unsafe { &mut *stack };
    // Past MAX_DEPTH (calls too deep to keep) the outer frames still hold the call.
    let depth = (stack.depth as usize).min(MAX_DEPTH);
    for i in 0..MAX_DEPTH {
        if i >= depth {
            break;
        }
        stack.frames[slot(i)]
            .mem
            .charge(allocs, allocated, frees, freed);
    }
}

/// Counts an entry of `func` in the shared statistics.
#[inline(always)]
fn shared_entry(func: u32) -> Result<(), ()> {
    let stats = FUNC_STATS.get_ptr_mut(func).ok_or(())?;
    // SAFETY: a valid, aligned u64 inside this CPU's map value.
    unsafe { fetch_add(&raw mut (*stats).entries, 1) };
    Ok(())
}

/// A return probe hit with no frame to pair it with (its entry was not seen).
#[inline(always)]
fn unpaired_return(func: u32) {
    if let Some(stats) = FUNC_STATS.get_ptr_mut(func) {
        // SAFETY: a valid, aligned u64 inside this CPU's map value.
        unsafe { fetch_add(&raw mut (*stats).untimed_returns, 1) };
    }
    count(Counter::UnmatchedReturns);
}

/// Whether to time a call of a function the thread has made more than [`TIME_ALWAYS`] times:
/// one in `--time-every`, drawn from the thread's own xorshift generator (no helper call).
#[inline(always)]
fn pick_for_timing(stack: &mut ShadowStack, tid: u32) -> bool {
    // SAFETY: a read of a global the loader initialised; volatile so the compiler does not fold
    // the initial value in.
    let mask = unsafe { core::ptr::read_volatile(&TIME_EVERY_MASK) };
    if mask == 0 {
        return true;
    }
    let mut x = stack.rng;
    if x == 0 {
        x = tid.wrapping_mul(0x9e37_79b9) | 1;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    stack.rng = x;
    x & mask == 0
}

/// Thread `tid`'s value, if it has one.
#[inline(always)]
fn own_stack(tid: u32) -> Option<*mut ShadowStack> {
    if let Some(slot) = thread_slot::<_, THREAD_SLOTS>(&THREAD_VALUES, tid, false, || {}) {
        return Some(slot);
    }
    THREAD_STACKS.get_ptr_mut(tid)
}

/// Sets the bit of thread `tid`'s slot in `THREAD_VALUES_TAKEN`.
#[inline(always)]
fn mark_taken(tid: u32) {
    let index = (tid & (THREAD_SLOTS - 1)) as usize;
    let word = core::hint::black_box(index / 64) & (THREAD_SLOT_WORDS - 1);
    if let Some(words) = THREAD_VALUES_TAKEN.get_ptr_mut(0) {
        // SAFETY: a valid, aligned u64 of an array value (`word` is in bounds). SeqCst as for
        // `fetch_add` (see common.rs).
        unsafe {
            atomic_or::<u64, u64, { AtomicOrdering::SeqCst }>(
                (*words).as_mut_ptr().add(word),
                1 << (index % 64),
            )
        };
    }
}

/// This thread's value, made on first use: its slot if free, else an entry in the hash map.
#[inline(always)]
fn thread_stack(tid: u32) -> Option<*mut ShadowStack> {
    if let Some(slot) =
        thread_slot::<_, THREAD_SLOTS>(&THREAD_VALUES, tid, true, || mark_taken(tid))
    {
        return Some(slot);
    }
    if let Some(stack) = THREAD_STACKS.get_ptr_mut(tid) {
        return Some(stack);
    }
    let empty = EMPTY_STACK.get_ptr(0)?;
    #[expect(
        clippy::needless_borrows_for_generic_args,
        reason = "a copy would not fit the 512-byte eBPF stack"
    )]
    // SAFETY: `empty` points at a map value (all zero, never written).
    let inserted = THREAD_STACKS.insert(tid, unsafe { &*empty }, BPF_NOEXIST as u64);
    if inserted.is_err() {
        count(Counter::ThreadStackMapFull);
        return None;
    }
    THREAD_STACKS.get_ptr_mut(tid)
}

/// Drops the frames of calls that cannot be in progress any more: those whose return-address
/// slot lies below `ret_slot` (deeper in the stack than the current call), whose stack memory has
/// been given up without a return (longjmp, exception or panic unwinding). Returns the new depth.
#[inline(always)]
fn pop_abandoned(stack: &ShadowStack, ret_slot: u64) -> usize {
    let start = (stack.depth as usize).min(MAX_DEPTH);
    let mut depth = start;
    for _ in 0..MAX_DEPTH {
        if depth == 0 || stack.frames[slot(depth - 1)].ret_slot >= ret_slot {
            break;
        }
        depth -= 1;
    }
    count_abandoned(start - depth);
    depth
}

/// Adds `n` to the abandoned-calls counter (once, after a loop: a helper call inside a loop
/// makes the verifier's work grow with every iteration).
#[inline(always)]
fn count_abandoned(n: usize) {
    if n == 0 {
        return;
    }
    if let Some(slot) = COUNTERS.get_ptr_mut(Counter::AbandonedCalls as u32) {
        // SAFETY: a valid, aligned u64 in a map value for the program's duration.
        unsafe { fetch_add(slot, n as u64) };
    }
}

/// The address of the target's uretprobe trampoline (its `[uprobes]` page), published by the
/// user side once the kernel has made it; 0 until then.
#[map]
static TRAMPOLINE: Array<u64> = Array::with_max_entries(1, 0);

/// Until the trampoline's address is known: the kernel maps it as high as it can, in the top
/// page below the 47-bit user limit; no code or stack of the target lives that high.
const TRAMPOLINE_FLOOR: u64 = 0x7fff_ffff_0000;

/// A new call whose return-address slot is the top frame's: either a tail call (the frame's call
/// goes on: its return address was replaced by the uretprobe trampoline, the kernel chains the
/// two) or the slot reused after a longjmp left the frame's call (the slot holds a real return
/// address: the frame is dead, and so is any other frame at that slot). Drops such dead frames;
/// returns the new depth. Reads the stack only on this rare path, and once: one check settles
/// every frame at the slot, which also keeps the program quick to verify.
#[inline(always)]
fn pop_reused_slot(stack: &ShadowStack, mut depth: usize, ret_slot: u64) -> usize {
    if depth == 0 || stack.frames[slot(depth - 1)].ret_slot != ret_slot {
        return depth;
    }
    // SAFETY: reads 8 bytes of the target's stack through the checked helper.
    let Ok(ret_addr) = (unsafe { bpf_probe_read_user(ret_slot as *const u64) }) else {
        return depth;
    };
    let trampoline = TRAMPOLINE.get(0).copied().unwrap_or(0);
    let chained = if trampoline != 0 {
        ret_addr == trampoline
    } else {
        ret_addr >= TRAMPOLINE_FLOOR
    };
    if chained {
        return depth;
    }
    let start = depth;
    for _ in 0..SAME_SLOT_MAX {
        if depth == 0 || stack.frames[slot(depth - 1)].ret_slot != ret_slot {
            break;
        }
        depth -= 1;
    }
    count_abandoned(start - depth);
    depth
}

/// Most frames `pop_reused_slot` drops at once (a tail-call chain is a few frames; anything left
/// goes at the next call). The bound keeps the verifier's work on the entry program small.
const SAME_SLOT_MAX: usize = 4;

/// The array index of shadow-stack position `i` (< MAX_DEPTH). Left to itself the compiler
/// folds the position into a pointer computed before the caller's bounds check, which the
/// verifier rejects; the opaque value and the mask (a no-op for valid positions) make every
/// access visibly in bounds.
#[inline(always)]
fn slot(i: usize) -> usize {
    const _: () = assert!(MAX_DEPTH.is_power_of_two());
    core::hint::black_box(i) & (MAX_DEPTH - 1)
}

/// The thread's table slot of function `func` (masked and opaque as in `slot`).
#[inline(always)]
fn func_slot(func: u32) -> usize {
    const _: () = assert!(THREAD_FUNCS.is_power_of_two());
    core::hint::black_box(func as usize) & (THREAD_FUNCS - 1)
}

/// The thread's call-site table slot of (`func`, `ret_addr`) (masked and opaque as in `slot`).
#[inline(always)]
fn caller_slot(func: u32, ret_addr: u64) -> usize {
    core::hint::black_box(thread_caller_slot(func, ret_addr)) & (THREAD_CALLERS - 1)
}

/// Adds one timed call to the thread's own totals of the function (only this thread writes
/// them: no atomics).
#[inline(always)]
fn record_own(own: &mut ThreadFunc, ns: u64) {
    own.count += 1;
    own.total_ns += ns;
    let (sq_hi, sq_lo) = square_u128(ns);
    let (lo, carry) = own.sum_sq_lo.overflowing_add(sq_lo);
    own.sum_sq_lo = lo;
    own.sum_sq_hi += sq_hi + u64::from(carry);
    let want = ns.saturating_add(1);
    if own.min_ns_plus1 == 0 || want < own.min_ns_plus1 {
        own.min_ns_plus1 = want;
    }
    if ns > own.max_ns {
        own.max_ns = ns;
    }
}

/// Adds one timed call to the function's shared statistics (all but the histogram, which every
/// call goes to); returns this CPU's count of them.
#[inline(always)]
fn record_shared(stats: &mut FuncStats, ns: u64) -> u64 {
    // SAFETY (all blocks below): each pointer is a valid, aligned u64 in this CPU's map value.
    let timed = unsafe {
        fetch_add(&raw mut stats.total_ns, ns);
        fetch_add(&raw mut stats.count, 1) + 1
    };
    let (sq_hi, sq_lo) = square_u128(ns);
    // SAFETY: as above.
    let old_lo = unsafe { fetch_add(&raw mut stats.sum_sq_lo, sq_lo) };
    let carry = u64::from(old_lo.checked_add(sq_lo).is_none());
    if sq_hi + carry != 0 {
        // SAFETY: as above.
        unsafe { fetch_add(&raw mut stats.sum_sq_hi, sq_hi + carry) };
    }
    // min and max: a few compare-and-swap rounds settle any race between two programs.
    let want = ns.saturating_add(1);
    for _ in 0..4 {
        // SAFETY: valid, aligned u64s in this CPU's map value.
        let cur = unsafe { load(&raw const stats.min_ns_plus1) };
        if (cur != 0 && cur <= want)
            || unsafe { compare_exchange(&raw mut stats.min_ns_plus1, cur, want) }
        {
            break;
        }
    }
    // SAFETY: as above.
    unsafe { fetch_max(&raw mut stats.max_ns, ns) };
    timed
}

/// `x * x` as a 128-bit number (high, low), from 32-bit halves.
#[inline(always)]
fn square_u128(x: u64) -> (u64, u64) {
    let hi = x >> 32;
    let lo = x & 0xffff_ffff;
    let lo_lo = lo * lo;
    let cross = hi * lo; // < 2^64; appears twice
    let hi_hi = hi * hi;
    // (hi*2^32 + lo)^2 = hi_hi*2^64 + 2*cross*2^32 + lo_lo
    let cross_lo = cross << 33; // low 64 bits of 2*cross*2^32
    let cross_hi = cross >> 31; // high bits of 2*cross*2^32
    let (low, carry) = lo_lo.overflowing_add(cross_lo);
    (hi_hi + cross_hi + u64::from(carry), low)
}

#[inline(always)]
fn record_thread(func: u32, tid: u32, ns: u64) {
    let key = ThreadKey { func, tid };
    let mut value = THREAD_STATS.get_ptr_mut(key);
    if value.is_none() {
        let zero = ThreadStats {
            count: 0,
            total_ns: 0,
        };
        // An insert that races with another CPU's insert of the same key fails harmlessly.
        let _ = THREAD_STATS.insert(key, zero, BPF_NOEXIST as u64);
        value = THREAD_STATS.get_ptr_mut(key);
    }
    match value {
        Some(value) => {
            // SAFETY: valid, aligned u64s inside a map value.
            unsafe {
                fetch_add(&raw mut (*value).count, 1);
                fetch_add(&raw mut (*value).total_ns, ns);
            }
        }
        None => count(Counter::ThreadStatsMapFull),
    }
}

/// Samples the user stack of a call as it returns: the walk starts at the return address.
#[inline(always)]
fn sample_stack(ctx: &RetProbeContext, func: u32, ret_addr: u64) {
    match ctx.get_stackid(&STACKS, BPF_F_USER_STACK as u64) {
        Ok(id) => increment(
            &STACK_COUNTS,
            StackKey {
                func,
                stack_id: id as u32,
                ret_addr,
            },
            Counter::StackSampleFailed,
        ),
        Err(_) => count(Counter::StackSampleFailed),
    }
}

/// Adds one to `map[key]`, creating it; a full map is counted in `full`.
#[inline(always)]
fn increment<K>(map: &HashMap<K, u64>, key: K, full: Counter) {
    if let Some(value) = map.get_ptr_mut(&key) {
        // SAFETY: a valid, aligned u64 map value.
        unsafe { fetch_add(value, 1) };
        return;
    }
    if map.insert(&key, 1, BPF_NOEXIST as u64).is_err() {
        // Another CPU may have created it in the meantime.
        match map.get_ptr_mut(&key) {
            // SAFETY: a valid, aligned u64 map value.
            Some(value) => unsafe {
                fetch_add(value, 1);
            },
            None => count(full),
        }
    }
}
