//! The `errors` section: classified error events, pattern statistics and exact failure counts,
//! and the vocabulary types (category, severity, source) the pattern database shares with it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What area an error belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Category {
    InputValidation,
    ModelLoading,
    Inference,
    Memory,
    Network,
    System,
    Unknown,
}

impl Category {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Category::InputValidation => "input_validation",
            Category::ModelLoading => "model_loading",
            Category::Inference => "inference",
            Category::Memory => "memory",
            Category::Network => "network",
            Category::System => "system",
            Category::Unknown => "unknown",
        }
    }
}

/// How bad an error is; ordered from least to most severe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Severity {
    Low,
    Medium,
    High,
    Critical,
}

impl Severity {
    /// Its colour in the text summary and the live view: the HTML report's dark-theme colour
    /// (page.css: #ff5c8a, #ff8a4c, #f0c04a, #5ccf7a) as the nearest xterm-256 colour, so a
    /// severity reads the same in all three.
    pub(crate) fn ansi256(self) -> u8 {
        match self {
            Severity::Critical => 204,
            Severity::High => 209,
            Severity::Medium => 221,
            Severity::Low => 77,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The level of an error log line. `critical` covers CRITICAL/CRIT, `fatal` covers
/// FATAL/PANIC/EMERG/ALERT, `error` covers ERROR/ERR/SEVERE and glog `E` lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Level {
    Error,
    Critical,
    Fatal,
}

impl Level {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Critical => "critical",
            Level::Fatal => "fatal",
        }
    }
}

/// Where an error event came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Source {
    Syscall,
    Signal,
    Output,
    Exit,
    /// An exception a CPython target raised (the python family's probe), caught or not.
    PythonException,
    /// A CUDA call that returned an error (the gpu family's probes).
    Cuda,
}

impl Source {
    pub(crate) const ALL: [Source; 6] = [
        Source::Syscall,
        Source::Output,
        Source::Signal,
        Source::Exit,
        Source::PythonException,
        Source::Cuda,
    ];

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Source::Syscall => "syscall",
            Source::Signal => "signal",
            Source::Output => "output",
            Source::Exit => "exit",
            Source::PythonException => "python_exception",
            Source::Cuda => "cuda",
        }
    }
}

/// One frame of a printed stack trace (Python, Rust, Go, Java).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Frame {
    pub file: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub line: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub function: Option<String>,
    /// The source line Python prints under the frame.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub code: Option<String>,
}

/// An earlier exception of a chain ("During handling of the above exception...", Java
/// "Caused by:"), or a sub-exception of a Python exception group.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ChainedException {
    pub exception: String,
    pub message: String,
}

/// The `errors` section of the report. Its counts are of every failure, not of the detailed
/// ones alone: a failed syscall counts from the kernel's exact count of its kind (see
/// `analyze::counts`), and a failure with its consequences (a traceback, the exit it ends in)
/// counts once, as one incident (see `analyze::incident`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorsSection {
    /// Incidents (benign failures excluded): every failed syscall that is an error, and every
    /// other error event, less those that are the consequence of another.
    pub total: u64,
    /// Whether every count of the section is exact: false when the failures of some kind that
    /// were not detailed were split over several classes (patterns, benign or not) by the
    /// examples of the kind; the patterns concerned say so too.
    #[serde(default)]
    pub exact: bool,
    /// The most recent detailed errors, oldest first, at most the configured bound: examples,
    /// with their incident links.
    pub events: Vec<ErrorEvent>,
    /// Detailed errors left out of `events` because of the bound.
    pub dropped: u64,
    /// Per matched pattern, most frequent first.
    pub patterns: Vec<PatternStat>,
    /// Incidents by their root's category.
    pub by_category: BTreeMap<String, u64>,
    /// Incidents by the highest severity among their events.
    pub by_severity: BTreeMap<String, u64>,
    /// Error events by source (`syscall`, `output`, `signal`, `exit`), each counted, whether
    /// root or consequence: failed syscalls exactly from the kernel's counts.
    #[serde(default)]
    pub by_source: BTreeMap<String, u64>,
    /// Expected syscall failures per (syscall, errno, benign pattern), counted exactly; hidden
    /// from the text summary.
    pub benign: Vec<BenignCount>,
    /// Signals that a handler caught (not fatal), per signal.
    pub benign_signals: Vec<SignalCount>,
    /// Every failed syscall of the target, benign or not, counted exactly in the kernel per
    /// (syscall, errno), most frequent first. `events` carries the details of the first 256 of
    /// each kind and then at most 16 a second, and none of EAGAIN, EINTR and EINPROGRESS, which
    /// are only counted.
    #[serde(default)]
    pub syscall_failures: Vec<FailureCount>,
    /// Every exception a CPython target raised, counted exactly per (type, raising line) by the
    /// python family, caught or not, classified as a printed one would be, most raised first.
    /// `events` carries the first raises of each as `python_exception` examples. Caught ones
    /// are handled by the program: they are no incidents (`total`) and their examples are
    /// `low`; an unhandled one is the incident of the traceback the interpreter prints.
    #[serde(default)]
    pub python_exceptions: Vec<PythonExceptionCount>,
}

