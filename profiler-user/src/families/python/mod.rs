//! The `python` family: a CPython target's Python frames in the stacks the profiler takes (the
//! cpu family's samples first), and the exceptions it raises, caught or not, counted exactly per
//! (type, line) by a uprobe on `_PyErr_SetObject`, the unhandled ones seen at `_PyErr_Display`.
//!
//! The family finds the interpreter (at attach, or after the `run` command's exec), writes the
//! walk's layout for the kernel, and keeps the kernel's map of thread states in step with the
//! interpreter's own list, every fast tick. The kernel sends each Python stack the first time it
//! stores it; the code objects of its frames are read then, while they are alive, and named
//! (qualified name, file, line) for every family that splices Python frames into its stacks
//! through [`Shared`].

pub(crate) mod code;
mod events;
pub(crate) mod interp;
mod kernel;
pub(crate) mod layout;
mod section;
pub(crate) mod splice;
#[cfg(test)]
pub(crate) mod testing;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use aya::Ebpf;
use profiler_common::{
    event::EventKind,
    python::{
        PY_ALLOC_LIVE_MAX, PY_ALLOC_SITES_MAX, PY_CODES_MAX, PY_RAISES_MAX, PY_STACKS_MAX,
        PY_THREADS_MAX, PyFrame, PySiteStats, RaiseKey, count, globals, maps,
    },
};

use crate::report::errors;
use crate::{
    bpf::LoadOptions,
    family::{Family, Flow, ProbeLoad, ReportContext, TargetContext, TickContext},
    level::FamilyId,
    report::{
        CostModel, Report,
        python::{ExceptionStats, InterpreterInfo, PythonSection, RaiseSite, WalkStats},
    },
};
use code::{Codes, Named, Process, Resolved};
use interp::{FileFound, Found, Interpreter, InterpreterFile};

/// Estimated cost to the target, ns, beyond the probe hit itself (priced by the cost model
/// from its instruction's class): a raise's or an allocation's program (its maps and its
/// event), a Python walk, and a frame of it (one read of the target). `cargo xtask bench --only
/// python` measures a raise and an allocation (BENCHMARKS.md).
const RAISE_NS: f64 = 200.0;
const WALK_NS: f64 = 150.0;
const FRAME_NS: f64 = 120.0;

/// Allocation sites listed in the section.
const MAX_ALLOC_SITES: usize = 20;

/// What the allocation sites say, and do not.
const ALLOC_NOTE: &str = "pymalloc's blocks (PyObject_Malloc, _Calloc, _Realloc until \
    PyObject_Free) per Python line: the growth over the run. The reachability of a block does \
    not apply here (pymalloc keeps freed blocks in its pools and arenas, which the process keeps \
    mapped), and memory from the C allocator (PyMem_RawMalloc, extension modules) is the memory \
    family's.";

/// Most thread states read from the interpreter's list.
const MAX_THREADS: usize = 4096;

/// The function of a raise no Python frame was running (one from the interpreter's start-up, or
/// from C code a thread runs without Python frames).
const NO_PYTHON_FRAME: &str = "(no Python frame)";

/// A Python line: function, file and line.
type Line = (String, Option<String>, Option<u32>);

/// Sites listed in the section.
const MAX_SITES: usize = 50;

/// How often the target is looked at for an interpreter, once the first second after an exec
/// has passed.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// What the family shares with the families that splice Python frames: the layout, the Python
/// stacks by hash, and the code objects read.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    layout: Option<layout::Layout>,
    /// Each stack's frames with their code objects, read when the stack was new (None: not
    /// read yet, the interpreter not found then).
    stacks: HashMap<u64, (Vec<PyFrame>, Option<Vec<Resolved>>)>,
    codes: Codes,
    /// What the errors family takes, once this family has reported.
    feed: Option<ErrorsFeed>,
}

