//! The `functions` family: exact per-function call counts and durations, aggregated in the kernel.
//!
//! An entry probe pushes a frame on the calling thread's shadow stack; the return probe pops the
//! frame whose stack pointer matches and adds the duration to the function's statistics. Each
//! probe learns which function it belongs to from its attach cookie (the function id).
//!
//! Most statistics live next to the shadow stack, in the thread's own map value: a small table of
//! per-function totals and one of call sites, which only that thread writes, so the probes update
//! them with plain loads and stores. A function or call site that finds its table slot taken by
//! another goes to the shared maps instead (atomic updates), so nothing is lost; the user side
//! adds the two together.

/// Deepest nesting of traced calls timed per thread; deeper calls are counted as overflow.
pub const MAX_DEPTH: usize = 32;

/// Sub-buckets per power of two in the duration histogram (log-linear, like HDR histograms):
/// a bucket spans at most 1/8 of its value, so a percentile read from it is within 6.25%.
pub const HIST_SUB_BITS: u32 = 3;
/// Sub-buckets per power of two.
pub const HIST_SUB: u64 = 1 << HIST_SUB_BITS;
/// Largest power of two that has its own buckets (2^47 ns is about 39 hours); longer calls land
/// in the last bucket.
pub const HIST_MAX_LOG2: u32 = 47;
/// Number of histogram buckets.
pub const HIST_BUCKETS: usize =
    (HIST_SUB + (HIST_MAX_LOG2 - HIST_SUB_BITS) as u64 * HIST_SUB) as usize;

/// The histogram bucket of a duration in nanoseconds.
///
/// Values below [`HIST_SUB`] get one bucket each; above, each power of two is split in
/// [`HIST_SUB`] equal parts.
#[inline(always)]
pub const fn hist_bucket(ns: u64) -> usize {
    if ns < HIST_SUB {
        return ns as usize;
    }
    let log2 = 63 - ns.leading_zeros();
    if log2 > HIST_MAX_LOG2 {
        return HIST_BUCKETS - 1;
    }
    let sub = (ns >> (log2 - HIST_SUB_BITS)) & (HIST_SUB - 1);
    (HIST_SUB + (log2 - HIST_SUB_BITS) as u64 * HIST_SUB + sub) as usize
}

/// The smallest duration (ns) that falls in `bucket`, and the first value past it.
pub const fn hist_bucket_bounds(bucket: usize) -> (u64, u64) {
    let b = bucket as u64;
    if b < HIST_SUB {
        return (b, b + 1);
    }
    let log2 = (b - HIST_SUB) / HIST_SUB + HIST_SUB_BITS as u64;
    let sub = (b - HIST_SUB) % HIST_SUB;
    let width = 1u64 << (log2 - HIST_SUB_BITS as u64);
    let low = (1u64 << log2) + sub * width;
    (low, low + width)
}

/// Statistics of one traced function on one CPU (a `PerCpuArray` slot indexed by the function
/// id). The histogram has every timed call; the other fields only the calls of threads whose
/// own table ([`ThreadFunc`]) had no room for the function. The user side sums the CPUs and the
/// threads.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct FuncStats {
    /// Entry probe hits (calls started while attached).
    pub entries: u64,
    /// Calls whose return was seen and timed.
    pub count: u64,
    /// Sum of durations, ns.
    pub total_ns: u64,
    /// Sum of squared durations, ns², as a 128-bit number (low, high).
    pub sum_sq_lo: u64,
    pub sum_sq_hi: u64,
    /// Shortest duration + 1 (0 = none yet), ns.
    pub min_ns_plus1: u64,
    /// Longest duration, ns.
    pub max_ns: u64,
    /// Return probe hits that were not timed (no matching entry), of every thread.
    pub untimed_returns: u64,
    /// Probe hits of this family (entries and returns, the call's own two included) between the
    /// entry and the return of the timed calls counted here: see [`Frame::hits_before`].
    pub probe_hits: u64,
    /// Log-linear histogram of the durations of every timed call, see [`hist_bucket`].
    pub hist: [u64; HIST_BUCKETS],
}

