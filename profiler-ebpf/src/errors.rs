//! The `errors` family: failed system calls (with the path or address that explains them),
//! signals delivered to the target (with the faulting address), OOM kills, and what the target
//! writes to fds 1 and 2. Tracepoints only: nothing is placed in the target's code.

mod connect;

use core::ffi::c_void;

use aya_ebpf::{
    bindings::{BPF_F_USER_STACK, BPF_NOEXIST, pt_regs},
    helpers::{
        bpf_ktime_get_ns, bpf_probe_read_kernel, bpf_probe_read_user, bpf_probe_read_user_buf,
        bpf_probe_read_user_str_bytes, generated::bpf_loop,
    },
    macros::{btf_tracepoint, map, raw_tracepoint, tracepoint},
    maps::{HashMap, PerCpuArray, StackTrace},
    programs::{
        BtfTracePointContext, RawTracePointContext, TracePointContext, tracing::StackIdContext,
    },
};
use profiler_common::{
    counters::Counter,
    errno::{EAGAIN, EINPROGRESS, EINTR, ERESTART_FIRST, is_failure},
    errors::{
        ARG_CAPTURE, ArgKind, DETAIL_BURST, DETAIL_INTERVAL_NS, ERROR_STACKS_MAX,
        FAILURE_KINDS_MAX, FailureKey, FailureStats, OUTPUT_CHUNK, OUTPUT_KEEP, OUTPUT_MAX_STEPS,
        OUTPUT_TAIL, OomEvent, OutputEvent, SignalEvent, SyscallErrorEvent,
    },
    event::{EventHeader, EventKind},
    signals::{SIG_DFL, SIG_IGN, is_fault, wants_stack},
    syscalls as sys,
};

use crate::{
    common::{
        EVENTS, count, count_n, current_ids, fetch_add, follow_children, followed, followed_child,
        named_as_in_common, stopped, target_tgid,
    },
    functions::running_function,
    interrupted::syscall_interrupted,
};
use connect::{CONNECT_SOCKS, CONNECT_THREADS, inet_sock_set_state, on_connect_exit};

/// Every failed syscall of the target, counted exactly by (syscall, errno).
#[map]
static FAILURES: HashMap<FailureKey, FailureStats> =
    HashMap::with_max_entries(FAILURE_KINDS_MAX, 0);

#[map]
static ERROR_STACKS: StackTrace = StackTrace::with_max_entries(ERROR_STACKS_MAX, 0);

/// The state of the loop that captures one long write (see [`capture_output`]), per CPU: the
/// kernel never runs a program twice at once on one CPU (a run that would nest is skipped, and
/// counted as a recursion miss), and does not migrate a running one. In a map, not on the stack, on purpose: the verifier knows nothing of a value
/// loaded from a map, so it checks the loop's callback once, where values on the stack would
/// make it follow the loop step by step (a million instructions, refused).
#[map]
static OUTPUT_CAPTURE: PerCpuArray<Capture> = PerCpuArray::with_max_entries(1, 0);

named_as_in_common!(
    errors,
    maps: [FAILURES, ERROR_STACKS, OUTPUT_CAPTURE, CONNECT_SOCKS, CONNECT_THREADS],
    programs: [
        syscall_exit_btf => SYSCALL_EXIT_BTF,
        syscall_exit => SYSCALL_EXIT,
        signal_deliver => SIGNAL_DELIVER,
        oom_mark_victim => OOM_MARK_VICTIM,
        inet_sock_set_state => INET_SOCK_SET_STATE,
        syscall_interrupted => SYSCALL_INTERRUPTED,
    ]
);

/// Which argument of syscall `id` explains its failure, and what it is.
#[inline(always)]
fn explaining_arg(id: u64) -> Option<(usize, ArgKind)> {
    match id {
        sys::OPEN
        | sys::STAT
        | sys::LSTAT
        | sys::ACCESS
        | sys::EXECVE
        | sys::TRUNCATE
        | sys::CHDIR
        | sys::RENAME
        | sys::MKDIR
        | sys::RMDIR
        | sys::CREAT
        | sys::LINK
        | sys::UNLINK
        | sys::READLINK
        | sys::CHMOD
        | sys::CHOWN => Some((0, ArgKind::Path)),
        sys::OPENAT
        | sys::MKDIRAT
        | sys::NEWFSTATAT
        | sys::UNLINKAT
        | sys::READLINKAT
        | sys::FACCESSAT
        | sys::EXECVEAT
        | sys::STATX
        | sys::OPENAT2
        | sys::FACCESSAT2 => Some((1, ArgKind::Path)),
        sys::CONNECT | sys::BIND => Some((1, ArgKind::SockAddr)),
        _ => None,
    }
}

