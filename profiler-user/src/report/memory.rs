//! The `memory` section: allocations, the resident set and leaks.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Frame;

/// What the target holds, what it allocates and what it leaks. Bytes are bytes, times seconds,
/// rates bytes per second (see docs/memory.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct MemorySection {
    /// `exact` (the allocator probed: every block, its site and the leak scan) or `growth`
    /// (only where resident memory grew).
    pub mode: Cow<'static, str>,
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
    pub memory_trend: Cow<'static, str>,
    /// Slope of that fit, bytes per second.
    pub memory_trend_slope: f64,
    /// /proc samples taken, and their interval in seconds.
    pub samples: usize,
    pub interval: f64,
    pub allocations: AllocationSummary,
    pub memory_leak_detection: LeakDetection,
    /// Where resident memory grew: the pages the target was given (its write faults), in all.
    pub growth: GrowthSummary,
    /// ... and by site, most bytes first (at most 50).
    pub growth_sites: Vec<GrowthSite>,
}

/// The pages the target was given while profiled.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct GrowthSummary {
    /// Write faults: a page given at first touch of anonymous memory, or copied on write.
    pub faults: u64,
    /// `faults` times the page size.
    pub bytes: u64,
    /// Distinct sites (faulting instruction and stack).
    pub sites: usize,
    /// Seconds since the start at which the overhead budget detached the page-fault
    /// tracepoint, if it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detached_at: Option<f64>,
}

/// One site of new resident memory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct GrowthSite {
    /// The function charged (as for allocation sites: the allocator's module and wrappers
    /// skipped, so a fault in `memset` or in `malloc` is charged to its caller).
    pub function: String,
    /// New resident bytes (`pages` times the page size) and pages.
    pub bytes: u64,
    pub pages: u64,
    /// Least-squares slope of its bytes over the run, bytes per second.
    pub growth: f64,
    /// `growing` or `flat` (the growth verdict of docs/memory.md).
    pub trend: Cow<'static, str>,
    /// Its bytes over the run: (seconds since the start, bytes), at most 32 points.
    pub series: Vec<(f64, u64)>,
    /// The faulting instruction first, then the frames above it.
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AllocatorInfo {
    /// "glibc", "musl", "jemalloc", "tcmalloc", "mimalloc" or "unknown".
    pub name: Cow<'static, str>,
    /// File name of the module that defines it.
    pub module: String,
    pub path: String,
    pub functions: Vec<AllocatorFunction>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct AllocatorFunction {
    pub name: String,
    /// Calls while profiled (nested calls from inside the allocator included).
    pub calls: u64,
    /// Offset of the probe from the function's address, and how the kernel runs the
    /// instruction there ("emulated" or "single_stepped").
    pub probe_offset: u64,
    pub probe_class: Cow<'static, str>,
    /// The instruction at the probe and why the probe is there.
    pub probe_instruction: String,
    pub probe_reason: String,
    /// Probe hits (the entry, and the return of a function that returns a block), and what
    /// they cost the target by the cost model, seconds.
    pub hits: u64,
    pub estimated_cost: f64,
}

/// Allocations made while profiled (blocks from before are unknown).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
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

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeakDetection {
    /// How the verdict was reached: `reachability` (a scan of the stopped target) or `growth`
    /// (the shape of each site's outstanding bytes, where no scan could run or finish).
    pub method: Cow<'static, str>,
    /// Whether anything was lost: bytes definitely or indirectly lost (`reachability`), or a
    /// growing site (`growth`).
    pub detected: bool,
    /// Of the outstanding blocks scanned: what no pointer reaches, what only lost blocks reach,
    /// and what a pointer reaches (all zero under `growth`).
    pub definitely_lost: Tally,
    pub indirectly_lost: Tally,
    pub reachable: Tally,
    /// Lost (definitely and indirectly) under `reachability`, at growing sites under `growth`.
    pub leaked_bytes: u64,
    pub leaked_count: u64,
    /// Reachable under `reachability`, at flat sites under `growth`.
    pub retained_bytes: u64,
    pub retained_count: u64,
    pub thresholds: LeakThresholds,
    /// Every scan made, in order; the verdict comes from the last complete one.
    pub scans: Vec<LeakScan>,
    /// Sites holding blocks: lost first, then by bytes.
    pub sites: Vec<LeakSite>,
    pub notes: Vec<String>,
}

/// Bytes and blocks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Tally {
    pub bytes: u64,
    pub count: u64,
}

impl Tally {
    pub(crate) fn add(&mut self, bytes: u64) {
        self.bytes += bytes;
        self.count += 1;
    }
}

impl std::ops::AddAssign for Tally {
    fn add_assign(&mut self, o: Self) {
        self.bytes += o.bytes;
        self.count += o.count;
    }
}

/// One reachability scan: when, why, what it cost the target, and what it found.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeakScan {
    /// `end`, `exit`, `budget` or `interval`.
    pub trigger: Cow<'static, str>,
    /// Seconds since the start of profiling.
    pub at: f64,
    /// Seconds the target was stopped.
    pub pause: f64,
    /// Seconds the scan took.
    pub duration: f64,
    /// Whether it ran to the end (else `reason`).
    pub complete: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub threads: usize,
    /// Memory ranges scanned as roots.
    pub regions: usize,
    /// Bytes of the target's memory read, and of those, roots.
    pub bytes_scanned: u64,
    pub root_bytes: u64,
    /// Outstanding blocks judged.
    pub blocks: u64,
    pub definitely_lost: Tally,
    pub indirectly_lost: Tally,
    pub reachable: Tally,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeakThresholds {
    /// `--leak-min-growth`, bytes per second.
    pub min_growth: f64,
    /// `--leak-warmup`, share of the run.
    pub warmup: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LeakSite {
    /// `definitely_lost`, `indirectly_lost` or `reachable` (the worst of its blocks) under
    /// `reachability`; `growing` or `flat` under `growth`.
    pub verdict: Cow<'static, str>,
    /// The growth verdict, a second opinion: `growing` or `flat`.
    pub trend: Cow<'static, str>,
    /// Its scanned blocks by verdict (under `reachability`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub definitely_lost: Option<Tally>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indirectly_lost: Option<Tally>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reachable: Option<Tally>,
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
