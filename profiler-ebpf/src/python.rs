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
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::{
        bpf_get_attach_cookie, bpf_probe_read_user,
        generated::{
            bpf_loop, bpf_probe_read_kernel as read_kernel_raw,
            bpf_probe_read_user as read_user_raw,
        },
    },
    macros::{map, uprobe, uretprobe},
    maps::{Array, HashMap, LruHashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_common::{
    event::{EventHeader, EventKind},
    python::{
        ALLOC_STACK_DEPTH, CODE_FILE_BYTES, CODE_NAME_BYTES, CODE_TABLE_BYTES, DETAILED_PER_KEY,
        FRAME_READ, LAST_RAISES, LastRaise, MESSAGE_BYTES, NONE, NOT_COPIED, PY_STACK_DEPTH,
        PyBlock, PyCodeEvent, PyConfig, PyFrame, PyPending, PySiteStats, PyStack, PyStackEvent,
        RaiseEvent, RaiseKey, SCRATCH_SAMPLE, SCRATCH_TRACEPOINT, alloc, count, display,
        frame_flag, type_flag,
    },
    threads::{STACK_HASH_SEED, stack_hash_step},
};

use crate::common::{EVENTS, current_ids, fetch_add, named_as_in_common, stopped, target_tgid};

#[map]
static PY_CONFIG: Array<PyConfig> = Array::with_max_entries(1, 0);

// Sized by the python family when it runs (`PY_THREADS_MAX` and the like): one entry each until
// then, so that a session without the family costs nothing.

#[map]
static PY_THREADS: HashMap<u32, u64> = HashMap::with_max_entries(1, 0);

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
    // SAFETY: a plain value, copied out.
    match unsafe { PY_THREADS.get(tid) }.copied() {
        Some(tstate) if tstate != 0 => python_stack(tstate, SCRATCH_SAMPLE, PY_STACK_DEPTH),
        _ => {
            add(count::NO_THREAD_STATE, 1);
            0
        }
    }
}

