//! The `memory` family: find the target's allocator, attach its probes and the `mmap`/`munmap`
//! tracepoints, poll the per-site outstanding bytes while profiling (their growth is the second
//! opinion on leaks), scan the stopped target for the blocks no pointer reaches (the leak
//! verdict) at the end of profiling, at its exit, or before the budget detaches the probes, and
//! read the maps at the end. See docs/memory.md.

pub(crate) mod allocator;
pub(crate) mod analyze;
pub(crate) mod kernel;
#[cfg(test)]
mod live_tests;
pub(crate) mod reach;
pub(crate) mod scan;
mod section;
mod summary;

use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        Arc,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use anyhow::Context as _;
use aya::Ebpf;
use profiler_common::{
    counters::Counter,
    memory::{ALLOCS_MAX, SiteStats},
};

use crate::{
    bpf::LoadOptions,
    clock::monotonic_ns,
    family::{
        CHILDREN_NOT_COVERED, Family, LivePace, ProbeLoad, ReportContext, TargetContext,
        TickContext,
    },
    level::FamilyId,
    overhead,
    report::memory::LeakScan,
    report::{CostModel, MemorySection, Report},
    tracee,
};
use allocator::Detection;
use analyze::{LeakOptions, PAGE_SIZE, ProcSample, Series, SiteInput, analyze};
use aya::programs::trace_point::TracePointLink;
use kernel::{Links, RawMemory};
use scan::{Hold, Scan, Trigger};
pub(crate) use summary::summary_block;

/// Adds a point at `now_ns` to each site's series: (site, bytes) for the allocation sites,
/// (site, pages) for the growth sites (`bytes` is then pages; see [`growth_bytes`]).
fn record(series: &mut HashMap<u64, Series>, values: &[(u64, u64)], now_ns: u64, last: bool) {
    let at = now_ns as f64 * 1e-9;
    for &(site, value) in values {
        match series.get_mut(&site) {
            Some(s) if last => s.finish(at, value),
            Some(s) => s.push(at, value),
            // A site enters the series with its first byte.
            None if value > 0 => series.entry(site).or_default().push(at, value),
            None => {}
        }
    }
}

/// Each allocation site's outstanding bytes.
fn site_bytes(sites: &[(u64, SiteStats)]) -> Vec<(u64, u64)> {
    sites
        .iter()
        .map(|(site, stats)| {
            let totals = SiteInput {
                totals: *stats,
                ..Default::default()
            };
            (*site, totals.outstanding_bytes())
        })
        .collect()
}

/// Where the family's maps are read from: the kernel's, or a unit test's.
trait Maps {
    /// Every map (see `kernel::read`).
    fn read(&self, functions: usize) -> anyhow::Result<RawMemory>;
    fn read_growth(&self) -> anyhow::Result<Vec<(u64, u64)>>;
    fn read_faults(&self) -> u64;
    fn read_counters(&self) -> anyhow::Result<BTreeMap<Counter, u64>>;
}

impl Maps for Ebpf {
    fn read(&self, functions: usize) -> anyhow::Result<RawMemory> {
        kernel::read(self, functions)
    }

    fn read_growth(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        kernel::read_growth(self)
    }

    fn read_faults(&self) -> u64 {
        kernel::read_faults(self)
    }

    fn read_counters(&self) -> anyhow::Result<BTreeMap<Counter, u64>> {
        crate::bpf::read_counters(self)
    }
}

/// Reads the maps as the end of profiling does, and ends the series of the allocation sites'
/// outstanding bytes (`series`) and of the growth sites' new resident bytes (`growth_series`)
/// with what was read at `now_ns`: every map, or with `shed` (what was read when the allocator
/// probes were detached) only the growth attribution's, the rest as then. `harvest` ends the
/// family's own series; the live view, copies of them.
fn read_maps(
    maps: &impl Maps,
    functions: usize,
    shed: Option<&RawMemory>,
    now_ns: u64,
    series: &mut HashMap<u64, Series>,
    growth_series: &mut HashMap<u64, Series>,
) -> anyhow::Result<RawMemory> {
    let raw = match shed {
        None => {
            let raw = maps
                .read(functions)
                .context("could not read the memory maps")?;
            record(series, &site_bytes(&raw.sites), now_ns, true);
            raw
        }
        Some(shed) => {
            let mut raw = shed.clone();
            if let Ok(growth) = maps.read_growth() {
                raw.growth = growth;
            }
            raw.faults = maps.read_faults();
            raw
        }
    };
    record(growth_series, &growth_bytes(&raw.growth), now_ns, true);
    Ok(raw)
}

