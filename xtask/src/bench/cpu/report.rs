//! The cpu benchmark's tables: cost, stacks and shares per configuration, and the targets.

use std::{fmt::Write as _, path::PathBuf};

use super::{
    CONFIGS, ELSEWHERE_9999, HOT, OBJECTS, PERF_DWARF, PERF_FP, PERF_FP_9999, PROFILER_99,
    PROFILER_999, PROFILER_9999, Run, Sample, Sampler, Stacks, THREADS, Traced, median, mib,
};

/// The targets of the issue: slowdown at 99 and 999 Hz, percent; the profiler's CPU at 99 Hz,
/// percent of one core; shares within this many points of perf's (DWARF); the profiler's peak
/// RSS with the objects scenario's 200 objects mapped, bytes ("64 MB", taken as MiB).
const SLOWDOWN_99: f64 = 1.0;
const SLOWDOWN_999: f64 = 3.0;
const PROFILER_CPU: f64 = 2.0;
const SHARE_POINTS: f64 = 3.0;
const RSS_LIMIT: u64 = 64 << 20;

/// The medians of a configuration's runs: workload CPU and wall time per unit, ns.
fn per_unit(samples: &[Sample]) -> (Option<f64>, Option<f64>) {
    let per = |f: fn(&Run) -> f64| {
        median(
            samples
                .iter()
                .map(|x| f(&x.run) / x.run.units as f64)
                .collect(),
        )
    };
    (per(|r| r.cpu_ns), per(|r| r.wall_ns))
}

/// Slowdown of configuration `i` over the baseline, percent: of CPU time and of wall time per
/// unit (medians).
pub(super) fn slowdown(samples: &[Vec<Sample>], i: usize) -> (Option<f64>, Option<f64>) {
    let ((bc, bw), (c, w)) = (per_unit(&samples[0]), per_unit(&samples[i]));
    let pct = |t: Option<f64>, b: Option<f64>| Some((t? / b? - 1.0) * 100.0);
    (pct(c, bc), pct(w, bw))
}

/// What one sample of configuration `i` costs the workload, µs: its extra CPU time per run
/// over the baseline's (medians) over its samples per run (median).
/// A profiler of another process takes none of the workload's samples, but its event
/// interrupts the workload all the same: its count is the frequency over the run's CPU time.
fn per_sample_us(samples: &[Vec<Sample>], i: usize) -> Option<f64> {
    let (base, cpu) = (per_unit(&samples[0]).0?, per_unit(&samples[i]).0?);
    let units = samples[i].first()?.run.units as f64;
    let n = match CONFIGS[i].1 {
        Some(Sampler::Elsewhere(hz)) => hz as f64 * cpu * units / 1e9,
        _ => median(
            traced(&samples[i])
                .map(|t| t.stacks.samples as f64)
                .collect(),
        )?,
    };
    (n > 0.0).then(|| (cpu - base) * units / n / 1e3)
}

/// The slowdown, percent, that samples costing `us` each make at `hz` samples a second of the
/// workload's CPU: the samples come at `hz` of its time, their own included.
fn slowdown_at(us: f64, hz: u64) -> f64 {
    let f = us * 1e-6 * hz as f64;
    f / (1.0 - f) * 100.0
}

/// The kernel's time in the profiler's sampling program over the workload's CPU time, percent
/// (median of the runs).
pub(super) fn program_percent(samples: &[Sample]) -> Option<f64> {
    median(
        samples
            .iter()
            .filter_map(|x| Some(x.traced.as_ref()?.program_ns? / x.run.cpu_ns * 100.0))
            .collect(),
    )
}

/// A line on the floor the harness puts under the samplers' peak RSS: its own resident size
/// when it started them; a warning where a figure is not above it.
pub(super) fn harness_floor<'a>(all: impl Iterator<Item = &'a Traced>) -> String {
    let (mut floor, mut under) = (0, 0);
    for t in all {
        floor = floor.max(t.harness_rss);
        under += usize::from(t.ended.max_rss <= t.harness_rss);
    }
    let mut s = format!(
        "(a sampler's peak rss counts the harness's resident size when it started it, at most \
         {} here)\n",
        mib(floor)
    );
    if under > 0 {
        let _ = writeln!(
            s,
            "warning: {under} sampler run(s) peaked at or under the harness's size: their rss \
             is the harness's"
        );
    }
    s
}

