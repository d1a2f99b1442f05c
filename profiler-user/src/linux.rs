//! Linux names, in one place: errno values, signal numbers and codes, `wait(2)` statuses,
//! syscall names, open(2) flags, and which syscalls take a path. Values are the generic Linux
//! ABI shared by x86_64 and aarch64, except syscall numbers (x86_64).

/// (number, name, strerror text).
const ERRNOS: &[(i32, &str, &str)] = &[
    (1, "EPERM", "Operation not permitted"),
    (2, "ENOENT", "No such file or directory"),
    (3, "ESRCH", "No such process"),
    (4, "EINTR", "Interrupted system call"),
    (5, "EIO", "Input/output error"),
    (6, "ENXIO", "No such device or address"),
    (7, "E2BIG", "Argument list too long"),
    (8, "ENOEXEC", "Exec format error"),
    (9, "EBADF", "Bad file descriptor"),
    (10, "ECHILD", "No child processes"),
    (11, "EAGAIN", "Resource temporarily unavailable"),
    (12, "ENOMEM", "Cannot allocate memory"),
    (13, "EACCES", "Permission denied"),
    (14, "EFAULT", "Bad address"),
    (15, "ENOTBLK", "Block device required"),
    (16, "EBUSY", "Device or resource busy"),
    (17, "EEXIST", "File exists"),
    (18, "EXDEV", "Invalid cross-device link"),
    (19, "ENODEV", "No such device"),
    (20, "ENOTDIR", "Not a directory"),
    (21, "EISDIR", "Is a directory"),
    (22, "EINVAL", "Invalid argument"),
    (23, "ENFILE", "Too many open files in system"),
    (24, "EMFILE", "Too many open files"),
    (25, "ENOTTY", "Inappropriate ioctl for device"),
    (26, "ETXTBSY", "Text file busy"),
    (27, "EFBIG", "File too large"),
    (28, "ENOSPC", "No space left on device"),
    (29, "ESPIPE", "Illegal seek"),
    (30, "EROFS", "Read-only file system"),
    (31, "EMLINK", "Too many links"),
    (32, "EPIPE", "Broken pipe"),
    (33, "EDOM", "Numerical argument out of domain"),
    (34, "ERANGE", "Numerical result out of range"),
    (35, "EDEADLK", "Resource deadlock avoided"),
    (36, "ENAMETOOLONG", "File name too long"),
    (37, "ENOLCK", "No locks available"),
    (38, "ENOSYS", "Function not implemented"),
    (39, "ENOTEMPTY", "Directory not empty"),
    (40, "ELOOP", "Too many levels of symbolic links"),
    (42, "ENOMSG", "No message of desired type"),
    (43, "EIDRM", "Identifier removed"),
    (61, "ENODATA", "No data available"),
    (62, "ETIME", "Timer expired"),
    (71, "EPROTO", "Protocol error"),
    (74, "EBADMSG", "Bad message"),
    (75, "EOVERFLOW", "Value too large for defined data type"),
    (
        84,
        "EILSEQ",
        "Invalid or incomplete multibyte or wide character",
    ),
    (88, "ENOTSOCK", "Socket operation on non-socket"),
    (89, "EDESTADDRREQ", "Destination address required"),
    (90, "EMSGSIZE", "Message too long"),
    (91, "EPROTOTYPE", "Protocol wrong type for socket"),
    (92, "ENOPROTOOPT", "Protocol not available"),
    (93, "EPROTONOSUPPORT", "Protocol not supported"),
    (94, "ESOCKTNOSUPPORT", "Socket type not supported"),
    (95, "EOPNOTSUPP", "Operation not supported"),
    (96, "EPFNOSUPPORT", "Protocol family not supported"),
    (
        97,
        "EAFNOSUPPORT",
        "Address family not supported by protocol",
    ),
    (98, "EADDRINUSE", "Address already in use"),
    (99, "EADDRNOTAVAIL", "Cannot assign requested address"),
    (100, "ENETDOWN", "Network is down"),
    (101, "ENETUNREACH", "Network is unreachable"),
    (102, "ENETRESET", "Network dropped connection on reset"),
    (103, "ECONNABORTED", "Software caused connection abort"),
    (104, "ECONNRESET", "Connection reset by peer"),
    (105, "ENOBUFS", "No buffer space available"),
    (106, "EISCONN", "Transport endpoint is already connected"),
    (107, "ENOTCONN", "Transport endpoint is not connected"),
    (
        108,
        "ESHUTDOWN",
        "Cannot send after transport endpoint shutdown",
    ),
    (110, "ETIMEDOUT", "Connection timed out"),
    (111, "ECONNREFUSED", "Connection refused"),
    (112, "EHOSTDOWN", "Host is down"),
    (113, "EHOSTUNREACH", "No route to host"),
    (114, "EALREADY", "Operation already in progress"),
    (115, "EINPROGRESS", "Operation now in progress"),
    (116, "ESTALE", "Stale file handle"),
    (121, "EREMOTEIO", "Remote I/O error"),
    (122, "EDQUOT", "Disk quota exceeded"),
    (123, "ENOMEDIUM", "No medium found"),
    (125, "ECANCELED", "Operation canceled"),
    (126, "ENOKEY", "Required key not available"),
    (130, "EOWNERDEAD", "Owner died"),
    (131, "ENOTRECOVERABLE", "State not recoverable"),
    (133, "EHWPOISON", "Memory page has hardware error"),
    // Kernel-internal restart codes: visible at syscall exit when a signal interrupts a
    // syscall, never seen by the program itself.
    (512, "ERESTARTSYS", "Interrupted, will restart"),
    (513, "ERESTARTNOINTR", "Interrupted, will restart"),
    (514, "ERESTARTNOHAND", "Interrupted, will restart"),
    (515, "ENOIOCTLCMD", "No ioctl command"),
    (516, "ERESTART_RESTARTBLOCK", "Interrupted, will restart"),
    (524, "ENOTSUPP", "Operation is not supported"),
];

