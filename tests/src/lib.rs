//! Helpers for the profiler's integration tests: where the profiler and the victims are, whether
//! this machine can run them, running processes with deadlines, and reading the JSON report.
//!
//! Every helper panics with context instead of returning an error, so a failing test says what
//! it was waiting for and what the processes printed.
//!
//! A test that cannot run here (not root, no uprobes or BTF, no python3, no jemalloc, ...) gives
//! up through [`skip!`] and nothing else: it prints `skipped: <why>` and returns, or, with
//! `PROFILER_TESTS_STRICT=1` (as `cargo xtask test` and CI run them), fails, so that a run that
//! tested nothing cannot look green.

pub mod live;
pub mod process;
pub mod report;
pub mod victim;
pub mod victims;

use std::{
    fmt::Display,
    path::{Path, PathBuf},
    sync::atomic::{AtomicUsize, Ordering},
    time::Duration,
};

pub use process::{Outcome, Profiler, Victim, profile};
pub use report::python::Site;
pub use report::threads::{Threads, functions, names};
pub use report::{Errors, Event, Family, Func, FuncMemory, PatternStat, Proc, Report};

/// The longest any process or handshake may take before the test fails; generous, so a loaded
/// machine does not make a test flaky, and finite, so a broken profiler cannot hang the suite.
pub const TIMEOUT: Duration = Duration::from_secs(60);

/// The profiler binary: `$PROFILER_BIN`, or `profiler` next to the `deps/` directory that holds
/// the running test executable (`target/<profile>/deps/<test>` -> `target/<profile>/profiler`).
pub fn profiler_bin() -> PathBuf {
    if let Some(path) = std::env::var_os("PROFILER_BIN") {
        let path = PathBuf::from(path);
        assert!(
            path.is_file(),
            "PROFILER_BIN={} is not a file: build it first: cargo build -p profiler-user, \
             or run cargo xtask test",
            path.display()
        );
        return path;
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test executable lies in target/<profile>/deps");
    let path = profile_dir.join("profiler");
    assert!(
        path.is_file(),
        "no profiler binary at {}: build it first: cargo build -p profiler-user, \
         or run cargo xtask test",
        path.display()
    );
    path
}

/// Why this machine cannot run profiling tests, or None when it can.
pub fn cannot_profile() -> Option<String> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("needs root (the profiler loads eBPF programs)".into());
    }
    let features = [
        ("/sys/bus/event_source/devices/uprobe/type", "uprobes"),
        ("/sys/kernel/btf/vmlinux", "BTF"),
    ];
    features
        .iter()
        .find(|(path, _)| !Path::new(path).exists())
        .map(|(path, what)| format!("the kernel lacks {what} ({path} is missing)"))
}

/// The switch that makes a missing prerequisite fail the test instead of skipping it: `1` turns
/// it on; unset, or anything else, leaves it off.
const STRICT: &str = "PROFILER_TESTS_STRICT";

/// The one place where a test gives up because this machine lacks something it needs (`why`
/// says what): with `PROFILER_TESTS_STRICT=1` it panics; otherwise it prints `skipped: <why>`
/// and the caller returns (or leaves out the part that needs it). Tests call it through
/// [`skip!`].
#[track_caller]
pub fn skip(why: impl Display) {
    if std::env::var_os(STRICT).is_some_and(|v| v == "1") {
        panic!(
            "{STRICT} is set, and this test needs what this machine lacks: {why}\n\
             (cargo xtask setup --tests installs the packages the tests use; unset {STRICT} \
             to let them skip)"
        );
    }
    eprintln!("skipped: {why}");
}

/// Gives up on the test through [`skip()`]: fails with `PROFILER_TESTS_STRICT=1`, returns
/// otherwise. Takes `format!` arguments saying what is missing.
#[macro_export]
macro_rules! skip {
    ($($why:tt)+) => {{
        $crate::skip(format_args!($($why)+));
        return;
    }};
}

/// Gives up on the test (see [`skip!`]) when [`cannot_profile`] says this machine cannot run it.
#[macro_export]
macro_rules! require_root {
    () => {
        if let Some(why) = $crate::cannot_profile() {
            $crate::skip!("{why}");
        }
    };
}

/// The variable that names the python3 the Python victims run with, in place of the lookup
/// below; a path that is not a file counts as no python3 (to check by hand how a test without
/// one ends).
const PYTHON_VAR: &str = "PROFILER_TESTS_PYTHON";

