//! The families beyond the built-in `process`, `system` and `functions`: each implements
//! [`FamilyRuntime`], and [`build`] is the one place that creates those the level selects.
//! Adding a family is its own files (kernel module, `probes/<name>.rs`, `analyze/<name>.rs`) plus
//! one line in [`build`] and its `available()` entry in the level table.

use std::time::Instant;

use aya::Ebpf;

use crate::{
    level::Family,
    report::{CostModel, Report},
    symbols::{
        resolve::{Module, TracedFunction},
        symbolize::{AddrSymbolizer, MappingSnapshot},
    },
};

/// A family's probe hits and their estimated cost to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProbeLoad {
    pub hits: u64,
    pub cost_ns: f64,
}

/// What a family may use while attaching.
pub struct AttachContext<'a> {
    pub pid: i32,
    /// `profiler run`: the target has not executed yet (its libraries are not mapped; `modules`
    /// lists what it will load).
    pub run_mode: bool,
    /// The executable first, then its libraries.
    pub modules: &'a [Module],
    /// The functions traced exactly (the `functions` family), by function id.
    pub traced: &'a [TracedFunction],
}

/// What a family may use while reporting.
pub struct ReportContext<'a> {
    pub pid: i32,
    pub symbolizer: &'a mut AddrSymbolizer,
    pub maps: &'a MappingSnapshot,
    /// CLOCK_MONOTONIC (what `bpf_ktime_get_ns` reads) when profiling started, ns.
    pub start_ktime_ns: u64,
    /// CLOCK_MONOTONIC when profiling ended, ns.
    pub end_ktime_ns: u64,
    /// Seconds profiled.
    pub duration: f64,
    /// The target's `wait(2)` status, when it exited while profiled.
    pub exit_status: Option<i32>,
    /// Names of the traced functions, by function id (for "the traced function running").
    pub traced_names: &'a [String],
    /// The per-hit costs the report prices probes with.
    pub cost_model: &'a CostModel,
}

/// A probe family's user side, driven by the session.
pub trait FamilyRuntime {
    fn family(&self) -> Family;

    /// Loads and attaches the family's programs; returns how many probes were attached.
    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &AttachContext<'_>) -> anyhow::Result<usize>;

    /// What the family attached where, and why, for its entry in the report's `families`.
    fn note(&self) -> Option<String> {
        None
    }

    /// A ring-buffer record whose header names one of this family's event kinds.
    fn on_event(&mut self, _kind: u16, _bytes: &[u8]) {}

    /// Called about every 200 ms while profiling (poll maps, sample /proc).
    fn on_tick(&mut self, _ebpf: &mut Ebpf, _pid: i32, _now: Instant) {}

    /// Whether this family handles records of `kind`.
    fn handles(&self, _kind: u16) -> bool {
        false
    }

    /// The family's probe hits so far and what they cost the target, estimated with the
    /// session's cost model: read live from `ebpf` while profiling, from what was harvested when
    /// `ebpf` is None. None for a family whose probes are not counted.
    fn probe_load(&self, _ebpf: Option<&Ebpf>, _model: &CostModel) -> Option<ProbeLoad> {
        None
    }

    /// The overhead budget is spent: detach the family's probes now. What they collected is
    /// kept, and the family reports the run up to now.
    fn shed(&mut self, _ebpf: &mut Ebpf) -> anyhow::Result<()> {
        Ok(())
    }

    /// Profiling has ended: detach and read the maps. Problems become warnings.
    fn harvest(&mut self, _ebpf: &mut Ebpf, _warnings: &mut Vec<String>) {}

    /// Writes the family's section(s) of the report.
    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>);
}

/// The selected families that have a runtime here; fails on a bad option (a malformed pattern
/// file), before anything is attached.
pub fn build(
    selected: &[Family],
    options: &FamilyOptions,
) -> anyhow::Result<Vec<Box<dyn FamilyRuntime>>> {
    let mut families: Vec<Box<dyn FamilyRuntime>> = Vec::new();
    for family in selected {
        if *family == Family::Errors {
            let db = crate::analyze::errors::load_patterns(options.patterns.as_deref())?;
            families.push(Box::new(crate::probes::errors::ErrorsRuntime::new(db)));
        }
        if *family == Family::Memory {
            families.push(Box::new(crate::probes::memory::MemoryRuntime::new(
                options.leak,
            )));
        }
    }
    Ok(families)
}

/// Family options from the command line.
#[derive(Debug, Clone, Default)]
pub struct FamilyOptions {
    /// Extra error-pattern file (`--patterns`).
    pub patterns: Option<std::path::PathBuf>,
    /// Thresholds of the memory family's leak verdict (`--leak-*`).
    pub leak: crate::analyze::memory::LeakOptions,
}
