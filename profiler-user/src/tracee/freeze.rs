//! Every thread of a running process stopped for a moment, and let go again: the memory family's
//! reachability scan reads the registers and memory of a process that does not move meanwhile.
//!
//! Each thread is seized (`PTRACE_SEIZE`, which stops nothing and sends no signal) and interrupted
//! (`PTRACE_INTERRUPT`). It then sits in a ptrace stop, not a group stop: no `SIGSTOP` is ever
//! sent, so were the profiler to die, even by `SIGKILL`, the kernel would detach every thread and
//! the process would run on. Threads started while the others are being stopped are found by
//! listing the tasks again until no new one appears. A thread that was in a signal's delivery stop
//! gets its signal back when it is let go.
//!
//! A thread already traced by the profiler itself (the `run` command's main thread, held for its
//! exit) is interrupted through that tracing and continued, not detached; a thread traced by
//! anyone else, or a seize refused (Yama's `ptrace_scope`), makes the whole stop fail with the
//! reason, every thread stopped so far let go.
//!
//! Every `ptrace` request must come from the thread that seized: the profiler's one runtime thread.

use std::{
    collections::HashSet,
    io,
    time::{Duration, Instant},
};

use super::task::thread_ids;

/// Why the process could not be stopped.
#[derive(Debug)]
pub(crate) enum FreezeError {
    /// Tracing is refused: another tracer, or the system's policy. The reason, for the report.
    Denied(String),
    /// The process (or its last thread) exited meanwhile.
    Gone,
    /// Not every thread stopped before the deadline.
    TimedOut,
}

impl std::fmt::Display for FreezeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FreezeError::Denied(why) => write!(f, "{why}"),
            FreezeError::Gone => write!(f, "the target exited"),
            FreezeError::TimedOut => write!(f, "its threads did not all stop in time"),
        }
    }
}

/// How a stopped thread is let go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Held {
    /// Seized here: detached.
    Seized,
    /// Already traced by this process: continued.
    Ours,
    /// Stopped at its exit by this process's own tracing (see [`Frozen::at_exit`]): left as is.
    Borrowed,
}

/// One stopped thread.
#[derive(Debug, Clone)]
pub(crate) struct FrozenThread {
    pub tid: i32,
    pub regs: libc::user_regs_struct,
    held: Held,
    /// The signal it was stopped to take, given back when it goes on.
    signal: i32,
}

impl FrozenThread {
    /// The general-purpose registers as words: any of them may hold a pointer.
    pub(crate) fn register_words(&self) -> Vec<u64> {
        let r = &self.regs;
        vec![
            r.r15, r.r14, r.r13, r.r12, r.rbp, r.rbx, r.r11, r.r10, r.r9, r.r8, r.rax, r.rcx,
            r.rdx, r.rsi, r.rdi, r.orig_rax, r.rip, r.rsp, r.fs_base, r.gs_base,
        ]
    }
}

/// A process with every thread stopped; dropping it lets them all go.
#[derive(Debug)]
pub(crate) struct Frozen {
    pub pid: i32,
    pub threads: Vec<FrozenThread>,
    /// When the first thread was asked to stop.
    pub since: Instant,
}

impl Frozen {
    /// Stops every thread of `pid`, or fails (having let go what it stopped) by `deadline`.
    pub(crate) fn stop(pid: i32, deadline: Instant) -> Result<Frozen, FreezeError> {
        let mut frozen = Frozen {
            pid,
            threads: Vec::new(),
            since: Instant::now(),
        };
        let mut seen: HashSet<i32> = HashSet::new();
        loop {
            let tids: Vec<i32> = thread_ids(pid)
                .into_iter()
                .filter(|t| !seen.contains(t))
                .collect();
            if tids.is_empty() {
                break;
            }
            let mut asked = Vec::new();
            for tid in tids {
                seen.insert(tid);
                match ask_to_stop(pid, tid) {
                    Ok(Some(held)) => asked.push((tid, held)),
                    Ok(None) => {}
                    Err(e) => {
                        // Threads asked but not yet waited for are let go with the rest.
                        frozen.adopt_unwaited(&asked);
                        return Err(e);
                    }
                }
            }
            for (i, &(tid, held)) in asked.iter().enumerate() {
                match wait_stopped(tid, held, deadline) {
                    Ok(Some(thread)) => frozen.threads.push(thread),
                    Ok(None) => {}
                    Err(e) => {
                        frozen.adopt_unwaited(&asked[i..]);
                        return Err(e);
                    }
                }
            }
        }
        if frozen.threads.is_empty() {
            return Err(FreezeError::Gone);
        }
        Ok(frozen)
    }

    /// A process whose one remaining thread, `pid`, this process holds stopped at its exit (see
    /// `hold`): nothing is stopped or let go here.
    pub(crate) fn at_exit(pid: i32) -> Result<Frozen, FreezeError> {
        let regs = registers(pid).map_err(|_| FreezeError::Gone)?;
        Ok(Frozen {
            pid,
            threads: vec![FrozenThread {
                tid: pid,
                regs,
                held: Held::Borrowed,
                signal: 0,
            }],
            since: Instant::now(),
        })
    }

    /// How long the process has been stopped.
    pub(crate) fn paused(&self) -> Duration {
        self.since.elapsed()
    }

    /// Threads asked to stop and not waited for, on a failure: they are let go without waiting
    /// (a detach of a thread not yet stopped fails, and the kernel's interrupt then ends with
    /// the tracing, so a short wait for each is made first).
    fn adopt_unwaited(&mut self, asked: &[(i32, Held)]) {
        for &(tid, held) in asked {
            if let Ok(Some(t)) = wait_stopped(tid, held, Instant::now() + SETTLE) {
                self.threads.push(t);
            } else if held == Held::Seized {
                request(libc::PTRACE_DETACH, tid, 0);
            }
        }
    }
}

