//! The `memory` analyzer: per-site allocation totals, outstanding blocks and their growth over
//! the run, and /proc samples -> the `memory` section.
//!
//! The leak verdict is a reachability scan's where one ran (see [`super::reach`]): each site's
//! blocks definitely lost, indirectly lost or reachable. Next to it, and in its place where no
//! scan could run, is the growth verdict, by the shape of a site's outstanding bytes over the run:
//! a growing site (most of its growth comes after the warm-up share of the run, and it reaches a
//! new high in the final share) against a flat one (a cache that grew and then stayed).

use profiler_common::memory::SiteStats;

use super::scan::SiteVerdicts;
use crate::{
    report::memory::{
        AllocationSummary, AllocatorInfo, FunctionAllocations, GrowthSite, GrowthSummary,
        LeakDetection, LeakScan, LeakSite, LeakThresholds, MemorySection, SiteAllocations, Tally,
    },
    symbols::symbolize::Frame,
};

/// Thresholds of the leak verdict (command-line options).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct LeakOptions {
    /// Least growth of a site's outstanding bytes, bytes per second, for a leak.
    pub min_growth: f64,
    /// Share of the run (0..0.5) at its start treated as warm-up, and at its end in which a leak
    /// must still be growing.
    pub warmup: f64,
    /// `--leak-scan-max-pause`: the longest a reachability scan keeps the target stopped, ms.
    pub scan_max_pause_ms: u64,
    /// `--leak-check-every`: seconds between scans while profiling (else one at the end).
    pub check_every: Option<f64>,
}

impl Default for LeakOptions {
    fn default() -> Self {
        Self {
            min_growth: 1.0,
            warmup: 0.25,
            scan_max_pause_ms: 500,
            check_every: None,
        }
    }
}

/// Fewest points of a site's series (the run's ticks) for a growth verdict.
pub(crate) const MIN_POINTS: usize = 4;
/// Most leak sites, sites and functions listed in the report.
pub(crate) const MAX_LISTED: usize = 50;
/// Most points kept per series; past this, every other point is dropped.
pub(crate) const MAX_POINTS: usize = 256;

/// A site's outstanding bytes over the run: (seconds since the start, bytes), thinned to at most
/// [`MAX_POINTS`] evenly spread points however long the run.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Series {
    points: Vec<(f64, u64)>,
    /// Keep one offered point in `stride`.
    stride: usize,
    offered: usize,
}

impl Series {
    pub(crate) fn push(&mut self, at: f64, bytes: u64) {
        let stride = self.stride.max(1);
        self.offered += 1;
        if !(self.offered - 1).is_multiple_of(stride) {
            return;
        }
        self.points.push((at, bytes));
        if self.points.len() >= MAX_POINTS {
            let mut i = 0;
            self.points.retain(|_| {
                i += 1;
                i % 2 == 1
            });
            self.stride = stride * 2;
        }
    }

    /// Replaces the last point's value when it is at `at`, or adds the point.
    pub(crate) fn finish(&mut self, at: f64, bytes: u64) {
        match self.points.last_mut() {
            Some(last) if last.0 >= at => last.1 = bytes,
            _ => self.points.push((at, bytes)),
        }
    }

    pub(crate) fn points(&self) -> &[(f64, u64)] {
        &self.points
    }
}

/// Everything known of one allocation site.
#[derive(Debug, Clone, Default)]
pub(crate) struct SiteInput {
    pub totals: SiteStats,
    /// Symbolized user stack, innermost first (the allocator's caller first).
    pub frames: Vec<Frame>,
    /// `bpf_ktime_get_ns()` of its oldest outstanding block.
    pub oldest_ns: Option<u64>,
    /// Outstanding bytes over the run, ending with the final value.
    pub series: Vec<(f64, u64)>,
    /// Its blocks by verdict in the scan the verdict comes from (`None` without one).
    pub verdicts: Option<SiteVerdicts>,
}

impl SiteInput {
    /// Blocks still outstanding (tracked ones; never negative).
    pub(crate) fn outstanding(&self) -> u64 {
        let t = &self.totals;
        t.allocs.saturating_sub(t.untracked).saturating_sub(t.frees)
    }

    pub(crate) fn outstanding_bytes(&self) -> u64 {
        let t = &self.totals;
        t.alloc_bytes
            .saturating_sub(t.untracked_bytes)
            .saturating_sub(t.free_bytes)
    }
}

