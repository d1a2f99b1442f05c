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

/// `--max-overhead`: watches the estimated slowdown over windows of about a second and picks
/// the hottest probes to detach when it exceeds the budget. Pure: the session feeds it hits and
/// CPU time and does the detaching.
#[derive(Debug)]
pub struct Budget {
    max_percent: f64,
    /// Per function: cost of one hit (entry and return averaged by their share), ns.
    cost_per_hit: Vec<f64>,
    last_hits: Vec<u64>,
    last_cpu: f64,
    detached: Vec<bool>,
}

/// How long the budget looks at before judging, seconds of target CPU time.
pub const BUDGET_MIN_CPU: f64 = 0.2;

impl Budget {
    /// `cost_per_hit[i]`: the average cost of one probe hit of function `i`, ns.
    pub fn new(max_percent: f64, cost_per_hit: Vec<f64>, cpu_now: f64) -> Self {
        let n = cost_per_hit.len();
        Self {
            max_percent,
            cost_per_hit,
            last_hits: vec![0; n],
            last_cpu: cpu_now,
            detached: vec![false; n],
        }
    }

    /// Feeds cumulative hits per function and the target's cumulative CPU time (seconds).
    /// Returns the functions to detach now (hottest first) and the window's slowdown, percent.
    pub fn check(&mut self, hits: &[u64], cpu_now: f64) -> (Vec<usize>, f64) {
        let cpu = cpu_now - self.last_cpu;
        if cpu < BUDGET_MIN_CPU {
            return (Vec::new(), 0.0);
        }
        let mut costs: Vec<(usize, f64)> = hits
            .iter()
            .enumerate()
            .filter(|(i, _)| !self.detached[*i])
            .map(|(i, &h)| {
                let delta = h.saturating_sub(self.last_hits[i]) as f64;
                (i, delta * self.cost_per_hit[i] * 1e-9)
            })
            .collect();
        self.last_hits.copy_from_slice(hits);
        self.last_cpu = cpu_now;
        let mut total: f64 = costs.iter().map(|(_, c)| c).sum();
        let window = slowdown_percent(total, cpu);
        costs.sort_by(|a, b| b.1.total_cmp(&a.1));
        let mut detach = Vec::new();
        for (i, cost) in costs {
            if slowdown_percent(total, cpu) <= self.max_percent || cost <= 0.0 {
                break;
            }
            total -= cost;
            self.detached[i] = true;
            detach.push(i);
        }
        (detach, window)
    }
}

#[cfg(test)]
mod budget_tests {
    use super::*;

    #[test]
    fn detaches_the_hottest_until_within_budget() {
        // Three functions at 1 µs per hit; the target used 1 s of CPU in the window.
        let mut b = Budget::new(10.0, vec![1000.0; 3], 0.0);
        // 400k hits = 0.4 s, 50k = 0.05 s, 10k = 0.01 s: 0.46 s of 1 s is 85% slowdown.
        let (detach, window) = b.check(&[400_000, 50_000, 10_000], 1.0);
        assert_eq!(detach, vec![0]);
        assert!(window > 80.0);
        // Without function 0: 0.06 s of 0.94 s is 6.8%, within 10%.
        let (detach, _) = b.check(&[400_000, 100_000, 20_000], 2.0);
        assert!(detach.is_empty(), "{detach:?}");
    }

    #[test]
    fn waits_for_enough_cpu_time_and_never_detaches_idle_functions() {
        let mut b = Budget::new(1.0, vec![1000.0; 2], 0.0);
        assert!(
            b.check(&[1_000_000, 0], 0.1).0.is_empty(),
            "too little CPU time to judge"
        );
        let (detach, _) = b.check(&[1_000_000, 0], 0.5);
        assert_eq!(detach, vec![0]);
        let (detach, _) = b.check(&[1_000_000, 0], 1.0);
        assert!(detach.is_empty());
    }
}
