//! Exact per-function numbers: counts, nesting, recursion, threads, shared libraries, Rust names,
//! longjmp and calls still running at the end, in `run` and `attach` mode; and the live
//! snapshots taken while the target runs.

use profiler_tests::{
    Report, TempDir, Victim, attach,
    live::{attach_live, next_snapshot},
    require_root, run_reported, victims,
};

/// `profiler run --json <dir>/report.json ARGS... -- CMD...` (see [`run_reported`]); its report.
fn run(dir: &TempDir, args: &[&str], cmd: &[&str]) -> Report {
    run_reported(dir, args, cmd, &[]).1
}

#[test]
fn run_counts_every_call_exactly() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &["--func", "leaf"], &[victims::C, "calls", "10000"]);
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 10_000);
    assert_eq!(leaf.module(), "victim");
    assert_eq!((leaf.in_flight(), leaf.abandoned()), (0, 0));
    assert_eq!(
        leaf.probe_hits(),
        20_000,
        "one entry and one return hit per call"
    );
    assert!(leaf.min_time() > 0.0 && leaf.min_time() <= leaf.max_time());
    let threads = leaf.threads();
    assert_eq!(threads.len(), 1);
    assert_eq!(threads[0].1, 10_000);
}

/// A hot function: every call counted, one in `--time-every` timed after the first 1024.
#[test]
fn hot_function_is_counted_exactly_and_timed_by_sample() {
    require_root!();
    let dir = TempDir::new();
    let calls = 100_000u64;
    let cmd = [victims::C, "calls", "100000"];
    let report = run(&dir, &["--func", "leaf", "--time-every", "16"], &cmd);
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), calls);
    assert_eq!(leaf.probe_hits(), 2 * calls);
    assert_eq!(
        leaf.callers(),
        [("main", calls)],
        "call sites see every call"
    );
    assert_eq!(leaf.threads()[0].1, calls, "so does the thread breakdown");
    // 1024 always, then each of the other 98976 calls with probability 1/16: mean 7210, sd 76.
    let timed = leaf.timed_calls();
    assert!((6750..=7670).contains(&timed), "timed {timed} of {calls}");
    assert!(leaf.min_time() > 0.0 && leaf.min_time() <= leaf.max_time());
    // The total is the timed calls' mean times every call.
    let mean = leaf.total_time() / calls as f64;
    assert!(
        mean >= leaf.min_time() && mean <= leaf.max_time(),
        "mean {mean} outside {}..{}",
        leaf.min_time(),
        leaf.max_time()
    );

    let report = run(&dir, &["--func", "leaf", "--time-every", "1"], &cmd);
    let leaf = report.function("leaf");
    assert_eq!(
        (leaf.total_calls(), leaf.timed_calls()),
        (calls, calls),
        "--time-every 1 times every call"
    );
}

#[test]
fn attach_counts_exactly_the_calls_made_while_attached() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::C, ["calls", "10000"]);
    let profiler = attach(
        &victim,
        &["--func", "leaf", "--json", json.to_str().unwrap()],
    );
    victim.proceed();
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    assert_eq!(report.str_at("/profiler/mode"), "attach");
    assert_eq!(
        report.at("/target/pid").as_u64(),
        Some(u64::from(victim.pid()))
    );
    assert_eq!(report.at("/target/exited").as_bool(), Some(false));
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 10_000);
    assert_eq!((leaf.in_flight(), leaf.abandoned()), (0, 0));
    assert!(victim.release().success());
}

#[test]
fn nested_calls_are_counted_timed_and_attributed_to_their_caller() {
    require_root!();
    let dir = TempDir::new();
    // Every call timed: with one in N timed past each thread's first 1024, the totals are
    // estimates, and two estimates need not keep the order of the exact times.
    let funcs = ["--func", "outer", "--func", "inner", "--time-every", "1"];
    let report = run(&dir, &funcs, &[victims::C, "nested", "2000"]);
    let (outer, inner) = (report.function("outer"), report.function("inner"));
    assert_eq!(outer.total_calls(), 2000);
    assert_eq!(inner.total_calls(), 4000, "two inner() calls per outer()");
    // Every inner() call lies within an outer() call.
    assert!(
        outer.total_time() >= inner.total_time(),
        "outer {} s < inner {} s",
        outer.total_time(),
        inner.total_time()
    );
    let callers = inner.callers();
    assert_eq!(callers.len(), 2, "two call sites in outer(): {callers:?}");
    assert!(
        callers
            .iter()
            .all(|&(f, calls)| f == "outer" && calls == 2000),
        "{callers:?}"
    );
    assert!(outer.callers().iter().all(|&(f, _)| f == "main"));
}

