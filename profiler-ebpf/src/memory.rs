//! The `memory` family: every allocation and release of the target, tracked in the kernel.
//!
//! One entry program and one return program serve every allocator function; the attach cookie
//! says which function (for the call counts) and how it takes its arguments ([`AllocClass`]).
//! Entry notes the call and its site (user stack) per thread; return records the block in
//! `MEM_ALLOCS` and in its site's totals. Releases need no return probe. Anonymous mappings come from
//! the `mmap`/`munmap` syscall tracepoints. Only the outermost allocator call on a thread is
//! counted: glibc's `realloc` calls `malloc` and `free`, and a large `malloc` calls `mmap`.
//! When functions are traced, each counted allocation and release is also charged to the traced
//! calls in progress on the thread (`functions::charge_memory`).

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_F_NO_PREALLOC, BPF_NOEXIST, pt_regs},
    helpers::{
        bpf_get_attach_cookie, bpf_get_current_task_btf, bpf_ktime_get_ns, bpf_probe_read_kernel,
        bpf_probe_read_user, bpf_task_pt_regs,
    },
    macros::{map, tracepoint, uprobe, uretprobe},
    maps::{Array, HashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext, TracePointContext},
};
use profiler_common::{
    counters::Counter,
    errno::is_failure,
    memory::{
        ALLOCS_MAX, AllocClass, AllocInfo, CALL_SLOTS, MAP_ANONYMOUS, MEM_STACK_DEPTH,
        MEM_STACKS_MAX, MEM_THREAD_SLOTS, MMAP_SLOT, MUNMAP_SLOT, MemStack, PENDING_MAX,
        PendingAlloc, PendingMmap, SITE_HASH_SEED, SITES_MAX, SiteStats, ThreadPending,
        cookie_class, cookie_function, site_hash_step,
    },
};

use crate::common::{
    ThreadOwned, count, current_ids, fetch_add, named_as_in_common, stack_pointer, stopped,
    target_tgid, thread_slot,
};
use crate::functions::charge_memory;

mod growth;
use growth::{MEM_GROWTH, MEM_SCAN_SCRATCH, MEM_TEXT, mem_page_fault};

/// Outstanding blocks by address.
#[map]
static MEM_ALLOCS: HashMap<u64, AllocInfo> =
    HashMap::with_max_entries(ALLOCS_MAX, BPF_F_NO_PREALLOC);

/// Totals per allocation site.
#[map]
static MEM_SITES: HashMap<u64, SiteStats> = HashMap::with_max_entries(SITES_MAX, BPF_F_NO_PREALLOC);

/// The user stack of each allocation site.
#[map]
static MEM_STACKS: HashMap<u64, MemStack> =
    HashMap::with_max_entries(MEM_STACKS_MAX, BPF_F_NO_PREALLOC);

/// Allocator calls in progress: each thread's in its slot, if it holds it.
#[map]
static MEM_THREADS: Array<ThreadPending> = Array::with_max_entries(MEM_THREAD_SLOTS, 0);

/// Allocator calls in progress of threads whose slot another thread holds, by thread id.
#[map]
static MEM_PENDING: HashMap<u32, PendingAlloc> = HashMap::with_max_entries(PENDING_MAX, 0);

/// Anonymous `mmap` calls in progress, by thread id.
#[map]
static MEM_PENDING_MMAP: HashMap<u32, PendingMmap> = HashMap::with_max_entries(PENDING_MAX, 0);

/// Calls per probed function (by function id), then `mmap` and `munmap`.
#[map]
static MEM_CALLS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CALL_SLOTS, 0);

/// Where a stack is walked into (too big for the eBPF stack).
#[map]
static MEM_STACK_SCRATCH: PerCpuArray<MemStack> = PerCpuArray::with_max_entries(1, 0);