const _: () = assert!(core::mem::size_of::<FuncStats>() == 8 * (9 + HIST_BUCKETS));

/// One traced call in progress.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct Frame {
    /// Function id (attach cookie).
    pub func: u32,
    pub _pad: u32,
    /// Address of the return address on the stack at entry: identifies the call's frame.
    pub ret_slot: u64,
    /// The return address itself, as it was at entry: the call's return probe replaces it on
    /// the stack with its trampoline, which a stack walk cannot unwind through (the cpu family
    /// puts this one back).
    pub ret_addr: u64,
    /// `bpf_ktime_get_ns()` at entry; 0 for a call that is not timed (see [`TIME_ALWAYS`]).
    pub start_ns: u64,
    /// The thread's [`ShadowStack::hits`] before this call's entry hit: at its return, the
    /// difference is the number of probe hits (entries and returns of every traced function,
    /// this call's own two included) whose cost lies within the call's measured time.
    pub hits_before: u64,
    /// The thread's on-CPU time at entry, ns, when the threads family runs ([`NO_CPU`]
    /// otherwise): at the return, the difference is the call's on-CPU time.
    pub cpu_start: u64,
    /// What the memory family's probes saw the call allocate and release so far, callees
    /// included (an allocator call is charged to every frame of its thread's stack): see
    /// [`FuncMem`]. All zero when the memory family does not run.
    pub mem: FrameMem,
}

const _: () = assert!(core::mem::size_of::<Frame>() == 88);

/// The allocations and releases within one traced call in progress, updated by the memory
/// family's probes on its thread.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameMem {
    /// Blocks allocated, and their bytes.
    pub allocs: u64,
    pub alloc_bytes: u64,
    /// Blocks released, and the bytes of those the memory family knew (0 for a block it did
    /// not see allocated).
    pub frees: u64,
    pub freed_bytes: u64,
    /// Highest `alloc_bytes - freed_bytes` so far (0 at least: the call's start).
    pub peak: u64,
}

const _: () = assert!(core::mem::size_of::<FrameMem>() == 40);

impl FrameMem {
    /// The call's net bytes so far: allocated less released (negative when it released more
    /// than it allocated, as a call that frees a block allocated elsewhere does).
    #[inline(always)]
    pub const fn net(&self) -> i64 {
        self.alloc_bytes.wrapping_sub(self.freed_bytes) as i64
    }

    /// Adds an allocator call's effect: `freed` bytes in `frees` blocks released first, then
    /// `allocated` bytes in `allocs` blocks (a `realloc` does both), and the peak after it.
    #[inline(always)]
    pub fn charge(&mut self, allocs: u64, allocated: u64, frees: u64, freed: u64) {
        self.frees += frees;
        self.freed_bytes += freed;
        self.allocs += allocs;
        self.alloc_bytes += allocated;
        // Releases only lower the net, so the new peak, if any, is after the allocation.
        let net = self.net();
        if net > 0 && net as u64 > self.peak {
            self.peak = net as u64;
        }
    }

    /// Whether the call allocated or released anything.
    #[inline(always)]
    pub const fn touched(&self) -> bool {
        self.allocs | self.frees != 0
    }
}

/// One function's memory over its calls that returned, on one CPU (a `FUNC_MEM` per-CPU slot by
/// function id), when the memory family runs beside this one: each call's [`FrameMem`] folded
/// in at its return. Calls that allocated and released nothing are not folded in (they would add
/// nothing), so the user side divides by the function's returned calls.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FuncMem {
    pub allocs: u64,
    pub alloc_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    /// Sum of the calls' peaks, bytes, and the highest.
    pub peak_sum: u64,
    pub max_peak: u64,
}

const _: () = assert!(core::mem::size_of::<FuncMem>() == 48);

/// [`Frame::cpu_start`] when the thread's on-CPU time is not known.
pub const NO_CPU: u64 = u64::MAX;