#[test]
fn recursion_counts_every_level_and_abandons_nothing() {
    require_root!();
    let dir = TempDir::new();
    let (calls, depth) = (100, 9);
    let (k, d) = (calls.to_string(), depth.to_string());
    let report = run(
        &dir,
        &["--func", "recurse"],
        &[victims::C, "recurse", &k, &d],
    );
    let recurse = report.function("recurse");
    // recurse(d) enters recurse(d - 1), ..., recurse(0): d + 1 entries per top-level call.
    assert_eq!(recurse.total_calls(), calls * (depth + 1));
    assert_eq!((recurse.in_flight(), recurse.abandoned()), (0, 0));
    let mut callers = recurse.callers();
    callers.sort();
    let names: Vec<(&str, u64)> = callers.iter().map(|&(f, n)| (f, n)).collect();
    assert_eq!(names, [("main", calls), ("recurse", calls * depth)]);
}

#[test]
fn tail_called_function_is_attributed_to_its_real_caller() {
    require_root!();
    let dir = TempDir::new();
    let funcs = ["--func", "recurse", "--func", "leaf"];
    let report = run(&dir, &funcs, &[victims::C, "recurse", "100", "9"]);
    // recurse(0) ends in `jmp leaf`: leaf() returns straight into recurse(1), through a
    // return-address slot whose content the return probe of recurse(0) has replaced.
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 100);
    assert_eq!(leaf.callers(), [("recurse", 100)]);
    let stacks = leaf.0["call_stacks"].as_array().expect("call_stacks");
    assert!(!stacks.is_empty(), "no sampled stack");
    for stack in stacks {
        let innermost = &stack["frames"][0]["function"];
        assert_eq!(innermost, "recurse", "stack {stack}");
    }
}

#[test]
fn each_thread_is_counted_separately() {
    require_root!();
    let dir = TempDir::new();
    let report = run(
        &dir,
        &["--func", "leaf"],
        &[victims::C, "threads", "4", "2500"],
    );
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 4 * 2500);
    let threads = leaf.threads();
    assert_eq!(threads.len(), 4, "{threads:?}");
    assert!(
        threads.iter().all(|&(_, calls)| calls == 2500),
        "{threads:?}"
    );
    let pid = report.at("/target/pid").as_u64().expect("pid");
    let mut tids: Vec<u64> = threads.iter().map(|&(tid, _)| tid).collect();
    tids.sort_unstable();
    tids.dedup();
    assert_eq!(tids.len(), 4, "distinct tids: {threads:?}");
    assert!(
        !tids.contains(&pid),
        "the main thread made no call: {threads:?}"
    );
}

#[test]
fn shared_library_function_counted_exactly_in_run_mode() {
    require_root!();
    let dir = TempDir::new();
    let spec = ["--func", "libvictim:lib_function"];
    let report = run(&dir, &spec, &[victims::LIB, "3000"]);
    let f = report.function("lib_function");
    assert_eq!(f.module(), "libvictim.so");
    assert_eq!(f.total_calls(), 3000);
    assert_eq!(f.callers(), [("main", 3000)]);
}

#[test]
fn a_glob_names_the_library() {
    require_root!();
    let dir = TempDir::new();
    let spec = ["--func", "libvict*:lib_function"];
    let report = run(&dir, &spec, &[victims::LIB, "3000"]);
    let f = report.function("lib_function");
    assert_eq!(f.module(), "libvictim.so");
    assert_eq!(f.total_calls(), 3000);
    assert_eq!(report.functions().len(), 1);
}

