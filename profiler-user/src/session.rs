//! One profiling session: find or start the target, attach the families the level selects,
//! collect until the end, then read, symbolize, analyze and report.
//!
//! Whatever happens once the target is known, a report is built from what was collected: the
//! state below is kept as the session goes, so an error late in the run loses nothing.

use std::{
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use aya::Ebpf;

use crate::{
    analyze::{
        functions::{FunctionData, FunctionMeta, profile},
        system::{Sample, summarize},
    },
    collect::{self, Collected, EndReason},
    error::ProfilerError,
    families::{self, AttachContext, FamilyOptions, FamilyRuntime, ReportContext},
    level::{self, Family, Level},
    overhead::{self, SiteClass},
    placement,
    probes::{
        self,
        functions::{RawFunctions, Site},
    },
    report::{
        self, ExitStatus, FamilyStatus, Overhead, ProbeSite, ProfilerInfo, Report, TargetSection,
    },
    symbols::{
        resolve::{FuncSpec, Module, TracedFunction, resolve},
        symbolize::{AddrSymbolizer, MappingSnapshot},
    },
    tracee::{
        self, TargetInfo,
        libs::needed_libraries,
        spawn::{Gated, resolve_command, spawn_gated},
    },
};

/// How the target is found.
#[derive(Debug, Clone)]
pub enum Mode {
    Attach(i32),
    /// Start this command (program and arguments).
    Run(Vec<String>),
}

/// A checked request for one session.
#[derive(Debug, Clone)]
pub struct Plan {
    pub mode: Mode,
    pub level: Level,
    /// `--without`: families the level selects that are left out.
    pub without: Vec<Family>,
    pub funcs: Vec<String>,
    pub duration: Option<Duration>,
    pub json: Option<PathBuf>,
    pub max_funcs: usize,
    /// Print nothing but errors.
    pub quiet: bool,
    pub family_options: FamilyOptions,
    /// `--max-overhead`: the estimated slowdown (percent) above which the hottest function
    /// probes are detached; None for no budget.
    pub max_overhead: Option<f64>,
    /// `--time-every`: after a function's first `TIME_ALWAYS` calls on a thread, one call in
    /// this many (a power of two; 1 = every call) is timed.
    pub time_every: u32,
}

/// A traced function and where its probe sits.
struct Traced {
    function: TracedFunction,
    site_offset: u64,
    class: SiteClass,
    instruction: String,
    reason: String,
}

/// Everything known so far.
struct Session<'p> {
    plan: &'p Plan,
    target: Option<TargetInfo>,
    gated: Option<Gated>,
    traced: Vec<Traced>,
    ebpf: Option<Ebpf>,
    probes_attached: usize,
    function_probes: usize,
    /// The families with a runtime, and the probes each attached (None: attach failed).
    extras: Vec<(Box<dyn FamilyRuntime>, Option<usize>)>,
    /// CLOCK_MONOTONIC at the start, ns.
    start_ktime_ns: u64,
    cost_model: crate::report::CostModel,
    links: Vec<probes::functions::SiteLinks>,
    /// The families the level selects, built but not attached yet.
    pending_families: Vec<Box<dyn FamilyRuntime>>,
    detached: Vec<crate::report::Detached>,
    started: Option<(Instant, SystemTime)>,
    collected: Collected,
    maps: MappingSnapshot,
    raw: Option<RawFunctions>,
    counters: std::collections::BTreeMap<profiler_common::counters::Counter, u64>,
    warnings: Vec<String>,
}

