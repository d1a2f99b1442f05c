//! User stacks of the target's threads: the frame-pointer walk (`bpf_get_stack`), completed by a
//! scan of the words above the stack pointer for the return addresses it skips, and stored once
//! per distinct stack under its hash.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST},
    helpers::{
        bpf_probe_read_user,
        generated::{bpf_get_stack, bpf_loop},
    },
};
use profiler_common::{
    counters::Counter,
    threads::{
        EXEC_RANGES_MAX, SCAN_KEEP, SCAN_WORDS, STACK_DEPTH, STACK_HASH_SEED, hit, stack_hash_step,
    },
};

use super::{EXEC_RANGES, REG_BP, REG_SP, SCAN_SCRATCH, STACK_SCRATCH, USER_STACKS, bump};
use crate::common::count;

/// The current thread's user stack, stored in `USER_STACKS`; its hash (0: none). `regs`, the
/// thread's user registers when it is blocking in a syscall, adds the return addresses found on
/// the stack between its stack and frame pointers, and `extra`, a return address a return probe
/// hid (see [`scan`]); without `regs`, the stack is taken at a function's entry (`extra`, its
/// return address) or at a return probe, and starts at the caller.
#[inline(always)]
pub(super) fn take_stack<C: EbpfContext>(ctx: &C, regs: *const u8, extra: u64) -> u64 {
    bump(hit::STACK);
    // Without registers, `extra` is the return address of a function whose entry the stack is
    // taken at: it replaces the program counter (in the function) as the first frame.
    let found = if regs.is_null() { 0 } else { scan(regs, extra) };
    let Some(scratch) = STACK_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch value; nothing else runs on this CPU while it is used.
    let scratch = unsafe { &mut *scratch };
    // The walk is written `found` frames in, and its first frame (the program counter) is moved
    // to the front, with the scanned return addresses between it and the walked callers.
    let k = found.min(SCAN_KEEP);
    // SAFETY: the helper writes at most the given size, which fits past `k` frames.
    let bytes = unsafe {
        bpf_get_stack(
            ctx.as_ptr(),
            scratch.ips.as_mut_ptr().add(k).cast(),
            (8 * (STACK_DEPTH - SCAN_KEEP)) as u32,
            BPF_F_USER_STACK as u64,
        )
    };
    if bytes <= 0 {
        count(Counter::ThreadStackFailed);
        return 0;
    }
    if regs.is_null() {
        // A stack taken at a function's entry (`extra`: its return address) or at a return
        // probe (the program counter is the return address): the first frame is a return
        // address, kept one byte back, inside the call instruction, as a program counter would
        // be (the user side looks every frame past the first up one byte back).
        let ret = if extra != 0 { extra } else { scratch.ips[0] };
        scratch.ips[0] = ret.wrapping_sub(1);
    }
    if k > 0 {
        scratch.ips[0] = scratch.ips[k & (STACK_DEPTH - 1)];
        if let Some(state) = SCAN_SCRATCH.get_ptr(0) {
            for j in 0..SCAN_KEEP {
                if j < k {
                    // SAFETY: this CPU's scan state, filled by `scan` above.
                    scratch.ips[1 + j] = unsafe { (*state).out[j] };
                }
            }
        }
    }
    let len = (bytes as usize / 8).min(STACK_DEPTH - SCAN_KEEP) + k;
    let mut hash = STACK_HASH_SEED;
    for i in 0..STACK_DEPTH {
        if i >= len {
            break;
        }
        hash = stack_hash_step(hash, scratch.ips[i & (STACK_DEPTH - 1)]);
    }
    if hash == 0 {
        hash = 1;
    }
    if USER_STACKS.get_ptr(hash).is_none() {
        scratch.len = len as u64;
        #[expect(
            clippy::needless_borrows_for_generic_args,
            reason = "a copy would not fit the 512-byte eBPF stack"
        )]
        let inserted = USER_STACKS.insert(hash, &*scratch, BPF_NOEXIST as u64);
        if inserted.is_err() && USER_STACKS.get_ptr(hash).is_none() {
            count(Counter::ThreadStackFailed);
            return 0;
        }
    }
    hash
}

/// Whether `addr` is in one of the target's executable ranges.
#[inline(always)]
fn executable(addr: u64) -> bool {
    for i in 0..EXEC_RANGES_MAX {
        let Some(r) = EXEC_RANGES.get(i) else {
            return false;
        };
        if r[0] == 0 {
            // No ranges yet (`run` before the user side saw the command's mappings): the
            // call-instruction check alone decides.
            return i == 0;
        }
        if addr < r[0] {
            // The ranges are sorted: none further on holds it.
            return false;
        }
        if addr < r[1] {
            return true;
        }
    }
    false
}

