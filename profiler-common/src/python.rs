//! The `python` family: the Python frames of a CPython target, walked in the kernel wherever a
//! family takes a stack (CPU samples first), and the exceptions it raises, counted exactly per
//! (type, Python stack) by a uprobe on the interpreter's `_PyErr_SetObject`.
//!
//! # How a thread's Python frames are found
//! The user side finds the interpreter (the executable or a mapped `libpython3.X.so`), its
//! version and its struct offsets ([`PyConfig`]), and keeps `PY_THREADS` (thread id -> its
//! `PyThreadState`) up to date from the interpreter's own list of thread states. The walk starts
//! at the thread state's current frame and follows `previous` (3.11+, `_PyInterpreterFrame`) or
//! `f_back` (3.10, `PyFrameObject`), keeping per frame its code object and instruction pointer
//! ([`PyFrame`]); the user side names them (qualified name, file, line) by reading the code
//! objects, and splices them into the native stack where it passes through the interpreter's
//! `_PyEval_EvalFrameDefault`.

use crate::threads::{STACK_HASH_SEED, stack_hash_step};

/// Slots of the per-CPU `PY_SCRATCH`: the walk of a perf event or a uprobe program, and that
/// of a tracepoint program (which a perf event can interrupt on its CPU).
pub const SCRATCH_SAMPLE: u32 = 0;
pub const SCRATCH_TRACEPOINT: u32 = 1;

/// Most Python frames one stack keeps (innermost first).
pub const PY_STACK_DEPTH: usize = 64;

/// Most Python frames an allocation's stack keeps: a site is its innermost line, and fewer
/// frames make fewer distinct stacks (an import's allocations have deep ones).
pub const ALLOC_STACK_DEPTH: usize = 16;

/// Map capacities.
pub const PY_THREADS_MAX: u32 = 1 << 13;
pub const PY_STACKS_MAX: u32 = 1 << 14;
pub const PY_RAISES_MAX: u32 = 1 << 13;
pub const PY_CODES_MAX: u32 = 1 << 14;
/// Blocks of pymalloc tracked at once, and Python stacks they are charged to.
pub const PY_ALLOC_LIVE_MAX: u32 = 1 << 19;
pub const PY_ALLOC_SITES_MAX: u32 = 1 << 16;

/// An offset the interpreter's layout does not have.
pub const NONE: u32 = u32::MAX;

/// Bytes of a frame the walk reads at once: every field it takes lies in them (3.10's
/// `PyFrameObject.f_lasti` at 96 is the farthest; a 3.11+ `_PyInterpreterFrame` is 80 bytes, and
/// its locals follow it). The user side checks a layout's offsets against it.
pub const FRAME_READ: usize = 112;

/// How `PY_THREADS` is keyed ([`PyConfig::thread_key`]).
pub mod thread_key {
    /// By thread id (`PyThreadState.native_thread_id`, 3.11+).
    pub const TID: u32 = 0;
    /// By the thread's `pthread_t`, which is its `fs` base (`PyThreadState.thread_id`, 3.10,
    /// which keeps no thread id): the kernel reads the current task's `thread.fsbase`.
    pub const FSBASE: u32 = 1;
}

/// How the interpreter lays its frames out ([`PyConfig::layout`]).
pub mod layout {
    /// 3.10: `PyFrameObject`s, each evaluated by a call of its own to
    /// `_PyEval_EvalFrameDefault`; the instruction is `f_lasti`, an `int` (code units).
    pub const FRAME_OBJECT: u32 = 1;
    /// 3.11 and later: `_PyInterpreterFrame`s, several to one call of
    /// `_PyEval_EvalFrameDefault`; the instruction is a pointer into the code object.
    pub const INTERPRETER_FRAME: u32 = 2;
}

/// Flag bits kept in the low bits of [`PyFrame::code`] (an object pointer, 8-byte aligned).
pub mod frame_flag {
    /// The frame began its call of `_PyEval_EvalFrameDefault` (3.11 `is_entry`; every 3.10
    /// frame): the frames from the last such one up to it belong to one native eval frame.
    pub const ENTRY: u64 = 1;
    /// A frame the interpreter pushes for a C call (3.12+, owned by the C stack): it ends the
    /// frames of one native eval frame, and is not shown.
    pub const SHIM: u64 = 2;
    pub const MASK: u64 = 7;
}

