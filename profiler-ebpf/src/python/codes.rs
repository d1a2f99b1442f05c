//! The code objects of a new Python stack, sent to the user side before the stack: their names
//! and line tables copied here, so that a frame is named even when its code object is freed
//! before the user side reads it.

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_user as read_user_raw};
use profiler_common::{
    event::EventKind,
    python::{
        CODE_FILE_BYTES, CODE_NAME_BYTES, CODE_TABLE_BYTES, NOT_COPIED, PY_STACK_DEPTH,
        PyCodeEvent, PyConfig, count, frame_flag,
    },
    threads::{STACK_HASH_SEED, stack_hash_step},
};

use super::{PY_CODES, PyWalk, add, header, read, read_u32, scratch};
use crate::common::{EVENTS, current_ids};

/// Sends each code object of the walked stack not sent before (a [`PyCodeEvent`]), before the
/// stack itself: one `bpf_loop` over its frames.
#[inline(always)]
pub(super) fn send_codes(w: *mut PyWalk, ctx: *mut core::ffi::c_void) {
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
