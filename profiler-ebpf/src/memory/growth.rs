//! The memory family's growth attribution: the target's write faults (a page it is given: the
//! first touch of anonymous memory, or a copy on write) counted in the kernel by site, the
//! faulting instruction and the return addresses above it (a scan of the stack's top for words
//! in the target's code, then the frame-pointer chain).

use aya_ebpf::{
    bindings::{BPF_F_NO_PREALLOC, BPF_NOEXIST},
    helpers::{generated, generated::bpf_loop},
    macros::{map, tracepoint},
    maps::{Array, HashMap, PerCpuArray},
    programs::TracePointContext,
};
use profiler_common::{
    counters::Counter,
    memory::{
        FAULT_SLOT, GROWTH_SITES_MAX, PF_INSTR, PF_WRITE, SCAN_FRAMES, SCAN_WORDS, SITE_HASH_SEED,
        STACK_FIRST_IS_PC, STACK_RAW_WORDS, TEXT_RANGES_MAX, TextRanges, site_hash_step,
    },
};

use super::{
    MEM_STACK_SCRATCH, MEM_STACKS, count_call, fp_chain, frame, pending, store_stack, user_sp_fp,
};
use crate::common::{count, current_ids, fetch_add, stopped, target_tgid};

/// Write faults of the target by site: the pages it was given, where.
#[map]
pub(crate) static MEM_GROWTH: HashMap<u64, u64> =
    HashMap::with_max_entries(GROWTH_SITES_MAX, BPF_F_NO_PREALLOC);

/// The target's executable ranges, written by the user side.
#[map]
pub(crate) static MEM_TEXT: Array<TextRanges> = Array::with_max_entries(1, 0);

/// The stack scan of a write fault: the top of the thread's stack, and the scan's state.
#[repr(C)]
pub(crate) struct ScanWork {
    words: [u64; SCAN_WORDS],
    /// Frames taken into `MEM_STACK_SCRATCH`, and the site hash so far.
    len: u64,
    hash: u64,
    /// Valid ranges of `MEM_TEXT`.
    ranges: u64,
}

/// This CPU's [`ScanWork`].
#[map]
pub(crate) static MEM_SCAN_SCRATCH: PerCpuArray<ScanWork> = PerCpuArray::with_max_entries(1, 0);

/// `exceptions/page_fault_user` record offsets.
const FAULT_IP: usize = 16;
const FAULT_ERROR_CODE: usize = 24;

/// The growth attribution: every user page fault on the machine runs this; the target's write
/// faults (a page it is given: the first touch of anonymous memory, or a copy on write) are
/// counted by site, the faulting instruction and the frame-pointer chain above it.
#[tracepoint]
pub fn mem_page_fault(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_page_fault(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_page_fault(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY (both reads): offsets inside the record described by the format file.
    let error_code: u64 = unsafe { ctx.read_at(FAULT_ERROR_CODE) }.map_err(|_| ())?;
    if error_code & PF_WRITE == 0 || error_code & PF_INSTR != 0 {
        return Ok(());
    }
    count_call(FAULT_SLOT);
    // Inside an allocator call the allocator probes follow (`--memory exact`): the page is the
    // allocation's, charged to its site. Otherwise the faulting instruction and its stack.
    let site = match pending(tid) {
        Some(call) if call.site != 0 => call.site,
        _ => {
            // SAFETY: as above.
            let ip: u64 = unsafe { ctx.read_at(FAULT_IP) }.map_err(|_| ())?;
            fault_site(ip)
        }
    };
    if let Some(n) = MEM_GROWTH.get_ptr_mut(site) {
        // SAFETY: a map value of 8 aligned bytes, live while the program runs.
        unsafe { fetch_add(n, 1) };
    } else if MEM_GROWTH.insert(site, 1, BPF_NOEXIST as u64).is_err() {
        match MEM_GROWTH.get_ptr_mut(site) {
            // Another CPU put the site in first.
            // SAFETY: as above.
            Some(n) => unsafe {
                fetch_add(n, 1);
            },
            None => count(Counter::MemGrowthMapFull),
        }
    }
    Ok(())
}

/// The site of a write fault at `ip`: the instruction, then the return addresses found on the
/// top of the stack (words that point into the target's code: the faulting code often keeps no
/// frame pointer, as in a C library's `malloc` or `memset`), then the frame-pointer chain.
#[inline(always)]
fn fault_site(ip: u64) -> u64 {
    let (sp, fp) = user_sp_fp();
    let (Some(work), Some(text), Some(scratch)) = (
        MEM_SCAN_SCRATCH.get_ptr_mut(0),
        MEM_TEXT.get(0),
        MEM_STACK_SCRATCH.get_ptr_mut(0),
    ) else {
        return site_hash_step(SITE_HASH_SEED, ip);
    };
    // SAFETY: this CPU's scratch values; nothing else runs on this CPU while they are used
    // (the page-fault tracepoint does not nest in itself, and the allocator probes, which share
    // the stack scratch, do not run inside it). Written before the loop, read back after it
    // through the pointer (the callback changes them behind the compiler's back).
    unsafe {
        core::ptr::write_volatile(&raw mut (*work).len, 0);
        core::ptr::write_volatile(&raw mut (*work).hash, site_hash_step(SITE_HASH_SEED, ip));
        core::ptr::write_volatile(
            &raw mut (*work).ranges,
            (text.count as u64).min(TEXT_RANGES_MAX as u64),
        );
        if sp != 0
            && generated::bpf_probe_read_user(
                (&raw mut (*work).words).cast(),
                (8 * SCAN_WORDS) as u32,
                sp as *const core::ffi::c_void,
            ) == 0
        {
            bpf_loop(
                scan_words(sp, fp) as u32,
                scan_step as *mut core::ffi::c_void,
                core::ptr::null_mut(),
                0,
            );
        }
    }
    // SAFETY: as above.
    let scratch = unsafe { &mut *scratch };
    let ranges = (text.count as usize).min(TEXT_RANGES_MAX);
    if !in_text(text, ranges, ip) {
        // The code ranges are not known yet (the loader is still mapping the libraries): the
        // site is the instruction alone, with the raw top of the stack for the user side to
        // sort out.
        let hash = site_hash_step(SITE_HASH_SEED, ip) ^ u64::from(STACK_RAW_WORDS);
        if MEM_STACKS.get_ptr(hash).is_none() {
            for i in 0..SCAN_WORDS {
                // SAFETY: as above.
                scratch.ips[frame(i)] = unsafe { (*work).words[i] };
            }
            scratch.ret_addr = ip;
            scratch.len = SCAN_WORDS as u32;
            scratch.flags = STACK_FIRST_IS_PC | STACK_RAW_WORDS;
            store_stack(hash, scratch);
        }
        return hash;
    }
    // SAFETY: as above.
    let (len, hash) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*work).len) as usize,
            core::ptr::read_volatile(&raw const (*work).hash),
        )
    };
    // The frame-pointer chain above the scanned words, when the frame pointer is one.
    let fp = if frame_pointer_valid(sp, fp) { fp } else { 0 };
    let (len, hash) = fp_chain(scratch, len, fp, hash);
    if MEM_STACKS.get_ptr(hash).is_none() {
        scratch.ret_addr = ip;
        scratch.len = len as u32;
        scratch.flags = STACK_FIRST_IS_PC;
        store_stack(hash, scratch);
    }
    hash
}

