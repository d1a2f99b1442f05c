//! Single-line recognizers: where a multi-line error starts, log levels, exception lines,
//! stack frames, and the errno and path an error message mentions.

use std::sync::LazyLock;

use regex::{Regex, RegexSet, SetMatches};

use crate::linux;
use crate::report::errors::{Frame, Level};

fn re(pattern: &str) -> Regex {
    Regex::new(pattern).expect("recognizer regex")
}

/// The first line of a recognised error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Start {
    /// `Traceback (most recent call last):`; `group` for `+ Exception Group Traceback`.
    PythonTraceback { group: bool },
    /// `Fatal Python error: ...` (faulthandler).
    PythonFatal { message: String },
    /// `Exception in thread "main" java.lang.X: msg`.
    JavaException {
        thread: String,
        exception: String,
        message: String,
    },
    /// `thread 'main' panicked at ...`; `message` is `None` when it follows on the next line.
    RustPanic {
        thread: String,
        location: Option<String>,
        message: Option<String>,
    },
    /// `panic: ...` or `fatal error: ...` from the Go runtime.
    GoPanic { message: String },
    /// An uncaught C++ exception; `complete` when nothing follows (`what()` does otherwise).
    CppTerminate {
        exception: Option<String>,
        message: Option<String>,
        complete: bool,
    },
    /// A one-line runtime abort: glibc heap checks, stack protector, fortify.
    RuntimeAbort { message: String },
    /// A standalone exception line, `RuntimeError: CUDA out of memory...`.
    Exception { exception: String, message: String },
    /// A log line at an error level.
    Log { level: Level, message: String },
}

static PY_TRACEBACK: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s*(\+ Exception Group )?Traceback \(most recent call last\):\s*$"));
static PY_FATAL: LazyLock<Regex> = LazyLock::new(|| re(r"^Fatal Python error: (.*)$"));
static JAVA: LazyLock<Regex> =
    LazyLock::new(|| re(r#"^Exception in thread "([^"]*)" ([A-Za-z_$][\w$.]*)(?:: (.*))?$"#));
static RUST_PANIC: LazyLock<Regex> =
    LazyLock::new(|| re(r"^thread '([^']*)'(?: \(\d+\))? panicked at (.*)$"));
static RUST_LOC_NEW: LazyLock<Regex> = LazyLock::new(|| re(r"^(.+:\d+:\d+):$"));
static RUST_LOC_OLD: LazyLock<Regex> = LazyLock::new(|| re(r"^'(.*)', (.+:\d+:\d+)$"));
static GO_PANIC: LazyLock<Regex> = LazyLock::new(|| re(r"^(?:panic|fatal error): (.+)$"));
static CPP: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^terminate called (?:after throwing an instance of '(.+)'|without an active exception|recursively)$",
    )
});
static LIBCXX: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^libc\+\+abi(?:\.dylib)?: terminating(?: (?:due to|with) uncaught exception of type (\S+?)(?:: (.*))?)?$",
    )
});
static CPP_WHAT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*what\(\):\s*(.*)$"));
static RUNTIME_ABORT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:(?:free|malloc|realloc|calloc|munmap_chunk|malloc_consolidate|_int_malloc|_int_free|_int_realloc|tcache_thread_shutdown)\(\): .+|double free or corruption.*|corrupted (?:size vs\. prev_size|double-linked list).*|\*\*\* Error in `[^`]*': .+|\*\*\* (?:stack smashing|buffer overflow|longjmp causes uninitialized stack frame) detected \*\*\*.*|Fatal glibc error: .+)$",
    )
});
/// Strict: standalone lines need a recognisable exception name and a message.
static EXCEPTION_STRICT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"^(?:Unhandled exception\. )?((?:[A-Za-z_][\w$]*\.)*[\w$]*[A-Za-z0-9](?:Error|Exception|Exit|Interrupt|Fault|Failure)|(?:[A-Za-z_]\w*\.)+(?:timeout|gaierror|herror|error)): (.*)$",
    )
});
/// Permissive: the line that ends a Python traceback.
static EXCEPTION_LOOSE: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([A-Za-z_][\w$]*(?:\.[A-Za-z_][\w$]*)*)(?:: ?(.*))?$"));
static PY_FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r#"^\s*File "([^"]+)", line (\d+)(?:,? in (.+))?$"#));
static JAVA_FRAME: LazyLock<Regex> =
    LazyLock::new(|| re(r"^\s+at ([^\s(]+)\(([^:)]*)(?::(\d+))?\)"));
