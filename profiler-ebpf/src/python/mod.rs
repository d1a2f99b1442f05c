//! The `python` family: the Python frames of a CPython target's thread, walked from its thread
//! state (see `profiler_common::python`), for the CPU samples (`sample_stack`) and at every
//! exception the interpreter raises (`py_raise`, a uprobe on `_PyErr_SetObject`), which is
//! counted exactly per (type, Python stack), the first few of each with their message; and the
//! exceptions it reports unhandled (`py_uncaught`, on `_PyErr_Display`).
//!
//! The walk is a `bpf_loop` over frames, its state in a per-CPU scratch value, as the cpu
//! family's native walk. The perf event program and the uprobes never run nested on one CPU (the
//! kernel skips a perf event program while a uprobe program runs there), so they share it.

use aya_ebpf::{
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_current_task, bpf_probe_read_kernel, bpf_probe_read_user,
        generated::{
            bpf_loop, bpf_probe_read_kernel as read_kernel_raw,
            bpf_probe_read_user as read_user_raw,
        },
    },
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
};
use profiler_common::{
    event::{EventHeader, EventKind},
    python::{
        FRAME_READ, LastRaise, NONE, PY_STACK_DEPTH, PyBlock, PyConfig, PyFrame, PyPending,
        PySiteStats, PyStack, PyStackEvent, RaiseKey, SCRATCH_SAMPLE, SCRATCH_TRACEPOINT, count,
        frame_flag, layout, thread_key,
    },
    threads::{STACK_HASH_SEED, stack_hash_step},
};

use crate::common::{EVENTS, current_ids, fetch_add, named_as_in_common};

#[map]
static PY_CONFIG: Array<PyConfig> = Array::with_max_entries(1, 0);

// Sized by the python family when it runs (`PY_THREADS_MAX` and the like): one entry each until
// then, so that a session without the family costs nothing.

#[map]
static PY_THREADS: HashMap<u64, u64> = HashMap::with_max_entries(1, 0);

/// The offset of `thread.fsbase` in `task_struct` (see `profiler_common::python::globals`).
#[unsafe(no_mangle)]
static PY_FSBASE_OFFSET: u32 = u32::MAX;

// Least recently used first out: each stack (and code object) goes to the user side when it is
// stored, so these only spare it sending one twice; a full map drops an old one, never a new one.
#[map]
static PY_STACKS: LruHashMap<u64, PyStack> = LruHashMap::with_max_entries(1, 0);

#[map]
static PY_RAISES: HashMap<RaiseKey, u64> = HashMap::with_max_entries(1, 0);

#[map]
static PY_LAST_RAISE: HashMap<u32, LastRaise> = HashMap::with_max_entries(1, 0);

#[map]
static PY_CODES: LruHashMap<u64, u64> = LruHashMap::with_max_entries(1, 0);

#[map]
static PY_ALLOC_LIVE: HashMap<u64, PyBlock> = HashMap::with_max_entries(1, 0);

#[map]
static PY_ALLOC_PENDING: HashMap<u32, PyPending> = HashMap::with_max_entries(1, 0);

#[map]
static PY_ALLOC_SITES: HashMap<u64, PySiteStats> = HashMap::with_max_entries(1, 0);

#[map]
static PY_COUNTS: PerCpuArray<u64> = PerCpuArray::with_max_entries(count::SLOTS, 0);

#[map]
static PY_SCRATCH: PerCpuArray<PyWalk> = PerCpuArray::with_max_entries(2, 0);

mod allocs;
mod codes;
mod exceptions;

pub use allocs::{py_alloc, py_alloc_return, py_free};
pub use exceptions::{py_raise, py_uncaught};