/// Whether `fp` looks like a frame pointer of the stack at `sp`: a little way up it. Code
/// without frame pointers uses the register for anything.
#[inline(always)]
fn frame_pointer_valid(sp: u64, fp: u64) -> bool {
    fp > sp && fp - sp < FRAME_REACH && fp & 7 == 0
}

/// How far above the stack pointer a frame pointer is believed.
const FRAME_REACH: u64 = 1 << 16;

/// The words to scan from `sp`: up to the frame pointer (the frameless code between them; the
/// chain goes on from there), or [`SCAN_WORDS`] when there is none.
#[inline(always)]
fn scan_words(sp: u64, fp: u64) -> u64 {
    if frame_pointer_valid(sp, fp) {
        ((fp - sp) / 8).min(SCAN_WORDS as u64)
    } else {
        SCAN_WORDS as u64
    }
}

/// `bpf_loop`'s callback of [`fault_site`]: word `index` of the stack's top, taken as a frame
/// when it points into the target's code.
extern "C" fn scan_step(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let (Some(work), Some(text), Some(scratch)) = (
        MEM_SCAN_SCRATCH.get_ptr_mut(0),
        MEM_TEXT.get(0),
        MEM_STACK_SCRATCH.get_ptr_mut(0),
    ) else {
        return 1;
    };
    // SAFETY: this CPU's scratch values, as in `fault_site`, which waits for the loop.
    let (work, scratch) = unsafe { (&mut *work, &mut *scratch) };
    let len = work.len as usize;
    if len >= SCAN_FRAMES {
        return 1;
    }
    let w = work.words[index as usize & (SCAN_WORDS - 1)];
    if in_text(text, work.ranges as usize, w) {
        scratch.ips[frame(len)] = w;
        work.hash = site_hash_step(work.hash, w);
        work.len += 1;
    }
    0
}

/// Whether `addr` is in one of the first `n` of the target's executable ranges (sorted):
/// a binary search.
#[inline(always)]
fn in_text(text: &TextRanges, n: usize, addr: u64) -> bool {
    let (mut lo, mut hi) = (0usize, n);
    // log2(TEXT_RANGES_MAX) + 1 halvings end any search.
    for _ in 0..7 {
        if lo >= hi {
            break;
        }
        let mid = (lo + hi) / 2;
        let [start, end] = text.ranges[mid & (TEXT_RANGES_MAX - 1)];
        if addr < start {
            hi = mid;
        } else if addr >= end {
            lo = mid + 1;
        } else {
            return true;
        }
    }
    false
}
