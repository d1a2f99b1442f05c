//! What every family shares: the target filter, the loss counters and the event ring buffer.

use aya_ebpf::{
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{PerCpuArray, RingBuf},
};
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};
use profiler_common::{
    counters::{COUNTER_SLOTS, Counter},
    event::RING_BUFFER_BYTES,
};

/// The target's process id; set by the loader before the programs are loaded.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

/// Thread id and process id of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid as u32, (pid_tgid >> 32) as u32)
}

/// The target's tgid.
#[inline(always)]
pub fn target_tgid() -> u32 {
    // SAFETY: a read of a global the loader initialised; volatile so the compiler does not fold
    // the initial value in.
    unsafe { core::ptr::read_volatile(&TARGET_TGID) }
}

/// Adds one to a loss counter.
#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer is a valid, aligned u64 in a map value for the program's duration.
        unsafe { fetch_add(slot, 1) };
    }
}

// Map values are updated atomically even in per-CPU maps: a program can be preempted by another
// run of itself on the same CPU, and a plain read-modify-write would then lose an update.
//
// Orderings are SeqCst on purpose. The BPF backend of LLVM 22 lowers a *relaxed* fetch-and-add
// whose result is used to the non-fetching `lock add` and then reads the addend back as if it were
// the old value (seen in this crate's own disassembly); SeqCst gets the real `atomic_fetch_add`.
// The x86 JIT emits a locked instruction for either, so nothing is lost.

/// Atomically adds `v` to `*ptr`, returning the old value.
///
/// # Safety
/// `ptr` must be valid and 8-byte aligned.
#[inline(always)]
pub unsafe fn fetch_add(ptr: *mut u64, v: u64) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(ptr, v) }
}

/// Atomically replaces `*ptr` with `new` if it still holds `old`; true on success.
///
/// # Safety
/// `ptr` must be valid and 8-byte aligned.
#[inline(always)]
pub unsafe fn compare_exchange(ptr: *mut u64, old: u64, new: u64) -> bool {
    // SAFETY: guaranteed by the caller.
    unsafe {
        atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(ptr, old, new).1
    }
}

/// Reads `*ptr` once.
///
/// # Safety
/// `ptr` must be valid and 8-byte aligned.
#[inline(always)]
pub unsafe fn load(ptr: *const u64) -> u64 {
    // SAFETY: guaranteed by the caller.
    unsafe { core::ptr::read_volatile(ptr) }
}