named_as_in_common!(
    memory,
    maps: [
        MEM_ALLOCS,
        MEM_SITES,
        MEM_STACKS,
        MEM_THREADS,
        MEM_PENDING,
        MEM_PENDING_MMAP,
        MEM_CALLS,
        MEM_STACK_SCRATCH,
        MEM_GROWTH,
        MEM_TEXT,
        MEM_SCAN_SCRATCH,
    ],
    programs: [
        mem_entry => MEM_ENTRY,
        mem_return => MEM_RETURN,
        mem_mmap_enter => MEM_MMAP_ENTER,
        mem_mmap_exit => MEM_MMAP_EXIT,
        mem_munmap => MEM_MUNMAP,
        mem_page_fault => MEM_PAGE_FAULT,
    ]
);

/// A call noted longer ago than this is stale (its thread died inside the allocator): it no
/// longer hides the thread's calls as nested.
const STALE_NS: u64 = 1_000_000_000;

/// `mmap` record offsets (see the tracepoints' format files).
const MMAP_LEN: usize = 24;
const MMAP_PROT: usize = 32;
const MMAP_FLAGS: usize = 40;
const MUNMAP_ADDR: usize = 16;
const MUNMAP_LEN: usize = 24;
const SYSCALL_RET: usize = 16;
const PAGE: u64 = 4096;

