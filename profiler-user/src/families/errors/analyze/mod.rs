//! The `errors` analyzer: failed syscalls, signals, OOM kills, the exit status and the
//! target's stdout/stderr become classified, sanitized error events with solutions, plus
//! counts of expected (benign) failures.
//!
//! Pure: the caller feeds decoded kernel events in and takes an [`ErrorsSection`] out.
//! Output bytes are reassembled into lines ([`lines`]), grouped into multi-line errors
//! ([`group`]), matched against the pattern database ([`patterns`]) or classified by the
//! fallback rules ([`classify`]), and every string is passed through [`sanitize()`] before
//! it is stored. Error events are grouped into incidents as they come ([`incident`]); at the
//! end, failed syscalls are counted from the kernel's exact counts, which the caller hands over
//! ([`counts`]), the detailed ones being examples.

pub(crate) mod block;
pub(crate) mod classify;
pub(crate) mod counts;
pub(crate) mod detect;
pub(crate) mod group;
pub(crate) mod incident;
pub(crate) mod input;
pub(crate) mod lines;
pub(crate) mod patterns;
pub(crate) mod sanitize;
pub(crate) mod section;

use crate::{
    linux,
    report::errors::{Category, Level, Severity},
};
use std::collections::VecDeque;

pub(crate) use crate::report::errors::{
    ChainedException, ErrorContext, ErrorEvent, ErrorsSection, Frame, Source,
};
pub(crate) use counts::FailureSeries;
pub(crate) use input::{
    CudaFailureEvent, ExitEvent, OomKill, OutputChunk, PythonRaise, SignalEvent, SyscallFailure,
};
pub(crate) use patterns::{PatternDb, format_table};
pub(crate) use sanitize::sanitize;
pub(crate) use section::{set_failure_counts, set_python_counts, summary_lines};

use classify::Evidence;
use counts::{Class, Observations};
use group::{Block, BlockKind, GroupOptions, Grouper};
use incident::{Incidents, Occurrence};
use lines::{Line, LineAssembler};
use patterns::{Pattern, Subject};
use section::Aggregator;

/// The built-in pattern database, extended by the user's file (`--patterns`) when given.
pub(crate) fn load_patterns(
    user: Option<&std::path::Path>,
) -> Result<PatternDb, crate::error::ProfilerError> {
    let Some(path) = user else {
        return Ok(PatternDb::builtin());
    };
    let contents = std::fs::read_to_string(path).map_err(|e| {
        crate::error::ProfilerError::Spec(format!(
            "cannot read pattern file {}: {e}",
            path.display()
        ))
    })?;
    PatternDb::load(Some((&path.display().to_string(), &contents)))
        .map_err(|e| crate::error::ProfilerError::Spec(format!("invalid pattern file {e}")))
}

/// Summaries of recent activity kept for `preceding`.
const RECENT: usize = 64;

/// Limits and settings of the analyzer.
#[derive(Debug, Clone, Copy)]
pub(crate) struct AnalyzerOptions {
    /// CLOCK_MONOTONIC nanoseconds when profiling started; event timestamps are relative to it.
    pub start_ns: u64,
    /// The most events kept in the section (the most recent ones).
    pub max_events: usize,
    /// The most bytes kept of one output line.
    pub max_line_bytes: usize,
    /// The most lines kept of one multi-line error.
    pub max_block_lines: usize,
    /// How soon a line must follow to continue a multi-line message.
    pub continuation_ns: u64,
    /// How many earlier activities an event lists in `preceding`.
    pub preceding: usize,
    /// Failures of a kind the kernel details before its rate limit (`DETAIL_BURST`).
    pub detail_burst: usize,
}

impl Default for AnalyzerOptions {
    fn default() -> Self {
        Self {
            start_ns: 0,
            max_events: 1000,
            max_line_bytes: 4096,
            max_block_lines: 200,
            continuation_ns: 1_000_000,
            preceding: 5,
            detail_burst: profiler_common::errors::DETAIL_BURST as usize,
        }
    }
}

/// A summary of recent activity, for `preceding`.
#[derive(Debug)]
struct Recent {
    first_ns: u64,
    last_ns: u64,
    text: String,
    count: u64,
}

