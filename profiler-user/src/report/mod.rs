//! The report model: one serde type, versioned (see docs/report-schema.md), and its renderers.
//!
//! A leaf: analyzers build these types and renderers read them; the model imports neither.
//!
//! The model reads back what it wrote (`profiler report FILE.json`: [`json::read`]), into the
//! same values. Its words from a fixed vocabulary (a status, a trend, a kind, the version) are
//! `Cow<'static, str>`: the profiler's own constants, borrowed, when a run builds the report,
//! and owned strings when a file is read, so reading leaks nothing and takes any word a later
//! minor version may add.

pub(crate) mod cpu;
pub(crate) mod errors;
pub(crate) mod functions;
pub(crate) mod gpu;
pub(crate) mod html;
pub(crate) mod json;
pub(crate) mod memory;
pub(crate) mod profile;
pub(crate) mod python;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod text;
pub(crate) mod threads;

use std::{borrow::Cow, collections::BTreeMap};

use serde::{Deserialize, Serialize};

use crate::{level::Level, linux};

pub(crate) use errors::ErrorsSection;
pub(crate) use functions::FunctionProfile;
pub(crate) use memory::MemorySection;
pub(crate) use threads::ThreadsSection;

/// Version of the JSON schema (docs/report-schema.md). Bump the minor version when fields are
/// added, the major version when a field changes meaning or goes away.
pub(crate) const SCHEMA_VERSION: &str = "3.4";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Report {
    pub schema_version: Cow<'static, str>,
    pub profiler: ProfilerInfo,
    pub target: TargetSection,
    /// The processes seen: the target first, then the children it started while profiled, in
    /// the order they forked.
    pub processes: Vec<ProcessEntry>,
    /// Each probe family and what became of it.
    pub families: Vec<FamilyStatus>,
    /// One entry per traced function, by total time, longest first.
    pub functions: Vec<FunctionProfile>,
    /// The functions the `--func` specs matched that are not traced, and why.
    pub skipped_functions: Vec<functions::SkippedFunction>,
    pub overhead: Overhead,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system: Option<SystemSection>,
    /// Failures, fatal signals and printed errors, classified (the `errors` family).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorsSection>,
    /// CPU samples with stacks (the `cpu` family); see docs/cpu.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu: Option<cpu::CpuSection>,
    /// Allocations and leaks (the `memory` family); see docs/memory.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub memory: Option<MemorySection>,
    /// The NVIDIA devices and the target's GPU memory (the `gpu` family, NVML); see
    /// docs/report-schema.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<gpu::GpuSection>,
    /// Threads, locks and deadlocks (the `threads` family); see docs/report-schema.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads: Option<ThreadsSection>,
    /// A CPython target's interpreter, Python walks and exceptions (the `python` family); see
    /// docs/python.md.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub python: Option<python::PythonSection>,
    /// Things the user should know (a family not available, data lost, the target gone early).
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct ProfilerInfo {
    pub version: Cow<'static, str>,
    pub debug_level: Level,
    /// "attach" or "run".
    pub mode: Cow<'static, str>,
    /// Seconds from the probes being attached to the end of profiling.
    pub duration: f64,
    /// Unix time (seconds) when profiling started.
    pub started_at: f64,
    /// Why profiling ended: "duration", "interrupted", "target_exited", "error".
    pub end_reason: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct TargetSection {
    pub pid: i32,
    pub exe: String,
    pub cmdline: Vec<String>,
    pub exited: bool,
    /// Present when the target exited while profiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<ExitStatus>,
}

/// One process of the target's tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProcessEntry {
    pub pid: u32,
    /// Its parent's pid (None: unknown).
    pub parent_pid: Option<u32>,
    /// Its command line (the new one after an exec), sanitized as `target.cmdline`.
    pub command: Vec<String>,
    /// Present when it exited while profiled.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_status: Option<ExitStatus>,
    /// Whether its events were recorded: false only when the map of followed processes was
    /// full when it forked (with `--no-children` only the target is listed).
    pub followed: bool,
    /// Seconds after profiling started when it was forked; absent for a process that was there
    /// before (the target, the children `attach` found).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_at: Option<f64>,
    /// Seconds after profiling started when it exited; absent while it runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exited_at: Option<f64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ExitStatus {
    /// The exit code, when the target exited normally.
    pub code: Option<i32>,
    /// The signal that ended it (e.g. "SIGSEGV"), when one did.
    pub signal: Option<String>,
    pub core_dumped: bool,
}

impl ExitStatus {
    /// From a `wait(2)` status.
    pub(crate) fn from_wait_status(status: i32) -> Self {
        match linux::wait_status(status) {
            linux::WaitStatus::Signaled {
                signal,
                core_dumped,
            } => Self {
                code: None,
                signal: Some(linux::signal_name(signal)),
                core_dumped,
            },
            linux::WaitStatus::Exited(code) => Self {
                code: Some(code),
                signal: None,
                core_dumped: false,
            },
            // Not an end: reported as it stands.
            linux::WaitStatus::Other => Self {
                code: None,
                signal: None,
                core_dumped: false,
            },
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct FamilyStatus {
    pub name: Cow<'static, str>,
    /// "attached", "not_selected", "not_available" (not in this build), "idle" (selected but
    /// given nothing to do) or "failed".
    pub status: Cow<'static, str>,
    pub probes: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct Overhead {
    pub probes_attached: usize,
    pub probe_hits: u64,
    /// Per-hit costs used for the estimate, ns, and where they came from.
    pub cost_model: CostModel,
    /// Estimated time the probes added to the target, seconds.
    pub estimated_cost: f64,
    /// CPU time the target used while profiled, seconds (probe cost included).
    pub target_cpu_time: f64,
    /// `estimated_cost` over the target's CPU time without it, percent; when `dominated`, the
    /// lower bound 900 (10× slower), not an estimate.
    pub estimated_slowdown_percent: f64,
    /// `estimated_cost` over `target_cpu_time`, percent (at most 100).
    pub probe_share_percent: f64,
    /// The probes took at least 90% of the target's CPU time: it ran 10× slower or more, and
    /// no closer figure is given (see docs/report-schema.md).
    pub dominated: bool,
    /// `--max-overhead` and what it detached; absent when no budget was set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<BudgetSection>,
    /// What the kernel side could not record, by counter (zero counters left out).
    pub lost: BTreeMap<Cow<'static, str>, u64>,
    /// Things that are not losses but explain numbers (calls before attach, abandoned calls).
    pub notes: BTreeMap<Cow<'static, str>, u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct BudgetSection {
    /// The budget, percent slowdown.
    pub max_percent: f64,
    /// Function probes detached to stay within it, in order.
    pub detached: Vec<Detached>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Detached {
    pub function: String,
    /// Seconds after profiling started.
    pub at: f64,
    /// The estimated slowdown over the window that exceeded the budget, percent.
    pub window_slowdown_percent: f64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CostModel {
    pub emulated_entry_ns: f64,
    pub single_stepped_entry_ns: f64,
    pub return_ns: f64,
    /// Of a traced call's own entry and return probes (emulated entry), the cost that lands
    /// within the call's measured time, ns.
    pub in_call_ns: f64,
    /// "calibrated" (measured on this machine at start-up) or "default".
    pub source: Cow<'static, str>,
}

/// Process CPU and memory sampled from /proc.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct SystemSection {
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
    /// Logical CPUs on the machine (not only those the profiler may run on).
    pub cpu_cores: usize,
    /// The machine the target ran on.
    pub machine: Machine,
    /// CPU and resident set over time, at most [`TIMELINE_POINTS`] + 1 points (samples evenly
    /// thinned on a long run): what the HTML report's charts draw. Added in 3.1: empty when a
    /// 3.0 report is read.
    #[serde(default)]
    pub timeline: Vec<SystemPoint>,
}

/// The most points `system.timeline` keeps.
pub(crate) const TIMELINE_POINTS: usize = 1000;

/// One point of `system.timeline`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub(crate) struct SystemPoint {
    /// Seconds since profiling started.
    pub at: f64,
    /// CPU use since the previous point, percent of one core (0 at the first point).
    pub cpu: f64,
    /// Resident set, bytes.
    pub rss: u64,
}

/// Facts about the machine (from sysinfo).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct Machine {
    /// Logical CPUs.
    pub cores: usize,
    /// Physical cores, when known.
    pub physical_cores: Option<usize>,
    /// The CPU's brand string, e.g. "Intel(R) Xeon(R) ...".
    pub cpu_model: String,
    /// Memory, bytes.
    pub memory: u64,
    /// Kernel release, e.g. "6.18.0".
    pub kernel: String,
    /// The NVIDIA GPUs NVML sees (the gpu family's, where it runs with NVML; added in 3.4).
    #[serde(default)]
    pub gpus: Vec<MachineGpu>,
}

/// A GPU of the machine.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct MachineGpu {
    pub index: u32,
    pub name: String,
    /// Memory, bytes.
    pub memory: u64,
}

/// One frame of a symbolized stack.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Frame {
    /// Demangled function name, or `??` when unknown.
    pub function: String,
    /// File name of the module.
    pub module: String,
    /// Offset of the address in the module file, hex.
    pub offset: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
}