/// Exact count of one exception type raised at one line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PythonExceptionCount {
    pub exception: String,
    /// The innermost Python frame of the raise.
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    pub raised: u64,
    /// Of them, reported unhandled by the interpreter.
    pub uncaught: u64,
    /// The pattern its first message matched (null: the fallback classified it).
    pub pattern: Option<String>,
    pub category: Category,
    pub severity: Severity,
}

/// Exact count of one kind of syscall failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FailureCount {
    pub syscall: String,
    /// The errno name, e.g. "ENOENT".
    pub errno: String,
    pub count: u64,
}

/// One error.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorEvent {
    /// Unique in the report; `caused_by` and `led_to` name events by it.
    #[serde(default)]
    pub id: u64,
    /// The root cause of the incident this event is a consequence of (None: it is a root).
    #[serde(default)]
    pub caused_by: Option<u64>,
    /// For a root: the events of its incident that it led to, in the order they were grouped.
    #[serde(default)]
    pub led_to: Vec<u64>,
    pub error_type: String,
    pub category: Category,
    pub severity: Severity,
    /// The matched pattern's id, or null when the fallback classified it.
    pub pattern: Option<String>,
    pub description: Option<String>,
    pub message: String,
    pub solutions: Vec<String>,
    pub prevention: Vec<String>,
    /// Seconds since profiling started.
    pub timestamp: f64,
    pub tid: u32,
    /// The process of thread `tid`: the target's pid, or one of its children's (see the
    /// report's `processes`). 0 when unknown.
    #[serde(default)]
    pub pid: u32,
    /// That process's command line, sanitized (as `processes[].command`); empty when unknown.
    #[serde(default)]
    pub command: Vec<String>,
    pub source: Source,
    pub context: ErrorContext,
}

/// What is known around an error. `syscall`, `errno`, `path`, `arg`, `signal`, `fault_addr`,
/// `exception`, `frames`, `lines`, `stack`, `function` and `preceding` are always present
/// (null or empty when unknown); the other fields only when known.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub(crate) struct ErrorContext {
    pub syscall: Option<String>,
    /// Errno name (`ENOENT`), also when inferred from an error message.
    pub errno: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno_code: Option<i32>,
    /// The file path: a path syscall's argument, or a path named in an error message.
    pub path: Option<String>,
    /// A non-path syscall argument, e.g. the address of connect.
    pub arg: Option<String>,
    /// open(2) flags, `O_RDONLY|O_CLOEXEC`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flags: Option<String>,
    pub signal: Option<String>,
    /// `si_code` name and meaning, `SEGV_MAPERR (address not mapped)`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_code: Option<String>,
    /// Hexadecimal, `0x0`.
    pub fault_addr: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub core_dumped: Option<bool>,
    /// A `python_exception`: whether the program handled it (false: the interpreter reported
    /// it unhandled).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub caught: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    pub exception: Option<String>,
    /// Earlier exceptions of a chain, oldest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<ChainedException>,
    /// Frames of a printed traceback or panic, outermost first as printed.
    pub frames: Vec<Frame>,
    /// What the output grouping recognised (`python_traceback`, `rust_panic`, `log`, ...).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Log level of an output error (`error`, `critical`, `fatal`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub level: Option<String>,
    /// Thread name printed by a panic or Java exception.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thread: Option<String>,
    /// Source location printed by a Rust panic.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// The raw output lines of the error, sanitized.
    pub lines: Vec<String>,
    /// Symbolized user stack, innermost first.
    pub stack: Vec<String>,
    /// The traced function that was running.
    pub function: Option<String>,
    /// Short summaries of what the process did just before, oldest first.
    pub preceding: Vec<String>,
}

/// How one pattern occurred over the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct PatternStat {
    pub id: String,
    pub category: Category,
    pub severity: Severity,
    /// Incidents with an event of the pattern (an incident counts once, however many).
    pub count: u64,
    /// Events of the pattern: every failed syscall (exactly), printed error, signal and exit.
    #[serde(default)]
    pub occurrences: u64,
    /// Whether `count` and `occurrences` are exact: false when failures that were not detailed
    /// were split between this pattern and others by the examples of their kind.
    #[serde(default)]
    pub exact: bool,
    pub first_seen: f64,
    pub last_seen: f64,
    pub trend: Trend,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Trend {
    Increasing,
    Stable,
    Decreasing,
    Single,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BenignCount {
    pub syscall: String,
    /// Errno name.
    pub errno: String,
    /// The benign pattern they matched.
    #[serde(default)]
    pub pattern: String,
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignalCount {
    pub signal: String,
    pub count: u64,
}
