//! Multi-line error grouping: the lines of one (thread, fd) stream become blocks, each a
//! complete error (a Python traceback with its chain, a Rust or Go panic, an uncaught C++ or
//! Java exception, a log record at an error level) or a single plain line.
//!
//! A block ends at the first line that cannot belong to it, at [`Grouper::flush`], or when it
//! has been idle for a while ([`Grouper::flush_idle`]). Lines that only *may* continue a
//! message (a multi-line exception message) are taken when they follow within the
//! continuation window and do not start a record of their own.

use std::collections::HashMap;
use std::sync::Arc;

use super::block::Bounded;
pub(crate) use super::block::{Block, BlockKind};
use super::detect::{self, Start};
use super::input::CallContext;
use super::lines::Line;
use crate::report::errors::{ChainedException, Frame, Level};

/// The searchable text of a block is capped at this many bytes.
const MAX_TEXT: usize = 16 * 1024;

/// Grouping limits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GroupOptions {
    /// The most lines kept of one block.
    pub max_lines: usize,
    /// How soon after the previous line a line must come to continue a message.
    pub continuation_ns: u64,
}

impl Default for GroupOptions {
    fn default() -> Self {
        Self {
            max_lines: 200,
            continuation_ns: 1_000_000,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    PyFrames { code_expected: bool },
    PyAfter,
    PyBlank,
    PyChain,
    PyGroup,
    PyFatal,
    Java { framed: bool },
    RustMessage { first: bool },
    RustTail,
    RustBacktrace,
    Go,
    CppWhat,
    Log,
}

enum Feed {
    Take,
    TakeDone,
    Reject,
}

#[derive(Debug)]
struct Builder {
    kind: BlockKind,
    tid: u32,
    fd: u32,
    first_ns: u64,
    last_ns: u64,
    lines: Bounded<String>,
    text: String,
    exception: Option<String>,
    message: String,
    chain: Vec<ChainedException>,
    frames: Bounded<Frame>,
    level: Option<Level>,
    thread: Option<String>,
    location: Option<String>,
    context: Option<Arc<CallContext>>,
    state: State,
}

impl Builder {
    /// Starts a block; the flag says whether it is already complete.
    fn new(start: Start, line: &Line, max_lines: usize) -> (Self, bool) {
        let mut b = Builder {
            kind: BlockKind::Plain,
            tid: line.tid,
            fd: line.fd,
            first_ns: line.timestamp_ns,
            last_ns: line.timestamp_ns,
            lines: Bounded::new(max_lines),
            text: String::new(),
            exception: None,
            message: String::new(),
            chain: Vec::new(),
            frames: Bounded::new((max_lines / 3).max(4)),
            level: None,
            thread: None,
            location: None,
            context: line.context.clone(),
            state: State::Log,
        };
        let t = line.text.as_str();
        let mut complete = false;
        match start {
            Start::PythonTraceback { group } => {
                b.kind = BlockKind::PythonTraceback;
                b.state = if group {
                    State::PyGroup
                } else {
                    State::PyFrames {
                        code_expected: false,
                    }
                };
                b.keep(t, false);
            }
            Start::PythonFatal { message } => {
                (b.kind, b.message, b.state) = (BlockKind::PythonFatal, message, State::PyFatal);
                b.keep(t, true);
            }
            Start::JavaException {
                thread,
                exception,
                message,
            } => {
                b.kind = BlockKind::JavaException;
                (b.thread, b.exception, b.message) = (Some(thread), Some(exception), message);
                b.state = State::Java { framed: false };
                b.keep(t, true);
            }
            Start::RustPanic {
                thread,
                location,
                message,
            } => {
                (b.kind, b.thread, b.location) = (BlockKind::RustPanic, Some(thread), location);
                b.state = match message {
                    None => State::RustMessage { first: true },
                    Some(_) => State::RustTail,
                };
                b.message = message.unwrap_or_default();
                b.keep(t, true);
            }
            Start::GoPanic { message } => {
                (b.kind, b.message, b.state) = (BlockKind::GoPanic, message, State::Go);
                b.keep(t, true);
            }
            Start::CppTerminate {
                exception,
                message,
                complete: done,
            } => {
                b.kind = BlockKind::CppTerminate;
                b.message = message.unwrap_or_else(|| {
                    format!(
                        "uncaught exception of type {}",
                        exception.as_deref().unwrap_or("?")
                    )
                });
                (b.exception, b.state, complete) = (exception, State::CppWhat, done);
                b.keep(t, true);
            }
            Start::RuntimeAbort { message } => {
                (b.kind, b.message, complete) = (BlockKind::RuntimeAbort, message, true);
                b.keep(t, true);
            }
            Start::Exception { exception, message } => {
                (b.kind, b.exception, b.message) =
                    (BlockKind::ExceptionLine, Some(exception), message);
                b.state = State::Java { framed: false };
                b.keep(t, true);
            }
            Start::Log { level, message } => {
                // `2024-... ERROR ValueError: bad` carries an exception type too.
                let (exception, message) = match detect::exception_line(&message) {
                    Some((exception, rest)) => (Some(exception), rest),
                    None => (None, message),
                };
                (b.kind, b.level, b.exception) = (BlockKind::LogLine, Some(level), exception);
                (b.message, b.state) = (message, State::Log);
                b.keep(t, true);
            }
        }
        (b, complete)
    }

    fn keep(&mut self, line: &str, searchable: bool) {
        self.lines.push(line.to_string());
        if searchable && self.text.len() < MAX_TEXT {
            if !self.text.is_empty() {
                self.text.push('\n');
            }
            self.text.push_str(line);
        }
    }

    fn feed(&mut self, line: &Line, window_ns: u64) -> Feed {
        let t = line.text.as_str();
        let in_window = line.timestamp_ns.saturating_sub(self.last_ns) <= window_ns;
        let blank = t.trim().is_empty();
        let continuation =
            in_window && !blank && detect::start(t).is_none() && !detect::is_new_record(t);
        let indented = t.starts_with([' ', '\t']);
        let result = match self.state {
            State::PyFrames { code_expected } => {
                if blank || indented {
                    let mut code_next = false;
                    if let Some(frame) = detect::python_frame(t) {
                        self.frames.push(frame);
                        code_next = true;
                    } else if code_expected
                        && !blank
                        && !is_caret_line(t)
                        && let Some(f) = self.frames.last_mut()
                    {
                        f.code = Some(t.trim().to_string());
                    }
                    self.state = State::PyFrames {
                        code_expected: code_next,
                    };
                    self.keep(t, false);
                    Feed::Take
                } else if let Some((exception, message)) = detect::traceback_exception(t) {
                    (self.exception, self.message) = (Some(exception), message);
                    self.state = State::PyAfter;
                    self.keep(t, true);
                    Feed::Take
                } else {
                    Feed::Reject
                }
            }
            State::PyAfter if blank => {
                self.state = State::PyBlank;
                Feed::Take
            }
            State::PyAfter if continuation => {
                self.message.push('\n');
                self.message.push_str(t);
                self.keep(t, true);
                Feed::Take
            }
            State::PyBlank if detect::is_chain_marker(t) => {
                self.keep("", false);
                self.keep(t, false);
                self.state = State::PyChain;
                Feed::Take
            }
            State::PyChain if blank => Feed::Take,
            State::PyChain
                if matches!(
                    detect::start(t),
                    Some(Start::PythonTraceback { group: false })
                ) =>
            {
                let exception = self.exception.take().unwrap_or_default();
                let message = std::mem::take(&mut self.message);
                self.chain.push(ChainedException { exception, message });
                self.frames.clear();
                self.keep("", false);
                self.keep(t, false);
                self.state = State::PyFrames {
                    code_expected: false,
                };
                Feed::Take
            }
            State::PyGroup if indented || t.trim_start().starts_with(['|', '+']) => {
                let body = t.trim_start().trim_start_matches(['|', '+', '-', ' ']);
                let mut searchable = false;
                if let Some(frame) = detect::python_frame(body) {
                    self.frames.push(frame);
                } else if let Some((exception, message)) = detect::group_exception(body) {
                    if self.exception.is_none() {
                        (self.exception, self.message) = (Some(exception), message);
                    } else {
                        self.chain.push(ChainedException { exception, message });
                    }
                    searchable = true;
                }
                self.keep(t, searchable);
                Feed::Take
            }
            State::PyFatal
                if blank
                    || indented
                    || [
                        "Current thread ",
                        "Thread 0x",
                        "Extension modules:",
                        "Python runtime state:",
                        "Stack (most recent call first):",
                    ]
                    .iter()
                    .any(|p| t.starts_with(p)) =>
            {
                if let Some(frame) = detect::python_frame(t) {
                    self.frames.push(frame);
                }
                self.keep(t, false);
                Feed::Take
            }
            State::Java { framed } => self.feed_java(t, !framed && continuation),
            State::RustMessage { .. } | State::RustTail | State::RustBacktrace
                if t.trim_start().starts_with("note: ") =>
            {
                self.keep(t, false);
                Feed::TakeDone
            }
            State::RustMessage { .. } | State::RustTail if t == "stack backtrace:" => {
                self.keep(t, false);
                self.state = State::RustBacktrace;
                Feed::Take
            }
            State::RustMessage { first: true } => {
                self.message = t.to_string();
                self.keep(t, true);
                self.state = State::RustMessage { first: false };
                Feed::Take
            }
            State::RustMessage { first: false } if continuation => {
                self.message.push('\n');
                self.message.push_str(t);
                self.keep(t, true);
                Feed::Take
            }
            State::RustBacktrace => {
                if let Some((file, line)) = detect::rust_backtrace_location(t) {
                    if let Some(f) = self.frames.last_mut() {
                        (f.file, f.line) = (file, line);
                    }
                } else if let Some(function) = detect::rust_backtrace_frame(t) {
                    self.frames.push(Frame {
                        function: Some(function),
                        ..Frame::default()
                    });
                } else {
                    return Feed::Reject;
                }
                self.keep(t, false);
                Feed::Take
            }
            State::Go => self.feed_go(t, blank || indented),
            State::CppWhat => match detect::cpp_what(t) {
                Some(what) => {
                    self.message = what;
                    self.keep(t, true);
                    Feed::TakeDone
                }
                None => Feed::Reject,
            },
            State::Log => self.feed_log(t, in_window, indented && !blank),
            _ => Feed::Reject,
        };
        if !matches!(result, Feed::Reject) {
            self.last_ns = line.timestamp_ns;
        }
        result
    }

    fn feed_java(&mut self, t: &str, continuation: bool) -> Feed {
        let trimmed = t.trim();
        if let Some(frame) = detect::java_frame(t) {
            self.frames.push(frame);
            self.kind = BlockKind::JavaException;
            self.state = State::Java { framed: true };
            self.keep(t, false);
        } else if trimmed.starts_with("... ")
            && (trimmed.ends_with(" more") || trimmed.ends_with("omitted"))
        {
            self.keep(t, false);
        } else if let Some((exception, message)) = detect::caused_by(t) {
            let previous = self.exception.replace(exception).unwrap_or_default();
            let previous_message = std::mem::replace(&mut self.message, message);
            self.chain.push(ChainedException {
                exception: previous,
                message: previous_message,
            });
            self.keep(t, true);
        } else if t.starts_with([' ', '\t']) && trimmed.starts_with("Suppressed: ") {
            self.keep(t, true);
        } else if continuation {
            self.message.push('\n');
            self.message.push_str(t);
            self.keep(t, true);
        } else {
            return Feed::Reject;
        }
        Feed::Take
    }

    fn feed_go(&mut self, t: &str, blank_or_indented: bool) -> Feed {
        const PREFIXES: [&str; 7] = [
            "goroutine ",
            "[signal ",
            "created by ",
            "exit status ",
            "runtime stack:",
            "runtime: ",
            "[recovered]",
        ];
        if let Some((file, line)) = detect::go_location(t) {
            if let Some(f) = self.frames.last_mut() {
                (f.file, f.line) = (file, line);
            }
            self.keep(t, false);
        } else if let Some(function) = detect::go_function(t) {
            self.frames.push(Frame {
                function: Some(function),
                ..Frame::default()
            });
            self.keep(t, false);
        } else if blank_or_indented || PREFIXES.iter().any(|p| t.starts_with(p)) {
            let searchable = t.starts_with("[signal ") || t.starts_with("runtime: ");
            self.keep(t, searchable);
        } else {
            return Feed::Reject;
        }
        Feed::Take
    }

    fn feed_log(&mut self, t: &str, in_window: bool, indented: bool) -> Feed {
        if !in_window {
            return Feed::Reject;
        }
        match detect::start(t) {
            Some(Start::PythonTraceback { group }) => {
                self.kind = BlockKind::PythonTraceback;
                self.state = if group {
                    State::PyGroup
                } else {
                    State::PyFrames {
                        code_expected: false,
                    }
                };
                self.keep(t, false);
                Feed::Take
            }
            Some(Start::Exception { exception, message }) => {
                self.kind = BlockKind::ExceptionLine;
                (self.exception, self.message) = (Some(exception), message);
                self.state = State::Java { framed: false };
                self.keep(t, true);
                Feed::Take
            }
            _ if indented => {
                if let Some(frame) = detect::java_frame(t) {
                    self.frames.push(frame);
                    self.keep(t, false);
                } else {
                    self.keep(t, true);
                }
                Feed::Take
            }
            _ => Feed::Reject,
        }
    }

    fn finish(self) -> Block {
        let mut message = self.message.trim_end().to_string();
        if message.is_empty() {
            message = match (&self.exception, self.kind) {
                (Some(e), _) => e.clone(),
                (None, BlockKind::PythonTraceback) => "traceback without an exception line".into(),
                _ => self.lines.head.first().cloned().unwrap_or_default(),
            };
        }
        Block {
            kind: self.kind,
            tid: self.tid,
            fd: self.fd,
            timestamp_ns: self.first_ns,
            lines: self
                .lines
                .into_vec(|n| format!("... {n} lines omitted ...")),
            exception: self.exception,
            message,
            chain: self.chain,
            frames: self.frames.into_vec(|n| Frame {
                file: format!("... {n} frames omitted ..."),
                ..Frame::default()
            }),
            level: self.level,
            thread: self.thread,
            location: self.location,
            text: self.text,
            context: self.context,
        }
    }
}

fn is_caret_line(t: &str) -> bool {
    let t = t.trim();
    !t.is_empty() && t.chars().all(|c| matches!(c, '^' | '~' | ' '))
}

/// Groups the lines of every stream.
#[derive(Default)]
pub(crate) struct Grouper {
    opts: GroupOptions,
    open: HashMap<(u32, u32), Builder>,
}

impl Grouper {
    pub(crate) fn new(opts: GroupOptions) -> Self {
        Self {
            opts,
            open: HashMap::new(),
        }
    }

    /// Feeds one line; appends the blocks it completes to `out`. Blank lines that belong to no
    /// block produce nothing.
    pub(crate) fn push(&mut self, line: Line, out: &mut Vec<Block>) {
        let key = (line.tid, line.fd);
        if let Some(b) = self.open.get_mut(&key) {
            match b.feed(&line, self.opts.continuation_ns) {
                Feed::Take => return,
                Feed::TakeDone => {
                    out.extend(self.open.remove(&key).map(Builder::finish));
                    return;
                }
                Feed::Reject => out.extend(self.open.remove(&key).map(Builder::finish)),
            }
        }
        if line.text.trim().is_empty() {
            return;
        }
        match detect::start(&line.text) {
            Some(start) => {
                let (b, complete) = Builder::new(start, &line, self.opts.max_lines);
                if complete {
                    out.push(b.finish());
                } else {
                    self.open.insert(key, b);
                }
            }
            None => out.push(Block::plain(line)),
        }
    }

    /// Ends the blocks whose last line is at least `idle_ns` old.
    pub(crate) fn flush_idle(&mut self, now_ns: u64, idle_ns: u64, out: &mut Vec<Block>) {
        let idle: Vec<_> = self
            .open
            .iter()
            .filter(|(_, b)| now_ns.saturating_sub(b.last_ns) >= idle_ns)
            .map(|(k, _)| *k)
            .collect();
        let mut blocks: Vec<Block> = idle
            .into_iter()
            .filter_map(|k| self.open.remove(&k))
            .map(Builder::finish)
            .collect();
        blocks.sort_by_key(|b| (b.timestamp_ns, b.tid, b.fd));
        out.extend(blocks);
    }

    /// Ends every open block.
    pub(crate) fn flush(&mut self, out: &mut Vec<Block>) {
        self.flush_idle(u64::MAX, 0, out);
    }
}

#[cfg(test)]
#[path = "group_tests.rs"]
mod tests;
