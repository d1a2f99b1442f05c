//! The `errors` family on the user side: attach the tracepoints, decode their records, read the
//! exact failure counts, and hand everything to the errors analyzer.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Context as _;

use crate::{bpf, linux};
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, StackTraceMap},
    programs::{
        BtfTracePoint, RawTracePoint, TracePoint, raw_trace_point::RawTracePointLinkId,
        tp_btf::BtfTracePointLinkId, trace_point::TracePointLinkId,
    },
};
use profiler_common::{
    errors::{
        ArgKind, FailureKey, FailureStats, NO_FUNCTION, OomEvent, OutputEvent,
        SignalEvent as SignalRecord, SyscallErrorEvent, maps, programs,
    },
    event::EventKind,
};

/// Output bytes kept for the analyzer; past this the rest is counted, not kept.
pub(crate) const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Every syscall's exit (failures with the arguments that explain them, and the output written
/// to fds 1 and 2): the BTF program, or where the kernel refuses it the raw one. Nothing runs
/// at syscall entry.
const SYS_EXIT_BTF: &str = programs::SYSCALL_EXIT_BTF;
const SYS_EXIT_RAW: &str = programs::SYSCALL_EXIT;

/// Set (to anything), the raw `sys_exit` program is used even where the BTF one would load.
pub(crate) const RAW_SYS_EXIT_ENV: &str = "PROFILER_RAW_SYS_EXIT";

/// The raw tracepoints of the family besides `sys_exit`: signal delivery, and TCP state changes
/// (a non-blocking connect that fails after it returned `EINPROGRESS`).
const RAW_TRACEPOINTS: [&str; 2] = ["signal_deliver", "inet_sock_set_state"];

/// Program names, in the order of [`RAW_TRACEPOINTS`].
const RAW_PROGRAMS: [&str; 2] = [programs::SIGNAL_DELIVER, programs::INET_SOCK_SET_STATE];

/// Attaches every program of the family; returns the links, and which `sys_exit` program runs
/// and why. The program that counts EINTR ([`attach_interrupted`]) may fail alone: its error is
/// kept in the links.
pub(crate) fn attach(ebpf: &mut Ebpf) -> anyhow::Result<(Links, String)> {
    let mut links = Links::default();
    let btf = if std::env::var_os(RAW_SYS_EXIT_ENV).is_some() {
        Err(format!("{RAW_SYS_EXIT_ENV} is set"))
    } else {
        attach_sys_exit_btf(ebpf).map_err(|e| format!("{e:#}"))
    };
    let sys_exit = match btf {
        Ok(link) => {
            links.sys_exit_btf = Some(link);
            "sys_exit: tp_btf (one load for the syscall number)".to_string()
        }
        Err(why) => {
            attach_raw(ebpf, &mut links, SYS_EXIT_RAW, "sys_exit")?;
            format!("sys_exit: raw tracepoint (the BTF one did not load: {why})")
        }
    };
    for (program, tracepoint) in RAW_PROGRAMS.into_iter().zip(RAW_TRACEPOINTS) {
        attach_raw(ebpf, &mut links, program, tracepoint)?;
    }
    attach_interrupted(ebpf, &mut links);
    let oom: &mut TracePoint = bpf::program(ebpf, programs::OOM_MARK_VICTIM)?;
    oom.load().context("failed to load oom_mark_victim")?;
    links.oom = Some(
        oom.attach("oom", "mark_victim")
            .context("failed to attach to the oom/mark_victim tracepoint")?,
    );
    Ok((links, sys_exit))
}

/// The program that counts the syscalls a signal handler makes fail with EINTR (they leave
/// `sys_exit` with a restart code). It needs the kernel's BTF (for the task's registers); where
/// it does not load, the rest of the family still runs and EINTR is counted only where a call
/// returns it by itself.
fn attach_interrupted(ebpf: &mut Ebpf, links: &mut Links) {
    let program = programs::SYSCALL_INTERRUPTED;
    links.interrupted = attach_raw(ebpf, links, program, "signal_deliver")
        .map_err(|e| format!("{e:#}"))
        .err();
}

