//! `profiler run`: the command's main thread held at its exit, its address space still whole,
//! so that the families read what they still need of the target's memory (a Python program's
//! code objects, named while alive) before it is gone.
//!
//! The main thread is seized (`PTRACE_SEIZE`, which stops nothing) with `PTRACE_O_TRACEEXIT`
//! and `PTRACE_O_TRACEEXEC`: it then stops once at its exit, before its memory is released (the
//! process's other threads exit first, untraced, when it calls `exit_group`), and at each exec
//! it makes (a wrapper script running the real program), before the new program's first
//! instruction, so that the families prepare for it (the python family probes an interpreter
//! there). A signal for it stops it on the
//! way (a signal-delivery stop), and is passed on at once; a stop signal's group stop is kept
//! as a stop (`PTRACE_LISTEN`), as it would be untraced. Only the profiler's own child is
//! seized, and only while the profiler runs: at the end of profiling it is detached (and were
//! the profiler to die, the kernel detaches it). Where the seize is refused (Yama's
//! `ptrace_scope` 3), the command runs untraced and nothing is held.

/// What the held child is doing, from its last `wait4`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum State {
    Running,
    /// Stopped right after an exec, before the new program runs: [`ExitHold::resume`] lets it
    /// go on.
    Executed,
    /// Stopped at its exit, memory intact: [`ExitHold::release`] lets it finish.
    Exiting,
    /// Exited and reaped: its wait status and CPU time (user + system), seconds.
    Exited(i32, f64),
}

/// The run command's main thread, traced to hold it at its exit.
#[derive(Debug)]
pub(crate) struct ExitHold {
    pid: i32,
    traced: bool,
    /// In the exit stop now.
    exiting: bool,
}

/// `PTRACE_EVENT_EXIT` in a wait status (`status >> 8`).
const EXIT_STOP: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_EXIT << 8);
/// `PTRACE_EVENT_EXEC` in a wait status.
const EXEC_STOP: i32 = libc::SIGTRAP | (libc::PTRACE_EVENT_EXEC << 8);
/// `PTRACE_EVENT_STOP` (a group stop, or the stop `PTRACE_INTERRUPT` makes).
const EVENT_STOP: i32 = libc::PTRACE_EVENT_STOP << 8;

impl ExitHold {
    /// Seizes child `pid` (a process this one started); untraced where that is refused.
    pub(crate) fn seize(pid: i32) -> Self {
        // SAFETY: ptrace on our own child; no memory is passed.
        let traced = unsafe {
            libc::ptrace(
                libc::PTRACE_SEIZE,
                pid,
                std::ptr::null_mut::<libc::c_void>(),
                (libc::PTRACE_O_TRACEEXIT | libc::PTRACE_O_TRACEEXEC) as usize as *mut libc::c_void,
            )
        } == 0;
        Self {
            pid,
            traced,
            exiting: false,
        }
    }

    /// Reaps what happened to the child without blocking: signals are passed on, group stops
    /// kept; an exit stop or an exit is reported.
    pub(crate) fn poll(&mut self) -> State {
        loop {
            let mut status = 0;
            // SAFETY: all-zero is a valid rusage.
            let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: a non-blocking wait on our own child; the buffers are valid.
            let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
            if r != self.pid {
                return if self.exiting {
                    State::Exiting
                } else {
                    State::Running
                };
            }
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                self.traced = false;
                self.exiting = false;
                let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
                return State::Exited(status, secs(usage.ru_utime) + secs(usage.ru_stime));
            }
            if !libc::WIFSTOPPED(status) {
                continue;
            }
            let event = status >> 8;
            if event == EXIT_STOP {
                self.exiting = true;
                return State::Exiting;
            }
            if event == EXEC_STOP {
                return State::Executed;
            }
            let signal = libc::WSTOPSIG(status);
            if event & !0xff == EVENT_STOP {
                // A group stop stays a stop; the stop of an interrupt goes on.
                let request = if matches!(
                    signal,
                    libc::SIGSTOP | libc::SIGTSTP | libc::SIGTTIN | libc::SIGTTOU
                ) {
                    libc::PTRACE_LISTEN
                } else {
                    libc::PTRACE_CONT
                };
                self.request(request, 0);
            } else {
                // A signal on its way: delivered as it would have been.
                self.request(libc::PTRACE_CONT, signal);
            }
        }
    }

    /// Lets a child stopped after an exec run its new program.
    pub(crate) fn resume(&mut self) {
        self.request(libc::PTRACE_CONT, 0);
    }

    /// Lets a child stopped at its exit finish exiting.
    pub(crate) fn release(&mut self) {
        if self.exiting {
            self.request(libc::PTRACE_DETACH, 0);
            self.exiting = false;
            self.traced = false;
        }
    }

    /// Detaches a child that goes on running (profiling ended first): it is stopped briefly for
    /// that, and any signal it was stopped with is delivered.
    pub(crate) fn detach(&mut self) {
        if !self.traced {
            return;
        }
        if self.exiting {
            self.release();
            return;
        }
        // SAFETY: ptrace on our own traced child; no memory is passed.
        unsafe {
            libc::ptrace(
                libc::PTRACE_INTERRUPT,
                self.pid,
                std::ptr::null_mut::<libc::c_void>(),
                std::ptr::null_mut::<libc::c_void>(),
            )
        };
        for _ in 0..2000 {
            let mut status = 0;
            // SAFETY: a non-blocking wait on our own child; `status` is valid.
            let r = unsafe { libc::waitpid(self.pid, &mut status, libc::WNOHANG) };
            if r == self.pid && libc::WIFSTOPPED(status) {
                let event = status >> 8;
                let signal = libc::WSTOPSIG(status);
                // A signal-delivery stop detaches with its signal; any other stop without one.
                let pass = if event & !0xff == EVENT_STOP || event == EXIT_STOP {
                    0
                } else {
                    signal
                };
                self.request(libc::PTRACE_DETACH, pass);
                self.traced = false;
                return;
            }
            if r == self.pid || r < 0 {
                // Exited (its status is lost to the caller: it reaps no more).
                self.traced = false;
                return;
            }
            std::thread::sleep(std::time::Duration::from_micros(500));
        }
    }

    fn request(&self, request: libc::c_uint, signal: i32) {
        // SAFETY: ptrace on our own traced child, stopped; `data` is a signal number.
        unsafe {
            libc::ptrace(
                request,
                self.pid,
                std::ptr::null_mut::<libc::c_void>(),
                signal as usize as *mut libc::c_void,
            )
        };
    }
}

impl Drop for ExitHold {
    fn drop(&mut self) {
        self.detach();
    }
}