/// One site of new resident memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct GrowthInput {
    /// Write faults (pages given).
    pub pages: u64,
    /// Symbolized: the faulting instruction, then the frames above it.
    pub frames: Vec<Frame>,
    /// Its bytes over the run, ending with the final value.
    pub series: Vec<(f64, u64)>,
}

/// Page size of the growth attribution's bytes.
pub(crate) const PAGE_SIZE: u64 = 4096;
/// Most points of a growth site's series in the report.
const GROWTH_POINTS: usize = 32;

/// The target's memory from /proc at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProcSample {
    /// Seconds since the start.
    pub at: f64,
    /// Resident set, bytes.
    pub rss: u64,
    /// Virtual size, bytes.
    pub vms: u64,
    /// Peak resident set over the process's life (VmHWM), bytes.
    pub hwm: u64,
}

/// Everything the analyzer needs.
#[derive(Debug, Clone, Default)]
pub(crate) struct MemoryInput {
    pub allocators: Vec<AllocatorInfo>,
    /// File names of the libraries that hold an allocator, whose frames are never charged (an
    /// allocator linked into the executable is not among them: user code is there too).
    pub allocator_libraries: Vec<String>,
    /// Why no allocator was found, when none was.
    pub no_allocator: Option<String>,
    pub sites: Vec<SiteInput>,
    pub samples: Vec<ProcSample>,
    /// Sampling interval, seconds.
    pub interval: f64,
    /// Seconds profiled.
    pub duration: f64,
    /// `bpf_ktime_get_ns()` at the end (for the ages of outstanding blocks).
    pub end_ns: u64,
    pub unknown_frees: u64,
    pub mmap_calls: u64,
    pub munmap_calls: u64,
    pub options: LeakOptions,
    /// Every scan made, in order.
    pub scans: Vec<LeakScan>,
    /// Whether the verdict is by reachability (the sites carry `verdicts`), else by growth.
    pub reach: bool,
    /// The allocator was probed (`--memory exact`).
    pub exact: bool,
    /// Where resident memory grew, and the write faults in all.
    pub growth: Vec<GrowthInput>,
    pub faults: u64,
    /// When the budget detached the page-fault tracepoint, seconds since the start.
    pub growth_detached_at: Option<f64>,
    /// Seconds the growth attribution ran (the allocator probes may have stopped before).
    pub growth_duration: f64,
    /// Why the verdict is by growth: no scan ran, or none finished.
    pub no_scan: Option<String>,
}

/// What a site is, by the shape of its outstanding bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trend {
    /// Still growing: a leak, by this measure.
    Growing,
    /// Grew, then stayed: a cache, a pool, a long-lived structure.
    Flat,
}

impl Trend {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Trend::Growing => "growing",
            Trend::Flat => "flat",
        }
    }
}

