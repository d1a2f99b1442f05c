//! The `threads` family: scheduling per thread (on-CPU, blocked by reason, runnable), lock
//! contention with the holder, lock-order (potential) deadlocks, and live deadlocks found while
//! profiling, including in a process that was already stuck when it was attached.

pub(crate) mod analyze;
pub(crate) mod kernel;
mod live;
#[cfg(test)]
mod live_tests;

use std::{collections::HashMap, fmt::Write as _};

use aya::Ebpf;
use profiler_common::{
    counters::Counter,
    threads::{LockOp, ThreadStats, globals, hit},
};

use crate::{
    bpf::{self, LoadOptions},
    clock::monotonic_ns,
    families::python::{SharedHandle, code::Named},
    family::{
        CHILDREN_NOT_COVERED, Family, LivePace, ProbeLoad, ReportContext, TargetContext,
        TickContext,
    },
    level::FamilyId,
    overhead,
    report::{
        CostModel, Frame, Report, ThreadsSection,
        text::human_time,
        threads::{LiveDeadlock, LockFunction, LockProbes},
    },
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    tracee,
};
use analyze::{Harvest, Resolve};
use kernel::{Links, LockLib};

/// Estimated per-hit costs of the family's kernel programs, ns: the mean run times the kernel
/// measured on the development VM (`PROFILER_BPF_STATS=1`, the bench's condition-variable
/// ping-pong of two thread pairs on one CPU: `sched_switch` 174 ns a target thread's switch, a
/// user-stack walk included when a thread blocks somewhere new, `sched_waking` 66 ns, the futex
/// programs 53 and 61 ns), plus about 30 ns for the tracepoint's dispatch. The lock probes are
/// priced by the uprobe cost model.
const SWITCH_NS: f64 = 200.0;
const WAKEUP_NS: f64 = 90.0;
const FUTEX_NS: f64 = 90.0;

/// Family options from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `--min-block`, µs.
    pub min_block_us: u32,
    /// `--deadlock-after`, seconds.
    pub deadlock_after: f64,
    /// Not `--no-lock-probes`.
    pub lock_probes: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            min_block_us: 1_000,
            deadlock_after: 2.0,
            lock_probes: true,
        }
    }
}

pub(crate) struct Threads {
    options: Options,
    locks: Result<LockLib, String>,
    links: Option<Links>,
    live: live::Watch,
    harvest: Option<Harvest>,
    hits: Hits,
    counters: Vec<(Counter, u64)>,
    /// Names of the target's threads, kept as they are seen (a thread that exits keeps its name).
    names: HashMap<u32, String>,
    pid: i32,
    /// The target's executable mappings when they were last written for the kernel's stack
    /// scan.
    exec_maps: Vec<(u64, u64)>,
    /// The mappings seen at the last tick, written once they hold still.
    exec_maps_seen: Option<Vec<(u64, u64)>>,
    /// Whether the family's probes were attached.
    attached: bool,
    /// The python family's Python stacks, where it runs.
    python: Option<SharedHandle>,
    /// The live view's last snapshot, and when the next one may be made.
    live_pace: LivePace<ThreadsSection>,
    /// The statics that name locks, parsed once for the live view's snapshots.
    live_data: crate::symbols::data::DataSymbols,
}

/// The family's probe hits by [`hit`] slot.
type Hits = [u64; hit::SLOTS as usize];

impl Threads {
    pub(crate) fn new(options: Options, python: Option<SharedHandle>) -> Self {
        Self {
            python,
            options,
            locks: Err("not looked for yet".into()),
            links: None,
            live: live::Watch::new((options.deadlock_after * 1e9) as u64),
            harvest: None,
            hits: [0; hit::SLOTS as usize],
            counters: Vec::new(),
            names: HashMap::new(),
            pid: 0,
            exec_maps: Vec::new(),
            exec_maps_seen: None,
            attached: false,
            live_pace: LivePace::default(),
            live_data: Default::default(),
        }
    }

