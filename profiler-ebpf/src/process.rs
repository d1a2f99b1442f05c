//! The `process` family: the target's thread and process exits, with the exit status.

use aya_ebpf::{
    helpers::{bpf_get_current_task, bpf_ktime_get_ns, bpf_probe_read_kernel},
    macros::tracepoint,
    programs::TracePointContext,
};
use profiler_common::{
    counters::Counter,
    event::{EventHeader, EventKind},
    process::{ProcessEvent, ProcessEventKind},
};

use crate::common::{EVENTS, count, current_ids, named_as_in_common, target_tgid};

/// Byte offset of `exit_code` in `struct task_struct`, read from the kernel's BTF by the loader;
/// `u32::MAX` when unknown.
#[unsafe(no_mangle)]
static TASK_EXIT_CODE_OFFSET: u32 = u32::MAX;

/// Offset of `group_dead` in the `sched_process_exit` record (see its format file).
const GROUP_DEAD_OFFSET: usize = 32;

named_as_in_common!(process, maps: [], programs: [sched_process_exit => SCHED_PROCESS_EXIT]);

#[tracepoint]
pub fn sched_process_exit(ctx: TracePointContext) -> u32 {
    match try_sched_process_exit(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_sched_process_exit(ctx: &TracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY: the offset is inside the tracepoint record described by its format file.
    let group_dead: u8 = unsafe { ctx.read_at(GROUP_DEAD_OFFSET) }.map_err(|_| ())?;
    let kind = if group_dead != 0 {
        ProcessEventKind::ProcessExit
    } else {
        ProcessEventKind::ThreadExit
    };
    let event = ProcessEvent {
        header: EventHeader {
            kind: EventKind::Process as u16,
            _pad: 0,
            tid,
            // SAFETY: the helper takes no arguments.
            timestamp_ns: unsafe { bpf_ktime_get_ns() },
        },
        kind: kind as u8,
        _pad: [0; 3],
        exit_code: exit_code(),
    };
    if EVENTS.output::<ProcessEvent>(&event, 0).is_err() {
        count(Counter::RingBufferFull);
    }
    Ok(())
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
