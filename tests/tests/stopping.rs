//! The end of a session: Ctrl-C at any point of the start-up ends it, and thousands of probes stop
//! together at the end of the window, whose report covers exactly the window.

use std::{
    os::unix::process::ExitStatusExt,
    thread,
    time::{Duration, Instant},
};

use profiler_tests::{Profiler, Report, TIMEOUT, TempDir, Victim, attach, require_root, victims};

/// A command no other test runs, so that one left running can be found and ended.
const SLEEP: [&str; 2] = ["/bin/sleep", "1000.5"];

/// The processes running [`SLEEP`].
fn sleeps() -> Vec<i32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let wanted = format!("{}\0{}\0", SLEEP[0], SLEEP[1]);
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| c == wanted.as_bytes())
        })
        .collect()
}

/// Kills every process running [`SLEEP`].
fn end_sleeps() {
    for pid in sleeps() {
        // SAFETY: kill has no memory preconditions; the process runs this test's command.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Whether process `pid` catches SIGINT (its `SigCgt` mask in /proc).
fn catches_sigint(pid: u32) -> bool {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
        .is_some_and(|mask| mask & (1 << (libc::SIGINT - 1)) != 0)
}

/// `run` catches Ctrl-C before it does anything else, so before it lets its command go; a
/// Ctrl-C then ends the start-up with one error line and takes the held command with it.
#[test]
fn run_catches_ctrl_c_before_it_lets_its_command_go() {
    require_root!();
    for _ in 0..3 {
        let profiler = Profiler::start(["run", "--level", "basic", "--"].iter().chain(&SLEEP));
        let deadline = Instant::now() + TIMEOUT;
        while !catches_sigint(profiler.pid()) {
            assert!(
                Instant::now() < deadline,
                "the profiler never caught SIGINT"
            );
            thread::sleep(Duration::from_micros(200));
        }
        let running = sleeps();
        profiler.interrupt();
        let outcome = profiler.finish();
        end_sleeps();
        assert!(
            running.is_empty(),
            "the command ran before the profiler caught SIGINT"
        );
        assert_ne!(outcome.status.signal(), Some(libc::SIGINT), "{outcome:?}");
        if outcome.status.code() == Some(1) {
            assert!(
                outcome
                    .stderr
                    .contains("error: interrupted before profiling started"),
                "{}",
                outcome.stderr
            );
        } else {
            outcome.expect_success();
        }
    }
}

/// A SIGINT at any moment of `run`'s start-up ends the session: before the profiler has its
/// handler (the first instant of the process) by the default action, after it with the error
/// line or the report. It is never lost: a lost one would leave the profiler profiling a command
/// that runs for 1,000 s, and `finish` fails the test after its timeout.
#[test]
fn sigint_at_any_moment_of_the_start_up_ends_the_session() {
    require_root!();
    let dir = TempDir::new();
    let mut handled = 0;
    for delay_ms in [0, 2, 5, 10, 20, 40, 80, 160, 320] {
        let json = dir.path().join(format!("r{delay_ms}.json"));
        let args = [
            "run",
            "--level",
            "basic",
            "--json",
            json.to_str().unwrap(),
            "--",
        ];
        let profiler = Profiler::start(args.iter().chain(&SLEEP));
        thread::sleep(Duration::from_millis(delay_ms));
        profiler.interrupt();
        let outcome = profiler.finish();
        end_sleeps();
        assert!(!outcome.stderr.contains("panicked"), "{}", outcome.stderr);
        if outcome.status.signal() == Some(libc::SIGINT) {
            continue;
        }
        handled += 1;
        match outcome.status.code() {
            Some(0) => {}
            Some(1) => assert!(
                outcome
                    .stderr
                    .contains("error: interrupted before profiling started"),
                "after {delay_ms} ms: {}",
                outcome.stderr
            ),
            other => panic!("after {delay_ms} ms: exit {other:?}\n{}", outcome.stderr),
        }
        if json.exists() {
            assert_eq!(Report::read(&json).end_reason(), "interrupted");
        }
    }
    assert!(handled > 0, "no SIGINT reached the profiler's handler");
}

/// With all of libc traced (over 4,000 probes) the window ends on time: counting stops in every
/// program at once, the report covers the window and no more, and the probes go together (one
/// by one, the kernel takes 0.1 s each: minutes, past the harness's timeout).
#[test]
fn thousands_of_probes_stop_together_and_the_report_covers_the_window() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::C, ["calls", "2000000"]);
    let args = [
        "--func",
        "libc:*",
        "--func",
        "leaf",
        "--max-funcs",
        "5000",
        "--without",
        "errors",
        "--duration",
        "2",
        "--json",
        json.to_str().unwrap(),
    ];
    let profiler = attach(&victim, &args);
    victim.proceed();
    let outcome = profiler.finish();
    outcome.expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    let duration = report.at("/profiler/duration").as_f64().expect("duration");
    assert!((2.0..3.0).contains(&duration), "duration {duration} s");
    let probes = report
        .at("/overhead/probes_attached")
        .as_u64()
        .expect("probes");
    assert!(probes >= 4000, "{probes} probes");
    let leaf = report.function("leaf");
    assert!(leaf.total_calls() > 0, "leaf was not called in the window");
    for function in report.functions() {
        assert!(
            function.max_time() <= duration,
            "{}: a call of {} s in a window of {duration} s",
            function.name(),
            function.max_time()
        );
    }
    // The victim still runs its calls, at full speed again.
    victim.expect_line("done");
    assert!(victim.release().success());
}
