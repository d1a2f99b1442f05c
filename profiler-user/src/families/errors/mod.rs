//! The `errors` family: failed syscalls (with the argument that explains them), fatal signals,
//! OOM kills, the exit status and what the target prints, classified against the pattern
//! database. `kernel.rs` attaches the tracepoints and decodes their records; `analyze/` turns
//! them into the `errors` section.

pub(crate) mod analyze;
pub(crate) mod kernel;
#[cfg(test)]
mod live_tests;

use std::collections::{BTreeMap, HashMap, hash_map::Entry};

use aya::Ebpf;
use profiler_common::{errors::SOCK_ERR_OFFSET_GLOBAL, event::EventKind};

use crate::{
    bpf::{LoadOptions, btf},
    clock::monotonic_ns,
    family::{Family, Flow, LivePace, ReportContext, TargetContext, TickContext},
    level::FamilyId,
    report::{Frame, ProcessEntry, Report},
};
use analyze::{
    AnalyzerOptions, CudaFailureEvent, ErrorAnalyzer, ErrorsSection, ExitEvent, FailureSeries,
    OomKill, OutputChunk, PatternDb, SignalEvent, SyscallFailure, counts::Kind,
};
use kernel::{Links, MAX_OUTPUT_BYTES, Raw};

use crate::{
    families::{
        gpu::{
            errors::{CudaCallFailure, ErrorsFeed as CudaFeed},
            section::charged,
        },
        python::{ErrorsFeed, SharedHandle},
    },
    report::errors::{Frame as ErrFrame, PythonExceptionCount},
};

/// The family's runtime: gathers records while profiling, analyzes them at the end.
pub(crate) struct Errors {
    db: Option<PatternDb>,
    raw: Vec<Raw>,
    output_bytes: usize,
    output_dropped: u64,
    /// The kernel's exact failure counts, read on every tick and once more at the end.
    series: FailureSeries,
    /// User stacks of the errors, read at the end: stack id -> addresses.
    stacks: HashMap<u32, Vec<u64>>,
    links: Links,
    /// Which `sys_exit` program runs, and why (empty until attached).
    sys_exit: String,
    /// The process of each thread seen (tid -> pid), from the records' headers: the target's
    /// and its followed children's. Thread ids are unique system-wide while alive.
    pids: HashMap<u32, u32>,
    /// The target's pid: only its stacks are symbolized (with its mappings).
    target: u32,
    /// The python family's exceptions, where it runs.
    python: Option<SharedHandle>,
    /// The gpu family's failed CUDA calls, where it runs.
    cuda: Option<CudaFeed>,
    /// The live view's last snapshot, and when the next one may be made.
    live_pace: LivePace<ErrorsSection>,
}

/// What the analyzer is fed: what the family gathered, taken by `report`, copied by `live`.
struct Input {
    db: PatternDb,
    /// The kernel's failure counts over the run.
    series: FailureSeries,
    /// The records, in time order.
    raw: Vec<Raw>,
    /// The python family's exceptions (none in the live view).
    python: ErrorsFeed,
    /// The gpu family's failed CUDA calls, in time order (none in the live view).
    cuda: Vec<CudaCallFailure>,
}

impl Errors {
    pub(crate) fn new(db: PatternDb, python: Option<SharedHandle>, cuda: Option<CudaFeed>) -> Self {
        Self {
            python,
            cuda,
            db: Some(db),
            raw: Vec::new(),
            output_bytes: 0,
            output_dropped: 0,
            series: FailureSeries::default(),
            stacks: HashMap::new(),
            links: Links::default(),
            sys_exit: String::new(),
            pids: HashMap::new(),
            target: 0,
            live_pace: LivePace::default(),
        }
    }
}

/// Most frames of a user stack kept with an error.
const STACK_FRAMES: usize = 16;

impl Family for Errors {
    fn id(&self) -> FamilyId {
        FamilyId::Errors
    }

    fn load_options(&self, options: &mut LoadOptions) {
        // Where the kernel keeps a socket's error, so that a non-blocking connect that fails
        // later is reported with it (u32::MAX: unknown, not reported).
        let offset = btf::kernel_member_offset("sock", "sk_err");
        options.global(SOCK_ERR_OFFSET_GLOBAL, offset);
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        self.target = ctx.pid as u32;
        (self.links, self.sys_exit) = kernel::attach(ebpf)?;
        // Nothing has failed yet: the counts start from zero here.
        self.series.start(monotonic_ns());
        Ok(self.links.count())
    }

