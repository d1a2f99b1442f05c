//! The `process` family on the user side: attach the exit tracepoint and decode its events.

use anyhow::Context as _;
use aya::{Ebpf, programs::TracePoint};
use profiler_common::process::{ProcessEvent, ProcessEventKind, programs};

use crate::bpf;

/// Attaches the family's programs; returns how many.
pub(crate) fn attach(ebpf: &mut Ebpf) -> anyhow::Result<usize> {
    let program: &mut TracePoint = bpf::program(ebpf, programs::SCHED_PROCESS_EXIT)?;
    program
        .load()
        .context("failed to load sched_process_exit")?;
    program
        .attach("sched", "sched_process_exit")
        .context("failed to attach to the sched_process_exit tracepoint")?;
    Ok(1)
}

/// What a process event means for the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    ThreadExit {
        tid: u32,
    },
    /// The last thread is gone; `status` in `wait(2)` encoding when it could be read.
    ProcessExit {
        status: Option<i32>,
    },
}

/// Decodes a ring-buffer record of this family.
pub(crate) fn decode(bytes: &[u8]) -> Option<Lifecycle> {
    if bytes.len() < size_of::<ProcessEvent>() {
        return None;
    }
    // SAFETY: the buffer holds at least one ProcessEvent, a plain-old-data type; the read is
    // unaligned-safe.
    let event: ProcessEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    match event.kind {
        k if k == ProcessEventKind::ThreadExit as u8 => Some(Lifecycle::ThreadExit {
            tid: event.header.tid,
        }),
        k if k == ProcessEventKind::ProcessExit as u8 => Some(Lifecycle::ProcessExit {
            status: (event.exit_code >= 0).then_some(event.exit_code),
        }),
        _ => None,
    }
}
