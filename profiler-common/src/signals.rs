//! Signal numbers and dispositions (x86-64 Linux) that the kernel programs compare against.
//! Checked against the `libc` crate by this module's tests.

pub const SIGILL: i32 = 4;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGSEGV: i32 = 11;
pub const SIGCHLD: i32 = 17;
pub const SIGCONT: i32 = 18;
pub const SIGSTOP: i32 = 19;
pub const SIGTSTP: i32 = 20;
pub const SIGTTIN: i32 = 21;
pub const SIGTTOU: i32 = 22;
pub const SIGURG: i32 = 23;
pub const SIGWINCH: i32 = 28;
/// `sa_handler` of the default action.
pub const SIG_DFL: u64 = 0;
/// `sa_handler` of an ignored signal.
pub const SIG_IGN: u64 = 1;
/// `sa_flags`: a syscall that a handler interrupts is restarted rather than failing with EINTR.
pub const SA_RESTART: u64 = 0x1000_0000;

/// Whether signal `signo` reports a fault, with its address in `si_addr`.
#[inline(always)]
pub const fn is_fault(signo: i32) -> bool {
    matches!(signo, SIGILL | SIGBUS | SIGFPE | SIGSEGV)
}

/// Whether the default action of signal `signo` ends the process (with or without a core):
/// all but the ones ignored by default (SIGCHLD, SIGCONT, SIGURG, SIGWINCH) and the ones that
/// stop it.
#[inline(always)]
pub const fn default_is_fatal(signo: i32) -> bool {
    !matches!(
        signo,
        SIGCHLD | SIGCONT | SIGSTOP | SIGTSTP | SIGTTIN | SIGTTOU | SIGURG | SIGWINCH
    )
}

/// Whether the user stack is taken where signal `signo` is delivered with handler `handler`:
/// for a fault (a handler may still let the process go on: the JVM, Go) and for a signal that
/// ends the process (the default action, fatal). Other signals, handled or ignored, are only
/// counted, and cost no stack walk.
#[inline(always)]
pub const fn wants_stack(signo: i32, handler: u64) -> bool {
    is_fault(signo) || (handler == SIG_DFL && default_is_fatal(signo))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_libc_ones() {
        for (ours, theirs) in [
            (SIGILL, libc::SIGILL),
            (SIGBUS, libc::SIGBUS),
            (SIGFPE, libc::SIGFPE),
            (SIGSEGV, libc::SIGSEGV),
            (SIGCHLD, libc::SIGCHLD),
            (SIGCONT, libc::SIGCONT),
            (SIGSTOP, libc::SIGSTOP),
            (SIGTSTP, libc::SIGTSTP),
            (SIGTTIN, libc::SIGTTIN),
            (SIGTTOU, libc::SIGTTOU),
            (SIGURG, libc::SIGURG),
            (SIGWINCH, libc::SIGWINCH),
        ] {
            assert_eq!(ours, theirs);
        }
        assert_eq!(SIG_DFL, libc::SIG_DFL as u64);
        assert_eq!(SIG_IGN, libc::SIG_IGN as u64);
        assert_eq!(SA_RESTART, libc::SA_RESTART as u64);
        assert!(is_fault(libc::SIGSEGV) && !is_fault(libc::SIGTERM));
    }

    #[test]
    fn stacks_are_taken_for_faults_and_fatal_signals_only() {
        assert!(default_is_fatal(libc::SIGTERM) && default_is_fatal(libc::SIGABRT));
        assert!(!default_is_fatal(libc::SIGCHLD) && !default_is_fatal(libc::SIGTSTP));
        // A fault, handled or not.
        assert!(wants_stack(libc::SIGSEGV, SIG_DFL) && wants_stack(libc::SIGSEGV, 0x4010));
        // A fatal signal with its default action; not once a handler catches or ignores it.
        assert!(wants_stack(libc::SIGABRT, SIG_DFL) && wants_stack(libc::SIGKILL, SIG_DFL));
        assert!(!wants_stack(libc::SIGTERM, 0x4010) && !wants_stack(libc::SIGTERM, SIG_IGN));
        // Ignored by default.
        assert!(!wants_stack(libc::SIGCHLD, SIG_DFL) && !wants_stack(libc::SIGWINCH, SIG_DFL));
    }
}
