//! `profiler run`: start a command held at a gate, so probes can be attached before it executes
//! its first instruction, then let it go.
//!
//! `std::process::Command` cannot do this: its `spawn` waits until the child has called exec.
//! Here the child forks, blocks reading a pipe, and only then execs; a second (close-on-exec)
//! pipe carries an exec failure back. A child whose profiler dies at any point before the gate
//! opens exits without running the command (see [`gated_child`]).

use std::{
    ffi::CString,
    io,
    os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd},
    path::{Path, PathBuf},
};

use crate::error::ProfilerError;

/// The exit code of a child that never ran the command: the profiler let it go no further.
const GAVE_UP: i32 = 126;

/// A child process waiting at the gate.
#[derive(Debug)]
pub(crate) struct Gated {
    pub pid: i32,
    pub program: PathBuf,
    gate: Option<OwnedFd>,
    exec_error: OwnedFd,
}

/// Finds `command` the way execvp would (a name with a slash is a path; otherwise PATH).
pub(crate) fn resolve_command(command: &str) -> Result<PathBuf, ProfilerError> {
    let not_found = || ProfilerError::NoSuchCommand(command.to_string());
    let path = if command.contains('/') {
        PathBuf::from(command)
    } else {
        which::which(command).map_err(|_| not_found())?
    };
    if !path.is_file() {
        return Err(not_found());
    }
    if !is_executable(&path) {
        return Err(ProfilerError::Exec {
            cmd: command.to_string(),
            reason: io::Error::from_raw_os_error(libc::EACCES),
        });
    }
    Ok(std::fs::canonicalize(&path).unwrap_or(path))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` is a valid array of two ints for the kernel to fill.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both descriptors are open and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Forks a child that waits at the gate, then execs `program` with `args` (`args[0]` is argv[0]).
pub(crate) fn spawn_gated(program: &Path, args: &[String]) -> Result<Gated, ProfilerError> {
    let exec_err = |reason| ProfilerError::Exec {
        cmd: program.display().to_string(),
        reason,
    };
    let c_program = CString::new(program.as_os_str().as_encoded_bytes())
        .map_err(|_| exec_err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let c_args: Vec<CString> = args
        .iter()
        .map(|a| CString::new(a.as_bytes()))
        .collect::<Result<_, _>>()
        .map_err(|_| exec_err(io::Error::from_raw_os_error(libc::EINVAL)))?;
    let mut argv: Vec<*const libc::c_char> = c_args.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());

    let (gate_read, gate_write) = pipe().map_err(exec_err)?;
    let (err_read, err_write) = pipe().map_err(exec_err)?;
    // SAFETY: getpid has no preconditions.
    let parent = unsafe { libc::getpid() };
    // SAFETY: fork has no preconditions; the child below only makes async-signal-safe calls
    // (close, prctl, getppid, read, execv, write, _exit) on memory prepared before the fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(exec_err(io::Error::last_os_error()));
    }
    if pid == 0 {
        // SAFETY: in the child: plain syscalls on descriptors and buffers that were set up
        // before the fork and stay valid; the child never returns from this block.
        unsafe {
            gated_child(
                &Fds {
                    gate_read: gate_read.as_raw_fd(),
                    gate_write: gate_write.as_raw_fd(),
                    err_read: err_read.as_raw_fd(),
                    err_write: err_write.as_raw_fd(),
                },
                parent,
                &c_program,
                &argv,
            )
        }
    }
    drop(gate_read);
    drop(err_write);
    Ok(Gated {
        pid,
        program: program.to_path_buf(),
        gate: Some(gate_write),
        exec_error: err_read,
    })
}

/// The pipe ends as the forked child sees them.
struct Fds {
    gate_read: RawFd,
    gate_write: RawFd,
    err_read: RawFd,
    err_write: RawFd,
}

/// The forked child: waits at the gate, then execs, or exits without running the command when
/// the profiler is gone.
///
/// The child holds only the gate's read end: once the profiler dies (even by SIGKILL) nothing
/// holds the write end, the read sees end of file, and the child exits. `PR_SET_PDEATHSIG` kills
/// it too, should the write end have leaked into another process; it is cleared before the exec,
/// since it would survive the exec and kill the command when the profiler exits normally (after
/// `--duration`, the command runs on). The death signal follows the thread that forked: this is
/// called on the session's thread, which lives until the gate opens.
///
/// # Safety
///
/// Call only in the child of a fork, with descriptors and pointers prepared before the fork.
unsafe fn gated_child(
    fds: &Fds,
    parent: libc::pid_t,
    program: &CString,
    argv: &[*const libc::c_char],
) -> ! {
    // SAFETY: async-signal-safe syscalls on descriptors this process owns and on buffers that
    // stay valid; every path ends in execv or _exit.
    unsafe {
        libc::close(fds.gate_write);
        libc::close(fds.err_read);
        // The profiler may have died before the death signal was set: then the child was
        // reparented already.
        if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 || libc::getppid() != parent {
            libc::_exit(GAVE_UP);
        }
        let mut byte = 0u8;
        let n = libc::read(fds.gate_read, (&raw mut byte).cast(), 1);
        if n != 1 {
            // The profiler gave up, or died, before letting the command run.
            libc::_exit(GAVE_UP);
        }
        if libc::prctl(libc::PR_SET_PDEATHSIG, 0) != 0 {
            libc::_exit(GAVE_UP);
        }
        libc::execv(program.as_ptr(), argv.as_ptr());
        let errno = *libc::__errno_location();
        let bytes = errno.to_ne_bytes();
        libc::write(fds.err_write, bytes.as_ptr().cast(), bytes.len());
        libc::_exit(127);
    }
}

impl Gated {
    /// Lets the child exec; returns once it has (or has failed to).
    pub(crate) fn release(&mut self) -> Result<(), ProfilerError> {
        let Some(gate) = self.gate.take() else {
            return Ok(());
        };
        let byte = [1u8];
        // SAFETY: writes one byte from a valid buffer to an open descriptor.
        unsafe { libc::write(gate.as_raw_fd(), byte.as_ptr().cast(), 1) };
        drop(gate);
        let mut errno = [0u8; 4];
        // SAFETY: reads into a valid 4-byte buffer; EOF (exec succeeded) returns 0.
        let n = unsafe { libc::read(self.exec_error.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        if n == 4 {
            self.reap();
            return Err(ProfilerError::Exec {
                cmd: self.program.display().to_string(),
                reason: io::Error::from_raw_os_error(i32::from_ne_bytes(errno)),
            });
        }
        Ok(())
    }

    /// Waits for the child to exit; its exit code (None when killed by a signal).
    pub(crate) fn wait(&self) -> Option<i32> {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid int.
        let r = unsafe { libc::waitpid(self.pid, &mut status, 0) };
        (r == self.pid && libc::WIFEXITED(status)).then(|| libc::WEXITSTATUS(status))
    }

    /// Kills a child that never passed the gate.
    pub(crate) fn abort(mut self) {
        self.gate.take();
        // SAFETY: signals and reaps our own child.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        self.reap();
    }

    fn reap(&self) {
        let mut status = 0;
        // SAFETY: waits for our own child; `status` is a valid int.
        unsafe { libc::waitpid(self.pid, &mut status, 0) };
    }
}

/// Reaps a child without blocking: its `wait(2)` status and the CPU time (user + system) it
/// used, seconds, once it has exited.
pub(crate) fn try_wait(pid: i32) -> Option<(i32, f64)> {
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: WNOHANG wait on a pid; `status` and `usage` are valid for the kernel to fill.
    let r = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut usage) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
    (r == pid).then(|| (status, secs(usage.ru_utime) + secs(usage.ru_stime)))
}
