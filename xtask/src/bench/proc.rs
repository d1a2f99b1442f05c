//! A child process whose output lines are collected by reader threads, reaped with `wait4` so
//! that its CPU time and peak RSS are known, and killed if it is dropped unreaped.

use std::{
    io::{BufRead as _, BufReader, Read},
    process::{Child, ChildStdin, Command, Stdio},
    sync::mpsc::{self, Receiver, RecvTimeoutError},
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Stdout,
    Stderr,
}

enum Event {
    Line(Stream, String),
    Eof,
}

/// What `wait4` says about a process that ended.
#[derive(Debug, Clone, Copy)]
pub struct Ended {
    /// The raw wait status.
    pub status: i32,
    /// User plus system CPU time, seconds (its waited-for children included).
    pub cpu: f64,
    /// Peak resident set, bytes.
    pub max_rss: u64,
}

impl Ended {
    pub fn success(&self) -> bool {
        libc::WIFEXITED(self.status) && libc::WEXITSTATUS(self.status) == 0
    }

    pub fn describe(&self) -> String {
        if libc::WIFEXITED(self.status) {
            format!("exit code {}", libc::WEXITSTATUS(self.status))
        } else if libc::WIFSIGNALED(self.status) {
            format!("killed by signal {}", libc::WTERMSIG(self.status))
        } else {
            format!("wait status {:#x}", self.status)
        }
    }
}

pub struct Proc {
    pub name: String,
    pid: i32,
    stdin: Option<ChildStdin>,
    events: Receiver<Event>,
    open_streams: usize,
    /// Every line read so far, in order.
    pub lines: Vec<(Stream, String)>,
    ended: Option<Ended>,
    /// Kept so that std does not close anything early; reaping is done with `wait4`.
    _child: Child,
}

impl Proc {
    /// Starts `cmd` with stdout and stderr captured, and stdin piped when `with_stdin`.
    pub fn spawn(name: &str, cmd: Command, with_stdin: bool) -> anyhow::Result<Proc> {
        Self::start(name, cmd, with_stdin, None)
    }

    /// [`Proc::spawn`] with no stdin, and stdout written to `stdout` instead of collected: for
    /// output too large to hold as lines (the harness's memory would then grow, and every
    /// process it starts afterwards inherits its resident size as a floor of its own peak).
    pub fn spawn_to(name: &str, cmd: Command, stdout: std::fs::File) -> anyhow::Result<Proc> {
        Self::start(name, cmd, false, Some(stdout))
    }

    fn start(
        name: &str,
        mut cmd: Command,
        with_stdin: bool,
        stdout: Option<std::fs::File>,
    ) -> anyhow::Result<Proc> {
        cmd.stdout(stdout.map_or_else(Stdio::piped, Stdio::from))
            .stderr(Stdio::piped());
        cmd.stdin(if with_stdin {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        let shown = format!("{cmd:?}");
        let mut child = cmd
            .spawn()
            .with_context(|| format!("failed to start {shown}"))?;
        let (tx, events) = mpsc::channel();
        let stderr = child.stderr.take().context("no stderr pipe")?;
        let mut readers = vec![(Stream::Stderr, Box::new(stderr) as Box<dyn Read + Send>)];
        if let Some(stdout) = child.stdout.take() {
            readers.push((Stream::Stdout, Box::new(stdout)));
        }
        let open_streams = readers.len();
        for (stream, reader) in readers {
            let tx = tx.clone();
            thread::spawn(move || {
                let mut reader = BufReader::new(reader);
                let mut buf = Vec::new();
                loop {
                    buf.clear();
                    match reader.read_until(b'\n', &mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {
                            let line = String::from_utf8_lossy(&buf).trim_end().to_string();
                            if tx.send(Event::Line(stream, line)).is_err() {
                                return;
                            }
                        }
                    }
                }
                let _ = tx.send(Event::Eof);
            });
        }
        Ok(Proc {
            name: name.to_string(),
            pid: child.id() as i32,
            stdin: child.stdin.take(),
            events,
            open_streams,
            lines: Vec::new(),
            ended: None,
            _child: child,
        })
    }

    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Writes `bytes` to the process's stdin.
    pub fn send(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        use std::io::Write as _;
        let stdin = self.stdin.as_mut().context("stdin not piped")?;
        stdin.write_all(bytes)?;
        stdin.flush()?;
        Ok(())
    }

    /// Waits for a line that `want` accepts and returns it. Fails at `deadline`, or when the
    /// process closes both its outputs first (it died or is about to).
    pub fn wait_line(
        &mut self,
        what: &str,
        deadline: Instant,
        want: impl Fn(Stream, &str) -> bool,
    ) -> anyhow::Result<String> {
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Line(stream, line)) => {
                    let hit = want(stream, &line);
                    self.lines.push((stream, line.clone()));
                    if hit {
                        return Ok(line);
                    }
                }
                Ok(Event::Eof) => {
                    self.open_streams -= 1;
                    if self.open_streams == 0 {
                        bail!(
                            "{} closed its output before {what}:\n{}",
                            self.name,
                            self.output()
                        );
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    bail!(
                        "{} did not show {what} in time; its output:\n{}",
                        self.name,
                        self.output()
                    )
                }
                Err(RecvTimeoutError::Disconnected) => {
                    bail!("{} output readers gone before {what}", self.name)
                }
            }
        }
    }

