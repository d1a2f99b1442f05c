//! How profiling ends, and what the report says about it: the target's exit code or signal, the
//! target exiting on its own, `--duration`, Ctrl-C, and an error once the target is known.

use std::{
    thread,
    time::{Duration, Instant},
};

use profiler_tests::{
    Profiler, Report, TIMEOUT, TempDir, Victim, attach, process::profile, require_root,
    run_reported, victims,
};

/// `profiler run --func leaf --json <dir>/report.json -- CMD...` (see [`run_reported`]); how
/// the profiler exited, and its report, which must say the target exited.
fn run_to_exit(dir: &TempDir, cmd: &[&str]) -> (Option<i32>, Report) {
    let (outcome, report) = run_reported(dir, &["--func", "leaf"], cmd, &[]);
    assert_eq!(report.at("/target/exited").as_bool(), Some(true));
    (outcome.status.code(), report)
}

/// `profiler run --level basic --json <dir>/report.json EXTRA... -- sh -c SCRIPT` to its end;
/// how it exited, and its report.
fn run_shell(dir: &TempDir, extra: &[&str], script: &str) -> (i32, Report) {
    let json = dir.json();
    let args = ["run", "--level", "basic", "--json", json.to_str().unwrap()];
    let cmd = ["--", "/bin/sh", "-c", script];
    let outcome = profile(args.iter().chain(extra).chain(&cmd));
    assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
    let code = outcome.status.code().expect("the profiler exited");
    (code, Report::read(&json))
}

#[test]
fn run_exits_with_the_status_of_its_command() {
    require_root!();
    let dir = TempDir::new();
    for (script, status, signal) in [
        ("exit 0", 0, None),
        ("exit 3", 3, None),
        ("exit 255", 255, None),
        ("kill -KILL $$", 128 + 9, Some("SIGKILL")),
        ("kill -SEGV $$", 128 + 11, Some("SIGSEGV")),
    ] {
        let (code, report) = run_shell(&dir, &[], script);
        assert_eq!(code, status, "{script}");
        assert_eq!(report.end_reason(), "target_exited", "{script}");
        let reported = report.at("/target/exit_status/signal").as_str();
        assert_eq!(reported, signal, "{script}");
    }
}

#[test]
fn run_ended_by_duration_exits_0_and_leaves_its_command_running() {
    require_root!();
    let dir = TempDir::new();
    // The command would exit 3, long after the profiling ends.
    let (code, report) = run_shell(&dir, &["--duration", "1"], "sleep 600; exit 3");
    assert_eq!(code, 0);
    assert_eq!(report.end_reason(), "duration");
    let pid = report.at("/target/pid").as_i64().expect("pid");
    let pid = i32::try_from(pid).expect("pid");
    // The command outlives its profiler (no death signal carried over the exec).
    thread::sleep(Duration::from_millis(200));
    let alive = !ended(pid as u32);
    // SAFETY: kill has no memory preconditions; the pid is the test's own command.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    assert!(alive, "the command {pid} ended with its profiler");
}

#[test]
fn run_reports_the_exit_code() {
    require_root!();
    let dir = TempDir::new();
    let (code, report) = run_to_exit(&dir, &[victims::C, "exit", "3", "7"]);
    assert_eq!(code, Some(3), "the profiler exits with its command's code");
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(3));
    assert!(report.at("/target/exit_status/signal").is_null());
    assert_eq!(report.function("leaf").total_calls(), 7);
}

#[test]
fn run_reports_the_fatal_signal() {
    require_root!();
    let dir = TempDir::new();
    let (code, report) = run_to_exit(&dir, &[victims::C, "segv", "7"]);
    assert_eq!(code, Some(128 + 11), "the profiler exits 128 + SIGSEGV");
    assert_eq!(report.str_at("/target/exit_status/signal"), "SIGSEGV");
    assert!(report.at("/target/exit_status/code").is_null());
    assert_eq!(report.function("leaf").total_calls(), 7);
}

#[test]
fn attach_report_is_complete_when_the_target_exits_first() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::C, ["calls", "5000"]);
    let args = [
        "--func",
        "leaf",
        "--duration",
        "60",
        "--json",
        json.to_str().unwrap(),
    ];
    let profiler = attach(&victim, &args);
    victim.proceed();
    victim.expect_line("done");
    assert!(victim.release().success());
    profiler.finish().expect_success();

    let report = Report::read(&json);
    // The exit ends profiling, not the 60 s duration.
    assert_eq!(report.end_reason(), "target_exited");
    let duration = report.at("/profiler/duration").as_f64().expect("duration");
    assert!(duration < 60.0, "duration {duration} s");
    assert_eq!(report.at("/target/exited").as_bool(), Some(true));
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(0));
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 5000);
    assert_eq!((leaf.in_flight(), leaf.abandoned()), (0, 0));
}

#[test]
fn duration_ends_profiling() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let victim = Victim::ready(victims::C, ["calls", "1"]);
    let args = [
        "--func",
        "leaf",
        "--duration",
        "1",
        "--json",
        json.to_str().unwrap(),
    ];
    attach(&victim, &args).finish().expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    let duration = report.at("/profiler/duration").as_f64().expect("duration");
    // Measured by the profiler from the probes being attached: the wall clock of a loaded
    // machine would add its start-up and teardown.
    assert!((1.0..10.0).contains(&duration), "duration {duration} s");
    assert_eq!(report.at("/target/exited").as_bool(), Some(false));
}

