//! What every family shares: the target filter, the loss counters, the event ring buffer, and
//! the per-thread slot arrays' protocol.

use aya_ebpf::{
    bindings::pt_regs,
    helpers::bpf_get_current_pid_tgid,
    macros::map,
    maps::{Array, HashMap, PerCpuArray, RingBuf},
};
use core::intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd};
use profiler_common::{
    control::{CONTROL_SLOTS, STOPPED},
    counters::{COUNTER_SLOTS, Counter},
    event::RING_BUFFER_BYTES,
    process::FOLLOWED_ENTRIES,
};

/// Fails the build unless the maps and programs of a module of profiler-common are named as its
/// constants: aya-ebpf names a map after its static and a program after its function, and the
/// user side finds them by the constants (`profiler_common::<module>::maps::*` and `programs::*`,
/// see `profiler_common::names`). Each static and function here must be spelled exactly as its
/// constant, and the module's `MAPS` and `PROGRAMS` must list exactly these.
macro_rules! named_as_in_common {
    (
        $module:ident,
        maps: [$($map:ident),* $(,)?],
        programs: [$($program:ident => $name:ident),* $(,)?]
    ) => {
        $(named_as_in_common!(@one &$map, $map, $module::maps::$map, $module::MAPS);)*
        $(named_as_in_common!(
            @one $program, $program, $module::programs::$name, $module::PROGRAMS
        );)*
        const _: () = {
            let maps: &[&str] = &[$(stringify!($map)),*];
            let programs: &[&str] = &[$(stringify!($program)),*];
            assert!(profiler_common::$module::MAPS.len() == maps.len());
            assert!(profiler_common::$module::PROGRAMS.len() == programs.len());
        };
    };
    (@one $item:expr, $ident:ident, $($constant:ident)::+, $($list:ident)::+) => {
        const _: () = {
            // Names the static or function itself, so that renaming it cannot leave this behind.
            let _ = || $item;
            let name = stringify!($ident);
            assert!(profiler_common::names::same(name, profiler_common::$($constant)::+));
            assert!(profiler_common::names::contains(profiler_common::$($list)::+, name));
        };
    };
}
pub(crate) use named_as_in_common;

/// The target's process id; set by the loader before the programs are loaded.
#[unsafe(no_mangle)]
static TARGET_TGID: u32 = 0;

/// 1 when the target's child processes are followed (the default), 0 with `--no-children`.
#[unsafe(no_mangle)]
static FOLLOW_CHILDREN: u32 = 0;

/// The target's followed descendants (tgid -> 1): added on fork by the process family's
/// `sched_process_fork`, removed when their last thread exits.
#[map]
pub static FOLLOWED: HashMap<u32, u8> = HashMap::with_max_entries(FOLLOWED_ENTRIES, 0);

/// The user side's switches (`profiler_common::control`): the end of the window.
#[map]
pub static CONTROL: Array<u32> = Array::with_max_entries(CONTROL_SLOTS, 0);

#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(COUNTER_SLOTS, 0);

#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(RING_BUFFER_BYTES, 0);

named_as_in_common!(control, maps: [CONTROL], programs: []);
named_as_in_common!(counters, maps: [COUNTERS], programs: []);
named_as_in_common!(event, maps: [EVENTS], programs: []);

/// Thread id and process id of the current task.
#[inline(always)]
pub fn current_ids() -> (u32, u32) {
    let pid_tgid = bpf_get_current_pid_tgid();
    (pid_tgid as u32, (pid_tgid >> 32) as u32)
}

/// Whether the window has ended: every program's first check, so that counting stops everywhere
/// at once while the probes are still attached. One load from an array the verifier inlines.
#[inline(always)]
pub fn stopped() -> bool {
    CONTROL.get(STOPPED).is_some_and(|flag| *flag != 0)
}

/// The target's tgid.
#[inline(always)]
pub fn target_tgid() -> u32 {
    // SAFETY: a read of a global the loader initialised; volatile so the compiler does not fold
    // the initial value in.
    unsafe { core::ptr::read_volatile(&TARGET_TGID) }
}