fn traced(samples: &[Sample]) -> impl Iterator<Item = &Traced> {
    samples.iter().filter_map(|x| x.traced.as_ref())
}

/// The position of `label` in [`CONFIGS`].
fn at(label: &str) -> usize {
    CONFIGS.iter().position(|(l, _)| *l == label).unwrap_or(0)
}

pub(super) fn report(
    samples: &[Vec<Sample>],
    perf: &Result<PathBuf, String>,
    runs: u32,
    units: u64,
) -> String {
    let mut s = String::new();
    let (Some(base_cpu), Some(base_wall)) = per_unit(&samples[0]) else {
        return s;
    };
    let base: Vec<f64> = samples[0].iter().map(|x| x.run.cpu_ns).collect();
    let noise = (base.iter().copied().fold(f64::NEG_INFINITY, f64::max)
        / base.iter().copied().fold(f64::INFINITY, f64::min)
        - 1.0)
        * 100.0;
    let _ = writeln!(
        s,
        "cpu: slowdown of the workload (its CPU time per unit, median of {runs}; {THREADS} \
         threads × {units} units; baseline {:.2} µs of CPU, {:.2} µs of wall time per unit) \
         and the sampler's own cost",
        base_cpu / 1e3,
        base_wall / 1e3
    );
    let _ = writeln!(
        s,
        "{:<15}{:>9}{:>9}{:>11}{:>9}{:>13}{:>10}{:>14}{:>9}{:>10}{:>11}",
        "config",
        "slowdown",
        "wall",
        "µs/sample",
        "program",
        "cpu in run",
        "cpu all",
        "perf script",
        "samples",
        "complete",
        "peak rss"
    );
    for (i, (label, _)) in CONFIGS.iter().enumerate().skip(1) {
        let t: Vec<&Traced> = traced(&samples[i]).collect();
        if t.is_empty() {
            let why = perf.as_ref().err().map_or("not measured", |e| e.as_str());
            let _ = writeln!(s, "{label:<15}unavailable: {why}");
            continue;
        }
        let (cpu, wall) = slowdown(samples, i);
        let pct = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:+.2}%"));
        let med = |f: fn(&Traced) -> f64| median(t.iter().map(|x| f(x)).collect()).unwrap_or(0.0);
        let post = match median(t.iter().filter_map(|x| Some(x.post?.cpu)).collect()) {
            Some(c) => format!("{c:.2} s"),
            None => "-".into(),
        };
        let pooled = Stacks::pool(t.iter().map(|x| &x.stacks));
        let complete = match pooled.samples {
            0 => "-".to_string(),
            _ => format!("{:.1}%", pooled.percent(pooled.complete)),
        };
        let program = program_percent(&samples[i]).map_or("-".into(), |p| format!("{p:.2}%"));
        let price = match (per_sample_us(samples, i), cpu) {
            (Some(us), Some(pct)) if pct.abs() > noise => format!("{us:.1}"),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{label:<15}{:>9}{:>9}{price:>11}{program:>9}{:>12.2}%{:>8.2} s{post:>14}{:>9.0}\
             {complete:>10}{:>11}",
            pct(cpu),
            pct(wall),
            med(Traced::core_percent),
            med(|x| x.ended.cpu),
            med(|x| x.stacks.samples as f64),
            mib(t.iter().map(|x| x.ended.max_rss).max().unwrap_or(0)),
        );
    }
    let _ = writeln!(
        s,
        "slowdown: median CPU time per unit over the baseline's (wall: the same by wall time); \
         µs/sample: the extra CPU time of a run over its samples (medians), where the slowdown \
         is over the baseline's own spread ({noise:.1}%: its slowest run over its fastest); \
         program: the \
         kernel's time in the profiler's sampling program (all its runs, on every CPU) over \
         the workload's CPU time (median); cpu in run: the sampler's CPU time over the \
         workload's timed span, percent of one core (median, in steps of 10 ms); cpu all: its \
         whole process, start and report included (median); perf script: the post-processing \
         that unwinds perf's DWARF stacks (median); samples: per run (median); complete: share \
         of the samples (all runs) whose user stack reaches _start or a thread's start; peak \
         rss: the largest of the runs"
    );
    s.push_str(&harness_floor(samples.iter().flat_map(|x| traced(x))));

    let _ = writeln!(
        s,
        "\nper unit, µs: CPU time median (min..max); wall time median (min..max)"
    );
    for (i, (label, _)) in CONFIGS.iter().enumerate() {
        let range = |f: fn(&Run) -> f64| {
            let v: Vec<f64> = samples[i]
                .iter()
                .map(|x| f(&x.run) / x.run.units as f64 / 1e3)
                .collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            median(v).map(|m| format!("{m:.2} ({lo:.2}..{hi:.2})"))
        };
        if let (Some(c), Some(w)) = (range(|r| r.cpu_ns), range(|r| r.wall_ns)) {
            let _ = writeln!(s, "  {label:<15}{c:>21}  {w:>22}");
        }
    }

    if let (Some(p), Some(f)) = (
        per_sample_us(samples, at(PROFILER_9999)),
        per_sample_us(samples, at(PERF_FP_9999)),
    ) {
        let _ = writeln!(
            s,
            "\nthe price of one sample, from the runs at 9999 Hz (where the slowdown is a hundred \
             times that at 99 Hz): profiler {p:.1} µs, perf -g {f:.1} µs; at the profiler's \
             price, 99 Hz slows the workload by {:.2}% and 999 Hz by {:.2}%",
            slowdown_at(p, 99),
            slowdown_at(p, 999)
        );
    }
    if let Some(e) = per_sample_us(samples, at(ELSEWHERE_9999)) {
        let _ = writeln!(
            s,
            "{ELSEWHERE_9999}: the profiler at 9999 Hz on another process (a sleeping one) costs \
             this workload {e:.1} µs per tick of a 9999 Hz clock: at 99 Hz {:.2}%, at 999 Hz \
             {:.2}% of a process it does not profile",
            slowdown_at(e, 99),
            slowdown_at(e, 999)
        );
    }

    s.push_str(&shares(samples));

    let _ = writeln!(s, "\nwhat the samplers saw (last run)");
    for (i, (label, _)) in CONFIGS.iter().enumerate().skip(1) {
        if let Some(t) = traced(&samples[i]).last() {
            let _ = writeln!(s, "  {label:<15}{}", t.seen);
        }
    }
    s
}