named_as_in_common!(
    python,
    maps: [
        PY_CONFIG,
        PY_THREADS,
        PY_STACKS,
        PY_RAISES,
        PY_LAST_RAISE,
        PY_CODES,
        PY_ALLOC_LIVE,
        PY_ALLOC_PENDING,
        PY_ALLOC_SITES,
        PY_COUNTS,
        PY_SCRATCH,
    ],
    programs: [
        py_raise => RAISE,
        py_uncaught => UNCAUGHT,
        py_alloc => ALLOC,
        py_alloc_return => ALLOC_RETURN,
        py_free => FREE,
    ]
);

/// The state of one walk (this CPU's `PY_SCRATCH`).
#[repr(C)]
pub struct PyWalk {
    /// The next frame to read (0: the walk is over).
    frame: u64,
    /// Why the walk stopped early (a [`count`] slot, 0 for none).
    cut: u32,
    _pad: u32,
    config: PyConfig,
    /// The next frame whose code object [`send_codes`] looks at.
    next_code: u64,
    /// Frames the walk keeps at most (at most [`PY_STACK_DEPTH`]).
    limit: u64,
    /// The stack's hash so far (`stack_hash_step` over each frame's code and instruction).
    hash: u64,
    /// The frame being read, whole ([`FRAME_READ`] bytes).
    frame_bytes: [u8; FRAME_READ],
    stack: PyStack,
}

/// The Python stack of thread `tid` for a CPU sample: its hash in `PY_STACKS` (0: not a Python
/// thread the user side listed, or no frame).
#[inline(always)]
pub fn sample_stack(tid: u32) -> u64 {
    if !enabled() {
        return 0;
    }
    match thread_state(tid) {
        Some(tstate) => python_stack(tstate, SCRATCH_SAMPLE, PY_STACK_DEPTH),
        None => {
            add(count::NO_THREAD_STATE, 1);
            0
        }
    }
}

/// The `PyThreadState` of the current thread (`tid`), where the user side listed it: by its
/// thread id, or (3.10) by its `pthread_t`, the current task's `fs` base.
#[inline(always)]
fn thread_state(tid: u32) -> Option<u64> {
    let by_fsbase = PY_CONFIG
        .get(0)
        .is_some_and(|c| c.thread_key == thread_key::FSBASE);
    let key = if by_fsbase {
        // SAFETY: a read of a global the loader initialised; volatile so the compiler does not
        // fold the initial value in.
        let offset = unsafe { core::ptr::read_volatile(&PY_FSBASE_OFFSET) };
        if offset == u32::MAX {
            return None;
        }
        // SAFETY: the helper takes no arguments and returns the current task.
        let task = unsafe { bpf_get_current_task() };
        // SAFETY: a field of the current task, read through the checked helper.
        unsafe { bpf_probe_read_kernel((task + u64::from(offset)) as *const u64) }.ok()?
    } else {
        u64::from(tid)
    };
    // SAFETY: a plain value, copied out.
    unsafe { PY_THREADS.get(key) }.copied().filter(|t| *t != 0)
}

/// The Python stack of thread `tid` for a tracepoint program (a failed syscall, a signal): its
/// hash (0: none).
#[inline(always)]
pub fn tracepoint_stack(tid: u32) -> u64 {
    if !enabled() {
        return 0;
    }
    match thread_state(tid) {
        Some(tstate) => python_stack(tstate, SCRATCH_TRACEPOINT, PY_STACK_DEPTH),
        None => 0,
    }
}

/// Whether the user side has found an interpreter and written its layout.
#[inline(always)]
fn enabled() -> bool {
    PY_CONFIG.get(0).is_some_and(|c| c.enabled != 0)
}