/// Everything known about one error before classification.
#[derive(Debug, Default)]
struct Candidate {
    source: Option<Source>,
    tid: u32,
    timestamp_ns: u64,
    message: String,
    /// What text patterns are matched against.
    text: String,
    syscall: Option<String>,
    errno: Option<i32>,
    path: Option<String>,
    arg: Option<String>,
    flags: Option<u64>,
    signal: Option<i32>,
    signal_code: Option<String>,
    fault_addr: Option<u64>,
    core_dumped: Option<bool>,
    exit_code: Option<i32>,
    oom: bool,
    block: Option<Block>,
    stack: Vec<String>,
    function: Option<String>,
    /// A raised exception's type and Python frames (a printed one's come with its block).
    exception: Option<String>,
    frames: Vec<Frame>,
    /// A raised exception: whether the program handled it.
    caught: Option<bool>,
}

/// The errors analyzer of one target process.
pub(crate) struct ErrorAnalyzer {
    db: PatternDb,
    opts: AnalyzerOptions,
    lines: LineAssembler,
    grouper: Grouper,
    agg: Aggregator,
    recent: VecDeque<Recent>,
    fatal_signals: Vec<i32>,
    oom_seen: bool,
    /// A fatal SIGKILL waits here for an OOM-kill event that would explain it.
    pending_kill: Option<Candidate>,
    /// The classes of the detailed syscall failures, by kind.
    obs: Observations,
    /// The kernel's exact failure counts over the run (empty: the detailed failures are all).
    series: FailureSeries,
    incidents: Incidents,
    /// The id of the next error event.
    next_id: u64,
}

impl ErrorAnalyzer {
    pub(crate) fn new(db: PatternDb, opts: AnalyzerOptions) -> Self {
        Self {
            db,
            lines: LineAssembler::new(opts.max_line_bytes),
            grouper: Grouper::new(GroupOptions {
                max_lines: opts.max_block_lines,
                continuation_ns: opts.continuation_ns,
            }),
            agg: Aggregator::new(opts.max_events),
            recent: VecDeque::new(),
            fatal_signals: Vec::new(),
            oom_seen: false,
            pending_kill: None,
            obs: Observations::default(),
            series: FailureSeries::default(),
            incidents: Incidents::default(),
            next_id: 0,
            opts,
        }
    }

    /// The kernel's exact failure counts of the run, read on every tick and at the end: the
    /// section counts failed syscalls from them, and the detailed ones become examples.
    pub(crate) fn set_failure_series(&mut self, series: FailureSeries) {
        self.series = series;
    }

    /// A failed syscall.
    pub(crate) fn on_syscall(&mut self, ev: SyscallFailure) {
        let errno_desc = errno_desc(ev.errno);
        let is_path = linux::is_path_syscall(&ev.syscall);
        let mut args = Vec::new();
        if let Some(arg) = &ev.arg {
            args.push(if is_path {
                format!("{arg:?}")
            } else {
                arg.clone()
            });
        }
        if let Some(flags) = ev.flags {
            args.push(linux::open_flags(flags));
        }
        let message = if ev.deferred {
            // connect(2) itself returned EINPROGRESS; the connection failed afterwards.
            format!(
                "{}({}) = -1 EINPROGRESS, then {errno_desc}",
                ev.syscall,
                args.join(", ")
            )
        } else {
            format!("{}({}) = -1 {errno_desc}", ev.syscall, args.join(", "))
        };
        let (path, arg) = if is_path {
            (ev.arg, None)
        } else {
            (None, ev.arg)
        };
        self.process(Candidate {
            source: Some(Source::Syscall),
            tid: ev.tid,
            timestamp_ns: ev.timestamp_ns,
            text: message.clone(),
            message,
            syscall: Some(ev.syscall),
            errno: Some(ev.errno),
            path,
            arg,
            flags: ev.flags,
            stack: ev.stack,
            function: ev.function,
            frames: ev.python,
            ..Candidate::default()
        });
    }

