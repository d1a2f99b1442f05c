//! The `process` family's kernel side: attach the process-tree tracepoints, decode records.

use anyhow::Context as _;
use aya::{
    Ebpf,
    programs::{RawTracePoint, TracePoint},
};
use profiler_common::{
    event::EventHeader,
    process::{ProcessEvent, ProcessEventKind, maps, programs},
};

use crate::bpf;

/// Loads and attaches the exit, fork and exec programs; returns how many were attached.
pub(crate) fn attach(ebpf: &mut Ebpf) -> anyhow::Result<usize> {
    for (name, tracepoint) in [
        (programs::SCHED_PROCESS_EXIT, "sched_process_exit"),
        (programs::SCHED_PROCESS_EXEC, "sched_process_exec"),
    ] {
        let program: &mut TracePoint = bpf::program(ebpf, name)?;
        program
            .load()
            .with_context(|| format!("failed to load {name}"))?;
        program
            .attach("sched", tracepoint)
            .with_context(|| format!("failed to attach to the {tracepoint} tracepoint"))?;
    }
    let fork: &mut RawTracePoint = bpf::program(ebpf, programs::SCHED_PROCESS_FORK)?;
    fork.load().context("failed to load sched_process_fork")?;
    fork.attach("sched_process_fork")
        .context("failed to attach to the sched_process_fork raw tracepoint")?;
    Ok(3)
}

/// Follows process `tgid` (a child of the target that existed before profiling started): the
/// errors family's programs then see it as they see the target.
pub(crate) fn follow(ebpf: &mut Ebpf, tgid: u32) -> anyhow::Result<()> {
    let map = bpf::map_mut(ebpf, maps::FOLLOWED)?;
    let mut followed: aya::maps::HashMap<_, u32, u8> = aya::maps::HashMap::try_from(map)?;
    followed
        .insert(tgid, 1, 0)
        .with_context(|| format!("could not follow process {tgid}"))
}

/// A decoded record: what happened to process `pid`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Lifecycle {
    ThreadExit {
        pid: u32,
        tid: u32,
    },
    ProcessExit {
        pid: u32,
        status: Option<i32>,
    },
    Fork {
        parent: u32,
        child: u32,
        comm: String,
        followed: bool,
    },
    Exec {
        pid: u32,
        comm: String,
    },
}

/// When a record was made (CLOCK_MONOTONIC, ns; 0 for a record too short to have a header).
pub(crate) fn timestamp_ns(bytes: &[u8]) -> u64 {
    if bytes.len() < size_of::<EventHeader>() {
        return 0;
    }
    // SAFETY: the buffer holds at least one EventHeader, plain old data; unaligned read.
    let header: EventHeader = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    header.timestamp_ns
}

/// Decodes a record of the `process` family.
pub(crate) fn decode(bytes: &[u8]) -> Option<Lifecycle> {
    if bytes.len() < size_of::<ProcessEvent>() {
        return None;
    }
    // SAFETY: the buffer holds at least one ProcessEvent, a plain-old-data record; unaligned
    // read.
    let event: ProcessEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
    let pid = event.header.tgid;
    let comm = || {
        let raw = event.comm.split(|b| *b == 0).next().unwrap_or(&[]);
        String::from_utf8_lossy(raw).into_owned()
    };
    match event.kind {
        k if k == ProcessEventKind::ThreadExit as u8 => Some(Lifecycle::ThreadExit {
            pid,
            tid: event.header.tid,
        }),
        k if k == ProcessEventKind::ProcessExit as u8 => Some(Lifecycle::ProcessExit {
            pid,
            status: (event.exit_code >= 0).then_some(event.exit_code),
        }),
        k if k == ProcessEventKind::Fork as u8 => Some(Lifecycle::Fork {
            parent: pid,
            child: event.child,
            comm: comm(),
            followed: event.exit_code == 0,
        }),
        k if k == ProcessEventKind::Exec as u8 => Some(Lifecycle::Exec { pid, comm: comm() }),
        _ => None,
    }
}
