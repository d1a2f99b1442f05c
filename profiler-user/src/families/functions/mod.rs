//! The `functions` family: exact counts and times of the `--func` functions (uprobe and
//! uretprobe on each), their callers and sampled call stacks.

pub(crate) mod analyze;
pub(crate) mod kernel;

use std::{collections::HashMap, fmt::Write as _, path::PathBuf};

use aya::Ebpf;
use profiler_common::functions::{FUNCS_ON_GLOBAL, TIME_EVERY_MASK_GLOBAL, maps};

use super::memory::AllocatorProbes;
use crate::{
    bpf::LoadOptions,
    family::{CHILDREN_NOT_COVERED, Family, ProbeLoad, ReportContext, TargetContext, TickContext},
    level::FamilyId,
    overhead,
    placement::{self, Placement},
    report::{
        Report,
        functions::{FunctionProfile, ProbeSite, SkippedFunction},
        text,
        threads::FunctionCpuSplit,
    },
    symbols::{
        go,
        resolve::{FuncSpec, TracedFunction, resolve},
    },
};
use analyze::{FunctionData, FunctionMeta, ProbeCosts, profile};
use kernel::{Probes, RawFunctions, Site};

/// A traced function and where its probe sits.
struct Traced {
    function: TracedFunction,
    placement: Placement,
}

/// A matched function left out, and why.
struct Skipped {
    function: TracedFunction,
    reason: String,
    /// Its function id, when it was left out because its attach failed.
    id: Option<usize>,
}

/// The family's runtime.
pub(crate) struct Functions {
    specs: Vec<FuncSpec>,
    max_funcs: usize,
    /// `--time-every`: after a function's first `TIME_ALWAYS` calls on a thread, one call in
    /// this many (a power of two; 1 = every call) is timed.
    time_every: u32,
    traced: Vec<Traced>,
    /// Functions that matched but are not traced: the kernel would refuse their probe (known
    /// from placement), they are Go code (see `symbols::go`), or the kernel refused their probe
    /// at attach (then still in `traced`, without links, so
    /// that function ids stay put).
    skipped: Vec<Skipped>,
    probes: Option<Probes>,
    pid: i32,
    trampoline_known: bool,
    /// Cost so far of each function's probes, ns: a detached function keeps its last.
    unit_cost: Vec<f64>,
    raw: Option<RawFunctions>,
    /// Whether the memory family's allocator probes ran: the calls' memory is then reported.
    allocator_probes: AllocatorProbes,
}