    /// A signal delivered to the target. Non-fatal ones (a handler ran) are only counted.
    pub(crate) fn on_signal(&mut self, ev: SignalEvent) {
        if !ev.fatal {
            self.agg.add_benign_signal(ev.signo);
            let summary = format!("{} handled", linux::signal_name(ev.signo));
            self.remember(ev.timestamp_ns, summary);
            return;
        }
        self.flush_output();
        self.fatal_signals.push(ev.signo);
        if ev.signo == linux::SIGKILL && self.oom_seen {
            return;
        }
        let code = linux::signal_code(ev.signo, ev.code);
        let mut message = format!(
            "{} ({}",
            linux::signal_name(ev.signo),
            linux::signal_text(ev.signo)
        );
        if let Some((name, meaning)) = code {
            message.push_str(&format!(", {name}: {meaning}"));
        }
        message.push(')');
        if let Some(addr) = ev.fault_addr {
            message.push_str(&format!(" at {addr:#x}"));
            if ev.signo == 11 && addr < 4096 {
                message.push_str(" - likely a null pointer dereference");
            }
        }
        let c = Candidate {
            source: Some(Source::Signal),
            tid: ev.tid,
            timestamp_ns: ev.timestamp_ns,
            text: message.clone(),
            message,
            signal: Some(ev.signo),
            signal_code: code.map(|(name, meaning)| format!("{name} ({meaning})")),
            fault_addr: ev.fault_addr,
            stack: ev.stack,
            function: ev.function,
            frames: ev.python,
            ..Candidate::default()
        };
        if ev.signo == linux::SIGKILL {
            self.pending_kill = Some(c);
        } else {
            self.process(c);
        }
    }

    /// The kernel's OOM killer chose the target.
    pub(crate) fn on_oom_kill(&mut self, ev: OomKill) {
        self.flush_output();
        self.oom_seen = true;
        let pending = self.pending_kill.take();
        let mut message = "killed by the kernel OOM killer (SIGKILL)".to_string();
        if let Some(rss) = ev.rss_bytes {
            message.push_str(&format!(", RSS {:.1} MiB", rss as f64 / (1024.0 * 1024.0)));
        }
        let (stack, function) = pending.map(|p| (p.stack, p.function)).unwrap_or_default();
        self.process(Candidate {
            source: Some(Source::Signal),
            tid: ev.tid,
            timestamp_ns: ev.timestamp_ns,
            text: message.clone(),
            message,
            signal: Some(linux::SIGKILL),
            oom: true,
            stack,
            function,
            ..Candidate::default()
        });
    }

    /// The target exited. A non-zero status is an error unless a fatal signal or OOM kill
    /// already reported the same end.
    pub(crate) fn on_exit(&mut self, ev: ExitEvent) {
        self.flush_output();
        let mut c = Candidate {
            source: Some(Source::Exit),
            timestamp_ns: ev.timestamp_ns,
            ..Candidate::default()
        };
        match linux::wait_status(ev.status) {
            linux::WaitStatus::Exited(0) | linux::WaitStatus::Other => return,
            linux::WaitStatus::Exited(code) => {
                c.exit_code = Some(code);
                c.message = format!("exited with status {code}");
            }
            linux::WaitStatus::Signaled {
                signal,
                core_dumped,
            } => {
                let already = self.fatal_signals.contains(&signal)
                    || (signal == linux::SIGKILL && self.oom_seen);
                if already {
                    return;
                }
                c.signal = Some(signal);
                c.core_dumped = Some(core_dumped);
                c.message = format!(
                    "terminated by {} ({}){}",
                    linux::signal_name(signal),
                    linux::signal_text(signal),
                    if core_dumped { ", core dumped" } else { "" }
                );
            }
        }
        c.text = c.message.clone();
        self.process(c);
    }

    /// An exception a CPython target raised: an example of its (type, line), classified as a
    /// printed one would be. A caught one is `low` (the program handled it); neither is
    /// counted here (the python family's counts are exact, see [`set_python_counts`]).
    pub(crate) fn on_python_exception(&mut self, ev: PythonRaise) {
        let message = match &ev.message {
            Some(m) => format!("{}: {m}", ev.exception),
            None => ev.exception.clone(),
        };
        let function = ev.frames.first().and_then(|f| f.function.clone());
        self.process(Candidate {
            source: Some(Source::PythonException),
            tid: ev.tid,
            timestamp_ns: ev.timestamp_ns,
            text: message.clone(),
            message,
            exception: Some(ev.exception),
            frames: ev.frames,
            caught: Some(!ev.uncaught),
            function,
            ..Candidate::default()
        });
    }

    /// A CUDA call that returned an error: classified by its message, which names the result
    /// code (`cudaErrorMemoryAllocation` is a CUDA out of memory).
    pub(crate) fn on_cuda_failure(&mut self, ev: CudaFailureEvent) {
        self.process(Candidate {
            source: Some(Source::Cuda),
            tid: ev.tid,
            timestamp_ns: ev.timestamp_ns,
            text: ev.message.clone(),
            message: ev.message,
            stack: ev.stack,
            function: ev.function,
            ..Candidate::default()
        });
    }