    fn remember_names(&mut self) {
        proc_names(self.pid, &mut self.names);
    }

    /// Writes the target's executable ranges for the kernel when they changed (a library loaded,
    /// or the command of `run` executed).
    fn refresh_exec_ranges(&mut self, ebpf: &mut Ebpf) {
        // Before `run`'s command executes, the target is a copy of the profiler itself: its
        // mappings are not the command's (the kernel then checks every word's call instruction).
        let exe = |pid: &str| std::fs::read_link(format!("/proc/{pid}/exe")).ok();
        if exe(&self.pid.to_string()) == exe("self") {
            return;
        }
        let now: Vec<(u64, u64)> = crate::tracee::mappings(self.pid)
            .map(|maps| {
                (maps.iter().filter(|m| m.executable))
                    .map(|m| (m.start, m.end))
                    .collect()
            })
            .unwrap_or_default();
        if now.is_empty() || now == self.exec_maps {
            return;
        }
        // Written once they are the same two ticks running: a command just executed is still
        // having its libraries mapped, and ranges without libc would hide its frames.
        if self.exec_maps_seen.as_ref() != Some(&now) {
            self.exec_maps_seen = Some(now);
            return;
        }
        if kernel::write_exec_ranges(ebpf, &now).is_ok() {
            self.exec_maps = now;
        }
    }

    /// Entry hits of lock op `op` (of the probe hits `hits`), and what they and their returns
    /// cost, ns.
    fn op_load(&self, model: &CostModel, hits: &Hits, op: LockOp) -> (u64, f64) {
        let entries = hits[(hit::LOCK_OP + op as u32) as usize];
        let returns = if op.returns() { entries } else { 0 };
        // An op's functions (timedlock and clocklock) share the count: priced at the dearer.
        let stepped = self.locks.as_ref().is_ok_and(|l| {
            (l.functions.iter())
                .any(|f| f.op == op && f.placement.class == overhead::SiteClass::SingleStepped)
        });
        let class = if stepped {
            overhead::SiteClass::SingleStepped
        } else {
            overhead::SiteClass::Emulated
        };
        (
            entries,
            overhead::probe_cost_ns(model, class, entries, returns),
        )
    }

    fn load(&self, model: &CostModel) -> ProbeLoad {
        let h = &self.hits;
        let mut uprobe_hits = 0;
        let mut uprobes = 0.0;
        for (op, _) in LockOp::FUNCTIONS {
            let (entries, cost) = self.op_load(model, h, op);
            uprobe_hits += entries + if op.returns() { entries } else { 0 };
            uprobes += cost;
        }
        let kernel = h[hit::SWITCH as usize] as f64 * SWITCH_NS
            + h[hit::WAKEUP as usize] as f64 * WAKEUP_NS
            + h[hit::FUTEX as usize] as f64 * FUTEX_NS;
        ProbeLoad {
            hits: uprobe_hits
                + h[hit::SWITCH as usize]
                + h[hit::WAKEUP as usize]
                + h[hit::FUTEX as usize],
            cost_ns: uprobes + kernel,
        }
    }

    /// The report's section: what `harvest` read, taken (the family reports once).
    fn final_section(&mut self, ctx: &mut ReportContext<'_>) -> Option<ThreadsSection> {
        let harvest = self.harvest.take()?;
        merge_names(&mut self.names, &harvest, self.pid);
        let mut data = crate::symbols::data::DataSymbols::default();
        Some(self.section(&harvest, &self.names, &self.hits, &mut data, ctx))
    }