impl Functions {
    /// Checks the `--func` specs (before the target is found: a bad spec starts nothing).
    pub(crate) fn new(
        funcs: &[String],
        max_funcs: usize,
        time_every: u32,
        allocator_probes: AllocatorProbes,
    ) -> anyhow::Result<Self> {
        let specs = funcs
            .iter()
            .map(|s| FuncSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            specs,
            max_funcs,
            time_every,
            traced: Vec::new(),
            skipped: Vec::new(),
            probes: None,
            pid: 0,
            trampoline_known: false,
            unit_cost: Vec::new(),
            raw: None,
            allocator_probes,
        })
    }

    fn sites(&self) -> Vec<Site> {
        self.traced
            .iter()
            .map(|t| Site {
                path: t.function.module.open_path.clone(),
                file_offset: t.function.sym.file_offset + t.placement.offset,
                with_return: true,
            })
            .collect()
    }

    /// Estimated cost of `entries` and `returns` hits of traced function `i`, ns.
    fn cost_ns(&self, model: &crate::report::CostModel, i: usize, hits: (u64, u64)) -> f64 {
        overhead::probe_cost_ns(model, self.traced[i].placement.class, hits.0, hits.1)
    }

    /// The probe hits of the functions in `raw` and what they cost the target.
    fn load_of(&self, raw: &RawFunctions, model: &crate::report::CostModel) -> ProbeLoad {
        let mut load = ProbeLoad::default();
        for (i, totals) in raw.totals.iter().enumerate().take(self.traced.len()) {
            load += ProbeLoad {
                hits: totals.entries + totals.returns,
                cost_ns: self.cost_ns(model, i, (totals.entries, totals.returns)),
            };
        }
        load
    }

    /// Writes `report.functions` and `report.skipped_functions` from `raw`, what
    /// `kernel::read` found: the one analysis of the final report (`raw` harvested at the end)
    /// and of the live view (`raw` read while the probes run). Leaves the family as it is, and
    /// pushes no warning.
    fn write_section(
        &self,
        mut raw: RawFunctions,
        report: &mut Report,
        ctx: &mut ReportContext<'_>,
    ) {
        // A nested hit is priced at the mean cost of the family's hits (they are of the traced
        // functions, whose sites may differ in cost).
        let load = self.load_of(&raw, ctx.cost_model);
        let nested_hit_ns = if load.hits > 0 {
            load.cost_ns / load.hits as f64
        } else {
            0.0
        };
        let mut functions = Vec::new();
        let failed: Vec<usize> = self.skipped.iter().filter_map(|s| s.id).collect();
        for (id, traced) in self.traced.iter().enumerate() {
            if failed.contains(&id) {
                continue;
            }
            let id32 = id as u32;
            let totals = raw.totals.get(id).cloned().unwrap_or_default();
            let cost = self.cost_ns(ctx.cost_model, id, (totals.entries, totals.returns));
            let callers = raw
                .callers
                .iter()
                .filter(|(f, _, _)| *f == id32)
                .map(|(_, addr, calls)| {
                    (
                        ctx.symbolizer.frame(ctx.maps, addr.saturating_sub(1)),
                        *calls,
                    )
                })
                .collect();
            let stacks = raw
                .stacks
                .iter()
                .filter(|(f, _, _)| *f == id32)
                .map(|(_, ips, n)| {
                    let frames = ips
                        .iter()
                        .map(|ip| ctx.symbolizer.frame(ctx.maps, ip.saturating_sub(1)))
                        .collect();
                    (frames, *n)
                })
                .collect();
            let data = FunctionData {
                totals,
                threads: raw.threads.remove(&id32).unwrap_or_default(),
                callers,
                stacks,
                in_flight: raw.in_flight.get(&id32).copied().unwrap_or(0),
                memory: raw
                    .memory
                    .get(id)
                    .copied()
                    .filter(|_| self.allocator_probes.attached()),
            };
            let p = &traced.placement;
            let meta = FunctionMeta {
                name: traced.function.sym.name.clone(),
                module: traced.function.module.file_name(),
                address: traced.function.sym.addr,
                site: ProbeSite {
                    offset: p.offset,
                    instruction: p.instruction.clone(),
                    class: p.class.name(),
                    reason: p.reason.clone(),
                    hits: 0,
                    estimated_cost: 0.0,
                },
            };
            let costs = ProbeCosts {
                own_ns: overhead::in_call_ns(ctx.cost_model, p.class),
                nested_hit_ns,
            };
            let mut profile = profile(&meta, data, cost, costs);
            profile.cpu = raw.cpu.get(id).and_then(cpu_split);
            functions.push(profile);
        }
        functions.sort_by(|a, b| b.total_time.total_cmp(&a.total_time));
        report.functions = functions;
        report.skipped_functions = self
            .skipped
            .iter()
            .map(|s| SkippedFunction {
                function_name: s.function.sym.name.clone(),
                module: s.function.module.file_name(),
                address: format!("{:#x}", s.function.sym.addr),
                reason: s.reason.clone(),
            })
            .collect();
    }
}

impl Family for Functions {
    fn id(&self) -> FamilyId {
        FamilyId::Functions
    }

    fn note(&self) -> Option<String> {
        // Its uprobes are attached to the target process alone.
        Some(CHILDREN_NOT_COVERED.into())
    }

    fn essential(&self) -> bool {
        true
    }

    fn priced(&self) -> bool {
        !self.specs.is_empty()
    }

