//! Non-blocking connects that fail. connect(2) returns `EINPROGRESS`, and the failure (a reset,
//! a timeout, an ICMP error) comes later, from the network: the target learns it from
//! `getsockopt(SO_ERROR)` or its next call on the socket, so no syscall of its fails with it.
//! Python sockets with a timeout, asyncio, Node, Go and libcurl all connect so.
//!
//! The `inet_sock_set_state` raw tracepoint follows each TCP socket that a connect(2) of the
//! target puts in SYN_SENT (that transition runs in the connecting thread) until it leaves
//! SYN_SENT; `sys_exit` says what connect(2) returned ([`on_connect_exit`]). A connect that
//! returned `EINPROGRESS` (or `EINTR`: it goes on too) and then went from SYN_SENT to CLOSE with
//! `sk_err` set is sent as a failed `connect`, `deferred`, with `sk_err` as its errno and the
//! address and stack of the connect(2) call. A blocking connect's failure is its syscall's own
//! (sent by `sys_exit` as any other); a socket the target closes itself has no `sk_err`.
//!
//! The end may come before connect(2) returns or after. On loopback the reset is handled as
//! connect(2) releases the socket, in the target's thread, before it returns `EINPROGRESS`;
//! from another host it comes later, in softirq context on any CPU and in whatever task runs
//! there, so the socket is recognised by its address (`struct sock *`), not by the current
//! task. Whichever of the two comes second sends the record: they agree through one
//! compare-and-swap on [`Pending::state`].

use aya_ebpf::{
    bindings::BPF_F_USER_STACK,
    helpers::{bpf_probe_read_kernel, bpf_probe_read_user_buf},
    macros::{map, raw_tracepoint},
    maps::LruHashMap,
    programs::{RawTracePointContext, tracing::StackIdContext},
};
use profiler_common::{
    counters::Counter,
    errno::{EINPROGRESS, EINTR, MAX_ERRNO},
    errors::{
        ArgKind, CONNECT_ADDR_CAPTURE, CONNECTS_MAX, FailureKey, NO_FUNCTION, SyscallErrorEvent,
        tcp,
    },
    event::EventKind,
    syscalls as sys,
};

use super::{ARG_REGS, ERROR_STACKS, SavedRegs, count_failure, header_of};
use crate::{
    common::{EVENTS, compare_exchange, count, current_ids, followed, load, stopped},
    functions::running_function,
};

/// Byte offset of `sk_err` in `struct sock`, read from the kernel's BTF by the loader;
/// `u32::MAX` when unknown (then nothing is sent: the errno is what classifies the failure).
#[unsafe(no_mangle)]
static SOCK_ERR_OFFSET: u32 = u32::MAX;

/// The target's TCP connects between SYN_SENT and its end, by `struct sock *`.
#[map]
pub(super) static CONNECT_SOCKS: LruHashMap<u64, Pending> =
    LruHashMap::with_max_entries(CONNECTS_MAX, 0);

/// The socket that each thread's connect(2) put in SYN_SENT, by thread id: how `sys_exit`, which
/// knows the thread and not the socket, finds it.
#[map]
pub(super) static CONNECT_THREADS: LruHashMap<u32, u64> =
    LruHashMap::with_max_entries(CONNECTS_MAX, 0);

/// [`Pending::state`] while connect(2) has not returned.
const RUNNING: u64 = 0;
/// [`Pending::state`] once connect(2) returned `EINPROGRESS`. Any other value is the errno the
/// connection failed with while connect(2) still ran.
const RETURNED: u64 = u64::MAX;

/// One connect in flight (kernel side only).
#[repr(C)]
pub(super) struct Pending {
    /// [`RUNNING`], [`RETURNED`], or an errno: changed only by compare-and-swap.
    state: u64,
    /// The thread that called connect(2), and its process.
    tid: u32,
    tgid: u32,
    /// connect(2)'s user stack in `ERROR_STACKS` (negative: none), and the traced function then
    /// running, filled in when it returns `EINPROGRESS`.
    stack_id: i32,
    func: u32,
    addr_len: u32,
    /// connect(2)'s address, `addr_len` bytes of it.
    addr: [u8; CONNECT_ADDR_CAPTURE],
}

/// `inet_sock_set_state(const struct sock *sk, int oldstate, int newstate)`, called on every TCP
/// state change of the system, in process or softirq context.
#[raw_tracepoint(tracepoint = "inet_sock_set_state")]
pub fn inet_sock_set_state(ctx: RawTracePointContext) -> u32 {
    if stopped() {
        return 0;
    }
    let sk: u64 = ctx.arg(0);
    let old: i32 = ctx.arg(1);
    let new: i32 = ctx.arg(2);
    if old == tcp::CLOSE && new == tcp::SYN_SENT {
        syn_sent(sk);
    } else if old == tcp::SYN_SENT {
        left_syn_sent(sk, new);
    }
    0
}

/// A connect(2) put socket `sk` in SYN_SENT, in the connecting thread: followed if the thread is
/// the target's.
#[inline(always)]
fn syn_sent(sk: u64) {
    let (tid, tgid) = current_ids();
    if !followed(tgid) {
        return;
    }
    let pending = Pending {
        state: RUNNING,
        tid,
        tgid,
        stack_id: -1,
        func: NO_FUNCTION,
        addr_len: 0,
        addr: [0; CONNECT_ADDR_CAPTURE],
    };
    if CONNECT_SOCKS.insert(sk, pending, 0).is_ok() {
        let _ = CONNECT_THREADS.insert(tid, sk, 0);
    }
}