/// How a function's timed calls split into on-CPU and off-CPU time, on one CPU (a `FUNC_CPU`
/// per-CPU slot by function id), when the threads family runs beside this one.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FuncCpu {
    /// Timed calls split.
    pub calls: u64,
    /// Their total time and on-CPU time, ns.
    pub total_ns: u64,
    pub on_cpu_ns: u64,
    /// Sum of each call's on-CPU share, in millionths, and the largest.
    pub share_ppm_sum: u64,
    pub max_share_ppm: u64,
}

const _: () = assert!(core::mem::size_of::<FuncCpu>() == 40);

/// One function's totals on one thread, in the thread's own table. Written only by that thread's
/// probes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadFunc {
    /// Function id + 1; 0 = a free slot. A slot, once taken, keeps its function.
    pub func_plus1: u32,
    pub _pad: u32,
    /// Entry probe hits.
    pub entries: u64,
    /// Timed calls.
    pub count: u64,
    /// Calls that returned (paired with their entry) without being timed: with `count`, every
    /// call of the function on the thread that returned while attached.
    pub untimed: u64,
    /// Sum of durations, ns.
    pub total_ns: u64,
    /// Sum of squared durations, ns², as a 128-bit number (low, high).
    pub sum_sq_lo: u64,
    pub sum_sq_hi: u64,
    /// Shortest duration + 1 (0 = none yet), ns.
    pub min_ns_plus1: u64,
    /// Longest duration, ns.
    pub max_ns: u64,
    /// Probe hits within the timed calls (see [`Frame::hits_before`]), summed.
    pub probe_hits: u64,
}

const _: () = assert!(core::mem::size_of::<ThreadFunc>() == 80);

/// One call site's count on one thread, in the thread's own table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadCaller {
    /// Function id + 1; 0 = a free slot. A slot, once taken, keeps its (function, site).
    pub func_plus1: u32,
    pub _pad: u32,
    /// Return address in the caller.
    pub ret_addr: u64,
    /// Calls that returned there (paired with their entry, timed or not).
    pub calls: u64,
}

const _: () = assert!(core::mem::size_of::<ThreadCaller>() == 24);

/// Slots of a thread's function table: function `f` may only use slot `f % THREAD_FUNCS`.
pub const THREAD_FUNCS: usize = 8;
/// Slots of a thread's call-site table, see [`thread_caller_slot`].
pub const THREAD_CALLERS: usize = 16;

/// The call-site table slot of (function, return address).
#[inline(always)]
pub const fn thread_caller_slot(func: u32, ret_addr: u64) -> usize {
    const _: () = assert!(THREAD_CALLERS.is_power_of_two());
    let h = (ret_addr ^ ((func as u64) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> 59) as usize & (THREAD_CALLERS - 1)
}

/// A thread's own value: its shadow stack of traced calls in progress, and its own tables of
/// totals per function and calls per call site. It lives in the thread's slot of the
/// `THREAD_SLOTS` array (slot `tid % THREAD_SLOTS`), or, when another thread holds that slot, in
/// the `THREAD_STACKS` hash map under its thread id.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ShadowStack {
    /// The thread the value belongs to: in `THREAD_SLOTS`, the slot's owner (0: a free slot; once
    /// taken, a slot keeps its owner). 0 in `THREAD_STACKS`, whose key says it.
    pub tid: u64,
    /// Number of valid frames.
    pub depth: u32,
    /// State of the thread's xorshift generator that picks the calls to time (0: not seeded).
    pub rng: u32,
    /// Probe hits of this family on the thread so far (entries and returns).
    pub hits: u64,
    pub frames: [Frame; MAX_DEPTH],
    pub funcs: [ThreadFunc; THREAD_FUNCS],
    pub callers: [ThreadCaller; THREAD_CALLERS],
}

const _: () = assert!(
    core::mem::size_of::<ShadowStack>()
        == 24 + 88 * MAX_DEPTH + 80 * THREAD_FUNCS + 24 * THREAD_CALLERS
);

/// Key of the per-thread breakdown map (calls of functions that found no room in their thread's
/// own table).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ThreadKey {
    pub func: u32,
    pub tid: u32,
}

/// Per (function, thread) totals.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct ThreadStats {
    pub count: u64,
    pub total_ns: u64,
}

