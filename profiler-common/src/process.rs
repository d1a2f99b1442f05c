//! The `process` family: thread and process exits of the target, with exit status.

use crate::event::EventHeader;

/// What happened.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEventKind {
    /// One thread exited (the process lives on).
    ThreadExit = 1,
    /// The last thread exited: the process is gone.
    ProcessExit = 2,
}

/// Ring-buffer record of the `process` family.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ProcessEvent {
    pub header: EventHeader,
    /// A [`ProcessEventKind`] value.
    pub kind: u8,
    pub _pad: [u8; 3],
    /// The exiting task's `exit_code`, encoded as `wait(2)` status: `(code << 8) | signal`,
    /// with 0x80 set when a core was dumped. `-1` when it could not be read.
    pub exit_code: i32,
}

const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 24);

/// Name of the global holding the byte offset of `exit_code` in `struct task_struct` (from the
/// running kernel's BTF; `u32::MAX` when unknown).
pub const TASK_EXIT_CODE_OFFSET_GLOBAL: &str = "TASK_EXIT_CODE_OFFSET";

/// Program names in the eBPF object (see [`crate::names`]): profiler-ebpf names each program
/// function exactly so.
pub mod programs {
    /// On the `sched/sched_process_exit` tracepoint.
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
}

/// Every map of the module (none).
pub const MAPS: &[&str] = &[];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[programs::SCHED_PROCESS_EXIT];

#[cfg(feature = "user")]
// SAFETY: plain old data: fixed-width integers, explicit padding.
unsafe impl aya::Pod for ProcessEvent {}