/// Entry 0 of `PY_CONFIG`: where the walk finds things in the target's interpreter: offsets
/// only, so that the user side can write it from the interpreter's file, before the target maps
/// it (`enabled` 0 until then: the walk does nothing).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyConfig {
    pub enabled: u32,
    /// [`layout`].
    pub layout: u32,
    /// In `PyThreadState`: the field that leads to the current frame (`cframe` 3.11–3.12,
    /// `current_frame` 3.13+, `frame` 3.10).
    pub tstate_frame: u32,
    /// In `_PyCFrame`: `current_frame` (3.11–3.12); [`NONE`] where `tstate_frame` points at the
    /// frame itself.
    pub cframe_frame: u32,
    /// In the frame: its code object (`f_code`, `f_executable`), the next frame out
    /// (`previous`, `f_back`) and the instruction (`prev_instr`, `instr_ptr`, `f_lasti`).
    pub frame_code: u32,
    pub frame_previous: u32,
    pub frame_instr: u32,
    /// In the frame: `is_entry` (3.11), a byte; [`NONE`] otherwise.
    pub frame_entry: u32,
    /// In the frame: `owner` (3.12+), a byte, and the value that marks a C-stack shim frame;
    /// [`NONE`] otherwise.
    pub frame_owner: u32,
    pub owner_cstack: u32,
    /// Object layout, for the messages of exceptions: `PyBaseExceptionObject.args`,
    /// `PyTupleObject.ob_item`, `PyTypeObject.tp_flags`, and the data of a compact ASCII string
    /// (`sizeof(PyASCIIObject)`) and of a compact one (`sizeof(PyCompactUnicodeObject)`).
    pub exception_args: u32,
    pub tuple_items: u32,
    pub type_flags: u32,
    pub ascii_data: u32,
    pub compact_data: u32,
    /// In `PyCodeObject`: `co_qualname`, `co_filename`, `co_linetable` and `co_firstlineno`
    /// (the kernel sends a new code object's names with the first stack it is in).
    pub code_qualname: u32,
    pub code_filename: u32,
    pub code_linetable: u32,
    pub code_firstlineno: u32,
    /// [`thread_key`].
    pub thread_key: u32,
    /// Bytes of a frame the walk reads (at most [`FRAME_READ`]): up to the last field it takes.
    pub frame_read: u32,
    pub _pad: u32,
}

const _: () = assert!(core::mem::size_of::<PyConfig>() == 88);

/// Globals of the kernel programs, set by the loader.
pub mod globals {
    /// The offset of `thread.fsbase` in the kernel's `task_struct` (from its BTF; `u32::MAX`:
    /// unknown, and 3.10's threads are not found).
    pub const FSBASE_OFFSET: &str = "PY_FSBASE_OFFSET";
}

/// `tp_flags` bits that say what an object is (the interpreter's own fast checks:
/// `PyTuple_Check`, `PyUnicode_Check`, `PyExceptionInstance_Check`), the same in every version:
/// the walk needs no address of the target's types.
pub mod type_flag {
    pub const TUPLE: u64 = 1 << 26;
    pub const UNICODE: u64 = 1 << 28;
    pub const BASE_EXCEPTION: u64 = 1 << 30;
}

/// One Python frame: its code object (with [`frame_flag`] bits in the low bits) and its
/// instruction (a pointer into the code, or 3.10's `f_lasti`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct PyFrame {
    pub code: u64,
    pub instr: u64,
}

impl PyFrame {
    pub const fn code_object(&self) -> u64 {
        self.code & !frame_flag::MASK
    }
    pub const fn flags(&self) -> u64 {
        self.code & frame_flag::MASK
    }
}

/// A Python stack (value of `PY_STACKS`, keyed by [`py_stack_hash`] of its frames), innermost
/// frame first.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyStack {
    pub len: u64,
    pub frames: [PyFrame; PY_STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<PyStack>() == 8 + 16 * PY_STACK_DEPTH);

/// The hash of a Python stack, as both sides compute it (never 0).
pub fn py_stack_hash(frames: &[PyFrame]) -> u64 {
    let mut h = STACK_HASH_SEED;
    for f in frames {
        h = stack_hash_step(h, f.code);
        h = stack_hash_step(h, f.instr);
    }
    if h == 0 { 1 } else { h }
}

/// A Python stack stored for the first time: sent so that the user side names its code objects
/// while they are alive (one whose function was defined at run time can be freed by the end).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyStackEvent {
    pub header: crate::event::EventHeader,
    pub hash: u64,
    pub stack: PyStack,
}

/// Bytes of a code object's qualified name, file name and line table a [`PyCodeEvent`] carries.
pub const CODE_NAME_BYTES: usize = 96;
pub const CODE_FILE_BYTES: usize = 160;
pub const CODE_TABLE_BYTES: usize = 768;

/// A `*_len` of [`PyCodeEvent`] for a string that was not copied (not compact ASCII).
pub const NOT_COPIED: u32 = u32::MAX;

