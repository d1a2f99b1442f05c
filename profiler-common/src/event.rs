//! The header of every record in the shared `EVENTS` ring buffer.

/// Which family produced a ring-buffer record; the user side dispatches on it.
#[repr(u16)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A [`crate::process::ProcessEvent`].
    Process = 1,
    /// A [`crate::errors::SyscallErrorEvent`].
    SyscallError = 2,
    /// A [`crate::errors::SignalEvent`].
    Signal = 3,
    /// A [`crate::errors::OutputEvent`].
    Output = 4,
    /// A [`crate::errors::OomEvent`].
    OomKill = 5,
    /// A [`crate::cpu::RawSample`].
    CpuRawSample = 6,
    /// A [`crate::python::PyStackEvent`].
    PyStack = 7,
    /// A [`crate::python::RaiseEvent`].
    PyRaise = 8,
    /// A [`crate::python::PyCodeEvent`].
    PyCode = 9,
    /// A [`crate::gpu::CudaErrorEvent`].
    CudaError = 10,
}

/// Size of the ring buffer in bytes (a power of two, a multiple of the page size).
pub const RING_BUFFER_BYTES: u32 = 1 << 20;

/// Map names in the eBPF object (see [`crate::names`]): profiler-ebpf names each map static
/// exactly so.
pub mod maps {
    /// The ring buffer every family sends its records through.
    pub const EVENTS: &str = "EVENTS";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[maps::EVENTS];
/// Every program of the module (none).
pub const PROGRAMS: &[&str] = &[];

/// Common header: every record starts with it.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct EventHeader {
    /// An [`EventKind`] value.
    pub kind: u16,
    pub _pad: u16,
    /// Thread id (kernel pid) that produced the record.
    pub tid: u32,
    /// `bpf_ktime_get_ns()` when the record was made (CLOCK_MONOTONIC, ns).
    pub timestamp_ns: u64,
    /// Process id (tgid) of that thread: the target's, or one of its children's when they are
    /// followed.
    pub tgid: u32,
    pub _pad2: u32,
}

const _: () = assert!(core::mem::size_of::<EventHeader>() == 24);

#[cfg(feature = "user")]
// SAFETY: plain old data: fixed-width integers, no padding bytes left implicit.
unsafe impl aya::Pod for EventHeader {}