/// Socket `sk` left SYN_SENT for `new`: connected, closed by the target, or failed.
#[inline(always)]
fn left_syn_sent(sk: u64, new: i32) {
    let Some(pending) = CONNECT_SOCKS.get_ptr_mut(sk) else {
        return;
    };
    let errno = if new == tcp::CLOSE { sock_err(sk) } else { 0 };
    if errno == 0 {
        // Connected, or closed by the target: nothing to report.
        let _ = CONNECT_SOCKS.remove(sk);
        return;
    }
    // SAFETY: `pending` is a valid, aligned map value; its state word is only changed by
    // compare-and-swap.
    if unsafe { compare_exchange(&raw mut (*pending).state, RUNNING, errno.into()) } {
        // connect(2) still runs: `on_connect_exit` decides, and keeps the entry till then.
        return;
    }
    // connect(2) has returned: if it returned EINPROGRESS, the failure is sent now.
    // SAFETY: as above.
    if unsafe { load(&raw const (*pending).state) } == RETURNED {
        send(pending, errno);
    }
    let _ = CONNECT_SOCKS.remove(sk);
}

/// `sk->sk_err`: why the connection failed, or 0 (none, or unknown).
#[inline(always)]
fn sock_err(sk: u64) -> u32 {
    // SAFETY: a read of a global the loader initialised.
    let offset = unsafe { core::ptr::read_volatile(&SOCK_ERR_OFFSET) };
    if offset == u32::MAX {
        return 0;
    }
    // SAFETY: a kernel address from the tracepoint's arguments, read through the checked helper.
    let err = unsafe { bpf_probe_read_kernel((sk + u64::from(offset)) as *const i32) };
    match err {
        Ok(e) if e > 0 && e as u32 <= MAX_ERRNO => e as u32,
        _ => 0,
    }
}

/// connect(2) of thread `tid` failed with `errno` (`sys_exit`, the target's thread): if it
/// returned `EINPROGRESS` or `EINTR`, the connect goes on, and its failure, already seen or
/// still to come, is sent; any other failure is the syscall's own.
#[inline(always)]
pub(super) fn on_connect_exit<C: StackIdContext, R: SavedRegs>(
    ctx: &C,
    regs: &R,
    tid: u32,
    errno: u32,
) -> Result<(), ()> {
    let Some(sk) = CONNECT_THREADS.get_ptr(tid) else {
        return Ok(());
    };
    // SAFETY: a valid map value.
    let sk = unsafe { *sk };
    let _ = CONNECT_THREADS.remove(tid);
    let Some(pending) = CONNECT_SOCKS.get_ptr_mut(sk) else {
        // It already connected, or the target closed it.
        return Ok(());
    };
    // SAFETY: `pending` is a valid map value.
    if unsafe { (*pending).tid } != tid {
        return Ok(());
    }
    if errno != EINPROGRESS && errno != EINTR {
        let _ = CONNECT_SOCKS.remove(sk);
        return Ok(());
    }
    // What the record will say, written before the state says that connect(2) returned.
    let addr = regs.get(ARG_REGS[1])?;
    let len = regs.get(ARG_REGS[2])?;
    let len = if len as usize > CONNECT_ADDR_CAPTURE {
        CONNECT_ADDR_CAPTURE
    } else {
        len as usize
    };
    // SAFETY: `pending` is a valid, aligned map value: its state word is only changed by
    // compare-and-swap, the rest only here, before that; the user address is read through the
    // checked helper.
    unsafe {
        (*pending).stack_id = ctx
            .get_stackid(&ERROR_STACKS, BPF_F_USER_STACK as u64)
            .map(|id| id as i32)
            .unwrap_or(-1);
        (*pending).func = running_function(tid);
        let buf = &mut (*pending).addr;
        if len > 0 && bpf_probe_read_user_buf(addr as *const u8, &mut buf[..len]).is_ok() {
            (*pending).addr_len = len as u32;
        }
        if compare_exchange(&raw mut (*pending).state, RUNNING, RETURNED) {
            // The failure, if any, is to come: `left_syn_sent` sends it.
            return Ok(());
        }
        // It failed already (on loopback, before connect(2) returned).
        send(pending, load(&raw const (*pending).state) as u32);
    }
    let _ = CONNECT_SOCKS.remove(sk);
    Ok(())
}

/// Counts the failed connect with its errno, and sends it (within the failure's rate limit).
#[inline(always)]
fn send(pending: *const Pending, errno: u32) {
    let key = FailureKey {
        syscall: sys::CONNECT as u32,
        errno,
    };
    if !count_failure(key) {
        return;
    }
    let Some(mut entry) = EVENTS.reserve::<SyscallErrorEvent>(0) else {
        count(Counter::RingBufferFull);
        return;
    };
    let event = entry.as_mut_ptr();
    // SAFETY: `event` points at a reserved record, written in full before it is submitted (`arg`
    // up to `arg_len`); `pending` is a valid map value.
    unsafe {
        let len = (*pending).addr_len;
        (*event).header = header_of(EventKind::SyscallError, (*pending).tid, (*pending).tgid);
        (*event).syscall = sys::CONNECT as u32;
        (*event).errno = errno;
        (*event).stack_id = (*pending).stack_id;
        (*event).python = 0;
        (*event).func = (*pending).func;
        (*event).arg_kind = if len > 0 {
            ArgKind::SockAddr as u8
        } else {
            ArgKind::None as u8
        };
        (*event).deferred = 1;
        (*event)._pad = [0; 2];
        (*event).arg_len = len;
        let arg = &mut (*event).arg;
        arg[..CONNECT_ADDR_CAPTURE].copy_from_slice(&(*pending).addr);
    }
    entry.submit(0);
}