const ERRNO_ALIASES: &[(&str, i32)] = &[("EWOULDBLOCK", 11), ("EDEADLOCK", 35), ("ENOTSUP", 95)];

/// The symbolic name of an errno value (`2` -> `ENOENT`).
pub(crate) fn errno_name(errno: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|e| e.0 == errno).map(|e| e.1)
}

/// The strerror text of an errno value.
pub(crate) fn errno_text(errno: i32) -> Option<&'static str> {
    ERRNOS.iter().find(|e| e.0 == errno).map(|e| e.2)
}

/// The value of an errno name, aliases included (`EWOULDBLOCK` -> 11).
pub(crate) fn errno_value(name: &str) -> Option<i32> {
    ERRNOS
        .iter()
        .find(|e| e.1 == name)
        .map(|e| e.0)
        .or_else(|| ERRNO_ALIASES.iter().find(|a| a.0 == name).map(|a| a.1))
}

/// A display name for any errno value: its symbol, or the number for an unknown one.
pub(crate) fn errno_display(errno: i32) -> String {
    errno_name(errno).map_or_else(|| errno.to_string(), str::to_string)
}

/// (number, name, short description).
const SIGNALS: &[(i32, &str, &str)] = &[
    (1, "SIGHUP", "hangup"),
    (2, "SIGINT", "interrupt"),
    (3, "SIGQUIT", "quit"),
    (4, "SIGILL", "illegal instruction"),
    (5, "SIGTRAP", "trace/breakpoint trap"),
    (6, "SIGABRT", "aborted"),
    (7, "SIGBUS", "bus error"),
    (8, "SIGFPE", "floating-point exception"),
    (9, "SIGKILL", "killed"),
    (10, "SIGUSR1", "user signal 1"),
    (11, "SIGSEGV", "segmentation fault"),
    (12, "SIGUSR2", "user signal 2"),
    (13, "SIGPIPE", "broken pipe"),
    (14, "SIGALRM", "alarm clock"),
    (15, "SIGTERM", "terminated"),
    (16, "SIGSTKFLT", "stack fault"),
    (17, "SIGCHLD", "child status changed"),
    (18, "SIGCONT", "continued"),
    (19, "SIGSTOP", "stopped"),
    (20, "SIGTSTP", "stopped (tty)"),
    (21, "SIGTTIN", "stopped (tty input)"),
    (22, "SIGTTOU", "stopped (tty output)"),
    (23, "SIGURG", "urgent I/O condition"),
    (24, "SIGXCPU", "CPU time limit exceeded"),
    (25, "SIGXFSZ", "file size limit exceeded"),
    (26, "SIGVTALRM", "virtual timer expired"),
    (27, "SIGPROF", "profiling timer expired"),
    (28, "SIGWINCH", "window changed"),
    (29, "SIGIO", "I/O possible"),
    (30, "SIGPWR", "power failure"),
    (31, "SIGSYS", "bad system call"),
];