    /// The class of an exception's type and message, for the exact counts.
    pub(crate) fn classify_exception(
        &self,
        exception: &str,
        message: Option<&str>,
    ) -> (Option<String>, Category, Severity) {
        let text = match message {
            Some(m) => format!("{exception}: {m}"),
            None => exception.to_string(),
        };
        let subject = Subject {
            text: &text,
            syscall: None,
            errno: None,
            signal: None,
            exit_code: None,
            path: None,
            exception: Some(exception),
            level: None,
            oom: false,
            syscall_failure: false,
        };
        let evidence = Evidence {
            subject,
            source: Source::PythonException,
            kind: Some(BlockKind::PythonTraceback),
        };
        let pattern = self.db.classify(&subject);
        let (category, severity) = match pattern {
            Some(p) => (p.category, p.severity),
            None => classify::fallback(&evidence),
        };
        (pattern.map(|p| p.id.clone()), category, severity)
    }

    /// Bytes the target wrote to stdout or stderr.
    pub(crate) fn on_output(&mut self, chunk: OutputChunk) {
        let mut lines = Vec::new();
        self.lines.push(&chunk, &mut lines);
        self.group(lines);
    }

    /// Ends the analysis: completes partial output and returns the section, with every kind
    /// of failed syscall counted from the kernel's counts (see [`counts::apportion`]).
    pub(crate) fn finish(mut self, end_ns: u64) -> ErrorsSection {
        self.flush_output();
        if let Some(c) = self.pending_kill.take() {
            self.process(c);
        }
        let start = self.opts.start_ns;
        let mid = start + end_ns.saturating_sub(start) / 2;
        let failures = counts::apportion(
            &self.obs,
            &self.series,
            self.opts.detail_burst,
            mid,
            |syscall, errno| self.classify_kind(syscall, errno),
        );
        self.agg.section(self.seconds(end_ns), start, &failures)
    }

    /// The class of a kind of failure never detailed (EAGAIN, EINTR, EINPROGRESS, or one whose
    /// details were lost): from (syscall, errno) alone, as a detailed one without its argument.
    fn classify_kind(&self, syscall: &str, errno: i32) -> Class {
        let text = format!("{syscall}() = -1 {}", errno_desc(errno));
        let subject = Subject {
            text: &text,
            syscall: Some(syscall),
            errno: Some(errno),
            signal: None,
            exit_code: None,
            path: None,
            exception: None,
            level: None,
            oom: false,
            syscall_failure: true,
        };
        let evidence = Evidence {
            subject,
            source: Source::Syscall,
            kind: None,
        };
        class_of(self.db.classify(&subject), &evidence)
    }

    fn seconds(&self, ns: u64) -> f64 {
        ns.saturating_sub(self.opts.start_ns) as f64 / 1e9
    }

    fn flush_output(&mut self) {
        let mut lines = Vec::new();
        self.lines.flush(&mut lines);
        self.group(lines);
        let mut blocks = Vec::new();
        self.grouper.flush(&mut blocks);
        for b in blocks {
            self.on_block(b);
        }
    }

    fn group(&mut self, lines: Vec<Line>) {
        let mut blocks = Vec::new();
        for line in lines {
            self.grouper.push(line, &mut blocks);
        }
        for b in blocks {
            self.on_block(b);
        }
    }

    fn on_block(&mut self, block: Block) {
        let errno = detect::infer_errno(&block.text);
        // Most output lines are plain and match nothing: their path is only looked for when
        // they mention an errno (here) or match a pattern (in `process`).
        let path = if block.kind != BlockKind::Plain || errno.is_some() {
            detect::extract_path(&block.message).or_else(|| detect::extract_path(&block.text))
        } else {
            None
        };
        let context = block.context.clone();
        let (stack, function) = context
            .map(|c| (c.stack.clone(), c.function.clone()))
            .unwrap_or_default();
        self.process(Candidate {
            source: Some(Source::Output),
            tid: block.tid,
            timestamp_ns: block.timestamp_ns,
            message: block.message.clone(),
            text: block.text.clone(),
            errno,
            path,
            stack,
            function,
            block: Some(block),
            ..Candidate::default()
        });
    }

