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
    let src = dir.join("hot.c");
    std::fs::write(
        &src,
        "#include <stdlib.h>\n#include <time.h>\n\
         __attribute__((noinline)) int hot(int x) { volatile int y = x; return y + 1; }\n\
         int main(int argc, char **argv) {\n\
           time_t end = time(0) + atoi(argv[1]); long s = 0;\n\
           while (time(0) < end) for (int i = 0; i < 1000; i++) s += hot(i);\n\
           return s == 42;\n}\n",
    )
    .unwrap();
    let bin = dir.join("hot");
    let ok = Command::new("cc")
        .args(["-O2", "-o"])
        .arg(&bin)
        .arg(&src)
        .status()
        .expect("cc");
    assert!(ok.success());
    bin
}

#[test]
fn over_budget_probes_are_detached_and_their_counts_kept() {
    require_root!();
    let dir = TempDir::new();
    let bin = hot_loop(dir.path());
    let mut target = Command::new(&bin).arg("20").spawn().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let json = dir.json();
    let started = Instant::now();
    let out = Command::new(profiler_bin())
        .args([
            "attach",
            &target.id().to_string(),
            "--func",
            "hot",
            "--max-overhead",
            "5",
        ])
        .args(["--duration", "3", "--json"])
        .arg(&json)
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let _ = target.kill();
    let _ = target.wait();
    assert!(started.elapsed() < Duration::from_secs(30));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("detached hot"),
        "stderr says what was detached: {stderr}"
    );
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
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