/// The Python stack of thread `tid` for a tracepoint program (a failed syscall, a signal): its
/// hash (0: none).
#[inline(always)]
pub fn tracepoint_stack(tid: u32) -> u64 {
    if !enabled() {
        return 0;
    }
    // SAFETY: a plain value, copied out.
    match unsafe { PY_THREADS.get(tid) }.copied() {
        Some(tstate) if tstate != 0 => python_stack(tstate, SCRATCH_TRACEPOINT, PY_STACK_DEPTH),
        _ => 0,
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
    let len = stack.len as usize;
    let mut hash = STACK_HASH_SEED;
    for i in 0..PY_STACK_DEPTH {
        if i >= len {
            break;
        }
        let f = &stack.frames[i];
        hash = stack_hash_step(hash, f.code);
        hash = stack_hash_step(hash, f.instr);
    }
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
    send_codes(w, ctx);
    send_stack(hash, stack);
    hash
}

/// Sends each code object of the walked stack not sent before (a [`PyCodeEvent`]), before the
/// stack itself: one `bpf_loop` over its frames.
#[inline(always)]
fn send_codes(w: *mut PyWalk, ctx: *mut core::ffi::c_void) {
    // SAFETY: this CPU's scratch value; written before the loop, the callback's own after it.
    unsafe {
        core::ptr::write_volatile(&raw mut (*w).next_code, 0);
        bpf_loop(
            PY_STACK_DEPTH as u32,
            code_step as *mut core::ffi::c_void,
            ctx,
            0,
        );
    }
}

/// `bpf_loop`'s callback of [`send_codes`]: one frame's code object.
extern "C" fn code_step(_index: u64, ctx: *mut core::ffi::c_void) -> i64 {
    let Some(w) = scratch(ctx) else {
        return 1;
    };
    let i = w.next_code as usize;
    if i >= w.stack.len as usize || i >= PY_STACK_DEPTH {
        return 1;
    }
    w.next_code += 1;
    let frame = w.stack.frames[i & (PY_STACK_DEPTH - 1)];
    if frame.flags() & frame_flag::SHIM != 0 {
        return 0;
    }
    let code = frame.code_object();
    let c = &w.config;
    let field = |offset: u32| read(code + offset as u64);
    let (Some(qualname), Some(filename), Some(table), Some(first)) = (
        field(c.code_qualname),
        field(c.code_filename),
        field(c.code_linetable),
        read_u32(code + c.code_firstlineno as u64),
    ) else {
        return 0;
    };
    let identity = [qualname, filename, table, u64::from(first)];
    let mut id = STACK_HASH_SEED;
    for v in identity {
        id = stack_hash_step(id, v);
    }
    // SAFETY: a plain value, copied out.
    if unsafe { PY_CODES.get(code) }.copied() == Some(id) {
        return 0;
    }
    let _ = PY_CODES.insert(code, id, 0);
    send_code(c, code, identity);
    0
}

/// Sends code object `code`'s names and line table.
#[inline(always)]
fn send_code(c: &PyConfig, code: u64, identity: [u64; 4]) {
    let Some(mut entry) = EVENTS.reserve::<PyCodeEvent>(0) else {
        add(count::EVENTS_LOST, 1);
        return;
    };
    let event = entry.as_mut_ptr();
    let (tid, tgid) = current_ids();
    // SAFETY: `event` is a reserved record, written in full before it is submitted; the
    // target's memory is read through the checked helpers, each copy bounded by its array.
    unsafe {
        (*event).header = header(EventKind::PyCode, tid, tgid);
        (*event).code = code;
        (*event).identity = identity;
        (*event).name_len = copy_ascii(
            c,
            identity[0],
            (&raw mut (*event).name).cast(),
            CODE_NAME_BYTES,
        );
        (*event).file_len = copy_ascii(
            c,
            identity[1],
            (&raw mut (*event).file).cast(),
            CODE_FILE_BYTES,
        );
        // A bytes object: its size at 16, its bytes from 32.
        let size = read(identity[2] + 16).unwrap_or(0);
        let mut n = size;
        if n > CODE_TABLE_BYTES as u64 {
            n = CODE_TABLE_BYTES as u64;
        }
        let copied = read_user_raw(
            (&raw mut (*event).table).cast(),
            n as u32,
            (identity[2] + 32) as *const core::ffi::c_void,
        ) == 0;
        (*event).table_len = if copied { n as u32 } else { NOT_COPIED };
        (*event).table_size = size as u32;
    }
    entry.submit(0);
}

/// Copies the characters of str `text` to `to` (at most `max` bytes) where it is compact ASCII;
/// the bytes copied, or [`NOT_COPIED`].
///
/// # Safety
/// `to` must be valid for writes of `max` bytes.
#[inline(always)]
unsafe fn copy_ascii(c: &PyConfig, text: u64, to: *mut core::ffi::c_void, max: usize) -> u32 {
    let (Some(length), Some(state)) = (read(text + 16), read_u32(text + 32)) else {
        return NOT_COPIED;
    };
    // compact and ascii
    if state & (3 << 5) != 3 << 5 || length > max as u64 {
        return NOT_COPIED;
    }
    let mut n = length;
    if n > max as u64 {
        n = max as u64;
    }
    // SAFETY: `to` holds `max` bytes (the caller's), and `n <= max`.
    let failed = unsafe {
        read_user_raw(
            to,
            n as u32,
            (text + c.ascii_data as u64) as *const core::ffi::c_void,
        )
    } != 0;
    if failed { NOT_COPIED } else { n as u32 }
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
    // SAFETY: the destination is this CPU's scratch buffer of FRAME_READ bytes; the source is
    // the target's memory, read through the checked helper.
    let failed = unsafe {
        read_user_raw(
            w.frame_bytes.as_mut_ptr().cast(),
            FRAME_READ as u32,
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
    if c.frame_entry != NONE && byte(bytes, c.frame_entry) != 0 {
        flags |= frame_flag::ENTRY;
    }
    if c.frame_owner != NONE && u32::from(byte(bytes, c.frame_owner)) == c.owner_cstack {
        flags |= frame_flag::SHIM;
    }
    w.stack.frames[n & (PY_STACK_DEPTH - 1)] = PyFrame {
        code: (code & !frame_flag::MASK) | flags,
        instr,
    };
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

/// The uprobe on `_PyErr_SetObject(PyThreadState *tstate, PyObject *type, PyObject *value)`.
#[uprobe]
pub fn py_raise(ctx: ProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() || !enabled() {
        return 0;
    }
    let arg = |n: usize| ctx.arg::<u64>(n).unwrap_or(0);
    let (tstate, exc_type, value) = (arg(0), arg(1), arg(2));
    add(count::RAISES, 1);
    let stack = if tstate == 0 {
        0
    } else {
        python_stack(tstate, SCRATCH_SAMPLE, PY_STACK_DEPTH)
    };
    let key = RaiseKey { exc_type, stack };
    let n = count_raise(&key);
    remember_raise(tid, key);
    if (1..=DETAILED_PER_KEY).contains(&n) {
        send_raise(tid, tgid, key, value, 0);
    }
    0
}

/// The uprobe on `PyErr_Display(type, value, tb)` and `_PyErr_Display(file, type, value, tb)`
/// (the attach cookie says which): the interpreter prints an exception nothing handled. Its
/// type is the value's (3.12 passes no type); its site, the thread's last raise of that type.
/// The public function calls the other with the same exception, counted once.
#[uprobe]
pub fn py_uncaught(ctx: ProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() || !enabled() {
        return 0;
    }
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // Both read, then one picked: a read at an offset chosen at run time is refused (the
    // compiler would otherwise merge the two reads into one).
    let second = core::hint::black_box(ctx.arg::<u64>(1).unwrap_or(0));
    let third = core::hint::black_box(ctx.arg::<u64>(2).unwrap_or(0));
    let value = if cookie == display::PUBLIC {
        second
    } else {
        third
    };
    if value == 0 {
        return 0;
    }
    let exc_type = read(value + 8).unwrap_or(0);
    let mut key = RaiseKey { exc_type, stack: 0 };
    if let Some(last) = PY_LAST_RAISE.get_ptr_mut(tid) {
        // SAFETY: a valid map value of this thread's (only this thread writes it).
        let last = unsafe { &mut *last };
        if last.displayed == value {
            return 0;
        }
        last.displayed = value;
        // The latest raise of the type.
        for i in 1..=LAST_RAISES as u64 {
            let k = last.keys[(last.next.wrapping_sub(i) % LAST_RAISES as u64) as usize];
            if k.exc_type == exc_type {
                key = k;
                break;
            }
        }
    }
    add(count::UNCAUGHT, 1);
    send_raise(tid, tgid, key, value, 1);
    0
}

/// Keeps `key` among thread `tid`'s last raises.
#[inline(always)]
fn remember_raise(tid: u32, key: RaiseKey) {
    if let Some(last) = PY_LAST_RAISE.get_ptr_mut(tid) {
        // SAFETY: a valid map value of this thread's (only this thread writes it).
        let last = unsafe { &mut *last };
        last.keys[(last.next % LAST_RAISES as u64) as usize] = key;
        last.next = last.next.wrapping_add(1);
        return;
    }
    let mut first = LastRaise::default();
    first.keys[0] = key;
    first.next = 1;
    let _ = PY_LAST_RAISE.insert(tid, first, 0);
}

/// Adds one raise at `key`; returns the key's count with it (0: the map is full).
#[inline(always)]
fn count_raise(key: &RaiseKey) -> u64 {
    if let Some(n) = PY_RAISES.get_ptr_mut(key) {
        // SAFETY: a valid, aligned u64 map value.
        return unsafe { fetch_add(n, 1) } + 1;
    }
    if PY_RAISES.insert(key, 1, BPF_NOEXIST as u64).is_ok() {
        return 1;
    }
    // Another CPU inserted it first, or the map is full.
    match PY_RAISES.get_ptr_mut(key) {
        // SAFETY: as above.
        Some(n) => unsafe { fetch_add(n, 1) + 1 },
        None => {
            add(count::RAISE_MAP_FULL, 1);
            0
        }
    }
}

/// Sends a raise with its message: `value` itself where it is a str, else its first argument
/// (a tuple's first item, an exception's `args[0]`) where that is one.
#[inline(always)]
fn send_raise(tid: u32, tgid: u32, key: RaiseKey, value: u64, uncaught: u32) {
    let Some(c) = PY_CONFIG.get(0).copied() else {
        return;
    };
    let Some(mut entry) = EVENTS.reserve::<RaiseEvent>(0) else {
        add(count::EVENTS_LOST, 1);
        return;
    };
    let event = entry.as_mut_ptr();
    let (text, arg_type) = message_object(&c, value);
    // SAFETY: `event` is a reserved record, written in full before it is submitted; the
    // target's memory is read through the checked helpers.
    unsafe {
        (*event).header = header(EventKind::PyRaise, tid, tgid);
        (*event).key = key;
        (*event).uncaught = uncaught;
        (*event).arg_type = arg_type;
        (*event)._pad = 0;
        (*event).message_kind = 0;
        (*event).len = 0;
        if text != 0 {
            copy_message(&c, text, event);
        }
    }
    entry.submit(0);
}

/// The str that holds an exception's message, and the type of its first argument where that
/// is not a str. What an object is, the walk tells from its type's flags.
#[inline(always)]
fn message_object(c: &PyConfig, value: u64) -> (u64, u64) {
    if value == 0 {
        return (0, 0);
    }
    let flags_of = |object: u64| -> Option<(u64, u64)> {
        let ty = read(object + 8)?;
        Some((ty, read(ty + c.type_flags as u64)?))
    };
    let Some((ty, flags)) = flags_of(value) else {
        return (0, 0);
    };
    if flags & type_flag::UNICODE != 0 {
        return (value, 0);
    }
    // A tuple of arguments (a `KeyError` the interpreter raises itself), or an exception
    // instance's `args`.
    let args = if flags & type_flag::TUPLE != 0 {
        value
    } else if flags & type_flag::BASE_EXCEPTION != 0 {
        match read(value + c.exception_args as u64) {
            Some(a) if a != 0 && flags_of(a).is_some_and(|(_, f)| f & type_flag::TUPLE != 0) => a,
            _ => return (0, 0),
        }
    } else {
        return (0, ty);
    };
    // ob_size of the tuple.
    if read(args + 16).unwrap_or(0) == 0 {
        return (0, 0);
    }
    let Some(first) = read(args + c.tuple_items as u64) else {
        return (0, 0);
    };
    match flags_of(first) {
        Some((_, f)) if f & type_flag::UNICODE != 0 => (first, 0),
        Some((t, _)) => (0, t),
        None => (0, 0),
    }
}

/// Copies the characters of str `text` into the event.
///
/// # Safety
/// `event` must be a reserved record.
#[inline(always)]
unsafe fn copy_message(c: &PyConfig, text: u64, event: *mut RaiseEvent) {
    let (Some(length), Some(state)) = (read(text + 16), read_u32(text + 32)) else {
        return;
    };
    let kind = (state >> 2) & 7;
    let compact = (state >> 5) & 1 != 0;
    let ascii = (state >> 6) & 1 != 0;
    if !compact {
        return;
    }
    let (data, message_kind, width) = if ascii {
        (text + c.ascii_data as u64, 1, 1)
    } else if kind == 1 {
        (text + c.compact_data as u64, 2, 1)
    } else if kind == 2 {
        (text + c.compact_data as u64, 3, 2)
    } else if kind == 4 {
        (text + c.compact_data as u64, 4, 4)
    } else {
        return;
    };
    let length = length.min(MESSAGE_BYTES as u64);
    let mut bytes = length * width;
    if bytes > MESSAGE_BYTES as u64 {
        bytes = MESSAGE_BYTES as u64;
    }
    // SAFETY: the caller's record; the copy is bounded by the message array's size.
    unsafe {
        if read_user_raw(
            (&raw mut (*event).message).cast(),
            bytes as u32,
            data as *const core::ffi::c_void,
        ) == 0
        {
            (*event).message_kind = message_kind;
            (*event).len = bytes as u32;
        }
    }
}

/// The uprobe on `PyObject_Malloc(size)`, `PyObject_Calloc(nelem, elsize)` and
/// `PyObject_Realloc(ptr, size)` (the attach cookie says which): what the call asks, kept for its
/// return.
#[uprobe]
pub fn py_alloc(ctx: ProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() || !enabled() {
        return 0;
    }
    // SAFETY: the program's own context.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    let first = core::hint::black_box(ctx.arg::<u64>(0).unwrap_or(0));
    let second = core::hint::black_box(ctx.arg::<u64>(1).unwrap_or(0));
    let pending = if cookie == alloc::CALLOC {
        PyPending {
            size: first.wrapping_mul(second),
            old: 0,
        }
    } else if cookie == alloc::REALLOC {
        PyPending {
            size: second,
            old: first,
        }
    } else {
        PyPending {
            size: first,
            old: 0,
        }
    };
    let _ = PY_ALLOC_PENDING.insert(tid, pending, 0);
    0
}

/// The return probe of the allocating functions: the block returned is charged to the Python
/// stack of the thread (a realloc's old block is released first).
#[uretprobe]
pub fn py_alloc_return(ctx: RetProbeContext) -> u32 {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 {
        return 0;
    }
    // SAFETY: a plain value, copied out.
    let Some(pending) = (unsafe { PY_ALLOC_PENDING.get(tid) }).copied() else {
        return 0;
    };
    let _ = PY_ALLOC_PENDING.remove(tid);
    let ptr = ctx.ret::<u64>();
    if pending.old != 0 && ptr != 0 {
        release(pending.old);
    }
    if ptr == 0 || stopped() {
        return 0;
    }
    add(count::ALLOCS, 1);
    // SAFETY: a plain value, copied out.
    let stack = match unsafe { PY_THREADS.get(tid) }.copied() {
        Some(tstate) if tstate != 0 => python_stack(tstate, SCRATCH_SAMPLE, ALLOC_STACK_DEPTH),
        _ => 0,
    };
    let tracked = PY_ALLOC_LIVE
        .insert(
            ptr,
            PyBlock {
                size: pending.size,
                stack,
            },
            0,
        )
        .is_ok();
    if !tracked {
        add(count::LIVE_FULL, 1);
    }
    charge(stack, pending.size, tracked, 1);
    0
}

/// The uprobe on `PyObject_Free(ptr)`.
#[uprobe]
pub fn py_free(ctx: ProbeContext) -> u32 {
    let (_, tgid) = current_ids();
    if tgid != target_tgid() || tgid == 0 || stopped() {
        return 0;
    }
    add(count::FREE_CALLS, 1);
    let ptr = ctx.arg::<u64>(0).unwrap_or(0);
    if ptr != 0 {
        release(ptr);
    }
    0
}

/// Takes block `ptr` off its stack, where it is tracked.
#[inline(always)]
fn release(ptr: u64) {
    // SAFETY: a plain value, copied out.
    let Some(block) = (unsafe { PY_ALLOC_LIVE.get(ptr) }).copied() else {
        return;
    };
    if PY_ALLOC_LIVE.remove(ptr).is_err() {
        // Another CPU released it first.
        return;
    }
    add(count::FREES, 1);
    if let Some(site) = PY_ALLOC_SITES.get_ptr_mut(block.stack) {
        // SAFETY: valid, aligned fields of a map value; signed counts kept as wrapping u64.
        unsafe {
            fetch_add(
                (&raw mut (*site).live_bytes).cast(),
                block.size.wrapping_neg(),
            );
            fetch_add((&raw mut (*site).live_blocks).cast(), u64::MAX);
        }
    }
}

/// Adds an allocation of `size` bytes at Python stack `stack` (outstanding when `tracked`).
#[inline(always)]
fn charge(stack: u64, size: u64, tracked: bool, blocks: u64) {
    let add_to = |site: *mut PySiteStats| {
        // SAFETY: valid, aligned fields of a map value.
        unsafe {
            if tracked {
                let now =
                    fetch_add((&raw mut (*site).live_bytes).cast(), size).wrapping_add(size) as i64;
                fetch_add((&raw mut (*site).live_blocks).cast(), blocks);
                // A plain store: two CPUs racing may keep the lower of their two peaks.
                if now > core::ptr::read_volatile(&raw const (*site).peak_bytes) {
                    core::ptr::write_volatile(&raw mut (*site).peak_bytes, now);
                }
            }
            fetch_add(&raw mut (*site).allocated_bytes, size);
            fetch_add(&raw mut (*site).allocations, blocks);
        }
    };
    if let Some(site) = PY_ALLOC_SITES.get_ptr_mut(stack) {
        add_to(site);
        return;
    }
    let _ = PY_ALLOC_SITES.insert(stack, PySiteStats::default(), BPF_NOEXIST as u64);
    match PY_ALLOC_SITES.get_ptr_mut(stack) {
        Some(site) => add_to(site),
        None => add(count::SITE_MAP_FULL, 1),
    }
}