/// What a memory section is made of: what `harvest` read (the family's own, for the report),
/// or what the live view read (copies).
struct Reading<'a> {
    raw: &'a RawMemory,
    /// Outstanding bytes per allocation site, and new resident bytes per growth site, over the
    /// run, ending with the values in `raw`.
    series: &'a HashMap<u64, Series>,
    growth_series: &'a HashMap<u64, Series>,
    counters: &'a BTreeMap<Counter, u64>,
    /// When the maps were read (CLOCK_MONOTONIC, ns).
    end_ns: u64,
    /// The live view's: no scan is made for it.
    live: bool,
}

/// Growth sites' pages as bytes.
fn growth_bytes(sites: &[(u64, u64)]) -> Vec<(u64, u64)> {
    sites
        .iter()
        .map(|&(s, pages)| (s, pages * PAGE_SIZE))
        .collect()
}

/// The probe hits of `calls` calls to allocator function `f` (its entry, and its return when it
/// returns a block), and their estimated cost.
fn function_load(f: &allocator::AllocFn, calls: u64, model: &CostModel) -> ProbeLoad {
    let returns = if f.class.returns_block() { calls } else { 0 };
    ProbeLoad {
        hits: calls + returns,
        cost_ns: overhead::probe_cost_ns(model, f.placement.class, calls, returns),
    }
}

/// Estimated cost of one of the target's write faults to the page-fault tracepoint's program,
/// ns: its mean run time measured with `PROFILER_BPF_STATS=1` on a program that first-touches
/// 320 MiB (81,945 faults at a few sites: 192 ns, the stack scan and count included), plus about
/// 30 ns for the tracepoint's dispatch.
const FAULT_NS: f64 = 220.0;

/// Environment variable that lowers the number of outstanding blocks tracked (to see how a full
/// map is reported without a million allocations).
pub(crate) const MAX_BLOCKS_ENV: &str = "PROFILER_MEMORY_MAX_BLOCKS";