/// The exceptions, as the errors family takes them.
#[derive(Debug, Default)]
pub(crate) struct ErrorsFeed {
    /// The detailed raises, in time order.
    pub raises: Vec<PythonRaise>,
    /// The exact counts per site, with each site's first message.
    pub sites: Vec<(RaiseSite, Option<String>)>,
}

pub(crate) type SharedHandle = Arc<Mutex<Shared>>;

impl Shared {
    /// The frames of Python stack `hash`, named, innermost first (none for 0 or an unknown one).
    pub(crate) fn frames(&self, hash: u64) -> Vec<Named> {
        match (&self.layout, self.stacks.get(&hash)) {
            (Some(l), Some((_, Some(resolved)))) => code::name(l, resolved),
            (Some(l), Some((frames, None))) => code::name(
                l,
                &frames
                    .iter()
                    .map(|f| Resolved {
                        frame: *f,
                        code: None,
                    })
                    .collect::<Vec<_>>(),
            ),
            _ => Vec::new(),
        }
    }

    /// The exceptions for the errors family (once: it takes them).
    pub(crate) fn take_feed(&mut self) -> Option<ErrorsFeed> {
        self.feed.take()
    }
}

/// An exception a CPython target raised (the python family's details: the first raises of each
/// type and Python stack, and every unhandled one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PythonRaise {
    pub tid: u32,
    pub timestamp_ns: u64,
    /// The type's name (`KeyError`).
    pub exception: String,
    pub message: Option<String>,
    /// The Python stack, innermost first.
    pub frames: Vec<errors::Frame>,
    /// Reported unhandled by the interpreter.
    pub uncaught: bool,
}

/// A detailed raise, as the kernel sent it.
#[derive(Debug)]
struct Record {
    tid: u32,
    timestamp_ns: u64,
    key: RaiseKey,
    message: Option<String>,
    uncaught: bool,
}

/// Detailed raises kept for the errors family (the kernel details the first few of each type
/// and stack, and every unhandled one).
const MAX_RECORDS: usize = 1000;

/// The first details of a raise key.
#[derive(Debug, Default)]
struct Detail {
    message: Option<String>,
    uncaught: u64,
}

pub(crate) struct Python {
    pid: i32,
    run_mode: bool,
    shared: SharedHandle,
    probes: kernel::Probes,
    interp: Option<Interpreter>,
    /// The interpreter object whose layout is written and whose functions are probed.
    prepared: Option<PathBuf>,
    unsupported: Option<String>,
    /// `PY_THREADS` as last written, and every thread seen.
    threads: HashMap<u64, u64>,
    seen: HashSet<u64>,
    /// The executable, when it last changed, and when the target is next looked at.
    exe: Option<PathBuf>,
    exec_at: Instant,
    next_look: Instant,
    details: HashMap<RaiseKey, Detail>,
    type_names: HashMap<u64, String>,
    uncaught_elsewhere: u64,
    records: Vec<Record>,
    counts: [u64; count::SLOTS as usize],
    raises: Option<Vec<(RaiseKey, u64)>>,
    detached: bool,
    /// pymalloc's blocks are tracked (the memory family runs too), the interpreter file whose
    /// probes are attached, the sites read, and whether the budget took the probes down.
    allocations: bool,
    probed_file: Option<InterpreterFile>,
    alloc_sites: Option<Vec<(u64, PySiteStats)>>,
    allocs_detached: bool,
}

impl Python {
    pub(crate) fn new(shared: SharedHandle, allocations: bool) -> Self {
        let now = Instant::now();
        Self {
            pid: 0,
            run_mode: false,
            shared,
            probes: kernel::Probes::default(),
            interp: None,
            prepared: None,
            unsupported: None,
            threads: HashMap::new(),
            seen: HashSet::new(),
            exe: None,
            exec_at: now,
            next_look: now,
            details: HashMap::new(),
            type_names: HashMap::new(),
            uncaught_elsewhere: 0,
            records: Vec::new(),
            counts: [0; count::SLOTS as usize],
            raises: None,
            detached: false,
            allocations,
            probed_file: None,
            alloc_sites: None,
            allocs_detached: false,
        }
    }

