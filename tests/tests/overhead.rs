//! The overhead budget (`--max-overhead`) against a real hot loop, and the cost model in the
//! report.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use profiler_tests::{TempDir, profiler_bin, require_root};
use serde_json::Value;

/// Builds a program that calls `hot` in a loop for `seconds`, forever busy.
fn hot_loop(dir: &Path) -> PathBuf {
    build(
        dir,
        "hot",
        "#include <stdlib.h>\n#include <time.h>\n\
         __attribute__((noinline)) int hot(int x) { volatile int y = x; return y + 1; }\n\
         int main(int argc, char **argv) {\n\
           time_t end = time(0) + atoi(argv[1]); long s = 0;\n\
           while (time(0) < end) for (int i = 0; i < 1000; i++) s += hot(i);\n\
           return s == 42;\n}\n",
    )
}

/// Builds a program whose `churn` frees the block it allocated 16 calls before and allocates
/// another, in a loop for `seconds`: every block is freed, nothing leaks.
fn malloc_loop(dir: &Path) -> PathBuf {
    build(
        dir,
        "churn",
        "#include <stdlib.h>\n#include <time.h>\n\
         static void *keep[16];\n\
         __attribute__((noinline)) void churn(int i) {\n\
           free(keep[i & 15]); keep[i & 15] = malloc(64 + (i & 63)); }\n\
         int main(int argc, char **argv) {\n\
           time_t end = time(0) + atoi(argv[1]);\n\
           while (time(0) < end) for (int i = 0; i < 1000; i++) churn(i);\n\
           return 0;\n}\n",
    )
}

