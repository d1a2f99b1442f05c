//! The `memory` family on the user side: find the target's allocator, attach its probes and the
//! `mmap`/`munmap` tracepoints, poll the per-site outstanding bytes while profiling (their growth
//! decides leak against retained), and read the maps at the end.

pub mod allocator;

use std::{
    collections::{BTreeMap, HashMap},
    time::Instant,
};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map, PerCpuArray},
    programs::{
        TracePoint, UProbe,
        trace_point::TracePointLink,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
    },
};
use profiler_common::{
    counters::Counter,
    memory::{
        ALLOCS_MAX, AllocInfo, MAX_ALLOC_FUNCTIONS, MMAP_SLOT, MUNMAP_SLOT, MemStack, SiteStats,
        cookie,
    },
};

use crate::{
    analyze::memory::{LeakOptions, MemoryInput, ProcSample, Series, SiteInput, analyze},
    collect::SAMPLE_INTERVAL,
    families::{AttachContext, FamilyRuntime, ProbeLoad, ReportContext},
    level::Family,
    overhead,
    report::{AllocatorFunction, AllocatorInfo, CostModel, Report},
    session::monotonic_ns,
};

use allocator::{Allocator, Detection};

const ENTRY: &str = "mem_entry";
const RETURN: &str = "mem_return";
/// The tracepoints: (program, category, name), in attach order (exit before entry, as with the
/// uprobes: a call seen half is then only a return without an entry).
const TRACEPOINTS: [(&str, &str, &str); 3] = [
    ("mem_mmap_exit", "syscalls", "sys_exit_mmap"),
    ("mem_mmap_enter", "syscalls", "sys_enter_mmap"),
    ("mem_munmap", "syscalls", "sys_enter_munmap"),
];

/// The family's links, owned here so that they can be detached all at once (the kernel waits
/// for a grace period on each uprobe it removes: one after the other, that is seconds).
#[derive(Default)]
pub struct Links {
    /// Entry probes of the functions that return a block.
    entries: Vec<UProbeLink>,
    returns: Vec<UProbeLink>,
    /// Entry probes of the functions that release one.
    frees: Vec<UProbeLink>,
    tracepoints: Vec<TracePointLink>,
}

impl Links {
    pub fn count(&self) -> usize {
        self.entries.len() + self.returns.len() + self.frees.len() + self.tracepoints.len()
    }

    /// Detaches everything, each group in parallel: the allocating functions' probes first
    /// (a return whose entry is gone records nothing), and the frees after them, so that no
    /// block is recorded after its release went unseen (while the allocator keeps running, as
    /// when the overhead budget detaches the family or `attach` ends).
    pub fn detach(mut self) {
        self.entries.append(&mut self.returns);
        super::release_in_parallel(self.entries);
        super::release_in_parallel(self.frees);
        super::release_in_parallel(self.tracepoints);
    }
}

/// Attaches the allocator probes (return probes first, see the functions family) and the
/// tracepoints, for process `pid` only. Among the entry probes the frees come first: a block
/// recorded while `free` was not yet probed could be released unseen and its address handed
/// out again (`Links::detach` takes them down last, for the same reason).
pub fn attach(ebpf: &mut Ebpf, allocators: &[Allocator], pid: u32) -> anyhow::Result<Links> {
    let scope = std::num::NonZeroU32::new(pid)
        .map(UProbeScope::OneProcess)
        .context("invalid pid 0")?;
    let mut links = Links::default();
    // Function ids follow `functions`; the frees are attached first.
    let mut ordered: Vec<_> = functions(allocators).enumerate().collect();
    ordered.sort_by_key(|(_, (_, f))| f.class.returns_block());
    for name in [RETURN, ENTRY] {
        let program = uprobe(ebpf, name)?;
        program
            .load()
            .with_context(|| format!("failed to load {name}"))?;
        for &(id, (allocator, function)) in &ordered {
            if name == RETURN && !function.class.returns_block() {
                continue;
            }
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(function.probe_offset),
                cookie: Some(cookie(id as u32, function.class)),
            };
            let id = program
                .attach(point, &allocator.module.open_path, scope)
                .with_context(|| {
                    format!(
                        "failed to attach to {} in {}",
                        function.name,
                        allocator.module.file_name()
                    )
                })?;
            let link = program.take_link(id)?;
            if name == RETURN {
                links.returns.push(link);
            } else if function.class.returns_block() {
                links.entries.push(link);
            } else {
                links.frees.push(link);
            }
        }
    }
    for (program, category, name) in TRACEPOINTS {
        let tp: &mut TracePoint = ebpf
            .program_mut(program)
            .with_context(|| format!("program {program} missing from the eBPF object"))?
            .try_into()?;
        tp.load()
            .with_context(|| format!("failed to load {program}"))?;
        let id = tp
            .attach(category, name)
            .with_context(|| format!("failed to attach to the {category}/{name} tracepoint"))?;
        links.tracepoints.push(tp.take_link(id)?);
    }
    Ok(links)
}

