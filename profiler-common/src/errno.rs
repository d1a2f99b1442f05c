//! Error numbers (x86-64 Linux) that the kernel programs compare against. Checked against the
//! `libc` crate by this module's tests.

/// Largest error number a syscall returns (as `-errno`): a return value in `-MAX_ERRNO..0` is a
/// failure (`MAX_ERRNO` in the kernel's `include/linux/err.h`; not in libc).
pub const MAX_ERRNO: u32 = 4095;
pub const EINTR: u32 = 4;
pub const EAGAIN: u32 = 11;
pub const EINPROGRESS: u32 = 115;
/// `ERESTARTSYS`, the first of the kernel's restart codes (`include/linux/errno.h`; not in libc).
/// A call that a signal interrupts returns one of them at `sys_exit`; what the target sees is
/// decided after, when the signal is delivered (see [`interrupted_by_handler`]): the call is
/// restarted (the target never sees the code), or it returns EINTR.
pub const ERESTART_FIRST: u32 = ERESTARTSYS;
pub const ERESTARTSYS: u32 = 512;
pub const ERESTARTNOINTR: u32 = 513;
pub const ERESTARTNOHAND: u32 = 514;
pub const ERESTART_RESTARTBLOCK: u32 = 516;

/// Whether a syscall whose return value is still `ret` when a handler of the target is set up
/// for a signal (`sa_flags` its flags) returns EINTR to the target: what x86's `handle_signal`
/// decides. `-ERESTARTNOHAND` and `-ERESTART_RESTARTBLOCK` become EINTR, `-ERESTARTSYS` unless
/// the handler has `SA_RESTART` (then the call is restarted, as `-ERESTARTNOINTR` always is).
/// Any other value is not a syscall interrupted there.
#[inline(always)]
pub const fn interrupted_by_handler(ret: i64, sa_flags: u64) -> bool {
    if ret == -(ERESTARTNOHAND as i64) || ret == -(ERESTART_RESTARTBLOCK as i64) {
        return true;
    }
    ret == -(ERESTARTSYS as i64) && sa_flags & crate::signals::SA_RESTART == 0
}

/// Whether a syscall's return value is a failure (`-errno`).
#[inline(always)]
pub const fn is_failure(ret: i64) -> bool {
    -(MAX_ERRNO as i64) <= ret && ret < 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_libc_ones() {
        for (ours, theirs) in [
            (EINTR, libc::EINTR),
            (EAGAIN, libc::EAGAIN),
            (EINPROGRESS, libc::EINPROGRESS),
        ] {
            assert_eq!(ours, theirs as u32);
        }
        // The restart codes lie above every error number user space knows.
        assert!(ERESTART_FIRST > libc::EHWPOISON as u32);
        const { assert!(ERESTART_FIRST < MAX_ERRNO) };
    }

    #[test]
    fn what_a_handler_makes_of_a_restart_code() {
        let restart = crate::signals::SA_RESTART;
        let code = |e: u32| -(e as i64);
        assert!(interrupted_by_handler(code(ERESTARTSYS), 0));
        assert!(!interrupted_by_handler(code(ERESTARTSYS), restart));
        assert!(!interrupted_by_handler(code(ERESTARTNOINTR), 0));
        assert!(interrupted_by_handler(code(ERESTARTNOHAND), restart));
        assert!(interrupted_by_handler(code(ERESTART_RESTARTBLOCK), restart));
        // Already EINTR (returned so by the call itself), a success, another failure: not one
        // that the delivery turns into EINTR.
        assert!(!interrupted_by_handler(code(EINTR), 0));
        assert!(!interrupted_by_handler(0, 0));
        assert!(!interrupted_by_handler(code(EAGAIN), 0));
    }

    #[test]
    fn failures() {
        assert!(is_failure(-1));
        assert!(is_failure(-4095));
        assert!(!is_failure(-4096));
        assert!(!is_failure(0));
        assert!(!is_failure(7));
        // An address returned by mmap high in the address space is not a failure.
        assert!(!is_failure(0x7fff_0000_0000));
        assert!(!is_failure(i64::MIN));
    }
}