/// The shares of the hot functions, all runs of each configuration pooled, next to the split
/// the code gives them; the profiler's difference from perf's DWARF stacks.
fn shares(samples: &[Vec<Sample>]) -> String {
    let mut s = String::new();
    let pooled: Vec<Stacks> = samples
        .iter()
        .map(|x| Stacks::pool(traced(x).map(|t| &t.stacks)))
        .collect();
    let dwarf = &pooled[at(PERF_DWARF)];
    for own in [false, true] {
        let title = if own {
            "self (the innermost frame)"
        } else {
            "total (the function anywhere on the stack)"
        };
        let count = |p: &Stacks, h: usize| if own { p.innermost[h] } else { p.total[h] };
        let _ = writeln!(
            s,
            "\nshare of the samples, percent, {title}: all runs pooled ({})",
            CONFIGS
                .iter()
                .enumerate()
                .skip(1)
                .map(|(i, (l, _))| format!("{l} {}", pooled[i].samples))
                .collect::<Vec<_>>()
                .join(", ")
        );
        let _ = writeln!(
            s,
            "{:<14}{:>7}{:>13}{:>14}{:>12}{:>9}{:>11}{:>12}",
            "function",
            "code",
            PROFILER_99,
            PROFILER_999,
            PERF_DWARF,
            PERF_FP,
            "99−dwarf",
            "999−dwarf"
        );
        for (h, hot) in HOT.iter().enumerate() {
            let share = |label: &str| {
                let p = &pooled[at(label)];
                (p.samples > 0).then(|| p.percent(count(p, h)))
            };
            let cell = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.1}"));
            let diff = |label: &str| match (share(label), share(PERF_DWARF)) {
                (Some(a), Some(b)) => format!("{:+.1}", a - b),
                _ => "-".into(),
            };
            let _ = writeln!(
                s,
                "{:<14}{:>7.0}{:>13}{:>14}{:>12}{:>9}{:>11}{:>12}",
                hot.name,
                if own { hot.own } else { hot.total },
                cell(share(PROFILER_99)),
                cell(share(PROFILER_999)),
                cell(share(PERF_DWARF)),
                cell(share(PERF_FP)),
                diff(PROFILER_99),
                diff(PROFILER_999)
            );
        }
    }
    let sd = |p: &Stacks| {
        // The binomial standard error of a difference of two shares near one half, points.
        let var = |n: u64| 0.25 / n.max(1) as f64;
        ((var(p.samples) + var(dwarf.samples)).sqrt() * 100.0).max(0.0)
    };
    let _ = writeln!(
        s,
        "code: the split of the loop iterations in cpu.c; sampling alone moves a share by up to \
         ±{:.1} points (profiler-99 − dwarf) and ±{:.1} (profiler-999 − dwarf), one standard \
         error at most",
        sd(&pooled[at(PROFILER_99)]),
        sd(&pooled[at(PROFILER_999)])
    );
    s
}