    /// Looks for the interpreter in the running target; once found, prepares its file (unless
    /// done already from the `run` command's objects), lists the threads, and names the code
    /// objects of the stacks that came before.
    fn look(&mut self, ebpf: &mut Ebpf) {
        match interp::find(self.pid) {
            Found::None => {}
            Found::Unsupported(why) => {
                if self.unsupported.is_none() {
                    eprintln!("profiler: python: {why}");
                }
                self.unsupported = Some(why);
            }
            Found::Interpreter(found) => {
                if self.prepared.as_ref() != Some(&found.file.path) {
                    self.prepare(ebpf, &found.file);
                }
                self.found(*found);
                self.unsupported = None;
                self.sync_threads(ebpf);
            }
        }
    }

    /// Prepares for the interpreter among the objects of program `exe` (itself and the
    /// libraries it needs), before it runs.
    fn prepare_from(&mut self, ebpf: &mut Ebpf, exe: &std::path::Path) {
        let pid = self.pid;
        let objects: Vec<(PathBuf, PathBuf)> = std::iter::once(exe.to_path_buf())
            .chain(crate::tracee::libs::needed_libraries(exe))
            .map(|p| (p.clone(), crate::tracee::host_path(pid, &p)))
            .collect();
        self.prepare_among(ebpf, objects.into_iter());
    }

    /// Prepares for the first interpreter among `objects` (path, path to open).
    fn prepare_among(
        &mut self,
        ebpf: &mut Ebpf,
        objects: impl Iterator<Item = (PathBuf, PathBuf)>,
    ) {
        for (path, open) in objects {
            if self.prepared.as_ref() == Some(&path) {
                return;
            }
            match interp::inspect_file(&path, &open) {
                FileFound::None => {}
                FileFound::Unsupported(why) => self.unsupported = Some(why),
                FileFound::Interpreter(file) => {
                    self.prepare(ebpf, &file);
                    return;
                }
            }
        }
    }

    /// The interpreter is found in the running target: the stacks that came before are named
    /// now.
    fn found(&mut self, found: Interpreter) {
        let mut shared = self.shared.lock().expect("python state");
        let Shared { stacks, codes, .. } = &mut *shared;
        for (frames, resolved) in stacks.values_mut().filter(|s| s.1.is_none()) {
            *resolved = Some(codes.resolve(
                &Process(self.pid),
                &found.file.layout,
                found.code_type,
                frames,
            ));
        }
        drop(shared);
        self.interp = Some(found);
    }

    /// Writes the walk's layout and probes the exceptions of interpreter object `file` (which
    /// the target maps, or will once the `run` command executes).
    fn prepare(&mut self, ebpf: &mut Ebpf, file: &InterpreterFile) {
        if let Err(e) = kernel::write_config(ebpf, file.layout.config()) {
            eprintln!("profiler: python: cannot configure the walk: {e:#}");
            return;
        }
        self.shared.lock().expect("python state").layout = Some(file.layout);
        if !self.detached
            && let Err(e) = self.probes.attach(ebpf, file, self.pid as u32)
        {
            eprintln!("profiler: python: {e:#}");
        }
        if self.allocations
            && !self.allocs_detached
            && let Err(e) = self.probes.attach_allocs(ebpf, file, self.pid as u32)
        {
            eprintln!("profiler: python: {e:#}");
        }
        self.prepared = Some(file.path.clone());
        self.probed_file = Some(file.clone());
    }

    /// Brings `PY_THREADS` in step with the interpreter's list of thread states.
    fn sync_threads(&mut self, ebpf: &mut Ebpf) {
        let Some(interp) = &self.interp else { return };
        let now: HashMap<u64, u64> = interp::thread_states(&Process(self.pid), interp, MAX_THREADS)
            .into_iter()
            .collect();
        if now == self.threads {
            return;
        }
        if kernel::sync_threads(ebpf, &self.threads, &now).is_ok() {
            self.seen.extend(now.keys());
            self.threads = now;
        }
    }