    fn note(&self) -> Option<String> {
        (!self.sys_exit.is_empty()).then(|| {
            format!(
                "{}; signal_deliver (with the user stack of fault and fatal signals, and the \
                 syscalls a handler interrupts: EINTR); inet_sock_set_state (non-blocking \
                 connects that fail after EINPROGRESS); \
                 oom/mark_victim; every syscall of the system takes the kernel's syscall-tracing \
                 path; covers the target and the child processes the process family follows \
                 (each event names its pid)",
                self.sys_exit
            )
        })
    }

    fn handles(&self, kind: u16) -> bool {
        [
            EventKind::SyscallError,
            EventKind::Signal,
            EventKind::Output,
            EventKind::OomKill,
        ]
        .iter()
        .any(|k| *k as u16 == kind)
    }

    fn on_event(&mut self, kind: u16, bytes: &[u8]) -> Flow {
        let Some(raw) = kernel::decode(kind, bytes) else {
            return Flow::Continue;
        };
        if let Some((tid, pid)) = kernel::ids(bytes) {
            self.pids.insert(tid, pid);
        }
        if let Raw::Output { bytes, .. } = &raw {
            if self.output_bytes + bytes.len() > MAX_OUTPUT_BYTES {
                self.output_dropped += bytes.len() as u64;
                return Flow::Continue;
            }
            self.output_bytes += bytes.len();
        }
        self.raw.push(raw);
        Flow::Continue
    }

    /// Reads the failure counts: how they grow over the run gives each kind's trend.
    fn on_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.links.count() == 0 {
            return;
        }
        if let Ok(counts) = kernel::read_failures(ebpf) {
            self.series.record(monotonic_ns(), &counts);
        }
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        warnings.extend(kernel::eintr_not_counted(&self.links));
        // The final counts: the programs stopped counting at the end of the window.
        match kernel::read_failures(ebpf) {
            Ok(counts) => self.series.record(monotonic_ns(), &counts),
            Err(e) => warnings.push(format!("could not read the syscall failure counts: {e:#}")),
        }
        read_stacks(ebpf, &self.raw, &mut self.stacks);
        if self.output_dropped > 0 {
            warnings.push(format!(
                "{} bytes of the target's output were not kept (more than {} MiB)",
                self.output_dropped,
                MAX_OUTPUT_BYTES >> 20
            ));
        }
    }

    fn detach(&mut self, ebpf: &mut Ebpf) {
        kernel::detach(ebpf, std::mem::take(&mut self.links));
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let Some(input) = self.take_input() else {
            return;
        };
        let section = self.section(input, &report.processes, ctx);
        report.errors = Some(section);
    }

    /// The incidents so far, from the kernel's counts read now and copies of the records: the
    /// family keeps its own for the report. The stacks of new records are read into the
    /// family's cache, which `harvest` reads only what is missing from: the kernel never
    /// replaces the stack of an id (no `BPF_F_REUSE_STACKID`), so a stack read now is the one
    /// `harvest` would read. Nothing is printed, no warning pushed.
    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        if self.links.count() == 0 {
            return;
        }
        let mut pace = std::mem::take(&mut self.live_pace);
        let section = pace.snapshot(monotonic_ns(), monotonic_ns, || {
            // The counts as they are now; unreadable, those of the last tick.
            let counts = kernel::read_failures(ebpf).ok();
            self.read_live_stacks(ebpf);
            self.live_section(counts, monotonic_ns(), &report.processes, ctx)
        });
        self.live_pace = pace;
        if section.is_some() {
            report.errors = section;
        }
    }
}

impl Errors {
    /// What the report analyzes: everything the family gathered, taken (it reports once), and
    /// the python family's exceptions. None once taken.
    fn take_input(&mut self) -> Option<Input> {
        let db = self.db.take()?;
        let mut raw = std::mem::take(&mut self.raw);
        raw.sort_by_key(Raw::timestamp);
        let python = self
            .python
            .as_ref()
            .and_then(|p| p.lock().expect("python state").take_feed())
            .unwrap_or_default();
        let mut cuda: Vec<CudaCallFailure> = self
            .cuda
            .as_ref()
            .map(|c| std::mem::take(&mut *c.lock().expect("cuda failures")))
            .unwrap_or_default();
        cuda.sort_by_key(|c| c.timestamp_ns);
        Some(Input {
            db,
            series: std::mem::take(&mut self.series),
            raw,
            python,
            cuda,
        })
    }