/// The largest difference, points, between `label`'s total shares of the hot functions and
/// perf's with DWARF stacks, and the function; None unless both were measured.
fn worst_share(samples: &[Vec<Sample>], label: &str) -> Option<(f64, &'static str)> {
    let pool = |l: &str| Stacks::pool(traced(&samples[at(l)]).map(|t| &t.stacks));
    let (p, d) = (pool(label), pool(PERF_DWARF));
    if p.samples == 0 || d.samples == 0 {
        return None;
    }
    HOT.iter()
        .enumerate()
        .map(|(h, hot)| {
            let diff = p.percent(p.total[h]) - d.percent(d.total[h]);
            (diff.abs(), hot.name)
        })
        .max_by(|a, b| a.0.total_cmp(&b.0))
}

/// The targets, each with its verdict.
pub(super) fn targets(samples: &[Vec<Sample>], objects_rss: Option<u64>) -> String {
    let mut s = String::new();
    let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
    let _ = writeln!(s, "targets");
    let price = per_sample_us(samples, at(PROFILER_9999));
    for (label, hz, limit) in [
        (PROFILER_99, 99, SLOWDOWN_99),
        (PROFILER_999, 999, SLOWDOWN_999),
    ] {
        let _ = match slowdown(samples, at(label)).0 {
            Some(p) => write!(
                s,
                "  {label}: slowdown < {limit}%: measured {p:+.2}%: {}",
                verdict(p < limit)
            ),
            None => write!(s, "  {label}: slowdown: not measured"),
        };
        let _ = match price {
            Some(us) => writeln!(
                s,
                "; at the price of a sample at 9999 Hz ({us:.1} µs) {:+.2}%: {}",
                slowdown_at(us, hz),
                verdict(slowdown_at(us, hz) < limit)
            ),
            None => writeln!(s),
        };
    }
    let cpu = median(
        traced(&samples[at(PROFILER_99)])
            .map(Traced::core_percent)
            .collect(),
    );
    let _ = match cpu {
        Some(c) => writeln!(
            s,
            "  {PROFILER_99}: profiler CPU < {PROFILER_CPU}% of one core during the run: \
             {c:.2}%: {}",
            verdict(c < PROFILER_CPU)
        ),
        None => writeln!(s, "  {PROFILER_99}: profiler CPU: not measured"),
    };
    for label in [PROFILER_99, PROFILER_999] {
        let _ = match worst_share(samples, label) {
            Some((d, f)) => writeln!(
                s,
                "  {label}: total shares within {SHARE_POINTS} points of {PERF_DWARF}'s: \
                 largest difference {d:.1} ({f}): {}",
                verdict(d <= SHARE_POINTS)
            ),
            None => writeln!(s, "  {label}: shares: no {PERF_DWARF} run to compare with"),
        };
    }
    let _ = match objects_rss {
        Some(r) => writeln!(
            s,
            "  {PROFILER_99}: peak RSS < {} with {} objects mapped: {}: {}",
            mib(RSS_LIMIT),
            OBJECTS,
            mib(r),
            verdict(r < RSS_LIMIT)
        ),
        None => writeln!(s, "  peak RSS with {} objects: not measured", OBJECTS),
    };
    s
}
