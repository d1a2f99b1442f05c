//! The `process` family: the target's thread and process exits, with the exit status, and the
//! process tree it starts (forks, execs, exits), which the other families follow.

use aya_ebpf::{
    helpers::{
        bpf_get_current_comm, bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel,
    },
    macros::{raw_tracepoint, tracepoint},
    programs::{RawTracePointContext, TracePointContext},
};
use profiler_common::{
    counters::Counter,
    event::{EventHeader, EventKind},
    process::{COMM_LEN, ProcessEvent, ProcessEventKind},
};

use crate::common::{
    EVENTS, FOLLOWED, count, current_ids, follow_children, followed, named_as_in_common, stopped,
    target_tgid,
};

/// Byte offsets of `pid` and `tgid` in `struct task_struct`, read from the kernel's BTF by the
/// loader; `u32::MAX` when unknown.
#[unsafe(no_mangle)]
pub(crate) static TASK_PID_OFFSET: u32 = u32::MAX;
#[unsafe(no_mangle)]
pub(crate) static TASK_TGID_OFFSET: u32 = u32::MAX;

/// Byte offset of `exit_code` in `struct task_struct`, read from the kernel's BTF by the loader;
/// `u32::MAX` when unknown.
#[unsafe(no_mangle)]
static TASK_EXIT_CODE_OFFSET: u32 = u32::MAX;

/// Offset of `group_dead` in the `sched_process_exit` record (see its format file).
const GROUP_DEAD_OFFSET: usize = 32;

named_as_in_common!(
    process,
    maps: [FOLLOWED],
    programs: [
        sched_process_exit => SCHED_PROCESS_EXIT,
        sched_process_fork => SCHED_PROCESS_FORK,
        sched_process_exec => SCHED_PROCESS_EXEC,
    ]
);

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_sched_process_exit(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if !followed(tgid) {
        return Ok(());
    }
    // SAFETY: the offset is inside the tracepoint record described by its format file.
    let group_dead: u8 = unsafe { ctx.read_at(GROUP_DEAD_OFFSET) }.map_err(|_| ())?;
    let kind = if group_dead != 0 {
        if tgid != target_tgid() {
            // A child's last thread: it is followed no more (its pid may be reused).
            let _ = FOLLOWED.remove(tgid);
        }
        ProcessEventKind::ProcessExit
    } else {
        ProcessEventKind::ThreadExit
    };
    send(kind, tid, tgid, exit_code(), 0);
    Ok(())
}

/// `sched_process_fork(struct task_struct *parent, struct task_struct *child)`, in the parent.
/// A new process (not a thread) of a followed process is followed from now on.
#[raw_tracepoint(tracepoint = "sched_process_fork")]
pub fn sched_process_fork(ctx: RawTracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    let (tid, tgid) = current_ids();
    if !follow_children() || !followed(tgid) {
        return 0;
    }
    let child: u64 = ctx.arg(1);
    let (Some(pid), Some(child_tgid)) = (
        task_u32(child, &TASK_PID_OFFSET),
        task_u32(child, &TASK_TGID_OFFSET),
    ) else {
        return 0;
    };
    if pid != child_tgid {
        // A thread (CLONE_THREAD): not a new process.
        return 0;
    }
    // A full map leaves the child unfollowed: the record says so (the report's `followed`).
    let unfollowed = i32::from(FOLLOWED.insert(child_tgid, 1, 0).is_err());
    send(ProcessEventKind::Fork, tid, tgid, -unfollowed, child_tgid);
    0
}

/// A followed process executed a new program: it stays followed; its new name is recorded.
#[tracepoint]
pub fn sched_process_exec(_ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    let (tid, tgid) = current_ids();
    if followed(tgid) {
        send(ProcessEventKind::Exec, tid, tgid, 0, 0);
    }
    0
}

/// A `u32` field at the global byte offset `offset` of task `task`, if known and readable.
#[inline(always)]
fn task_u32(task: u64, offset: &u32) -> Option<u32> {
    // SAFETY: a read of a global the loader initialised.
    let offset = unsafe { core::ptr::read_volatile(offset) };
    if offset == u32::MAX {
        return None;
    }
    // SAFETY: a kernel pointer from the tracepoint's arguments, read through the checked helper.
    unsafe { bpf_probe_read_kernel((task + u64::from(offset)) as *const u32) }.ok()
}

/// Sends a record of the current task (`tid` of `tgid`).
#[inline(always)]
fn send(kind: ProcessEventKind, tid: u32, tgid: u32, exit_code: i32, child: u32) {
    let event = ProcessEvent {
        header: EventHeader {
            kind: EventKind::Process as u16,
            _pad: 0,
            tid,
            // SAFETY: the helper takes no arguments.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
            tgid,
            _pad2: 0,
        },
        kind: kind as u8,
        _pad: [0; 3],
        exit_code,
        child,
        _pad2: 0,
        comm: bpf_get_current_comm().unwrap_or([0; COMM_LEN]),
    };
    if EVENTS.output::<ProcessEvent>(&event, 0).is_err() {
        count(Counter::RingBufferFull);
    }
}

/// The current (exiting) task's `exit_code`, or -1 when it cannot be read.
#[inline(always)]
fn exit_code() -> i32 {
    // SAFETY: a read of a global the loader initialised.
    let offset = unsafe { core::ptr::read_volatile(&TASK_EXIT_CODE_OFFSET) };
    if offset == u32::MAX {
        return -1;
    }
    // SAFETY: bpf_get_current_task has no preconditions; the read goes through the checked
    // helper, which fails cleanly on a bad address.
    unsafe {
        let task = bpf_get_current_task() as *const u8;
        bpf_probe_read_kernel(task.add(offset as usize) as *const i32).unwrap_or(-1)
    }
}
