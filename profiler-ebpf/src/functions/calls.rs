//! What the other families read of the traced calls in progress on a thread: the function
//! running (for their events), and the return addresses the return probes replaced (for the
//! stacks they walk).

use profiler_common::{
    errors::NO_FUNCTION,
    functions::{MAX_DEPTH, ShadowStack},
};

use super::{FUNCS_ON, own_stack, slot};
use crate::common::ThreadOwned;

/// The traced function running on thread `tid` (its innermost traced call), or `NO_FUNCTION`.
#[inline(always)]
pub(crate) fn running_function(tid: u32) -> u32 {
    match own_stack(tid) {
        // SAFETY: a map value, read-only here.
        Some(stack) => unsafe {
            let depth = (*stack).depth as usize;
            if depth == 0 || depth > MAX_DEPTH {
                NO_FUNCTION
            } else {
                (*stack).frames[slot(depth - 1)].func
            }
        },
        None => NO_FUNCTION,
    }
}

impl ThreadOwned for ShadowStack {
    #[inline(always)]
    unsafe fn owner(this: *mut Self) -> *mut u64 {
        // SAFETY: the caller passes a valid value.
        unsafe { &raw mut (*this).tid }
    }
}

/// The return address of the traced call in progress on thread `tid` whose return-address slot
/// on the stack is `slot` (where its return probe's trampoline now sits), if there is one.
#[inline(always)]
pub(crate) fn hidden_return(tid: u32, slot_addr: u64) -> Option<u64> {
    // SAFETY: a read of a global the loader initialised.
    if unsafe { core::ptr::read_volatile(&FUNCS_ON) } == 0 {
        return None;
    }
    let stack = own_stack(tid)?;
    // SAFETY: the thread's own map value; read while the thread is stopped in this program.
    let stack = unsafe { &*stack };
    let depth = (stack.depth as usize).min(MAX_DEPTH);
    for i in 0..MAX_DEPTH {
        if i >= depth {
            break;
        }
        let f = &stack.frames[slot(i)];
        if f.ret_slot == slot_addr && f.ret_addr != 0 {
            return Some(f.ret_addr);
        }
    }
    None
}

/// Puts back, in `copy` (the `len` bytes of thread `tid`'s stack from `sp`; `cap`, a power of
/// two, the size of `copy`), the return addresses that its traced calls in progress had before
/// their return probes replaced them.
#[inline(always)]
pub(crate) fn restore_returns(tid: u32, sp: u64, copy: *mut u8, len: u64, cap: usize) {
    // SAFETY: a read of a global the loader initialised.
    if unsafe { core::ptr::read_volatile(&FUNCS_ON) } == 0 {
        return;
    }
    let Some(stack) = own_stack(tid) else {
        return;
    };
    // SAFETY: as in `hidden_return`.
    let stack = unsafe { &*stack };
    let depth = (stack.depth as usize).min(MAX_DEPTH);
    for i in 0..MAX_DEPTH {
        if i >= depth {
            break;
        }
        let f = &stack.frames[slot(i)];
        let off = f.ret_slot.wrapping_sub(sp);
        if f.ret_addr == 0 || off & 7 != 0 || off >= len || off >= cap as u64 {
            continue;
        }
        // A multiple of 8 below `cap` (a power of two), visibly so for the verifier.
        let off = core::hint::black_box(off as usize) & (cap - 1) & !7;
        // SAFETY: `off + 8 <= cap`, the size of `copy`.
        unsafe { core::ptr::write_unaligned(copy.add(off).cast::<u64>(), f.ret_addr) };
    }
}