/// Why EINTR from interrupted syscalls is not counted, when the program that counts it did not
/// attach.
pub(crate) fn eintr_not_counted(links: &Links) -> Option<String> {
    links.interrupted.as_ref().map(|why| {
        format!("syscalls that a signal handler interrupts (EINTR) are not counted: {why}")
    })
}

/// Loads and attaches the BTF `sys_exit` program (needs the kernel's BTF).
fn attach_sys_exit_btf(ebpf: &mut Ebpf) -> anyhow::Result<BtfTracePointLinkId> {
    let btf = aya::Btf::from_sys_fs().context("no kernel BTF")?;
    let program: &mut BtfTracePoint = bpf::program(ebpf, SYS_EXIT_BTF)?;
    program.load("sys_exit", &btf)?;
    Ok(program.attach()?)
}

/// Loads `program` and attaches it to raw tracepoint `tracepoint`.
fn attach_raw(
    ebpf: &mut Ebpf,
    links: &mut Links,
    program: &'static str,
    tracepoint: &str,
) -> anyhow::Result<()> {
    let raw: &mut RawTracePoint = bpf::program(ebpf, program)?;
    raw.load()
        .with_context(|| format!("failed to load {program}"))?;
    let link = raw
        .attach(tracepoint)
        .with_context(|| format!("failed to attach to the {tracepoint} raw tracepoint"))?;
    links.raw.push((program, link));
    Ok(())
}

/// The family's links, so they can be taken down together.
#[derive(Default)]
pub(crate) struct Links {
    sys_exit_btf: Option<BtfTracePointLinkId>,
    raw: Vec<(&'static str, RawTracePointLinkId)>,
    oom: Option<TracePointLinkId>,
    /// Why the program that counts EINTR did not attach.
    interrupted: Option<String>,
}

impl Links {
    /// Probes attached.
    pub(crate) fn count(&self) -> usize {
        usize::from(self.sys_exit_btf.is_some()) + self.raw.len() + usize::from(self.oom.is_some())
    }
}

/// Detaches the family's tracepoints (each detach waits for a grace period: all at once).
pub(crate) fn detach(ebpf: &mut Ebpf, links: Links) {
    let mut raw = Vec::new();
    for (program, id) in links.raw {
        if let Some(p) = ebpf.program_mut(program)
            && let Ok(tp) = <&mut RawTracePoint>::try_from(p)
            && let Ok(link) = tp.take_link(id)
        {
            raw.push(link);
        }
    }
    let oom = links.oom.and_then(|id| {
        let tp = <&mut TracePoint>::try_from(ebpf.program_mut(programs::OOM_MARK_VICTIM)?).ok()?;
        tp.take_link(id).ok()
    });
    let sys_exit = links.sys_exit_btf.and_then(|id| {
        let tp = <&mut BtfTracePoint>::try_from(ebpf.program_mut(SYS_EXIT_BTF)?).ok()?;
        tp.take_link(id).ok()
    });
    std::thread::scope(|scope| {
        scope.spawn(move || drop(oom));
        scope.spawn(move || drop(sys_exit));
        bpf::release_in_parallel(raw);
    });
}

/// One decoded record, before symbolization.
#[derive(Debug, Clone)]
pub(crate) enum Raw {
    Syscall {
        tid: u32,
        ts: u64,
        syscall: String,
        errno: i32,
        arg: Option<String>,
        stack_id: Option<u32>,
        func: Option<u32>,
        /// A non-blocking connect that failed after it returned `EINPROGRESS`.
        deferred: bool,
        /// The Python stack at the syscall (the python family's hash; 0: none).
        python: u64,
    },
    Signal {
        tid: u32,
        ts: u64,
        signo: i32,
        code: i32,
        fault_addr: Option<u64>,
        fatal: bool,
        /// Where the signal was delivered: for faults and fatal signals.
        stack_id: Option<u32>,
        func: Option<u32>,
        /// The Python stack there (0: none).
        python: u64,
    },
    Output {
        tid: u32,
        ts: u64,
        fd: u32,
        bytes: Vec<u8>,
    },
    Oom {
        tid: u32,
        ts: u64,
        rss_bytes: u64,
    },
}

fn read<T: Copy>(bytes: &[u8]) -> Option<T> {
    (bytes.len() >= size_of::<T>()).then(|| {
        // SAFETY: the buffer holds at least one T, a plain-old-data record; unaligned read.
        unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) }
    })
}

