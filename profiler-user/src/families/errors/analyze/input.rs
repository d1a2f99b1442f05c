//! What the kernel side delivers to the errors analyzer: plain data, already decoded from the
//! ring buffers and, where the caller can, with the user stack symbolized.

/// A syscall that returned an error.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SyscallFailure {
    pub tid: u32,
    /// CLOCK_MONOTONIC nanoseconds.
    pub timestamp_ns: u64,
    /// Syscall name, e.g. `openat`.
    pub syscall: String,
    /// Positive errno, e.g. 2 for ENOENT.
    pub errno: i32,
    /// The path for path-taking syscalls (open, openat, stat, access, execve, ...), the peer
    /// address (`127.0.0.1:9`) for connect, otherwise `None`.
    pub arg: Option<String>,
    /// open(2) flags when known.
    pub flags: Option<u64>,
    /// Symbolized user stack at the syscall, innermost first; empty when not captured.
    pub stack: Vec<String>,
    /// The traced function running on this thread, if any.
    pub function: Option<String>,
    /// A non-blocking `connect` that returned `EINPROGRESS` and then failed with `errno` (the
    /// kernel saw the connection end); `arg` and `stack` are the connect call's.
    pub deferred: bool,
    /// The Python stack at the syscall (a CPython target's), innermost first; empty: none.
    pub python: Vec<crate::report::errors::Frame>,
}

/// A signal delivered to a thread of the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct SignalEvent {
    pub tid: u32,
    pub timestamp_ns: u64,
    pub signo: i32,
    /// `si_code`.
    pub code: i32,
    /// `si_addr` for fault signals.
    pub fault_addr: Option<u64>,
    /// Whether the signal ends the process (default action, no handler).
    pub fatal: bool,
    /// Symbolized user stack where the signal was delivered (the faulting instruction first);
    /// empty when not captured (the kernel takes it for faults and fatal signals).
    pub stack: Vec<String>,
    pub function: Option<String>,
    /// The Python stack there (a CPython target's), innermost first; empty: none.
    pub python: Vec<crate::report::errors::Frame>,
}

/// The kernel's OOM killer chose the target.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OomKill {
    /// The victim thread (usually the main thread).
    pub tid: u32,
    pub timestamp_ns: u64,
    /// Resident memory of the victim when killed, if the tracepoint provides it.
    pub rss_bytes: Option<u64>,
}

/// The target process exited.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct ExitEvent {
    pub timestamp_ns: u64,
    /// wait(2) status encoding: exit code in bits 8..16, or terminating signal in bits 0..7
    /// with bit 7 set when a core was dumped.
    pub status: i32,
}

/// Bytes written by the target to stdout (fd 1) or stderr (fd 2) in one write/writev.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OutputChunk {
    pub tid: u32,
    pub timestamp_ns: u64,
    pub fd: u32,
    pub bytes: Vec<u8>,
    /// Symbolized user stack of the write, innermost first; empty when not captured.
    pub stack: Vec<String>,
    pub function: Option<String>,
}

/// Stack and traced function attached to an event by the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CallContext {
    pub stack: Vec<String>,
    pub function: Option<String>,
}

/// An exception a CPython target raised (made by the python family).
pub(crate) use crate::families::python::PythonRaise;

/// A CUDA call that returned an error, seen by the gpu family's probes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct CudaFailureEvent {
    pub tid: u32,
    pub timestamp_ns: u64,
    /// `cudaMalloc(4294967296 bytes) = cudaErrorMemoryAllocation (2)`: classified as a printed
    /// error would be.
    pub message: String,
    /// Symbolized host stack, innermost first.
    pub stack: Vec<String>,
    /// The first function outside the CUDA libraries.
    pub function: Option<String>,
}