pub(crate) const SIGKILL: i32 = 9;

/// What a `wait(2)` status says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WaitStatus {
    Exited(i32),
    Signaled {
        signal: i32,
        core_dumped: bool,
    },
    /// Stopped or continued: the process still runs.
    Other,
}

/// Decodes a `wait(2)` status.
pub(crate) fn wait_status(status: i32) -> WaitStatus {
    match status & 0x7f {
        0 => WaitStatus::Exited((status >> 8) & 0xff),
        // Stopped (0x7f in the low bits) or continued (0xffff).
        0x7f => WaitStatus::Other,
        signal => WaitStatus::Signaled {
            signal,
            core_dumped: status & 0x80 != 0,
        },
    }
}

/// The exit status a shell gives a process that ended with `wait(2)` status `status`: its exit
/// code, or 128 + N when signal N ended it; None while it has not ended.
pub(crate) fn shell_status(status: i32) -> Option<u8> {
    match wait_status(status) {
        WaitStatus::Exited(code) => u8::try_from(code).ok(),
        WaitStatus::Signaled { signal, .. } => u8::try_from(128 + signal).ok(),
        WaitStatus::Other => None,
    }
}

/// Whether a signal's default action ends the process.
pub(crate) fn default_is_fatal(signo: i32) -> bool {
    // The kernel programs decide with the same function which signals get a stack.
    profiler_common::signals::default_is_fatal(signo)
}

/// The name of an x86-64 syscall number (`syscall_N` for one this build does not know).
pub(crate) fn syscall_name(id: u32) -> String {
    syscalls::Sysno::new(id as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{id}"))
}

/// The name of a signal (`11` -> `SIGSEGV`; real-time signals as `SIGRTMIN+n`).
pub(crate) fn signal_name(signo: i32) -> String {
    match SIGNALS.iter().find(|s| s.0 == signo) {
        Some(s) => s.1.to_string(),
        None if (34..=64).contains(&signo) => format!("SIGRTMIN+{}", signo - 34),
        None => format!("SIG{signo}"),
    }
}

/// A short description of a signal.
pub(crate) fn signal_text(signo: i32) -> &'static str {
    SIGNALS
        .iter()
        .find(|s| s.0 == signo)
        .map_or("signal", |s| s.2)
}

/// The number of a signal name; accepts `SIGSEGV`, `SEGV` and decimal numbers.
pub(crate) fn signal_value(name: &str) -> Option<i32> {
    if let Ok(n) = name.parse::<i32>() {
        return (1..=64).contains(&n).then_some(n);
    }
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("SIG") {
        upper
    } else {
        format!("SIG{upper}")
    };
    SIGNALS.iter().find(|s| s.1 == full).map(|s| s.0)
}