    /// The live view's section: of `read` (the maps and probe hits read now), or without it
    /// (the probes were shed) of what was read then; with `names`, the thread names known now.
    /// The family is left as it was.
    fn live_section(
        &self,
        read: Option<(Harvest, Hits)>,
        mut names: HashMap<u32, String>,
        data: &mut crate::symbols::data::DataSymbols,
        ctx: &mut ReportContext<'_>,
    ) -> Option<ThreadsSection> {
        let (harvest, hits) = match &read {
            Some((harvest, hits)) => (harvest, hits),
            None => (self.harvest.as_ref()?, &self.hits),
        };
        merge_names(&mut names, harvest, self.pid);
        Some(self.section(harvest, &names, hits, data, ctx))
    }

    /// The threads section of `harvest`: the one analysis of `report` and `live`. `names`: the
    /// threads' names; `hits`: the probes' hits; `data`: the statics that name locks.
    fn section(
        &self,
        harvest: &Harvest,
        names: &HashMap<u32, String>,
        hits: &Hits,
        data: &mut crate::symbols::data::DataSymbols,
        ctx: &mut ReportContext<'_>,
    ) -> ThreadsSection {
        let mut resolver = Resolver {
            symbolizer: ctx.symbolizer,
            maps: ctx.maps,
            data,
            names,
            pid: self.pid,
            python: self.python.as_ref(),
        };
        let start = ctx.start_ktime_ns;
        let live: Vec<LiveDeadlock> = self
            .live
            .found()
            .iter()
            .map(|raw| raw.resolve(&mut resolver, harvest, start, names))
            .collect();
        let options = analyze::Options {
            min_block_ns: u64::from(self.options.min_block_us) * 1_000,
            deadlock_after_ns: (self.options.deadlock_after * 1e9) as u64,
            top_stacks: 5,
        };
        let mut section: ThreadsSection = analyze::section(harvest, &mut resolver, &options, live);
        section.lock_probes = self.lock_probes(ctx.cost_model, hits);
        section
    }

    fn lock_probes(&self, model: &CostModel, hits: &Hits) -> LockProbes {
        match (&self.locks, self.attached) {
            (Ok(lib), true) => LockProbes {
                attached: true,
                module: Some(lib.module.file_name()),
                functions: lib
                    .functions
                    .iter()
                    .map(|f| {
                        let (hits, cost_ns) = self.op_load(model, hits, f.op);
                        LockFunction {
                            name: f.name.to_string(),
                            probe_offset: f.placement.offset,
                            probe_class: f.placement.class.name().into(),
                            probe_instruction: f.placement.instruction.clone(),
                            probe_reason: f.placement.reason.clone(),
                            hits,
                            estimated_cost: cost_ns * 1e-9,
                        }
                    })
                    .collect(),
                note: None,
            },
            (Ok(_), _) => LockProbes {
                attached: false,
                note: Some("the family did not attach".into()),
                ..Default::default()
            },
            (Err(why), _) => LockProbes {
                attached: false,
                note: Some(why.clone()),
                ..Default::default()
            },
        }
    }
}

/// What the analyzer asks of the outside world, at report time.
struct Resolver<'a> {
    symbolizer: &'a mut AddrSymbolizer,
    maps: &'a MappingSnapshot,
    data: &'a mut crate::symbols::data::DataSymbols,
    names: &'a HashMap<u32, String>,
    pid: i32,
    python: Option<&'a SharedHandle>,
}

impl Resolve for Resolver<'_> {
    fn python_frames(&mut self, hash: u64) -> Vec<Named> {
        self.python
            .map(|p| p.lock().expect("python state").frames(hash))
            .unwrap_or_default()
    }

    fn frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        ips.iter()
            .enumerate()
            // Return addresses point past the call: look up the call itself.
            .map(|(i, ip)| {
                self.symbolizer
                    .frame(self.maps, if i == 0 { *ip } else { ip.saturating_sub(1) })
            })
            .collect()
    }

    fn thread_name(&self, tid: u32) -> Option<String> {
        self.names.get(&tid).cloned()
    }

    fn lock_symbol(&mut self, addr: u64) -> Option<String> {
        self.data.name(self.maps, addr)
    }

    fn exited(&self, tid: u32) -> bool {
        !tracee::thread_alive(self.pid, tid)
    }
}