fn function(func: u32) -> Option<u32> {
    (func != NO_FUNCTION).then_some(func)
}

/// A stack id of a record: negative when no stack was taken.
fn stack_id(id: i32) -> Option<u32> {
    u32::try_from(id).ok()
}

/// The thread and process ids of a record of this family.
pub(crate) fn ids(bytes: &[u8]) -> Option<(u32, u32)> {
    read::<profiler_common::event::EventHeader>(bytes).map(|h| (h.tid, h.tgid))
}

/// Decodes a record of this family.
pub(crate) fn decode(kind: u16, bytes: &[u8]) -> Option<Raw> {
    match kind {
        k if k == EventKind::SyscallError as u16 => {
            let e: SyscallErrorEvent = read(bytes)?;
            let len = (e.arg_len as usize).min(e.arg.len());
            let arg = match e.arg_kind {
                k if k == ArgKind::Path as u8 => {
                    let raw = &e.arg[..len];
                    let raw = raw.split(|b| *b == 0).next().unwrap_or(raw);
                    Some(String::from_utf8_lossy(raw).into_owned())
                }
                k if k == ArgKind::SockAddr as u8 => sockaddr(&e.arg[..len]),
                _ => None,
            };
            Some(Raw::Syscall {
                tid: e.header.tid,
                ts: e.header.timestamp_ns,
                syscall: linux::syscall_name(e.syscall),
                errno: e.errno as i32,
                arg,
                stack_id: stack_id(e.stack_id),
                func: function(e.func),
                deferred: e.deferred != 0,
                python: e.python,
            })
        }
        k if k == EventKind::Signal as u16 => {
            let e: SignalRecord = read(bytes)?;
            Some(Raw::Signal {
                tid: e.header.tid,
                ts: e.header.timestamp_ns,
                signo: e.signo,
                code: e.code,
                fault_addr: (e.fault_addr != 0).then_some(e.fault_addr),
                fatal: e.disposition == 0 && linux::default_is_fatal(e.signo),
                stack_id: stack_id(e.stack_id),
                func: function(e.func),
                python: e.python,
            })
        }
        k if k == EventKind::Output as u16 => {
            let e: OutputEvent = read(bytes)?;
            let len = (e.len as usize).min(e.data.len());
            let mut bytes = Vec::with_capacity(len);
            if e.truncated > 0 {
                bytes.extend_from_slice(gap_marker(e.truncated).as_bytes());
            }
            bytes.extend_from_slice(&e.data[..len]);
            Some(Raw::Output {
                tid: e.header.tid,
                ts: e.header.timestamp_ns,
                fd: e.fd,
                bytes,
            })
        }
        k if k == EventKind::OomKill as u16 => {
            let e: OomEvent = read(bytes)?;
            // SAFETY: sysconf has no memory-safety preconditions.
            let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.max(1) as u64;
            Some(Raw::Oom {
                tid: e.header.tid,
                ts: e.header.timestamp_ns,
                rss_bytes: e.anon_rss_pages * page,
            })
        }
        _ => None,
    }
}

