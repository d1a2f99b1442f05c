//! The one trait every probe family implements, and what the session hands it at each step.
//!
//! A family is one name in three places: `profiler-ebpf/src/<name>.rs` (its kernel programs),
//! `profiler-common/src/<name>.rs` (the types both sides share) and `families/<name>/` here
//! (`kernel.rs`: attach and typed map reads; `analyze.rs`: pure, unit-tested; `mod.rs`: this
//! trait). The session drives every family through the same steps:
//! `prepare` -> `load_options` -> `attach` -> (`on_event`, `on_tick`, budget) -> `before_stop`
//! (the target still running) -> `harvest` -> `report`; with the live view on, `live` about once
//! a second while collecting. The printed summary is made from the report alone, by each
//! family's `summary_block` (`families::summary`), so that `profiler report FILE.json` prints
//! it again from the JSON.

use aya::Ebpf;

use crate::{
    bpf::LoadOptions,
    level::FamilyId,
    report::{CostModel, Report},
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    tracee::{Module, Sample},
};

/// The note of the families whose uprobes are attached to one process (memory, functions).
pub(crate) const CHILDREN_NOT_COVERED: &str =
    "covers the target process only (its child processes are not covered yet)";

/// A family's probe hits and their estimated cost to the target.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProbeLoad {
    pub hits: u64,
    pub cost_ns: f64,
}

impl std::ops::AddAssign for ProbeLoad {
    fn add_assign(&mut self, other: Self) {
        self.hits += other.hits;
        self.cost_ns += other.cost_ns;
    }
}

/// What a family may use once the target is known, before anything is loaded.
pub(crate) struct TargetContext<'a> {
    pub pid: i32,
    /// `profiler run`: the target has not executed yet (its libraries are not mapped; `modules`
    /// lists what it will load).
    pub run_mode: bool,
    /// The executable first, then its libraries.
    pub modules: &'a [Module],
}

/// What a family may use on each tick of the collection loop (about every 200 ms).
pub(crate) struct TickContext {
    pub pid: i32,
}

/// What a ring-buffer record meant for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    /// The target's last thread is gone; its `wait(2)` status when it could be read.
    TargetExited(Option<i32>),
}

/// What a family may use while reporting.
pub(crate) struct ReportContext<'a> {
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
    /// The target's /proc samples, and how often they were taken (seconds).
    pub samples: &'a [Sample],
    pub sample_interval: f64,
}

/// A probe family's user side, driven by the session.
pub(crate) trait Family {
    fn id(&self) -> FamilyId;

    /// Whether a failure to attach ends the session (it is then an error, not a warning).
    fn essential(&self) -> bool {
        false
    }

    /// Whether its probes are priced per hit (the session then calibrates the cost model).
    fn priced(&self) -> bool {
        false
    }

    /// The target is known: find what to probe in its modules. Fails on what the user asked
    /// for and the target lacks (a `--func` that matches nothing), before anything is loaded.
    fn prepare(&mut self, _ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        Ok(())
    }

    /// What the family needs of the loader: globals and map sizes.
    fn load_options(&self, _options: &mut LoadOptions) {}

    /// Loads and attaches the family's programs; returns how many probes were attached.
    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize>;

    /// Why the family, though selected, has nothing to do (the functions family without
    /// `--func`); it then attaches nothing.
    fn idle(&self) -> Option<&'static str> {
        None
    }

    /// Why the family, though built, cannot run on this machine (the gpu family without an
    /// NVIDIA driver): it is then `not_available` in the report, with this note, and attaches
    /// nothing.
    fn unavailable(&self) -> Option<String> {
        None
    }

    /// What the family attached where, and why, for its entry in the report's `families`.
    fn note(&self) -> Option<String> {
        None
    }

    /// Names of the functions traced exactly, by function id: other families' events name the
    /// traced function running when they happened.
    fn traced_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// Whether this family handles ring-buffer records of `kind`.
    fn handles(&self, _kind: u16) -> bool {
        false
    }

    /// A ring-buffer record whose header names one of this family's event kinds.
    fn on_event(&mut self, _kind: u16, _bytes: &[u8]) -> Flow {
        Flow::Continue
    }

    /// Called about every 200 ms while profiling (poll maps, sample /proc).
    fn on_tick(&mut self, _ebpf: &mut Ebpf, _ctx: &TickContext) {}

    /// Called about every 20 ms for the whole run, for what must follow the target closely
    /// (the loader mapping its libraries after an exec): keep it to a cheap check.
    fn on_fast_tick(&mut self, _ebpf: &mut Ebpf, _ctx: &TickContext) {}

    /// `run`: the command has just executed a new program (a wrapper's exec of the real one),
    /// which has not run an instruction yet: the families that probe the program's own objects
    /// attach there (see `tracee::hold`).
    fn on_exec_stop(&mut self, _ebpf: &mut Ebpf, _ctx: &TickContext) {}

    /// `run`: the command is stopped at its exit, its memory still whole (see
    /// `tracee::hold`), and the ring buffer drained: the last chance to read it.
    fn on_exit_stop(&mut self, _ebpf: &mut Ebpf, _ctx: &TickContext) {}

    /// Profiling is ending with the target still running, and the kernel programs still count:
    /// the last moment at which the probes see everything the target does (the memory family
    /// scans the target here, while its frees are still seen).
    fn before_stop(&mut self, _ebpf: &mut Ebpf, _ctx: &TickContext) {}

    /// The units the overhead budget may detach one by one (a traced function each, or a whole
    /// family's probes), with what each has cost the target so far, ns, read live from `ebpf`.
    /// The list keeps its length and order for the whole run; a unit that was shed keeps its
    /// last cost. Empty for a family whose probes are not priced.
    fn budget_units(&mut self, _ebpf: &Ebpf, _model: &CostModel) -> Vec<f64> {
        Vec::new()
    }

    /// The name of budget unit `unit`, as the report and stderr say it ("memory family").
    fn unit_name(&self, _unit: usize) -> String {
        self.id().to_string()
    }

    /// The overhead budget is spent: detach unit `unit` now. What it collected is kept, and
    /// the family reports the run with it.
    fn shed(&mut self, _ebpf: &mut Ebpf, _unit: usize) -> anyhow::Result<()> {
        Ok(())
    }

    /// Profiling has ended (the kernel programs stopped counting at the end of the window, see
    /// `bpf::stop`): read the maps. The probes are still attached. Problems become warnings.
    fn harvest(&mut self, _ebpf: &mut Ebpf, _warnings: &mut Vec<String>) {}

    /// The report is written: take the probes down, as many at once as the kernel allows.
    fn detach(&mut self, _ebpf: &mut Ebpf) {}

    /// The family's probe hits over the run and what they cost the target (after `harvest`).
    fn probe_load(&self, _model: &CostModel) -> ProbeLoad {
        ProbeLoad::default()
    }

    /// Writes the family's section of the report.
    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>);

    /// The live view (`profiler top`, `--live`), about once a second while profiling: fills the
    /// family's section of `report` with what it has gathered so far, from the same kernel
    /// reads and the same analysis as `harvest` then `report`, while the probes run on. It
    /// leaves the family as it was, so the final report still covers the whole run, and writes
    /// no file. `ctx.duration` is the time profiled so far. A family that has nothing to show
    /// live leaves `report` alone.
    fn live(&mut self, _ebpf: &mut Ebpf, _report: &mut Report, _ctx: &mut ReportContext<'_>) {}
}

