//! The `errors` family on the user side: attach the tracepoints, decode their records, read the
//! exact failure counts, and hand everything to the errors analyzer.

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, Ipv6Addr},
};

use anyhow::Context as _;

use crate::{
    analyze::errors::{
        AnalyzerOptions, ErrorAnalyzer, ExitEvent, OomKill, OutputChunk, PatternDb, SignalEvent,
        SyscallFailure,
    },
    families::{AttachContext, FamilyRuntime, ReportContext},
    level::Family,
    report::Report,
};
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
        SignalEvent as SignalRecord, SyscallErrorEvent,
    },
    event::EventKind,
};

/// Output bytes kept for the analyzer; past this the rest is counted, not kept.
pub const MAX_OUTPUT_BYTES: usize = 16 << 20;

/// Every syscall's exit (failures with the arguments that explain them, and the output written
/// to fds 1 and 2): the BTF program, or where the kernel refuses it the raw one. Nothing runs
/// at syscall entry.
const SYS_EXIT_BTF: &str = "syscall_exit_btf";
const SYS_EXIT_RAW: &str = "syscall_exit";

/// Set (to anything), the raw `sys_exit` program is used even where the BTF one would load.
pub const RAW_SYS_EXIT_ENV: &str = "PROFILER_RAW_SYS_EXIT";

/// The raw tracepoints of the family besides `sys_exit`: signal delivery.
const RAW_TRACEPOINTS: [&str; 1] = ["signal_deliver"];

/// Program names, in the order of [`RAW_TRACEPOINTS`].
const RAW_PROGRAMS: [&str; 1] = ["signal_deliver"];

/// Attaches every program of the family; returns the links, and which `sys_exit` program runs
/// and why.
pub fn attach(ebpf: &mut Ebpf) -> anyhow::Result<(Links, String)> {
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
    let oom: &mut TracePoint = ebpf
        .program_mut("oom_mark_victim")
        .context("program oom_mark_victim missing")?
        .try_into()?;
    oom.load().context("failed to load oom_mark_victim")?;
    links.oom = Some(
        oom.attach("oom", "mark_victim")
            .context("failed to attach to the oom/mark_victim tracepoint")?,
    );
    Ok((links, sys_exit))
}

/// Loads and attaches the BTF `sys_exit` program (needs the kernel's BTF).
fn attach_sys_exit_btf(ebpf: &mut Ebpf) -> anyhow::Result<BtfTracePointLinkId> {
    let btf = aya::Btf::from_sys_fs().context("no kernel BTF")?;
    let program: &mut BtfTracePoint = ebpf
        .program_mut(SYS_EXIT_BTF)
        .with_context(|| format!("program {SYS_EXIT_BTF} missing"))?
        .try_into()?;
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
    let raw: &mut RawTracePoint = ebpf
        .program_mut(program)
        .with_context(|| format!("program {program} missing"))?
        .try_into()?;
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
pub struct Links {
    sys_exit_btf: Option<BtfTracePointLinkId>,
    raw: Vec<(&'static str, RawTracePointLinkId)>,
    oom: Option<TracePointLinkId>,
}

impl Links {
    /// Probes attached.
    pub fn count(&self) -> usize {
        usize::from(self.sys_exit_btf.is_some()) + self.raw.len() + usize::from(self.oom.is_some())
    }
}

/// Detaches the family's tracepoints (each detach waits for a grace period: all at once).
fn detach(ebpf: &mut Ebpf, links: Links) {
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
        let tp = <&mut TracePoint>::try_from(ebpf.program_mut("oom_mark_victim")?).ok()?;
        tp.take_link(id).ok()
    });
    let sys_exit = links.sys_exit_btf.and_then(|id| {
        let tp = <&mut BtfTracePoint>::try_from(ebpf.program_mut(SYS_EXIT_BTF)?).ok()?;
        tp.take_link(id).ok()
    });
    std::thread::scope(|scope| {
        scope.spawn(move || drop(oom));
        scope.spawn(move || drop(sys_exit));
        super::release_in_parallel(raw);
    });
}

