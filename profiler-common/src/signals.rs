//! Signal numbers and dispositions (x86-64 Linux) that the kernel programs compare against.
//! Checked against the `libc` crate by this module's tests.

pub const SIGILL: i32 = 4;
pub const SIGBUS: i32 = 7;
pub const SIGFPE: i32 = 8;
pub const SIGSEGV: i32 = 11;
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
        ] {
            assert_eq!(ours, theirs);
        }
        assert_eq!(SIG_DFL, libc::SIG_DFL as u64);
        assert_eq!(SIG_IGN, libc::SIG_IGN as u64);
        assert_eq!(SA_RESTART, libc::SA_RESTART as u64);
        assert!(is_fault(libc::SIGSEGV) && !is_fault(libc::SIGTERM));
    }
}