#[test]
fn ctrl_c_ends_profiling_and_writes_the_report() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::C, ["calls", "250"]);
    let profiler = attach(
        &victim,
        &["--func", "leaf", "--json", json.to_str().unwrap()],
    );
    victim.proceed();
    victim.expect_line("done");
    profiler.interrupt();
    let outcome = profiler.finish();
    outcome.expect_success();
    assert!(
        outcome.stdout.contains("leaf"),
        "summary:\n{}",
        outcome.stdout
    );

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    assert_eq!(report.function("leaf").total_calls(), 250);
    assert!(
        victim.release().success(),
        "the victim outlives the profiler"
    );
}

#[test]
fn error_after_the_target_is_known_still_writes_the_report() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let victim = Victim::ready(victims::C, ["calls", "1"]);
    let pid = victim.pid().to_string();
    let args = [
        "attach",
        "--func",
        "no_such_function",
        "--json",
        json.to_str().unwrap(),
        &pid,
    ];
    let outcome = Profiler::start(args).finish();
    let error = outcome.expect_error();
    assert!(error.contains("no_such_function"), "{error}");

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "error");
    assert_eq!(
        report.at("/target/pid").as_u64(),
        Some(u64::from(victim.pid()))
    );
    assert_eq!(report.at("/target/exited").as_bool(), Some(false));
    assert!(report.functions().is_empty());
}

#[test]
fn run_error_after_start_writes_the_report_and_ends_the_command() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let args = [
        "run",
        "--func",
        "lef",
        "--json",
        json.to_str().unwrap(),
        "--",
        victims::C,
    ];
    let outcome = profile(args);
    outcome.expect_error();
    // The profiler's own failure, whatever became of the command.
    assert_eq!(outcome.status.code(), Some(1));
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "error");
    let pid = report.at("/target/pid").as_i64().expect("pid");
    // The command held at the gate does not run on without its profiler.
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the gated command {pid} is still there");
}

/// The processes whose parent is `pid` now.
fn children_of(pid: u32) -> Vec<u32> {
    let parent = |p: &str| -> Option<u32> {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).ok()?;
        // The parent is the second field after `(comm)`.
        stat[stat.rfind(')')? + 1..]
            .split_whitespace()
            .nth(1)?
            .parse()
            .ok()
    };
    std::fs::read_dir("/proc")
        .expect("/proc")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|p| parent(p) == Some(pid))
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Whether process `pid` is gone, or dead and waiting to be reaped.
fn ended(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        let state = stat.rfind(')').map(|i| stat[i + 1..].trim_start());
        state.is_some_and(|s| s.starts_with('Z') || s.starts_with('X'))
    })
}

/// The command a `profiler run` test starts: one that, once it runs, is still there when the
/// test looks.
const SLEEP: [&str; 2] = ["/bin/sleep", "1000"];

/// Whether `pid` runs [`SLEEP`] (the profiler let it through the gate).
fn runs_sleep(pid: u32) -> bool {
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    cmdline == format!("{}\0{}\0", SLEEP[0], SLEEP[1]).as_bytes()
}

/// Ends a [`SLEEP`] the profiler let run.
fn end_sleep(pid: u32) {
    if runs_sleep(pid) {
        // SAFETY: kill has no memory preconditions; `pid` is the test's own command.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
}

/// Whether `pid` is blocked in read(2) (its gate, for a command the profiler holds).
fn in_read(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/syscall"))
        .is_ok_and(|s| s.split(' ').next() == Some(&libc::SYS_read.to_string()))
}

/// The command of `profiler run`: Ok while it is held at the gate (still a copy of the profiler,
/// with its command line, waiting in read(2): a copy about to exec another program, such as the
/// `ldconfig` the profiler runs, is not), Err once the profiler let it run.
fn command_of(profiler: &Profiler) -> Result<u32, u32> {
    let cmdline = |pid: u32| std::fs::read(format!("/proc/{pid}/cmdline")).ok();
    let own = cmdline(profiler.pid()).expect("the profiler's command line");
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        for child in children_of(profiler.pid()) {
            if runs_sleep(child) {
                return Err(child);
            }
            if cmdline(child).is_some_and(|c| c == own) && in_read(child) {
                return Ok(child);
            }
        }
        thread::sleep(Duration::from_millis(1));
    }
    panic!("profiler {} started no command", profiler.pid());
}

#[test]
fn run_killed_during_start_up_leaves_no_command_behind() {
    require_root!();
    let tries = 20;
    for _ in 0..tries {
        let args = ["run", "--level", "basic", "--", SLEEP[0], SLEEP[1]];
        let profiler = Profiler::start(args);
        let command = command_of(&profiler);
        let pid = profiler.pid();
        profiler.kill();
        let child = match command {
            Ok(child) => child,
            Err(running) => {
                // Too late: the gate was open, and the command runs on, as it should.
                end_sleep(running);
                continue;
            }
        };
        // With its profiler gone, the command exits without running.
        let deadline = Instant::now() + TIMEOUT;
        while !ended(child) && !runs_sleep(child) {
            assert!(
                Instant::now() < deadline,
                "the command {child} of killed profiler {pid} is still there after {} s",
                TIMEOUT.as_secs()
            );
            thread::sleep(Duration::from_millis(10));
        }
        if runs_sleep(child) {
            // The gate opened between the look and the kill.
            end_sleep(child);
            continue;
        }
        return;
    }
    panic!("in {tries} tries, the test never saw the command held at its gate");
}
