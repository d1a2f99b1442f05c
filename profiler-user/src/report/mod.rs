//! The report: one serde type, versioned (see docs/report-schema.md), and its renderers.

pub mod json;
pub mod text;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::{level::Level, symbols::symbolize::Frame};

/// Version of the JSON schema (docs/report-schema.md). Bump the minor version when fields are
/// added, the major version when a field changes meaning or goes away.
pub const SCHEMA_VERSION: &str = "1.0";

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: &'static str,
    pub profiler: ProfilerInfo,
    pub target: TargetSection,
    /// Each probe family and what became of it.
    pub families: Vec<FamilyStatus>,
    /// One entry per traced function, by total time, longest first.
    pub functions: Vec<FunctionProfile>,
    pub overhead: Overhead,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSection>,
    /// Failures, fatal signals and printed errors, classified (the `errors` family).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<crate::analyze::errors::ErrorsSection>,
    /// Allocations and leaks (the `memory` family); see docs/memory.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySection>,
    /// Things the user should know (a family not available, data lost, the target gone early).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ProfilerInfo {
    pub version: &'static str,
    pub debug_level: Level,
    /// "attach" or "run".
    pub mode: &'static str,
    /// Seconds from the probes being attached to the end of profiling.
    pub duration: f64,
    /// Unix time (seconds) when profiling started.
    pub started_at: f64,
    /// Why profiling ended: "duration", "interrupted", "target_exited", "error".
    pub end_reason: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetSection {
    pub pid: i32,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub exited: bool,
    /// Present when the target exited while profiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<ExitStatus>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExitStatus {
    /// The exit code, when the target exited normally.
    pub code: Option<i32>,
    /// The signal that ended it (e.g. "SIGSEGV"), when one did.
    pub signal: Option<String>,
    pub core_dumped: bool,
}

impl ExitStatus {
    /// Decodes a `wait(2)` status.
    pub fn from_wait_status(status: i32) -> Self {
        let signal = status & 0x7f;
        if signal == 0 {
            Self {
                code: Some((status >> 8) & 0xff),
                signal: None,
                core_dumped: false,
            }
        } else {
            Self {
                code: None,
                signal: Some(signal_name(signal)),
                core_dumped: status & 0x80 != 0,
            }
        }
    }
}

/// "SIGSEGV" for 11, and so on.
pub fn signal_name(signal: i32) -> String {
    const NAMES: [&str; 32] = [
        "0",
        "SIGHUP",
        "SIGINT",
        "SIGQUIT",
        "SIGILL",
        "SIGTRAP",
        "SIGABRT",
        "SIGBUS",
        "SIGFPE",
        "SIGKILL",
        "SIGUSR1",
        "SIGSEGV",
        "SIGUSR2",
        "SIGPIPE",
        "SIGALRM",
        "SIGTERM",
        "SIGSTKFLT",
        "SIGCHLD",
        "SIGCONT",
        "SIGSTOP",
        "SIGTSTP",
        "SIGTTIN",
        "SIGTTOU",
        "SIGURG",
        "SIGXCPU",
        "SIGXFSZ",
        "SIGVTALRM",
        "SIGPROF",
        "SIGWINCH",
        "SIGIO",
        "SIGPWR",
        "SIGSYS",
    ];
    NAMES
        .get(signal as usize)
        .map(|s| s.to_string())
        .unwrap_or_else(|| format!("SIG{signal}"))
}