    /// Collects what the reader threads have read, waiting up to `grace` for both outputs to
    /// close.
    pub fn drain(&mut self, grace: Duration) {
        let deadline = Instant::now() + grace;
        while self.open_streams > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::Line(stream, line)) => self.lines.push((stream, line)),
                Ok(Event::Eof) => self.open_streams -= 1,
                Err(_) => break,
            }
        }
    }

    /// Everything it printed, for error messages.
    pub fn output(&self) -> String {
        let mut s = String::new();
        for (stream, line) in &self.lines {
            let tag = match stream {
                Stream::Stdout => "out",
                Stream::Stderr => "err",
            };
            s.push_str(&format!("  [{tag}] {line}\n"));
        }
        s
    }

    /// Reaps the process if it has ended, without blocking.
    fn try_reap(&mut self) -> anyhow::Result<Option<Ended>> {
        if self.ended.is_some() {
            return Ok(self.ended);
        }
        let mut status = 0;
        // SAFETY: rusage is plain data; wait4 fills it in.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: valid pointers to locals; the pid is our own child.
        let r = unsafe { libc::wait4(self.pid, &mut status, libc::WNOHANG, &mut usage) };
        if r < 0 {
            bail!(
                "wait4 on {} failed: {}",
                self.name,
                std::io::Error::last_os_error()
            );
        }
        if r == 0 {
            return Ok(None);
        }
        let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 * 1e-6;
        self.ended = Some(Ended {
            status,
            cpu: secs(usage.ru_utime) + secs(usage.ru_stime),
            max_rss: (usage.ru_maxrss as u64) * 1024,
        });
        Ok(self.ended)
    }

    /// Waits until the process ends or `deadline` passes (then `None`).
    pub fn wait_until(&mut self, deadline: Instant) -> anyhow::Result<Option<Ended>> {
        loop {
            if let Some(ended) = self.try_reap()? {
                return Ok(Some(ended));
            }
            if Instant::now() >= deadline {
                return Ok(None);
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    /// Waits until at least `min` of the process's file descriptors point at something `is`
    /// accepts (the target of the descriptor's link, e.g. `anon_inode:[perf_event]`): how a
    /// tracer that prints nothing until it stops shows that it has attached. Fails if the
    /// process ends first, or at `deadline`.
    pub fn wait_for_fds(
        &mut self,
        what: &str,
        min: usize,
        deadline: Instant,
        is: impl Fn(&str) -> bool,
    ) -> anyhow::Result<()> {
        loop {
            let found = std::fs::read_dir(format!("/proc/{}/fd", self.pid))
                .into_iter()
                .flatten()
                .filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
                .filter(|t| is(&t.to_string_lossy()))
                .count();
            if found >= min {
                return Ok(());
            }
            if let Some(ended) = self.wait_until(Instant::now())? {
                self.drain(Duration::from_secs(1));
                bail!(
                    "{} ended ({}) before {what}:\n{}",
                    self.name,
                    ended.describe(),
                    self.output()
                );
            }
            if Instant::now() >= deadline {
                bail!("{} never showed {what}:\n{}", self.name, self.output());
            }
            thread::sleep(Duration::from_millis(5));
        }
    }

    /// Sends `signal` unless the process has been reaped already.
    pub fn signal(&mut self, signal: i32) {
        if self.ended.is_none() {
            // SAFETY: kill has no memory preconditions; the pid is our unreaped child.
            unsafe { libc::kill(self.pid, signal) };
        }
    }

    /// Waits for a workload that has printed its result to exit (asking it with SIGTERM after
    /// 10 s, killing it 5 s later); fails unless it exited 0.
    pub fn exit_cleanly(&mut self) -> anyhow::Result<Ended> {
        let ended = self.finish(
            Duration::from_secs(10),
            libc::SIGTERM,
            Duration::from_secs(5),
        )?;
        if !ended.success() {
            bail!("{} failed ({})", self.name, ended.describe());
        }
        Ok(ended)
    }

    /// [`Proc::finish`], then collects the rest of its output (waiting up to `grace` for it);
    /// fails, with that output, unless it exited 0.
    pub fn finish_ok(
        &mut self,
        wait: Duration,
        signal: i32,
        after: Duration,
        grace: Duration,
    ) -> anyhow::Result<Ended> {
        let ended = self.finish(wait, signal, after)?;
        self.drain(grace);
        if !ended.success() {
            bail!(
                "{} failed ({}); its output:\n{}",
                self.name,
                ended.describe(),
                self.output()
            );
        }
        Ok(ended)
    }

    /// Waits up to `wait` for the process to end; then asks it to stop with `signal` and waits
    /// `after` more; then kills it. Errors when it had to be killed.
    pub fn finish(
        &mut self,
        wait: Duration,
        signal: i32,
        after: Duration,
    ) -> anyhow::Result<Ended> {
        if let Some(ended) = self.wait_until(Instant::now() + wait)? {
            return Ok(ended);
        }
        self.signal(signal);
        if let Some(ended) = self.wait_until(Instant::now() + after)? {
            return Ok(ended);
        }
        self.signal(libc::SIGKILL);
        self.wait_until(Instant::now() + Duration::from_secs(5))?;
        self.drain(Duration::from_millis(200));
        bail!(
            "{} did not stop on signal {signal}; killed it. Its output:\n{}",
            self.name,
            self.output()
        )
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if self.ended.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.wait_until(Instant::now() + Duration::from_secs(5));
        }
    }
}

/// Which CPU each side of a per-call measurement runs on, when the machine has two or more: the
/// workload alone on the last CPU, the tracer (and its threads) on the others, so a tracer's
/// own user-space work never preempts the loop being timed. The probes still run on the
/// workload's CPU, in its context: that is what is measured.
#[derive(Clone, Copy)]
pub enum Side {
    Workload,
    Tracer,
}

/// Pins `cmd`'s process to `side`'s CPUs (see [`Side`]); does nothing on a one-CPU machine.
pub fn pin(cmd: &mut Command, side: Side) {
    use std::os::unix::process::CommandExt as _;
    let cpus = thread::available_parallelism().map_or(1, |n| n.get());
    if cpus < 2 {
        return;
    }
    let last = cpus - 1;
    // SAFETY: the closure runs in the child between fork and exec and only calls
    // async-signal-safe functions (CPU_ZERO/CPU_SET touch a local; sched_setaffinity is a
    // syscall); a failure is ignored (the measurement runs unpinned).
    unsafe {
        cmd.pre_exec(move || {
            let mut set: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_ZERO(&mut set);
            match side {
                Side::Workload => libc::CPU_SET(last, &mut set),
                Side::Tracer => (0..last).for_each(|c| libc::CPU_SET(c, &mut set)),
            }
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
            Ok(())
        });
    }
}

/// A running process's CPU time so far, user + system, all its threads, seconds (from
/// `/proc/PID/stat`, in clock ticks: 10 ms steps).
pub fn cpu_seconds(pid: i32) -> anyhow::Result<f64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name, in parentheses, may hold spaces: the fields after it start with the
    // third (state); utime and stime are the 14th and 15th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<u64>().ok());
    let (Some(user), Some(system)) = (ticks(14), ticks(15)) else {
        bail!("unexpected {path}: {stat:?}");
    };
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1);
    Ok((user + system) as f64 / hz as f64)
}

/// This process's resident size now, bytes (`VmRSS`): a process it starts records it as its own
/// peak's floor (the kernel keeps the high-water mark of the memory it had before `exec`).
pub fn own_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let kib = s.lines().find_map(|l| l.strip_prefix("VmRSS:"))?;
            kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok()
        })
        .map_or(0, |kib| kib * 1024)
}