    /// What the live view analyzes: copies of the family's records (in time order) and of its
    /// failure counts, to which `counts` (read from the kernel at `now_ns`) is added as their
    /// latest point. Python's exceptions are left out: the python family hands them over once,
    /// at the end. None once the family has reported.
    fn live_input(&self, counts: Option<BTreeMap<Kind, u64>>, now_ns: u64) -> Option<Input> {
        let db = self.db.clone()?;
        let mut series = self.series.clone();
        if let Some(counts) = &counts {
            series.record(now_ns, counts);
        }
        let mut raw = self.raw.clone();
        raw.sort_by_key(Raw::timestamp);
        Some(Input {
            db,
            series,
            raw,
            python: ErrorsFeed::default(),
            cuda: Vec::new(),
        })
    }

    /// Reads the user stacks of the records that the cache lacks; one that cannot be read is
    /// left for `harvest` to read.
    fn read_live_stacks(&mut self, ebpf: &Ebpf) {
        for id in self.raw.iter().filter_map(Raw::stack_id) {
            if let Entry::Vacant(entry) = self.stacks.entry(id) {
                let ips = kernel::read_stack(ebpf, id);
                if !ips.is_empty() {
                    entry.insert(ips);
                }
            }
        }
    }

    /// The errors section of the records so far, with the kernel's failure counts `counts`
    /// read at `now_ns` (see [`Self::live_input`]), analyzed as `report` does; the family is
    /// left as it was.
    fn live_section(
        &self,
        counts: Option<BTreeMap<Kind, u64>>,
        now_ns: u64,
        processes: &[ProcessEntry],
        ctx: &mut ReportContext<'_>,
    ) -> Option<ErrorsSection> {
        let input = self.live_input(counts, now_ns)?;
        Some(self.section(input, processes, ctx))
    }

