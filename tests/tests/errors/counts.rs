//! The errors section's counts against real processes that say how many times they failed:
//! every failure counted (not only the detailed ones), with the trend of all of them; EAGAIN
//! and EINTR, never detailed, counted as expected failures; and a failure with its traceback
//! and exit counted once, as one incident.

use profiler_tests::{Errors, TempDir, require_python, require_root, victims};

use super::{missing_model_script, run_basic, utf8};

/// `err_victim SCENARIO ARGS...` under `profiler run --level basic` with `env`: the count the
/// victim printed on its `LABEL N` line, and the errors section's report.
fn run_victim(
    dir: &TempDir,
    args: &[&str],
    label: &str,
    env: &[(&str, &str)],
) -> (u64, profiler_tests::Report) {
    let cmd = [&[victims::ERR], args].concat();
    let (out, report) = run_basic(dir, &[], &cmd, env);
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(0));
    (out.count_line(label), report)
}

/// The section lists `row` (syscall, errno, benign pattern, count) among the expected
/// failures, and has no error.
fn expected_only(errors: &Errors, row: (&str, &str, &str, u64)) {
    let benign = errors.benign();
    assert!(benign.contains(&row), "no {row:?} in {benign:?}");
    assert_eq!(errors.total(), 0, "{}", errors.describe());
}

/// A target that fails to open a model file 1,000 times a second for 10 s: far past the 256
/// the kernel details, then 16 a second. The pattern's count and the total are the number of
/// failures the target counted itself, and the trend is that of all of them: stable.
#[test]
fn a_steady_failure_is_counted_exactly_and_reads_stable() {
    require_root!();
    let dir = TempDir::new();
    let (failed, report) = run_victim(&dir, &["steady", "1000", "10"], "failed", &[]);
    assert_eq!(failed, 10_000, "the victim's own count");
    let errors = report.errors();
    let p = errors.pattern("MODEL_NOT_FOUND");
    assert_eq!(
        (p.count(), p.occurrences(), p.exact(), p.trend()),
        (failed, failed, true, "stable"),
        "{p}"
    );
    assert_eq!(errors.total(), failed, "{}", errors.describe());
    assert!(errors.exact());
    assert_eq!(errors.by_source("syscall"), failed);
    // The kernel's count of the kind: these failures, and the dynamic loader's expected ones.
    let benign_opens: u64 = errors
        .benign()
        .iter()
        .filter(|b| (b.0, b.1) == ("openat", "ENOENT"))
        .map(|b| b.3)
        .sum();
    assert_eq!(
        errors.failures_of("openat", "ENOENT"),
        failed + benign_opens
    );
    // The detailed ones are examples: the burst, then a few a second.
    let examples = errors.with_pattern("MODEL_NOT_FOUND").len() as u64;
    assert!(
        (256..1_000).contains(&examples),
        "{examples} detailed failures"
    );
}

/// Reads of an empty non-blocking pipe: every EAGAIN counted, as BENIGN_WOULD_BLOCK, and
/// none an error.
#[test]
fn eagain_is_counted_exactly_and_benign() {
    require_root!();
    let dir = TempDir::new();
    let (n, report) = run_victim(&dir, &["eagain", "5000"], "eagain", &[]);
    assert_eq!(n, 5_000, "the victim's own count");
    let errors = report.errors();
    expected_only(&errors, ("read", "EAGAIN", "BENIGN_WOULD_BLOCK", n));
    assert_eq!(errors.failures_of("read", "EAGAIN"), n);
    assert!(
        errors
            .events()
            .iter()
            .all(|e| e.context("errno") != Some("EAGAIN"))
    );
}

/// Blocking reads that a signal handler (without SA_RESTART) interrupts: the kernel leaves
/// them with a restart code, and EINTR is decided at the signal's delivery. Every one is
/// counted, once (not again when the handler returns), as BENIGN_INTERRUPTED; with the raw
/// `sys_exit` program too.
#[test]
fn eintr_is_counted_exactly_and_benign() {
    require_root!();
    for env in [&[][..], &[("PROFILER_RAW_SYS_EXIT", "1")][..]] {
        let dir = TempDir::new();
        let (n, report) = run_victim(&dir, &["eintr", "300"], "eintr", env);
        assert_eq!(n, 300, "the victim's own count");
        let errors = report.errors();
        expected_only(&errors, ("read", "EINTR", "BENIGN_INTERRUPTED", n));
        let failures = errors.syscall_failures();
        let eintr: Vec<_> = failures.iter().filter(|f| f.1 == "EINTR").collect();
        assert_eq!(eintr, [&("read", "EINTR", n)], "{env:?}: {failures:?}");
    }
}

/// A script that opens a missing checkpoint: the failed openat, the FileNotFoundError
/// traceback and the exit(1) are one incident, the open its root.
#[test]
fn a_missing_model_its_traceback_and_exit_are_one_incident() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let (script, missing) = missing_model_script(&dir);
    let (_, report) = run_basic(&dir, &["-q"], &[utf8(&py), utf8(&script)], &[]);
    let errors = report.errors();
    assert_eq!(errors.total(), 1, "{}", errors.describe());
    let path = missing.display().to_string();
    let events = errors.events();
    let open = events
        .iter()
        .find(|e| e.source() == "syscall" && e.context("path") == Some(path.as_str()))
        .unwrap_or_else(|| panic!("no failed open of {path}:\n{}", errors.describe()));
    let traceback = events
        .iter()
        .find(|e| e.source() == "output" && e.context("exception") == Some("FileNotFoundError"))
        .unwrap_or_else(|| panic!("no FileNotFoundError:\n{}", errors.describe()));
    let exit = events
        .iter()
        .find(|e| e.source() == "exit")
        .unwrap_or_else(|| panic!("no exit:\n{}", errors.describe()));
    assert_eq!(exit.error_type(), "exit(1)");
    assert_eq!(open.caused_by(), None, "{open}");
    assert_eq!(open.led_to(), [traceback.id(), exit.id()], "{open}");
    assert_eq!(traceback.caused_by(), Some(open.id()), "{traceback}");
    assert_eq!(exit.caused_by(), Some(open.id()), "{exit}");
    // The exceptions the interpreter raised (the python family's examples) aside.
    let errors_only = events
        .iter()
        .filter(|e| e.source() != "python_exception")
        .count();
    assert_eq!(errors_only, 3, "{}", errors.describe());
    assert_eq!(
        ["syscall", "output", "signal", "exit"].map(|s| errors.by_source(s)),
        [1, 1, 0, 1]
    );
    let p = errors.pattern("MODEL_NOT_FOUND");
    assert_eq!(
        (p.count(), p.occurrences(), p.trend()),
        (1, 2, "single"),
        "{p}"
    );
    assert_eq!(
        report.at("/errors/by_category/model_loading").as_u64(),
        Some(1)
    );
    assert_eq!(report.at("/errors/by_severity/high").as_u64(), Some(1));
}
