//! Ctrl-C and SIGTERM, from the first instant of a profiling command to its last.
//!
//! The handlers are installed before anything else is done, so no signal is lost to the default
//! action (which would kill the profiler with its probes half attached and no report):
//! - during start-up, a signal ends the start-up at the next step (the target, once known, still
//!   gets a report, whose end reason says it was interrupted);
//! - while profiling, it ends the window (the collection loop also listens through tokio);
//! - once the report is on disk and the probes are being taken down, it exits at once, leaving
//!   the rest of the teardown to the kernel, which closes the profiler's links as it exits.

use std::{
    io,
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
};

/// Signals received so far.
static RECEIVED: AtomicU32 = AtomicU32::new(0);
/// Set once the report is written: a signal then exits at once.
static TEARING_DOWN: AtomicBool = AtomicBool::new(false);

/// Installs the handlers for SIGINT and SIGTERM; call it first.
pub(crate) fn install() -> io::Result<()> {
    for signal in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the action only reads and writes atomics and calls `_exit`, all of which are
        // async-signal-safe; it allocates nothing and takes no lock.
        unsafe { signal_hook_registry::register(signal, move || received(signal)) }?;
    }
    Ok(())
}

/// With the live view up, the terminal's own signals end profiling too, so the report is written
/// and the terminal restored: SIGHUP (the terminal closed) and SIGQUIT. One the profiler was
/// started with ignored (`nohup`) stays ignored.
pub(crate) fn install_terminal() -> io::Result<()> {
    for signal in [libc::SIGHUP, libc::SIGQUIT] {
        // SAFETY: a null new action only reads the current one into `old`, a valid sigaction.
        let ignored = unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            libc::sigaction(signal, std::ptr::null(), &mut old) == 0
                && old.sa_sigaction == libc::SIG_IGN
        };
        if !ignored {
            // SAFETY: as in `install`: atomics and `_exit` only.
            unsafe { signal_hook_registry::register(signal, move || received(signal)) }?;
        }
    }
    Ok(())
}

fn received(signal: i32) {
    if TEARING_DOWN.load(Ordering::SeqCst) {
        // SAFETY: `_exit` is async-signal-safe; it runs no destructor and no atexit handler, and
        // the kernel closes the links.
        unsafe { libc::_exit(128 + signal) };
    }
    RECEIVED.fetch_add(1, Ordering::SeqCst);
}

/// Whether Ctrl-C or SIGTERM has arrived.
pub(crate) fn requested() -> bool {
    RECEIVED.load(Ordering::SeqCst) > 0
}

/// From now on a signal exits the profiler at once: the report is on disk.
pub(crate) fn tearing_down() {
    TEARING_DOWN.store(true, Ordering::SeqCst);
}
