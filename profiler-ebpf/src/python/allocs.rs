//! pymalloc's blocks (with the memory family): each block `PyObject_Malloc`, `_Calloc` or
//! `_Realloc` returns, charged to the Python stack that made it, until `PyObject_Free`.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::bpf_get_attach_cookie,
    macros::{uprobe, uretprobe},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_common::python::{
    ALLOC_STACK_DEPTH, PyBlock, PyPending, PySiteStats, SCRATCH_SAMPLE, alloc, count,
};

use super::{
    PY_ALLOC_LIVE, PY_ALLOC_PENDING, PY_ALLOC_SITES, add, enabled, python_stack, thread_state,
};
use crate::common::{current_ids, fetch_add, stopped, target_tgid};

/// The uprobe on `PyObject_Malloc(size)`, `PyObject_Calloc(nelem, elsize)` and
/// `PyObject_Realloc(ptr, size)` (the attach cookie says which): what the call asks, kept for its
/// return.
#[uprobe]
pub fn py_alloc(ctx: ProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() || !enabled() {
        return 0;
    }
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let first = core::hint::black_box(ctx.arg::<u64>(0).unwrap_or(0));
    let second = core::hint::black_box(ctx.arg::<u64>(1).unwrap_or(0));
    let pending = if cookie == alloc::CALLOC {
        PyPending {
            size: first.wrapping_mul(second),
            old: 0,
        }
    } else if cookie == alloc::REALLOC {
        PyPending {
            size: second,
            old: first,
        }
    } else {
        PyPending {
            size: first,
            old: 0,
        }
    };
    let _ = PY_ALLOC_PENDING.insert(tid, pending, 0);
    0
}

/// The return probe of the allocating functions: the block returned is charged to the Python
/// stack of the thread (a realloc's old block is released first).
#[uretprobe]
pub fn py_alloc_return(ctx: RetProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 {
        return 0;
    }
    // SAFETY: a plain value, copied out.
    let Some(pending) = (unsafe { PY_ALLOC_PENDING.get(tid) }).copied() else {
        return 0;
    };
    let _ = PY_ALLOC_PENDING.remove(tid);
    let ptr = ctx.ret::<u64>();
    if pending.old != 0 && ptr != 0 {
        release(pending.old);
    }
    if ptr == 0 || stopped() {
        return 0;
    }
    add(count::ALLOCS, 1);
    let stack = match thread_state(tid) {
        Some(tstate) => python_stack(tstate, SCRATCH_SAMPLE, ALLOC_STACK_DEPTH),
        None => 0,
    };
    let tracked = PY_ALLOC_LIVE
        .insert(
            ptr,
            PyBlock {
                size: pending.size,
                stack,
            },
            0,
        )
        .is_ok();
    if !tracked {
        add(count::LIVE_FULL, 1);
    }
    charge(stack, pending.size, tracked, 1);
    0
}

/// The uprobe on `PyObject_Free(ptr)`.
#[uprobe]
pub fn py_free(ctx: ProbeContext) -> u32 {
    let (_, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() {
        return 0;
    }
    add(count::FREE_CALLS, 1);
    let ptr = ctx.arg::<u64>(0).unwrap_or(0);
    if ptr != 0 {
        release(ptr);
    }
    0
}

/// Takes block `ptr` off its stack, where it is tracked.
#[inline(always)]
fn release(ptr: u64) {
    // SAFETY: a plain value, copied out.
    let Some(block) = (unsafe { PY_ALLOC_LIVE.get(ptr) }).copied() else {
        return;
    };
    if PY_ALLOC_LIVE.remove(ptr).is_err() {
        // Another CPU released it first.
        return;
    }
    add(count::FREES, 1);
    if let Some(site) = PY_ALLOC_SITES.get_ptr_mut(block.stack) {
        // SAFETY: valid, aligned fields of a map value; signed counts kept as wrapping u64.
        unsafe {
            fetch_add(
                (&raw mut (*site).live_bytes).cast(),
                block.size.wrapping_neg(),
            );
            fetch_add((&raw mut (*site).live_blocks).cast(), u64::MAX);
        }
    }
}

/// Adds an allocation of `size` bytes at Python stack `stack` (outstanding when `tracked`).
#[inline(always)]
fn charge(stack: u64, size: u64, tracked: bool, blocks: u64) {
    let add_to = |site: *mut PySiteStats| {
        // SAFETY: valid, aligned fields of a map value.
        unsafe {
            if tracked {
                let now =
                    fetch_add((&raw mut (*site).live_bytes).cast(), size).wrapping_add(size) as i64;
                fetch_add((&raw mut (*site).live_blocks).cast(), blocks);
                // A plain store: two CPUs racing may keep the lower of their two peaks.
                if now > core::ptr::read_volatile(&raw const (*site).peak_bytes) {
                    core::ptr::write_volatile(&raw mut (*site).peak_bytes, now);
                }
            }
            fetch_add(&raw mut (*site).allocated_bytes, size);
            fetch_add(&raw mut (*site).allocations, blocks);
        }
    };
    if let Some(site) = PY_ALLOC_SITES.get_ptr_mut(stack) {
        add_to(site);
        return;
    }
    let _ = PY_ALLOC_SITES.insert(stack, PySiteStats::default(), BPF_NOEXIST as u64);
    match PY_ALLOC_SITES.get_ptr_mut(stack) {
        Some(site) => add_to(site),
        None => add(count::SITE_MAP_FULL, 1),
    }
}
