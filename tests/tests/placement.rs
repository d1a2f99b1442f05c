//! Where entry probes sit in the three builds of the C victim, and that counts stay exact
//! wherever they sit: after `endbr64` on an emulated `push` (CET), on the symbol address (no
//! CET, or nothing cheaper after `endbr64`), and in an unoptimized prologue.

use profiler_tests::{Func, Report, TempDir, process::profile, require_root, victims};

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
