//! The target's threads seen from outside, without stopping or tracing them: which threads it
//! has, what each is blocked in (/proc/PID/task/TID/syscall), and its memory. A process that is
//! already deadlocked never calls a lock function again, so this is all the threads family can
//! learn about it.

use std::{fs, io, os::unix::fs::FileExt};

/// What /proc/PID/task/TID/syscall says about a thread that is not running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BlockedSyscall {
    /// The system call number (x86-64 numbering), or -1 when the thread is blocked outside a
    /// system call (stopped, or in a page fault); the arguments are then zero.
    pub nr: i64,
    pub args: [u64; 6],
    /// The user stack pointer and program counter: where unwinding starts. In a system call the
    /// pc is the instruction after the `syscall` one.
    pub sp: u64,
    pub pc: u64,
}

/// Parses the text of /proc/PID/task/TID/syscall: `NR ARG1..ARG6 SP PC` in a system call,
/// `-1 SP PC` blocked outside one, `running` for a thread on a CPU (None: its registers change
/// as they are read, so there is nothing to unwind). Anything else is None too.
pub(crate) fn parse_syscall_file(text: &str) -> Option<BlockedSyscall> {
    let fields: Vec<&str> = text.split_whitespace().collect();
    let nr: i64 = fields.first()?.parse().ok()?;
    let hex = |s: &str| u64::from_str_radix(s.strip_prefix("0x")?, 16).ok();
    match (nr, fields.len()) {
        (-1, 3) => Some(BlockedSyscall {
            nr,
            args: [0; 6],
            sp: hex(fields[1])?,
            pc: hex(fields[2])?,
        }),
        (0.., 9) => {
            let mut args = [0u64; 6];
            for (arg, field) in args.iter_mut().zip(&fields[1..7]) {
                *arg = hex(field)?;
            }
            Some(BlockedSyscall {
                nr,
                args,
                sp: hex(fields[7])?,
                pc: hex(fields[8])?,
            })
        }
        _ => None,
    }
}

/// What thread `tid` of `pid` is blocked in; `Ok(None)` while it runs. An error when the thread
/// is gone (NotFound) or the file cannot be read (the kernel asks for ptrace access to the
/// target, which root has).
pub(crate) fn blocked_syscall(pid: i32, tid: i32) -> io::Result<Option<BlockedSyscall>> {
    let text = fs::read_to_string(format!("/proc/{pid}/task/{tid}/syscall"))?;
    Ok(parse_syscall_file(&text))
}

/// Reads `buf.len()` bytes of the target's memory at `addr`, all or an error. The target keeps
/// running: a value that changes while it is read can be torn, which the unwinder tolerates
/// (the threads it reads are blocked, so their stacks do not move).
pub(crate) fn read_memory(pid: i32, addr: u64, buf: &mut [u8]) -> io::Result<()> {
    if buf.is_empty() {
        return Ok(());
    }
    let n = vm_read(pid, addr, buf);
    if n == buf.len() as isize {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    // process_vm_readv can be missing (ENOSYS) or refused by a security module where
    // /proc/PID/mem still works; a short read (n >= 0) crossed into an unmapped page.
    if n < 0 && matches!(err.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
        let mem = fs::File::open(format!("/proc/{pid}/mem"))?;
        return mem.read_exact_at(buf, addr);
    }
    Err(if n < 0 {
        err
    } else {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("{addr:#x}: {n} of {} bytes mapped", buf.len()),
        )
    })
}

/// `process_vm_readv` of one range into `buf`: the bytes read from its start (fewer where the
/// range runs into memory that is not mapped), or -1 with `errno` set.
pub(crate) fn vm_read(pid: i32, addr: u64, buf: &mut [u8]) -> isize {
    let local = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let remote = libc::iovec {
        iov_base: addr as *mut libc::c_void,
        iov_len: buf.len(),
    };
    // SAFETY: `local` describes `buf`, which is valid for writes of its length for the whole
    // call; the kernel checks the remote range against the target's mappings and never
    // dereferences it in our address space.
    unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) }
}