fn header(kind: EventKind, tid: u32) -> EventHeader {
    header_at(kind, tid, now())
}

/// A header for thread `tid` of process `tgid`, made in another task's context.
#[inline(always)]
fn header_of(kind: EventKind, tid: u32, tgid: u32) -> EventHeader {
    let mut header = header(kind, tid);
    header.tgid = tgid;
    header
}

#[inline(always)]
fn header_at(kind: EventKind, tid: u32, timestamp_ns: u64) -> EventHeader {
    // The record is made in the current task's context, or its tgid is set after (`header_of`):
    // events are rare, so one more helper call each is cheap.
    let (_, tgid) = current_ids();
    EventHeader {
        kind: kind as u16,
        _pad: 0,
        tid,
        timestamp_ns,
        tgid,
        _pad2: 0,
    }
}

/// CLOCK_MONOTONIC, ns.
#[inline(always)]
fn now() -> u64 {
    // SAFETY: the helper takes no arguments.
    unsafe { bpf_ktime_get_ns() }
}

/// `uretprobe(2)` and `uprobe(2)`: how the kernel itself returns from a uretprobe (and, for
/// optimised sites, enters a uprobe). They come with every traced call and never fail for the
/// target's reasons: they are dropped before anything else.
#[inline(always)]
fn is_uprobe_syscall(id: u64) -> bool {
    id == sys::URETPROBE || id == sys::UPROBE
}

/// `orig_rax` of -1: no syscall is returning. `rt_sigreturn(2)` leaves that behind: it restores
/// the registers of the context a signal handler interrupted, `rax` included, which may read as
/// a failure (the -EINTR of the call the handler interrupted, or whatever user code had there).
/// The kernel's own syscall tracing skips these too.
#[inline(always)]
fn is_sigreturn(id: u64) -> bool {
    (id as i64) < 0
}

/// A saved user register of the syscall, from the `struct pt_regs` the raw tracepoints get.
#[inline(always)]
pub(crate) fn user_reg(regs: u64, offset: usize) -> Result<u64, ()> {
    // SAFETY: a kernel pointer from the tracepoint's arguments, read through the checked helper.
    unsafe { bpf_probe_read_kernel((regs as usize + offset) as *const u64) }.map_err(|_| ())
}

/// Offsets in `struct pt_regs` of the syscall argument registers and the syscall number.
const ARG_REGS: [usize; 3] = [
    core::mem::offset_of!(pt_regs, rdi),
    core::mem::offset_of!(pt_regs, rsi),
    core::mem::offset_of!(pt_regs, rdx),
];
pub(crate) const ORIG_RAX: usize = core::mem::offset_of!(pt_regs, orig_rax);
/// The return value, once the syscall has returned.
pub(crate) const RAX: usize = core::mem::offset_of!(pt_regs, rax);

/// The saved user registers of the syscall that is returning. At `sys_exit` they still hold the
/// call's arguments (x86-64 syscalls do not change them), and the memory the arguments point at
/// (a path, a socket address, the bytes written) is still there: everything is read at exit, so
/// nothing runs at syscall entry at all. Every program on a syscall tracepoint costs every
/// syscall of the system, and the target's `uretprobe(2)` (one per traced call) most of all.
trait SavedRegs {
    /// The register at `offset` in `struct pt_regs`.
    fn get(&self, offset: usize) -> Result<u64, ()>;
}

/// `struct pt_regs *` as a raw tracepoint gets it: an untyped kernel address, read through the
/// checked helper.
struct RawRegs(u64);

impl SavedRegs for RawRegs {
    #[inline(always)]
    fn get(&self, offset: usize) -> Result<u64, ()> {
        user_reg(self.0, offset)
    }
}

/// `struct pt_regs *` as a BTF tracepoint gets it: typed, so a field is one load (the verifier
/// checks it against the kernel's BTF and makes it fault-safe).
struct BtfRegs(*const pt_regs);

impl SavedRegs for BtfRegs {
    #[inline(always)]
    fn get(&self, offset: usize) -> Result<u64, ()> {
        // SAFETY: a field of the tracepoint's `struct pt_regs` argument, at a constant offset
        // inside it (the callers pass the `offset_of!` constants above).
        Ok(unsafe { core::ptr::read_volatile(self.0.cast::<u8>().add(offset).cast::<u64>()) })
    }
}

