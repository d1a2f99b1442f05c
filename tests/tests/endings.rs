//! How profiling ends, and what the report says about it: the target's exit code or signal, the
//! target exiting on its own, `--duration`, Ctrl-C, and an error once the target is known.

use profiler_tests::{
    Profiler, Report, TempDir, Victim, attach, process::profile, require_root, run_reported,
    victims,
};

/// `profiler run --func leaf --json <dir>/report.json -- CMD...` (see [`run_reported`]); its
/// report, which must say the target exited.
fn run_to_exit(dir: &TempDir, cmd: &[&str]) -> Report {
    let (_, report) = run_reported(dir, &["--func", "leaf"], cmd, &[]);
    assert_eq!(report.at("/target/exited").as_bool(), Some(true));
    report
}

#[test]
fn run_reports_the_exit_code() {
    require_root!();
    let dir = TempDir::new();
    let report = run_to_exit(&dir, &[victims::C, "exit", "3", "7"]);
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(3));
    assert!(report.at("/target/exit_status/signal").is_null());
    assert_eq!(report.function("leaf").total_calls(), 7);
}

#[test]
fn run_reports_the_fatal_signal() {
    require_root!();
    let dir = TempDir::new();
    let report = run_to_exit(&dir, &[victims::C, "segv", "7"]);
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
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "error");
    let pid = report.at("/target/pid").as_i64().expect("pid");
    // The command held at the gate does not run on without its profiler.
    let pid = i32::try_from(pid).expect("pid");
    // SAFETY: signal 0 only checks whether the process exists.
    let alive = unsafe { libc::kill(pid, 0) } == 0;
    assert!(!alive, "the gated command {pid} is still there");
}