/// What stands in the output for `n` bytes of a write the kernel did not capture (the middle of
/// a write longer than `OUTPUT_KEEP`): the line the gap falls in reads
/// `head ...[n bytes not captured]... tail`, so the text on either side is not taken for one
/// line. The bytes are also counted in `overhead.lost`.
fn gap_marker(n: u32) -> String {
    format!(" ...[{n} bytes not captured]... ")
}

/// `127.0.0.1:9` or `[::1]:9` from a `struct sockaddr`, or the family for others.
fn sockaddr(raw: &[u8]) -> Option<String> {
    let family = u16::from_ne_bytes(raw.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(raw.get(2..4)?.try_into().ok()?);
    match family as i32 {
        libc::AF_INET => {
            let ip: [u8; 4] = raw.get(4..8)?.try_into().ok()?;
            Some(format!("{}:{port}", Ipv4Addr::from(ip)))
        }
        libc::AF_INET6 => {
            let ip: [u8; 16] = raw.get(8..24)?.try_into().ok()?;
            Some(format!("[{}]:{port}", Ipv6Addr::from(ip)))
        }
        libc::AF_UNIX => {
            let path = raw.get(2..)?;
            let path = path.split(|b| *b == 0).next().unwrap_or(path);
            Some(String::from_utf8_lossy(path).into_owned())
        }
        other => Some(format!("address family {other}")),
    }
}

/// Every failed syscall of the run, counted exactly: (syscall name, errno) -> count.
pub(crate) fn read_failures(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<(String, i32), u64>> {
    let map: BpfHashMap<_, FailureKey, FailureStats> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::FAILURES)?)?;
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (key, n) = entry?;
        *out.entry((linux::syscall_name(key.syscall), key.errno as i32))
            .or_default() += n.count;
    }
    Ok(out)
}

/// The user stack of an error, innermost first, as addresses.
pub(crate) fn read_stack(ebpf: &Ebpf, stack_id: u32) -> Vec<u64> {
    let Some(map) = ebpf.map(maps::ERROR_STACKS) else {
        return Vec::new();
    };
    let Ok(stacks) = StackTraceMap::try_from(map) else {
        return Vec::new();
    };
    stacks
        .get(&stack_id, 0)
        .map(|t| t.frames().iter().map(|f| f.ip).collect())
        .unwrap_or_default()
}

impl Raw {
    /// The id of the user stack the record comes with, if any.
    pub(crate) fn stack_id(&self) -> Option<u32> {
        match self {
            Raw::Syscall { stack_id, .. } | Raw::Signal { stack_id, .. } => *stack_id,
            Raw::Output { .. } | Raw::Oom { .. } => None,
        }
    }

