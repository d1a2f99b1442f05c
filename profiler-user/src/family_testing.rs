//! What the families' unit tests report with (test builds only): a [`ReportContext`] of a run
//! made from parts the test owns, and frames named by hand.

use crate::{
    family::ReportContext,
    report::{CostModel, Frame},
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    tracee::Sample,
};

/// What a family's unit tests report with: the parts of a [`ReportContext`] it borrows.
pub(crate) struct TestReporting {
    pub symbolizer: AddrSymbolizer,
    pub maps: MappingSnapshot,
    pub cost_model: CostModel,
    pub traced_names: Vec<String>,
    pub samples: Vec<Sample>,
}

impl TestReporting {
    pub(crate) fn new() -> Self {
        Self {
            symbolizer: AddrSymbolizer::new(),
            maps: MappingSnapshot::default(),
            cost_model: crate::overhead::default_model(),
            traced_names: Vec::new(),
            samples: Vec::new(),
        }
    }

    /// A context of a run from `start_ns` to `end_ns` (CLOCK_MONOTONIC), the target alive.
    pub(crate) fn ctx(&mut self, start_ns: u64, end_ns: u64) -> ReportContext<'_> {
        ReportContext {
            symbolizer: &mut self.symbolizer,
            maps: &self.maps,
            start_ktime_ns: start_ns,
            end_ktime_ns: end_ns,
            duration: end_ns.saturating_sub(start_ns) as f64 * 1e-9,
            exit_status: None,
            traced_names: &self.traced_names,
            cost_model: &self.cost_model,
            samples: &self.samples,
            sample_interval: 0.2,
        }
    }
}

/// A frame of `function` in `module`, at offset 0, without a source line.
pub(crate) fn frame(function: &str, module: &str) -> Frame {
    Frame {
        function: function.into(),
        module: module.into(),
        offset: "0x0".into(),
        file: None,
        line: None,
    }
}
