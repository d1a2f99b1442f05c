//! Fallback classification of errors no pattern matched, and the `error_type` of an event.
//!
//! Category, first that applies: OOM kill -> memory; GPU words (cuda, cudnn, cublas, nccl,
//! gpu, tensorrt) -> inference; ENOMEM or memory words -> memory; network errnos (ECONN*,
//! ENET*, EHOST*, ETIMEDOUT, EPIPE, EADDR*) or network exception and message words ->
//! network; argument-like exception names (Value, Type, Key, Index, Validation, Decode, Parse)
//! -> input_validation; model/checkpoint/weights together with load/open/missing ->
//! model_loading; any other errno, a signal or an exit status -> system; else unknown.
//!
//! KeyboardInterrupt, SystemExit and CancelledError -> system, low (a stop on request).
//!
//! Severity, first that applies: OOM kill or fatal signal -> critical; runtime abort (glibc
//! heap check) -> critical; ENOMEM, ENOSPC, EDQUOT, EMFILE, ENFILE -> high; GPU or memory
//! category -> high; an uncaught exception, traceback or panic -> high; FATAL/CRITICAL log
//! -> high; ERROR log, standalone exception line, exit status, network errno,
//! EACCES/EPERM -> medium; anything else (other failed syscalls) -> low.

use super::group::BlockKind;
use super::patterns::Subject;
use crate::linux;
use crate::report::errors::{Category, Level, Severity, Source};

/// What the fallback looks at.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Evidence<'a> {
    pub subject: Subject<'a>,
    pub source: Source,
    /// For output events: what the grouping recognised.
    pub kind: Option<BlockKind>,
}

const GPU_WORDS: &[&str] = &["cuda", "cudnn", "cublas", "nccl", "gpu", "tensorrt"];
const MEMORY_WORDS: &[&str] = &[
    "out of memory",
    "cannot allocate",
    "memoryerror",
    "bad_alloc",
];
/// Exceptions that stop a program on request rather than on an error.
const STOP_EXCEPTIONS: &[&str] = &["KeyboardInterrupt", "SystemExit", "CancelledError"];
const NETWORK_WORDS: &[&str] = &[
    "connection",
    "timeout",
    "timed out",
    "socket",
    "http",
    "ssl",
    "network",
    "dns",
    "gaierror",
    "url",
];
const INPUT_WORDS: &[&str] = &[
    "value",
    "type",
    "key",
    "index",
    "validation",
    "decode",
    "parse",
    "argument",
];
const MODEL_WORDS: &[&str] = &["model", "checkpoint", "weights", "tokenizer"];
const LOAD_WORDS: &[&str] = &["load", "open", "missing", "not found", "no such"];

fn has_any(haystack: &str, words: &[&str]) -> bool {
    words.iter().any(|w| haystack.contains(w))
}

fn is_network_errno(errno: i32) -> bool {
    linux::errno_name(errno).is_some_and(|n| {
        n.starts_with("ECONN")
            || n.starts_with("ENET")
            || n.starts_with("EHOST")
            || n.starts_with("EADDR")
            || matches!(n, "ETIMEDOUT" | "EPIPE" | "ENOTCONN" | "ESHUTDOWN")
    })
}

/// Category and severity of an error no pattern matched.
pub(crate) fn fallback(e: &Evidence) -> (Category, Severity) {
    (category(e), severity(e))
}

fn is_stop_exception(s: &Subject) -> bool {
    s.exception
        .map(|x| x.rsplit('.').next().unwrap_or(x))
        .is_some_and(|x| STOP_EXCEPTIONS.contains(&x))
}

fn category(e: &Evidence) -> Category {
    let s = &e.subject;
    if s.oom {
        return Category::Memory;
    }
    if is_stop_exception(s) {
        return Category::System;
    }
    let text = s.text.to_ascii_lowercase();
    let exception = s.exception.unwrap_or_default().to_ascii_lowercase();
    if has_any(&text, GPU_WORDS) {
        return Category::Inference;
    }
    if s.errno == Some(12) || has_any(&text, MEMORY_WORDS) || exception.contains("memory") {
        return Category::Memory;
    }
    if s.errno.is_some_and(is_network_errno)
        || has_any(&exception, NETWORK_WORDS)
        || (matches!(e.source, Source::Output | Source::PythonException)
            && has_any(&text, NETWORK_WORDS))
    {
        return Category::Network;
    }
    if has_any(&exception, INPUT_WORDS) {
        return Category::InputValidation;
    }
    if has_any(&text, MODEL_WORDS) && has_any(&text, LOAD_WORDS) {
        return Category::ModelLoading;
    }
    if s.errno.is_some() || s.signal.is_some() || s.exit_code.is_some() {
        return Category::System;
    }
    Category::Unknown
}

fn severity(e: &Evidence) -> Severity {
    let s = &e.subject;
    if s.oom || s.signal.is_some() || e.kind == Some(BlockKind::RuntimeAbort) {
        return Severity::Critical;
    }
    if is_stop_exception(s) {
        return Severity::Low;
    }
    if s.errno
        .is_some_and(|n| matches!(n, 12 | 28 | 122 | 23 | 24))
    {
        return Severity::High;
    }
    let text = s.text.to_ascii_lowercase();
    if has_any(&text, GPU_WORDS) || has_any(&text, MEMORY_WORDS) {
        return Severity::High;
    }
    match e.kind {
        Some(
            BlockKind::PythonTraceback
            | BlockKind::PythonFatal
            | BlockKind::JavaException
            | BlockKind::RustPanic
            | BlockKind::GoPanic
            | BlockKind::CppTerminate,
        ) => return Severity::High,
        Some(BlockKind::LogLine | BlockKind::ExceptionLine) => {
            return match s.level {
                Some(Level::Fatal | Level::Critical) => Severity::High,
                _ => Severity::Medium,
            };
        }
        _ => {}
    }
    if s.exit_code.is_some()
        || s.errno
            .is_some_and(|n| is_network_errno(n) || n == 1 || n == 13)
    {
        return Severity::Medium;
    }
    Severity::Low
}