impl Family for Threads {
    fn id(&self) -> FamilyId {
        FamilyId::Threads
    }

    fn priced(&self) -> bool {
        true
    }

    fn note(&self) -> Option<String> {
        let locks = match &self.locks {
            Ok(lib) => format!(
                "pthread lock probes in {} ({} functions)",
                lib.module.file_name(),
                lib.functions.len()
            ),
            Err(why) => why.clone(),
        };
        Some(format!(
            "sched_switch, sched_waking, sched_wakeup_new (tp_btf), futex tracepoints; {locks}; {CHILDREN_NOT_COVERED}"
        ))
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        self.pid = ctx.pid;
        self.locks = if self.options.lock_probes {
            kernel::find_lock_functions(ctx.modules)
        } else {
            Err("left out by --no-lock-probes (futex waits are still seen)".into())
        };
        Ok(())
    }

    fn load_options(&self, options: &mut LoadOptions) {
        options.global(globals::MIN_BLOCK_US, self.options.min_block_us);
        options.global(globals::THREADS_ON, 1);
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        let links = kernel::attach(ebpf, self.locks.as_ref().ok(), ctx.pid as u32)?;
        let n = links.count();
        self.links = Some(links);
        self.attached = true;
        if !ctx.run_mode {
            // A running process's mappings hold still: seen and written at once.
            self.refresh_exec_ranges(ebpf);
            self.refresh_exec_ranges(ebpf);
            // A process that is already stuck: its threads will never call a lock function
            // again, so the wait-for graph starts from what /proc and its memory say now.
            self.remember_names();
            self.live.check(ebpf, ctx.pid, monotonic_ns(), true);
        }
        Ok(n)
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, ctx: &TickContext) {
        if self.links.is_none() {
            return;
        }
        self.refresh_exec_ranges(ebpf);
        let now = monotonic_ns();
        if self.live.due(now) {
            self.remember_names();
            for found in self.live.check(ebpf, ctx.pid, now, false) {
                eprintln!("profiler: {}", live::describe(&found, &self.names));
            }
        }
    }

    fn budget_units(&mut self, ebpf: &Ebpf, model: &CostModel) -> Vec<f64> {
        if self.links.is_some()
            && let Ok(hits) = kernel::read_hits(ebpf)
        {
            self.hits = hits;
        }
        vec![self.load(model).cost_ns]
    }

    fn unit_name(&self, _unit: usize) -> String {
        "threads family".into()
    }

    fn shed(&mut self, ebpf: &mut Ebpf, _unit: usize) -> anyhow::Result<()> {
        let Some(links) = self.links.take() else {
            return Ok(());
        };
        links.detach();
        self.hits = kernel::read_hits(ebpf)?;
        self.harvest = Some(kernel::read(ebpf, monotonic_ns())?);
        Ok(())
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        if self.links.is_none() {
            return;
        }
        self.remember_names();
        match kernel::read_hits(ebpf) {
            Ok(hits) => self.hits = hits,
            Err(e) => warnings.push(format!("threads: {e:#}")),
        }
        match kernel::read(ebpf, monotonic_ns()) {
            Ok(h) => self.harvest = Some(h),
            Err(e) => warnings.push(format!("threads: cannot read the maps: {e:#}")),
        }
        if let Ok(counters) = bpf::read_counters(ebpf) {
            self.counters = counters
                .into_iter()
                .filter(|(c, _)| {
                    matches!(
                        c,
                        Counter::ThreadSlotTaken
                            | Counter::ThreadStackFailed
                            | Counter::ThreadMapFull
                            | Counter::HeldLocksOverflow
                    )
                })
                .collect();
        }
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        if let Some(links) = self.links.take() {
            links.detach();
        }
    }