    fn process(&mut self, c: Candidate) {
        let source = c.source.unwrap_or(Source::Output);
        let block = c.block.as_ref();
        let subject = Subject {
            text: &c.text,
            syscall: c.syscall.as_deref(),
            errno: c.errno,
            signal: c.signal,
            exit_code: c.exit_code,
            path: c.path.as_deref().or(c.arg.as_deref()),
            exception: c
                .exception
                .as_deref()
                .or_else(|| block.and_then(|b| b.exception.as_deref())),
            level: block.and_then(|b| b.level),
            oom: c.oom,
            syscall_failure: source == Source::Syscall,
        };
        // A raised exception is classified as its printed traceback would be.
        let kind = block
            .map(|b| b.kind)
            .or((source == Source::PythonException).then_some(BlockKind::PythonTraceback));
        let evidence = Evidence {
            subject,
            source,
            kind,
        };
        let pattern = self.db.classify(&subject);
        if let (Some(syscall), Some(errno)) = (&c.syscall, c.errno) {
            let class = class_of(pattern, &evidence);
            self.obs.observe(syscall, errno, c.timestamp_ns, class);
        }
        if let (Some(p), Some(_)) = (pattern, &c.syscall)
            && p.benign
        {
            let summary = format!("{} (expected)", sanitize(&c.message));
            self.remember(c.timestamp_ns, summary);
            return;
        }
        let kind = block.map(|b| b.kind);
        if pattern.is_none() && kind == Some(BlockKind::Plain) {
            return;
        }
        let (category, severity) = match pattern {
            Some(p) => (p.category, p.severity),
            None => classify::fallback(&evidence),
        };
        // An exception the program caught is handled: an example, of low severity.
        let severity = if c.caught == Some(true) {
            Severity::Low
        } else {
            severity
        };
        let error_type = sanitize(&classify::error_type(
            &evidence,
            pattern.map(|p| p.id.as_str()),
        ));
        let mut context = ErrorContext {
            syscall: c.syscall.clone(),
            errno: c.errno.map(linux::errno_display),
            errno_code: c.errno,
            path: c
                .path
                .clone()
                .or_else(|| block.and_then(|b| detect::extract_path(&b.text)))
                .as_deref()
                .map(sanitize),
            arg: c.arg.as_deref().map(sanitize),
            flags: c.flags.map(linux::open_flags),
            signal: c.signal.map(linux::signal_name),
            signal_code: c.signal_code.clone(),
            fault_addr: c.fault_addr.map(|a| format!("{a:#x}")),
            core_dumped: c.core_dumped,
            exit_code: c.exit_code,
            stack: c.stack.iter().map(|s| sanitize(s)).collect(),
            function: c.function.as_deref().map(sanitize),
            preceding: self.preceding(c.timestamp_ns),
            exception: c.exception.as_deref().map(sanitize),
            frames: c.frames.iter().map(sanitize_frame).collect(),
            caught: c.caught,
            ..ErrorContext::default()
        };
        if let Some(b) = block {
            context.exception = b.exception.as_deref().map(sanitize);
            context.chain = b
                .chain
                .iter()
                .map(|x| ChainedException {
                    exception: sanitize(&x.exception),
                    message: sanitize(&x.message),
                })
                .collect();
            context.frames = b.frames.iter().map(sanitize_frame).collect();
            context.kind = Some(b.kind.as_str().to_string());
            context.level = b.level.map(|l| l.as_str().to_string());
            context.thread = b.thread.as_deref().map(sanitize);
            context.location = b.location.as_deref().map(sanitize);
            context.lines = sanitize::sanitize_lines(&b.lines);
        }
        let id = self.next_id;
        self.next_id += 1;
        let event = ErrorEvent {
            id,
            caused_by: None,
            led_to: Vec::new(),
            error_type,
            category,
            severity,
            pattern: pattern.map(|p| p.id.clone()),
            description: pattern.and_then(|p| p.description.clone()),
            message: sanitize(&c.message),
            solutions: pattern.map(|p| p.solutions.clone()).unwrap_or_default(),
            prevention: pattern.map(|p| p.prevention.clone()).unwrap_or_default(),
            timestamp: self.seconds(c.timestamp_ns),
            tid: c.tid,
            // Filled in by the family, which knows each thread's process.
            pid: 0,
            command: Vec::new(),
            source,
            context,
        };
        let first_line = event.message.lines().next().unwrap_or_default();
        let summary = format!(
            "[{}] {}: {}",
            event.severity.as_str(),
            event.pattern.as_deref().unwrap_or(&event.error_type),
            truncate(first_line, 100)
        );
        // A caught exception was handled: not part of what led to a later error.
        if c.caught != Some(true) {
            self.remember(c.timestamp_ns, summary);
        }
        let joined = self.incidents.group(&Occurrence {
            id,
            source,
            tid: c.tid,
            timestamp_ns: c.timestamp_ns,
            path: c.path.as_deref().or(c.arg.as_deref()),
            errno: c.errno,
            text: &c.text,
            uncaught: block.is_some_and(uncaught),
            ending: source == Source::Exit || (source == Source::Signal && !c.oom),
            pattern: event.pattern.as_deref(),
            severity: event.severity,
        });
        self.agg.add(event, joined.as_ref());
    }