/// Compiles C `source` into `dir/name` (-O2, frame pointers kept).
fn build(dir: &Path, name: &str, source: &str) -> PathBuf {
    let src = dir.join(format!("{name}.c"));
    std::fs::write(&src, source).unwrap();
    let bin = dir.join(name);
    let ok = Command::new("cc")
        .args(["-O2", "-fno-omit-frame-pointer", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(ok.success());
    bin
}

/// Starts `bin 20` (busy for 20 s), attaches to it with `args` for 3 s, then kills it; returns
/// the profiler's stderr and the report.
fn attach_for_3s(dir: &TempDir, bin: &Path, args: &[&str]) -> (String, Value) {
    let (stderr, _, report) = attach_for_3s_printed(dir, bin, args);
    (stderr, report)
}

/// As [`attach_for_3s`], with what the profiler printed on stdout (its summary) too.
fn attach_for_3s_printed(dir: &TempDir, bin: &Path, args: &[&str]) -> (String, String, Value) {
    let mut target = Command::new(bin).arg("20").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let json = dir.json();
    let started = Instant::now();
    let out = Command::new(profiler_bin())
        .args(["attach", &target.id().to_string()])
        .args(args)
        .args(["--duration", "3", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = target.kill();
    let _ = target.wait();
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{stderr}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    (stderr, stdout, report)
}

#[test]
fn over_budget_probes_are_detached_and_their_counts_kept() {
    require_root!();
    let dir = TempDir::new();
    let bin = hot_loop(dir.path());
    let (stderr, report) = attach_for_3s(&dir, &bin, &["--func", "hot", "--max-overhead", "5"]);
    assert!(
        stderr.contains("detached hot"),
        "stderr says what was detached: {stderr}"
    );
    let budget = &report["overhead"]["budget"];
    assert_eq!(budget["max_percent"], 5.0);
    let detached = budget["detached"].as_array().unwrap();
    assert_eq!(detached.len(), 1, "{budget}");
    assert_eq!(detached[0]["function"], "hot");
    assert!(detached[0]["window_slowdown_percent"].as_f64().unwrap() > 5.0);
    let at = detached[0]["at"].as_f64().unwrap();
    assert!(at > 0.0 && at < 3.0, "detached during the run: {at}");
    let hot = &report["functions"][0];
    assert_eq!(hot["function_name"], "hot");
    assert!(
        hot["total_calls"].as_u64().unwrap() > 1000,
        "counts before the detach are kept"
    );
    // A hot loop of a tiny function is far over 5% while traced.
    assert!(
        report["overhead"]["estimated_slowdown_percent"]
            .as_f64()
            .unwrap()
            > 5.0
    );
}

/// The allocator probes count against the budget too: a malloc/free loop is far over 5% while
/// they are attached, so the memory family is detached whole (frees last, so no block looks
/// leaked), and its section covers the run up to then, exactly.
#[test]
fn over_budget_allocator_probes_are_detached_and_what_they_saw_is_kept() {
    require_root!();
    let dir = TempDir::new();
    let bin = malloc_loop(dir.path());
    let args = [
        "--level",
        "memory",
        "--memory",
        "exact",
        "--max-overhead",
        "5",
    ];
    let (stderr, stdout, report) = attach_for_3s_printed(&dir, &bin, &args);
    // The growth attribution, far cheaper, runs on, and the summary says so on its own line.
    assert!(
        stdout
            .lines()
            .any(|l| l.starts_with("allocator probes detached at")
                && l.ends_with("growth attribution continues")),
        "{stdout}"
    );
    assert!(report["memory"]["growth"]["detached_at"].is_null());
    assert!(
        stderr.contains("detached memory family"),
        "stderr says what was detached: {stderr}"
    );
    let detached = report["overhead"]["budget"]["detached"].as_array().unwrap();
    assert_eq!(detached.len(), 1, "{detached:?}");
    assert_eq!(detached[0]["function"], "memory family");
    assert!(detached[0]["window_slowdown_percent"].as_f64().unwrap() > 5.0);
    let at = detached[0]["at"].as_f64().unwrap();
    assert!(at > 0.0 && at < 3.0, "detached during the run: {at}");
    assert!(
        report["overhead"]["estimated_cost"].as_f64().unwrap() > 0.0,
        "the allocator probes are priced: {}",
        report["overhead"]
    );
    let warnings = report["warnings"].as_array().unwrap();
    assert!(
        warnings.iter().any(|w| w
            .as_str()
            .unwrap()
            .contains("allocator probes were detached")),
        "{warnings:?}"
    );
    // Attached to a running allocator and detached from it while it runs, with nothing lost:
    // every block churn allocated while watched was seen freed or is one of its last 16.
    assert!(
        report["overhead"]["lost"].as_object().unwrap().is_empty(),
        "{}",
        report["overhead"]
    );
    let memory = &report["memory"];
    let churn = memory["allocations"]["by_function"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["function"] == "churn")
        .unwrap_or_else(|| panic!("no churn in {:#}", memory["allocations"]));
    let allocations = churn["allocations"].as_u64().unwrap();
    assert!(allocations > 1000, "counted before the detach: {churn}");
    assert!(churn["outstanding"].as_u64().unwrap() <= 16, "{churn}");
    // The target was scanned as the probes went, while every free was still seen: what it
    // holds is reachable.
    let detection = &memory["memory_leak_detection"];
    assert_eq!(detection["detected"], false, "{detection:#}");
    assert_eq!(detection["method"], "reachability", "{detection:#}");
    assert_eq!(detection["scans"][0]["trigger"], "budget", "{detection:#}");
    // The allocator probes' hits are in the overhead: malloc's entry and return, free's entry.
    let calls = |name: &str| {
        memory["allocator"]["functions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| f["name"] == name)
            .map(|f| f["calls"].as_u64().unwrap())
            .sum::<u64>()
    };
    assert_eq!(
        report["overhead"]["probe_hits"].as_u64().unwrap(),
        2 * calls("malloc") + calls("free"),
        "{}",
        memory["allocator"]
    );
    // Each allocator probe says where it is, why, its hits and its cost; they add up.
    let functions = memory["allocator"]["functions"].as_array().unwrap();
    let free = functions.iter().find(|f| f["name"] == "free").unwrap();
    assert_eq!(
        free["hits"], free["calls"],
        "free has no return probe: {free}"
    );
    assert!(!free["probe_reason"].as_str().unwrap().is_empty(), "{free}");
    assert!(
        !free["probe_instruction"].as_str().unwrap().is_empty(),
        "{free}"
    );
    let cost: f64 = functions
        .iter()
        .map(|f| f["estimated_cost"].as_f64().unwrap())
        .sum();
    let total = report["overhead"]["estimated_cost"].as_f64().unwrap();
    assert!((cost - total).abs() <= 1e-6 * total, "{cost} vs {total}");
}

#[test]
fn the_cost_model_is_calibrated_on_this_machine() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let out = Command::new(profiler_bin())
        .args(["run", "-q", "--func", "libc:exit", "--json"])
        .arg(&json)
        .args(["--", "/bin/true"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let model = &report["overhead"]["cost_model"];
    assert_eq!(model["source"], "calibrated", "{model}");
    let emulated = model["emulated_entry_ns"].as_f64().unwrap();
    let stepped = model["single_stepped_entry_ns"].as_f64().unwrap();
    // A single-stepped probe takes a second trap: it costs more than an emulated one.
    assert!(emulated > 0.0 && stepped > emulated, "{model}");
}