/// A code object seen for the first time (or another one at its address since), sent before
/// the stack it is in: its names and line table, copied in the kernel, so that a frame is named
/// even when its code object is freed before the user side reads it (a program that ends right
/// after its last new stack).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PyCodeEvent {
    pub header: crate::event::EventHeader,
    pub code: u64,
    /// The addresses of its `co_qualname`, `co_filename` and `co_linetable`, and its
    /// `co_firstlineno`: what tells it from another code object at the same address.
    pub identity: [u64; 4],
    /// Bytes copied of each ([`NOT_COPIED`]: not); the line table's whole size.
    pub name_len: u32,
    pub file_len: u32,
    pub table_len: u32,
    pub table_size: u32,
    pub name: [u8; CODE_NAME_BYTES],
    pub file: [u8; CODE_FILE_BYTES],
    pub table: [u8; CODE_TABLE_BYTES],
}

/// Key of `PY_RAISES`: an exception type raised at a Python stack. The value is the count.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct RaiseKey {
    /// The exception type (a type object's address).
    pub exc_type: u64,
    /// The Python stack's hash in `PY_STACKS` (0: none could be taken).
    pub stack: u64,
}

/// Bytes of an exception's message a [`RaiseEvent`] copies.
pub const MESSAGE_BYTES: usize = 120;

/// Raises of one [`RaiseKey`] sent with their details; later ones are only counted.
pub const DETAILED_PER_KEY: u64 = 4;

/// An exception raised (the first [`DETAILED_PER_KEY`] of each key), or one the interpreter
/// reported as unhandled (`uncaught`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RaiseEvent {
    pub header: crate::event::EventHeader,
    pub key: RaiseKey,
    /// 1: the interpreter printed it as unhandled (`_PyErr_Display`); `key` is then the last
    /// raise of its type on the thread (`stack` 0 where that was another type).
    pub uncaught: u32,
    /// How the message was read: 0 none, 1 a str's ASCII bytes, 2 a str of 1-byte characters
    /// (Latin-1), 3 a str of 2-byte ones, 4 a str of 4-byte ones; `len` bytes of it.
    pub message_kind: u32,
    pub len: u32,
    pub _pad: u32,
    /// The type of the exception's first argument where it is not a str (a `KeyError` of an
    /// int key): a type object's address, 0 otherwise.
    pub arg_type: u64,
    pub message: [u8; MESSAGE_BYTES],
}

const _: () = assert!(core::mem::size_of::<RaiseEvent>() == 24 + 16 + 16 + 8 + MESSAGE_BYTES);

/// Raises of a thread kept for the unhandled report: between an exception's raise and its
/// report the interpreter may raise (and catch) others on the way (3.11's thread excepthook
/// does), so the report looks for the last raise of its type among these.
pub const LAST_RAISES: usize = 8;

/// The last raises of each thread (value of `PY_LAST_RAISE`), for the unhandled report.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LastRaise {
    /// A ring: `next` is where the next raise goes.
    pub keys: [RaiseKey; LAST_RAISES],
    pub next: u64,
    /// The exception last reported unhandled on the thread (an object's address): the public
    /// `PyErr_Display` calls `_PyErr_Display` with it, and both are probed.
    pub displayed: u64,
}

/// Attach cookies of the unhandled probe: which argument holds the exception.
pub mod display {
    /// `PyErr_Display(type, value, traceback)`.
    pub const PUBLIC: u64 = 1;
    /// `_PyErr_Display(file, type, value, traceback)`.
    pub const INTERNAL: u64 = 2;
}

/// A block `PyObject_Malloc` (or `_Calloc`, `_Realloc`) returned, tracked until
/// `PyObject_Free` (value of `PY_ALLOC_LIVE`, keyed by its address).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyBlock {
    pub size: u64,
    /// The Python stack that allocated it (0: none).
    pub stack: u64,
}

/// What an allocating call was asked, between its entry and its return (value of
/// `PY_ALLOC_PENDING`, keyed by thread id).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PyPending {
    pub size: u64,
    /// The block a realloc was given (0: none).
    pub old: u64,
}

/// The blocks of one Python stack (value of `PY_ALLOC_SITES`): outstanding now (signed: a block
/// freed through another stack's realloc is taken from this one), and allocated in all.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PySiteStats {
    pub live_bytes: i64,
    pub live_blocks: i64,
    pub allocated_bytes: u64,
    pub allocations: u64,
    /// The most `live_bytes` has been (a program's end frees what it kept: the peak is its
    /// growth).
    pub peak_bytes: i64,
}