    fn probe_load(&self, model: &CostModel) -> ProbeLoad {
        self.load(model)
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let Some(section) = self.final_section(ctx) else {
            return;
        };
        for (counter, n) in &self.counters {
            report.warnings.push(format!(
                "threads: {n} event(s) lost ({}): see the schema",
                counter.name()
            ));
        }
        report.threads = Some(section);
    }

    /// The threads so far (the busiest, the most blocked), the contended locks, lock-order
    /// cycles and the live deadlocks the watch found, from the maps read now as `harvest`
    /// reads them, analyzed as `report` does; the family keeps its state (the names it knows
    /// are copied, the watch's cycles borrowed). After the probes were shed, what was read
    /// then. Reading every map can be dear with many threads or locks: [`LivePace`] spaces the
    /// readings then. Nothing is printed, no warning pushed.
    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        if !self.attached {
            return;
        }
        let mut pace = std::mem::take(&mut self.live_pace);
        let mut data = std::mem::take(&mut self.live_data);
        let section = pace.snapshot(monotonic_ns(), monotonic_ns, || {
            // The probes attached: the maps as they are now (unreadable: nothing to show).
            let read = match self.links {
                Some(_) => Some((
                    kernel::read(ebpf, monotonic_ns()).ok()?,
                    kernel::read_hits(ebpf).unwrap_or(self.hits),
                )),
                None => None,
            };
            let mut names = self.names.clone();
            proc_names(self.pid, &mut names);
            self.live_section(read, names, &mut data, ctx)
        });
        (self.live_pace, self.live_data) = (pace, data);
        if section.is_some() {
            report.threads = section;
        }
    }
}

/// The family's block of the printed summary (see `families::summary`).
pub(crate) fn summary_block(report: &Report, out: &mut String) {
    if let Some(t) = &report.threads {
        summary(out, t);
    }
}

/// Adds the names /proc gives the live threads of process `pid` to `names`.
fn proc_names(pid: i32, names: &mut HashMap<u32, String>) {
    for tid in tracee::task::thread_ids(pid) {
        if let Some(name) = tracee::task::thread_name(pid, tid) {
            names.insert(tid as u32, name);
        }
    }
}

/// Adds the names the kernel recorded in `harvest` to `names`: an exited thread's last name is
/// the kernel's (from its last switch-out), as /proc may have been read before the thread named
/// itself; a live thread keeps the name /proc gave it.
fn merge_names(names: &mut HashMap<u32, String>, harvest: &Harvest, pid: i32) {
    for (tid, name) in harvest.threads.iter().map(|t| (t.tid as u32, comm(t))) {
        if name.is_empty() {
            continue;
        }
        if tracee::thread_alive(pid, tid) {
            names.entry(tid).or_insert(name);
        } else {
            names.insert(tid, name);
        }
    }
}

/// A thread's name from its stats (its name at its last switch-out).
fn comm(t: &ThreadStats) -> String {
    let end = t.comm.iter().position(|&b| b == 0).unwrap_or(t.comm.len());
    String::from_utf8_lossy(&t.comm[..end]).into_owned()
}

/// Threads and locks shown in the printed summary.
const SUMMARY_ROWS: usize = 3;