/// The symbolic name and meaning of a signal's `si_code`.
pub(crate) fn signal_code(signo: i32, code: i32) -> Option<(&'static str, &'static str)> {
    let generic = match code {
        0 => Some(("SI_USER", "sent by kill()")),
        0x80 => Some(("SI_KERNEL", "sent by the kernel")),
        -1 => Some(("SI_QUEUE", "sent by sigqueue()")),
        -6 => Some(("SI_TKILL", "sent by tkill()/raise()")),
        _ => None,
    };
    if code <= 0 || code == 0x80 {
        return generic;
    }
    let table: &[(&str, &str)] = match signo {
        11 => &[
            ("SEGV_MAPERR", "address not mapped"),
            ("SEGV_ACCERR", "invalid permissions for mapped object"),
            ("SEGV_BNDERR", "failed address bound checks"),
            ("SEGV_PKUERR", "access denied by protection keys"),
        ],
        7 => &[
            ("BUS_ADRALN", "invalid address alignment"),
            ("BUS_ADRERR", "nonexistent physical address"),
            ("BUS_OBJERR", "object-specific hardware error"),
            ("BUS_MCEERR_AR", "hardware memory error, action required"),
            ("BUS_MCEERR_AO", "hardware memory error, action optional"),
        ],
        8 => &[
            ("FPE_INTDIV", "integer divide by zero"),
            ("FPE_INTOVF", "integer overflow"),
            ("FPE_FLTDIV", "floating-point divide by zero"),
            ("FPE_FLTOVF", "floating-point overflow"),
            ("FPE_FLTUND", "floating-point underflow"),
            ("FPE_FLTRES", "floating-point inexact result"),
            ("FPE_FLTINV", "floating-point invalid operation"),
            ("FPE_FLTSUB", "subscript out of range"),
        ],
        4 => &[
            ("ILL_ILLOPC", "illegal opcode"),
            ("ILL_ILLOPN", "illegal operand"),
            ("ILL_ILLADR", "illegal addressing mode"),
            ("ILL_ILLTRP", "illegal trap"),
            ("ILL_PRVOPC", "privileged opcode"),
            ("ILL_PRVREG", "privileged register"),
            ("ILL_COPROC", "coprocessor error"),
            ("ILL_BADSTK", "internal stack error"),
        ],
        5 => &[("TRAP_BRKPT", "breakpoint"), ("TRAP_TRACE", "trace trap")],
        _ => &[],
    };
    usize::try_from(code - 1)
        .ok()
        .and_then(|i| table.get(i))
        .copied()
}

/// Syscalls whose traced argument is a path (others carry an address or nothing).
const PATH_SYSCALLS: &[&str] = &[
    "open",
    "openat",
    "openat2",
    "creat",
    "stat",
    "lstat",
    "newfstatat",
    "fstatat64",
    "statx",
    "access",
    "faccessat",
    "faccessat2",
    "execve",
    "execveat",
    "readlink",
    "readlinkat",
    "unlink",
    "unlinkat",
    "mkdir",
    "mkdirat",
    "rmdir",
    "rename",
    "renameat",
    "renameat2",
    "chdir",
    "chmod",
    "fchmodat",
    "chown",
    "fchownat",
    "truncate",
    "statfs",
    "symlink",
    "symlinkat",
    "link",
    "linkat",
    "mknod",
    "mknodat",
    "utimensat",
    "getxattr",
    "lgetxattr",
    "setxattr",
    "lsetxattr",
    "listxattr",
    "llistxattr",
    "uselib",
    "swapon",
    "mount",
    "inotify_add_watch",
    "name_to_handle_at",
];

/// Whether a syscall's argument is a path.
pub(crate) fn is_path_syscall(syscall: &str) -> bool {
    PATH_SYSCALLS.contains(&syscall)
}

#[cfg(target_arch = "aarch64")]
const ARCH_OPEN_FLAGS: &[(u64, &str)] = &[
    (0o40000, "O_DIRECTORY"),
    (0o100000, "O_NOFOLLOW"),
    (0o200000, "O_DIRECT"),
    (0o400000, "O_LARGEFILE"),
];
#[cfg(not(target_arch = "aarch64"))]
const ARCH_OPEN_FLAGS: &[(u64, &str)] = &[
    (0o40000, "O_DIRECT"),
    (0o100000, "O_LARGEFILE"),
    (0o200000, "O_DIRECTORY"),
    (0o400000, "O_NOFOLLOW"),
];

const OPEN_FLAGS: &[(u64, &str)] = &[
    (0o100, "O_CREAT"),
    (0o200, "O_EXCL"),
    (0o400, "O_NOCTTY"),
    (0o1000, "O_TRUNC"),
    (0o2000, "O_APPEND"),
    (0o4000, "O_NONBLOCK"),
    (0o10000, "O_DSYNC"),
    (0o20000, "O_ASYNC"),
    (0o1000000, "O_NOATIME"),
    (0o2000000, "O_CLOEXEC"),
    (0o4000000, "O_SYNC"),
    (0o10000000, "O_PATH"),
    (0o20000000, "O_TMPFILE"),
];