/// Whether a returning syscall may matter: a failure, or bytes written by write(2)/writev(2).
#[inline(always)]
fn worth_a_look(id: u64, ret: i64) -> bool {
    is_failure(ret) || ((id == sys::WRITE || id == sys::WRITEV) && ret > 0)
}

/// `sys_exit(struct pt_regs *regs, long ret)` with BTF: the syscall number is one load, so
/// `uretprobe(2)` (every traced call's return) is dropped before any helper call. Preferred;
/// [`syscall_exit`] is the fallback for kernels that refuse it.
#[btf_tracepoint(function = "sys_exit")]
pub fn syscall_exit_btf(ctx: BtfTracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    let regs = BtfRegs(ctx.arg(0));
    let Ok(id) = regs.get(ORIG_RAX) else {
        return 0;
    };
    if is_uprobe_syscall(id) || is_sigreturn(id) {
        return 0;
    }
    let ret: i64 = ctx.arg(1);
    if !worth_a_look(id, ret) {
        return 0;
    }
    let (tid, tgid) = current_ids();
    if !followed(tgid) {
        return 0;
    }
    match on_exit(&ctx, &regs, tid, id, ret) {
        Ok(()) | Err(()) => 0,
    }
}

/// `sys_exit(struct pt_regs *regs, long ret)`, raw: other processes are dropped first (one
/// helper call), then the syscall number is read. With children followed, the hash lookup that
/// tells a followed child waits until the syscall is worth a look.
#[raw_tracepoint(tracepoint = "sys_exit")]
pub fn syscall_exit(ctx: RawTracePointContext) -> u32 {
    let ret: i64 = ctx.arg(1);
    if ret == 0 {
        // Success with nothing written: nothing to see, whatever the call.
        return 0;
    }
    if stopped() {
        return 0;
    }
    let (tid, tgid) = current_ids();
    let target = tgid == target_tgid();
    if !target && !follow_children() {
        return 0;
    }
    let regs = RawRegs(ctx.arg(0));
    let Ok(id) = regs.get(ORIG_RAX) else {
        return 0;
    };
    if is_uprobe_syscall(id) || is_sigreturn(id) || !worth_a_look(id, ret) {
        return 0;
    }
    if !target && !followed_child(tgid) {
        return 0;
    }
    match on_exit(&ctx, &regs, tid, id, ret) {
        Ok(()) | Err(()) => 0,
    }
}