/// Reads several ranges of the target's memory in one system call: `parts` are (address,
/// buffer); returns how many of them, from the first, were read whole (a range that is not
/// mapped ends the read; the caller reads the rest one by one).
pub(crate) fn read_memory_many(pid: i32, parts: &mut [(u64, Vec<u8>)]) -> usize {
    // The kernel takes at most IOV_MAX (1024) ranges a call.
    let count = parts.len().min(1024);
    let parts = &mut parts[..count];
    let local: Vec<libc::iovec> = parts
        .iter_mut()
        .map(|(_, buf)| libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        })
        .collect();
    let remote: Vec<libc::iovec> = parts
        .iter()
        .map(|(addr, buf)| libc::iovec {
            iov_base: *addr as *mut libc::c_void,
            iov_len: buf.len(),
        })
        .collect();
    // SAFETY: each local iovec describes a buffer of `parts`, valid for writes of its length
    // for the whole call; the kernel checks the remote ranges against the target's mappings.
    let n = unsafe {
        libc::process_vm_readv(
            pid,
            local.as_ptr(),
            local.len() as libc::c_ulong,
            remote.as_ptr(),
            remote.len() as libc::c_ulong,
            0,
        )
    };
    let mut left = usize::try_from(n).unwrap_or(0);
    let mut whole = 0;
    for (_, buf) in parts.iter() {
        if left < buf.len() {
            break;
        }
        left -= buf.len();
        whole += 1;
    }
    whole
}

/// A little-endian `u32` of the target's memory.
pub(crate) fn read_u32(pid: i32, addr: u64) -> io::Result<u32> {
    let mut buf = [0u8; 4];
    read_memory(pid, addr, &mut buf)?;
    Ok(u32::from_le_bytes(buf))
}

/// A little-endian `u64` of the target's memory.
pub(crate) fn read_u64(pid: i32, addr: u64) -> io::Result<u64> {
    let mut buf = [0u8; 8];
    read_memory(pid, addr, &mut buf)?;
    Ok(u64::from_le_bytes(buf))
}

/// The target's threads now, in ascending order (empty if it is gone).
pub(crate) fn thread_ids(pid: i32) -> Vec<i32> {
    let Ok(dir) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    let mut tids: Vec<i32> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .collect();
    tids.sort_unstable();
    tids
}

/// The name of a thread (its `comm`, as `pthread_setname_np` or the program set it).
pub(crate) fn thread_name(pid: i32, tid: i32) -> Option<String> {
    let comm = fs::read_to_string(format!("/proc/{pid}/task/{tid}/comm")).ok()?;
    Some(comm.trim_end_matches('\n').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_thread_in_a_system_call() {
        let text = "202 0x7f3a5c0010a0 0x80 0x2 0x0 0x0 0x0 0x7ffd1234abc0 0x7f3a5bc91d61\n";
        let s = parse_syscall_file(text).unwrap();
        assert_eq!(s.nr, 202);
        assert_eq!(s.args, [0x7f3a5c0010a0, 0x80, 2, 0, 0, 0]);
        assert_eq!(s.sp, 0x7ffd1234abc0);
        assert_eq!(s.pc, 0x7f3a5bc91d61);
    }

    #[test]
    fn parses_a_thread_blocked_outside_a_system_call() {
        let s = parse_syscall_file("-1 0x7ffd00001000 0x55d0c0a01234\n").unwrap();
        assert_eq!(s.nr, -1);
        assert_eq!(s.args, [0; 6]);
        assert_eq!((s.sp, s.pc), (0x7ffd00001000, 0x55d0c0a01234));
    }

    #[test]
    fn running_and_garbage_are_none() {
        assert_eq!(parse_syscall_file("running\n"), None);
        assert_eq!(parse_syscall_file(""), None);
        assert_eq!(parse_syscall_file("202 0x1 0x2"), None);
        assert_eq!(parse_syscall_file("-1 0x1"), None);
        assert_eq!(parse_syscall_file("7 0x0 0x0 0x0 0x0 0x0 zz 0x1 0x2"), None);
        assert_eq!(parse_syscall_file("-2 0x1 0x2"), None);
    }

    #[test]
    fn reads_own_memory_and_threads() {
        let value: u64 = 0x1122_3344_5566_7788;
        let pid = std::process::id() as i32;
        let addr = &value as *const u64 as u64;
        assert_eq!(read_u64(pid, addr).unwrap(), value);
        assert_eq!(read_u32(pid, addr).unwrap(), 0x5566_7788);
        assert!(read_u64(pid, 8).is_err(), "page zero is never mapped");
        let tids = thread_ids(pid);
        assert!(tids.contains(&pid));
        assert!(thread_name(pid, pid).is_some_and(|n| !n.is_empty()));
        // The main thread runs this test or waits for the one that does: either way its file
        // reads, while a thread that does not exist has none.
        assert!(blocked_syscall(pid, pid).is_ok());
        assert!(blocked_syscall(pid, i32::MAX).is_err());
    }
}