#[test]
fn shared_library_function_counted_exactly_in_attach_mode() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::LIB, ["3000"]);
    let spec = [
        "--func",
        "libvictim:lib_function",
        "--json",
        json.to_str().unwrap(),
    ];
    let profiler = attach(&victim, &spec);
    victim.proceed();
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    let f = Report::read(&json).function("lib_function").total_calls();
    assert_eq!(f, 3000);
    assert!(victim.release().success());
}

#[test]
fn demangled_rust_glob_matches_and_counts_exactly() {
    require_root!();
    let dir = TempDir::new();
    let rust = env!("CARGO_BIN_EXE_victim_rust");
    let report = run(&dir, &["--func", "victim_rust::work::*"], &[rust, "1500"]);
    let mut names: Vec<&str> = report.functions().iter().map(|f| f.name()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["victim_rust::work::compute", "victim_rust::work::step"]
    );
    let compute = report.function("victim_rust::work::compute");
    let step = report.function("victim_rust::work::step");
    assert_eq!(compute.total_calls(), 1500);
    assert_eq!(step.total_calls(), 1500);
    assert_eq!(step.callers(), [("victim_rust::work::compute", 1500)]);
    assert!(compute.total_time() >= step.total_time());
}

#[test]
fn longjmp_out_of_traced_functions_leaves_other_counts_exact() {
    require_root!();
    let dir = TempDir::new();
    let funcs = ["jumper", "through", "landed", "leaf"].map(|f| ["--func", f]);
    let report = run(&dir, funcs.as_flattened(), &[victims::C, "longjmp", "1000"]);
    // Even iterations leave jumper() and through() by longjmp; odd ones return.
    for name in ["jumper", "through"] {
        let f = report.function(name);
        assert_eq!(f.total_calls(), 500, "{name}: only the calls that returned");
        assert_eq!(f.abandoned(), 500, "{name}: the longjmp'd calls");
        assert_eq!(f.in_flight(), 0, "{name}");
    }
    // Functions that always return are untouched by the longjmps around them.
    for name in ["landed", "leaf"] {
        let f = report.function(name);
        assert_eq!(f.total_calls(), 1000, "{name}");
        assert_eq!((f.abandoned(), f.in_flight()), (0, 0), "{name}");
    }
    // No call is timed from a stale start: each is microseconds, far below this.
    for f in report.functions() {
        assert!(
            f.max_time() < 0.5,
            "{}: max_time {} s",
            f.name(),
            f.max_time()
        );
    }
    assert_eq!(report.at("/overhead/lost"), &serde_json::json!({}));
}

#[test]
fn call_running_at_the_end_is_in_flight_not_counted() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::C, ["block", "100"]);
    let args = ["--func", "leaf", "--func", "blocked", "--duration", "4"];
    let profiler = attach(
        &victim,
        &[&args[..], &["--json", json.to_str().unwrap()]].concat(),
    );
    victim.proceed();
    victim.expect_line("blocked");
    profiler.finish().expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    let blocked = report.function("blocked");
    assert_eq!(blocked.in_flight(), 1);
    assert_eq!(blocked.total_calls(), 0);
    assert_eq!(report.function("leaf").total_calls(), 100);
    assert!(victim.release().success());
}

/// A tiny function's measured time is mostly its probes': the net time takes their cost out and
/// the row says the probes dominate it, in the report and in the printed summary.
#[test]
fn a_tiny_functions_net_time_is_far_below_its_probe_dominated_raw_time() {
    require_root!();
    let dir = TempDir::new();
    let args = ["--func", "leaf", "--time-every", "1"];
    let (outcome, report) = run_reported(&dir, &args, &[victims::C, "calls", "20000"], &[]);
    let leaf = report.function("leaf");
    assert_eq!(leaf.timed_calls(), 20_000);
    // No traced call within leaf(): only its own entry and return.
    assert_eq!(leaf.probe_hits_within(), 2 * 20_000);
    assert!(
        leaf.net_average_time() < leaf.average_time() / 2.0,
        "net {} of raw {}",
        leaf.net_average_time(),
        leaf.average_time()
    );
    assert!(leaf.probe_dominated());
    assert!(leaf.net_total_time() < leaf.total_time() / 2.0);
    let row = outcome
        .stderr
        .lines()
        .chain(outcome.stdout.lines())
        .find(|l| l.starts_with("leaf "))
        .unwrap_or_else(|| panic!("no leaf row in {}", outcome.stderr));
    assert!(row.ends_with('!') || row.contains(" !"), "{row}");
}

