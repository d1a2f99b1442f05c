//! Error numbers (x86-64 Linux) that the kernel programs compare against. Checked against the
//! `libc` crate by this module's tests.

/// Largest error number a syscall returns (as `-errno`): a return value in `-MAX_ERRNO..0` is a
/// failure (`MAX_ERRNO` in the kernel's `include/linux/err.h`; not in libc).
pub const MAX_ERRNO: u32 = 4095;
pub const EINTR: u32 = 4;
pub const EAGAIN: u32 = 11;
pub const EINPROGRESS: u32 = 115;
/// `ERESTARTSYS`, the first of the kernel's restart codes (`include/linux/errno.h`; not in libc):
/// a call failing with one of these or above is restarted, and the target never sees it.
pub const ERESTART_FIRST: u32 = 512;

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