/// How long a thread asked to stop on a failed freeze is waited for before it is let go.
const SETTLE: Duration = Duration::from_millis(50);

impl Drop for Frozen {
    fn drop(&mut self) {
        for t in &self.threads {
            match t.held {
                Held::Seized => request(libc::PTRACE_DETACH, t.tid, t.signal),
                Held::Ours => request(libc::PTRACE_CONT, t.tid, t.signal),
                Held::Borrowed => {}
            }
        }
    }
}

/// Seizes and interrupts `tid`; `None` when it is already gone.
fn ask_to_stop(pid: i32, tid: i32) -> Result<Option<Held>, FreezeError> {
    if ptrace(libc::PTRACE_SEIZE, tid, 0).is_ok() {
        return match ptrace(libc::PTRACE_INTERRUPT, tid, 0) {
            Ok(()) => Ok(Some(Held::Seized)),
            Err(_) => {
                request(libc::PTRACE_DETACH, tid, 0);
                Ok(None)
            }
        };
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        Some(libc::ESRCH) => Ok(None),
        // Traced already: by this process (then an interrupt works), or by another.
        Some(libc::EPERM) if ptrace(libc::PTRACE_INTERRUPT, tid, 0).is_ok() => Ok(Some(Held::Ours)),
        Some(libc::EPERM) => Err(FreezeError::Denied(refusal(pid, tid))),
        _ => Err(FreezeError::Denied(format!(
            "ptrace of thread {tid} failed: {err}"
        ))),
    }
}

/// Why a seize was refused, as best it can be told.
fn refusal(pid: i32, tid: i32) -> String {
    let tracer = std::fs::read_to_string(format!("/proc/{pid}/task/{tid}/status"))
        .ok()
        .and_then(|s| number_field(&s, "TracerPid:"))
        .unwrap_or(0);
    if tracer != 0 {
        // TracerPid names the tracing thread: its process is what a user knows.
        let tracer = status_field(tracer, "Tgid:").unwrap_or(tracer);
        let name = std::fs::read_to_string(format!("/proc/{tracer}/comm")).unwrap_or_default();
        return format!(
            "ptrace refused: the target is already traced by pid {tracer} ({})",
            name.trim()
        );
    }
    let scope = std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope").unwrap_or_default();
    match scope.trim() {
        "" => "ptrace refused (EPERM)".into(),
        s => format!("ptrace refused by Yama (kernel.yama.ptrace_scope = {s})"),
    }
}

/// A numeric field of a status text.
fn number_field(status: &str, name: &str) -> Option<i32> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().parse().ok())
}

/// A numeric field of task `tid`'s /proc status.
fn status_field(tid: i32, name: &str) -> Option<i32> {
    number_field(
        &std::fs::read_to_string(format!("/proc/{tid}/status")).ok()?,
        name,
    )
}

/// Waits until `tid` is in a stop; `None` when it exited instead.
fn wait_stopped(
    tid: i32,
    held: Held,
    deadline: Instant,
) -> Result<Option<FrozenThread>, FreezeError> {
    loop {
        let mut status = 0;
        // SAFETY: a non-blocking wait for one thread this process traces; `status` is valid.
        let r = unsafe { libc::waitpid(tid, &mut status, libc::__WALL | libc::WNOHANG) };
        if r < 0 {
            return Ok(None);
        }
        if r == tid {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                return Ok(None);
            }
            if libc::WIFSTOPPED(status) {
                // A signal-delivery stop (no event) keeps its signal for later; an event stop
                // (the interrupt, a group stop, or an exit or exec of a thread traced for those)
                // has none to give back.
                let event = status >> 16;
                let signal = if event == 0 {
                    libc::WSTOPSIG(status)
                } else {
                    0
                };
                let Ok(regs) = registers(tid) else {
                    return Ok(None);
                };
                return Ok(Some(FrozenThread {
                    tid,
                    regs,
                    held,
                    signal,
                }));
            }
            continue;
        }
        if Instant::now() >= deadline {
            return Err(FreezeError::TimedOut);
        }
        std::thread::sleep(Duration::from_micros(100));
    }
}

/// A stopped thread's general-purpose registers.
fn registers(tid: i32) -> io::Result<libc::user_regs_struct> {
    // SAFETY: all-zero is a valid user_regs_struct.
    let mut regs: libc::user_regs_struct = unsafe { std::mem::zeroed() };
    // SAFETY: `tid` is stopped under this process's tracing; the kernel writes one
    // user_regs_struct to `regs`, which is valid for it.
    let r = unsafe {
        libc::ptrace(
            libc::PTRACE_GETREGS,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            &mut regs as *mut libc::user_regs_struct,
        )
    };
    if r < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(regs)
}

fn ptrace(req: libc::c_uint, tid: i32, data: usize) -> Result<(), ()> {
    // SAFETY: a request that passes no memory (`data` is an option word or a signal number).
    let r = unsafe {
        libc::ptrace(
            req,
            tid,
            std::ptr::null_mut::<libc::c_void>(),
            data as *mut libc::c_void,
        )
    };
    if r < 0 { Err(()) } else { Ok(()) }
}

/// A request whose failure changes nothing (the thread is gone).
fn request(req: libc::c_uint, tid: i32, signal: i32) {
    let _ = ptrace(req, tid, signal as usize);
}