/// One decoded record, before symbolization.
#[derive(Debug, Clone)]
pub enum Raw {
    Syscall {
        tid: u32,
        ts: u64,
        syscall: String,
        errno: i32,
        arg: Option<String>,
        stack_id: Option<u32>,
        func: Option<u32>,
    },
    Signal {
        tid: u32,
        ts: u64,
        signo: i32,
        code: i32,
        fault_addr: Option<u64>,
        fatal: bool,
        func: Option<u32>,
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

/// The name of an x86-64 syscall number.
pub fn syscall_name(id: u32) -> String {
    syscalls::Sysno::new(id as usize)
        .map(|s| s.name().to_string())
        .unwrap_or_else(|| format!("syscall_{id}"))
}

/// Decodes a record of this family.
pub fn decode(kind: u16, bytes: &[u8]) -> Option<Raw> {
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
                syscall: syscall_name(e.syscall),
                errno: e.errno as i32,
                arg,
                stack_id: (e.stack_id >= 0).then_some(e.stack_id as u32),
                func: function(e.func),
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
                fatal: e.disposition == 0 && default_is_fatal(e.signo),
                func: function(e.func),
            })
        }
        k if k == EventKind::Output as u16 => {
            let e: OutputEvent = read(bytes)?;
            let len = (e.len as usize).min(e.data.len());
            Some(Raw::Output {
                tid: e.header.tid,
                ts: e.header.timestamp_ns,
                fd: e.fd,
                bytes: e.data[..len].to_vec(),
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

/// Whether a signal's default action ends the process.
fn default_is_fatal(signo: i32) -> bool {
    // SIGCHLD, SIGCONT, SIGURG, SIGWINCH are ignored by default; SIGSTOP and friends stop.
    !matches!(signo, 17 | 18 | 19 | 20 | 21 | 22 | 23 | 28)
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
pub fn read_failures(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<(String, i32), u64>> {
    let map: BpfHashMap<_, FailureKey, FailureStats> =
        BpfHashMap::try_from(ebpf.map("FAILURES").context("FAILURES map missing")?)?;
    let mut out = BTreeMap::new();
    for entry in map.iter() {
        let (key, n) = entry?;
        *out.entry((syscall_name(key.syscall), key.errno as i32))
            .or_default() += n.count;
    }
    Ok(out)
}

/// The user stack of an error, innermost first, as addresses.
pub fn read_stack(ebpf: &Ebpf, stack_id: u32) -> Vec<u64> {
    let Some(map) = ebpf.map("ERROR_STACKS") else {
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

/// The family's runtime: gathers records while profiling, analyzes them at the end.
pub struct ErrorsRuntime {
    db: Option<PatternDb>,
    raw: Vec<Raw>,
    output_bytes: usize,
    output_dropped: u64,
    failures: BTreeMap<(String, i32), u64>,
    /// User stacks of the errors, read at the end: stack id -> addresses.
    stacks: HashMap<u32, Vec<u64>>,
    links: Links,
    /// Which `sys_exit` program runs, and why (empty until attached).
    sys_exit: String,
}

impl ErrorsRuntime {
    pub fn new(db: PatternDb) -> Self {
        Self {
            db: Some(db),
            raw: Vec::new(),
            output_bytes: 0,
            output_dropped: 0,
            failures: BTreeMap::new(),
            stacks: HashMap::new(),
            links: Links::default(),
            sys_exit: String::new(),
        }
    }
}

/// Most frames of a user stack kept with an error.
const STACK_FRAMES: usize = 16;

impl FamilyRuntime for ErrorsRuntime {
    fn family(&self) -> Family {
        Family::Errors
    }

    fn attach(&mut self, ebpf: &mut Ebpf, _ctx: &AttachContext<'_>) -> anyhow::Result<usize> {
        (self.links, self.sys_exit) = attach(ebpf)?;
        Ok(self.links.count())
    }

    fn note(&self) -> Option<String> {
        (!self.sys_exit.is_empty()).then(|| {
            format!(
                "{}; signal_deliver; oom/mark_victim; every syscall of the system takes the \
                 kernel's syscall-tracing path",
                self.sys_exit
            )
        })
    }

    fn handles(&self, kind: u16) -> bool {
        [
            EventKind::SyscallError,
            EventKind::Signal,
            EventKind::Output,
            EventKind::OomKill,
        ]
        .iter()
        .any(|k| *k as u16 == kind)
    }

    fn on_event(&mut self, kind: u16, bytes: &[u8]) {
        let Some(raw) = decode(kind, bytes) else {
            return;
        };
        if let Raw::Output { bytes, .. } = &raw {
            if self.output_bytes + bytes.len() > MAX_OUTPUT_BYTES {
                self.output_dropped += bytes.len() as u64;
                return;
            }
            self.output_bytes += bytes.len();
        }
        self.raw.push(raw);
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        detach(ebpf, std::mem::take(&mut self.links));
        match read_failures(ebpf) {
            Ok(f) => self.failures = f,
            Err(e) => warnings.push(format!("could not read the syscall failure counts: {e:#}")),
        }
        for raw in &self.raw {
            if let Raw::Syscall {
                stack_id: Some(id), ..
            } = raw
            {
                self.stacks
                    .entry(*id)
                    .or_insert_with(|| read_stack(ebpf, *id));
            }
        }
        if self.output_dropped > 0 {
            warnings.push(format!(
                "{} bytes of the target's output were not kept (more than {} MiB)",
                self.output_dropped,
                MAX_OUTPUT_BYTES >> 20
            ));
        }
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let Some(db) = self.db.take() else { return };
        let options = AnalyzerOptions {
            start_ns: ctx.start_ktime_ns,
            ..AnalyzerOptions::default()
        };
        let mut analyzer = ErrorAnalyzer::new(db, options);
        let function =
            |func: Option<u32>| func.and_then(|f| ctx.traced_names.get(f as usize).cloned());
        let mut raw = std::mem::take(&mut self.raw);
        raw.sort_by_key(Raw::timestamp);
        for event in raw {
            match event {
                Raw::Syscall {
                    tid,
                    ts,
                    syscall,
                    errno,
                    arg,
                    stack_id,
                    func,
                } => {
                    let stack = stack_id
                        .and_then(|id| self.stacks.get(&id))
                        .map(|ips| {
                            ips.iter()
                                .take(STACK_FRAMES)
                                .map(|ip| frame_text(&ctx.symbolizer.frame(ctx.maps, *ip)))
                                .collect()
                        })
                        .unwrap_or_default();
                    analyzer.on_syscall(SyscallFailure {
                        tid,
                        timestamp_ns: ts,
                        syscall,
                        errno,
                        arg,
                        flags: None,
                        stack,
                        function: function(func),
                    });
                }
                Raw::Signal {
                    tid,
                    ts,
                    signo,
                    code,
                    fault_addr,
                    fatal,
                    func,
                } => {
                    analyzer.on_signal(SignalEvent {
                        tid,
                        timestamp_ns: ts,
                        signo,
                        code,
                        fault_addr,
                        fatal,
                        stack: Vec::new(),
                        function: function(func),
                    });
                }
                Raw::Output { tid, ts, fd, bytes } => analyzer.on_output(OutputChunk {
                    tid,
                    timestamp_ns: ts,
                    fd,
                    bytes,
                    stack: Vec::new(),
                    function: None,
                }),
                Raw::Oom { tid, ts, rss_bytes } => analyzer.on_oom_kill(OomKill {
                    tid,
                    timestamp_ns: ts,
                    rss_bytes: Some(rss_bytes),
                }),
            }
        }
        if let Some(status) = ctx.exit_status {
            analyzer.on_exit(ExitEvent {
                timestamp_ns: ctx.end_ktime_ns,
                status,
            });
        }
        let mut section = analyzer.finish(ctx.end_ktime_ns);
        section.set_failure_counts(&self.failures);
        report.errors = Some(section);
    }
}

/// "function (module+0x1a2b)".
fn frame_text(frame: &crate::symbols::symbolize::Frame) -> String {
    format!("{} ({}+{})", frame.function, frame.module, frame.offset)
}

impl Raw {
    fn timestamp(&self) -> u64 {
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
        assert_eq!(syscall_name(257), "openat");
        assert_eq!(syscall_name(42), "connect");
    }
}