/// Walks the Python frames of thread state `tstate`, stores them, and returns their hash (0: no
/// frame, or not stored).
#[inline(always)]
fn python_stack(tstate: u64, slot: u32, limit: usize) -> u64 {
    let Some(w) = PY_SCRATCH.get_ptr_mut(slot) else {
        return 0;
    };
    // The callbacks find their slot through their context (a pointer to this stack value).
    let mut slot = slot;
    let ctx = (&raw mut slot).cast::<core::ffi::c_void>();
    let Some(config) = PY_CONFIG.get(0).copied() else {
        return 0;
    };
    let Some(first) = read(tstate + config.tstate_frame as u64) else {
        add(count::READ_FAILED, 1);
        return 0;
    };
    let frame = if config.cframe_frame == NONE || first == 0 {
        first
    } else {
        match read(first + config.cframe_frame as u64) {
            Some(f) => f,
            None => {
                add(count::READ_FAILED, 1);
                return 0;
            }
        }
    };
    if frame == 0 {
        return 0;
    }
    // SAFETY: this CPU's scratch value, valid for the program's run; written before the loop,
    // read back with volatile loads after it (the callback changes it behind the compiler's
    // back, see the cpu family's walk).
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).frame, frame);
        core::ptr::write_volatile(&raw mut (*w).cut, 0);
        core::ptr::write_volatile(&raw mut (*w).config, config);
        core::ptr::write_volatile(&raw mut (*w).stack.len, 0);
        core::ptr::write_volatile(&raw mut (*w).limit, limit as u64);
        core::ptr::write_volatile(&raw mut (*w).hash, STACK_HASH_SEED);
        bpf_loop(
            PY_STACK_DEPTH as u32 + 1,
            step as *mut core::ffi::c_void,
            ctx,
            0,
        );
    }
    // SAFETY: as above.
    let (len, cut) = unsafe {
        (
            core::ptr::read_volatile(&raw const (*w).stack.len),
            core::ptr::read_volatile(&raw const (*w).cut),
        )
    };
    add(count::WALKS, 1);
    add(count::FRAMES, len);
    if cut != 0 {
        add(cut, 1);
    }
    if len == 0 {
        return 0;
    }
    store(w, ctx)
}

/// Stores the walked stack under its hash, sending it to the user side the first time.
#[inline(always)]
fn store(w: *mut PyWalk, ctx: *mut core::ffi::c_void) -> u64 {
    // SAFETY: this CPU's scratch value, valid for the program's run; the walk is over.
    let stack = unsafe { &(*w).stack };
    // SAFETY: as above; the walk's callback left it there.
    let mut hash = unsafe { core::ptr::read_volatile(&raw const (*w).hash) };
    if hash == 0 {
        hash = 1;
    }
    // SAFETY: only tested for presence.
    if unsafe { PY_STACKS.get(hash) }.is_some() {
        return hash;
    }
    if PY_STACKS.insert(hash, stack, BPF_NOEXIST as u64).is_err() {
        // SAFETY: as above.
        if unsafe { PY_STACKS.get(hash) }.is_some() {
            return hash;
        }
        add(count::STACK_MAP_FULL, 1);
        return 0;
    }
    codes::send_codes(w, ctx);
    send_stack(hash, stack);
    hash
}

/// Sends a stack stored for the first time.
#[inline(always)]
fn send_stack(hash: u64, stack: &PyStack) {
    let Some(mut entry) = EVENTS.reserve::<PyStackEvent>(0) else {
        add(count::EVENTS_LOST, 1);
        return;
    };
    let event = entry.as_mut_ptr();
    let (tid, tgid) = current_ids();
    // SAFETY: `event` is a reserved record, written in full before it is submitted; the stack is
    // copied from this CPU's scratch value by the checked helper.
    unsafe {
        (*event).header = header(EventKind::PyStack, tid, tgid);
        (*event).hash = hash;
        let copied = read_kernel_raw(
            (&raw mut (*event).stack).cast(),
            core::mem::size_of::<PyStack>() as u32,
            (stack as *const PyStack).cast(),
        );
        if copied != 0 {
            (*event).stack.len = 0;
        }
    }
    entry.submit(0);
}

fn header(kind: EventKind, tid: u32, tgid: u32) -> EventHeader {
    EventHeader {
        kind: kind as u16,
        _pad: 0,
        tid,
        // SAFETY: the helper takes no arguments.
        timestamp_ns: unsafe { aya_ebpf::helpers::bpf_ktime_get_ns() },
        tgid,
        _pad2: 0,
    }
}