/// Capacity of the outstanding-block map: [`ALLOCS_MAX`], or less from [`MAX_BLOCKS_ENV`].
pub(crate) fn max_blocks() -> u32 {
    std::env::var(MAX_BLOCKS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(ALLOCS_MAX, |n| n.clamp(1, ALLOCS_MAX))
}

/// Whether the family's allocator probes were attached (they may have been detached since):
/// set by the family, read by the functions family, whose traced functions then have the
/// memory their calls allocated and released, as the kernel charged it to them.
#[derive(Debug, Clone, Default)]
pub(crate) struct AllocatorProbes(Arc<AtomicBool>);

impl AllocatorProbes {
    pub(crate) fn attached(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// The family's runtime.
pub(crate) struct Memory {
    options: LeakOptions,
    /// `--memory exact`: the allocator probed, every block tracked, the leak scan.
    exact: bool,
    /// The page-fault tracepoint (the growth attribution), while attached.
    growth_link: Option<TracePointLink>,
    /// New resident bytes per growth site over the run (CLOCK_MONOTONIC seconds).
    growth_series: HashMap<u64, Series>,
    /// When the budget detached the page-fault tracepoint (CLOCK_MONOTONIC, ns).
    growth_shed_ns: Option<u64>,
    /// What the growth attribution has cost the target so far, ns (the budget's view).
    growth_cost_ns: f64,
    /// The executable ranges last written for the kernel's stack scan.
    text: Vec<[u64; 2]>,
    /// Set once the allocator probes are attached (the functions family's memory per call).
    probes_seen: AllocatorProbes,
    detection: Detection,
    /// Outstanding bytes per site over the run; times are CLOCK_MONOTONIC seconds.
    series: HashMap<u64, Series>,
    /// /proc samples; `at` is CLOCK_MONOTONIC seconds until the report shifts it.
    samples: Vec<ProcSample>,
    raw: Option<RawMemory>,
    counters: BTreeMap<Counter, u64>,
    end_ns: u64,
    links: Option<Links>,
    /// When the overhead budget made the family detach its probes (CLOCK_MONOTONIC, ns).
    shed_ns: Option<u64>,
    /// What the probes have cost the target so far, ns (the budget's view).
    live_cost_ns: f64,
    pid: i32,
    run_mode: bool,
    /// When the probes were attached (CLOCK_MONOTONIC, ns).
    started_ns: u64,
    /// The reachability scans made, in order (only the newest complete one keeps its sites).
    scans: Vec<Scan>,
    /// The live view's last snapshot, and when the next one may be made.
    live_pace: LivePace<MemorySection>,
}

/// The growth attribution's budget unit (the allocator probes are unit 0).
const GROWTH_UNIT: usize = 1;

/// The allocator probes' budget unit as `overhead.budget.detached[].function` names it (see
/// docs/report-schema.md).
const ALLOCATOR_UNIT: &str = "memory family";

/// Most scans listed in the report (`--leak-check-every` over a long run): the oldest go first.
const MAX_SCANS: usize = 1000;

impl Memory {
    pub(crate) fn new(options: LeakOptions, exact: bool, probes_seen: AllocatorProbes) -> Self {
        Self {
            options,
            exact,
            probes_seen,
            growth_link: None,
            growth_series: HashMap::new(),
            growth_shed_ns: None,
            growth_cost_ns: 0.0,
            text: Vec::new(),
            detection: Detection::default(),
            series: HashMap::new(),
            samples: Vec::new(),
            raw: None,
            counters: BTreeMap::new(),
            end_ns: 0,
            links: None,
            shed_ns: None,
            live_cost_ns: 0.0,
            pid: 0,
            run_mode: false,
            scans: Vec::new(),
            started_ns: 0,
            live_pace: LivePace::default(),
        }
    }

    /// Scans the target for lost blocks now (see `scan`); the probes must still be attached, so
    /// that the outstanding blocks are exactly the ones not freed.
    fn scan(&mut self, ebpf: &Ebpf, hold: Hold, trigger: Trigger) {
        let max_pause = Duration::from_millis(self.options.scan_max_pause_ms);
        let scan = scan::scan(ebpf, self.pid, hold, max_pause, trigger);
        if let Some(reason) = &scan.reason
            && trigger != Trigger::Interval
        {
            eprintln!("profiler: memory: no leak scan: {reason}");
        }
        if scan.complete {
            // Only the newest verdict is reported by site.
            for older in &mut self.scans {
                older.sites = None;
            }
        }
        if self.scans.len() >= MAX_SCANS {
            self.scans.remove(0);
        }
        self.scans.push(scan);
    }

    /// Writes the target's executable ranges for the kernel's stack scan, when they changed.
    fn refresh_text(&mut self, ebpf: &mut Ebpf) {
        if self.growth_link.is_none() {
            return;
        }
        let Ok(maps) = std::fs::read_to_string(format!("/proc/{}/maps", self.pid)) else {
            return;
        };
        let text = kernel::text_ranges(&maps);
        if text != self.text && kernel::write_text(ebpf, &text).is_ok() {
            self.text = text;
        }
    }

    /// When the allocator probes were detached, seconds after `start_ns`.
    fn shed_seen(&self, start_ns: u64) -> Option<f64> {
        self.shed_ns
            .map(|shed_ns| shed_ns.saturating_sub(start_ns) as f64 * 1e-9)
    }

    /// The probe hits of `calls` (per allocator function, in function-id order) and their cost.
    fn load(&self, calls: &[u64], model: &CostModel) -> ProbeLoad {
        let mut load = ProbeLoad::default();
        for ((_, f), &n) in kernel::functions(&self.detection.allocators).zip(calls) {
            load += function_load(f, n, model);
        }
        load
    }

    /// Reads the maps one last time (at `now_ns`): the end of what the family sees.
    fn finish(&mut self, maps: &impl Maps, now_ns: u64) -> anyhow::Result<()> {
        self.end_ns = now_ns;
        let functions = kernel::functions(&self.detection.allocators).count();
        let raw = read_maps(
            maps,
            functions,
            None,
            self.end_ns,
            &mut self.series,
            &mut self.growth_series,
        )?;
        self.raw = Some(raw);
        if let Ok(counters) = maps.read_counters() {
            self.counters = counters;
        }
        Ok(())
    }

    fn sample(&mut self, pid: i32, now_ns: u64) {
        if let Some(m) = tracee::memory(pid) {
            self.samples.push(ProcSample {
                at: now_ns as f64 * 1e-9,
                rss: m.rss,
                vms: m.vms,
                hwm: m.hwm,
            });
        }
    }

    /// Messages for what the kernel side could not record.
    fn loss_warnings(&self, warnings: &mut Vec<String>) {
        let get = |c: Counter| self.counters.get(&c).copied().unwrap_or(0);
        let full = get(Counter::MemAllocMapFull);
        if full > 0 {
            warnings.push(format!(
                "memory: the outstanding-allocation map was full ({} blocks): {full} \
                 allocation(s) were not tracked, so their sites' outstanding figures are low",
                max_blocks()
            ));
        }
        let sites = get(Counter::MemSiteMapFull);
        if sites > 0 {
            warnings.push(format!(
                "memory: the allocation-site map was full: {sites} allocation(s) have no site"
            ));
        }
        let stacks = get(Counter::MemStackFailed);
        if stacks > 0 {
            warnings.push(format!(
                "memory: {stacks} allocation stack(s) could not be read or stored (their sites \
                 keep only the calling address)"
            ));
        }
        let pending = get(Counter::MemPendingMapFull);
        if pending > 0 {
            warnings.push(format!(
                "memory: {pending} allocator call(s) were not tracked (too many threads in the \
                 allocator at once)"
            ));
        }
    }
}

impl Family for Memory {
    fn id(&self) -> FamilyId {
        FamilyId::Memory
    }

    fn note(&self) -> Option<String> {
        // Its uprobes are attached to the target process alone.
        Some(CHILDREN_NOT_COVERED.into())
    }

    fn priced(&self) -> bool {
        true
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        let mut modules = ctx.modules.to_vec();
        if ctx.run_mode {
            // The target inherits LD_PRELOAD, which its libraries' DT_NEEDED do not show: a
            // preloaded allocator (jemalloc, tcmalloc) replaces the C library's.
            let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
            let at = modules.len().min(1);
            modules.splice(at..at, allocator::preloaded(&preload));
        }
        self.detection = allocator::detect(&modules);
        self.pid = ctx.pid;
        self.run_mode = ctx.run_mode;
        Ok(())
    }

    fn load_options(&self, options: &mut LoadOptions) {
        options.map_size(profiler_common::memory::maps::MEM_ALLOCS, max_blocks());
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        self.growth_link = Some(kernel::attach_growth(ebpf)?);
        self.refresh_text(ebpf);
        let mut n = 1;
        if self.exact {
            let links = kernel::attach(ebpf, &self.detection.allocators, ctx.pid as u32)?;
            n += links.count();
            if links.allocator_probes() > 0 {
                self.probes_seen.set();
            }
            self.links = Some(links);
        }
        self.started_ns = monotonic_ns();
        Ok(n)
    }

    fn on_fast_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        // Early on, the loader maps the libraries.
        if monotonic_ns().saturating_sub(self.started_ns) < 1_000_000_000 {
            self.refresh_text(ebpf);
        }
    }

    fn on_exec_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        self.refresh_text(ebpf);
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, ctx: &TickContext) {
        self.refresh_text(ebpf);
        let now_ns = monotonic_ns();
        if self.growth_link.is_some()
            && let Ok(growth) = kernel::read_growth(ebpf)
        {
            record(
                &mut self.growth_series,
                &growth_bytes(&growth),
                now_ns,
                false,
            );
        }
        if self.links.is_none() {
            if self.growth_link.is_some() {
                self.sample(ctx.pid, now_ns);
            }
            return;
        }
        self.sample(ctx.pid, now_ns);
        if let Ok(sites) = kernel::read_sites(ebpf) {
            record(&mut self.series, &site_bytes(&sites), now_ns, false);
        }
        if let Some(every) = self.options.check_every {
            let since = self.scans.last().map_or(self.started_ns, |s| s.at_ns);
            if now_ns.saturating_sub(since) as f64 * 1e-9 >= every {
                self.scan(ebpf, Hold::Stop, Trigger::Interval);
            }
        }
    }

    fn on_exit_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.links.is_some() {
            self.scan(ebpf, Hold::AtExit, Trigger::Exit);
        }
    }

    fn before_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.links.is_some() {
            self.scan(ebpf, Hold::Stop, Trigger::End);
        }
    }

    fn budget_units(&mut self, ebpf: &Ebpf, model: &CostModel) -> Vec<f64> {
        // Two units: the allocator probes, which go together (a block whose free went unseen
        // would be taken for a leak), and the growth attribution. Once shed, a unit keeps its
        // last cost (no new hits).
        if self.links.is_some() {
            let count = kernel::functions(&self.detection.allocators).count() as u32;
            if let Ok(calls) = kernel::read_calls(ebpf, 0..count) {
                self.live_cost_ns = self.load(&calls, model).cost_ns;
            }
        }
        if self.growth_link.is_some() {
            self.growth_cost_ns = kernel::read_faults(ebpf) as f64 * FAULT_NS;
        }
        vec![self.live_cost_ns, self.growth_cost_ns]
    }

    fn unit_name(&self, unit: usize) -> String {
        if unit == GROWTH_UNIT {
            "memory growth attribution".into()
        } else {
            ALLOCATOR_UNIT.into()
        }
    }

    fn shed(&mut self, ebpf: &mut Ebpf, unit: usize) -> anyhow::Result<()> {
        if unit == GROWTH_UNIT {
            if let Some(link) = self.growth_link.take() {
                drop(link);
                self.growth_shed_ns = Some(monotonic_ns());
            }
            return Ok(());
        }
        if self.links.is_none() {
            return Ok(());
        }
        // The last moment the outstanding blocks are exact: once the frees go unseen, a block
        // freed later would look lost.
        self.scan(ebpf, Hold::Stop, Trigger::Budget);
        let Some(links) = self.links.take() else {
            return Ok(());
        };
        // Detaching takes a while (seconds when the allocator is hot): the probes recorded
        // until it returns.
        links.detach();
        self.finish(&*ebpf, monotonic_ns())?;
        self.shed_ns = Some(self.end_ns);
        Ok(())
    }

    fn probe_load(&self, model: &CostModel) -> ProbeLoad {
        let Some(raw) = self.raw.as_ref() else {
            return ProbeLoad::default();
        };
        let mut load = self.load(&raw.calls, model);
        load += ProbeLoad {
            hits: raw.faults,
            cost_ns: raw.faults as f64 * FAULT_NS,
        };
        load
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        // The maps are read at the end, or when the allocator probes were shed and nothing
        // else runs.
        if self.links.is_some() || self.raw.is_none() {
            if let Err(e) = self.finish(&*ebpf, monotonic_ns()) {
                warnings.push(format!("{e:#}"));
            }
        } else if let Some(shed) = self.raw.take() {
            // The allocator probes were shed and read then; the growth attribution ran on.
            let functions = kernel::functions(&self.detection.allocators).count();
            let read = read_maps(
                &*ebpf,
                functions,
                Some(&shed),
                monotonic_ns(),
                &mut self.series,
                &mut self.growth_series,
            );
            self.raw = Some(read.unwrap_or(shed));
        }
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        if let Some(links) = self.links.take() {
            links.detach();
        }
        drop(self.growth_link.take());
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        if let Some(seen) = self.shed_seen(ctx.start_ktime_ns) {
            report.warnings.push(format!(
                "memory: the allocator probes were detached after {seen:.1} s to stay within \
                 --max-overhead; the memory section covers the run up to then"
            ));
        }
        let section = self.final_section(ctx);
        match (&section.allocator, &section.no_allocator) {
            _ if !self.exact => {}
            (None, Some(why)) => report.warnings.push(format!(
                "memory: no allocator found ({why}); only anonymous mmap/munmap are tracked"
            )),
            (Some(a), _) if a.name == "unknown" => report.warnings.push(format!(
                "memory: {} defines malloc but is not a known allocator; its malloc family is \
                 traced as is",
                a.module
            )),
            _ => {}
        }
        self.loss_warnings(&mut report.warnings);
        report.memory = Some(section);
    }

    /// Outstanding bytes and blocks per site so far, and the growth sites, from the maps read
    /// now into copies of the series: the family's own stay as they were for `harvest`. The
    /// verdict is the last scan's when one ran (`--leak-check-every`), else by growth: the
    /// reachability scan is not made for the live view, as it stops the target. Reading every
    /// outstanding block can be dear (a million of them): [`LivePace`] spaces the readings
    /// then. No warning is pushed (the report's are said once, at the end).
    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        if self.links.is_none() && self.growth_link.is_none() && self.raw.is_none() {
            return;
        }
        let mut pace = std::mem::take(&mut self.live_pace);
        let section = pace.snapshot(monotonic_ns(), monotonic_ns, || {
            self.live_section(&*ebpf, monotonic_ns(), ctx)
        });
        self.live_pace = pace;
        if section.is_some() {
            report.memory = section;
        }
    }
}

/// A scan as the report lists it.
fn leak_scan(s: &Scan, start_ns: u64) -> LeakScan {
    LeakScan {
        trigger: s.trigger.name().into(),
        at: s.at_ns.saturating_sub(start_ns) as f64 * 1e-9,
        pause: s.pause,
        duration: s.duration,
        complete: s.complete,
        reason: s.reason.clone(),
        threads: s.threads,
        regions: s.regions,
        bytes_scanned: s.bytes_scanned,
        root_bytes: s.root_bytes,
        blocks: s.blocks,
        definitely_lost: s.totals.definitely_lost,
        indirectly_lost: s.totals.indirectly_lost,
        reachable: s.totals.reachable,
    }
}