#[derive(Debug, Clone, Serialize)]
pub struct FamilyStatus {
    pub name: &'static str,
    /// "attached", "not_selected", "not_available" (not in this build), "idle" (selected but
    /// given nothing to do) or "failed".
    pub status: &'static str,
    pub probes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct ThreadBreakdown {
    pub tid: u32,
    pub calls: u64,
    pub total_time: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Caller {
    /// The calling function and the return address in it.
    #[serde(flatten)]
    pub frame: Frame,
    /// Exact number of calls from this call site.
    pub calls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CallStack {
    /// Innermost first: the traced function's caller, its caller, ...
    pub frames: Vec<Frame>,
    /// How many sampled calls had this stack.
    pub samples: u64,
}

/// Where a function's probes sit and what they cost.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeSite {
    /// Offset of the entry probe from the function's address.
    pub offset: u64,
    /// The instruction the entry probe sits on.
    pub instruction: String,
    /// "emulated" (the kernel runs the instruction itself: cheap) or "single_stepped".
    pub class: &'static str,
    pub reason: String,
    /// Entry and return probe hits.
    pub hits: u64,
    /// Estimated time the probes cost the target, seconds.
    pub estimated_cost: f64,
}

/// The profile of one traced function. Times in seconds.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionProfile {
    /// Demangled name, without the module.
    pub function_name: String,
    /// File name of the executable or library that defines it.
    pub module: String,
    /// Address in the module (hex).
    pub address: String,
    /// Calls that returned while profiled, exactly.
    pub total_calls: u64,
    /// Calls whose duration was measured: all of them, or a sample once the function is hot
    /// (see `--time-every`); the times below are theirs, `total_time` scaled to `total_calls`.
    pub timed_calls: u64,
    pub total_time: f64,
    pub average_time: f64,
    pub min_time: f64,
    pub max_time: f64,
    pub std_dev_time: f64,
    pub percentiles: Percentiles,
    /// Calls still running when profiling stopped (not counted in the times).
    pub in_flight: u64,
    /// Calls left without a return (longjmp, exception, unwinding): not timed.
    pub abandoned: u64,
    pub threads: Vec<ThreadBreakdown>,
    pub callers: Vec<Caller>,
    pub call_stacks: Vec<CallStack>,
    pub probe: ProbeSite,
}

#[derive(Debug, Clone, Serialize)]
pub struct Overhead {
    pub probes_attached: usize,
    pub probe_hits: u64,
    /// Per-hit costs used for the estimate, ns, and where they came from.
    pub cost_model: CostModel,
    /// Estimated time the probes added to the target, seconds.
    pub estimated_cost: f64,
    /// CPU time the target used while profiled, seconds (probe cost included).
    pub target_cpu_time: f64,
    /// `estimated_cost` over the target's CPU time without it, percent.
    pub estimated_slowdown_percent: f64,
    /// `--max-overhead` and what it detached; absent when no budget was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSection>,
    /// What the kernel side could not record, by counter (zero counters left out).
    pub lost: BTreeMap<&'static str, u64>,
    /// Things that are not losses but explain numbers (calls before attach, abandoned calls).
    pub notes: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BudgetSection {
    /// The budget, percent slowdown.
    pub max_percent: f64,
    /// Function probes detached to stay within it, in order.
    pub detached: Vec<Detached>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Detached {
    pub function: String,
    /// Seconds after profiling started.
    pub at: f64,
    /// The estimated slowdown over the window that exceeded the budget, percent.
    pub window_slowdown_percent: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct CostModel {
    pub emulated_entry_ns: f64,
    pub single_stepped_entry_ns: f64,
    pub return_ns: f64,
    /// "calibrated" (measured on this machine at start-up) or "default".
    pub source: &'static str,
}

/// Process CPU and memory sampled from /proc.
#[derive(Debug, Clone, Serialize)]
pub struct SystemSection {
    /// Sampling interval, seconds.
    pub interval: f64,
    pub samples: usize,
    /// CPU use, percent of one core, over the last interval.
    pub current_cpu: f64,
    pub peak_cpu: f64,
    pub average_cpu: f64,
    /// Resident set, bytes.
    pub current_rss: u64,
    pub peak_rss: u64,
    /// Cores on the machine.
    pub cpu_cores: usize,
}

/// What the target holds, what it allocates and what it leaks. Bytes are bytes, times seconds,
/// rates bytes per second (see docs/memory.md).
#[derive(Debug, Clone, Serialize)]
pub struct MemorySection {
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
pub struct AllocatorInfo {
    /// "glibc", "musl", "jemalloc", "tcmalloc", "mimalloc" or "unknown".
    pub name: &'static str,
    /// File name of the module that defines it.
    pub module: String,
    pub path: String,
    pub functions: Vec<AllocatorFunction>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AllocatorFunction {
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
pub struct AllocationSummary {
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
pub struct FunctionAllocations {
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
pub struct SiteAllocations {
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
pub struct LeakDetection {
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
pub struct LeakThresholds {
    /// `--leak-min-growth`, bytes per second.
    pub min_growth: f64,
    /// `--leak-warmup`, share of the run.
    pub warmup: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct LeakSite {
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