    /// Records a short, already sanitized summary for later events' `preceding`; a repeat of
    /// the previous summary only bumps its count.
    fn remember(&mut self, timestamp_ns: u64, text: String) {
        if let Some(last) = self.recent.back_mut()
            && last.text == text
        {
            last.count += 1;
            last.last_ns = last.last_ns.max(timestamp_ns);
            return;
        }
        self.recent.push_back(Recent {
            first_ns: timestamp_ns,
            last_ns: timestamp_ns,
            text,
            count: 1,
        });
        if self.recent.len() > RECENT {
            self.recent.pop_front();
        }
    }

    /// The last few distinct summaries that began strictly before `timestamp_ns`, oldest
    /// first, each with its time and how often it repeated.
    fn preceding(&self, timestamp_ns: u64) -> Vec<String> {
        let mut before: Vec<&Recent> = self
            .recent
            .iter()
            .filter(|r| r.first_ns < timestamp_ns)
            .collect();
        before.sort_by_key(|r| r.last_ns);
        let mut picked: Vec<&Recent> = Vec::new();
        for r in before.into_iter().rev() {
            if picked.len() == self.opts.preceding {
                break;
            }
            if !picked.iter().any(|p| p.text == r.text) {
                picked.push(r);
            }
        }
        picked
            .into_iter()
            .rev()
            .map(|r| {
                let mut line = format!("{:.3}s {}", self.seconds(r.first_ns), r.text);
                if r.count > 1 {
                    line.push_str(&format!(
                        " (x{} until {:.3}s)",
                        r.count,
                        self.seconds(r.last_ns)
                    ));
                }
                line
            })
            .collect()
    }
}

/// "ENOENT (No such file or directory)".
fn errno_desc(errno: i32) -> String {
    match linux::errno_text(errno) {
        Some(text) => format!("{} ({text})", linux::errno_display(errno)),
        None => linux::errno_display(errno),
    }
}

/// What a failed syscall that matched `pattern` (or none) counts as.
fn class_of(pattern: Option<&Pattern>, evidence: &Evidence) -> Class {
    match pattern {
        Some(p) if p.benign => Class::Benign(p.id.clone()),
        Some(p) => Class::Error {
            pattern: Some(p.id.clone()),
            category: p.category,
            severity: p.severity,
        },
        None => {
            let (category, severity) = classify::fallback(evidence);
            Class::Error {
                pattern: None,
                category,
                severity,
            }
        }
    }
}

/// Whether a printed error is one a process ends with when nothing catches it (see
/// [`incident`]'s rule 2).
fn uncaught(block: &Block) -> bool {
    match block.kind {
        BlockKind::PythonTraceback
        | BlockKind::PythonFatal
        | BlockKind::JavaException
        | BlockKind::RustPanic
        | BlockKind::GoPanic
        | BlockKind::CppTerminate
        | BlockKind::RuntimeAbort => true,
        BlockKind::LogLine => block.level == Some(Level::Fatal),
        BlockKind::ExceptionLine | BlockKind::Plain => false,
    }
}

fn sanitize_frame(f: &Frame) -> Frame {
    Frame {
        file: sanitize(&f.file),
        line: f.line,
        function: f.function.as_deref().map(sanitize),
        code: f.code.as_deref().map(sanitize),
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        s.chars().take(max.saturating_sub(3)).collect::<String>() + "..."
    }
}

#[cfg(test)]
mod tests;
