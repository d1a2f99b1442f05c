//! The live view's snapshots: a `Report` of the run so far, built about once a second while the
//! probes run on, by the families' `live` hooks (the same kernel reads and analysis as the
//! final report; see `Family::live`). The head (run, target, families) is the final report's,
//! made by the session before collecting starts.

use std::{path::PathBuf, time::Instant};

use aya::Ebpf;

use crate::{
    clock::monotonic_ns,
    family::{Family, ReportContext},
    overhead,
    report::{BudgetSection, CostModel, Detached, Report},
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    tracee::Sample,
};

/// Where the tests read each snapshot as JSON (the report's schema), replaced atomically each
/// time; with it set a session builds snapshots even without the full-screen view.
pub(crate) const SNAPSHOT_ENV: &str = "PROFILER_LIVE_SNAPSHOT";

/// What a snapshot needs beyond what the collection loop holds.
pub(crate) struct Snapshots {
    /// The report's head: run, target and families, with no family section.
    head: Report,
    /// Kept from one snapshot to the next: each address is symbolized once.
    symbolizer: AddrSymbolizer,
    cost_model: CostModel,
    traced_names: Vec<String>,
    start: Instant,
    start_ktime_ns: u64,
    sample_interval: f64,
    /// `--max-overhead`, percent.
    max_overhead: Option<f64>,
    dump: Option<PathBuf>,
}

impl Snapshots {
    pub(crate) fn new(
        head: Report,
        cost_model: CostModel,
        traced_names: Vec<String>,
        (start, start_ktime_ns): (Instant, u64),
        sample_interval: f64,
        max_overhead: Option<f64>,
    ) -> Self {
        Self {
            head,
            symbolizer: AddrSymbolizer::new(),
            cost_model,
            traced_names,
            start,
            start_ktime_ns,
            sample_interval,
            max_overhead,
            dump: std::env::var_os(SNAPSHOT_ENV).map(PathBuf::from),
        }
    }

    /// The run so far. `detached`: what the overhead budget has detached.
    pub(crate) fn take(
        &mut self,
        ebpf: &mut Ebpf,
        families: &mut [Box<dyn Family>],
        maps: &MappingSnapshot,
        samples: &[Sample],
        detached: &[Detached],
    ) -> Report {
        let duration = self.start.elapsed().as_secs_f64();
        let mut report = self.head.clone();
        report.profiler.duration = duration;
        // The probes' cost so far, as the budget reads it (the priced families').
        let mut cost_ns = 0.0;
        for family in families.iter_mut() {
            cost_ns += family
                .budget_units(ebpf, &self.cost_model)
                .iter()
                .sum::<f64>();
        }
        let target_cpu = match (samples.first(), samples.last()) {
            (Some(first), Some(last)) => (last.cpu_time - first.cpu_time).max(0.0),
            _ => 0.0,
        };
        let cost = cost_ns * 1e-9;
        let slowdown = overhead::slowdown(cost, target_cpu);
        let o = &mut report.overhead;
        o.estimated_cost = cost;
        o.target_cpu_time = target_cpu;
        o.estimated_slowdown_percent = slowdown.percent;
        o.probe_share_percent = 100.0 * slowdown.share;
        o.dominated = slowdown.dominated;
        o.budget = self.max_overhead.map(|max_percent| BudgetSection {
            max_percent,
            detached: detached.to_vec(),
        });
        let mut ctx = ReportContext {
            symbolizer: &mut self.symbolizer,
            maps,
            start_ktime_ns: self.start_ktime_ns,
            end_ktime_ns: monotonic_ns(),
            duration,
            exit_status: None,
            traced_names: &self.traced_names,
            cost_model: &self.cost_model,
            samples,
            sample_interval: self.sample_interval,
        };
        for family in families.iter_mut() {
            family.live(ebpf, &mut report, &mut ctx);
        }
        if let Some(path) = &self.dump {
            // A test hook: a failure shows as a missing file in the test.
            let _ = crate::report::json::write(&report, path);
        }
        report
    }
}