/// A syscall of the target that failed, or wrote to some fd, returning on thread `tid`.
#[inline(always)]
fn on_exit<C: StackIdContext, R: SavedRegs>(
    ctx: &C,
    regs: &R,
    tid: u32,
    id: u64,
    ret: i64,
) -> Result<(), ()> {
    if ret > 0 {
        // write(2)/writev(2) (see `worth_a_look`): what reached fd 1 or 2, `ret` bytes of it.
        let fd = regs.get(ARG_REGS[0])?;
        if fd == 1 || fd == 2 {
            let buf = regs.get(ARG_REGS[1])?;
            let vlen = if id == sys::WRITE {
                None
            } else {
                Some(regs.get(ARG_REGS[2])?)
            };
            capture_output(tid, fd as u32, buf, vlen, ret as u64);
        }
        return Ok(());
    }
    let errno = (-ret) as u32;
    if errno >= ERESTART_FIRST {
        // Not what the target sees: the call is restarted, or fails with EINTR, which is
        // counted when the signal is delivered (see `crate::interrupted`).
        return Ok(());
    }
    if id == sys::CONNECT {
        // A non-blocking connect's failure comes later: see `connect`.
        let _ = on_connect_exit(ctx, regs, tid, errno);
    }
    let key = FailureKey {
        syscall: id as u32,
        errno,
    };
    // Expected failures are counted, not detailed; others are detailed in a burst, then at a
    // bounded rate, so a failure late in the run is seen even after thousands of earlier ones.
    let detail = count_failure(key);
    if errno == EAGAIN || errno == EINTR || errno == EINPROGRESS || !detail {
        return Ok(());
    }
    // The argument that explains the failure: a path, or a socket address and its length.
    let explained = match explaining_arg(id) {
        Some((index, kind)) => {
            let ptr = regs.get(ARG_REGS[index & 1])?;
            let len = if kind == ArgKind::SockAddr {
                regs.get(ARG_REGS[(index & 1) + 1])?
            } else {
                0
            };
            Some((kind, ptr, len))
        }
        None => None,
    };
    let Some(mut entry) = EVENTS.reserve::<SyscallErrorEvent>(0) else {
        count(Counter::RingBufferFull);
        return Ok(());
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved record, written in full before it is submitted.
    unsafe {
        (*event).header = header(EventKind::SyscallError, tid);
        (*event).syscall = id as u32;
        (*event).errno = errno;
        (*event).stack_id = ctx
            .get_stackid(&ERROR_STACKS, BPF_F_USER_STACK as u64)
            .map(|id| id as i32)
            .unwrap_or(-1);
        (*event).func = running_function(tid);
        (*event).python = crate::python::tracepoint_stack(tid);
        (*event).arg_kind = ArgKind::None as u8;
        (*event).deferred = 0;
        (*event)._pad = [0; 2];
        (*event).arg_len = 0;
        if let Some((kind, ptr, len)) = explained {
            let arg = &mut (*event).arg;
            if kind == ArgKind::Path {
                if let Ok(s) = bpf_probe_read_user_str_bytes(ptr as *const u8, arg) {
                    (*event).arg_len = s.len() as u32;
                    (*event).arg_kind = ArgKind::Path as u8;
                }
            } else {
                let len = if len as usize > ARG_CAPTURE {
                    ARG_CAPTURE
                } else {
                    len as usize
                };
                if len > 0 && bpf_probe_read_user_buf(ptr as *const u8, &mut arg[..len]).is_ok() {
                    (*event).arg_len = len as u32;
                    (*event).arg_kind = ArgKind::SockAddr as u8;
                }
            }
        }
    }
    entry.submit(0);
    Ok(())
}

/// Counts one failure; returns whether its details should be sent (see `DETAIL_BURST`).
#[inline(always)]
pub(crate) fn count_failure(key: FailureKey) -> bool {
    let mut stats = FAILURES.get_ptr_mut(key);
    if stats.is_none() {
        let first = FailureStats {
            count: 0,
            last_detailed_ns: 0,
        };
        // Another CPU may create it first: then this insert fails harmlessly.
        let _ = FAILURES.insert(key, first, BPF_NOEXIST as u64);
        stats = FAILURES.get_ptr_mut(key);
    }
    let Some(stats) = stats else {
        count(Counter::FailureMapFull);
        return true;
    };
    // SAFETY: a valid, aligned map value; `count` is updated atomically, the rate-limit time
    // stamp racily (two CPUs may both send one: harmless).
    unsafe {
        if fetch_add(&raw mut (*stats).count, 1) < DETAIL_BURST {
            return true;
        }
        let now = bpf_ktime_get_ns();
        if now.saturating_sub((*stats).last_detailed_ns) < DETAIL_INTERVAL_NS {
            return false;
        }
        (*stats).last_detailed_ns = now;
        true
    }
}

/// `signal_deliver(int sig, struct kernel_siginfo *info, struct k_sigaction *ka)`, in the
/// receiving task.
#[raw_tracepoint(tracepoint = "signal_deliver")]
pub fn signal_deliver(ctx: RawTracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_signal_deliver(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_signal_deliver(ctx: &RawTracePointContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if !followed(tgid) {
        return Ok(());
    }
    let signo: u64 = ctx.arg(0);
    let info: u64 = ctx.arg(1);
    let action: u64 = ctx.arg(2);
    // kernel_siginfo: si_signo, si_errno, si_code, then (after padding) si_addr at 16 for the
    // fault signals; k_sigaction starts with sa_handler. The same layout as user siginfo_t.
    // SAFETY: kernel pointers from the tracepoint's arguments, read through the checked helper.
    let (errno, code, addr, handler) = unsafe {
        (
            bpf_probe_read_kernel((info + 4) as *const i32).unwrap_or(0),
            bpf_probe_read_kernel((info + 8) as *const i32).unwrap_or(0),
            bpf_probe_read_kernel((info + 16) as *const u64).unwrap_or(0),
            bpf_probe_read_kernel(action as *const u64).unwrap_or(0),
        )
    };
    let signo = signo as i32;
    let fault = is_fault(signo);
    // The stack of a crash: this runs in the receiving task, on its way back to user space,
    // and its saved user registers are where the fault (or the kill) found it. Benign signals
    // (a handler's, an ignored one) are counted, and spared the walk.
    let (stack_id, python) = if wants_stack(signo, handler) {
        (
            ctx.get_stackid(&ERROR_STACKS, BPF_F_USER_STACK as u64)
                .map(|id| id as i32)
                .unwrap_or(-1),
            crate::python::tracepoint_stack(tid),
        )
    } else {
        (-1, 0)
    };
    let event = SignalEvent {
        header: header(EventKind::Signal, tid),
        signo,
        code,
        errno,
        disposition: match handler {
            SIG_DFL => 0,
            SIG_IGN => 1,
            _ => 2,
        },
        fault_addr: if fault { addr } else { 0 },
        stack_id,
        func: running_function(tid),
        python,
    };
    if EVENTS.output::<SignalEvent>(&event, 0).is_err() {
        count(Counter::RingBufferFull);
    }
    Ok(())
}

#[tracepoint]
pub fn oom_mark_victim(ctx: TracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    match try_oom_mark_victim(&ctx) {
        Ok(()) | Err(()) => 0,
    }
}

fn try_oom_mark_victim(ctx: &TracePointContext) -> Result<(), ()> {
    // Runs in the OOM killer's context: the victim is in the record.
    // SAFETY (reads below): offsets inside the oom/mark_victim record (see its format).
    let pid: i32 = unsafe { ctx.read_at(8) }.map_err(|_| ())?;
    if !followed(pid as u32) {
        return Ok(());
    }
    let total_vm: u64 = unsafe { ctx.read_at(16) }.map_err(|_| ())?;
    let anon_rss: u64 = unsafe { ctx.read_at(24) }.map_err(|_| ())?;
    let event = OomEvent {
        header: header_of(EventKind::OomKill, pid as u32, pid as u32),
        anon_rss_pages: anon_rss,
        total_vm_pages: total_vm,
    };
    if EVENTS.output::<OomEvent>(&event, 0).is_err() {
        count(Counter::RingBufferFull);
    }
    Ok(())
}

/// A write(2) (`vlen` None: `buf` is the buffer) or writev(2) (`buf` is the iovec array, `vlen`
/// its length) to fd 1 or 2 that wrote `written` bytes: sent as records of up to
/// [`OUTPUT_CHUNK`] bytes each, at most [`OUTPUT_KEEP`] bytes of it (its head and tail), all
/// stamped with the same time. What is not sent is counted.
#[inline(always)]
fn capture_output(tid: u32, fd: u32, buf: u64, vlen: Option<u64>, written: u64) {
    let ts = now();
    let (vec, vlen, left) = match vlen {
        None if written <= OUTPUT_CHUNK as u64 => {
            // The common case, a short write: one record, no loop.
            if emit(tid, fd, ts, buf, written, 0) != Sent::Yes {
                count_n(Counter::OutputTruncatedBytes, written);
            }
            return;
        }
        // A long write: one segment, its buffer.
        None => (0, 0, written),
        // A writev: the segments come from the iovecs, read one by one.
        Some(vlen) => (buf, vlen, 0),
    };
    let Some(capture) = OUTPUT_CAPTURE.get_ptr_mut(0) else {
        count_n(Counter::OutputTruncatedBytes, written);
        return;
    };
    let (head_end, tail_start) = if written > OUTPUT_KEEP {
        (OUTPUT_KEEP - OUTPUT_TAIL, written - OUTPUT_TAIL)
    } else {
        (written, written)
    };
    // SAFETY: the map value of this CPU; no other run of this program uses it meanwhile.
    unsafe {
        capture.write(Capture {
            tid,
            fd,
            ts,
            vec,
            vlen,
            next: 0,
            base: buf,
            left,
            pos: 0,
            written,
            head_end,
            tail_start,
            gap: 0,
            dropped: 0,
        })
    };
    // One callback, checked once by the verifier, however many records; each step sends at
    // most one.
    // SAFETY: `capture_step` is a function of this program with the signature bpf_loop calls;
    // it takes no context.
    unsafe {
        bpf_loop(
            OUTPUT_MAX_STEPS,
            capture_step as *mut c_void,
            core::ptr::null_mut(),
            0,
        )
    };
    // SAFETY: as above; the loop is over.
    let lost = unsafe { (*capture).dropped + ((*capture).written - (*capture).pos) };
    if lost > 0 {
        count_n(Counter::OutputTruncatedBytes, lost);
    }
}

/// The state of [`capture_output`]'s loop, in [`OUTPUT_CAPTURE`].
#[repr(C)]
struct Capture {
    tid: u32,
    fd: u32,
    /// The write's timestamp, on each of its records.
    ts: u64,
    /// A writev's iovec array, its length, and the next iovec to read (all 0 for a write).
    vec: u64,
    vlen: u64,
    next: u64,
    /// The segment being sent (the write's buffer, or the current iovec's): its next byte, and
    /// how many of its bytes are left.
    base: u64,
    left: u64,
    /// Bytes of the write gone through, sent or not, of `written`.
    pos: u64,
    written: u64,
    /// The bytes in `head_end..tail_start` of the write are not sent (none when the write fits
    /// in [`OUTPUT_KEEP`]).
    head_end: u64,
    tail_start: u64,
    /// Bytes not sent since the last record (the next record says so), and in all.
    gap: u64,
    dropped: u64,
}

impl Capture {
    /// One step: sends the next record, reads the next iovec, or passes over bytes not kept.
    /// False when done (everything written gone through, the ring buffer full, an iovec that
    /// cannot be read).
    #[inline(always)]
    fn step(&mut self) -> bool {
        if self.pos >= self.written {
            return false;
        }
        if self.left == 0 {
            if self.next >= self.vlen {
                return false;
            }
            // struct iovec { void *iov_base; size_t iov_len; }
            let iov = self.vec + 16 * self.next;
            // SAFETY: user memory read through the checked helper.
            let Ok([base, len]) = (unsafe { bpf_probe_read_user(iov as *const [u64; 2]) }) else {
                return false;
            };
            self.next += 1;
            self.base = base;
            self.left = len.min(self.written - self.pos);
            return true;
        }
        let sent = if self.pos < self.head_end {
            let n = self.left.min(self.head_end - self.pos);
            self.send(n)
        } else if self.pos < self.tail_start {
            // The middle of a long write: passed over, counted.
            let n = self.left.min(self.tail_start - self.pos);
            self.gap += n;
            self.dropped += n;
            Some(n)
        } else {
            self.send(self.left)
        };
        let Some(n) = sent else {
            return false;
        };
        self.base += n;
        self.left -= n;
        self.pos += n;
        true
    }

    /// Sends up to [`OUTPUT_CHUNK`] of the next `n` bytes of the segment; how many it went
    /// through (sent, or counted when they cannot be read), or None when the ring buffer is
    /// full.
    #[inline(always)]
    fn send(&mut self, n: u64) -> Option<u64> {
        let n = n.min(OUTPUT_CHUNK as u64);
        match emit(self.tid, self.fd, self.ts, self.base, n, self.gap) {
            Sent::Yes => self.gap = 0,
            Sent::Unreadable => {
                self.gap += n;
                self.dropped += n;
            }
            Sent::RingBufferFull => return None,
        }
        Some(n)
    }
}

/// `bpf_loop`'s callback for [`capture_output`]: one [`Capture::step`]; 1 ends the loop.
extern "C" fn capture_step(_index: u64, _ctx: *mut c_void) -> i64 {
    let Some(capture) = OUTPUT_CAPTURE.get_ptr_mut(0) else {
        return 1;
    };
    // SAFETY: the map value of this CPU, which `capture_output` filled before the loop; no
    // other run of this program uses it meanwhile.
    i64::from(!unsafe { &mut *capture }.step())
}

/// What became of one record.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sent {
    Yes,
    /// The bytes could not be read: the record was discarded.
    Unreadable,
    /// No record could be reserved (counted here).
    RingBufferFull,
}

/// Sends `len` (at most [`OUTPUT_CHUNK`]) bytes at `buf` as one record, `truncated` bytes of the
/// write not captured right before them.
#[inline(always)]
fn emit(tid: u32, fd: u32, ts: u64, buf: u64, len: u64, truncated: u64) -> Sent {
    let n = if len > OUTPUT_CHUNK as u64 {
        OUTPUT_CHUNK
    } else {
        len as usize
    };
    let Some(mut entry) = EVENTS.reserve::<OutputEvent>(0) else {
        count(Counter::RingBufferFull);
        return Sent::RingBufferFull;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved record, written in full before it is submitted;
    // the user buffer is read through the checked helper.
    let read = unsafe {
        (*event).header = header_at(EventKind::Output, tid, ts);
        (*event).fd = fd;
        (*event).len = n as u32;
        (*event).truncated = truncated.min(u32::MAX.into()) as u32;
        (*event)._pad = 0;
        let data = &mut (*event).data;
        bpf_probe_read_user_buf(buf as *const u8, &mut data[..n])
    };
    if read.is_err() {
        entry.discard(0);
        return Sent::Unreadable;
    }
    entry.submit(0);
    Sent::Yes
}
