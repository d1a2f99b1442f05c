//! The `errors` family: failed system calls, delivered signals, OOM kills and what the target
//! writes to its stdout and stderr, from tracepoints (no probe in the target's code).

use crate::event::EventHeader;

/// Bytes of a path (or socket address) kept with a failed syscall.
pub const ARG_CAPTURE: usize = 256;
/// Bytes of output per record; a write is split over several records.
pub const OUTPUT_CHUNK: usize = 512;
/// Most bytes of one write (or writev) kept: all of a write up to this size; of a longer one,
/// its first `OUTPUT_KEEP - OUTPUT_TAIL` bytes and its last [`OUTPUT_TAIL`]. The bytes between
/// are counted (`Counter::OutputTruncatedBytes`) and marked in the stream (see
/// [`OutputEvent::truncated`]).
pub const OUTPUT_KEEP: u64 = 64 << 10;
/// Bytes kept from the end of a write longer than [`OUTPUT_KEEP`]: a traceback ends with the
/// exception line that names the error.
pub const OUTPUT_TAIL: u64 = 4 << 10;
/// Most steps of the loop that captures one write longer than [`OUTPUT_CHUNK`] (or any writev):
/// a step sends one record, reads one iovec, or passes over the bytes not kept. 64 KiB is 128
/// records; the rest is room for a writev's iovecs (each can split a record in two). What a
/// writev of very many small buffers has left when the steps run out is counted as truncated.
pub const OUTPUT_MAX_STEPS: u32 = 256;
/// Failures of one (syscall, errno) sent with their details before the rate limit applies: an
/// interpreter's start-up or an import storm probes hundreds of missing files.
pub const DETAIL_BURST: u64 = 256;
/// After the burst, at most one failure of a kind is detailed per this many ns (16 a second);
/// every failure is still counted exactly.
pub const DETAIL_INTERVAL_NS: u64 = 62_500_000;
/// "No traced function was running."
pub const NO_FUNCTION: u32 = u32::MAX;

/// What `SyscallErrorEvent::arg` holds.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgKind {
    None = 0,
    /// A NUL-terminated path.
    Path = 1,
    /// A `struct sockaddr` (`arg_len` bytes).
    SockAddr = 2,
}

/// A failed system call.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct SyscallErrorEvent {
    pub header: EventHeader,
    /// x86-64 syscall number.
    pub syscall: u32,
    /// Positive errno.
    pub errno: u32,
    /// User stack in the `ERROR_STACKS` map, or negative when it could not be taken.
    pub stack_id: i32,
    /// The traced function running on this thread (function id) or [`NO_FUNCTION`].
    pub func: u32,
    pub arg_len: u32,
    /// An [`ArgKind`] value.
    pub arg_kind: u8,
    /// 1 for a non-blocking connect that failed after connect(2) returned `EINPROGRESS` (from
    /// `inet_sock_set_state`, see [`programs::INET_SOCK_SET_STATE`]): `errno` is how the
    /// connection failed, `arg` the address connect(2) was given, `stack_id` its stack. 0 for a
    /// syscall that returned `errno` itself.
    pub deferred: u8,
    pub _pad: [u8; 2],
    /// The Python stack at the syscall in `PY_STACKS` (see [`crate::python`]); 0: none.
    pub python: u64,
    pub arg: [u8; ARG_CAPTURE],
}

const _: () = assert!(core::mem::size_of::<SyscallErrorEvent>() == 56 + ARG_CAPTURE);

/// A signal delivered to the target (from the `signal_deliver` raw tracepoint).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct SignalEvent {
    pub header: EventHeader,
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    pub errno: i32,
    /// 0: default action, 1: ignored, 2: a handler of the target's.
    pub disposition: u32,
    /// `si_addr`: the faulting address for SIGSEGV, SIGBUS, SIGFPE and SIGILL.
    pub fault_addr: u64,
    /// User stack where the signal is delivered, in the `ERROR_STACKS` map: taken for fault
    /// signals and for signals that end the process (see `signals::wants_stack`); negative for
    /// others, or when it could not be taken.
    pub stack_id: i32,
    pub func: u32,
    /// The Python stack where it is delivered, taken with `stack_id`; 0: none.
    pub python: u64,
}

const _: () = assert!(core::mem::size_of::<SignalEvent>() == 64);

/// A piece of what the target wrote to fd 1 or 2. A write longer than [`OUTPUT_CHUNK`] comes
/// in several records, made in order by one run of the program: the ring buffer hands records
/// over in the order they were reserved, and they share the write's timestamp, so the pieces of
/// one write arrive in order, with nothing of the same thread between them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct OutputEvent {
    pub header: EventHeader,
    pub fd: u32,
    /// Valid bytes in `data`.
    pub len: u32,
    /// Bytes of the same write not captured right before `data` (the middle of a write longer
    /// than [`OUTPUT_KEEP`], or bytes that could not be read); 0 when `data` follows the
    /// previous record of the write. Bytes lost at the end of a write have no record after them
    /// to say so: every byte not captured is also counted in `Counter::OutputTruncatedBytes`.
    pub truncated: u32,
    pub _pad: u32,
    pub data: [u8; OUTPUT_CHUNK],
}

