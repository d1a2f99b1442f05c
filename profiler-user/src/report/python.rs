//! The `python` section: the interpreter found in the target, how its frames were walked, and
//! the exceptions it raised, counted exactly per (type, raising line).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::Frame;

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct PythonSection {
    /// The interpreter: null when the target is not CPython, or runs a version whose frames are
    /// not walked (`unsupported` then says which).
    pub interpreter: Option<InterpreterInfo>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub unsupported: Option<String>,
    /// Python threads seen (thread states of the interpreter's list, over the run).
    pub threads: usize,
    pub walks: WalkStats,
    pub exceptions: ExceptionStats,
    /// pymalloc's blocks per Python line (with the memory family: `--level memory` or `full`);
    /// null without it.
    pub allocations: Option<AllocationStats>,
}

/// Blocks of `PyObject_Malloc`, `_Calloc` and `_Realloc` per Python line, tracked until
/// `PyObject_Free`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AllocationStats {
    /// The probes, as for the exceptions.
    pub probes: Vec<ProbeSite>,
    /// Blocks allocated, and tracked blocks freed; `PyObject_Free` calls (of untracked blocks
    /// too: those from before the probes).
    pub allocations: u64,
    pub frees: u64,
    pub free_calls: u64,
    /// Blocks not tracked (the kernel's map full): counted, never outstanding.
    pub untracked: u64,
    /// Allocations charged to no site (the kernel's map of sites full).
    pub unattributed: u64,
    /// Bytes outstanding at the end, all sites.
    pub outstanding_bytes: i64,
    /// Per Python line (the innermost frame), the most grown (`peak_bytes`) first; at most 20.
    pub sites: Vec<AllocSite>,
    pub sites_dropped: usize,
    /// The overhead budget took the probes down: counts stop there.
    pub detached: bool,
    /// Set when the probes saw few of the frees (fewer than a quarter of the allocations): a
    /// build that inlines pymalloc into its hot paths (LTO), whose probes see part of the
    /// allocations and frees; outstanding bytes are then overstated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partial: Option<String>,
    /// What the numbers mean, and do not.
    pub note: Cow<'static, str>,
}

/// The blocks allocated at one Python line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct AllocSite {
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// The most bytes outstanding at once: the growth (a program's end frees what it kept; the
    /// peaks of the site's stacks, added).
    pub peak_bytes: i64,
    /// Outstanding at the end (blocks from before the probes are not counted, nor their frees).
    pub outstanding_bytes: i64,
    pub outstanding_blocks: i64,
    pub allocated_bytes: u64,
    pub allocations: u64,
    /// The Python stack of the site's largest stack, innermost first.
    pub stack: Vec<Frame>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct InterpreterInfo {
    /// The object that holds the interpreter (the executable, or `libpython3.X.so`).
    pub path: String,
    /// `3.11.7` (from `Py_Version`), or `3.11` (from the file name).
    pub version: String,
    /// Where the struct offsets came from: `_Py_DebugOffsets` (3.13+) or `built-in table`.
    pub offsets: String,
    /// The exception probes, where the interpreter has the functions: `_PyErr_SetObject` (or
    /// the part of it a compiler split off), and `PyErr_Display` and `_PyErr_Display` for the
    /// unhandled ones.
    pub raise_probe: Option<ProbeSite>,
    pub uncaught_probes: Vec<ProbeSite>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ProbeSite {
    pub function: String,
    /// The instruction the probe is on, and its cost class (`emulated`: about 1 µs a hit;
    /// `single_stepped`: 12 to 22 µs).
    pub instruction: String,
    pub cost_class: String,
}

/// How the Python stacks were walked (in CPU samples and at raises).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct WalkStats {
    /// Python stacks walked, and their frames.
    pub stacks: u64,
    pub frames: u64,
    /// Walks cut at 64 frames (the innermost 64 are kept).
    pub depth_cut: u64,
    /// Walks stopped by a read of the target's memory that failed (a frame being torn down).
    pub read_failed: u64,
    /// CPU samples of the target's threads that have no Python thread state (native threads,
    /// or a thread in its first 20 ms, before the list is read again).
    pub samples_without_thread_state: u64,
    /// Distinct stacks, and code objects named.
    pub distinct_stacks: usize,
    pub code_objects: usize,
    /// Stacks the kernel could not store (its map full).
    pub stack_map_full: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct ExceptionStats {
    /// Exceptions raised, counted exactly (every `_PyErr_SetObject`, caught or not).
    pub raised: u64,
    /// Of them, those the interpreter reported as unhandled (printed by `sys.excepthook` or a
    /// thread's excepthook).
    pub uncaught: u64,
    /// Per (type, raising line), most raised first.
    pub sites: Vec<RaiseSite>,
    /// Sites left out of `sites` (the bound is 50).
    pub sites_dropped: usize,
    /// Raises not counted per site because the kernel's map was full (in `raised` still).
    pub map_full: u64,
    /// Details (messages, unhandled reports) lost to a full ring buffer.
    pub events_lost: u64,
    /// Whether the overhead budget took the exception probes down (counts stop there).
    pub detached: bool,
}

/// An exception type raised at one line.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct RaiseSite {
    /// The type's name (`KeyError`, `mymodule.MyError`).
    pub exception: String,
    /// The innermost Python frame: the function raising it (or calling the C code that did).
    pub function: String,
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Raised here, exactly.
    pub raised: u64,
    /// Reported unhandled, and the rest (handled, or still propagating at the end).
    pub uncaught: u64,
    pub caught: u64,
    /// The message of the first raises (a str argument; `<int>` names a key of another type).
    pub message: Option<String>,
    /// The Python stack of the first stack seen here, innermost first.
    pub stack: Vec<Frame>,
}
