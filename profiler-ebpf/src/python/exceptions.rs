//! The exceptions: every raise counted per (type, Python stack), the first few of each with
//! their message, and the ones the interpreter reports unhandled.

use aya_ebpf::{
    EbpfContext as _,
    bindings::BPF_NOEXIST,
    helpers::{bpf_get_attach_cookie, generated::bpf_probe_read_user as read_user_raw},
    macros::uprobe,
    programs::ProbeContext,
};
use profiler_common::{
    event::EventKind,
    python::{
        DETAILED_PER_KEY, LAST_RAISES, LastRaise, MESSAGE_BYTES, PY_STACK_DEPTH, PyConfig,
        RaiseEvent, RaiseKey, SCRATCH_SAMPLE, count, display, type_flag,
    },
};

use super::{
    PY_CONFIG, PY_LAST_RAISE, PY_RAISES, add, enabled, header, python_stack, read, read_u32,
};
use crate::common::{EVENTS, current_ids, fetch_add, stopped, target_tgid};

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