const _: () = assert!(core::mem::size_of::<OutputEvent>() == 40 + OUTPUT_CHUNK);

/// The OOM killer chose the target.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct OomEvent {
    pub header: EventHeader,
    /// Anonymous resident memory of the victim, pages.
    pub anon_rss_pages: u64,
    pub total_vm_pages: u64,
}

const _: () = assert!(core::mem::size_of::<OomEvent>() == 40);

/// Key of the exact failure counts: every failed syscall of the target, benign or not.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FailureKey {
    pub syscall: u32,
    pub errno: u32,
}

/// Value of the failure count map.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct FailureStats {
    /// Failures of this kind, exactly.
    pub count: u64,
    /// When the last one past the burst was detailed (CLOCK_MONOTONIC ns).
    pub last_detailed_ns: u64,
}

pub const FAILURE_KINDS_MAX: u32 = 4096;
pub const ERROR_STACKS_MAX: u32 = 4096;

/// Bytes of connect(2)'s address kept while a non-blocking connect is in flight: a
/// `struct sockaddr_in6`, the largest address TCP connects to.
pub const CONNECT_ADDR_CAPTURE: usize = 28;
/// TCP connects of the target in flight at once that are followed (the oldest are forgotten
/// past this: the maps are LRU).
pub const CONNECTS_MAX: u32 = 1024;

/// TCP states (`include/net/tcp_states.h`), as `inet_sock_set_state` reports them.
pub mod tcp {
    pub const SYN_SENT: i32 = 2;
    pub const CLOSE: i32 = 7;
}

/// Name of the global holding the byte offset of `sk_err` in `struct sock` (from the running
/// kernel's BTF; `u32::MAX` when unknown: then no non-blocking connect failure is reported).
pub const SOCK_ERR_OFFSET_GLOBAL: &str = "SOCK_ERR_OFFSET";

/// Map names in the eBPF object (see [`crate::names`]): profiler-ebpf names each map static
/// exactly so.
pub mod maps {
    /// [`super::FailureStats`] by [`super::FailureKey`].
    pub const FAILURES: &str = "FAILURES";
    /// The stack-trace map of the failures' user stacks.
    pub const ERROR_STACKS: &str = "ERROR_STACKS";
    /// Per CPU, the state of the kernel's loop over one long write (kernel side only).
    pub const OUTPUT_CAPTURE: &str = "OUTPUT_CAPTURE";
    /// The target's TCP connects in flight, by `struct sock *` (kernel side only).
    pub const CONNECT_SOCKS: &str = "CONNECT_SOCKS";
    /// The socket each thread's connect(2) put in SYN_SENT, by thread id (kernel side only).
    pub const CONNECT_THREADS: &str = "CONNECT_THREADS";
}

/// Program names in the eBPF object (see [`crate::names`]): profiler-ebpf names each program
/// function exactly so.
pub mod programs {
    /// `tp_btf` program on `sys_exit` (preferred).
    pub const SYSCALL_EXIT_BTF: &str = "syscall_exit_btf";
    /// Raw tracepoint program on `sys_exit` (where the BTF one does not load).
    pub const SYSCALL_EXIT: &str = "syscall_exit";
    /// Raw tracepoint program on `signal_deliver`.
    pub const SIGNAL_DELIVER: &str = "signal_deliver";
    /// On the `oom/mark_victim` tracepoint.
    pub const OOM_MARK_VICTIM: &str = "oom_mark_victim";
    /// Raw tracepoint program on `inet_sock_set_state`: follows the target's TCP connects from
    /// SYN_SENT to their end, to report the non-blocking ones that fail.
    pub const INET_SOCK_SET_STATE: &str = "inet_sock_set_state";
    /// Raw tracepoint program on `signal_deliver` that counts the syscalls a handler makes
    /// fail with EINTR (in `FAILURES`; they leave `sys_exit` with a restart code).
    pub const SYSCALL_INTERRUPTED: &str = "syscall_interrupted";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[
    maps::FAILURES,
    maps::ERROR_STACKS,
    maps::OUTPUT_CAPTURE,
    maps::CONNECT_SOCKS,
    maps::CONNECT_THREADS,
];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[
    programs::SYSCALL_EXIT_BTF,
    programs::SYSCALL_EXIT,
    programs::SIGNAL_DELIVER,
    programs::OOM_MARK_VICTIM,
    programs::INET_SOCK_SET_STATE,
    programs::SYSCALL_INTERRUPTED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connect_address_fits_every_tcp_address() {
        assert_eq!(CONNECT_ADDR_CAPTURE, size_of::<libc::sockaddr_in6>());
        assert!(size_of::<libc::sockaddr_in>() <= CONNECT_ADDR_CAPTURE);
        const { assert!(CONNECT_ADDR_CAPTURE <= ARG_CAPTURE) };
    }
}

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers and byte arrays
    // with explicit padding; any bit pattern is valid.
    unsafe impl aya::Pod for SyscallErrorEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SignalEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OutputEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for OomEvent {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FailureKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for FailureStats {}
}