/// The `error_type` of an event: the exception type, else the errno name, the signal name,
/// `exit(N)`, the pattern id, the log level (`ERROR`), or what the grouping recognised.
pub(crate) fn error_type(e: &Evidence, pattern: Option<&str>) -> String {
    let s = &e.subject;
    if let Some(exception) = s.exception {
        return exception.to_string();
    }
    if let Some(errno) = s.errno {
        return linux::errno_display(errno);
    }
    if let Some(signal) = s.signal {
        return linux::signal_name(signal);
    }
    if let Some(code) = s.exit_code {
        return format!("exit({code})");
    }
    if let Some(id) = pattern {
        return id.to_string();
    }
    if let Some(level) = s.level {
        return level.as_str().to_ascii_uppercase();
    }
    e.kind.map_or("error", BlockKind::as_str).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(subject: Subject, source: Source, kind: Option<BlockKind>) -> Evidence {
        Evidence {
            subject,
            source,
            kind,
        }
    }

    #[test]
    fn fallback_rules() {
        let syscall = |errno| {
            ev(
                Subject {
                    errno: Some(errno),
                    syscall: Some("x"),
                    ..Subject::default()
                },
                Source::Syscall,
                None,
            )
        };
        assert_eq!(fallback(&syscall(12)), (Category::Memory, Severity::High));
        assert_eq!(
            fallback(&syscall(111)),
            (Category::Network, Severity::Medium)
        );
        assert_eq!(fallback(&syscall(2)), (Category::System, Severity::Low));
        let signal = ev(
            Subject {
                signal: Some(31),
                ..Subject::default()
            },
            Source::Signal,
            None,
        );
        assert_eq!(fallback(&signal), (Category::System, Severity::Critical));
        let log = |text, level| {
            ev(
                Subject {
                    text,
                    level: Some(level),
                    ..Subject::default()
                },
                Source::Output,
                Some(BlockKind::LogLine),
            )
        };
        assert_eq!(
            fallback(&log("ERROR something odd", Level::Error)),
            (Category::Unknown, Severity::Medium)
        );
        assert_eq!(
            fallback(&log("FATAL something odd", Level::Fatal)),
            (Category::Unknown, Severity::High)
        );
        assert_eq!(
            fallback(&log("ERROR gpu 3 fell off the bus", Level::Error)),
            (Category::Inference, Severity::High)
        );
        assert_eq!(
            fallback(&log("ERROR lost connection to db", Level::Error)),
            (Category::Network, Severity::Medium)
        );
        let traceback = ev(
            Subject {
                text: "ZeroDivisionError: division by zero",
                exception: Some("ZeroDivisionError"),
                ..Subject::default()
            },
            Source::Output,
            Some(BlockKind::PythonTraceback),
        );
        assert_eq!(fallback(&traceback), (Category::Unknown, Severity::High));
        let model = ev(
            Subject {
                text: "failed to load model weights",
                ..Subject::default()
            },
            Source::Output,
            Some(BlockKind::LogLine),
        );
        assert_eq!(category(&model), Category::ModelLoading);
        let interrupt = ev(
            Subject {
                exception: Some("KeyboardInterrupt"),
                ..Subject::default()
            },
            Source::Output,
            Some(BlockKind::PythonTraceback),
        );
        assert_eq!(fallback(&interrupt), (Category::System, Severity::Low));
        let exit = ev(
            Subject {
                exit_code: Some(3),
                ..Subject::default()
            },
            Source::Exit,
            None,
        );
        assert_eq!(fallback(&exit), (Category::System, Severity::Medium));
    }

    #[test]
    fn error_types() {
        let e = |subject| ev(subject, Source::Output, Some(BlockKind::LogLine));
        assert_eq!(
            error_type(
                &e(Subject {
                    exception: Some("ValueError"),
                    errno: Some(2),
                    ..Subject::default()
                }),
                None
            ),
            "ValueError"
        );
        assert_eq!(
            error_type(
                &e(Subject {
                    errno: Some(2),
                    ..Subject::default()
                }),
                None
            ),
            "ENOENT"
        );
        assert_eq!(
            error_type(
                &e(Subject {
                    signal: Some(11),
                    ..Subject::default()
                }),
                None
            ),
            "SIGSEGV"
        );
        assert_eq!(
            error_type(
                &e(Subject {
                    exit_code: Some(1),
                    ..Subject::default()
                }),
                None
            ),
            "exit(1)"
        );
        assert_eq!(
            error_type(
                &e(Subject {
                    level: Some(Level::Error),
                    ..Subject::default()
                }),
                Some("X")
            ),
            "X"
        );
        assert_eq!(
            error_type(
                &e(Subject {
                    level: Some(Level::Error),
                    ..Subject::default()
                }),
                None
            ),
            "ERROR"
        );
        assert_eq!(
            error_type(
                &ev(
                    Subject::default(),
                    Source::Output,
                    Some(BlockKind::RustPanic)
                ),
                None
            ),
            "rust_panic"
        );
    }
}
