//! The `cpu` family: a sample of the target's running thread at every tick of a software
//! cpu-clock perf event (one per thread of the target, inherited by the threads it starts), its user stack unwound here from the unwind tables the
//! user side compiled (see `profiler_common::cpu`), its kernel stack from `bpf_get_stack`, and
//! the sample counted in the kernel by (thread, user stack, kernel stack).
//!
//! The walk is a `bpf_loop` over frames, its state in a per-CPU scratch value: the verifier checks
//! one frame's step once, whatever the depth. A step finds the pc's mapping and row with two
//! bounded binary searches, each its own `bpf_loop` as well.

use aya_ebpf::{
    bindings::{BPF_F_MMAPABLE, BPF_NOEXIST, bpf_perf_event_data, pt_regs},
    helpers::{
        bpf_get_current_comm, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_get_current_task_btf, bpf_get_stack, bpf_loop,
            bpf_probe_read_user as bpf_probe_read_user_raw, bpf_task_pt_regs,
        },
    },
    macros::{map, perf_event},
    maps::{Array, HashMap, PerCpuArray},
    programs::PerfEventContext,
};
use profiler_common::cpu::{
    CPU_STACK_DEPTH, CpuStack, KERNEL_STACK_DEPTH, MAPPING_SEARCH_STEPS, MAPPINGS_MAX, Mapping,
    MappingsHeader, RAW_BUDGET, RAW_STACK_BYTES, RBP_LOST, RBP_UNCHANGED, ROW_SEARCH_STEPS,
    RawSample, SIGFRAME_RBP, SIGFRAME_RIP, SIGFRAME_RSP, SampleKey, UnwindRow, cfa, count, end,
    flag,
};
use profiler_common::{
    event::{EventHeader, EventKind},
    threads::{STACK_HASH_SEED, stack_hash_step},
};

use crate::common::{EVENTS, current_ids, fetch_add, named_as_in_common, stopped, target_tgid};

/// 1 when kernel stacks are taken as well.
#[unsafe(no_mangle)]
static CPU_KERNEL_STACKS: u32 = 1;

/// Sized by the cpu family from the tables it loads (one row until then, so that a session
/// without the family costs nothing); memory-mapped by the user side, which writes the rows.
#[map]
static UNWIND_ROWS: Array<UnwindRow> = Array::with_max_entries(1, BPF_F_MMAPABLE);

#[map]
static CPU_MAPPINGS: Array<Mapping> = Array::with_max_entries(2 * MAPPINGS_MAX, 0);

#[map]
static CPU_MAPPINGS_HEADER: Array<MappingsHeader> = Array::with_max_entries(1, 0);

// The hash maps are preallocated (an insert from the timer interrupt then never waits on the
// allocator, nor fails for want of memory) and sized by the cpu family when it runs
// (`CPU_STACKS_MAX` and the like): one entry each until then.

#[map]
static CPU_SAMPLES: HashMap<SampleKey, u64> = HashMap::with_max_entries(1, 0);

#[map]
static CPU_STACKS: HashMap<u64, CpuStack> = HashMap::with_max_entries(1, 0);

#[map]
static CPU_THREADS: HashMap<u32, [u8; 16]> = HashMap::with_max_entries(1, 0);

#[map]
static CPU_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(count::SLOTS, 0);

#[map]
static CPU_SCRATCH: PerCpuArray<Walk> = PerCpuArray::with_max_entries(1, 0);

named_as_in_common!(
    cpu,
    maps: [
        UNWIND_ROWS,
        CPU_MAPPINGS,
        CPU_MAPPINGS_HEADER,
        CPU_SAMPLES,
        CPU_STACKS,
        CPU_THREADS,
        CPU_COUNTS,
        CPU_SCRATCH,
    ],
    programs: [cpu_sample => SAMPLE]
);

/// Still walking (a value of [`Walk::end`] no walk ends with).
const WALKING: u32 = u32::MAX;

