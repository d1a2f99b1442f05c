//! The profiler and the victims as child processes, each read line by line on a thread so that
//! every wait has a deadline.

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader, Read, Write},
    process::{Child, ChildStdin, Command, ExitStatus, Stdio},
    sync::mpsc::{Receiver, RecvTimeoutError, channel},
    thread,
    time::{Duration, Instant},
};

use crate::{TIMEOUT, profiler_bin};

/// The line the profiler prints on stderr once its probes are attached.
pub const READY_PREFIX: &str = "profiler: profiling pid ";

/// Lines of one pipe, as a thread reads them.
struct Lines {
    rx: Receiver<String>,
    seen: Vec<String>,
    eof: bool,
}

impl Lines {
    fn spawn(pipe: impl Read + Send + 'static) -> Self {
        let (tx, rx) = channel();
        thread::spawn(move || {
            let mut reader = BufReader::new(pipe);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match reader.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        let line = String::from_utf8_lossy(&buf);
                        if tx.send(line.trim_end_matches('\n').to_string()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Self {
            rx,
            seen: Vec::new(),
            eof: false,
        }
    }

    /// Reads until a line satisfies `want` (returned), or end of file or `deadline` (None).
    fn wait_for(&mut self, want: impl Fn(&str) -> bool, deadline: Instant) -> Option<String> {
        while !self.eof {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if want(&line) {
                        return Some(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => return None,
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
        None
    }

    /// Everything until end of file, or until `deadline` when something else holds the pipe
    /// open (a child of the child).
    fn drain(&mut self, deadline: Instant) {
        let _ = self.wait_for(|_| false, deadline);
    }

    fn text(&self) -> String {
        self.seen.iter().map(|l| format!("{l}\n")).collect()
    }
}

/// Waits for `child` until `deadline`; kills it and returns None when it is still running then.
fn wait_deadline(child: &mut Child, deadline: Instant) -> Option<ExitStatus> {
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Some(status),
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => panic!("failed to wait for process {}: {e}", child.id()),
        }
    }
}

fn signal(pid: u32, signal: i32) {
    let pid = i32::try_from(pid).expect("pid fits i32");
    // SAFETY: kill has no memory preconditions; the pid is our own unreaped child.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "failed to send signal {signal} to {pid}: {}",
        std::io::Error::last_os_error()
    );
}

/// How a profiler run ended.
#[derive(Debug)]
pub struct Outcome {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Outcome {
    /// Panics unless the profiler exited 0 without a panic.
    pub fn expect_success(&self) -> &Self {
        assert!(
            self.status.success() && !self.stderr.contains("panicked"),
            "the profiler failed ({})\nstderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        self
    }

    /// Panics unless the profiler exited with `code`, without a panic.
    pub fn expect_code(&self, code: i32) -> &Self {
        assert!(
            self.status.code() == Some(code) && !self.stderr.contains("panicked"),
            "the profiler should exit {code}, not {}\nstderr:\n{}\nstdout:\n{}",
            self.status,
            self.stderr,
            self.stdout
        );
        self
    }

    /// The number on the line `LABEL N` of stdout, where a victim that runs under `profiler
    /// run` (and shares its stdout) says how many times it did something.
    pub fn count_line(&self, label: &str) -> u64 {
        let prefix = format!("{label} ");
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|n| n.trim().parse().ok())
            .unwrap_or_else(|| panic!("no `{label} N` line in stdout:\n{}", self.stdout))
    }

    /// Panics unless the profiler failed the way a user error should: a non-zero exit, no
    /// panic, and one line on stderr starting with `error: `, the last one. Returns that line.
    pub fn expect_error(&self) -> &str {
        let context = format!("stderr:\n{}\nstdout:\n{}", self.stderr, self.stdout);
        assert!(
            !self.stderr.contains("panicked"),
            "the profiler panicked\n{context}"
        );
        assert!(
            !self.status.success() && self.status.code().is_some(),
            "the profiler should exit with a non-zero code, not {}\n{context}",
            self.status
        );
        let errors = self
            .stderr
            .lines()
            .filter(|l| l.starts_with("error"))
            .count();
        let last = self.stderr.lines().last().unwrap_or_default();
        assert!(
            errors == 1 && last.starts_with("error: "),
            "stderr should end with the one `error: ` line\n{context}"
        );
        last
    }
}

/// A running profiler.
pub struct Profiler {
    child: Child,
    stdout: Lines,
    stderr: Lines,
    done: bool,
}

impl Profiler {
    /// The profiler command with `args`, for tests that change its environment or user.
    pub fn command<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Command {
        let mut cmd = Command::new(profiler_bin());
        cmd.args(args);
        cmd
    }

    /// Starts the profiler with `args`.
    pub fn start<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Self {
        Self::spawn(Self::command(args))
    }

    /// Starts `cmd` (from [`Profiler::command`]) with its output read by the test.
    pub fn spawn(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {cmd:?}: {e}"));
        let stdout = Lines::spawn(child.stdout.take().expect("piped"));
        let stderr = Lines::spawn(child.stderr.take().expect("piped"));
        Self {
            child,
            stdout,
            stderr,
            done: false,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the readiness line (probes attached); returns the target pid it names.
    pub fn wait_ready(&mut self) -> u32 {
        let deadline = Instant::now() + TIMEOUT;
        let Some(line) = self
            .stderr
            .wait_for(|l| l.starts_with(READY_PREFIX), deadline)
        else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            self.done = true;
            self.stdout.drain(Instant::now() + Duration::from_secs(1));
            panic!(
                "the profiler never said it was ready\nstderr:\n{}\nstdout:\n{}",
                self.stderr.text(),
                self.stdout.text()
            );
        };
        line[READY_PREFIX.len()..]
            .split(' ')
            .next()
            .and_then(|pid| pid.parse().ok())
            .unwrap_or_else(|| panic!("no pid in the readiness line {line:?}"))
    }

    /// Waits for the profiler to print a line on stderr that contains `needle`.
    pub fn expect_stderr(&mut self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        if self
            .stderr
            .wait_for(|l| l.contains(needle), deadline)
            .is_none()
        {
            panic!(
                "the profiler never printed {needle:?}; stderr:\n{}",
                self.stderr.text()
            );
        }
    }

    /// Ctrl-C: SIGINT to the profiler.
    pub fn interrupt(&self) {
        signal(self.pid(), libc::SIGINT);
    }

    /// SIGKILL to the profiler, as a crash or the OOM killer would end it; returns once it is
    /// reaped.
    pub fn kill(mut self) {
        signal(self.pid(), libc::SIGKILL);
        let _ = self.child.wait();
        self.done = true;
    }

    /// Waits for the profiler to end (killing it and failing the test after [`TIMEOUT`]).
    pub fn finish(self) -> Outcome {
        self.finish_within(TIMEOUT)
    }

    /// Waits for the profiler to end, killing it and failing the test after `limit`.
    pub fn finish_within(mut self, limit: Duration) -> Outcome {
        let deadline = Instant::now() + limit;
        let status = wait_deadline(&mut self.child, deadline);
        self.done = true;
        // In `run` mode the target shares the pipes and may outlive the profiler briefly.
        let drained = Instant::now() + Duration::from_secs(5);
        self.stdout.drain(drained);
        self.stderr.drain(drained);
        let (stdout, stderr) = (self.stdout.text(), self.stderr.text());
        let Some(status) = status else {
            panic!(
                "the profiler was still running after {} s: killed\nstderr:\n{stderr}\n\
                 stdout:\n{stdout}",
                limit.as_secs()
            );
        };
        Outcome {
            status,
            stdout,
            stderr,
        }
    }
}

impl Drop for Profiler {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Runs the profiler with `args` to its end.
pub fn profile<S: AsRef<OsStr>>(args: impl IntoIterator<Item = S>) -> Outcome {
    Profiler::start(args).finish()
}

/// A victim started by the test (for `attach`), with its stdin and stdout piped: the
/// handshakes of the victims' `--wait` option go through them.
pub struct Victim {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Lines,
    done: bool,
}

impl Victim {
    pub fn start<S: AsRef<OsStr>>(program: &str, args: impl IntoIterator<Item = S>) -> Self {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("failed to start {program}: {e}"));
        let stdin = child.stdin.take();
        let stdout = Lines::spawn(child.stdout.take().expect("piped"));
        Self {
            child,
            stdin,
            stdout,
            done: false,
        }
    }

    /// Starts `program --wait ARGS...` and waits until it says "ready".
    pub fn ready<S: AsRef<OsStr>>(program: &str, args: impl IntoIterator<Item = S>) -> Self {
        let mut args: Vec<std::ffi::OsString> =
            args.into_iter().map(|a| a.as_ref().to_owned()).collect();
        args.insert(0, "--wait".into());
        let mut victim = Self::start(program, args);
        victim.expect_line("ready");
        victim
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Waits for the victim to print `line`.
    pub fn expect_line(&mut self, line: &str) {
        let deadline = Instant::now() + TIMEOUT;
        if self.stdout.wait_for(|l| l == line, deadline).is_none() {
            panic!(
                "victim {} never printed {line:?}; it printed:\n{}",
                self.pid(),
                self.stdout.text()
            );
        }
    }

    /// Whether the victim printed `line` among the lines the test has read so far (those up to
    /// the last one it waited for).
    pub fn has_printed(&self, line: &str) -> bool {
        self.stdout.seen.iter().any(|l| l == line)
    }

    /// The rest of the line `LABEL REST` the victim printed, or prints next: the thread ids and
    /// counts the threads family's victims announce.
    pub fn value_of(&mut self, label: &str) -> String {
        let prefix = format!("{label} ");
        let seen = self
            .stdout
            .seen
            .iter()
            .find_map(|l| l.strip_prefix(&prefix));
        if let Some(rest) = seen {
            return rest.to_string();
        }
        let deadline = Instant::now() + TIMEOUT;
        match self.stdout.wait_for(|l| l.starts_with(&prefix), deadline) {
            Some(line) => line[prefix.len()..].to_string(),
            None => panic!(
                "victim {} never printed `{label} ...`; it printed:\n{}",
                self.pid(),
                self.stdout.text()
            ),
        }
    }

    /// Sends the byte the victim waits for.
    pub fn proceed(&mut self) {
        let stdin = self.stdin.as_mut().expect("the victim's stdin is open");
        stdin
            .write_all(b"\n")
            .and_then(|()| stdin.flush())
            .unwrap_or_else(|e| panic!("failed to write to victim {}: {e}", self.child.id()));
    }

    /// Lets the victim go on and waits for its exit.
    pub fn release(&mut self) -> ExitStatus {
        drop(self.stdin.take());
        let status = wait_deadline(&mut self.child, Instant::now() + TIMEOUT);
        self.done = true;
        status.unwrap_or_else(|| panic!("victim {} did not exit: killed", self.child.id()))
    }
}

impl Drop for Victim {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