/// Key of the exact callers map (call sites that found no room in their thread's own table): the
/// return address a timed call returned to.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallerKey {
    pub func: u32,
    pub _pad: u32,
    /// Return address in the caller (virtual address in the target).
    pub ret_addr: u64,
}

/// Key of the sampled call-stack map.
///
/// Stacks are sampled as the call returns: the walk starts at the return address (in the
/// immediate caller), which the kernel has restored even when the call's return-address slot was
/// taken over by a return probe (tail calls). It is part of the key too.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct StackKey {
    pub func: u32,
    /// Id in the `STACKS` stack-trace map.
    pub stack_id: u32,
    /// Return address of the call (in the immediate caller).
    pub ret_addr: u64,
}

/// Every call of a function on a thread is timed until the thread has made this many of it;
/// after that one call in `--time-every` (chosen at random per call, so no periodic pattern in
/// the target can bias the sample) is. Reading the clock is the dearest thing the probes do
/// (about 75 ns per read in a VM, two reads per call), so sampling it keeps the per-call cost
/// near that of counting alone; counts, call sites and stacks still see every call.
pub const TIME_ALWAYS: u64 = 1024;
/// Default of `--time-every`: one call in this many is timed after [`TIME_ALWAYS`].
pub const TIME_EVERY_DEFAULT: u32 = 16;
/// Most `--time-every` may be (a power of two).
pub const TIME_EVERY_MAX: u32 = 1 << 16;
/// Name of the eBPF global holding `--time-every` − 1 (a mask; 0 = time every call).
pub const TIME_EVERY_MASK_GLOBAL: &str = "TIME_EVERY_MASK";
/// Name of the eBPF global that is 1 when functions are traced: the memory family's probes then
/// charge each allocation and release to the traced calls in progress on the thread (see
/// [`FrameMem`]); at 0 they do nothing more than without this family.
pub const FUNCS_ON_GLOBAL: &str = "FUNCS_ON";

/// One timed call in this many (per thread and function) has its full user stack sampled; the
/// first [`STACK_SAMPLE_ALWAYS`] of each function on each thread always are. (A sample walks the
/// user stack, about as costly as the rest of the call's probes together.)
pub const STACK_SAMPLE_EVERY: u64 = 64;
/// See [`STACK_SAMPLE_EVERY`].
pub const STACK_SAMPLE_ALWAYS: u64 = 16;

/// Map capacities. The statistics array is sized at load time to the number of traced functions.
/// Slots of the per-thread array (a power of two): threads whose slot is free take it; the
/// others go to the `THREAD_STACKS` hash map, which holds up to `THREAD_STACKS_MAX`.
pub const THREAD_SLOTS: u32 = 8192;
/// 64-bit words of the bitmap of taken slots.
pub const THREAD_SLOT_WORDS: usize = THREAD_SLOTS as usize / 64;
pub const THREAD_STACKS_MAX: u32 = 8192;
pub const THREAD_STATS_MAX: u32 = 65536;
pub const CALLERS_MAX: u32 = 16384;
pub const STACK_COUNTS_MAX: u32 = 16384;
pub const STACKS_MAX: u32 = 16384;
/// Most frames kept per sampled stack.
pub const STACK_DEPTH: usize = 127;