#[uprobe]
pub fn mem_entry(ctx: ProbeContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_mem_entry(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[uretprobe]
pub fn mem_return(ctx: RetProbeContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_mem_return(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[tracepoint]
pub fn mem_mmap_enter(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_mmap_enter(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[tracepoint]
pub fn mem_mmap_exit(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_mmap_exit(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

#[tracepoint]
pub fn mem_munmap(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_munmap(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

/// Stores a site's stack, once.
#[inline(always)]
fn store_stack(hash: u64, stack: &MemStack) {
    let inserted = MEM_STACKS.insert(hash, stack, BPF_NOEXIST as u64);
    if inserted.is_err() && MEM_STACKS.get_ptr(hash).is_none() {
        count(Counter::MemStackFailed);
    }
}

fn try_mem_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY: the helper only reads the cookie of the link that ran this program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    count_call(cookie_function(cookie));
    // Entry probes sit where the return address is still on top of the stack.
    let ret_slot = stack_pointer(ctx.regs);
    if inside_allocator(tid, ret_slot) {
        return Ok(());
    }
    let arg = |n: usize| ctx.arg::<u64>(n).unwrap_or(0);
    let class = cookie_class(cookie);
    let (size, block) = if class == AllocClass::Free as u8 {
        if let Some(freed) = release(arg(0), 0) {
            charge_memory(tid, 0, 0, 1, freed);
        }
        return Ok(());
    } else if class == AllocClass::SizeFirst as u8 {
        (arg(0), 0)
    } else if class == AllocClass::Calloc as u8 {
        (product(arg(0), arg(1)), 0)
    } else if class == AllocClass::SizeSecond as u8 {
        (arg(1), 0)
    } else if class == AllocClass::Realloc as u8 {
        (arg(1), arg(0))
    } else if class == AllocClass::ReallocArray as u8 {
        (product(arg(1), arg(2)), arg(0))
    } else if class == AllocClass::PosixMemalign as u8 {
        (arg(2), arg(0))
    } else {
        return Ok(());
    };
    // SAFETY: reads 8 bytes of the target's stack through the checked helper.
    let ret_addr = unsafe { bpf_probe_read_user(ret_slot as *const u64) }.unwrap_or(0);
    let site = site_of(ret_addr, frame_pointer(ctx.regs));
    let pending = PendingAlloc {
        ret_slot,
        site,
        size,
        arg: block,
        // SAFETY: the helper takes no arguments.
        start_ns: unsafe { bpf_ktime_get_ns() },
        cookie,
    };
    set_pending(tid, pending);
    Ok(())
}

fn try_mem_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY: as in entry.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // `ret` has popped the return address: its slot is just below the stack pointer.
    let ret_slot = stack_pointer(ctx.regs).wrapping_sub(8);
    let pending = pending(tid).ok_or(())?;
    if pending.ret_slot != ret_slot || pending.cookie != cookie {
        // The return of a nested call (or of one that began before attach).
        return Ok(());
    }
    clear_pending(tid);
    let ret: u64 = ctx.ret();
    let class = cookie_class(cookie);
    if class == AllocClass::PosixMemalign as u8 {
        if ret as u32 == 0 {
            // SAFETY: reads the block pointer the call wrote, through the checked helper.
            let block =
                unsafe { bpf_probe_read_user(pending.arg as *const u64) }.map_err(|_| ())?;
            let allocs = record_alloc(block, &pending);
            charge_memory(tid, allocs, allocs * pending.size, 0, 0);
        }
        return Ok(());
    }
    let mut freed = None;
    if class == AllocClass::Realloc as u8 || class == AllocClass::ReallocArray as u8 {
        // Success, or `realloc(p, 0)` having freed `p`: the old block is gone. A failed resize
        // (NULL for a non-zero size) leaves it in place.
        if ret != 0 || pending.size == 0 {
            freed = release(pending.arg, pending.start_ns);
        }
    }
    let allocs = record_alloc(ret, &pending);
    let frees = u64::from(freed.is_some());
    if allocs | frees != 0 {
        // A realloc releases the old block, then allocates the new one.
        let freed = freed.unwrap_or(0);
        charge_memory(tid, allocs, allocs * pending.size, frees, freed);
    }
    Ok(())
}

fn try_mmap_enter(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY (both reads): offsets inside the record described by the format file.
    let flags: u64 = unsafe { ctx.read_at(MMAP_FLAGS) }.map_err(|_| ())?;
    if flags & MAP_ANONYMOUS == 0 {
        return Ok(());
    }
    count_call(MMAP_SLOT);
    // SAFETY: as above.
    let prot: u64 = unsafe { ctx.read_at(MMAP_PROT) }.map_err(|_| ())?;
    if prot == 0 {
        // PROT_NONE: address space reserved, no memory (glibc reserves each thread arena's
        // 64 MiB so, and makes parts of it usable later).
        return Ok(());
    }
    // An allocator getting memory for its own pools: the block it returns is what counts.
    if inside_allocator(tid, 0) {
        return Ok(());
    }
    // SAFETY: as above.
    let len: u64 = unsafe { ctx.read_at(MMAP_LEN) }.map_err(|_| ())?;
    let (ret_addr, fp) = user_caller();
    let site = site_of(ret_addr, fp);
    if MEM_PENDING_MMAP
        .insert(tid, PendingMmap { len, site }, BPF_ANY as u64)
        .is_err()
    {
        count(Counter::MemPendingMapFull);
    }
    Ok(())
}

fn try_mmap_exit(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    let pending = MEM_PENDING_MMAP.get_ptr(tid).ok_or(())?;
    // SAFETY: this thread's own map value, copied before removal.
    let pending = unsafe { *pending };
    let _ = MEM_PENDING_MMAP.remove(tid);
    // SAFETY: an offset inside the record described by the format file.
    let ret: i64 = unsafe { ctx.read_at(SYSCALL_RET) }.map_err(|_| ())?;
    if is_failure(ret) {
        return Ok(());
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    let allocs = record_block(ret as u64, pending.len, pending.site, now);
    charge_memory(tid, allocs, allocs * pending.len, 0, 0);
    Ok(())
}

fn try_munmap(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    count_call(MUNMAP_SLOT);
    // SAFETY (both reads): offsets inside the record described by the format file.
    let addr: u64 = unsafe { ctx.read_at(MUNMAP_ADDR) }.map_err(|_| ())?;
    let len: u64 = unsafe { ctx.read_at(MUNMAP_LEN) }.map_err(|_| ())?;
    // Unknown addresses are the allocator's own mappings (or older than the probes): ignored.
    let info = MEM_ALLOCS.get_ptr(addr).ok_or(())?;
    // SAFETY: a map value, copied before the entry is removed.
    let info = unsafe { *info };
    let unmapped = round_up(len);
    if unmapped >= round_up(info.size) {
        if let Some(freed) = release(addr, 0) {
            charge_memory(tid, 0, 0, 1, freed);
        }
        return Ok(());
    }
    // The start of the mapping goes; the rest stays outstanding at its new address.
    count(Counter::MemPartialUnmaps);
    if MEM_ALLOCS.remove(addr).is_err() {
        return Ok(());
    }
    let rest = AllocInfo {
        size: info.size - unmapped,
        site: info.site,
        timestamp_ns: info.timestamp_ns,
    };
    if MEM_ALLOCS
        .insert(addr + unmapped, rest, BPF_NOEXIST as u64)
        .is_err()
    {
        count(Counter::MemAllocMapFull);
    }
    if let Some(stats) = MEM_SITES.get_ptr_mut(info.site) {
        // SAFETY: a valid, aligned u64 in a map value.
        unsafe { fetch_add(&raw mut (*stats).free_bytes, unmapped) };
    }
    // Bytes given back, but no block: the rest of it is still held.
    charge_memory(tid, 0, 0, 0, unmapped);
    Ok(())
}

/// Whether thread `tid` is inside an allocator call begun further up its stack (at or above
/// `ret_slot`; 0 for any depth), so that this call is part of it.
#[inline(always)]
fn inside_allocator(tid: u32, ret_slot: u64) -> bool {
    match pending(tid) {
        // The clock only on this rare path: a call in progress that encloses this one.
        Some(p) if p.ret_slot >= ret_slot => {
            // SAFETY: the helper takes no arguments.
            let now = unsafe { bpf_ktime_get_ns() };
            now.wrapping_sub(p.start_ns) < STALE_NS
        }
        _ => false,
    }
}

impl ThreadOwned for ThreadPending {
    #[inline(always)]
    unsafe fn owner(this: *mut Self) -> *mut u64 {
        // SAFETY: the caller passes a valid value.
        unsafe { &raw mut (*this).tid }
    }
}

/// Thread `tid`'s slot in `MEM_THREADS` if it holds it; with `claim`, takes it if it is free
/// (see [`thread_slot`]).
#[inline(always)]
fn own_slot(tid: u32, claim: bool) -> Option<*mut ThreadPending> {
    thread_slot::<_, MEM_THREAD_SLOTS>(&MEM_THREADS, tid, claim, || {})
}

/// Thread `tid`'s allocator call in progress, if any.
#[inline(always)]
fn pending(tid: u32) -> Option<PendingAlloc> {
    match own_slot(tid, false) {
        // SAFETY: this thread's own slot (only its probes write it), copied out.
        Some(slot) => unsafe { ((*slot).active != 0).then(|| (*slot).call) },
        // SAFETY: this thread's own map value, copied out.
        None => MEM_PENDING.get_ptr(tid).map(|p| unsafe { *p }),
    }
}

/// Notes thread `tid`'s allocator call in progress.
#[inline(always)]
fn set_pending(tid: u32, call: PendingAlloc) {
    match own_slot(tid, true) {
        // SAFETY: this thread's own slot.
        Some(slot) => unsafe {
            (*slot).call = call;
            (*slot).active = 1;
        },
        None => {
            if MEM_PENDING.insert(tid, call, BPF_ANY as u64).is_err() {
                count(Counter::MemPendingMapFull);
            }
        }
    }
}

/// Ends thread `tid`'s allocator call in progress.
#[inline(always)]
fn clear_pending(tid: u32) {
    match own_slot(tid, false) {
        // SAFETY: this thread's own slot.
        Some(slot) => unsafe { (*slot).active = 0 },
        None => {
            let _ = MEM_PENDING.remove(tid);
        }
    }
}

/// Adds one to the call count of slot `slot`.
#[inline(always)]
fn count_call(slot: u32) {
    if let Some(calls) = MEM_CALLS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned u64 in this CPU's map value.
        unsafe { fetch_add(calls, 1) };
    }
}

/// Records the block a completed call returned; returns 1, or 0 for no block (NULL).
#[inline(always)]
fn record_alloc(addr: u64, pending: &PendingAlloc) -> u64 {
    record_block(addr, pending.size, pending.site, pending.start_ns)
}

/// Records an outstanding block and adds it to its site; returns the blocks allocated (1, or 0
/// for address 0: no block). A block that could not be recorded (a full map, counted) was
/// still allocated.
#[inline(always)]
fn record_block(addr: u64, size: u64, site: u64, timestamp_ns: u64) -> u64 {
    if addr == 0 {
        return 0;
    }
    // A block still recorded here was released without our seeing it.
    if let Some(old) = MEM_ALLOCS.get_ptr(addr) {
        // SAFETY: a map value, copied before the entry is removed.
        let old = unsafe { *old };
        if MEM_ALLOCS.remove(addr).is_ok() {
            count(Counter::MemMissedFrees);
            site_released(old.site, old.size);
        }
    }
    let Some(stats) = site_stats(site) else {
        count(Counter::MemSiteMapFull);
        return 1;
    };
    // SAFETY (all blocks below): valid, aligned u64s in a map value.
    unsafe {
        fetch_add(&raw mut (*stats).allocs, 1);
        fetch_add(&raw mut (*stats).alloc_bytes, size);
    }
    let info = AllocInfo {
        size,
        site,
        timestamp_ns,
    };
    if MEM_ALLOCS.insert(addr, info, BPF_NOEXIST as u64).is_err() {
        count(Counter::MemAllocMapFull);
        // SAFETY: as above.
        unsafe {
            fetch_add(&raw mut (*stats).untracked, 1);
            fetch_add(&raw mut (*stats).untracked_bytes, size);
        }
    }
    1
}

/// Releases the block at `addr`, unless it was allocated after `newer_than` (ns; 0: any time):
/// then the address was reused by another thread after the release this belongs to. Returns
/// the bytes released: 0 for a block not known here (allocated before the probes, or its
/// address since reused), None for address 0 (no block, no release).
#[inline(always)]
fn release(addr: u64, newer_than: u64) -> Option<u64> {
    if addr == 0 {
        return None;
    }
    let Some(info) = MEM_ALLOCS.get_ptr(addr) else {
        count(Counter::MemUnknownFrees);
        return Some(0);
    };
    // SAFETY: a map value, copied before the entry is removed.
    let info = unsafe { *info };
    if newer_than != 0 && info.timestamp_ns > newer_than {
        return Some(0);
    }
    // Only the release that removes the entry counts it (a double free races here).
    if MEM_ALLOCS.remove(addr).is_ok() {
        site_released(info.site, info.size);
        return Some(info.size);
    }
    Some(0)
}

#[inline(always)]
fn site_released(site: u64, size: u64) {
    if let Some(stats) = MEM_SITES.get_ptr_mut(site) {
        // SAFETY: valid, aligned u64s in a map value.
        unsafe {
            fetch_add(&raw mut (*stats).frees, 1);
            fetch_add(&raw mut (*stats).free_bytes, size);
        }
    }
}

/// The totals of `site`, created on first use.
#[inline(always)]
fn site_stats(site: u64) -> Option<*mut SiteStats> {
    if let Some(stats) = MEM_SITES.get_ptr_mut(site) {
        return Some(stats);
    }
    // An insert that races with another CPU's insert of the same site fails harmlessly.
    let _ = MEM_SITES.insert(site, SiteStats::default(), BPF_NOEXIST as u64);
    MEM_SITES.get_ptr_mut(site)
}

/// The site of the current call: a hash of the return address and the caller's frame-pointer
/// chain, whose frames are stored in `MEM_STACKS` the first time the site is seen.
///
/// The chain is walked here rather than with `bpf_get_stack`: the helper's fixed cost (several
/// times that of a few user reads) would be paid on every allocation. The walk stops where a
/// frame pointer does not lead up the stack, which also ends it cleanly in code that keeps none.
#[inline(always)]
pub(crate) fn site_of(ret_addr: u64, frame_pointer: u64) -> u64 {
    let hash = site_hash_step(SITE_HASH_SEED, ret_addr);
    let Some(scratch) = MEM_STACK_SCRATCH.get_ptr_mut(0) else {
        return hash;
    };
    // SAFETY: this CPU's scratch value; nothing else runs on this CPU while it is used.
    let scratch = unsafe { &mut *scratch };
    let (len, hash) = fp_chain(scratch, 0, frame_pointer, hash);
    if MEM_STACKS.get_ptr(hash).is_none() {
        scratch.ret_addr = ret_addr;
        scratch.len = len as u32;
        scratch.flags = 0;
        store_stack(hash, scratch);
    }
    hash
}

/// Walks the frame-pointer chain from `fp` into `stack.ips` from index `len`, adding each
/// return address to `hash`; the new length and hash. The walk stops where a frame pointer does
/// not lead up the stack, which also ends it cleanly in code that keeps none.
#[inline(always)]
fn fp_chain(stack: &mut MemStack, mut len: usize, mut fp: u64, mut hash: u64) -> (usize, u64) {
    for _ in 0..MEM_STACK_DEPTH {
        if fp == 0 || fp & 7 != 0 || len >= MEM_STACK_DEPTH {
            break;
        }
        // SAFETY: reads the saved frame pointer and return address through the checked helper.
        let Ok([next, ret]) = (unsafe { bpf_probe_read_user(fp as *const [u64; 2]) }) else {
            break;
        };
        if ret == 0 {
            break;
        }
        stack.ips[frame(len)] = ret;
        hash = site_hash_step(hash, ret);
        len += 1;
        if next <= fp {
            break;
        }
        fp = next;
    }
    (len, hash)
}

/// The array index of frame `i` (< MEM_STACK_DEPTH), visibly in bounds for the verifier (see
/// `slot` in the functions family).
#[inline(always)]
fn frame(i: usize) -> usize {
    const _: () = assert!(MEM_STACK_DEPTH.is_power_of_two());
    core::hint::black_box(i) & (MEM_STACK_DEPTH - 1)
}

/// The return address on top of the current task's user stack and its frame pointer (0 when
/// unreadable). At a syscall made from a libc wrapper (which keeps no frame) the return address
/// is the wrapper's caller's, and the frame pointer still the caller's.
#[inline(always)]
fn user_caller() -> (u64, u64) {
    // SAFETY: the helpers take the current task (a trusted pointer) and return its user
    // registers; every read goes through a checked helper.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        let sp = bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0);
        let fp = bpf_probe_read_kernel(&raw const (*regs).rbp).unwrap_or(0);
        let ret_addr = if sp == 0 {
            0
        } else {
            bpf_probe_read_user(sp as *const u64).unwrap_or(0)
        };
        (ret_addr, fp)
    }
}

/// The current task's user stack and frame pointers (0 when unreadable).
#[inline(always)]
fn user_sp_fp() -> (u64, u64) {
    // SAFETY: the helpers take the current task (a trusted pointer) and return its user
    // registers; the reads go through a checked helper.
    unsafe {
        let task = bpf_get_current_task_btf();
        let regs = bpf_task_pt_regs(task) as *const pt_regs;
        (
            bpf_probe_read_kernel(&raw const (*regs).rsp).unwrap_or(0),
            bpf_probe_read_kernel(&raw const (*regs).rbp).unwrap_or(0),
        )
    }
}

/// The frame pointer at the probe.
#[inline(always)]
pub(crate) fn frame_pointer(regs: *mut pt_regs) -> u64 {
    // SAFETY: `regs` is the program's context (struct pt_regs); the verifier allows reads of it.
    unsafe { (*regs).rbp }
}

/// `a * b`, or `u64::MAX` when it overflows (the call then fails and records nothing).
#[inline(always)]
fn product(a: u64, b: u64) -> u64 {
    // Opaque so that the check is not turned into a 128-bit multiply (no such call in eBPF).
    if a != 0 && b > core::hint::black_box(u64::MAX / a) {
        u64::MAX
    } else {
        a * b
    }
}

#[inline(always)]
fn round_up(len: u64) -> u64 {
    (len + PAGE - 1) & !(PAGE - 1)
}