/// Paces a family's live snapshot where one can be dear (a map of a million outstanding
/// blocks to read, a long run's records to analyze again), so that the live view spends at most
/// about a tenth of the time on it: the family has a credit of time, which grows by a tenth of
/// the time that passes up to [`LIVE_CREDIT_NS`] and which each snapshot spends; with none
/// left, the last snapshot made is shown again until there is. Cheap snapshots (a few ms) are
/// made at every call, and the credit covers the first ones' one-off costs (the symbols read
/// the first time an address is named).
#[derive(Debug)]
pub(crate) struct LivePace<T> {
    /// What may still be spent, ns (negative after a snapshot that took more).
    credit_ns: i64,
    /// CLOCK_MONOTONIC of the last call, ns.
    last_call_ns: Option<u64>,
    last: Option<T>,
}

/// See [`LivePace`]: the most credit a family keeps, ns.
const LIVE_CREDIT_NS: i64 = 2_000_000_000;
/// See [`LivePace`]: the credit grows by the time that passes over this.
const LIVE_SHARE_INVERSE: i64 = 10;

impl<T> Default for LivePace<T> {
    fn default() -> Self {
        Self {
            credit_ns: LIVE_CREDIT_NS,
            last_call_ns: None,
            last: None,
        }
    }
}

impl<T: Clone> LivePace<T> {
    /// The snapshot: a new one from `make` when there is credit (`now_ns`, CLOCK_MONOTONIC; the
    /// time it took read from `clock`), else the last one made. `make` returns None when it has
    /// nothing to show (the last one is then shown).
    pub(crate) fn snapshot(
        &mut self,
        now_ns: u64,
        clock: impl Fn() -> u64,
        make: impl FnOnce() -> Option<T>,
    ) -> Option<T> {
        if let Some(last) = self.last_call_ns {
            let earned = (now_ns.saturating_sub(last) / LIVE_SHARE_INVERSE as u64) as i64;
            self.credit_ns = self.credit_ns.saturating_add(earned).min(LIVE_CREDIT_NS);
        }
        self.last_call_ns = Some(now_ns);
        if self.credit_ns > 0 {
            let made = make();
            let took = clock().saturating_sub(now_ns);
            self.credit_ns = self.credit_ns.saturating_sub(took as i64);
            if made.is_some() {
                self.last = made;
            }
        }
        self.last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cheap snapshots are made at every call, a one-off dear one too; snapshots that keep
    /// taking more than a tenth of the time are made only as the credit allows, the last one
    /// shown meanwhile; a snapshot with nothing to show keeps the last one.
    #[test]
    fn live_pace_makes_cheap_snapshots_always_and_dear_ones_seldom() {
        const S: u64 = 1_000_000_000;
        const MS: u64 = 1_000_000;
        let mut pace = LivePace::default();
        // Every second, taking 20 ms, but the first 500 ms: all made.
        for (n, took) in [500, 20, 20, 20, 20].into_iter().enumerate() {
            let at = n as u64 * S;
            assert_eq!(pace.snapshot(at, || at + took * MS, || Some(n)), Some(n));
        }
        // Snapshots of 1.5 s from 5 s: the credit, 1.92 s at the 5 s call and 0.52 s at the
        // 6 s one, pays for two; -0.98 s after them: none until 16 s.
        for n in [5, 6] {
            let at = n as u64 * S;
            let made = pace.snapshot(at, || at + 1500 * MS, || Some(n));
            assert_eq!(made, Some(n));
        }
        let unmade = || -> Option<usize> { panic!("made with no credit") };
        for s in 7..=15 {
            assert_eq!(pace.snapshot(s * S, || 0, unmade), Some(6), "at {s} s");
        }
        assert_eq!(pace.snapshot(16 * S, || 16 * S, || None), Some(6));
        assert_eq!(pace.snapshot(17 * S, || 17 * S, || Some(17)), Some(17));
    }
}