static CAUSED_BY: LazyLock<Regex> =
    LazyLock::new(|| re(r"^Caused by: ([A-Za-z_$][\w$.]*)(?:: (.*))?$"));
static NEW_RECORD: LazyLock<Regex> =
    LazyLock::new(|| re(r"^(?:\d{4}[-/]\d\d[-/]\d\d|\[?\d\d:\d\d:\d\d|[IWEF]\d{4} \d\d:)"));
static GLOG: LazyLock<Regex> =
    LazyLock::new(|| re(r"^([IWEF])\d{4} \d\d:\d\d:\d\d\.\d+\s+\d+ [^\]]+\] ?"));
static STRUCTURED_LEVEL: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r#"(?i)(?:^|[\s{,])"?(?:level|lvl|severity|loglevel|log_level|levelname)"?\s*[=:]\s*"?(error|err|eror|fatal|crit|critical|panic|emerg|alert|severe)\b"#,
    )
});
static STRUCTURED_MSG: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?i)(?:^|[\s{,])"?(?:msg|message)"?\s*[=:]\s*("(?:[^"\\]|\\.)*"|\S+)"#));
static ERRNO_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    re(r"\[Errno (\d+)\]|\(os error (\d+)\)|\berrno[ =:]+(\d+)|Os \{ code: (\d+)")
});
static ERRNO_NAME: LazyLock<Regex> = LazyLock::new(|| re(r"\b(E[A-Z0-9]{2,}[A-Z0-9_]*)\b"));
static STRERROR: LazyLock<Regex> = LazyLock::new(|| {
    let texts: Vec<String> = linux::INFERABLE_ERRNOS
        .iter()
        .filter_map(|&e| linux::errno_text(e))
        .map(regex::escape)
        .collect();
    re(&format!("(?i){}", texts.join("|")))
});
static QUOTED: LazyLock<Regex> = LazyLock::new(|| re(r#"'([^'\n]+)'|"([^"\n]+)"|`([^`'\n]+)[`']"#));
static BARE_PATH: LazyLock<Regex> =
    LazyLock::new(|| re(r#"(?:^|[\s(=])((?:/|\./|\.\./|~/)[^\s'",;:()\[\]]+)"#));
static FILENAME: LazyLock<Regex> = LazyLock::new(|| re(r"^[\w.\-]+\.[A-Za-z0-9]{1,12}$"));
static PATH_CONTEXT: LazyLock<Regex> = LazyLock::new(|| {
    re(
        r"(?i)file|directory|path|no such|not found|open|load|read|write|access|exist|checkpoint|weights",
    )
});

static RUST_BT_FRAME: LazyLock<Regex> = LazyLock::new(|| re(r"^\s*\d+:\s+(\S.*)$"));
static RUST_BT_AT: LazyLock<Regex> = LazyLock::new(|| re(r"^\s+at (.+?):(\d+)(?::\d+)?$"));
static GO_FUNC: LazyLock<Regex> = LazyLock::new(|| re(r"^((?:[\w.\-/]|\(\*[\w.\-/]+\))+)\(.*\)$"));
static GO_LOC: LazyLock<Regex> = LazyLock::new(|| re(r"^\t(.+?):(\d+)(?: \+0x[0-9a-f]+)?$"));

/// One pass over a line says which of the start and level regexes can match; only those are
/// then run for their captures. Indices follow this list.
static START_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new([
        PY_TRACEBACK.as_str(),
        RUST_PANIC.as_str(),
        CPP.as_str(),
        LIBCXX.as_str(),
        RUNTIME_ABORT.as_str(),
        PY_FATAL.as_str(),
        JAVA.as_str(),
        GO_PANIC.as_str(),
        EXCEPTION_STRICT.as_str(),
        GLOG.as_str(),
        STRUCTURED_LEVEL.as_str(),
    ])
    .expect("recognizer set")
});
const S_PY: usize = 0;
const S_RUST: usize = 1;
const S_CPP: usize = 2;
const S_LIBCXX: usize = 3;
const S_ABORT: usize = 4;
const S_PY_FATAL: usize = 5;
const S_JAVA: usize = 6;
const S_GO: usize = 7;
const S_EXCEPTION: usize = 8;
const S_GLOG: usize = 9;
const S_STRUCTURED: usize = 10;
static ERRNO_SET: LazyLock<RegexSet> = LazyLock::new(|| {
    RegexSet::new([
        ERRNO_MARKER.as_str(),
        ERRNO_NAME.as_str(),
        STRERROR.as_str(),
    ])
    .expect("errno set")
});

/// Recognises the first line of an error.
pub(crate) fn start(line: &str) -> Option<Start> {
    let hits = START_SET.matches(line);
    if !hits.matched_any() {
        return scan_level(line, &hits).and_then(|(level, message)| match level {
            AnyLevel::Error(level) => Some(Start::Log { level, message }),
            AnyLevel::Other => None,
        });
    }
    let hit = |i| hits.matched(i);
    if hit(S_PY)
        && let Some(c) = PY_TRACEBACK.captures(line)
    {
        return Some(Start::PythonTraceback {
            group: c.get(1).is_some(),
        });
    }
    if hit(S_RUST)
        && let Some(c) = RUST_PANIC.captures(line)
    {
        let thread = c[1].to_string();
        let rest = &c[2];
        if let Some(l) = RUST_LOC_NEW.captures(rest) {
            return Some(Start::RustPanic {
                thread,
                location: Some(l[1].to_string()),
                message: None,
            });
        }
        if let Some(o) = RUST_LOC_OLD.captures(rest) {
            let (message, location) = (o[1].to_string(), o[2].to_string());
            return Some(Start::RustPanic {
                thread,
                location: Some(location),
                message: Some(message),
            });
        }
        return Some(Start::RustPanic {
            thread,
            location: None,
            message: Some(rest.to_string()),
        });
    }
    if hit(S_CPP)
        && let Some(c) = CPP.captures(line)
    {
        let exception = c.get(1).map(|m| m.as_str().to_string());
        let complete = exception.is_none();
        let message = complete.then(|| line.to_string());
        return Some(Start::CppTerminate {
            exception,
            message,
            complete,
        });
    }
    if hit(S_LIBCXX)
        && let Some(c) = LIBCXX.captures(line)
    {
        return Some(Start::CppTerminate {
            exception: c.get(1).map(|m| m.as_str().to_string()),
            message: Some(c.get(2).map_or(line, |m| m.as_str()).to_string()),
            complete: true,
        });
    }
    if hit(S_ABORT) {
        return Some(Start::RuntimeAbort {
            message: line.to_string(),
        });
    }
    if hit(S_PY_FATAL)
        && let Some(c) = PY_FATAL.captures(line)
    {
        return Some(Start::PythonFatal {
            message: c[1].to_string(),
        });
    }
    if hit(S_JAVA)
        && let Some(c) = JAVA.captures(line)
    {
        return Some(Start::JavaException {
            thread: c[1].to_string(),
            exception: c[2].to_string(),
            message: c.get(3).map_or("", |m| m.as_str()).to_string(),
        });
    }
    if hit(S_GO)
        && let Some(c) = GO_PANIC.captures(line)
    {
        return Some(Start::GoPanic {
            message: c[1].to_string(),
        });
    }
    if hit(S_EXCEPTION)
        && let Some((exception, message)) = exception_line(line)
    {
        return Some(Start::Exception { exception, message });
    }
    match scan_level(line, &hits)? {
        (AnyLevel::Error(level), message) => Some(Start::Log { level, message }),
        (AnyLevel::Other, _) => None,
    }
}

/// A standalone exception line: `ValueError: bad`, `socket.timeout: timed out`.
pub(crate) fn exception_line(line: &str) -> Option<(String, String)> {
    EXCEPTION_STRICT
        .captures(line)
        .map(|c| (c[1].to_string(), c[2].to_string()))
}

/// The line that ends a Python traceback: any dotted name, with or without a message.
pub(crate) fn traceback_exception(line: &str) -> Option<(String, String)> {
    let c = EXCEPTION_LOOSE.captures(line)?;
    Some((
        c[1].to_string(),
        c.get(2).map_or("", |m| m.as_str()).to_string(),
    ))
}

/// Like [`traceback_exception`] but for the `| `-prefixed lines of an exception group, where
/// code lines are mixed in: the name must be capitalised (`ValueError`, `mod.KeyError`).
pub(crate) fn group_exception(line: &str) -> Option<(String, String)> {
    let (name, msg) = traceback_exception(line)?;
    let last = name.rsplit('.').next().unwrap_or(&name);
    last.starts_with(|c: char| c.is_ascii_uppercase())
        .then_some((name, msg))
}

/// A Python frame line, `  File "x.py", line 3, in <module>` (also faulthandler's form).
pub(crate) fn python_frame(line: &str) -> Option<Frame> {
    let c = PY_FRAME.captures(line)?;
    Some(Frame {
        file: c[1].to_string(),
        line: c[2].parse().ok(),
        function: c.get(3).map(|m| m.as_str().trim().to_string()),
        code: None,
    })
}

/// A Java frame line, `\tat com.x.Y.f(Y.java:10)`.
pub(crate) fn java_frame(line: &str) -> Option<Frame> {
    let c = JAVA_FRAME.captures(line)?;
    Some(Frame {
        file: c[2].to_string(),
        line: c.get(3).and_then(|m| m.as_str().parse().ok()),
        function: Some(c[1].to_string()),
        code: None,
    })
}

/// `Caused by: java.io.IOException: msg`.
pub(crate) fn caused_by(line: &str) -> Option<(String, String)> {
    let c = CAUSED_BY.captures(line)?;
    Some((
        c[1].to_string(),
        c.get(2).map_or("", |m| m.as_str()).to_string(),
    ))
}

/// The `  what():  msg` line after a C++ terminate message.
pub(crate) fn cpp_what(line: &str) -> Option<String> {
    CPP_WHAT.captures(line).map(|c| c[1].to_string())
}

/// A frame line of a Rust backtrace, `   3: my_crate::run`.
pub(crate) fn rust_backtrace_frame(line: &str) -> Option<String> {
    RUST_BT_FRAME
        .captures(line)
        .map(|c| c[1].trim().to_string())
}

/// The location line under a Rust backtrace frame, `             at ./src/main.rs:4:5`.
pub(crate) fn rust_backtrace_location(line: &str) -> Option<(String, Option<u32>)> {
    let c = RUST_BT_AT.captures(line)?;
    Some((c[1].to_string(), c[2].parse().ok()))
}

/// A function line of a Go goroutine dump, `main.(*T).run(0xc000010000)`.
pub(crate) fn go_function(line: &str) -> Option<String> {
    GO_FUNC.captures(line).map(|c| c[1].to_string())
}

/// The location line under a Go frame, `\t/app/main.go:8 +0x1d`.
pub(crate) fn go_location(line: &str) -> Option<(String, Option<u32>)> {
    let c = GO_LOC.captures(line)?;
    Some((c[1].to_string(), c[2].parse().ok()))
}

/// The line between two exceptions of a Python chain.
pub(crate) fn is_chain_marker(line: &str) -> bool {
    let t = line.trim();
    t == "During handling of the above exception, another exception occurred:"
        || t == "The above exception was the direct cause of the following exception:"
}

/// Whether a line begins a new output record (a timestamp, or any log level) and so cannot
/// continue the message of the error before it.
pub(crate) fn is_new_record(line: &str) -> bool {
    NEW_RECORD.is_match(line) || scan_level(line, &START_SET.matches(line)).is_some()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AnyLevel {
    Error(Level),
    Other,
}

fn level_word(word: &str) -> Option<AnyLevel> {
    Some(match word {
        "ERROR" | "ERR" | "EROR" | "SEVERE" => AnyLevel::Error(Level::Error),
        "CRITICAL" | "CRIT" => AnyLevel::Error(Level::Critical),
        "FATAL" | "PANIC" | "EMERG" | "ALERT" => AnyLevel::Error(Level::Fatal),
        "INFO" | "WARN" | "WARNING" | "DEBUG" | "TRACE" | "NOTICE" | "DBUG" => AnyLevel::Other,
        _ => return None,
    })
}

/// The level of a log line at an error level, and the message after it.
#[cfg(test)]
pub(crate) fn error_level(line: &str) -> Option<(Level, String)> {
    match scan_level(line, &START_SET.matches(line))? {
        (AnyLevel::Error(level), message) => Some((level, message)),
        (AnyLevel::Other, _) => None,
    }
}

fn scan_level(line: &str, hits: &SetMatches) -> Option<(AnyLevel, String)> {
    if hits.matched(S_GLOG)
        && let Some(c) = GLOG.captures(line)
    {
        let level = match &c[1] {
            "E" => AnyLevel::Error(Level::Error),
            "F" => AnyLevel::Error(Level::Fatal),
            _ => AnyLevel::Other,
        };
        return Some((level, line[c.get(0)?.end()..].to_string()));
    }
    if let Some(rest) = line.strip_prefix('<')
        && let Some(d) = rest.chars().next().filter(char::is_ascii_digit)
        && rest[1..].starts_with('>')
    {
        let level = match d {
            '0' | '1' => AnyLevel::Error(Level::Fatal),
            '2' => AnyLevel::Error(Level::Critical),
            '3' => AnyLevel::Error(Level::Error),
            _ => AnyLevel::Other,
        };
        return Some((level, rest[2..].to_string()));
    }
    if hits.matched(S_STRUCTURED)
        && let Some(c) = STRUCTURED_LEVEL.captures(line)
    {
        let level = match c[1].to_ascii_lowercase().as_str() {
            "crit" | "critical" => Level::Critical,
            "fatal" | "panic" | "emerg" | "alert" => Level::Fatal,
            _ => Level::Error,
        };
        let message = STRUCTURED_MSG
            .captures(line)
            .map_or_else(|| line.to_string(), |m| m[1].trim_matches('"').to_string());
        return Some((AnyLevel::Error(level), message));
    }
    let mut offset = 0;
    for (i, token) in line.split_whitespace().take(6).enumerate() {
        let start = offset + line[offset..].find(token)?;
        offset = start + token.len();
        let stripped = token.trim_start_matches(['[', '(', '<', '{', '|']);
        let bracketed = stripped.len() != token.len();
        let core = stripped.trim_end_matches([']', ')', '>', '}', '|', ':', ',', '-']);
        let core_word = core.split(':').next().unwrap_or(core);
        let mut found = level_word(core_word);
        if found.is_none() && (bracketed || (i == 0 && token.ends_with(':'))) {
            found = level_word(&core_word.to_ascii_uppercase())
                .filter(|l| bracketed || matches!(l, AnyLevel::Error(_)));
        }
        let Some(level) = found else { continue };
        // The message: what follows the level word (`ERROR:root:msg` keeps `root:msg`).
        let after_word = start + (token.len() - stripped.len()) + core_word.len();
        let message = line[after_word..]
            .trim_start_matches([']', ')', '>', '}', '|', ':', '-', ' ', '\t'])
            .to_string();
        return Some((level, message));
    }
    None
}

/// The errno an error message mentions: `[Errno 2]`, `(os error 2)`, `errno=2`, a literal
/// name (`ENOENT`), or a strerror text (`Permission denied`, any case).
pub(crate) fn infer_errno(text: &str) -> Option<i32> {
    let hits = ERRNO_SET.matches(text);
    if !hits.matched_any() {
        return None;
    }
    if hits.matched(0)
        && let Some(c) = ERRNO_MARKER.captures(text)
    {
        let n = (1..=4).find_map(|i| c.get(i))?;
        return n.as_str().parse().ok();
    }
    if let Some(e) = ERRNO_NAME
        .captures_iter(text)
        .find_map(|c| linux::errno_value(&c[1]))
    {
        return Some(e);
    }
    let m = STRERROR.find(text)?;
    linux::INFERABLE_ERRNOS
        .iter()
        .copied()
        .find(|&e| linux::errno_text(e).is_some_and(|t| t.eq_ignore_ascii_case(m.as_str())))
}

/// The file path an error message is about, when it talks about files: the last quoted
/// path-like string, else the first bare absolute or relative path.
pub(crate) fn extract_path(text: &str) -> Option<String> {
    if !PATH_CONTEXT.is_match(text) {
        return None;
    }
    let quoted = QUOTED
        .captures_iter(text)
        .filter_map(|c| (1..=3).find_map(|i| c.get(i)))
        .map(|m| m.as_str())
        .filter(|s| looks_like_path(s))
        .last();
    if let Some(q) = quoted {
        return Some(q.to_string());
    }
    BARE_PATH
        .captures(text)
        .map(|c| c[1].trim_end_matches('.').to_string())
}

fn looks_like_path(s: &str) -> bool {
    if s.contains("://") || s.trim() != s {
        return false;
    }
    let path_like = s.starts_with('/')
        || s.starts_with("./")
        || s.starts_with("../")
        || s.starts_with("~/")
        || (s.contains('/') && !s.contains(' '));
    path_like || FILENAME.is_match(s)
}

#[cfg(test)]
#[path = "detect_tests.rs"]
mod tests;
