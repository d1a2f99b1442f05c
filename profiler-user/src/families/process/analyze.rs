//! The `system` analyzer: CPU and memory samples of the target from /proc -> summary.

use crate::{
    report::{Machine, SystemSection},
    tracee::Sample,
};

/// Summarises the samples; `None` with fewer than one sample.
pub(crate) fn summarize(
    samples: &[Sample],
    interval: f64,
    machine: Machine,
) -> Option<SystemSection> {
    let last = samples.last()?;
    let rates: Vec<f64> = samples
        .windows(2)
        .filter(|w| w[1].at > w[0].at)
        .map(|w| 100.0 * (w[1].cpu_time - w[0].cpu_time) / (w[1].at - w[0].at))
        .collect();
    let first = samples[0];
    let span = last.at - first.at;
    Some(SystemSection {
        interval,
        samples: samples.len(),
        current_cpu: rates.last().copied().unwrap_or(0.0),
        peak_cpu: rates.iter().copied().fold(0.0, f64::max),
        average_cpu: if span > 0.0 {
            100.0 * (last.cpu_time - first.cpu_time) / span
        } else {
            0.0
        },
        current_rss: last.rss,
        peak_rss: samples.iter().map(|s| s.rss).max().unwrap_or(0),
        cpu_cores: machine.cores,
        machine,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_rates_and_peaks() {
        let s = |at, cpu_time, rss| Sample { at, cpu_time, rss };
        let samples = [s(0.0, 0.0, 100), s(1.0, 0.5, 300), s(2.0, 1.5, 200)];
        let machine = Machine {
            cores: 4,
            ..Machine::default()
        };
        let sec = summarize(&samples, 1.0, machine.clone()).unwrap();
        assert_eq!(sec.current_cpu, 100.0);
        assert_eq!(sec.peak_cpu, 100.0);
        assert_eq!(sec.average_cpu, 75.0);
        assert_eq!(sec.peak_rss, 300);
        assert_eq!(sec.current_rss, 200);
        assert_eq!(sec.cpu_cores, 4);
        assert!(summarize(&[], 1.0, machine).is_none());
    }
}