/// The python3 the Python victims run with: `$PROFILER_TESTS_PYTHON`, else the system's (before
/// any wrapper on PATH, such as a pyenv shim), else the one on PATH; why there is none otherwise.
pub fn python() -> Result<PathBuf, String> {
    if let Some(path) = std::env::var_os(PYTHON_VAR) {
        let path = PathBuf::from(path);
        return if path.is_file() {
            Ok(path)
        } else {
            Err(format!(
                "python3 ({PYTHON_VAR}={} is not a file)",
                path.display()
            ))
        };
    }
    ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let out = std::process::Command::new("sh")
                .args(["-c", "command -v python3"])
                .output()
                .ok()?;
            let path = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (!path.is_empty()).then(|| PathBuf::from(path))
        })
        .ok_or_else(|| "python3 (not found)".to_string())
}

/// The image's own build of CPython 3.`minor` (pyenv's, under `$PYENV_ROOT` or `/root/.pyenv`:
/// a `libpython3.X.so` with its symbols), or why there is none.
pub fn pyenv_python(minor: u8) -> Result<PathBuf, String> {
    let root = std::env::var_os("PYENV_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/root/.pyenv"));
    let mut found: Vec<PathBuf> = std::fs::read_dir(root.join("versions"))
        .map_err(|e| format!("Python 3.{minor} (no {}: {e})", root.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&format!("3.{minor}.")))
        })
        .map(|p| p.join(format!("bin/python3.{minor}")))
        .filter(|p| p.is_file())
        .collect();
    found.sort();
    found
        .pop()
        .ok_or_else(|| format!("Python 3.{minor} (none under {}/versions)", root.display()))
}

/// The python3 to run a test's scripts with ([`python()`]); gives up on the test (see
/// [`skip!`]) without one.
#[macro_export]
macro_rules! require_python {
    () => {
        match $crate::python() {
            Ok(py) => py,
            Err(why) => $crate::skip!("{why}"),
        }
    };
}

/// Thread `tid` of process `pid`: its time on the CPU so far, in seconds, as the kernel counts
/// it (the first field of `/proc/PID/task/TID/schedstat`).
pub fn schedstat_on_cpu(pid: u32, tid: u32) -> f64 {
    let path = format!("/proc/{pid}/task/{tid}/schedstat");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("failed to read {path}: {e}"));
    let ns: u64 = text
        .split_whitespace()
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no CPU time in {path}: {text:?}"));
    ns as f64 / 1e9
}

/// Starts `profiler attach ARGS... PID` on `victim` and waits until its probes are attached.
///
/// The overhead budget is off: it would detach the probes of a victim that does nothing but call
/// the traced functions, and these tests count every call.
pub fn attach(victim: &Victim, args: &[&str]) -> Profiler {
    let pid = victim.pid().to_string();
    let mut all = vec!["attach", "--max-overhead", "0"];
    all.extend_from_slice(args);
    all.push(&pid);
    let mut profiler = Profiler::start(all);
    let target = profiler.wait_ready();
    assert_eq!(target, victim.pid(), "the profiler names another pid");
    profiler
}

/// `profiler attach ARGS...` on `victim` (started with [`Victim::ready`]) while it runs its
/// scenario, interrupted once the victim says "done": what the profiler printed. The profiler
/// must succeed, and the victim, let go, must go on and exit 0.
pub fn attach_through_done(victim: &mut Victim, args: &[&str]) -> Outcome {
    let profiler = attach(victim, args);
    victim.proceed();
    victim.expect_line("done");
    profiler.interrupt();
    let outcome = profiler.finish();
    outcome.expect_success();
    assert!(victim.release().success());
    outcome
}

/// `profiler run --json <dir>/report.json ARGS... -- CMD...`, with `env` added to the
/// profiler's environment, to its end: it must succeed, exiting with the status of its command
/// (see [`Report::run_status`]), and end because the target exited. Returns what it printed, and
/// its report.
pub fn run_reported(
    dir: &TempDir,
    args: &[&str],
    cmd: &[&str],
    env: &[(&str, &str)],
) -> (Outcome, Report) {
    let json = dir.json();
    let mut all = vec!["run", "--json", json.to_str().expect("utf-8 path")];
    all.extend_from_slice(args);
    all.push("--");
    all.extend_from_slice(cmd);
    let mut command = Profiler::command(&all);
    command.envs(env.iter().copied());
    let outcome = Profiler::spawn(command).finish();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited", "{}", outcome.stderr);
    outcome.expect_code(report.run_status().expect("the command exited"));
    (outcome, report)
}

/// A fresh directory, removed when dropped.
#[derive(Debug)]
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new() -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let path = std::env::temp_dir().join(format!("profiler-tests-{}-{n}", std::process::id()));
        // A leftover from an earlier run with the same pid is stale.
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("failed to create {}: {e}", path.display()));
        Self(path)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Where a test asks the profiler to write its report.
    pub fn json(&self) -> PathBuf {
        self.0.join("report.json")
    }
}

impl Default for TempDir {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