/// The probed functions in function-id order, with their allocator.
fn functions(allocators: &[Allocator]) -> impl Iterator<Item = (&Allocator, &allocator::AllocFn)> {
    allocators
        .iter()
        .flat_map(|a| a.functions.iter().map(move |f| (a, f)))
        .take(MAX_ALLOC_FUNCTIONS as usize)
}

fn uprobe<'a>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut UProbe> {
    ebpf.program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?
        .try_into()
        .with_context(|| format!("program {name} is not a uprobe"))
}

fn map<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a Map> {
    ebpf.map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))
}

/// Every site's totals now.
pub fn read_sites(ebpf: &Ebpf) -> anyhow::Result<Vec<(u64, SiteStats)>> {
    let sites: BpfHashMap<_, u64, SiteStats> = BpfHashMap::try_from(map(ebpf, "MEM_SITES")?)?;
    Ok(sites.iter().filter_map(Result::ok).collect())
}

/// What the kernel side holds at the end, before symbolization.
#[derive(Debug, Default)]
pub struct RawMemory {
    pub sites: Vec<(u64, SiteStats)>,
    /// Site -> user stack (return address first).
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Site -> timestamp of its oldest outstanding block.
    pub oldest: HashMap<u64, u64>,
    /// Outstanding blocks in `MEM_ALLOCS`.
    pub outstanding: u64,
    /// Calls per function id, then `mmap` and `munmap`.
    pub calls: Vec<u64>,
}

/// Reads every map of the family.
pub fn read(ebpf: &Ebpf, functions: usize) -> anyhow::Result<RawMemory> {
    let mut raw = RawMemory {
        sites: read_sites(ebpf)?,
        ..Default::default()
    };
    let stacks: BpfHashMap<_, u64, MemStack> = BpfHashMap::try_from(map(ebpf, "MEM_STACKS")?)?;
    for (site, stack) in stacks.iter().filter_map(Result::ok) {
        raw.stacks.insert(site, frames(&stack));
    }
    let allocs: BpfHashMap<_, u64, AllocInfo> = BpfHashMap::try_from(map(ebpf, "MEM_ALLOCS")?)?;
    for (_, info) in allocs.iter().filter_map(Result::ok) {
        raw.outstanding += 1;
        let oldest = raw.oldest.entry(info.site).or_insert(info.timestamp_ns);
        *oldest = (*oldest).min(info.timestamp_ns);
    }
    raw.calls = read_calls(ebpf, (0..functions as u32).chain([MMAP_SLOT, MUNMAP_SLOT]))?;
    Ok(raw)
}

/// Calls counted in `MEM_CALLS` (summed over the CPUs) for each of `slots`.
fn read_calls(ebpf: &Ebpf, slots: impl Iterator<Item = u32>) -> anyhow::Result<Vec<u64>> {
    let calls: PerCpuArray<_, u64> = PerCpuArray::try_from(map(ebpf, "MEM_CALLS")?)?;
    Ok(slots
        .map(|slot| calls.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0))
        .collect())
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

/// The addresses of a site's stack, innermost first: the return address, then the frames walked
/// from the caller's frame pointer.
pub fn frames(stack: &MemStack) -> Vec<u64> {
    let walked = &stack.ips[..(stack.len as usize).min(stack.ips.len())];
    let mut ips = Vec::with_capacity(walked.len() + 1);
    if stack.ret_addr != 0 && walked.first() != Some(&stack.ret_addr) {
        ips.push(stack.ret_addr);
    }
    ips.extend(walked.iter().copied().filter(|ip| *ip != 0));
    ips
}

/// Environment variable that lowers the number of outstanding blocks tracked (to see how a full
/// map is reported without a million allocations).
pub const MAX_BLOCKS_ENV: &str = "PROFILER_MEMORY_MAX_BLOCKS";

/// Capacity of the outstanding-block map: [`ALLOCS_MAX`], or less from [`MAX_BLOCKS_ENV`].
pub fn max_blocks() -> u32 {
    std::env::var(MAX_BLOCKS_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u32>().ok())
        .map_or(ALLOCS_MAX, |n| n.clamp(1, ALLOCS_MAX))
}

/// The target's resident set, virtual size and peak resident set, bytes, from /proc.
pub fn proc_memory(pid: i32) -> Option<(u64, u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|v| v * 1024)
    };
    Some((kb("VmRSS:")?, kb("VmSize:")?, kb("VmHWM:").unwrap_or(0)))
}

/// The family's runtime.
pub struct MemoryRuntime {
    options: LeakOptions,
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
}

impl MemoryRuntime {
    pub fn new(options: LeakOptions) -> Self {
        Self {
            options,
            detection: Detection::default(),
            series: HashMap::new(),
            samples: Vec::new(),
            raw: None,
            counters: BTreeMap::new(),
            end_ns: 0,
            links: None,
            shed_ns: None,
        }
    }

