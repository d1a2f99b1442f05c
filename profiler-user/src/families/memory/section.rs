//! The memory section of the report, from the maps as `harvest` or the live view reads them,
//! the series over the run, and the scans' verdicts.

use profiler_common::{counters::Counter, memory::SCAN_FRAMES};

use super::{
    Maps, Memory, Reading,
    analyze::{GrowthInput, MemoryInput, ProcSample, SiteInput, analyze},
    function_load, kernel, leak_scan, read_maps,
};
use crate::{
    family::ReportContext,
    report::{
        Frame, MemorySection,
        memory::{AllocatorFunction, AllocatorInfo},
    },
    tracee,
};

impl Memory {
    /// The live view's section: the maps read at `now_ns` as `harvest` reads them, their values
    /// ending copies of the series, analyzed as `report` does; the family is left as it was.
    pub(super) fn live_section(
        &self,
        maps: &impl Maps,
        now_ns: u64,
        ctx: &mut ReportContext<'_>,
    ) -> Option<MemorySection> {
        let shed = if self.links.is_none() {
            self.raw.as_ref()
        } else {
            None
        };
        let (mut series, mut growth_series) = (self.series.clone(), self.growth_series.clone());
        let functions = kernel::functions(&self.detection.allocators).count();
        let raw = read_maps(
            maps,
            functions,
            shed,
            now_ns,
            &mut series,
            &mut growth_series,
        )
        .ok()?;
        let (end_ns, counters) = match shed {
            Some(_) => (self.end_ns, self.counters.clone()),
            None => (
                now_ns,
                maps.read_counters()
                    .unwrap_or_else(|_| self.counters.clone()),
            ),
        };
        let reading = Reading {
            raw: &raw,
            series: &series,
            growth_series: &growth_series,
            counters: &counters,
            end_ns,
            live: true,
        };
        Some(self.section(reading, ctx))
    }

    /// The report's section: what `harvest` read, taken (the family reports once).
    pub(super) fn final_section(&mut self, ctx: &mut ReportContext<'_>) -> MemorySection {
        let raw = self.raw.take().unwrap_or_default();
        let reading = Reading {
            raw: &raw,
            series: &self.series,
            growth_series: &self.growth_series,
            counters: &self.counters,
            end_ns: self.end_ns,
            live: false,
        };
        self.section(reading, ctx)
    }

