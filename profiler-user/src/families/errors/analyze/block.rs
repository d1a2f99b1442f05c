//! The blocks the grouping produces: one complete error (or plain line) of one output
//! stream, and the bounded buffers they are built in.

use std::collections::VecDeque;
use std::sync::Arc;

use super::input::CallContext;
use super::lines::Line;
use crate::report::errors::{ChainedException, Frame, Level};

/// What a block is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum BlockKind {
    PythonTraceback,
    PythonFatal,
    JavaException,
    RustPanic,
    GoPanic,
    CppTerminate,
    RuntimeAbort,
    ExceptionLine,
    LogLine,
    Plain,
}

impl BlockKind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            BlockKind::PythonTraceback => "python_traceback",
            BlockKind::PythonFatal => "python_fatal",
            BlockKind::JavaException => "java_exception",
            BlockKind::RustPanic => "rust_panic",
            BlockKind::GoPanic => "go_panic",
            BlockKind::CppTerminate => "cpp_terminate",
            BlockKind::RuntimeAbort => "runtime_abort",
            BlockKind::ExceptionLine => "exception",
            BlockKind::LogLine => "log",
            BlockKind::Plain => "line",
        }
    }
}

/// One grouped error (or plain line) of one stream.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub kind: BlockKind,
    pub tid: u32,
    pub fd: u32,
    /// When the first line was written.
    pub timestamp_ns: u64,
    /// The raw lines; a long block keeps its head and tail around a `... N lines omitted` line.
    pub lines: Vec<String>,
    /// The exception type of the error (the last of a chain).
    pub exception: Option<String>,
    pub message: String,
    /// Earlier exceptions of a chain, oldest first.
    pub chain: Vec<ChainedException>,
    pub frames: Vec<Frame>,
    pub level: Option<Level>,
    /// Thread name printed by a panic or Java exception.
    pub thread: Option<String>,
    /// Source location printed by a Rust panic.
    pub location: Option<String>,
    /// The lines patterns are matched against: exception, message and log lines, not frames.
    pub text: String,
    pub context: Option<Arc<CallContext>>,
}

impl Block {
    /// A plain line that starts no error.
    pub(crate) fn plain(line: Line) -> Block {
        Block {
            kind: BlockKind::Plain,
            tid: line.tid,
            fd: line.fd,
            timestamp_ns: line.timestamp_ns,
            lines: vec![line.text.clone()],
            exception: None,
            message: line.text.clone(),
            chain: Vec::new(),
            frames: Vec::new(),
            level: None,
            thread: None,
            location: None,
            text: line.text,
            context: line.context,
        }
    }
}
/// Keeps the first and the last items of a long sequence.
#[derive(Debug)]
pub(super) struct Bounded<T> {
    pub(super) head: Vec<T>,
    tail: VecDeque<T>,
    head_cap: usize,
    tail_cap: usize,
    omitted: usize,
}

impl<T> Bounded<T> {
    pub(super) fn new(cap: usize) -> Self {
        let head_cap = (cap / 4).max(1);
        Self {
            head: Vec::new(),
            tail: VecDeque::new(),
            head_cap,
            tail_cap: cap.saturating_sub(head_cap).max(1),
            omitted: 0,
        }
    }

    pub(super) fn push(&mut self, item: T) {
        if self.head.len() < self.head_cap {
            self.head.push(item);
        } else {
            self.tail.push_back(item);
            if self.tail.len() > self.tail_cap {
                self.tail.pop_front();
                self.omitted += 1;
            }
        }
    }

    pub(super) fn last_mut(&mut self) -> Option<&mut T> {
        match self.tail.back_mut() {
            Some(t) => Some(t),
            None => self.head.last_mut(),
        }
    }

    pub(super) fn clear(&mut self) {
        self.head.clear();
        self.tail.clear();
        self.omitted = 0;
    }

    pub(super) fn into_vec(self, marker: impl FnOnce(usize) -> T) -> Vec<T> {
        let mut v = self.head;
        if self.omitted > 0 {
            v.push(marker(self.omitted));
        }
        v.extend(self.tail);
        v
    }
}