/// Least-squares slope of `points` (y per x); 0 with fewer than two distinct x.
pub(crate) fn slope(points: impl Iterator<Item = (f64, f64)> + Clone) -> f64 {
    let (mut n, mut sx, mut sy) = (0.0, 0.0, 0.0);
    for (x, y) in points.clone() {
        n += 1.0;
        sx += x;
        sy += y;
    }
    if n < 2.0 {
        return 0.0;
    }
    let (mx, my) = (sx / n, sy / n);
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for (x, y) in points {
        sxy += (x - mx) * (y - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx <= 0.0 { 0.0 } else { sxy / sxx }
}

/// A site's growth (bytes per second, over the points since it first had a block) and trend.
/// `series` ends with the final value; before its first point the site held nothing.
pub(crate) fn judge(series: &[(f64, u64)], duration: f64, options: &LeakOptions) -> (f64, Trend) {
    let growth = slope(series.iter().map(|&(t, b)| (t, b as f64)));
    let Some(&(_, last)) = series.last() else {
        return (0.0, Trend::Flat);
    };
    if series.len() < MIN_POINTS || duration <= 0.0 || last == 0 {
        return (growth, Trend::Flat);
    }
    let warmup = options.warmup.clamp(0.0, 0.5);
    let warm_end = warmup * duration;
    let tail_start = duration - warmup * duration;
    // The value at time t: the last point at or before it (nothing before the first).
    let at = |t: f64| {
        series
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |p| p.1)
    };
    let late_growth = last.saturating_sub(at(warm_end));
    let high_before_tail = series
        .iter()
        .take_while(|(t, _)| *t <= tail_start)
        .map(|p| p.1)
        .max()
        .unwrap_or(0);
    let mostly_late = late_growth * 2 > last;
    let still_growing = last > high_before_tail;
    let trend = if mostly_late && still_growing && growth >= options.min_growth {
        Trend::Growing
    } else {
        Trend::Flat
    };
    (growth, trend)
}

/// The direction of the resident set over the samples, and its slope (bytes per second).
pub(crate) fn trend(samples: &[ProcSample]) -> (&'static str, f64) {
    if samples.len() < 3 {
        return ("unknown", 0.0);
    }
    let slope = slope(samples.iter().map(|s| (s.at, s.rss as f64)));
    let span = samples.last().map_or(0.0, |s| s.at) - samples.first().map_or(0.0, |s| s.at);
    let mean = samples.iter().map(|s| s.rss as f64).sum::<f64>() / samples.len() as f64;
    // A change over the run below 2% of the mean (or 64 KiB) is noise.
    let band = (0.02 * mean).max(64.0 * 1024.0);
    let change = slope * span;
    let direction = if change > band {
        "increasing"
    } else if change < -band {
        "decreasing"
    } else {
        "stable"
    };
    (direction, slope)
}

/// Functions that only pass an allocation on (C++ `operator new`, Rust's allocation shims and
/// collections): the site is charged to the first frame past them.
const WRAPPERS: [&str; 13] = [
    "operator new",
    "operator delete",
    "__rust_alloc",
    "__rust_realloc",
    "__rust_alloc_zeroed",
    "__rdl_",
    "__rg_",
    "alloc::",
    "<alloc::",
    "std::alloc::",
    "<std::alloc::",
    "std::sys::alloc",
    "<std::sys::alloc",
];

/// The function a site is charged to: the first frame outside the allocator modules and the
/// wrappers above, preferring one with a name (a walk through code without frame pointers can
/// end in addresses that belong to nothing).
pub(crate) fn charged_frame<'f>(
    frames: &'f [Frame],
    allocator_modules: &[String],
) -> Option<&'f Frame> {
    let mut candidates = frames.iter().filter(|f| {
        !allocator_modules.contains(&f.module)
            && !WRAPPERS.iter().any(|w| f.function.starts_with(w))
            // A trait implementation of the standard allocating code (`vec![x; n]`'s
            // `<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem`).
            && !f.function.contains(" as alloc::")
    });
    let first = candidates.clone().next();
    candidates
        .find(|f| f.function != "??")
        .or(first)
        .or_else(|| frames.first())
}

/// The growth attribution's totals and sites, most bytes first.
fn growth_sites(
    input: &MemoryInput,
    allocator_modules: &[String],
) -> (GrowthSummary, Vec<GrowthSite>) {
    let mut sites: Vec<GrowthSite> = input
        .growth
        .iter()
        .map(|g| {
            let (growth, trend) = judge(&g.series, input.growth_duration, &input.options);
            let function = charged_frame(&g.frames, allocator_modules)
                .map_or_else(|| "??".to_string(), |f| f.function.clone());
            let stride = g.series.len().div_ceil(GROWTH_POINTS).max(1);
            let mut series: Vec<(f64, u64)> = g.series.iter().step_by(stride).copied().collect();
            if let Some(last) = g.series.last()
                && series.last() != Some(last)
            {
                series.push(*last);
            }
            GrowthSite {
                function,
                bytes: g.pages * PAGE_SIZE,
                pages: g.pages,
                growth,
                trend: trend.name().into(),
                series,
                stack: g.frames.clone(),
            }
        })
        .collect();
    sites.sort_by(|a, b| b.pages.cmp(&a.pages).then(a.function.cmp(&b.function)));
    let summary = GrowthSummary {
        faults: input.faults,
        bytes: input.faults * PAGE_SIZE,
        sites: sites.len(),
        detached_at: input.growth_detached_at,
    };
    sites.truncate(MAX_LISTED);
    (summary, sites)
}

/// Site verdicts under `reachability`.
pub(crate) const DEFINITELY_LOST: &str = "definitely_lost";
pub(crate) const INDIRECTLY_LOST: &str = "indirectly_lost";
pub(crate) const REACHABLE: &str = "reachable";