    /// Detaches the probes and reads the maps: the end of what the family sees.
    fn stop(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        let Some(links) = self.links.take() else {
            return Ok(());
        };
        // Detaching takes a while (seconds when the allocator is hot): the probes recorded
        // until it returns.
        links.detach();
        self.end_ns = monotonic_ns();
        let functions = functions(&self.detection.allocators).count();
        let raw = read(ebpf, functions).context("could not read the memory maps")?;
        self.record(&raw.sites, self.end_ns, true);
        self.raw = Some(raw);
        if let Ok(counters) = super::read_counters(ebpf) {
            self.counters = counters;
        }
        Ok(())
    }

    fn sample(&mut self, pid: i32, now_ns: u64) {
        if let Some((rss, vms, hwm)) = proc_memory(pid) {
            self.samples.push(ProcSample {
                at: now_ns as f64 * 1e-9,
                rss,
                vms,
                hwm,
            });
        }
    }

    fn record(&mut self, sites: &[(u64, SiteStats)], now_ns: u64, last: bool) {
        let at = now_ns as f64 * 1e-9;
        for (site, stats) in sites {
            let bytes = SiteInput {
                totals: *stats,
                ..Default::default()
            }
            .outstanding_bytes();
            match self.series.get_mut(site) {
                Some(series) if last => series.finish(at, bytes),
                Some(series) => series.push(at, bytes),
                // A site enters the series with its first outstanding block.
                None if bytes > 0 => self.series.entry(*site).or_default().push(at, bytes),
                None => {}
            }
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

impl FamilyRuntime for MemoryRuntime {
    fn family(&self) -> Family {
        Family::Memory
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &AttachContext<'_>) -> anyhow::Result<usize> {
        let mut modules = ctx.modules.to_vec();
        if ctx.run_mode {
            // The target inherits LD_PRELOAD, which its libraries' DT_NEEDED do not show: a
            // preloaded allocator (jemalloc, tcmalloc) replaces the C library's.
            let preload = std::env::var("LD_PRELOAD").unwrap_or_default();
            let at = modules.len().min(1);
            modules.splice(at..at, allocator::preloaded(&preload));
        }
        self.detection = allocator::detect(&modules);
        let links = attach(ebpf, &self.detection.allocators, ctx.pid as u32)?;
        let n = links.count();
        self.links = Some(links);
        Ok(n)
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, pid: i32, _now: Instant) {
        if self.links.is_none() {
            return;
        }
        let now_ns = monotonic_ns();
        self.sample(pid, now_ns);
        if let Ok(sites) = read_sites(ebpf) {
            self.record(&sites, now_ns, false);
        }
    }

    fn probe_load(&self, ebpf: Option<&Ebpf>, model: &CostModel) -> Option<ProbeLoad> {
        let allocators = &self.detection.allocators;
        let live;
        let calls: &[u64] = match ebpf {
            Some(ebpf) => {
                live = read_calls(ebpf, 0..functions(allocators).count() as u32).ok()?;
                &live
            }
            None => &self.raw.as_ref()?.calls,
        };
        let mut load = ProbeLoad::default();
        for ((_, f), &n) in functions(allocators).zip(calls) {
            let one = function_load(f, n, model);
            load.hits += one.hits;
            load.cost_ns += one.cost_ns;
        }
        Some(load)
    }

    fn shed(&mut self, ebpf: &mut Ebpf) -> anyhow::Result<()> {
        self.stop(ebpf)?;
        self.shed_ns = Some(self.end_ns);
        Ok(())
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        if let Err(e) = self.stop(ebpf) {
            warnings.push(format!("{e:#}"));
        }
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let start = ctx.start_ktime_ns as f64 * 1e-9;
        // Profiling ended before the families were read (the final values were read later, but
        // nothing changed in between that counts).
        let mut duration = ctx.duration;
        if let Some(shed_ns) = self.shed_ns {
            // The allocator probes were detached part-way: the section covers the run up to then.
            let seen = shed_ns.saturating_sub(ctx.start_ktime_ns) as f64 * 1e-9;
            duration = duration.min(seen);
            report.warnings.push(format!(
                "memory: the allocator probes were detached after {seen:.1} s to stay within \
                 --max-overhead; the memory section covers the run up to then"
            ));
        }
        let end_ns = (ctx.start_ktime_ns + (duration * 1e9) as u64).min(self.end_ns);
        let raw = self.raw.take().unwrap_or_default();
        let mut calls = raw.calls.iter().copied();
        let mut allocators: Vec<AllocatorInfo> = self
            .detection
            .allocators
            .iter()
            .map(|a| AllocatorInfo {
                name: a.name,
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
                    probe_class: function.placement.class.name(),
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
            let series = self
                .series
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
        let input = MemoryInput {
            allocators,
            allocator_libraries,
            no_allocator: self.detection.none_because.clone(),
            sites,
            samples,
            interval: SAMPLE_INTERVAL.as_secs_f64(),
            duration,
            end_ns,
            unknown_frees: self
                .counters
                .get(&Counter::MemUnknownFrees)
                .copied()
                .unwrap_or(0),
            mmap_calls,
            munmap_calls,
            options: self.options,
        };
        let section = analyze(input);
        match (&section.allocator, &section.no_allocator) {
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
}
