//! The `process` family: thread and process exits of the target, with exit status, and (unless
//! `--no-children`) the processes it starts: forks, execs and exits of its process tree.

use crate::event::EventHeader;

/// What happened.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProcessEventKind {
    /// One thread exited (the process lives on).
    ThreadExit = 1,
    /// The last thread exited: the process is gone.
    ProcessExit = 2,
    /// A followed process forked a new process (`child`); threads are not new processes.
    Fork = 3,
    /// A followed process executed a new program (`comm` is its new name).
    Exec = 4,
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
    /// with 0x80 set when a core was dumped. `-1` when it could not be read. For a
    /// [`ProcessEventKind::Fork`]: 0 when the child is followed, `-1` when it is not (the map of
    /// followed processes was full).
    pub exit_code: i32,
    /// [`ProcessEventKind::Fork`]: the new process's id (the header's `tgid` is its parent).
    pub child: u32,
    pub _pad2: u32,
    /// The process's command name (`comm`): the parent's for a fork, the new one for an exec.
    pub comm: [u8; COMM_LEN],
}

/// Length of a task's `comm`.
pub const COMM_LEN: usize = 16;

const _: () = assert!(core::mem::size_of::<ProcessEvent>() == 56);

/// How many child processes can be followed at once (entries of [`maps::FOLLOWED`]).
pub const FOLLOWED_ENTRIES: u32 = 4096;

/// Name of the global that says whether children are followed (1) or not (0).
pub const FOLLOW_CHILDREN_GLOBAL: &str = "FOLLOW_CHILDREN";

/// Names of the globals holding the byte offsets of `pid` and `tgid` in `struct task_struct`
/// (from the running kernel's BTF; `u32::MAX` when unknown: no child is then followed).
pub const TASK_PID_OFFSET_GLOBAL: &str = "TASK_PID_OFFSET";
pub const TASK_TGID_OFFSET_GLOBAL: &str = "TASK_TGID_OFFSET";

/// Name of the global holding the byte offset of `exit_code` in `struct task_struct` (from the
/// running kernel's BTF; `u32::MAX` when unknown).
pub const TASK_EXIT_CODE_OFFSET_GLOBAL: &str = "TASK_EXIT_CODE_OFFSET";

/// Program names in the eBPF object (see [`crate::names`]): profiler-ebpf names each program
/// function exactly so.
pub mod programs {
    /// On the `sched/sched_process_exit` tracepoint.
    pub const SCHED_PROCESS_EXIT: &str = "sched_process_exit";
    /// On the `sched_process_fork` raw tracepoint (parent and child task).
    pub const SCHED_PROCESS_FORK: &str = "sched_process_fork";
    /// On the `sched/sched_process_exec` tracepoint.
    pub const SCHED_PROCESS_EXEC: &str = "sched_process_exec";
}

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// The target's followed descendants: tgid -> 1.
    pub const FOLLOWED: &str = "FOLLOWED";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[maps::FOLLOWED];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[
    programs::SCHED_PROCESS_EXIT,
    programs::SCHED_PROCESS_FORK,
    programs::SCHED_PROCESS_EXEC,
];

#[cfg(feature = "user")]
// SAFETY: plain old data: fixed-width integers, explicit padding.
unsafe impl aya::Pod for ProcessEvent {}