    /// The errors section of `input`: the one analysis of `report` and `live`. `processes`: the
    /// report's (the process family reports first), which name each event's command.
    fn section(
        &self,
        input: Input,
        processes: &[ProcessEntry],
        ctx: &mut ReportContext<'_>,
    ) -> ErrorsSection {
        let Input {
            db,
            series,
            raw,
            python: feed,
            cuda,
        } = input;
        // The failed CUDA calls, symbolized (their frames' addresses are return addresses) and
        // charged to the first frame outside the CUDA libraries and their wrappers.
        let cuda: Vec<CudaFailureEvent> = cuda
            .into_iter()
            .map(|c| {
                let frames: Vec<_> = c
                    .stack
                    .iter()
                    .take(STACK_FRAMES)
                    .map(|ip| ctx.symbolizer.frame(ctx.maps, ip.saturating_sub(1)))
                    .collect();
                // The function the gpu section charges the same call to.
                let function = Some(charged(&frames)).filter(|f| f != "??");
                CudaFailureEvent {
                    tid: c.tid,
                    timestamp_ns: c.timestamp_ns,
                    message: c.message(),
                    stack: frames.iter().map(frame_text).collect(),
                    function,
                }
            })
            .collect();
        let options = AnalyzerOptions {
            start_ns: ctx.start_ktime_ns,
            ..AnalyzerOptions::default()
        };
        let mut analyzer = ErrorAnalyzer::new(db, options);
        let totals = series.totals();
        analyzer.set_failure_series(series);
        let function =
            |func: Option<u32>| func.and_then(|f| ctx.traced_names.get(f as usize).cloned());
        let (stacks, pids, target) = (&self.stacks, &self.pids, self.target);
        // A user stack of thread `tid`, symbolized as the text of its frames (innermost first;
        // empty: none). The mappings are the target's: a child's stack (it may have executed
        // another program) is left out rather than symbolized with them.
        let mut stack = |tid: u32, stack_id: Option<u32>| -> Vec<String> {
            stack_id
                .filter(|_| pids.get(&tid).is_none_or(|pid| *pid == target))
                .and_then(|id| stacks.get(&id))
                .map(|ips| {
                    ips.iter()
                        .take(STACK_FRAMES)
                        .map(|ip| frame_text(&ctx.symbolizer.frame(ctx.maps, *ip)))
                        .collect()
                })
                .unwrap_or_default()
        };
        // A Python stack, as the frames of a printed traceback are (innermost first here).
        let python = self.python.clone();
        let python_frames = |hash: u64| -> Vec<ErrFrame> {
            match (&python, hash) {
                (Some(p), h) if h != 0 => p
                    .lock()
                    .expect("python state")
                    .frames(h)
                    .into_iter()
                    .filter(|f| !f.shim)
                    .map(|f| ErrFrame {
                        file: f.frame.file.unwrap_or_default(),
                        line: f.frame.line,
                        function: Some(f.frame.function),
                        code: None,
                    })
                    .collect(),
                _ => Vec::new(),
            }
        };
        // The exceptions join the records in time order.
        let mut raises = feed.raises.into_iter().peekable();
        let mut cuda = cuda.into_iter().peekable();
        for event in raw {
            while let Some(r) = raises.next_if(|r| r.timestamp_ns <= event.timestamp()) {
                analyzer.on_python_exception(r);
            }
            while let Some(c) = cuda.next_if(|c| c.timestamp_ns <= event.timestamp()) {
                analyzer.on_cuda_failure(c);
            }
            match event {
                Raw::Syscall {
                    tid,
                    ts,
                    syscall,
                    errno,
                    arg,
                    stack_id,
                    func,
                    deferred,
                    python,
                } => {
                    analyzer.on_syscall(SyscallFailure {
                        tid,
                        timestamp_ns: ts,
                        syscall,
                        errno,
                        arg,
                        flags: None,
                        stack: stack(tid, stack_id),
                        function: function(func),
                        deferred,
                        python: python_frames(python),
                    });
                }
                Raw::Signal {
                    tid,
                    ts,
                    signo,
                    code,
                    fault_addr,
                    fatal,
                    stack_id,
                    func,
                    python,
                } => {
                    analyzer.on_signal(SignalEvent {
                        tid,
                        timestamp_ns: ts,
                        signo,
                        code,
                        fault_addr,
                        fatal,
                        stack: stack(tid, stack_id),
                        function: function(func),
                        python: python_frames(python),
                    });
                }
                Raw::Output { tid, ts, fd, bytes } => analyzer.on_output(OutputChunk {
                    tid,
                    timestamp_ns: ts,
                    fd,
                    bytes,
                    stack: Vec::new(),
                    function: None,
                }),
                Raw::Oom { tid, ts, rss_bytes } => analyzer.on_oom_kill(OomKill {
                    tid,
                    timestamp_ns: ts,
                    rss_bytes: Some(rss_bytes),
                }),
            }
        }
        for r in raises {
            analyzer.on_python_exception(r);
        }
        for c in cuda {
            analyzer.on_cuda_failure(c);
        }
        let python_counts: Vec<PythonExceptionCount> = feed
            .sites
            .into_iter()
            .map(|(site, message)| {
                let (pattern, category, severity) =
                    analyzer.classify_exception(&site.exception, message.as_deref());
                PythonExceptionCount {
                    exception: site.exception,
                    function: site.function,
                    file: site.file,
                    line: site.line,
                    raised: site.raised,
                    uncaught: site.uncaught,
                    pattern,
                    category,
                    severity,
                }
            })
            .collect();
        if let Some(status) = ctx.exit_status {
            analyzer.on_exit(ExitEvent {
                timestamp_ns: ctx.end_ktime_ns,
                status,
            });
        }
        let mut section = analyzer.finish(ctx.end_ktime_ns);
        analyze::set_failure_counts(&mut section, &totals);
        analyze::set_python_counts(&mut section, python_counts);
        // Each event's process and its command (the process family reported `processes` first).
        for event in &mut section.events {
            event.pid = self.pids.get(&event.tid).copied().unwrap_or(0);
            if let Some(p) = processes.iter().find(|p| p.pid == event.pid) {
                event.command = p.command.clone();
            }
        }
        section
    }
}

/// The family's block of the printed summary (see `families::summary`).
pub(crate) fn summary_block(report: &Report, out: &mut String) {
    if let Some(errors) = &report.errors {
        out.push('\n');
        for line in analyze::summary_lines(errors) {
            out.push_str(&line);
            out.push('\n');
        }
    }
}

/// Reads the user stack of each of `raw`'s records that `stacks` lacks.
fn read_stacks(ebpf: &Ebpf, raw: &[Raw], stacks: &mut HashMap<u32, Vec<u64>>) {
    for id in raw.iter().filter_map(Raw::stack_id) {
        stacks
            .entry(id)
            .or_insert_with(|| kernel::read_stack(ebpf, id));
    }
}

/// "function (module+0x1a2b)".
fn frame_text(frame: &Frame) -> String {
    format!("{} ({}+{})", frame.function, frame.module, frame.offset)
}