/// The state of one sample's walk (this CPU's `CPU_SCRATCH`).
#[repr(C)]
pub struct Walk {
    /// The registers of the frame being unwound.
    pc: u64,
    sp: u64,
    bp: u64,
    /// The first mapping slot of the half in use, and how many mappings it holds.
    first: u64,
    mappings: u64,
    /// How the walk ended ([`end`], or [`WALKING`]) and what it met ([`flag`]).
    end: u32,
    flags: u32,
    /// Whether `pc` is a program counter (frame 0, or the frame a signal interrupted), looked up
    /// as is, rather than a return address, looked up one byte back.
    exact: u32,
    _pad: u32,
    /// Frames unwound by a row, and by the frame pointer for want of a table or a rule.
    by_table: u64,
    by_fp_no_table: u64,
    by_fp_unsupported: u64,
    /// Binary search state: `[lo, hi)`, and the value searched for.
    lo: u64,
    hi: u64,
    key: u64,
    user: CpuStack,
    kernel: CpuStack,
}

/// The perf event program: one sample.
#[perf_event]
pub fn cpu_sample(ctx: PerfEventContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 {
        add(count::OTHER, 1);
        return 0;
    }
    if stopped() {
        return 0;
    }
    add(count::SAMPLES, 1);
    let Some(w) = CPU_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // This CPU's scratch value; nothing else runs on this CPU while it is used (a perf event
    // program does not nest in itself).
    let budget = start_walk(w);
    // SAFETY: as above.
    let kernel = kernel_stack(&ctx, unsafe { &mut *w });
    // SAFETY: as above.
    if budget > 0 && !covered(w, unsafe { (*w).pc }) && take_raw() && send_raw(w, tid, kernel) {
        // A program just executed: its stack goes whole to the user side, which unwinds it
        // once the program's tables are in place.
        add(count::RAW_SENT, 1);
        remember_name(tid);
        return 0;
    }
    let how = walk_user(w);
    // SAFETY: as above; the walk is over.
    let user = store(unsafe { &(*w).user }, count::STACK_MAP_FULL);
    let python = crate::python::sample_stack(tid);
    let key = SampleKey {
        tid,
        how,
        user,
        kernel,
        python,
    };
    count_sample(&key);
    remember_name(tid);
    0
}

/// Takes one sample from [`MappingsHeader::raw_budget`], atomically (CPUs race for the last
/// ones); false when it is spent. A spent budget is left below zero (wrapped), which reads as
/// spent until the user side writes a new one.
#[inline(always)]
fn take_raw() -> bool {
    let Some(header) = CPU_MAPPINGS_HEADER.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: a valid, aligned u32 of entry 0 of the header array. SeqCst for the reason
    // `common::fetch_add` gives.
    let old = unsafe {
        core::intrinsics::atomic_xadd::<u32, u32, { core::intrinsics::AtomicOrdering::SeqCst }>(
            &raw mut (*header).raw_budget,
            u32::MAX,
        )
    };
    old > 0 && old <= RAW_BUDGET
}

/// Keeps the thread's name (it may change: the last one a sample saw is kept).
#[inline(always)]
fn remember_name(tid: u32) {
    if let Ok(comm) = bpf_get_current_comm() {
        let _ = CPU_THREADS.insert(tid, comm, 0);
    }
}

/// The kernel stack of the sample, stored; its hash (0: the tick interrupted user code, or the
/// stack could not be taken or stored).
#[inline(always)]
fn kernel_stack(ctx: &PerfEventContext, w: &mut Walk) -> u64 {
    if !kernel_stacks() || !in_kernel(ctx) {
        return 0;
    }
    // SAFETY: the helper writes at most the given size into this CPU's scratch stack.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.ctx.cast(),
            w.kernel.ips.as_mut_ptr().cast(),
            (8 * KERNEL_STACK_DEPTH) as u32,
            0,
        )
    };
    if bytes <= 0 {
        add(count::KERNEL_STACK_FAILED, 1);
        return 0;
    }
    w.kernel.len = (bytes as u64 / 8).min(KERNEL_STACK_DEPTH as u64);
    store(&w.kernel, count::STACK_MAP_FULL)
}