    fn idle(&self) -> Option<&'static str> {
        self.specs.is_empty().then_some("no --func given")
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        self.pid = ctx.pid;
        let functions = resolve(&self.specs, ctx.modules, self.max_funcs)?;
        let mut go_files: HashMap<PathBuf, bool> = HashMap::new();
        for function in functions {
            let path = &function.module.open_path;
            if *go_files
                .entry(path.clone())
                .or_insert_with(|| go::is_go(path))
            {
                self.skipped.push(Skipped {
                    function,
                    reason: go::NOT_TRACED.into(),
                    id: None,
                });
                continue;
            }
            let sym = &function.sym;
            let placement = placement::place_in_file(
                &function.module.open_path,
                sym.file_offset,
                sym.addr,
                sym.size,
                placement::Role::Plain,
            );
            match placement.refused.clone() {
                Some(reason) => self.skipped.push(Skipped {
                    function,
                    reason,
                    id: None,
                }),
                None => self.traced.push(Traced {
                    function,
                    placement,
                }),
            }
        }
        if self.traced.is_empty()
            && let Some(first) = self.skipped.first()
        {
            anyhow::bail!(
                "no --func function can be probed: {} ({}): {}",
                first.function.sym.name,
                first.function.module.file_name(),
                first.reason
            );
        }
        self.trampoline_known = self.traced.is_empty();
        Ok(())
    }

    fn load_options(&self, options: &mut LoadOptions) {
        let functions = self.traced.len().max(1) as u32;
        options
            .global(TIME_EVERY_MASK_GLOBAL, self.time_every.saturating_sub(1))
            .global(FUNCS_ON_GLOBAL, u32::from(!self.traced.is_empty()))
            .map_size(maps::FUNC_STATS, functions)
            .map_size(maps::SITE_LINKS, functions)
            .map_size(maps::FUNC_CPU, functions)
            .map_size(maps::FUNC_MEM, functions);
        if self.traced.is_empty() {
            // Nothing traced: the per-thread shadow stacks and the sampled stacks, preallocated
            // (about 40 MiB of kernel memory), keep one entry each. Their lookups then find
            // nothing, as they would for a thread with no traced call in progress.
            options
                .map_size(maps::THREAD_VALUES, 1)
                .map_size(maps::STACK_COUNTS, 1)
                .map_size(maps::STACKS, 1);
        }
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        if self.traced.is_empty() {
            return Ok(0);
        }
        let attached = kernel::attach(ebpf, &self.sites(), ctx.pid as u32)?;
        let all_failed = attached.failures.len() == self.traced.len();
        for failure in attached.failures {
            let function = self.traced[failure.index].function.clone();
            if all_failed {
                let name = &function.sym.name;
                return Err(failure
                    .error
                    .context(format!("failed to attach probes to {name}")));
            }
            let reason = format!("{:#}", failure.error);
            self.skipped.push(Skipped {
                function,
                reason,
                id: Some(failure.index),
            });
        }
        let probes = self.probes.insert(attached.probes);
        self.unit_cost = vec![0.0; self.traced.len()];
        Ok(probes.count())
    }

    fn traced_names(&self) -> Vec<String> {
        self.traced
            .iter()
            .map(|t| t.function.sym.name.clone())
            .collect()
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if !self.trampoline_known {
            self.trampoline_known = kernel::publish_trampoline(ebpf, self.pid);
        }
    }

    fn budget_units(&mut self, ebpf: &Ebpf, model: &crate::report::CostModel) -> Vec<f64> {
        if let Ok(hits) = kernel::read_hits(ebpf, self.traced.len()) {
            // A detached function gets no new hits: its cost stays where it was.
            for (i, hits) in hits.into_iter().enumerate() {
                self.unit_cost[i] = self.cost_ns(model, i, hits);
            }
        }
        self.unit_cost.clone()
    }

    fn unit_name(&self, unit: usize) -> String {
        self.traced[unit].function.sym.name.clone()
    }

    fn shed(&mut self, ebpf: &mut Ebpf, unit: usize) -> anyhow::Result<()> {
        let sites = self.sites();
        match self.probes.as_mut() {
            Some(probes) => probes.detach_site(ebpf, &sites, unit),
            None => Ok(()),
        }
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        match kernel::read(ebpf, self.traced.len(), self.pid) {
            Ok(raw) => self.raw = Some(raw),
            Err(e) => warnings.push(format!("could not read the function statistics: {e:#}")),
        }
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        if let Some(probes) = self.probes.as_mut() {
            probes.detach();
        }
    }

    fn probe_load(&self, model: &crate::report::CostModel) -> ProbeLoad {
        self.raw
            .as_ref()
            .map_or_else(ProbeLoad::default, |raw| self.load_of(raw, model))
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let raw = self.raw.take().unwrap_or_default();
        self.write_section(raw, report, ctx);
        if !self.skipped.is_empty() {
            report
                .warnings
                .push(skipped_warning(&report.skipped_functions));
        }
    }

    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        // The same read as `harvest`, kept here rather than in `self.raw`: the maps only grow
        // while the probes run, and the final report reads them again at the end. Nothing
        // traced (no --func): nothing to read, as the final report has nothing either.
        let raw = if self.traced.is_empty() {
            RawFunctions::default()
        } else {
            match kernel::read(ebpf, self.traced.len(), self.pid) {
                Ok(raw) => raw,
                // The next snapshot tries again; `harvest` says it when it fails at the end.
                Err(_) => return,
            }
        };
        // The skipped functions' warning is the final report's: a snapshot lists them in
        // `skipped_functions` all the same.
        self.write_section(raw, report, ctx);
    }

    fn summary(&self, report: &Report, out: &mut String) {
        summary(&report.functions, SUMMARY_TOP, out);
        for s in report.skipped_functions.iter().take(SUMMARY_TOP) {
            let _ = writeln!(
                out,
                "not traced: {} ({}): {}",
                s.function_name, s.module, s.reason
            );
        }
        if report.skipped_functions.len() > SUMMARY_TOP {
            let more = report.skipped_functions.len() - SUMMARY_TOP;
            let _ = writeln!(out, "… and {more} more not traced, in the JSON report");
        }
    }
}

