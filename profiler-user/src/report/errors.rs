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

/// The `errors` section of the report.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ErrorsSection {
    /// Errors seen (benign failures excluded), including those dropped from `events`.
    pub total: u64,
    /// The most recent errors, oldest first, at most the configured bound.
    pub events: Vec<ErrorEvent>,
    /// Errors left out of `events` because of the bound.
    pub dropped: u64,
    /// Per matched pattern, most frequent first.
    pub patterns: Vec<PatternStat>,
    pub by_category: BTreeMap<String, u64>,
    pub by_severity: BTreeMap<String, u64>,
    /// Expected syscall failures per (syscall, errno); hidden from the text summary.
    pub benign: Vec<BenignCount>,
    /// Signals that a handler caught (not fatal), per signal.
    pub benign_signals: Vec<SignalCount>,
    /// Every failed syscall of the target, benign or not, counted exactly in the kernel per
    /// (syscall, errno), most frequent first. `events` carries the details of at most 64 of each
    /// kind, and none of EAGAIN, EINTR and EINPROGRESS, which are only counted.
    #[serde(default)]
    pub syscall_failures: Vec<FailureCount>,
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
    pub count: u64,
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
    pub count: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SignalCount {
    pub signal: String,
    pub count: u64,
}