/// The state of the stack scan (this CPU's `SCAN_SCRATCH`): the words read above the stack
/// pointer, the scan's bound, and the return addresses found.
#[repr(C)]
pub struct Scan {
    words: [u64; SCAN_WORDS],
    sp: u64,
    bp: u64,
    found: u64,
    out: [u64; SCAN_KEEP],
}

/// Finds the return addresses among the words between the stack pointer and the frame pointer
/// of `regs` (at most [`SCAN_KEEP`], in this CPU's `SCAN_SCRATCH`): the callers the frame-pointer
/// walk skips, such as the function that called a libc wrapper that keeps no frame pointer.
/// Returns how many.
#[inline(always)]
fn scan(regs: *const u8, extra: u64) -> usize {
    let Some(state) = SCAN_SCRATCH.get_ptr_mut(0) else {
        return 0;
    };
    // SAFETY: this CPU's scratch value; nothing else runs on this CPU while it is used.
    let state = unsafe { &mut *state };
    // SAFETY: fields of the `struct pt_regs` `bpf_task_pt_regs` returned (a BTF pointer).
    unsafe {
        state.sp = core::ptr::read_volatile(regs.add(REG_SP).cast::<u64>());
        state.bp = core::ptr::read_volatile(regs.add(REG_BP).cast::<u64>());
    }
    state.found = 0;
    // The frame pointer bounds the scan only if it is one: library code often uses rbp as a
    // general register (then it may point just above the stack pointer, or anywhere).
    // SAFETY: reads the frame's saved return address through the checked helper.
    let ret = unsafe { bpf_probe_read_user((state.bp + 8) as *const u64) }.unwrap_or(0);
    if !(state.bp > state.sp && executable(ret) && after_call(ret)) {
        state.bp = 0;
    }
    // SAFETY: the helper reads the target's stack into the scratch's words.
    let read = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            state.words.as_mut_ptr().cast(),
            (8 * SCAN_WORDS) as u32,
            state.sp as *const _,
        )
    };
    if read != 0 {
        return 0;
    }
    // One callback, checked once by the verifier, however many words.
    // SAFETY: `scan_step` is a function of this program with the signature bpf_loop calls; it
    // takes no context.
    unsafe {
        bpf_loop(
            SCAN_WORDS as u32,
            scan_step as *mut core::ffi::c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    if extra != 0 && (state.found as usize) < SCAN_KEEP {
        // The blocked call's own return address, which its return probe hid (see `lock_ret`).
        state.out[state.found as usize & (SCAN_KEEP - 1)] = extra;
        state.found += 1;
    }
    (state.found as usize).min(SCAN_KEEP)
}

/// Whether the instruction before `addr` is a call (x86-64: `call rel32`, `call [rip+disp32]`,
/// `call reg`, `call [reg+disp8]`): a return address, not a stale pointer into code.
#[inline(always)]
fn after_call(addr: u64) -> bool {
    // SAFETY: reads 8 bytes of the target's code through the checked helper.
    let Ok(b) = (unsafe { bpf_probe_read_user((addr - 8) as *const [u8; 8]) }) else {
        return false;
    };
    let call_indirect = |opcode: u8, modrm: u8| opcode == 0xff && modrm & 0x38 == 0x10;
    b[3] == 0xe8
        || call_indirect(b[2], b[3])
        || call_indirect(b[6], b[7])
        || call_indirect(b[5], b[6])
}

/// `bpf_loop`'s callback for [`scan`]: word `index`; 1 ends the loop.
extern "C" fn scan_step(index: u64, _ctx: *mut core::ffi::c_void) -> i64 {
    let Some(state) = SCAN_SCRATCH.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: this CPU's scratch value, which `scan` filled before the loop.
    let state = unsafe { &mut *state };
    if state.bp > state.sp && state.sp + 8 * index >= state.bp {
        return 1;
    }
    let w = state.words[index as usize & (SCAN_WORDS - 1)];
    if executable(w) && after_call(w) {
        state.out[state.found as usize & (SCAN_KEEP - 1)] = w;
        state.found += 1;
        if state.found as usize >= SCAN_KEEP {
            return 1;
        }
    }
    0
}