/// Whether children are followed.
#[inline(always)]
pub fn follow_children() -> bool {
    // SAFETY: a read of a global the loader initialised; volatile as for `TARGET_TGID`.
    unsafe { core::ptr::read_volatile(&FOLLOW_CHILDREN) != 0 }
}

/// Whether process `tgid` is followed: the target (one compare, the common case, costs what the
/// target-only filter did), or, only when children are followed, one of its descendants (one
/// hash lookup, paid only by events of other processes).
#[inline(always)]
pub fn followed(tgid: u32) -> bool {
    if tgid == target_tgid() {
        return true;
    }
    follow_children() && followed_child(tgid)
}

/// Whether process `tgid` is one of the target's followed descendants: one hash lookup. For
/// callers that compared with the target first, and defer this past their own cheap checks.
#[inline(always)]
pub fn followed_child(tgid: u32) -> bool {
    // SAFETY: the value is only tested for presence, never read through.
    unsafe { FOLLOWED.get(tgid) }.is_some()
}

/// Adds one to a loss counter.
#[inline(always)]
pub fn count(counter: Counter) {
    count_n(counter, 1);
}

/// Adds `n` to a loss counter.
#[inline(always)]
pub fn count_n(counter: Counter, n: u64) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: the pointer is a valid, aligned u64 in a map value for the program's duration.
        unsafe { fetch_add(slot, n) };
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

/// Raises `*ptr` to `v` if it is lower: a few compare-and-swap rounds settle a race with another
/// run of a program on the same CPU.
///
/// # Safety
/// `ptr` must be valid and 8-byte aligned.
#[inline(always)]
pub unsafe fn fetch_max(ptr: *mut u64, v: u64) {
    for _ in 0..4 {
        // SAFETY: guaranteed by the caller.
        let cur = unsafe { load(ptr) };
        // SAFETY: as above.
        if cur >= v || unsafe { compare_exchange(ptr, cur, v) } {
            break;
        }
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

/// The stack pointer at the probe.
#[inline(always)]
pub fn stack_pointer(regs: *mut pt_regs) -> u64 {
    // SAFETY: `regs` is the program's context (struct pt_regs); the verifier allows reads of it.
    unsafe { (*regs).rsp }
}

/// A value of a per-thread slot array (`THREAD_VALUES` of the functions family, `MEM_THREADS` of
/// the memory family): it holds the id of the thread that owns the slot (0: the slot is free;
/// once taken, a slot keeps its owner).
pub trait ThreadOwned {
    /// The owner word of the value at `this`.
    ///
    /// # Safety
    /// `this` must point at a valid value (an array slot).
    unsafe fn owner(this: *mut Self) -> *mut u64;
}

/// Thread `tid`'s slot `tid % SLOTS` of `array` (`SLOTS` a power of two), if the thread holds
/// it. With `claim`, a free slot is taken with a compare-and-swap (two threads may share a slot
/// index), and then `on_claim` runs: the functions family marks the slot in use there (its user
/// side reads only those slots); the memory family has nothing to do. An array lookup is a few
/// instructions where a hash-map lookup costs ~80 ns a probe here; a thread whose slot another
/// holds keeps its value in its family's hash map, keyed by thread id.
#[inline(always)]
pub fn thread_slot<T: ThreadOwned, const SLOTS: u32>(
    array: &Array<T>,
    tid: u32,
    claim: bool,
    on_claim: impl FnOnce(),
) -> Option<*mut T> {
    const { assert!(SLOTS.is_power_of_two()) };
    // Opaque, so the verifier sees the mask applied to the index it checks.
    let index = core::hint::black_box(tid) & (SLOTS - 1);
    let slot = array.get_ptr_mut(index)?;
    // SAFETY: `slot` is a valid array value.
    let owner = unsafe { T::owner(slot) };
    // SAFETY: the owner word of an array value: a valid, aligned u64.
    let held = unsafe { load(owner) };
    if held == u64::from(tid) {
        return Some(slot);
    }
    // SAFETY: as above.
    if claim && held == 0 && unsafe { compare_exchange(owner, 0, tid.into()) } {
        on_claim();
        return Some(slot);
    }
    None
}