/// Skipped functions named in the warning.
const WARNING_NAMES: usize = 5;

/// The warning that says which matched functions are not traced.
/// A function's on-CPU split, when the threads family timed its calls' CPU.
fn cpu_split(c: &profiler_common::functions::FuncCpu) -> Option<FunctionCpuSplit> {
    (c.calls > 0).then(|| FunctionCpuSplit {
        on_cpu_time: c.on_cpu_ns as f64 * 1e-9,
        off_cpu_time: c.total_ns.saturating_sub(c.on_cpu_ns) as f64 * 1e-9,
        average_cpu_peak: c.share_ppm_sum as f64 / c.calls as f64 * 1e-4,
        peak_cpu: c.max_share_ppm as f64 * 1e-4,
    })
}

fn skipped_warning(skipped: &[SkippedFunction]) -> String {
    let mut names: Vec<&str> = skipped
        .iter()
        .take(WARNING_NAMES)
        .map(|s| s.function_name.as_str())
        .collect();
    let more = skipped.len().saturating_sub(WARNING_NAMES);
    let more = if more > 0 {
        format!(" and {more} more")
    } else {
        String::new()
    };
    names.sort_unstable();
    format!(
        "{} matched function(s) not traced: the kernel does not probe them ({}{more}; reasons \
         in skipped_functions)",
        skipped.len(),
        names.join(", ")
    )
}

/// Functions shown in the printed summary.
const SUMMARY_TOP: usize = 15;

/// The function table of the printed summary: at most `top` functions.
fn summary(functions: &[FunctionProfile], top: usize, out: &mut String) {
    if functions.is_empty() {
        let _ = writeln!(out, "\nno functions traced (use --func GLOB)");
        return;
    }
    let name_width = functions
        .iter()
        .take(top)
        .map(|f| f.function_name.chars().count().min(48))
        .max()
        .unwrap_or(8)
        .max(8);
    let _ = writeln!(
        out,
        "\n{:<name_width$}  {:>10}  {:>10}  {:>10}  {:>11}  {:>10}  {:>10}  {:>10}",
        "function", "calls", "total", "average", "net average", "p50", "p99", "max"
    );
    let time = text::human_time;
    for f in functions.iter().take(top) {
        let name = short_name(&f.function_name);
        let total = if f.timed_calls < f.total_calls {
            format!("~{}", time(f.total_time))
        } else {
            time(f.total_time)
        };
        let net = format!(
            "{}{}",
            time(f.net_average_time),
            if f.probe_dominated { " !" } else { "" }
        );
        let _ = writeln!(
            out,
            "{name:<name_width$}  {:>10}  {total:>10}  {:>10}  {net:>11}  {:>10}  {:>10}  {:>10}",
            f.total_calls,
            time(f.average_time),
            time(f.percentiles.p50),
            time(f.percentiles.p99),
            time(f.max_time),
        );
        if f.in_flight > 0 {
            let _ = writeln!(
                out,
                "{:name_width$}  ({} call(s) still running at the end)",
                "", f.in_flight
            );
        }
    }
    let shown = || functions.iter().take(top);
    if shown().any(|f| f.timed_calls < f.total_calls) {
        let _ = writeln!(
            out,
            "~ times from a sample of the calls (each thread's first 1024 of a function, then \
             one in --time-every); calls are exact"
        );
    }
    let _ = writeln!(
        out,
        "net: less the estimated cost of the probes within the calls (theirs and nested ones)"
    );
    if shown().any(|f| f.probe_dominated) {
        let _ = writeln!(
            out,
            "! the probes are most of the measured time: its raw times are mostly theirs, and \
             the net time is an estimate"
        );
    }
    if functions.len() > top {
        let _ = writeln!(
            out,
            "… and {} more in the JSON report",
            functions.len() - top
        );
    }
    memory_summary(functions, top, name_width, out);
}