/// The hits within a call are counted in the kernel exactly: inner() makes 20 traced leaf()
/// calls (40 hits) besides its own two, outer() two inner() calls; their net times take them out.
#[test]
fn nested_probe_hits_are_counted_exactly_and_taken_out_of_the_callers_time() {
    require_root!();
    let dir = TempDir::new();
    let args = [
        "--func",
        "outer",
        "--func",
        "inner",
        "--func",
        "leaf",
        "--time-every",
        "1",
    ];
    let report = run(&dir, &args, &[victims::C, "nested", "500"]);
    let (outer, inner, leaf) = (
        report.function("outer"),
        report.function("inner"),
        report.function("leaf"),
    );
    assert_eq!(leaf.probe_hits_within(), 2 * 20_000);
    assert_eq!(inner.probe_hits_within(), 1000 * (2 + 40));
    assert_eq!(outer.probe_hits_within(), 500 * (2 + 2 * 42));
    for f in [&outer, &inner] {
        assert!(
            f.net_average_time() < f.average_time() / 2.0,
            "{}: net {} of raw {}",
            f.name(),
            f.net_average_time(),
            f.average_time()
        );
        assert!(f.probe_dominated(), "{}", f.name());
    }
}

/// A function that runs for a millisecond of its own is not dominated by two probe hits: its
/// net time is its raw time less a sliver.
#[test]
fn a_millisecond_functions_net_time_is_its_raw_time() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &["--func", "spin"], &[victims::C, "spin", "50"]);
    let spin = report.function("spin");
    assert_eq!(spin.total_calls(), 50);
    assert_eq!(spin.probe_hits_within(), 2 * 50);
    assert!(!spin.probe_dominated());
    let (raw, net) = (spin.average_time(), spin.net_average_time());
    assert!(raw >= 1e-3, "spins 1 ms of CPU: {raw}");
    assert!(
        net <= raw && net > 0.98 * raw,
        "net {net} against raw {raw}"
    );
}

/// The live snapshots count exactly the calls made so far while the target runs on, with the
/// call it is blocked in running; and they take nothing from the final report, which still has
/// every call, the blocked one returned.
#[test]
fn live_snapshots_count_the_calls_so_far_and_leave_the_final_report_whole() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::ready(victims::C, ["block", "10000"]);
    let args = [
        "--func",
        "leaf",
        "--func",
        "blocked",
        "--json",
        json.to_str().unwrap(),
    ];
    let profiler = attach_live(&victim, &args, &live);
    victim.proceed();
    // leaf() 10000 times, then blocked() until the next byte.
    victim.expect_line("blocked");
    for _ in 0..2 {
        let snapshot = next_snapshot(&live);
        assert_eq!(snapshot.at("/target/exited").as_bool(), Some(false));
        let leaf = snapshot.function("leaf");
        assert_eq!(leaf.total_calls(), 10_000);
        assert_eq!(leaf.threads(), [(u64::from(victim.pid()), 10_000)]);
        assert_eq!(leaf.callers(), [("main", 10_000)]);
        let blocked = snapshot.function("blocked");
        assert_eq!((blocked.total_calls(), blocked.in_flight()), (0, 1));
    }
    victim.proceed();
    victim.expect_line("done");
    let snapshot = next_snapshot(&live);
    let blocked = snapshot.function("blocked");
    assert_eq!((blocked.total_calls(), blocked.in_flight()), (1, 0));
    assert_eq!(snapshot.function("leaf").total_calls(), 10_000);
    profiler.interrupt();
    profiler.finish().expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    let leaf = report.function("leaf");
    assert_eq!(leaf.total_calls(), 10_000);
    assert_eq!(leaf.probe_hits(), 20_000);
    assert_eq!(leaf.threads(), [(u64::from(victim.pid()), 10_000)]);
    assert_eq!(leaf.callers(), [("main", 10_000)]);
    let blocked = report.function("blocked");
    assert_eq!((blocked.total_calls(), blocked.in_flight()), (1, 0));
    assert!(victim.release().success());
}
