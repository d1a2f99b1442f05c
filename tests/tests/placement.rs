//! Where entry probes sit in the three builds of the C victim, and that counts stay exact
//! wherever they sit: after `endbr64` on an emulated `push` (CET), on the symbol address (no
//! CET, or nothing cheaper after `endbr64`), and in an unoptimized prologue.

use profiler_tests::{
    Func, Profiler, Report, TempDir, process::profile, require_root, run_reported, victims,
};

/// Runs `victim nested 200` under the profiler tracing outer, inner and leaf.
fn nested(victim: &str, dir: &TempDir) -> Report {
    let json = dir.json();
    let json = json.to_str().expect("utf-8 path");
    let funcs = ["--func", "outer", "--func", "inner", "--func", "leaf"];
    let mut args = vec!["run", "-q", "--json", json];
    args.extend_from_slice(&funcs);
    args.extend_from_slice(&["--", victim, "nested", "200"]);
    profile(&args).expect_success();
    let report = Report::read(dir.json().as_path());
    // 200 outer() -> 400 inner() -> 8000 leaf().
    for (name, calls) in [("outer", 200), ("inner", 400), ("leaf", 8000)] {
        let f = report.function(name);
        assert_eq!(f.total_calls(), calls, "{name} in {victim}");
        assert_eq!(f.probe_hits(), 2 * calls, "{name} in {victim}");
        assert_eq!((f.in_flight(), f.abandoned()), (0, 0), "{name} in {victim}");
    }
    report
}

fn assert_site(f: Func<'_>, offset: u64, class: &str, instruction: &str) {
    let got = (f.probe_offset(), f.probe_class(), f.probe_instruction());
    assert!(
        got.0 == offset && got.1 == class && got.2.starts_with(instruction),
        "{}: probe at {got:?}, expected +{offset} {class} {instruction}...",
        f.name()
    );
}

#[test]
fn cet_build_probes_the_emulated_push_after_endbr64() {
    require_root!();
    let dir = TempDir::new();
    let report = nested(victims::C, &dir);
    assert_site(report.function("outer"), 4, "emulated", "push ");
    assert_site(report.function("inner"), 4, "emulated", "push ");
    // leaf() has `endbr64; mov`: moving onto a single-stepped mov would gain nothing.
    assert_site(report.function("leaf"), 0, "single_stepped", "endbr64");
}

#[test]
fn no_cet_build_probes_the_symbol_address() {
    require_root!();
    let dir = TempDir::new();
    let report = nested(victims::C_NOCET, &dir);
    assert_site(report.function("outer"), 0, "emulated", "push ");
    assert_site(report.function("inner"), 0, "emulated", "push ");
    assert_site(report.function("leaf"), 0, "single_stepped", "mov ");
}

#[test]
fn unoptimized_build_probes_push_rbp_after_endbr64() {
    require_root!();
    let dir = TempDir::new();
    let report = nested(victims::C_O0, &dir);
    for name in ["outer", "inner", "leaf"] {
        assert_site(report.function(name), 4, "emulated", "push rbp");
    }
}

/// A glob that takes in functions whose first instruction the kernel refuses to probe (a lock
/// prefix): the session runs; one such function is probed past the lock, the other (a loop
/// comes back right after the lock) is reported skipped with the reason; every other function
/// is counted exactly.
#[test]
fn unprobeable_function_is_skipped_and_the_rest_are_counted() {
    require_root!();
    let dir = TempDir::new();
    let args = ["--func", "lock_*", "--func", "leaf"];
    let (outcome, report) = run_reported(&dir, &args, &[victims::C, "locked", "300"], &[]);
    let skipped = report.skipped_functions();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    let (name, reason) = &skipped[0];
    assert_eq!(name, "lock_unprobeable");
    assert!(
        reason.starts_with("the kernel refuses to probe lock dec dword ptr [rdi] (lock prefix")
            && reason.contains("branch at +0x6 targets +0x3"),
        "{reason}"
    );
    let passable = report.function("lock_passable");
    assert_eq!(passable.total_calls(), 300);
    assert_eq!(passable.probe_hits(), 600);
    assert_site(passable, 3, "single_stepped", "ret");
    assert_eq!(report.function("leaf").total_calls(), 300);
    let names: Vec<&str> = report.functions().iter().map(|f| f.name()).collect();
    assert_eq!(names.len(), 2, "{names:?}");
    let warnings = report.at("/warnings").to_string();
    assert!(
        warnings.contains("1 matched function(s) not traced")
            && warnings.contains("lock_unprobeable"),
        "{warnings}"
    );
    assert!(
        outcome
            .stdout
            .contains("not traced: lock_unprobeable (victim): the kernel refuses"),
        "{}",
        outcome.stdout
    );
}