/// A function's name as the summary shows it: at most 48 characters.
fn short_name(name: &str) -> String {
    if name.chars().count() > 48 {
        name.chars().take(47).chain(['…']).collect()
    } else {
        name.to_string()
    }
}

/// With the memory family: each shown function that allocated or released memory, with its
/// net bytes and its peak per call.
fn memory_summary(functions: &[FunctionProfile], top: usize, name_width: usize, out: &mut String) {
    let rows: Vec<_> = (functions.iter().take(top))
        .filter_map(|f| f.memory.map(|m| (f, m)))
        .filter(|(_, m)| m.allocations + m.frees > 0)
        .collect();
    if rows.is_empty() {
        return;
    }
    let title = "memory per call";
    let name_width = name_width.max(title.len());
    let _ = writeln!(
        out,
        "\n{:<name_width$}  {:>10}  {:>11}  {:>10}  {:>10}",
        title, "allocs", "net", "avg peak", "max peak"
    );
    let bytes = text::human_bytes;
    for (f, m) in rows {
        let calls = f.total_calls.max(1) as f64;
        let net_bytes = m.net_bytes_per_call.abs().round() as u64;
        let sign = match net_bytes {
            0 => "",
            _ if m.net_bytes_per_call < 0.0 => "-",
            _ => "+",
        };
        let net = format!("{sign}{}", bytes(net_bytes));
        let _ = writeln!(
            out,
            "{:<name_width$}  {:>10.1}  {net:>11}  {:>10}  {:>10}",
            short_name(&f.function_name),
            m.allocations as f64 / calls,
            bytes(m.average_memory_peak.round() as u64),
            bytes(m.max_memory_peak),
        );
    }
    let _ = writeln!(
        out,
        "memory: callees included; net = allocated − freed, peak = the most a call held at once"
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::symbols::symbolize::{AddrSymbolizer, MappingSnapshot};
    use analyze::{FuncTotals, FunctionData, meta_of};

    #[test]
    fn with_nothing_traced_the_per_thread_maps_keep_one_entry() {
        let idle = Functions::new(&[], 10, 16, AllocatorProbes::default()).unwrap();
        let mut options = LoadOptions::default();
        idle.load_options(&mut options);
        for map in [maps::THREAD_VALUES, maps::STACK_COUNTS, maps::STACKS] {
            assert_eq!(options.size_of(map), Some(1), "{map}");
        }
    }
    use profiler_common::functions::FuncMem;

    /// The family tracing `leaf` (a `push rbp; ret` at 0x1000 of `victim`), with `gone` matched
    /// but not traced.
    fn tracing_leaf() -> Functions {
        let mut f = Functions::new(&["leaf".into()], 10, 1, AllocatorProbes::default()).unwrap();
        let function = |name: &str, addr: u64| TracedFunction {
            module: crate::tracee::Module {
                path: "/bin/victim".into(),
                open_path: "/bin/victim".into(),
            },
            sym: crate::symbols::FuncSym {
                raw: name.into(),
                name: name.into(),
                addr,
                size: 2,
                file_offset: addr,
            },
        };
        f.traced.push(Traced {
            function: function("leaf", 0x1000),
            placement: placement::place(&[0x55, 0xc3], 0x1000, 2),
        });
        f.skipped.push(Skipped {
            function: function("gone", 0x2000),
            reason: "a test".into(),
            id: None,
        });
        f
    }

    /// What `kernel::read` gives for `calls` calls of `leaf`, each timed at 1 µs.
    fn read_calls(calls: u64) -> RawFunctions {
        RawFunctions {
            totals: vec![FuncTotals {
                entries: calls,
                returns: calls,
                count: calls,
                total_ns: calls * 1000,
                min_ns: Some(1000),
                max_ns: 1000,
                probe_hits: 2 * calls,
                ..FuncTotals::default()
            }],
            ..RawFunctions::default()
        }
    }

    /// The live view's section is the final report's analysis of what it read, without the
    /// warning; it leaves the harvest where it is, and the final report then has it all.
    #[test]
    fn a_live_section_leaves_the_harvest_to_the_final_report() {
        let mut f = tracing_leaf();
        let (mut symbolizer, maps) = (AddrSymbolizer::new(), MappingSnapshot::default());
        let model = overhead::default_model();
        let mut ctx = ReportContext {
            symbolizer: &mut symbolizer,
            maps: &maps,
            start_ktime_ns: 0,
            end_ktime_ns: 1_000_000_000,
            duration: 1.0,
            exit_status: None,
            traced_names: &[],
            cost_model: &model,
            samples: &[],
            sample_interval: 0.2,
        };
        // What `harvest` would have left: the final reads, 10 calls.
        f.raw = Some(read_calls(10));
        let final_load = f.probe_load(&model);
        let mut live = Report::default();
        f.write_section(read_calls(4), &mut live, &mut ctx);
        assert_eq!(live.functions.len(), 1);
        assert_eq!(live.functions[0].total_calls, 4);
        assert_eq!(live.skipped_functions.len(), 1);
        assert!(live.warnings.is_empty(), "{:?}", live.warnings);
        assert_eq!(f.probe_load(&model), final_load, "the harvest is untouched");

        let mut last = Report::default();
        f.report(&mut last, &mut ctx);
        assert_eq!(last.functions[0].total_calls, 10);
        assert_eq!(last.warnings.len(), 1, "{:?}", last.warnings);
        assert!(f.raw.is_none(), "the final report takes the harvest");

        // The same reads give the same section, live or final.
        f.raw = Some(read_calls(10));
        let mut same = Report::default();
        f.write_section(read_calls(10), &mut same, &mut ctx);
        let json = |r: &Report| serde_json::to_value((&r.functions, &r.skipped_functions));
        assert_eq!(json(&same).unwrap(), json(&last).unwrap());
    }

    /// A profile of `calls` calls of `name`, with `memory` when the allocator probes ran.
    fn profiled(name: &str, calls: u64, memory: Option<FuncMem>) -> FunctionProfile {
        let data = FunctionData {
            totals: FuncTotals {
                untimed: calls,
                ..FuncTotals::default()
            },
            memory,
            ..FunctionData::default()
        };
        profile(&meta_of(name, 0x1000), data, 0.0, ProbeCosts::default())
    }

    /// The memory block lists the functions that allocated or released, per call.
    #[test]
    fn summary_has_a_memory_block_only_with_memory() {
        let grows = FuncMem {
            allocs: 6,
            alloc_bytes: 6000,
            frees: 2,
            freed_bytes: 2000,
            peak_sum: 6000,
            max_peak: 3000,
        };
        let functions = [
            profiled("grows", 2, Some(grows)),
            profiled("idle", 2, Some(FuncMem::default())),
            profiled(
                "drops",
                4,
                Some(FuncMem {
                    frees: 4,
                    freed_bytes: 400,
                    ..FuncMem::default()
                }),
            ),
        ];
        let mut out = String::new();
        memory_summary(&functions, SUMMARY_TOP, 8, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines[1..4],
            [
                "memory per call      allocs          net    avg peak    max peak",
                "grows                   3.0     +2.0 KiB     2.9 KiB     2.9 KiB",
                "drops                   0.0     -100.0 B       0.0 B       0.0 B",
            ],
            "{out}"
        );

        let mut out = String::new();
        let without = [profiled("grows", 2, None)];
        memory_summary(&without, SUMMARY_TOP, 8, &mut out);
        assert_eq!(out, "");
    }
}
