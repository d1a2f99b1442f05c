//! Where CPython keeps what the profiler reads: the offsets of the runtime's, the thread
//! states', the frames' and the code objects' fields, per version.
//!
//! 3.13 and later describe themselves: `_PyRuntime` begins with `_Py_DebugOffsets` (cookie
//! `xdebugpy`), read from the target. 3.10 to 3.12 do not, and their offsets come from the
//! built-in table below, checked against the installed interpreters' own headers by the tests
//! (`python_layouts_match_the_headers`).

use profiler_common::python::{FRAME_READ, NONE, PyConfig, layout, thread_key};

/// The offsets of one interpreter version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Layout {
    /// (major, minor).
    pub version: (u8, u8),
    /// Where the offsets came from.
    pub source: &'static str,
    /// In `_PyRuntimeState`: `interpreters.head`.
    pub runtime_interpreters_head: u64,
    /// In `PyInterpreterState`: `threads.head`.
    pub interp_threads_head: u64,
    /// In `PyThreadState`: `next`, and the field the kernel finds a thread's state by
    /// (`native_thread_id`, 3.11+; `thread_id`, its `pthread_t`, 3.10), and which it is
    /// (`profiler_common::python::thread_key`).
    pub tstate_next: u64,
    pub tstate_key: u64,
    pub thread_key: u32,
    /// What the kernel's walk reads (see [`PyConfig`]).
    pub frame_kind: u32,
    pub tstate_frame: u32,
    pub cframe_frame: u32,
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_instr: u32,
    pub frame_entry: u32,
    pub frame_owner: u32,
    pub owner_cstack: u32,
    /// In `PyCodeObject`.
    pub code_filename: u64,
    pub code_name: u64,
    pub code_qualname: u64,
    pub code_firstlineno: u64,
    pub code_linetable: u64,
    pub code_adaptive: u64,
    /// `sizeof(PyASCIIObject)` and `sizeof(PyCompactUnicodeObject)`.
    pub ascii_data: u32,
    pub compact_data: u32,
}

/// The versions this build walks.
pub(crate) const SUPPORTED: &str = "3.10, 3.11, 3.12 and 3.13";

/// `_PyInterpreterFrame.owner` of a frame the C stack owns (3.12, 3.13).
const FRAME_OWNED_BY_CSTACK: u32 = 3;

/// The built-in table: the layout of 3.`minor` (x86-64, the default build).
pub(crate) fn builtin(minor: u8) -> Option<Layout> {
    let common = Layout {
        version: (3, minor),
        source: "built-in table",
        runtime_interpreters_head: 40,
        interp_threads_head: 0,
        tstate_next: 8,
        tstate_key: 0,
        thread_key: thread_key::TID,
        frame_kind: layout::INTERPRETER_FRAME,
        tstate_frame: 56,
        cframe_frame: 0,
        frame_code: 0,
        frame_previous: 8,
        frame_instr: 56,
        frame_entry: NONE,
        frame_owner: NONE,
        owner_cstack: 0,
        code_filename: 112,
        code_name: 120,
        code_qualname: 128,
        code_firstlineno: 0,
        code_linetable: 136,
        code_adaptive: 0,
        ascii_data: 48,
        compact_data: 72,
    };
    match minor {
        10 => Some(Layout {
            runtime_interpreters_head: 32,
            interp_threads_head: 8,
            tstate_key: 176,
            thread_key: thread_key::FSBASE,
            frame_kind: layout::FRAME_OBJECT,
            tstate_frame: 24,
            cframe_frame: NONE,
            frame_code: 32,
            frame_previous: 24,
            frame_instr: 96,
            code_filename: 104,
            code_name: 112,
            // 3.10 has no qualified name: the name.
            code_qualname: 112,
            code_firstlineno: 40,
            code_linetable: 120,
            ..common
        }),
        11 => Some(Layout {
            interp_threads_head: 16,
            tstate_key: 160,
            cframe_frame: 8,
            frame_code: 32,
            frame_previous: 48,
            frame_instr: 56,
            frame_entry: 68,
            code_firstlineno: 72,
            code_adaptive: 184,
            ..common
        }),
        12 => Some(Layout {
            interp_threads_head: 72,
            tstate_key: 144,
            cframe_frame: 0,
            frame_owner: 70,
            owner_cstack: FRAME_OWNED_BY_CSTACK,
            code_firstlineno: 68,
            code_adaptive: 192,
            ascii_data: 40,
            compact_data: 56,
            ..common
        }),
        _ => None,
    }
}