/// Sends the sample whole: its registers and the stack above its stack pointer (as much of
/// [`RAW_STACK_BYTES`] as is mapped). False when the ring buffer is full or the stack cannot be
/// read: the sample is then counted as usual.
#[inline(always)]
fn send_raw(w: *mut Walk, tid: u32, kernel: u64) -> bool {
    let Some(mut entry) = EVENTS.reserve::<RawSample>(0) else {
        add(count::RAW_FAILED, 1);
        return false;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` is a reserved record, written in full before it is submitted; `w` is
    // this CPU's walk state; the target's stack is read through the checked helper.
    let copied = unsafe {
        let (pc, sp, bp) = ((*w).pc, (*w).sp, (*w).bp);
        (*event).header = EventHeader {
            kind: EventKind::CpuRawSample as u16,
            _pad: 0,
            tid,
            timestamp_ns: 0,
            tgid: target_tgid(),
            _pad2: 0,
        };
        (*event).pc = pc;
        (*event).sp = sp;
        (*event).bp = bp;
        (*event).kernel = kernel;
        let stack = (*event).stack.as_mut_ptr().cast::<core::ffi::c_void>();
        // The stack's end may be nearer than the copy's: a smaller one then.
        let mut len = 0u64;
        for size in [RAW_STACK_BYTES, RAW_STACK_BYTES / 4, RAW_STACK_BYTES / 16] {
            if bpf_probe_read_user_raw(stack, size as u32, sp as *const _) == 0 {
                len = size as u64;
                break;
            }
        }
        (*event).len = len;
        if len != 0 {
            crate::functions::restore_returns(
                tid,
                sp,
                (*event).stack.as_mut_ptr(),
                len,
                RAW_STACK_BYTES,
            );
        }
        len
    };
    if copied == 0 {
        entry.discard(0);
        add(count::RAW_FAILED, 1);
        return false;
    }
    entry.submit(0);
    true
}

/// Whether a mapping of the list holds `pc`.
#[inline(always)]
fn covered(w: *mut Walk, pc: u64) -> bool {
    // SAFETY: this CPU's walk state, valid for the program's run.
    let (first, mappings) = unsafe { ((*w).first, (*w).mappings) };
    let lo = search(
        w,
        0,
        mappings,
        pc,
        MAPPING_SEARCH_STEPS,
        mapping_step as *const () as usize,
    );
    lo > 0
        && CPU_MAPPINGS
            .get((first + lo - 1) as u32)
            .is_some_and(|m| pc < m.end)
}

/// Whether the sample interrupted the kernel (its registers then hold a kernel address).
#[inline(always)]
fn in_kernel(ctx: &PerfEventContext) -> bool {
    // SAFETY: the program's context; the verifier allows reads of its registers.
    let ip = unsafe { (*ctx.ctx.cast::<bpf_perf_event_data>()).regs.rip };
    (ip as i64) < 0
}

/// Whether kernel stacks are taken.
#[inline(always)]
fn kernel_stacks() -> bool {
    // SAFETY: a read of a global the loader initialised; volatile so the compiler does not fold
    // the initial value in.
    unsafe { core::ptr::read_volatile(&CPU_KERNEL_STACKS) != 0 }
}

/// Adds `n` to slot `slot` of `CPU_COUNTS`.
#[inline(always)]
fn add(slot: u32, n: u64) {
    if let Some(p) = CPU_COUNTS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned u64 in a map value for the program's duration.
        unsafe { fetch_add(p, n) };
    }
}

/// Adds one sample at `key`.
#[inline(always)]
fn count_sample(key: &SampleKey) {
    if let Some(n) = CPU_SAMPLES.get_ptr_mut(key) {
        // SAFETY: a valid, aligned u64 map value.
        unsafe { fetch_add(n, 1) };
        return;
    }
    if CPU_SAMPLES.insert(key, 1, BPF_NOEXIST as u64).is_ok() {
        return;
    }
    // Another CPU inserted it first, or the map is full.
    match CPU_SAMPLES.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(n) => unsafe {
            fetch_add(n, 1);
        },
        None => add(count::SAMPLE_MAP_FULL, 1),
    }
}

/// Stores `stack` in `CPU_STACKS` under its hash, which it returns (0: empty, or not stored,
/// counted in `full`).
#[inline(always)]
fn store(stack: &CpuStack, full: u32) -> u64 {
    let len = stack.len as usize;
    if len == 0 {
        return 0;
    }
    let mut hash = STACK_HASH_SEED;
    for i in 0..CPU_STACK_DEPTH {
        if i >= len {
            break;
        }
        hash = stack_hash_step(hash, stack.ips[i]);
    }
    if hash == 0 {
        hash = 1;
    }
    // SAFETY: only tested for presence.
    if unsafe { CPU_STACKS.get(hash) }.is_none()
        && CPU_STACKS
            .insert(hash, stack, BPF_NOEXIST as u64)
            .is_err()
        // SAFETY: as above.
        && unsafe { CPU_STACKS.get(hash) }.is_none()
    {
        add(full, 1);
        return 0;
    }
    hash
}

/// Sets the walk up from the current thread's user registers and the mapping list in use;
/// returns the list's [`MappingsHeader::raw_budget`]. Without user registers, the walk's end is
/// set to [`end::NO_USER`] (and 0 returned).
#[inline(always)]
fn start_walk(w: *mut Walk) -> u32 {
    // SAFETY: this CPU's walk state, valid for the program's run; a local borrow, ended before
    // any loop runs.
    let w = unsafe { &mut *w };
    w.user.len = 0;
    w.kernel.len = 0;
    w.flags = 0;
    w.by_table = 0;
    w.by_fp_no_table = 0;
    w.by_fp_unsupported = 0;
    w.end = end::NO_USER;
    // SAFETY: the helper takes no arguments and returns the current task.
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: `task` is the current task, as the helper returned it.
    let regs = unsafe { bpf_task_pt_regs(task) } as usize;
    let reg = |field: usize| {
        // SAFETY: a kernel pointer the helper returned, read through the checked helper.
        unsafe { bpf_probe_read_kernel((regs + field) as *const u64) }.ok()
    };
    let (Some(pc), Some(sp), Some(bp)) = (
        reg(core::mem::offset_of!(pt_regs, rip)),
        reg(core::mem::offset_of!(pt_regs, rsp)),
        reg(core::mem::offset_of!(pt_regs, rbp)),
    ) else {
        return 0;
    };
    if regs == 0 || pc == 0 || (pc as i64) < 0 {
        return 0;
    }
    w.pc = pc;
    w.sp = sp;
    w.bp = bp;
    w.exact = 1;
    w.end = WALKING;
    let header = CPU_MAPPINGS_HEADER
        .get(0)
        .copied()
        .unwrap_or(MappingsHeader::default());
    let half = header.active & 1;
    w.first = (half * MAPPINGS_MAX) as u64;
    // A branch, not an index: the verifier refuses a computed offset into the stack.
    let count = if half == 0 {
        header.count[0]
    } else {
        header.count[1]
    };
    w.mappings = count.min(MAPPINGS_MAX) as u64;
    // Past RAW_BUDGET: spent, and wrapped below zero (see `take_raw`).
    if header.raw_budget <= RAW_BUDGET {
        header.raw_budget
    } else {
        0
    }
}

/// Walks the current thread's user stack into `w.user`; returns the sample key's `how`.
///
/// `w` is a raw pointer, not a `&mut`: the walk's callback changes the state through its own
/// pointer during `bpf_loop`, which a `&mut` argument would let the compiler assume cannot
/// happen (it could then keep fields in registers across the call, or move the stores that set
/// the walk up past it).
#[inline(always)]
fn walk_user(w: *mut Walk) -> u32 {
    // SAFETY: this CPU's walk state, valid for the program's run.
    if unsafe { (*w).end } == end::NO_USER {
        return end::NO_USER;
    }
    // SAFETY: `step` has the signature bpf_loop calls and takes no context.
    unsafe {
        bpf_loop(
            CPU_STACK_DEPTH as u32 + 1,
            step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // The callback changed the state behind the compiler's back (`w` was not handed to the
    // helper): read it back from memory.
    let w: *const Walk = w;
    // SAFETY: this CPU's walk state, valid for the program's run.
    let (by_table, no_table, unsupported, flags, end) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*w).by_table),
            core::ptr::read_volatile(&raw const (*w).by_fp_no_table),
            core::ptr::read_volatile(&raw const (*w).by_fp_unsupported),
            core::ptr::read_volatile(&raw const (*w).flags),
            core::ptr::read_volatile(&raw const (*w).end),
        )
    };
    add(count::FRAMES_TABLE, by_table);
    add(count::FP_NO_TABLE, no_table);
    add(count::FP_UNSUPPORTED, unsupported);
    if flags & flag::SIGNAL != 0 {
        add(count::SIGNAL_FRAMES, 1);
    }
    let end = if end == WALKING { end::DEPTH } else { end };
    end | (flags << 8)
}

/// This CPU's walk state.
#[inline(always)]
fn scratch() -> Option<&'static mut Walk> {
    // SAFETY: this CPU's scratch value, valid for the program's run.
    CPU_SCRATCH.get_ptr_mut(0).map(|p| unsafe { &mut *p })
}

/// Reads a word of the target's memory.
#[inline(always)]
fn read(addr: u64) -> Option<u64> {
    // SAFETY: reads the target's memory through the checked helper.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

/// `bpf_loop`'s callback of the walk: one frame; 1 ends the loop.
extern "C" fn step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(w) = scratch() else {
        return 1;
    };
    let n = w.user.len as usize;
    if n >= CPU_STACK_DEPTH {
        w.end = end::DEPTH;
        return 1;
    }
    w.user.ips[n & (CPU_STACK_DEPTH - 1)] = w.pc;
    w.user.len += 1;
    let lookup = if w.exact != 0 { w.pc } else { w.pc - 1 };
    w.exact = 0;
    let row = find_row(w, lookup);
    let (cfa_addr, rbp_rule) = match row {
        Some(r) if r.cfa == cfa::RSP => (w.sp + r.cfa_offset as u64, r.rbp),
        Some(r) if r.cfa == cfa::RBP => {
            if w.bp == 0 {
                return fp_step(w, flag::FP_UNSUPPORTED);
            }
            (w.bp + r.cfa_offset as u64, r.rbp)
        }
        Some(r) if r.cfa == cfa::PLT => {
            let extra = if (w.pc & 15) as i64 >= r.rbp as i64 {
                8
            } else {
                0
            };
            (w.sp + r.cfa_offset as u64 + extra, RBP_UNCHANGED)
        }
        Some(r) if r.cfa == cfa::SIGNAL => return signal_step(w),
        Some(r) if r.cfa == cfa::END => {
            w.end = end::OUTERMOST;
            return 1;
        }
        Some(r) if r.cfa == cfa::NONE => return fp_step(w, flag::FP_NO_TABLE),
        Some(_) => return fp_step(w, flag::FP_UNSUPPORTED),
        None => return fp_step(w, flag::FP_NO_TABLE),
    };
    if cfa_addr <= w.sp {
        w.end = end::BAD_FRAME;
        return 1;
    }
    let Some(ra) = read(cfa_addr - 8) else {
        w.end = end::READ_FAILED;
        return 1;
    };
    // A traced call's return probe put its trampoline where the return address was.
    let ra = crate::functions::hidden_return(current_ids().0, cfa_addr - 8).unwrap_or(ra);
    let bp = if rbp_rule == RBP_UNCHANGED {
        w.bp
    } else if rbp_rule == RBP_LOST {
        0
    } else {
        let at = (cfa_addr as i64 + 8 * rbp_rule as i64) as u64;
        match read(at) {
            Some(v) => v,
            None => {
                w.end = end::READ_FAILED;
                return 1;
            }
        }
    };
    w.by_table += 1;
    w.pc = ra;
    w.sp = cfa_addr;
    w.bp = bp;
    if ra == 0 {
        w.end = end::ZERO;
        return 1;
    }
    0
}

/// One frame unwound by the frame pointer, for want of a table (`why`: which flag).
#[inline(always)]
fn fp_step(w: &mut Walk, why: u32) -> i64 {
    w.flags |= why;
    if why == flag::FP_NO_TABLE {
        w.by_fp_no_table += 1;
    } else {
        w.by_fp_unsupported += 1;
    }
    let failed = if why == flag::FP_NO_TABLE {
        end::NO_TABLE
    } else {
        end::UNSUPPORTED
    };
    if w.bp == 0 {
        w.end = end::ZERO;
        return 1;
    }
    if w.bp < w.sp {
        w.end = failed;
        return 1;
    }
    let (Some(next_bp), Some(ra)) = (read(w.bp), read(w.bp + 8)) else {
        w.end = failed;
        return 1;
    };
    let ra = crate::functions::hidden_return(current_ids().0, w.bp + 8).unwrap_or(ra);
    w.sp = w.bp + 16;
    w.bp = next_bp;
    w.pc = ra;
    if ra == 0 {
        w.end = end::ZERO;
        return 1;
    }
    0
}

/// A signal trampoline's frame: the interrupted code's registers from the signal frame.
#[inline(always)]
fn signal_step(w: &mut Walk) -> i64 {
    let (Some(pc), Some(sp), Some(bp)) = (
        read(w.sp + SIGFRAME_RIP),
        read(w.sp + SIGFRAME_RSP),
        read(w.sp + SIGFRAME_RBP),
    ) else {
        w.end = end::READ_FAILED;
        return 1;
    };
    w.flags |= flag::SIGNAL;
    w.by_table += 1;
    w.pc = pc;
    w.sp = sp;
    w.bp = bp;
    // The interrupted instruction, not a return address.
    w.exact = 1;
    if pc == 0 {
        w.end = end::ZERO;
        return 1;
    }
    0
}

/// Runs `steps` steps of the binary search `callback` over `[lo, hi)` for `key`, in this CPU's
/// walk state; returns where `lo` ended.
///
/// The state is written and read back through volatile accesses: the callback changes it behind
/// the compiler's back, during a helper call that is given no pointer to it.
#[inline(always)]
fn search(w: *mut Walk, lo: u64, hi: u64, key: u64, steps: u32, callback: usize) -> u64 {
    // SAFETY: `w` is this CPU's walk state, valid for the program's run; the callback has the
    // signature bpf_loop calls and takes no context.
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).lo, lo);
        core::ptr::write_volatile(&raw mut (*w).hi, hi);
        core::ptr::write_volatile(&raw mut (*w).key, key);
        bpf_loop(
            steps,
            callback as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        );
        core::ptr::read_volatile(&raw const (*w).lo)
    }
}

/// The row that covers `pc`: `None` when no mapping with a table holds it.
#[inline(always)]
fn find_row(w: &mut Walk, pc: u64) -> Option<UnwindRow> {
    let (first, mappings) = (w.first, w.mappings);
    let w: *mut Walk = w;
    // The mapping: the last one starting at or below `pc`.
    let lo = search(
        w,
        0,
        mappings,
        pc,
        MAPPING_SEARCH_STEPS,
        mapping_step as *const () as usize,
    );
    if lo == 0 {
        return None;
    }
    let m = CPU_MAPPINGS.get((first + lo - 1) as u32)?;
    if pc >= m.end || m.rows == 0 || pc < m.base {
        return None;
    }
    let offset = pc - m.base;
    if offset > u32::MAX as u64 {
        return None;
    }
    // The row: the last one of the mapping's object starting at or below the offset.
    let start = m.first_row as u64;
    let lo = search(
        w,
        start,
        start + m.rows as u64,
        offset,
        ROW_SEARCH_STEPS,
        row_step as *const () as usize,
    );
    if lo == start {
        return None;
    }
    UNWIND_ROWS.get((lo - 1) as u32).copied()
}

/// One step of the binary search for the mapping: `lo` ends as the number of mappings that
/// start at or below the key.
extern "C" fn mapping_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(w) = scratch() else {
        return 1;
    };
    if w.lo >= w.hi {
        return 1;
    }
    let mid = w.lo + (w.hi - w.lo) / 2;
    let Some(m) = CPU_MAPPINGS.get((w.first + mid) as u32) else {
        return 1;
    };
    if m.start <= w.key {
        w.lo = mid + 1;
    } else {
        w.hi = mid;
    }
    0
}

/// One step of the binary search for the row: `lo` ends one past the last row whose start is
/// at or below the key.
extern "C" fn row_step(_index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(w) = scratch() else {
        return 1;
    };
    if w.lo >= w.hi {
        return 1;
    }
    let mid = w.lo + (w.hi - w.lo) / 2;
    let Some(r) = UNWIND_ROWS.get(mid as u32) else {
        return 1;
    };
    if r.pc as u64 <= w.key {
        w.lo = mid + 1;
    } else {
        w.hi = mid;
    }
    0
}
