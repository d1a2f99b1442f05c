//! What profiling costs the target: a per-hit cost for each kind of probe site, times the hits.

use crate::report::CostModel;

pub use crate::placement::CostClass as SiteClass;

/// Per-hit costs measured on a Linux 6.18 VM (uprobe + uretprobe pairs on the same function
/// placed on an emulated and on a single-stepped instruction); used until calibration replaces
/// them with numbers from the running machine.
pub fn default_model() -> CostModel {
    CostModel {
        emulated_entry_ns: 1_050.0,
        single_stepped_entry_ns: 12_250.0,
        return_ns: 1_050.0,
        source: "default",
    }
}

/// Estimated cost, ns, of `entries` entry hits on a site of `class` and `returns` return hits.
pub fn probe_cost_ns(model: &CostModel, class: SiteClass, entries: u64, returns: u64) -> f64 {
    let entry = match class {
        SiteClass::Emulated => model.emulated_entry_ns,
        SiteClass::SingleStepped => model.single_stepped_entry_ns,
    };
    entries as f64 * entry + returns as f64 * model.return_ns
}

/// Slowdown, percent: the added time over the time the target would have used without it.
pub fn slowdown_percent(cost_secs: f64, target_cpu_secs: f64) -> f64 {
    let base = target_cpu_secs - cost_secs;
    if cost_secs <= 0.0 {
        0.0
    } else if base <= 0.0 {
        // The measured CPU time is all probe cost (or too coarse to tell): report the cost
        // against the CPU time itself rather than divide by zero.
        100.0 * cost_secs / target_cpu_secs.max(cost_secs)
    } else {
        100.0 * cost_secs / base
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn costs_and_slowdown() {
        let m = default_model();
        assert_eq!(probe_cost_ns(&m, SiteClass::Emulated, 10, 10), 21_000.0);
        assert_eq!(probe_cost_ns(&m, SiteClass::SingleStepped, 1, 0), 12_250.0);
        assert!((slowdown_percent(1.0, 11.0) - 10.0).abs() < 1e-9);
        assert_eq!(slowdown_percent(0.0, 5.0), 0.0);
        assert_eq!(slowdown_percent(2.0, 1.0), 100.0);
    }
}
