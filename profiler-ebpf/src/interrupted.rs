//! EINTR, counted exactly. A syscall that a signal interrupts does not leave `sys_exit` with
//! -EINTR but with one of the kernel's restart codes (-ERESTARTSYS, ...): what the target gets
//! is decided later, on the way back to user space, when the signal is delivered. With a
//! handler of the target's, the call then fails with EINTR or is restarted (by the code and the
//! handler's `SA_RESTART`); without one it is restarted. So the `sys_exit` programs leave the
//! restart codes alone, and this program, on `signal_deliver` (which runs right before the
//! kernel sets the handler up, the interrupted call's registers still as `sys_exit` left them),
//! counts each call that becomes EINTR in `FAILURES`, as (syscall, EINTR). A call that fails
//! with EINTR by itself (`epoll_wait`, ...) is counted at `sys_exit` like any failure; its
//! return value is no restart code here, so it is not counted twice.

use aya_ebpf::{
    helpers::{
        bpf_probe_read_kernel,
        generated::{bpf_get_current_task_btf, bpf_task_pt_regs},
    },
    macros::raw_tracepoint,
    programs::RawTracePointContext,
};
use profiler_common::{
    errno::{EINTR, interrupted_by_handler},
    errors::FailureKey,
    signals::{SIG_DFL, SIG_IGN},
};

use crate::{
    common::{current_ids, followed, stopped},
    errors::{ORIG_RAX, RAX, count_failure, user_reg},
};

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`, in the
/// receiving task.
#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn syscall_interrupted(ctx: RawTracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_syscall_interrupted(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_syscall_interrupted(ctx: &RawTracePointContext) -> Result<(), ()> {
    let (_, tgid) = current_ids();
    if !followed(tgid) {
        return Ok(());
    }
    let action: u64 = ctx.arg(2);
    // `struct k_sigaction` starts with `struct sigaction`: `sa_handler`, then `sa_flags`.
    // SAFETY: a kernel pointer from the tracepoint's arguments, read through the checked helper.
    let [handler, flags] =
        unsafe { bpf_probe_read_kernel(action as *const [u64; 2]) }.map_err(|_| ())?;
    if handler == SIG_DFL || handler == SIG_IGN {
        // No handler runs: an interrupted call is restarted (or the process ends).
        return Ok(());
    }
    // SAFETY: the helper takes no arguments and returns the current task.
    let task = unsafe { bpf_get_current_task_btf() };
    // SAFETY: `task` is the current task, as the helper returned it.
    let regs = unsafe { bpf_task_pt_regs(task) } as u64;
    // The user registers: `orig_rax` the syscall (negative outside one), `rax` its return value.
    let syscall = user_reg(regs, ORIG_RAX)? as i64;
    let ret = user_reg(regs, RAX)? as i64;
    if syscall >= 0 && interrupted_by_handler(ret, flags) {
        count_failure(FailureKey {
            syscall: syscall as u32,
            errno: EINTR,
        });
    }
    Ok(())
}