/// Renders open(2) flags as `O_RDONLY|O_CLOEXEC`; unknown bits as a trailing octal number.
pub(crate) fn open_flags(flags: u64) -> String {
    let mut parts = vec![
        match flags & 0o3 {
            0 => "O_RDONLY",
            1 => "O_WRONLY",
            2 => "O_RDWR",
            _ => "O_ACCMODE",
        }
        .to_string(),
    ];
    let mut rest = flags & !0o3;
    for &(bit, name) in OPEN_FLAGS.iter().chain(ARCH_OPEN_FLAGS) {
        if rest & bit != 0 {
            parts.push(name.to_string());
            rest &= !bit;
        }
    }
    if rest != 0 {
        parts.push(format!("0o{rest:o}"));
    }
    parts.join("|")
}

/// Errno values whose strerror text is distinctive enough to infer the errno from a message
/// that quotes it (`open /x: permission denied`).
pub(crate) const INFERABLE_ERRNOS: &[i32] = &[
    1, 2, 12, 13, 17, 20, 21, 23, 24, 28, 30, 32, 98, 99, 101, 103, 104, 110, 111, 113, 122,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_statuses_and_default_actions() {
        assert_eq!(wait_status(3 << 8), WaitStatus::Exited(3));
        assert_eq!(
            wait_status(libc::SIGSEGV | 0x80),
            WaitStatus::Signaled {
                signal: libc::SIGSEGV,
                core_dumped: true
            }
        );
        assert_eq!(wait_status(0xffff), WaitStatus::Other);
        assert_eq!(wait_status((libc::SIGSTOP << 8) | 0x7f), WaitStatus::Other);
        assert_eq!(shell_status(0), Some(0));
        assert_eq!(shell_status(3 << 8), Some(3));
        assert_eq!(shell_status(255 << 8), Some(255));
        assert_eq!(shell_status(libc::SIGKILL), Some(128 + 9));
        assert_eq!(shell_status(libc::SIGSEGV | 0x80), Some(128 + 11));
        assert_eq!(shell_status(0xffff), None);
        assert!(default_is_fatal(libc::SIGSEGV) && default_is_fatal(libc::SIGTERM));
        assert!(!default_is_fatal(libc::SIGCHLD) && !default_is_fatal(libc::SIGWINCH));
        assert_eq!(syscall_name(1), "write");
        assert_eq!(syscall_name(100_000), "syscall_100000");
    }

    #[test]
    fn errno_lookups() {
        assert_eq!(errno_name(2), Some("ENOENT"));
        assert_eq!(errno_value("ENOENT"), Some(2));
        assert_eq!(errno_value("EWOULDBLOCK"), Some(11));
        assert_eq!(errno_value("ENOPE"), None);
        assert_eq!(errno_display(999), "999");
        assert_eq!(errno_text(111), Some("Connection refused"));
    }

    #[test]
    fn signal_lookups() {
        assert_eq!(signal_name(11), "SIGSEGV");
        assert_eq!(signal_name(35), "SIGRTMIN+1");
        assert_eq!(signal_value("SIGSEGV"), Some(11));
        assert_eq!(signal_value("segv"), Some(11));
        assert_eq!(signal_value("9"), Some(9));
        assert_eq!(signal_value("SIGNOPE"), None);
        assert_eq!(signal_code(11, 1).unwrap().0, "SEGV_MAPERR");
        assert_eq!(signal_code(8, 1).unwrap().1, "integer divide by zero");
        assert_eq!(signal_code(11, 0).unwrap().0, "SI_USER");
        assert_eq!(signal_code(11, 42), None);
    }

    #[test]
    fn flags_and_paths() {
        assert_eq!(open_flags(0o2000000), "O_RDONLY|O_CLOEXEC");
        assert_eq!(open_flags(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
        assert!(open_flags(1 << 40).ends_with("0o20000000000000"));
        assert!(is_path_syscall("openat") && !is_path_syscall("connect"));
    }
}