/// Slots of the per-CPU `PY_COUNTS` array.
pub mod count {
    /// Python stacks walked (a CPU sample of a thread with a Python thread state, or a raise).
    pub const WALKS: u32 = 0;
    /// Python frames walked.
    pub const FRAMES: u32 = 1;
    /// Walks cut at [`super::PY_STACK_DEPTH`] frames.
    pub const DEPTH_CUT: u32 = 2;
    /// Walks stopped by a read of the target's memory that failed.
    pub const READ_FAILED: u32 = 3;
    /// Stacks not stored (`PY_STACKS` full).
    pub const STACK_MAP_FULL: u32 = 4;
    /// Exceptions raised (every one, counted here as in `PY_RAISES`).
    pub const RAISES: u32 = 5;
    /// Raises not counted per key (`PY_RAISES` full).
    pub const RAISE_MAP_FULL: u32 = 6;
    /// Records the ring buffer had no room for.
    pub const EVENTS_LOST: u32 = 7;
    /// Exceptions reported unhandled.
    pub const UNCAUGHT: u32 = 8;
    /// CPU samples of threads with no known thread state (not Python threads, or not listed yet).
    pub const NO_THREAD_STATE: u32 = 9;
    /// pymalloc blocks allocated (`PyObject_Malloc`, `_Calloc`, `_Realloc` returning one) and
    /// freed (`PyObject_Free` of a tracked block, or a realloc's old block).
    pub const ALLOCS: u32 = 10;
    pub const FREES: u32 = 11;
    /// Blocks not tracked (`PY_ALLOC_LIVE` full): their bytes are counted when allocated only.
    pub const LIVE_FULL: u32 = 12;
    /// Calls of `PyObject_Free` (tracked or not: a block of before the probes is not).
    pub const FREE_CALLS: u32 = 13;
    /// Allocations not charged to their stack (`PY_ALLOC_SITES` full).
    pub const SITE_MAP_FULL: u32 = 14;
    /// Slots of the array.
    pub const SLOTS: u32 = 15;
}

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// [`super::PyConfig`] at index 0.
    pub const PY_CONFIG: &str = "PY_CONFIG";
    /// `PyThreadState` address by thread id (or `pthread_t`, see [`super::thread_key`]).
    pub const PY_THREADS: &str = "PY_THREADS";
    /// [`super::PyStack`] by hash.
    pub const PY_STACKS: &str = "PY_STACKS";
    /// Raise counts by [`super::RaiseKey`].
    pub const PY_RAISES: &str = "PY_RAISES";
    /// [`super::LastRaise`] by thread id.
    pub const PY_LAST_RAISE: &str = "PY_LAST_RAISE";
    /// The identity (a hash of [`super::PyCodeEvent::identity`]) of each code object sent, by
    /// address.
    pub const PY_CODES: &str = "PY_CODES";
    /// [`super::PyBlock`] by address.
    pub const PY_ALLOC_LIVE: &str = "PY_ALLOC_LIVE";
    /// [`super::PyPending`] by thread id.
    pub const PY_ALLOC_PENDING: &str = "PY_ALLOC_PENDING";
    /// [`super::PySiteStats`] by Python stack.
    pub const PY_ALLOC_SITES: &str = "PY_ALLOC_SITES";
    /// Per-CPU counts by [`super::count`].
    pub const PY_COUNTS: &str = "PY_COUNTS";
    /// Per-CPU scratch of the walk (kernel side only).
    pub const PY_SCRATCH: &str = "PY_SCRATCH";
}

/// Program names in the eBPF object.
pub mod programs {
    /// Uprobe on `_PyErr_SetObject(tstate, type, value)`.
    pub const RAISE: &str = "py_raise";
    /// Uprobe on `PyErr_Display(type, value, traceback)` and `_PyErr_Display(file, type, value,
    /// traceback)` (the attach cookie says which, see [`super::display`]).
    pub const UNCAUGHT: &str = "py_uncaught";
    /// Uprobe on `PyObject_Malloc(size)`, `PyObject_Calloc(n, size)` and `PyObject_Realloc(ptr,
    /// size)` (the attach cookie says which, see [`super::alloc`]).
    pub const ALLOC: &str = "py_alloc";
    /// Their return probe.
    pub const ALLOC_RETURN: &str = "py_alloc_return";
    /// Uprobe on `PyObject_Free(ptr)`.
    pub const FREE: &str = "py_free";
}

/// Attach cookies of [`programs::ALLOC`].
pub mod alloc {
    pub const MALLOC: u64 = 1;
    pub const CALLOC: u64 = 2;
    pub const REALLOC: u64 = 3;
}

pub const MAPS: &[&str] = &[
    maps::PY_CONFIG,
    maps::PY_THREADS,
    maps::PY_STACKS,
    maps::PY_RAISES,
    maps::PY_LAST_RAISE,
    maps::PY_CODES,
    maps::PY_ALLOC_LIVE,
    maps::PY_ALLOC_PENDING,
    maps::PY_ALLOC_SITES,
    maps::PY_COUNTS,
    maps::PY_SCRATCH,
];

pub const PROGRAMS: &[&str] = &[
    programs::RAISE,
    programs::UNCAUGHT,
    programs::ALLOC,
    programs::ALLOC_RETURN,
    programs::FREE,
];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for PyConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PyFrame {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PyStack {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RaiseKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for LastRaise {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PyBlock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PySiteStats {}
}