/// The report (when the target was known) and how the session ended.
pub async fn run(plan: &Plan) -> (Option<Report>, anyhow::Result<()>) {
    let mut session = Session {
        plan,
        target: None,
        gated: None,
        traced: Vec::new(),
        ebpf: None,
        probes_attached: 0,
        function_probes: 0,
        extras: Vec::new(),
        start_ktime_ns: 0,
        cost_model: overhead::default_model(),
        links: Vec::new(),
        pending_families: Vec::new(),
        detached: Vec::new(),
        started: None,
        collected: Collected::default(),
        maps: MappingSnapshot::default(),
        raw: None,
        counters: Default::default(),
        warnings: Vec::new(),
    };
    let result = session.profile().await;
    if let Some(gated) = session.gated.take() {
        gated.abort();
    }
    if result.is_err() && session.collected.end_reason.is_none() {
        session.collected.end_reason = Some(EndReason::Error);
    }
    session.harvest();
    let report = session.target.is_some().then(|| session.report());
    (report, result)
}

impl Session<'_> {
    fn traces_functions(&self) -> bool {
        !self.plan.funcs.is_empty()
    }

    async fn profile(&mut self) -> anyhow::Result<()> {
        probes::check_privileges()?;
        if let Some(path) = &self.plan.json {
            report::json::check_writable(path).map_err(|reason| ProfilerError::ReportPath {
                path: path.clone(),
                reason,
            })?;
        }
        let specs = self
            .plan
            .funcs
            .iter()
            .map(|s| FuncSpec::parse(s))
            .collect::<Result<Vec<_>, _>>()?;
        probes::check_kernel(self.traces_functions())?;
        // Built before anything is attached: a bad option (a malformed pattern file) stops here.
        self.pending_families = families::build(
            &level::selected(self.plan.level, &self.plan.without),
            &self.plan.family_options,
        )?;
        // The cost model prices the function and allocator probes (estimate and budget).
        let memory = self
            .pending_families
            .iter()
            .any(|f| f.family() == Family::Memory);
        if self.traces_functions() || memory {
            self.cost_model = crate::calibrate::cost_model(&mut self.warnings);
        }

        let modules = self.find_target()?;
        let pid = self.target.as_ref().map(|t| t.pid).unwrap_or_default();
        let functions = resolve(&specs, &modules, self.plan.max_funcs)?;
        self.traced = functions.into_iter().map(place).collect();

        let mut ebpf = probes::load(pid as u32, self.traced.len(), self.plan.time_every)?;
        self.probes_attached += probes::process::attach(&mut ebpf)?;
        let sites: Vec<Site> = self
            .traced
            .iter()
            .map(|t| Site {
                path: t.function.module.open_path.clone(),
                file_offset: t.function.sym.file_offset + t.site_offset,
                with_return: true,
            })
            .collect();
        let attached = probes::functions::attach(&mut ebpf, &sites, pid as u32);
        self.ebpf = Some(ebpf);
        match attached {
            Ok(links) => {
                self.function_probes = probes::functions::probe_count(&links);
                self.probes_attached += self.function_probes;
                self.links = links;
            }
            Err(failure) => {
                if self.gated.is_none() && !tracee::alive(pid) {
                    return Err(ProfilerError::TargetExited(pid).into());
                }
                let name = self
                    .traced
                    .get(failure.index)
                    .map(|t| t.function.sym.name.clone())
                    .unwrap_or_default();
                return Err(failure
                    .error
                    .context(format!("failed to attach probes to {name}")));
            }
        }
        let traced: Vec<TracedFunction> = self.traced.iter().map(|t| t.function.clone()).collect();
        let ctx = AttachContext {
            pid,
            run_mode: self.gated.is_some(),
            modules: &modules,
            traced: &traced,
        };
        let ebpf = self.ebpf.as_mut().context("probes not loaded")?;
        for mut family in std::mem::take(&mut self.pending_families) {
            match family.attach(ebpf, &ctx) {
                Ok(n) => {
                    self.probes_attached += n;
                    self.extras.push((family, Some(n)));
                }
                Err(e) => {
                    self.warnings.push(format!(
                        "the {} family could not attach: {e:#}",
                        family.family()
                    ));
                    self.extras.push((family, None));
                }
            }
        }
        if let Some(gated) = self.gated.as_mut() {
            gated.release()?;
        }
        self.gated = None;
        self.started = Some((Instant::now(), SystemTime::now()));
        self.start_ktime_ns = monotonic_ns();
        self.maps.refresh(pid);
        if !self.plan.quiet {
            // Harnesses wait for this line before they start measuring.
            eprintln!(
                "profiler: profiling pid {pid} ({} functions, {} probes); Ctrl-C to stop",
                self.traced.len(),
                self.probes_attached
            );
        }

        let ebpf = self.ebpf.as_mut().context("probes not loaded")?;
        let run_mode = matches!(self.plan.mode, Mode::Run(_));
        let start = self.started.map(|s| s.0).unwrap_or_else(Instant::now);
        let mut extras: Vec<&mut (dyn FamilyRuntime + 'static)> =
            self.extras.iter_mut().map(|(f, _)| f.as_mut()).collect();
        // The budget's units: the traced functions, then the families whose probes it counts.
        let model = self.cost_model.clone();
        let costed: Vec<usize> = extras
            .iter()
            .enumerate()
            .filter(|(_, f)| f.probe_load(Some(ebpf), &model).is_some())
            .map(|(i, _)| i)
            .collect();
        let mut budget = self
            .plan
            .max_overhead
            .filter(|m| *m > 0.0 && !(self.traced.is_empty() && costed.is_empty()))
            .map(|max| {
                let per_hit = self
                    .traced
                    .iter()
                    .map(|t| (overhead::probe_cost_ns(&model, t.class, 1, 1)) / 2.0)
                    // A family's "hits" are its estimated cost in ns.
                    .chain(costed.iter().map(|_| 1.0))
                    .collect();
                let cpu = tracee::cpu_and_rss(pid).map_or(0.0, |(cpu, _)| cpu);
                (max, overhead::Budget::new(max, per_hit, cpu))
            });
        let (links, detached, traced) = (&mut self.links, &mut self.detached, &self.traced);
        let quiet = self.plan.quiet;
        let mut trampoline_known = self.traced.is_empty();
        let mut family_cost = vec![0; costed.len()];
        let mut on_tick = |ebpf: &mut Ebpf, families: &mut [&mut (dyn FamilyRuntime + 'static)]| {
            if !trampoline_known {
                trampoline_known = probes::functions::publish_trampoline(ebpf, pid);
            }
            let Some((max, budget)) = budget.as_mut() else {
                return;
            };
            let Some((cpu, _)) = tracee::cpu_and_rss(pid) else {
                return;
            };
            let mut hits = if traced.is_empty() {
                Vec::new()
            } else {
                match probes::functions::read_hits(ebpf, traced.len()) {
                    Ok(hits) => hits,
                    Err(_) => return,
                }
            };
            for (k, &i) in costed.iter().enumerate() {
                // A family that has shed its probes keeps its last cost (no new hits).
                if let Some(load) = families[i].probe_load(Some(ebpf), &model) {
                    family_cost[k] = load.cost_ns as u64;
                }
            }
            hits.extend_from_slice(&family_cost);
            let (detach, window) = budget.check(&hits, cpu);
            // When the decision was made: each detach waits for the kernel to unregister.
            let at = start.elapsed().as_secs_f64();
            for i in detach {
                let (what, result) = match i.checked_sub(traced.len()) {
                    None => (
                        traced[i].function.sym.name.clone(),
                        probes::functions::detach_site(ebpf, &mut links[i]),
                    ),
                    Some(k) => {
                        let family = &mut families[costed[k]];
                        (format!("{} family", family.family()), family.shed(ebpf))
                    }
                };
                if let Err(e) = result {
                    eprintln!("profiler: could not detach {what}: {e:#}");
                    continue;
                }
                if !quiet {
                    eprintln!(
                        "profiler: estimated slowdown {window:.1}% is over --max-overhead {max}%: \
                         detached {what} after {at:.1} s (what it collected so far is kept; \
                         --max-overhead 0 keeps every probe)"
                    );
                }
                detached.push(crate::report::Detached {
                    function: what,
                    at,
                    window_slowdown_percent: window,
                });
            }
        };
        let watch = collect::Watch {
            pid,
            child: run_mode,
            start,
            duration: self.plan.duration,
        };
        collect::collect(
            ebpf,
            watch,
            &mut self.collected,
            &mut self.maps,
            &mut extras,
            &mut on_tick,
        )
        .await
    }

    /// Finds (attach) or starts at the gate (run) the target; returns its modules, the
    /// executable first.
    fn find_target(&mut self) -> anyhow::Result<Vec<Module>> {
        match &self.plan.mode {
            Mode::Attach(pid) => {
                let pid = *pid;
                let info = tracee::inspect(pid)?;
                let mut modules = vec![Module {
                    path: info.exe.clone(),
                    open_path: tracee::host_path(pid, &info.exe),
                }];
                for m in tracee::mappings(pid).map_err(|_| ProfilerError::TargetExited(pid))? {
                    if m.executable && !modules.iter().any(|x| x.path == m.path) {
                        modules.push(Module {
                            open_path: tracee::host_path(pid, &m.path),
                            path: m.path,
                        });
                    }
                }
                self.target = Some(info);
                Ok(modules)
            }
            Mode::Run(command) => {
                let program = resolve_command(&command[0])?;
                let mut modules = vec![Module {
                    path: program.clone(),
                    open_path: program.clone(),
                }];
                modules.extend(needed_libraries(&program).into_iter().map(|p| Module {
                    path: p.clone(),
                    open_path: p,
                }));
                let gated = spawn_gated(&program, command)?;
                self.target = Some(TargetInfo {
                    pid: gated.pid,
                    exe: program,
                    cmdline: command.clone(),
                });
                self.gated = Some(gated);
                Ok(modules)
            }
        }
    }

    /// Stops the probes and reads what they gathered (once; never fails the session).
    fn harvest(&mut self) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        probes::functions::detach(ebpf, &mut self.links);
        for (family, _) in &mut self.extras {
            family.harvest(ebpf, &mut self.warnings);
        }
        let pid = self.target.as_ref().map(|t| t.pid).unwrap_or_default();
        match probes::functions::read(ebpf, self.traced.len(), pid) {
            Ok(raw) => self.raw = Some(raw),
            Err(e) => self
                .warnings
                .push(format!("could not read the function statistics: {e:#}")),
        }
        match probes::read_counters(ebpf) {
            Ok(c) => self.counters = c,
            Err(e) => self
                .warnings
                .push(format!("could not read the loss counters: {e:#}")),
        }
        self.ebpf = None;
    }

    fn report(&mut self) -> Report {
        let target = self.target.clone().expect("report needs a target");
        let duration = match (self.started, self.collected.ended) {
            (Some((start, _)), Some(end)) => end.duration_since(start).as_secs_f64(),
            (Some((start, _)), None) => start.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        let started_at = self
            .started
            .map(|(_, t)| {
                t.duration_since(UNIX_EPOCH)
                    .unwrap_or_default()
                    .as_secs_f64()
            })
            .unwrap_or(0.0);
        let model = self.cost_model.clone();

        let mut raw = self.raw.take().unwrap_or_default();
        let mut symbolizer = AddrSymbolizer::new();
        let mut functions = Vec::new();
        let mut probe_hits = 0;
        let mut estimated_cost_ns = 0.0;
        for (id, traced) in self.traced.iter().enumerate() {
            let id32 = id as u32;
            let totals = raw.totals.get(id).cloned().unwrap_or_default();
            let cost =
                overhead::probe_cost_ns(&model, traced.class, totals.entries, totals.returns);
            probe_hits += totals.entries + totals.returns;
            estimated_cost_ns += cost;
            let callers = raw
                .callers
                .iter()
                .filter(|(f, _, _)| *f == id32)
                .map(|(_, addr, calls)| {
                    (symbolizer.frame(&self.maps, addr.saturating_sub(1)), *calls)
                })
                .collect();
            let stacks = raw
                .stacks
                .iter()
                .filter(|(f, _, _)| *f == id32)
                .map(|(_, ips, n)| {
                    let frames = ips
                        .iter()
                        .map(|ip| symbolizer.frame(&self.maps, ip.saturating_sub(1)))
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
            };
            let meta = FunctionMeta {
                name: traced.function.sym.name.clone(),
                module: traced.function.module.file_name(),
                address: traced.function.sym.addr,
                site: ProbeSite {
                    offset: traced.site_offset,
                    instruction: traced.instruction.clone(),
                    class: traced.class.name(),
                    reason: traced.reason.clone(),
                    hits: 0,
                    estimated_cost: 0.0,
                },
            };
            functions.push(profile(&meta, data, cost));
        }
        functions.sort_by(|a, b| b.total_time.total_cmp(&a.total_time));

        let samples = &self.collected.samples;
        let target_cpu = self
            .collected
            .final_cpu_time
            .or_else(|| samples.last().map(|s| s.cpu_time))
            .map(|end| end - samples.first().map(|s| s.cpu_time).unwrap_or(0.0))
            .unwrap_or(0.0)
            .max(0.0);
        // The allocator probes (memory family), priced by the same model.
        for load in self
            .extras
            .iter()
            .filter_map(|(f, _)| f.probe_load(None, &model))
        {
            probe_hits += load.hits;
            estimated_cost_ns += load.cost_ns;
        }
        let estimated_cost = estimated_cost_ns * 1e-9;

        let mut lost = std::collections::BTreeMap::new();
        let mut notes = std::collections::BTreeMap::new();
        for (counter, value) in &self.counters {
            if counter.is_loss() {
                lost.insert(counter.name(), *value);
                self.warnings.push(format!(
                    "{value} event(s) lost: {}",
                    counter.name().replace('_', " ")
                ));
            } else {
                notes.insert(counter.name(), *value);
            }
        }

        let exited = self.collected.exited;
        let exit_status = self.collected.exit_status.map(ExitStatus::from_wait_status);
        if self.collected.end_reason == Some(EndReason::TargetExited) && duration < 0.0 {
            self.warnings.push("the target exited".into());
        }
        let families = self.families();
        let samples = &self.collected.samples;
        let mut report = Report {
            schema_version: report::SCHEMA_VERSION,
            profiler: ProfilerInfo {
                version: env!("CARGO_PKG_VERSION"),
                debug_level: self.plan.level,
                mode: match self.plan.mode {
                    Mode::Attach(_) => "attach",
                    Mode::Run(_) => "run",
                },
                duration,
                started_at,
                end_reason: self
                    .collected
                    .end_reason
                    .unwrap_or(EndReason::Error)
                    .name()
                    .into(),
            },
            target: TargetSection {
                pid: target.pid,
                exe: target.exe.display().to_string(),
                cmdline: target.cmdline.clone(),
                exited,
                exit_status,
            },
            families,
            functions,
            overhead: Overhead {
                probes_attached: self.probes_attached,
                probe_hits,
                cost_model: model.clone(),
                estimated_cost,
                target_cpu_time: target_cpu,
                estimated_slowdown_percent: overhead::slowdown_percent(estimated_cost, target_cpu),
                budget: self
                    .plan
                    .max_overhead
                    .map(|max_percent| crate::report::BudgetSection {
                        max_percent,
                        detached: std::mem::take(&mut self.detached),
                    }),
                lost,
                notes,
            },
            system: summarize(samples, collect::SAMPLE_INTERVAL.as_secs_f64(), num_cpus()),
            memory: None,
            errors: None,
            warnings: Vec::new(),
        };
        let traced_names: Vec<String> = self
            .traced
            .iter()
            .map(|t| t.function.sym.name.clone())
            .collect();
        let mut ctx = ReportContext {
            pid: target.pid,
            symbolizer: &mut symbolizer,
            maps: &self.maps,
            start_ktime_ns: self.start_ktime_ns,
            end_ktime_ns: self.start_ktime_ns + (duration * 1e9) as u64,
            duration,
            traced_names: &traced_names,
            cost_model: &model,
            exit_status: self.collected.exit_status,
        };
        for (family, _) in &mut self.extras {
            family.report(&mut report, &mut ctx);
        }
        report.warnings.append(&mut self.warnings);
        report
    }

    fn families(&mut self) -> Vec<FamilyStatus> {
        let selected = level::selected(self.plan.level, &self.plan.without);
        let mut unavailable = Vec::new();
        let statuses = Family::ALL
            .iter()
            .map(|&family| {
                let by_func = family == Family::Functions && self.traces_functions();
                let (status, probes, note) = if !selected.contains(&family) && !by_func {
                    let left_out = self.plan.without.contains(&family)
                        && self.plan.level.families().contains(&family);
                    (
                        "not_selected",
                        0,
                        left_out.then(|| "left out by --without".into()),
                    )
                } else if !family.available() {
                    unavailable.push(family.name());
                    (
                        "not_available",
                        0,
                        Some("not in this build of the profiler".to_string()),
                    )
                } else {
                    let extra = self.extras.iter().find(|(f, _)| f.family() == family);
                    match (family, extra) {
                        (Family::Functions, _) if !self.traces_functions() => {
                            ("idle", 0, Some("no --func given".to_string()))
                        }
                        (Family::Functions, _) => ("attached", self.function_probes, None),
                        (Family::Process, _) => ("attached", 1, None),
                        (_, Some((f, Some(n)))) => ("attached", *n, f.note()),
                        (_, Some((_, None))) => {
                            ("failed", 0, Some("could not attach: see warnings".into()))
                        }
                        _ => ("attached", 0, None),
                    }
                };
                let note = match note {
                    None if by_func && !selected.contains(&family) => {
                        Some("added by --func".into())
                    }
                    other => other,
                };
                FamilyStatus {
                    name: family.name(),
                    status,
                    probes,
                    note,
                }
            })
            .collect();
        if !unavailable.is_empty() {
            self.warnings.push(format!(
                "level {} selects families not available in this build: {}",
                self.plan.level.name(),
                unavailable.join(", ")
            ));
        }
        statuses
    }
}

/// Most bytes of a function read to decide where its probe goes.
const MAX_FUNCTION_BYTES: u64 = 1 << 20;

/// Decides where a function's probes go (see `placement`) from its code in the file.
fn place(function: TracedFunction) -> Traced {
    let len = function.sym.size.clamp(16, MAX_FUNCTION_BYTES);
    let code =
        read_at(&function.module.open_path, function.sym.file_offset, len).unwrap_or_default();
    let p = placement::place(&code, function.sym.addr, function.sym.size);
    Traced {
        function,
        site_offset: p.offset,
        class: p.class,
        instruction: p.instruction,
        reason: p.reason,
    }
}

fn read_at(path: &std::path::Path, offset: u64, len: u64) -> std::io::Result<Vec<u8>> {
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0; len as usize];
    let n = file.read_at(&mut buf, offset)?;
    buf.truncate(n);
    Ok(buf)
}

/// CLOCK_MONOTONIC now, ns: the clock of `bpf_ktime_get_ns`.
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec for the kernel to fill.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

fn num_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Samples the target's CPU time and RSS.
pub fn sample(pid: i32, start: Instant) -> Option<Sample> {
    let (cpu_time, rss) = tracee::cpu_and_rss(pid)?;
    Some(Sample {
        at: start.elapsed().as_secs_f64(),
        cpu_time,
        rss,
    })
}