    fn type_name(&mut self, addr: u64) -> String {
        if addr == 0 {
            return "?".into();
        }
        let pid = self.pid;
        self.type_names
            .entry(addr)
            .or_insert_with(|| {
                interp::type_name(&Process(pid), addr)
                    .unwrap_or_else(|| format!("<type {addr:#x}>"))
            })
            .clone()
    }

    /// Reads the stacks the kernel stored whose event was lost, and the code objects of those
    /// that came before the interpreter was found.
    fn read_missing(&mut self, ebpf: &Ebpf) {
        let missing = {
            let shared = self.shared.lock().expect("python state");
            kernel::read_stacks(ebpf, |h| shared.stacks.contains_key(&h)).unwrap_or_default()
        };
        for (hash, frames) in missing {
            self.learn(hash, frames);
        }
        let Some(interp) = &self.interp else { return };
        let mut shared = self.shared.lock().expect("python state");
        let Shared { stacks, codes, .. } = &mut *shared;
        for (frames, resolved) in stacks.values_mut().filter(|s| s.1.is_none()) {
            *resolved = Some(codes.resolve(
                &Process(self.pid),
                &interp.file.layout,
                interp.code_type,
                frames,
            ));
        }
    }

    /// What the exception probes and the walks cost, and what pymalloc's probes cost.
    /// What the exception probes (and the Python walks) and pymalloc's probes cost: each probe
    /// hit at the calibrated price of its instruction's class (`model`), an allocation's
    /// return probe, and each walk and frame at their estimates.
    fn loads(&self, model: &CostModel) -> [ProbeLoad; 2] {
        let c = &self.counts;
        let raises = c[count::RAISES as usize];
        let (allocs, frees) = (c[count::ALLOCS as usize], c[count::FREE_CALLS as usize]);
        let entry = |p: Option<&interp::Probed>| match p {
            Some(p) if !p.emulated => model.single_stepped_entry_ns,
            _ => model.emulated_entry_ns,
        };
        let file = self.probed_file.as_ref();
        let raise = entry(file.and_then(|f| f.raise.as_ref())) + RAISE_NS;
        // An allocation's return probe, where its entry is single-stepped, was measured to cost
        // about another single step (BENCHMARKS.md, "Python frames": the pair of an allocation
        // and its free at twice the two entries' price).
        let malloc = file.and_then(|f| f.allocators.first().map(|a| &a.entry));
        let returned = if malloc.is_some_and(|p| !p.emulated) {
            model.single_stepped_entry_ns
        } else {
            model.return_ns
        };
        let alloc = entry(malloc) + returned + RAISE_NS;
        let free = entry(file.and_then(|f| f.free.as_ref()));
        [
            ProbeLoad {
                hits: raises,
                cost_ns: raises as f64 * raise
                    + c[count::WALKS as usize] as f64 * WALK_NS
                    + c[count::FRAMES as usize] as f64 * FRAME_NS,
            },
            ProbeLoad {
                hits: allocs + frees,
                cost_ns: allocs as f64 * alloc + frees as f64 * free,
            },
        ]
    }

    fn load(&self, model: &CostModel) -> ProbeLoad {
        let [mut a, b] = self.loads(model);
        a += b;
        a
    }
}

impl Family for Python {
    fn id(&self) -> FamilyId {
        FamilyId::Python
    }

    fn priced(&self) -> bool {
        true
    }

    fn note(&self) -> Option<String> {
        Some(match (&self.interp, &self.unsupported) {
            (Some(i), _) => format!(
                "CPython {} in {} (offsets: {}); {} exception probe(s)",
                i.file.version,
                i.file.path.display(),
                i.file.layout.source,
                self.probes.attached()
            ),
            (None, Some(why)) => why.clone(),
            (None, None) => "the target runs no CPython interpreter (none was found)".into(),
        })
    }

