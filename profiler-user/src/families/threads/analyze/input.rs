//! What the analyzer is given: the maps as read at the end ([`Harvest`]), what it needs from
//! outside ([`Resolve`]: symbols and /proc), and the options. Also the small helpers the other
//! stages share (stack memo, thread names, seconds).

use std::collections::HashMap;

use profiler_common::threads::{
    BlockKey, EVIDENCE_OWNER_FIELD, EVIDENCE_WAKER, Edge, EdgeKey, HolderKey, LockStats,
    LockWaitKey, Tally, ThreadStats,
};

use crate::report::Frame;

/// What `kernel.rs` reads from the maps at the end (tids are the kernel's thread ids).
#[derive(Default)]
pub(crate) struct Harvest {
    /// Slots with `tid != 0`.
    pub threads: Vec<ThreadStats>,
    /// `StackTrace`s by hash -> ips (absolute addresses, innermost first).
    pub stacks: HashMap<u64, Vec<u64>>,
    pub blocks: Vec<(BlockKey, Tally)>,
    pub locks: Vec<(u64, LockStats)>,
    pub waits: Vec<(LockWaitKey, Tally)>,
    pub holders: Vec<(HolderKey, Tally)>,
    pub edges: Vec<(EdgeKey, Edge)>,
    /// Where a lock on the heap was allocated (lock address -> the allocation's stack), when
    /// the memory family ran and still tracks the block.
    pub allocated: HashMap<u64, Vec<u64>>,
    /// `bpf_ktime_get_ns()` when the maps were read: closes the intervals still running (a
    /// thread on CPU, blocked, or runnable at the end).
    pub end_ktime_ns: u64,
}

/// What the analyzer needs from outside (implemented by the family with the real symbolizer
/// and /proc), so that the analysis itself stays pure and testable.
pub(crate) trait Resolve {
    /// The symbolized stack of `ips` (innermost first).
    fn frames(&mut self, ips: &[u64]) -> Vec<Frame>;
    /// The thread's /proc name while it is alive, else None (the analyzer then uses the
    /// `comm` the kernel recorded).
    fn thread_name(&self, tid: u32) -> Option<String>;
    /// The static a lock address is in, as `symbol` or `symbol+offset`.
    fn lock_symbol(&mut self, addr: u64) -> Option<String>;
    /// Whether the thread exited while profiled.
    fn exited(&self, tid: u32) -> bool;
    /// The frames of a Python stack (the python family's), named, innermost first.
    fn python_frames(&mut self, _hash: u64) -> Vec<crate::families::python::code::Named> {
        Vec::new()
    }
}

/// The family's options, as the command line set them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Options {
    /// `--min-block`, ns (the kernel applies it; the report states it).
    pub min_block_ns: u64,
    /// `--deadlock-after`, ns.
    pub deadlock_after_ns: u64,
    /// Stacks kept per thread (blocking) and per lock (waiting), largest first.
    pub top_stacks: usize,
}

/// 1 ms, 1 s and 5: what tests use; the command line's defaults are its own to set.
impl Default for Options {
    fn default() -> Self {
        Self {
            min_block_ns: 1_000_000,
            deadlock_after_ns: 1_000_000_000,
            top_stacks: 5,
        }
    }
}

/// Nanoseconds -> the report's seconds.
pub(crate) fn secs(ns: u64) -> f64 {
    ns as f64 / 1e9
}

/// A lock address as the report writes it.
pub(crate) fn hex(addr: u64) -> String {
    format!("{addr:#x}")
}

/// The report's name of an [`EVIDENCE_OWNER_FIELD`] / [`EVIDENCE_WAKER`] value.
pub(crate) fn evidence_name(evidence: u32) -> &'static str {
    match evidence {
        EVIDENCE_OWNER_FIELD => "owner_field",
        EVIDENCE_WAKER => "waker",
        _ => "unknown",
    }
}

/// What every stage works with: the harvest, the resolver, the options, and the memos of
/// symbolized stacks and thread names.
pub(crate) struct Ctx<'a> {
    pub h: &'a Harvest,
    pub r: &'a mut dyn Resolve,
    pub o: &'a Options,
    /// Stacks symbolized once each: the same stack is shown by a thread, a lock, a holder and
    /// a deadlock edge, and classifying a wait needs its frames too.
    frames: HashMap<u64, Vec<Frame>>,
    /// The `comm` the kernel recorded at each thread's first switch-out: an exited thread's
    /// name is only known that way.
    comms: HashMap<u32, String>,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(h: &'a Harvest, r: &'a mut dyn Resolve, o: &'a Options) -> Self {
        let comms = h
            .threads
            .iter()
            .map(|t| (t.tid as u32, comm_string(&t.comm)))
            .collect();
        Self {
            h,
            r,
            o,
            frames: HashMap::new(),
            comms,
        }
    }

    /// The frames of stack `hash`; empty for 0 (no stack) or a stack the map lost.
    pub(crate) fn frames(&mut self, hash: u64) -> Vec<Frame> {
        if hash == 0 {
            return Vec::new();
        }
        if let Some(frames) = self.frames.get(&hash) {
            return frames.clone();
        }
        let frames = match self.h.stacks.get(&hash) {
            Some(ips) if !ips.is_empty() => self.r.frames(ips),
            _ => Vec::new(),
        };
        self.frames.insert(hash, frames.clone());
        frames
    }

    /// The frames of stack `hash` with the Python frames of Python stack `python` spliced in
    /// where it passes through the interpreter's eval loop.
    pub(crate) fn frames_with_python(&mut self, hash: u64, python: u64) -> Vec<Frame> {
        let native = self.frames(hash);
        if python == 0 {
            return native;
        }
        let python = self.r.python_frames(python);
        crate::families::python::splice::splice(
            native,
            python,
            |f| f.function == crate::families::python::splice::EVAL_FRAME,
            |n| n.frame,
        )
    }

    /// The name of `tid`: /proc while it lives, else its recorded `comm`, else "?".
    pub(crate) fn name(&self, tid: u32) -> String {
        self.r
            .thread_name(tid)
            .or_else(|| self.comms.get(&tid).filter(|c| !c.is_empty()).cloned())
            .unwrap_or_else(|| "?".into())
    }
}

/// A kernel `comm` (NUL-padded bytes) as text.
pub(crate) fn comm_string(comm: &[u8; 16]) -> String {
    let len = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(&comm[..len]).into_owned()
}