/// Asked for nothing but an unprobeable function, the profiler says why before it starts.
#[test]
fn only_unprobeable_functions_is_an_error_with_the_reason() {
    require_root!();
    let outcome = profile([
        "run",
        "--func",
        "lock_unprobeable",
        "--",
        victims::C,
        "locked",
        "1",
    ]);
    let err = outcome.expect_error();
    assert!(
        err.contains("no --func function can be probed: lock_unprobeable")
            && err.contains("lock prefix"),
        "{err}"
    );
}

/// Every function of libc, on a real process: pthread_spin_lock (whose first instruction is
/// `lock decl`) is probed past it and counted exactly, like every function the victim calls a
/// known number of times; nothing is skipped on the way.
///
/// The ~4,400 probes go as they came, together (multi-uprobe links): the run ends well within
/// the harness's timeout (one perf-event uprobe at a time, the kernel took minutes).
#[test]
fn all_of_libc_attaches_and_counts_exactly() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut args = vec!["run", "-q", "--json", json.to_str().expect("utf-8 path")];
    args.extend([
        "--func",
        "libc:*",
        "--max-funcs",
        "5000",
        "--max-overhead",
        "0",
    ]);
    args.extend(["--", victims::C, "locked", "300"]);
    Profiler::start(&args).finish().expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited");
    let functions = report.functions();
    assert!(functions.len() > 1000, "{} functions", functions.len());
    assert_eq!(report.skipped_functions(), []);
    let spin = report.function("pthread_spin_lock");
    assert_eq!(spin.total_calls(), 300);
    assert_site(spin, 3, "emulated", "jne");
    // (pthread_spin_unlock shares its address with pthread_spin_init in glibc: traced once,
    // under one of the names.)
    assert_eq!(report.function("pthread_spin_destroy").total_calls(), 1);
    let family = report.family("functions");
    assert_eq!(family.status(), "attached");
    assert_eq!(family.probes() as usize, 2 * functions.len());
}

/// Go code gets no return probe (it would crash a Go program): the functions of a file with Go's
/// build-information section are not traced, with the reason, while a libc function the same
/// program calls is; asked for Go functions alone, the profiler says why before it starts.
#[test]
fn functions_of_go_code_are_not_traced() {
    require_root!();
    let outcome = profile(["run", "--func", "leaf", "--", victims::C_GO, "calls", "5"]);
    let err = outcome.expect_error();
    assert!(
        err.contains("no --func function can be probed: leaf") && err.contains(".go.buildinfo"),
        "{err}"
    );

    let dir = TempDir::new();
    let args = ["--func", "leaf", "--func", "libc:pthread_spin_destroy"];
    let (_, report) = run_reported(&dir, &args, &[victims::C_GO, "locked", "3"], &[]);
    let skipped = report.skipped_functions();
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].0, "leaf");
    assert!(skipped[0].1.starts_with("Go code"), "{}", skipped[0].1);
    assert_eq!(report.function("pthread_spin_destroy").total_calls(), 1);
    let names: Vec<&str> = report.functions().iter().map(|f| f.name()).collect();
    assert_eq!(names, ["pthread_spin_destroy"]);
}