    fn load_options(&self, options: &mut LoadOptions) {
        options.map_size(maps::PY_THREADS, PY_THREADS_MAX);
        options.map_size(maps::PY_STACKS, PY_STACKS_MAX);
        options.map_size(maps::PY_RAISES, PY_RAISES_MAX);
        options.map_size(maps::PY_LAST_RAISE, PY_THREADS_MAX);
        options.map_size(maps::PY_CODES, PY_CODES_MAX);
        // 3.10's threads are found by their `pthread_t`, the current task's `fs` base.
        let thread = crate::bpf::btf::kernel_member_offset("task_struct", "thread");
        let fsbase = crate::bpf::btf::kernel_member_offset("thread_struct", "fsbase");
        options.global(
            globals::FSBASE_OFFSET,
            if thread == u32::MAX || fsbase == u32::MAX {
                u32::MAX
            } else {
                thread + fsbase
            },
        );
        if self.allocations {
            options.map_size(maps::PY_ALLOC_LIVE, PY_ALLOC_LIVE_MAX);
            options.map_size(maps::PY_ALLOC_PENDING, PY_THREADS_MAX);
            options.map_size(maps::PY_ALLOC_SITES, PY_ALLOC_SITES_MAX);
        }
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        self.pid = ctx.pid;
        self.run_mode = ctx.run_mode;
        self.probes = kernel::Probes::load(ebpf)?;
        self.exe = std::fs::read_link(format!("/proc/{}/exe", ctx.pid)).ok();
        if ctx.run_mode {
            // The command's objects, before it runs: an interpreter among them is probed now,
            // so that no raise of its first milliseconds is missed (the thread list waits for
            // the interpreter to run).
            self.prepare_among(
                ebpf,
                ctx.modules
                    .iter()
                    .map(|m| (m.path.clone(), m.open_path.clone())),
            );
        } else {
            self.look(ebpf);
        }
        Ok(self.probes.attached())
    }

    fn on_fast_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.interp.is_some() {
            self.sync_threads(ebpf);
            return;
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok();
        if exe != self.exe {
            self.exe = exe;
            self.exec_at = Instant::now();
        }
        // Every tick in the second after an exec (the interpreter starts), then once a second
        // (a program that loads libpython later).
        let now = Instant::now();
        if now.duration_since(self.exec_at) < Duration::from_secs(1) || now >= self.next_look {
            self.next_look = now + LOOK_EVERY;
            self.look(ebpf);
        }
    }

