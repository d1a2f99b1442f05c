//! The `memory` section: allocations, the resident set and leaks.

use serde::Serialize;

use super::Frame;

/// What the target holds, what it allocates and what it leaks. Bytes are bytes, times seconds,
/// rates bytes per second (see docs/memory.md).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MemorySection {
    /// The allocator the target's `malloc` resolves to (the first of `allocators`); null when
    /// none was found (`no_allocator` says why).
    pub allocator: Option<AllocatorInfo>,
    /// Every allocator found and probed.
    pub allocators: Vec<AllocatorInfo>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub no_allocator: Option<String>,
    /// Resident set at the end (or at the target's exit), bytes.
    pub current_memory: u64,
    /// Peak resident set over the process's life (VmHWM), bytes.
    pub peak_memory: u64,
    /// Virtual size at the end, bytes.
    pub virtual_memory: u64,
    /// "increasing", "stable" or "decreasing" (a least-squares fit of the resident set over the
    /// samples), or "unknown" with fewer than three samples.
    pub memory_trend: &'static str,
    /// Slope of that fit, bytes per second.
    pub memory_trend_slope: f64,
    /// /proc samples taken, and their interval in seconds.
    pub samples: usize,
    pub interval: f64,
    pub allocations: AllocationSummary,
    pub memory_leak_detection: LeakDetection,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AllocatorInfo {
    /// "glibc", "musl", "jemalloc", "tcmalloc", "mimalloc" or "unknown".
    pub name: &'static str,
    /// File name of the module that defines it.
    pub module: String,
    pub path: String,
    pub functions: Vec<AllocatorFunction>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct AllocatorFunction {
    pub name: String,
    /// Calls while profiled (nested calls from inside the allocator included).
    pub calls: u64,
    /// Offset of the probe from the function's address, and how the kernel runs the
    /// instruction there ("emulated" or "single_stepped").
    pub probe_offset: u64,
    pub probe_class: &'static str,
    /// The instruction at the probe and why the probe is there.
    pub probe_instruction: String,
    pub probe_reason: String,
    /// Probe hits (the entry, and the return of a function that returns a block), and what
    /// they cost the target by the cost model, seconds.
    pub hits: u64,
    pub estimated_cost: f64,
}

/// Allocations made while profiled (blocks from before are unknown).
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct AllocationSummary {
    /// Blocks allocated, and their bytes (as asked for).
    pub allocations: u64,
    pub allocated_bytes: u64,
    /// Of those, blocks released, and their bytes.
    pub frees: u64,
    pub freed_bytes: u64,
    /// Of those, blocks still held at the end.
    pub outstanding: u64,
    pub outstanding_bytes: u64,
    /// Blocks that could not be tracked (the outstanding-block map was full).
    pub untracked: u64,
    /// Releases of blocks allocated before profiling began: ignored.
    pub unknown_frees: u64,
    /// Anonymous `mmap` calls and `munmap` calls seen.
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    /// Distinct allocation sites (user stacks).
    pub sites: usize,
    /// The biggest allocators: totals per calling function, by bytes allocated.
    pub by_function: Vec<FunctionAllocations>,
    /// Totals per allocation site, by bytes allocated.
    pub top_sites: Vec<SiteAllocations>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FunctionAllocations {
    /// The first function on the stack outside the allocator and allocation wrappers.
    pub function: String,
    pub module: String,
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    pub outstanding: u64,
    pub outstanding_bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct SiteAllocations {
    pub function: String,
    pub allocations: u64,
    pub allocated_bytes: u64,
    pub frees: u64,
    pub freed_bytes: u64,
    pub outstanding: u64,
    pub outstanding_bytes: u64,
    /// Innermost first: the allocator's caller, its caller, ...
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeakDetection {
    /// Whether any site was judged a leak.
    pub detected: bool,
    /// Outstanding bytes and blocks at sites judged leaks, and at sites judged retained.
    pub leaked_bytes: u64,
    pub leaked_count: u64,
    pub retained_bytes: u64,
    pub retained_count: u64,
    pub thresholds: LeakThresholds,
    /// Sites holding blocks at the end: leaks first, then by bytes.
    pub sites: Vec<LeakSite>,
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeakThresholds {
    /// `--leak-min-growth`, bytes per second.
    pub min_growth: f64,
    /// `--leak-warmup`, share of the run.
    pub warmup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct LeakSite {
    /// "leak" (still growing) or "retained" (grew, then stayed flat).
    pub verdict: &'static str,
    /// Outstanding bytes and blocks at the end.
    pub bytes: u64,
    pub count: u64,
    /// Age of the oldest outstanding block, seconds.
    pub oldest_age: f64,
    /// Least-squares slope of the outstanding bytes since the site's first block, bytes/s.
    pub growth: f64,
    /// Everything allocated here while profiled.
    pub allocations: u64,
    pub allocated_bytes: u64,
    /// The function charged (see `allocations.by_function`).
    pub function: String,
    /// Symbolized and demangled, innermost first.
    pub stack: Vec<Frame>,
}