/// Order of the verdicts in the site list: lost first.
fn rank(verdict: &str) -> u8 {
    match verdict {
        DEFINITELY_LOST => 0,
        INDIRECTLY_LOST => 1,
        "growing" => 1,
        _ => 2,
    }
}

/// A site's lost bytes (definitely and indirectly), for the order of the list.
fn lost_bytes(s: &LeakSite) -> u64 {
    s.definitely_lost.map_or(0, |t| t.bytes) + s.indirectly_lost.map_or(0, |t| t.bytes)
}

/// Builds the section.
pub(crate) fn analyze(input: MemoryInput) -> MemorySection {
    let allocator_modules = input.allocator_libraries.clone();
    let duration = input.duration;

    let mut summary = AllocationSummary {
        sites: input.sites.len(),
        unknown_frees: input.unknown_frees,
        mmap_calls: input.mmap_calls,
        munmap_calls: input.munmap_calls,
        ..Default::default()
    };
    let mut by_function: Vec<FunctionAllocations> = Vec::new();
    let mut leak_sites: Vec<LeakSite> = Vec::new();
    let mut top_sites: Vec<SiteAllocations> = Vec::new();
    for site in &input.sites {
        let t = &site.totals;
        let (outstanding, outstanding_bytes) = (site.outstanding(), site.outstanding_bytes());
        summary.allocations += t.allocs;
        summary.allocated_bytes += t.alloc_bytes;
        summary.frees += t.frees;
        summary.freed_bytes += t.free_bytes;
        summary.untracked += t.untracked;
        summary.outstanding += outstanding;
        summary.outstanding_bytes += outstanding_bytes;

        let charged = charged_frame(&site.frames, &allocator_modules);
        let (function, module) = charged
            .map(|f| (f.function.clone(), f.module.clone()))
            .unwrap_or_else(|| ("??".into(), "??".into()));
        let entry = match by_function
            .iter_mut()
            .find(|f| f.function == function && f.module == module)
        {
            Some(entry) => entry,
            None => {
                by_function.push(FunctionAllocations {
                    function: function.clone(),
                    module: module.clone(),
                    ..Default::default()
                });
                by_function.last_mut().expect("just pushed")
            }
        };
        entry.allocations += t.allocs;
        entry.allocated_bytes += t.alloc_bytes;
        entry.frees += t.frees;
        entry.freed_bytes += t.free_bytes;
        entry.outstanding += outstanding;
        entry.outstanding_bytes += outstanding_bytes;

        top_sites.push(SiteAllocations {
            function: function.clone(),
            allocations: t.allocs,
            allocated_bytes: t.alloc_bytes,
            frees: t.frees,
            freed_bytes: t.free_bytes,
            outstanding,
            outstanding_bytes,
            stack: site.frames.clone(),
        });

        let verdicts = site.verdicts;
        let lost = verdicts.map_or(0, |v| v.definitely_lost.count + v.indirectly_lost.count);
        if outstanding == 0 && lost == 0 {
            continue;
        }
        let (growth, trend) = judge(&site.series, duration, &input.options);
        let oldest_age = site
            .oldest_ns
            .map_or(0.0, |ns| input.end_ns.saturating_sub(ns) as f64 * 1e-9);
        let verdict = match verdicts {
            Some(v) if v.definitely_lost.count > 0 => DEFINITELY_LOST,
            Some(v) if v.indirectly_lost.count > 0 => INDIRECTLY_LOST,
            Some(_) => REACHABLE,
            None => trend.name(),
        };
        leak_sites.push(LeakSite {
            verdict: verdict.into(),
            trend: trend.name().into(),
            definitely_lost: verdicts.map(|v| v.definitely_lost),
            indirectly_lost: verdicts.map(|v| v.indirectly_lost),
            reachable: verdicts.map(|v| v.reachable),
            bytes: outstanding_bytes,
            count: outstanding,
            oldest_age,
            growth,
            allocations: t.allocs,
            allocated_bytes: t.alloc_bytes,
            function,
            stack: site.frames.clone(),
        });
    }

    let by_reach = input.reach;
    let mut totals = SiteVerdicts::default();
    for v in input.sites.iter().filter_map(|s| s.verdicts) {
        totals += v;
    }
    let (leaked, retained) = if by_reach {
        let mut lost = totals.definitely_lost;
        lost += totals.indirectly_lost;
        (lost, totals.reachable)
    } else {
        let sum = |growing: bool| {
            leak_sites
                .iter()
                .filter(|s| (s.verdict == Trend::Growing.name()) == growing)
                .fold(Tally::default(), |mut t, s| {
                    t += Tally {
                        bytes: s.bytes,
                        count: s.count,
                    };
                    t
                })
        };
        (sum(true), sum(false))
    };
    leak_sites.sort_by(|a, b| {
        rank(&a.verdict)
            .cmp(&rank(&b.verdict))
            .then(lost_bytes(b).cmp(&lost_bytes(a)))
            .then(b.bytes.cmp(&a.bytes))
            .then(b.count.cmp(&a.count))
    });
    let listed_sites = leak_sites.len();
    leak_sites.truncate(MAX_LISTED);
    by_function.sort_by(|a, b| {
        b.allocated_bytes
            .cmp(&a.allocated_bytes)
            .then(b.allocations.cmp(&a.allocations))
    });
    by_function.truncate(MAX_LISTED);
    top_sites.sort_by(|a, b| {
        b.allocated_bytes
            .cmp(&a.allocated_bytes)
            .then(b.allocations.cmp(&a.allocations))
    });
    top_sites.truncate(MAX_LISTED);
    summary.by_function = by_function;
    summary.top_sites = top_sites;

    let too_short = !by_reach
        && input.sites.iter().any(|s| s.outstanding() > 0)
        && input
            .sites
            .iter()
            .map(|s| s.series.len())
            .max()
            .unwrap_or(0)
            < MIN_POINTS;
    let mut notes = Vec::new();
    if too_short {
        notes.push(format!(
            "the run was too short to judge growth (fewer than {MIN_POINTS} samples): \
             outstanding blocks are reported as flat"
        ));
    }
    if let Some(why) = input.no_scan.as_ref().filter(|_| !by_reach && input.exact) {
        notes.insert(
            0,
            format!("no reachability verdict ({why}): the verdict is by growth"),
        );
    }
    if listed_sites > MAX_LISTED {
        notes.push(format!(
            "{} more sites with outstanding blocks are not listed",
            listed_sites - MAX_LISTED
        ));
    }

    let (growth, growth_sites) = growth_sites(&input, &allocator_modules);
    let detected = if by_reach || input.exact {
        leaked.count > 0
    } else {
        // Growth alone: a site still growing (the verdict's first clue, not its proof).
        growth_sites
            .iter()
            .any(|s| s.trend == Trend::Growing.name())
    };
    if !input.exact {
        notes.insert(
            0,
            "the allocator is not probed (--memory growth): there is no per-block verdict; \
             growth_sites says where resident memory grew and whether it still grows \
             (--memory exact, or --level full, tracks every block and scans for lost ones)"
                .to_string(),
        );
    }

    let (memory_trend, memory_trend_slope) = trend(&input.samples);
    let last = input.samples.last().copied().unwrap_or_default();
    let peak_memory = input
        .samples
        .iter()
        .map(|s| s.hwm.max(s.rss))
        .max()
        .unwrap_or(0);
    MemorySection {
        mode: if input.exact { "exact" } else { "growth" }.into(),
        growth,
        growth_sites,
        allocator: input.allocators.first().cloned(),
        allocators: input.allocators,
        no_allocator: input.no_allocator,
        current_memory: last.rss,
        peak_memory,
        virtual_memory: last.vms,
        memory_trend: memory_trend.into(),
        memory_trend_slope,
        samples: input.samples.len(),
        interval: input.interval,
        allocations: summary,
        memory_leak_detection: LeakDetection {
            method: if by_reach { "reachability" } else { "growth" }.into(),
            detected,
            definitely_lost: totals.definitely_lost,
            indirectly_lost: totals.indirectly_lost,
            reachable: totals.reachable,
            leaked_bytes: leaked.bytes,
            leaked_count: leaked.count,
            retained_bytes: retained.bytes,
            retained_count: retained.count,
            scans: input.scans,
            thresholds: LeakThresholds {
                min_growth: input.options.min_growth,
                warmup: input.options.warmup,
            },
            sites: leak_sites,
            notes,
        },
    }
}

#[cfg(test)]
#[path = "analyze_tests.rs"]
mod tests;