/// `_Py_DebugOffsets`' cookie.
pub(crate) const DEBUG_COOKIE: &[u8; 8] = b"xdebugpy";

/// Bytes of `_Py_DebugOffsets` read (3.13's is 584).
pub(crate) const DEBUG_OFFSETS_BYTES: usize = 584;

/// The layout `_Py_DebugOffsets` describes (3.13), from its bytes; None when they are not one
/// (no cookie), or of a version whose struct this build does not know.
pub(crate) fn from_debug_offsets(bytes: &[u8]) -> Option<Layout> {
    if bytes.len() < DEBUG_OFFSETS_BYTES || &bytes[..8] != DEBUG_COOKIE {
        return None;
    }
    let at = |offset: usize| u64::from_le_bytes(bytes[offset..offset + 8].try_into().unwrap());
    let version = at(8);
    let (major, minor) = ((version >> 24) as u8, (version >> 16) as u8);
    // The struct's own layout changes between versions: 3.13's is the one known here; a free
    // threaded build lays its objects out otherwise.
    if (major, minor) != (3, 13) || at(16) != 0 {
        return None;
    }
    let small = |offset: usize| u32::try_from(at(offset)).ok();
    let ascii = small(560)?;
    // The walk reads each frame's first FRAME_READ bytes: every field it takes must lie there.
    let in_frame = |offset: usize, size: usize| -> Option<u32> {
        small(offset).filter(|&o| o as usize + size <= FRAME_READ)
    };
    in_frame(232, 8)?;
    in_frame(240, 8)?;
    in_frame(248, 8)?;
    in_frame(264, 1)?;
    Some(Layout {
        version: (major, minor),
        source: "_Py_DebugOffsets",
        runtime_interpreters_head: at(40),
        interp_threads_head: at(72),
        tstate_next: at(168),
        tstate_key: at(200),
        thread_key: thread_key::TID,
        frame_kind: layout::INTERPRETER_FRAME,
        tstate_frame: small(184)?,
        cframe_frame: NONE,
        frame_code: small(240)?,
        frame_previous: small(232)?,
        frame_instr: small(248)?,
        frame_entry: NONE,
        frame_owner: small(264)?,
        owner_cstack: FRAME_OWNED_BY_CSTACK,
        code_filename: at(280),
        code_name: at(288),
        code_qualname: at(296),
        code_firstlineno: at(312),
        code_linetable: at(304),
        code_adaptive: at(344),
        ascii_data: ascii,
        // PyCompactUnicodeObject: PyASCIIObject, then utf8_length and utf8.
        compact_data: ascii + 16,
    })
}

impl Layout {
    /// Bytes of a frame the walk reads: up to the end of the last field it takes (a word, or
    /// the `is_entry` / `owner` byte).
    pub(crate) fn frame_read(&self) -> u32 {
        let words = [self.frame_code, self.frame_previous, self.frame_instr]
            .into_iter()
            .map(|o| o + 8);
        let bytes = [self.frame_entry, self.frame_owner]
            .into_iter()
            .filter(|o| *o != NONE)
            .map(|o| o + 1);
        words.chain(bytes).max().unwrap_or(0).min(FRAME_READ as u32)
    }

    /// The kernel's configuration.
    pub(crate) fn config(&self) -> PyConfig {
        PyConfig {
            enabled: 1,
            layout: self.frame_kind,
            tstate_frame: self.tstate_frame,
            cframe_frame: self.cframe_frame,
            frame_code: self.frame_code,
            frame_previous: self.frame_previous,
            frame_instr: self.frame_instr,
            frame_entry: self.frame_entry,
            frame_owner: self.frame_owner,
            owner_cstack: self.owner_cstack,
            exception_args: 24,
            tuple_items: 24,
            type_flags: 168,
            ascii_data: self.ascii_data,
            compact_data: self.compact_data,
            code_qualname: self.code_qualname as u32,
            code_filename: self.code_filename as u32,
            code_linetable: self.code_linetable as u32,
            code_firstlineno: self.code_firstlineno as u32,
            thread_key: self.thread_key,
            frame_read: self.frame_read(),
            _pad: 0,
        }
    }
}

#[cfg(test)]
#[path = "layout_tests.rs"]
mod tests;