/// Map names in the eBPF object (see [`crate::names`]): profiler-ebpf names each map static
/// exactly so.
pub mod maps {
    /// Per-CPU [`super::FuncStats`] by function id; sized by the loader (`map_max_entries`).
    pub const FUNC_STATS: &str = "FUNC_STATS";
    /// The threads' [`super::ShadowStack`]s, one slot per thread id modulo [`super::THREAD_SLOTS`].
    pub const THREAD_VALUES: &str = "THREAD_VALUES";
    /// Bitmap of the `THREAD_VALUES` slots in use.
    pub const THREAD_VALUES_TAKEN: &str = "THREAD_VALUES_TAKEN";
    /// [`super::ShadowStack`]s of threads whose slot another holds, by thread id.
    pub const THREAD_STACKS: &str = "THREAD_STACKS";
    /// An all-zero [`super::ShadowStack`] (kernel-side scratch).
    pub const EMPTY_STACK: &str = "EMPTY_STACK";
    /// [`super::ThreadStats`] by [`super::ThreadKey`].
    pub const THREAD_STATS: &str = "THREAD_STATS";
    /// Call counts by [`super::CallerKey`].
    pub const CALLERS: &str = "CALLERS";
    /// Sampled stacks' counts by [`super::StackKey`].
    pub const STACK_COUNTS: &str = "STACK_COUNTS";
    /// The stack-trace map of the sampled stacks.
    pub const STACKS: &str = "STACKS";
    /// The target's uretprobe trampoline address, written by the user side.
    pub const TRAMPOLINE: &str = "TRAMPOLINE";
    /// Per function id, the generation of the links whose hits count (see [`super::cookie`]), or
    /// [`super::SITE_OFF`]; sized by the loader like `FUNC_STATS`.
    pub const SITE_LINKS: &str = "SITE_LINKS";
    /// Per-CPU [`super::FuncCpu`] by function id; sized by the loader like `FUNC_STATS`.
    pub const FUNC_CPU: &str = "FUNC_CPU";
    /// Per-CPU [`super::FuncMem`] by function id; sized by the loader like `FUNC_STATS`.
    pub const FUNC_MEM: &str = "FUNC_MEM";
}

/// A function's `SITE_LINKS` value once the budget has taken its probes away: no hit counts.
pub const SITE_OFF: u32 = u32::MAX;

/// The cookie of a function's probe: its id in the low half, and in the high half the generation
/// of the link. A function's probes are links shared with other functions of its file, so taking
/// one function away means new links for the rest; while old and new are both attached, only the
/// generation `SITE_LINKS` names for the function counts, so no hit counts twice or not at all.
pub const fn cookie(function: u32, generation: u32) -> u64 {
    ((generation as u64) << 32) | function as u64
}

/// Program names in the eBPF object (see [`crate::names`]): profiler-ebpf names each program
/// function exactly so.
pub mod programs {
    /// Entry uprobe of every traced function.
    pub const FN_ENTRY: &str = "fn_entry";
    /// Return uprobe of every traced function.
    pub const FN_RETURN: &str = "fn_return";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[
    maps::FUNC_STATS,
    maps::THREAD_VALUES,
    maps::THREAD_VALUES_TAKEN,
    maps::THREAD_STACKS,
    maps::EMPTY_STACK,
    maps::THREAD_STATS,
    maps::CALLERS,
    maps::STACK_COUNTS,
    maps::STACKS,
    maps::TRAMPOLINE,
    maps::SITE_LINKS,
    maps::FUNC_CPU,
    maps::FUNC_MEM,
];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[programs::FN_ENTRY, programs::FN_RETURN];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for FuncStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Frame {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FuncCpu {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FrameMem {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FuncMem {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ShadowStack {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ThreadFunc {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ThreadCaller {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ThreadKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ThreadStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CallerKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for StackKey {}
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A call's net and peak: releases first, then allocations, the peak never below 0.
    #[test]
    fn frame_memory_keeps_the_net_and_its_peak() {
        let mut m = FrameMem::default();
        m.charge(0, 0, 1, 500);
        assert_eq!(
            (m.net(), m.peak),
            (-500, 0),
            "a release of a block from elsewhere"
        );
        m.charge(1, 1000, 0, 0);
        assert_eq!((m.net(), m.peak), (500, 500));
        m.charge(1, 3000, 0, 0);
        assert_eq!((m.net(), m.peak), (3500, 3500));
        // A realloc from 3000 to 100 bytes: released, then allocated; the peak stays.
        m.charge(1, 100, 1, 3000);
        assert_eq!((m.net(), m.peak), (600, 3500));
        // A free of a block the memory family never saw: counted, no bytes.
        m.charge(0, 0, 1, 0);
        assert_eq!(
            m,
            FrameMem {
                allocs: 3,
                alloc_bytes: 4100,
                frees: 3,
                freed_bytes: 3500,
                peak: 3500,
            }
        );
        assert!(m.touched() && !FrameMem::default().touched());
    }
}
