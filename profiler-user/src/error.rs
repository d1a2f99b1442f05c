//! Errors a user can cause or meet, each shown as one line.

use std::path::PathBuf;

use thiserror::Error;

#[derive(Debug, Error)]
pub(crate) enum ProfilerError {
    #[error("profiler needs root, or the CAP_BPF and CAP_PERFMON capabilities: run it with sudo")]
    NotPrivileged,
    #[error("no such process: {0}")]
    NoSuchProcess(i32),
    #[error("pid {0} is a kernel thread: only user-space processes can be profiled")]
    KernelThread(i32),
    #[error("pid {0} is the profiler itself: it cannot profile itself")]
    Itself(i32),
    #[error("process {0} has already exited")]
    TargetExited(i32),
    #[error("the kernel lacks {what}: {hint}")]
    KernelFeature {
        what: &'static str,
        hint: &'static str,
    },
    #[error("no such command: {0}")]
    NoSuchCommand(String),
    // The io errors are part of the message, not a `source`: the one-line error would
    // otherwise repeat them.
    #[error("cannot start {cmd}: {reason}")]
    Exec { cmd: String, reason: std::io::Error },
    #[error("cannot write the report to {path}: {reason}")]
    ReportPath {
        path: PathBuf,
        reason: std::io::Error,
    },
    #[error("cannot inspect process {pid}: {reason}")]
    Inspect { pid: i32, reason: std::io::Error },
    #[error("interrupted before profiling started")]
    Interrupted,
    #[error("{0}")]
    Spec(String),
}