fn summary(out: &mut String, t: &ThreadsSection) {
    let name_of = |address: &str| {
        t.locks
            .iter()
            .find(|l| l.address == address)
            .and_then(|l| l.symbol.clone())
            .unwrap_or_else(|| address.to_string())
    };
    let sum = |f: fn(&crate::report::threads::ThreadEntry) -> f64| -> f64 {
        t.threads.iter().map(f).sum()
    };
    let _ = writeln!(
        out,
        "threads: {} thread(s), on CPU {}, blocked {}, runnable {}",
        t.threads.len(),
        human_time(sum(|th| th.on_cpu_time)),
        human_time(sum(|th| th.blocked_time)),
        human_time(sum(|th| th.runnable_time)),
    );
    // Deadlocks first: they are what a user looking at a hung process came for.
    for d in &t.deadlocks.live {
        let cycle: Vec<String> = d
            .threads
            .iter()
            .map(|th| {
                let lock = th.waits_for_symbol.as_deref().unwrap_or(&th.waits_for);
                format!(
                    "{} ({}) waits for {} {lock} held by {}",
                    th.tid, th.name, th.lock_kind, th.held_by
                )
            })
            .collect();
        let _ = writeln!(
            out,
            "LIVE DEADLOCK (found at {:.1} s): {}",
            d.detected_at,
            cycle.join("; ")
        );
    }
    for p in &t.deadlocks.potential {
        let mut locks: Vec<String> = p.locks.iter().map(|a| name_of(a)).collect();
        if let Some(first) = locks.first().cloned() {
            locks.push(first);
        }
        let threads: Vec<String> = p
            .edges
            .iter()
            .map(|e| format!("{} ({})", e.thread, e.tid))
            .collect();
        let _ = writeln!(
            out,
            "potential deadlock (lock order): {} by {}",
            locks.join(" -> "),
            threads.join(", ")
        );
    }
    let mut busiest: Vec<_> = t.threads.iter().filter(|th| th.on_cpu_time > 0.0).collect();
    busiest.sort_by(|a, b| b.on_cpu_time.total_cmp(&a.on_cpu_time));
    for th in busiest.iter().take(SUMMARY_ROWS) {
        let _ = writeln!(
            out,
            "busiest: {} ({}) on CPU {}, runnable {} (run-queue p99 {})",
            th.tid,
            th.name,
            human_time(th.on_cpu_time),
            human_time(th.runnable_time),
            human_time(th.runq_latency_p99),
        );
    }
    let mut blocked: Vec<_> = t
        .threads
        .iter()
        .filter(|th| th.blocked_time > 0.0)
        .collect();
    blocked.sort_by(|a, b| b.blocked_time.total_cmp(&a.blocked_time));
    for th in blocked.iter().take(SUMMARY_ROWS) {
        let b = &th.blocked;
        let parts: Vec<String> = [
            ("lock", b.lock),
            ("io", b.io),
            ("sleep", b.sleep),
            ("other", b.other),
        ]
        .iter()
        .filter(|(_, v)| *v > 0.0)
        .map(|(k, v)| format!("{k} {}", human_time(*v)))
        .collect();
        let _ = writeln!(
            out,
            "most blocked: {} ({}) {} ({})",
            th.tid,
            th.name,
            human_time(th.blocked_time),
            parts.join(", ")
        );
    }
    let contended: Vec<_> = t.locks.iter().filter(|l| l.contended > 0).collect();
    for lock in contended.iter().take(SUMMARY_ROWS) {
        let holder = lock
            .holders
            .first()
            .map(|h| {
                let at = h
                    .stack
                    .iter()
                    .find(|f| f.function != "??")
                    .map(|f| format!(" in {}", f.function))
                    .unwrap_or_default();
                format!(
                    ", mostly held by {} ({}){at} [{}]",
                    h.tid, h.thread, h.evidence
                )
            })
            .unwrap_or_default();
        let name = lock.symbol.clone().unwrap_or_else(|| {
            match lock.allocated_at.iter().find(|f| f.function != "??") {
                Some(f) => format!("{} (allocated in {})", lock.address, f.function),
                None => lock.address.clone(),
            }
        });
        let _ = writeln!(
            out,
            "contended {} {name}: {} of {} wait(s), {} waited, max {}{holder}",
            lock.kind,
            lock.contended,
            lock.acquisitions.map_or("?".into(), |a| a.to_string()),
            human_time(lock.wait_time),
            human_time(lock.max_wait),
        );
    }
    if contended.is_empty() {
        let _ = writeln!(out, "no lock contention seen");
    }
}