/// This CPU's walk state, in the slot `ctx` (the callbacks' context) points at.
#[inline(always)]
fn scratch(ctx: *mut core::ffi::c_void) -> Option<&'static mut PyWalk> {
    // SAFETY: `ctx` is the pointer to the slot number `python_stack` handed to bpf_loop, valid
    // for the loop.
    let slot = unsafe { core::ptr::read_volatile(ctx.cast::<u32>()) };
    // SAFETY: this CPU's scratch value, valid for the program's run.
    PY_SCRATCH.get_ptr_mut(slot).map(|p| unsafe { &mut *p })
}

/// `bpf_loop`'s callback of the walk: one frame, read whole with one helper call; 1 ends the
/// loop.
extern "C" fn step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let Some(w) = scratch(ctx) else {
        return 1;
    };
    let frame = w.frame;
    if frame == 0 {
        return 1;
    }
    let n = w.stack.len as usize;
    if n >= PY_STACK_DEPTH || n as u64 >= w.limit {
        w.cut = count::DEPTH_CUT;
        return 1;
    }
    let mut size = w.config.frame_read;
    if size > FRAME_READ as u32 {
        size = FRAME_READ as u32;
    }
    // SAFETY: the destination is this CPU's scratch buffer of FRAME_READ bytes, and `size` is
    // at most that; the source is the target's memory, read through the checked helper.
    let failed = unsafe {
        read_user_raw(
            w.frame_bytes.as_mut_ptr().cast(),
            size,
            frame as *const core::ffi::c_void,
        )
    } != 0;
    if failed {
        w.cut = count::READ_FAILED;
        return 1;
    }
    let c = &w.config;
    let bytes = &w.frame_bytes;
    let code = word(bytes, c.frame_code);
    let instr = word(bytes, c.frame_instr);
    let previous = word(bytes, c.frame_previous);
    let mut flags = 0;
    // 3.10: every frame is evaluated by a call of its own.
    if c.layout == layout::FRAME_OBJECT
        || (c.frame_entry != NONE && byte(bytes, c.frame_entry) != 0)
    {
        flags |= frame_flag::ENTRY;
    }
    if c.frame_owner != NONE && u32::from(byte(bytes, c.frame_owner)) == c.owner_cstack {
        flags |= frame_flag::SHIM;
    }
    let code = (code & !frame_flag::MASK) | flags;
    w.stack.frames[n & (PY_STACK_DEPTH - 1)] = PyFrame { code, instr };
    w.hash = stack_hash_step(stack_hash_step(w.hash, code), instr);
    w.stack.len += 1;
    w.frame = previous;
    0
}

/// The word at `offset` of a frame's bytes (0 past them).
#[inline(always)]
fn word(bytes: &[u8; FRAME_READ], offset: u32) -> u64 {
    let at = offset as usize;
    if at > FRAME_READ - 8 {
        return 0;
    }
    let mut v = [0u8; 8];
    v.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The byte at `offset` of a frame's bytes (0 past them).
#[inline(always)]
fn byte(bytes: &[u8; FRAME_READ], offset: u32) -> u8 {
    bytes.get(offset as usize).copied().unwrap_or(0)
}

/// Reads a word of the target's memory.
#[inline(always)]
fn read(addr: u64) -> Option<u64> {
    // SAFETY: reads the target's memory through the checked helper.
    unsafe { bpf_probe_read_user(addr as *const u64) }.ok()
}

#[inline(always)]
fn read_u32(addr: u64) -> Option<u32> {
    // SAFETY: as for `read`.
    unsafe { bpf_probe_read_user(addr as *const u32) }.ok()
}

/// Adds `n` to slot `slot` of `PY_COUNTS`.
#[inline(always)]
fn add(slot: u32, n: u64) {
    if let Some(p) = PY_COUNTS.get_ptr_mut(slot) {
        // SAFETY: a valid, aligned u64 in a map value for the program's duration.
        unsafe { fetch_add(p, n) };
    }
}