    fn on_exec_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        // The new program's objects, before it runs (a wrapper script's exec of python).
        let Ok(exe) = std::fs::read_link(format!("/proc/{}/exe", self.pid)) else {
            return;
        };
        self.exe = Some(exe.clone());
        self.exec_at = Instant::now();
        if self.interp.is_some() {
            return;
        }
        self.prepare_from(ebpf, &exe);
    }

    fn on_exit_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        // The stacks whose event was lost, and those that came before the interpreter was found,
        // are read while the memory is still there.
        self.read_missing(ebpf);
    }

    fn handles(&self, kind: u16) -> bool {
        [EventKind::PyStack, EventKind::PyRaise, EventKind::PyCode]
            .iter()
            .any(|k| *k as u16 == kind)
    }

    fn on_event(&mut self, kind: u16, bytes: &[u8]) -> Flow {
        if kind == EventKind::PyStack as u16 {
            self.on_stack(bytes);
        } else if kind == EventKind::PyCode as u16 {
            self.on_code(bytes);
        } else {
            self.on_raise(bytes);
        }
        Flow::Continue
    }

    fn budget_units(&mut self, ebpf: &Ebpf, model: &CostModel) -> Vec<f64> {
        if let Ok(c) = kernel::read_counts(ebpf) {
            self.counts = c;
        }
        let [exceptions, allocations] = self.loads(model);
        vec![
            if self.detached {
                0.0
            } else {
                exceptions.cost_ns
            },
            if self.allocs_detached {
                0.0
            } else {
                allocations.cost_ns
            },
        ]
    }

    fn unit_name(&self, unit: usize) -> String {
        if unit == 0 {
            "python exception probes".into()
        } else {
            "python allocation probes (pymalloc)".into()
        }
    }

    fn shed(&mut self, ebpf: &mut Ebpf, unit: usize) -> anyhow::Result<()> {
        if let Ok(h) = kernel::read(ebpf) {
            self.counts = h.counts;
            if unit == 0 {
                self.raises = Some(h.raises);
            }
        }
        if unit == 0 {
            self.probes.detach();
            self.detached = true;
        } else {
            self.probes.detach_allocs();
            self.alloc_sites = kernel::read_alloc_sites(ebpf).ok();
            self.allocs_detached = true;
        }
        Ok(())
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        match kernel::read(ebpf) {
            Ok(h) => {
                self.counts = h.counts;
                if !self.detached {
                    self.raises = Some(h.raises);
                }
            }
            Err(e) => warnings.push(format!("python: cannot read the maps: {e:#}")),
        }
        if self.allocations && !self.allocs_detached {
            match kernel::read_alloc_sites(ebpf) {
                Ok(sites) => self.alloc_sites = Some(sites),
                Err(e) => warnings.push(format!("python: cannot read the allocation sites: {e:#}")),
            }
        }
        // Stacks whose event was lost: their code objects are read now, if still there.
        self.read_missing(ebpf);
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        self.probes.detach_allocs();
        self.probes.detach();
    }

    fn probe_load(&self, model: &CostModel) -> ProbeLoad {
        self.load(model)
    }

    fn report(&mut self, report: &mut Report, _ctx: &mut ReportContext<'_>) {
        let raises = self.raises.take().unwrap_or_default();
        let mut sites = self.sites(&raises);
        self.feed_errors(&sites);
        let dropped = sites.len().saturating_sub(MAX_SITES);
        sites.truncate(MAX_SITES);
        let c = self.counts;
        let (distinct_stacks, code_objects) = {
            let s = self.shared.lock().expect("python state");
            (s.stacks.len(), s.codes.len())
        };
        let probe = |p: &Option<interp::Probed>| p.as_ref().map(section::probe_site);
        let allocations = self.alloc_section();
        report.python = Some(PythonSection {
            interpreter: self
                .interp
                .as_ref()
                .map(|i| &i.file)
                .map(|f| InterpreterInfo {
                    path: f.path.display().to_string(),
                    version: f.version.clone(),
                    offsets: f.layout.source.into(),
                    raise_probe: probe(&f.raise),
                    uncaught_probes: [&f.display, &f.display_internal]
                        .into_iter()
                        .filter_map(probe)
                        .collect(),
                }),
            unsupported: self.unsupported.clone(),
            threads: self.seen.len(),
            walks: WalkStats {
                stacks: c[count::WALKS as usize],
                frames: c[count::FRAMES as usize],
                depth_cut: c[count::DEPTH_CUT as usize],
                read_failed: c[count::READ_FAILED as usize],
                samples_without_thread_state: c[count::NO_THREAD_STATE as usize],
                distinct_stacks,
                code_objects,
                stack_map_full: c[count::STACK_MAP_FULL as usize],
            },
            exceptions: ExceptionStats {
                raised: c[count::RAISES as usize],
                uncaught: c[count::UNCAUGHT as usize],
                sites,
                sites_dropped: dropped,
                map_full: c[count::RAISE_MAP_FULL as usize],
                events_lost: c[count::EVENTS_LOST as usize],
                detached: self.detached,
            },
            allocations,
        });
    }
}

/// The family's block of the printed summary (see `families::summary`).
pub(crate) fn summary_block(report: &Report, out: &mut String) {
    if let Some(p) = &report.python {
        section::summary(out, p);
    }
}
