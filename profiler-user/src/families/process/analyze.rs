//! The `system` analyzer: CPU and memory samples of the target from /proc -> summary.

use crate::{
    report::{Machine, SystemPoint, SystemSection, TIMELINE_POINTS},
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
        timeline: timeline(samples),
    })
}

/// The samples as chart points, thinned evenly to at most [`TIMELINE_POINTS`] (the last sample
/// always kept); each point's CPU is the rate since the point before it.
fn timeline(samples: &[Sample]) -> Vec<SystemPoint> {
    let step = samples.len().div_ceil(TIMELINE_POINTS).max(1);
    let last = samples.len().saturating_sub(1);
    let kept = samples
        .iter()
        .enumerate()
        .filter(|(i, _)| i % step == 0 || *i == last)
        .map(|(_, s)| *s);
    let mut points = Vec::new();
    let mut previous: Option<Sample> = None;
    for s in kept {
        let cpu = match previous {
            Some(p) if s.at > p.at => 100.0 * (s.cpu_time - p.cpu_time) / (s.at - p.at),
            _ => 0.0,
        };
        points.push(SystemPoint {
            at: s.at,
            cpu,
            rss: s.rss,
        });
        previous = Some(s);
    }
    points
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
        let rss: Vec<u64> = sec.timeline.iter().map(|p| p.rss).collect();
        assert_eq!(rss, [100, 300, 200]);
        assert_eq!(sec.timeline[1].cpu, 50.0);
    }

    #[test]
    fn a_long_run_is_thinned_to_the_bound() {
        let samples: Vec<Sample> = (0..5001)
            .map(|i| Sample {
                at: i as f64,
                cpu_time: i as f64 * 0.5,
                rss: i,
            })
            .collect();
        let points = timeline(&samples);
        assert!(points.len() <= TIMELINE_POINTS + 1, "{}", points.len());
        assert_eq!(points.last().unwrap().rss, 5000);
        assert!(points[1..].iter().all(|p| (p.cpu - 50.0).abs() < 1e-9));
    }
}