    pub(crate) fn timestamp(&self) -> u64 {
        match self {
            Raw::Syscall { ts, .. }
            | Raw::Signal { ts, .. }
            | Raw::Output { ts, .. }
            | Raw::Oom { ts, .. } => *ts,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_socket_addresses_and_syscall_names() {
        let mut v4 = vec![0u8; 16];
        v4[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        v4[2..4].copy_from_slice(&9u16.to_be_bytes());
        v4[4..8].copy_from_slice(&[127, 0, 0, 1]);
        assert_eq!(sockaddr(&v4).as_deref(), Some("127.0.0.1:9"));
        assert_eq!(linux::syscall_name(257), "openat");
        assert_eq!(linux::syscall_name(42), "connect");
    }

    /// The bytes of a record as the kernel sends it.
    fn bytes_of<T: aya::Pod>(record: &T) -> Vec<u8> {
        // SAFETY: a #[repr(C)] record of integers and bytes with no implicit padding (Pod), read
        // as the bytes it is made of.
        unsafe { std::slice::from_raw_parts((record as *const T).cast::<u8>(), size_of::<T>()) }
            .to_vec()
    }

    /// The header of a record of `kind` from thread 7 at 42 ns.
    fn header(kind: EventKind) -> profiler_common::event::EventHeader {
        profiler_common::event::EventHeader {
            kind: kind as u16,
            _pad: 0,
            tid: 7,
            timestamp_ns: 42,
            tgid: 5,
            _pad2: 0,
        }
    }

    /// A fault signal comes with the stack the kernel took where it was delivered; a record
    /// without one (negative id) has none.
    #[test]
    fn a_signal_brings_its_stack_id() {
        let record = |stack_id| SignalRecord {
            header: header(EventKind::Signal),
            signo: libc::SIGSEGV,
            code: 1,
            errno: 0,
            disposition: 0,
            fault_addr: 0x10,
            stack_id,
            func: NO_FUNCTION,
            python: 0,
        };
        let decoded = |stack_id| decode(EventKind::Signal as u16, &bytes_of(&record(stack_id)));
        let Some(Raw::Signal {
            signo,
            fault_addr,
            fatal,
            stack_id,
            ..
        }) = decoded(12)
        else {
            panic!("not a signal");
        };
        assert_eq!(
            (signo, fault_addr, fatal),
            (libc::SIGSEGV, Some(0x10), true)
        );
        assert_eq!(stack_id, Some(12));
        assert_eq!(decoded(-1).and_then(|r| r.stack_id()), None);
    }

    /// A non-blocking connect that failed later: a failed connect, deferred, with its address.
    #[test]
    fn a_deferred_connect_failure_decodes_as_a_failed_connect() {
        let mut e = SyscallErrorEvent {
            header: header(EventKind::SyscallError),
            syscall: 42,
            errno: libc::ECONNREFUSED as u32,
            stack_id: 3,
            func: NO_FUNCTION,
            arg_len: 16,
            arg_kind: ArgKind::SockAddr as u8,
            deferred: 1,
            _pad: [0; 2],
            python: 0,
            arg: [0; profiler_common::errors::ARG_CAPTURE],
        };
        e.arg[0..2].copy_from_slice(&(libc::AF_INET as u16).to_ne_bytes());
        e.arg[2..4].copy_from_slice(&9u16.to_be_bytes());
        e.arg[4..8].copy_from_slice(&[127, 0, 0, 1]);
        let Some(Raw::Syscall {
            syscall,
            errno,
            arg,
            stack_id,
            deferred,
            ..
        }) = decode(EventKind::SyscallError as u16, &bytes_of(&e))
        else {
            panic!("not a syscall failure");
        };
        assert_eq!((syscall.as_str(), errno), ("connect", libc::ECONNREFUSED));
        assert_eq!(arg.as_deref(), Some("127.0.0.1:9"));
        assert_eq!((stack_id, deferred), (Some(3), true));
    }

    /// An output record as the kernel sends it: `data`, after `truncated` bytes not captured.
    fn output_record(data: &[u8], truncated: u32) -> Vec<u8> {
        let mut e = OutputEvent {
            header: header(EventKind::Output),
            fd: 2,
            len: data.len() as u32,
            truncated,
            _pad: 0,
            data: [0; profiler_common::errors::OUTPUT_CHUNK],
        };
        e.data[..data.len()].copy_from_slice(data);
        bytes_of(&e)
    }

    /// Bytes the kernel skipped before a record are marked where they were, with their count.
    #[test]
    fn output_after_a_gap_says_how_many_bytes_are_missing() {
        let decoded = |truncated| match decode(
            EventKind::Output as u16,
            &output_record(b"ror: CUDA out of memory\n", truncated),
        ) {
            Some(Raw::Output { tid, ts, fd, bytes }) => {
                assert_eq!((tid, ts, fd), (7, 42, 2));
                String::from_utf8(bytes).unwrap()
            }
            other => panic!("not output: {other:?}"),
        };
        assert_eq!(decoded(0), "ror: CUDA out of memory\n");
        assert_eq!(
            decoded(34_418),
            " ...[34418 bytes not captured]... ror: CUDA out of memory\n"
        );
    }
}