    /// The memory section of `reading`: the one analysis of `report` and `live`.
    fn section(&self, reading: Reading<'_>, ctx: &mut ReportContext<'_>) -> MemorySection {
        let Reading {
            raw,
            series: site_series,
            growth_series,
            counters,
            end_ns: read_ns,
            live,
        } = reading;
        let start = ctx.start_ktime_ns as f64 * 1e-9;
        // Profiling ended before the families were read (the final values were read later, but
        // nothing changed in between that counts).
        let mut duration = ctx.duration;
        if let Some(seen) = self.shed_seen(ctx.start_ktime_ns) {
            // The allocator probes were detached part-way: the section covers the run up to then.
            duration = duration.min(seen);
        }
        let end_ns = (ctx.start_ktime_ns + (duration * 1e9) as u64).min(read_ns);
        let mut calls = raw.calls.iter().copied();
        let mut allocators: Vec<AllocatorInfo> = self
            .detection
            .allocators
            .iter()
            .map(|a| AllocatorInfo {
                name: a.name.into(),
                module: a.module.file_name(),
                path: a.module.path.display().to_string(),
                functions: Vec::new(),
            })
            .collect();
        for (index, allocator) in self.detection.allocators.iter().enumerate() {
            for function in &allocator.functions {
                let n = calls.next().unwrap_or(0);
                let load = function_load(function, n, ctx.cost_model);
                allocators[index].functions.push(AllocatorFunction {
                    name: function.name.clone(),
                    calls: n,
                    probe_offset: function.placement.offset,
                    probe_class: function.placement.class.name().into(),
                    probe_instruction: function.placement.instruction.clone(),
                    probe_reason: function.placement.reason.clone(),
                    hits: load.hits,
                    estimated_cost: load.cost_ns * 1e-9,
                });
            }
        }
        let n = raw.calls.len();
        let (mmap_calls, munmap_calls) = if n >= 2 {
            (raw.calls[n - 2], raw.calls[n - 1])
        } else {
            (0, 0)
        };

        let verdict_scan = self.scans.iter().rev().find_map(|s| s.sites.as_ref());
        let mut sites = Vec::with_capacity(raw.sites.len());
        for (site, totals) in &raw.sites {
            let frames = raw
                .stacks
                .get(site)
                .map(|ips| {
                    ips.iter()
                        .map(|ip| ctx.symbolizer.frame(ctx.maps, ip.saturating_sub(1)))
                        .collect()
                })
                .unwrap_or_default();
            let series = site_series
                .get(site)
                .map(|s| {
                    s.points()
                        .iter()
                        .map(|&(t, b)| ((t - start).min(duration), b))
                        .collect()
                })
                .unwrap_or_default();
            sites.push(SiteInput {
                totals: *totals,
                frames,
                oldest_ns: raw.oldest.get(site).copied(),
                series,
                verdicts: verdict_scan.map(|v| v.get(site).copied().unwrap_or_default()),
            });
        }
        let samples = self
            .samples
            .iter()
            .map(|s| ProcSample {
                at: s.at - start,
                ..*s
            })
            .collect();
        let allocator_libraries = self
            .detection
            .allocators
            .iter()
            .filter(|a| !a.executable)
            .map(|a| a.module.file_name())
            .collect();
        // Growth sites: the first address is the faulting instruction itself, the others
        // return addresses (or, for a fault inside an allocator call, the allocation's site).
        let growth_duration = match self.growth_shed_ns {
            Some(ns) => ctx
                .duration
                .min(ns.saturating_sub(ctx.start_ktime_ns) as f64 * 1e-9),
            None => ctx.duration,
        };
        let growth = raw
            .growth
            .iter()
            .map(|(site, pages)| {
                let frames: Vec<Frame> = raw
                    .stacks
                    .get(site)
                    .map(|ips| {
                        let mut frames = Vec::new();
                        for (i, ip) in ips.iter().enumerate() {
                            let exact = i == 0 && raw.pc_first.contains(site);
                            let ip = if exact { *ip } else { ip.saturating_sub(1) };
                            let frame = ctx.symbolizer.frame(ctx.maps, ip);
                            // Raw stack words: only those that point into code are frames.
                            if i > 0 && raw.raw_words.contains(site) {
                                if frame.module == "??" {
                                    continue;
                                }
                                if frames.len() > SCAN_FRAMES {
                                    break;
                                }
                            }
                            frames.push(frame);
                        }
                        frames
                    })
                    .unwrap_or_default();
                let series = growth_series
                    .get(site)
                    .map(|s| {
                        s.points()
                            .iter()
                            .map(|&(t, b)| ((t - start).min(growth_duration), b))
                            .collect()
                    })
                    .unwrap_or_default();
                GrowthInput {
                    pages: *pages,
                    frames,
                    series,
                }
            })
            .collect();
        let (allocators, no_allocator) = if self.exact {
            (allocators, self.detection.none_because.clone())
        } else {
            (Vec::new(), None)
        };
        let input = MemoryInput {
            exact: self.exact,
            growth,
            faults: raw.faults,
            growth_duration,
            growth_detached_at: self
                .growth_shed_ns
                .map(|ns| ns.saturating_sub(ctx.start_ktime_ns) as f64 * 1e-9),
            allocators,
            allocator_libraries,
            no_allocator,
            sites,
            samples,
            interval: ctx.sample_interval,
            duration,
            end_ns,
            unknown_frees: counters
                .get(&Counter::MemUnknownFrees)
                .copied()
                .unwrap_or(0),
            mmap_calls,
            munmap_calls,
            options: self.options,
            scans: self
                .scans
                .iter()
                .map(|s| leak_scan(s, ctx.start_ktime_ns))
                .collect(),
            reach: verdict_scan.is_some(),
            no_scan: verdict_scan.is_none().then(|| {
                if live {
                    self.no_scan_yet()
                } else {
                    self.no_scan_reason(ctx.exit_status.is_some() || !tracee::alive(self.pid))
                }
            }),
        };
        analyze(input)
    }

    /// Why the live view's verdict is by growth, when no scan finished.
    fn no_scan_yet(&self) -> String {
        if let Some(reason) = self.scans.iter().rev().find_map(|s| s.reason.clone()) {
            return reason;
        }
        "no scan yet: the reachability scan stops the target, so it runs at the end of \
         profiling (and every --leak-check-every), not for the live view"
            .into()
    }

    /// Why the verdict is by growth, when no scan finished.
    fn no_scan_reason(&self, exited: bool) -> String {
        if let Some(reason) = self.scans.iter().rev().find_map(|s| s.reason.clone()) {
            return reason;
        }
        match (exited, self.run_mode) {
            (true, true) => "the target could not be held at its exit to be scanned".into(),
            (true, false) => "the target exited before the end of profiling, its memory gone \
                              before it could be scanned (`profiler run` scans at the exit)"
                .into(),
            _ => "no scan ran".into(),
        }
    }
}
