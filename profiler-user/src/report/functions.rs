//! The `functions` section: one profile per traced function.

use serde::Serialize;

use super::Frame;

#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct Percentiles {
    pub p50: f64,
    pub p90: f64,
    pub p99: f64,
}

/// One bucket of a function's duration histogram: the timed calls that took from `low` up to
/// `high` seconds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub(crate) struct HistBucket {
    pub low: f64,
    pub high: f64,
    pub count: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct ThreadBreakdown {
    pub tid: u32,
    pub calls: u64,
    pub total_time: f64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct Caller {
    /// The calling function and the return address in it.
    #[serde(flatten)]
    pub frame: Frame,
    /// Exact number of calls from this call site.
    pub calls: u64,
}

#[derive(Debug, Clone, Serialize)]
pub(crate) struct CallStack {
    /// Innermost first: the traced function's caller, its caller, ...
    pub frames: Vec<Frame>,
    /// How many sampled calls had this stack.
    pub samples: u64,
}

/// Where a function's probes sit and what they cost.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct ProbeSite {
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

/// A function a `--func` matched that is not traced, and why.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct SkippedFunction {
    pub function_name: String,
    pub module: String,
    /// Address in the module (hex).
    pub address: String,
    /// Why: the kernel would refuse a probe on it (known from its code before attaching), or
    /// refused one when attached (the kernel's error).
    pub reason: String,
}

/// The profile of one traced function. Times in seconds.
#[derive(Debug, Clone, Default, Serialize)]
pub(crate) struct FunctionProfile {
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
    /// `total_time` less the estimated cost of the probe hits within the calls (the calls' own
    /// entry and return, and those of the traced calls they made); the other times are raw.
    pub net_total_time: f64,
    /// `average_time`, net as `net_total_time`.
    pub net_average_time: f64,
    /// The share of the measured time that is probe cost, percent.
    pub probe_share_percent: f64,
    /// The probe cost is at least half the measured time: the raw times are mostly the probes'.
    pub probe_dominated: bool,
    /// Probe hits of traced functions within the timed calls (their own entry and return
    /// included), counted in the kernel: what the net times take out, priced per hit.
    pub probe_hits_within: u64,
    pub percentiles: Percentiles,
    /// The timed calls' durations, from the kernel's log-linear histogram: its non-empty
    /// buckets, shortest first.
    pub histogram: Vec<HistBucket>,
    /// Calls still running when profiling stopped (not counted in the times).
    pub in_flight: u64,
    /// Calls left without a return (longjmp, exception, unwinding): not timed.
    pub abandoned: u64,
    pub threads: Vec<ThreadBreakdown>,
    pub callers: Vec<Caller>,
    pub call_stacks: Vec<CallStack>,
    pub probe: ProbeSite,
    /// With the threads family: the timed calls' on-CPU and off-CPU time, and their average
    /// CPU use (`on_cpu_time`, `off_cpu_time`, `average_cpu_peak`).
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<super::threads::FunctionCpuSplit>,
    /// With the memory family's allocator probes: what the calls that returned allocated and
    /// released, callees included.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<FunctionMemory>,
}

/// A traced function's memory, over its calls that returned while profiled (callees included:
/// an allocation counts for every traced call in progress on its thread). Bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub(crate) struct FunctionMemory {
    /// Blocks allocated within the calls, and their bytes.
    pub allocations: u64,
    pub allocated_bytes: u64,
    /// Blocks released within the calls (wherever they were allocated), and the bytes of those
    /// the memory family saw allocated.
    pub frees: u64,
    pub freed_bytes: u64,
    /// (`allocated_bytes` − `freed_bytes`) / `total_calls`: negative when the calls release
    /// more than they allocate.
    pub net_bytes_per_call: f64,
    /// Each call's peak of its running net bytes (never below 0), averaged over the calls, and
    /// the highest.
    pub average_memory_peak: f64,
    pub max_memory_peak: u64,
}
