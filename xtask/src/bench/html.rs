//! The HTML report at scale: a report with 1,000 traced functions and 1,000 error events (each
//! with callers, stacks, context and advice as a real one has), rendered by `profiler report
//! --html`, then opened in headless Chromium. Measured: the render time, the page's size, and
//! the time Chromium takes to open it and run its script, next to the same Chromium opening an
//! empty page in the same round (the anchor: what a browser costs before any page).

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use serde_json::{Value, json};

use super::{median, tracer::Tools};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "html";

const CHROMIUM: &str = "/usr/bin/chromium";

/// A report of `functions` traced functions and `events` error events.
fn report(functions: usize, events: usize) -> Value {
    let frame = |i: usize| {
        json!({"function": format!("caller_{i}"), "module": "libapp.so", "offset": "0x1a2b",
               "file": "/src/app/module.c", "line": 120})
    };
    let funcs: Vec<Value> = (0..functions)
        .map(|i| {
            json!({
                "function_name": format!("app::module::function_{i}"), "module": "app",
                "address": "0x1000", "total_calls": 1000 + i, "timed_calls": 1000,
                "total_time": 0.5, "average_time": 5e-4, "min_time": 1e-6, "max_time": 0.01,
                "std_dev_time": 1e-4, "net_total_time": 0.4, "net_average_time": 4e-4,
                "probe_share_percent": 3.0, "probe_dominated": false, "probe_hits_within": 2000,
                "percentiles": {"p50": 4e-4, "p90": 8e-4, "p99": 9e-3},
                "histogram": (0..12).map(|b| json!({"low": b as f64 * 1e-6,
                    "high": (b + 1) as f64 * 1e-6, "count": b * 10})).collect::<Vec<_>>(),
                "in_flight": 0, "abandoned": 0,
                "threads": [{"tid": 1, "calls": 1000, "total_time": 0.5}],
                "callers": (0..20).map(|c| { let mut f = frame(c); f["calls"] = json!(50); f })
                    .collect::<Vec<_>>(),
                "call_stacks": (0..20).map(|_| json!({"frames": (0..30).map(frame)
                    .collect::<Vec<_>>(), "samples": 3})).collect::<Vec<_>>(),
                "probe": {"offset": 4, "instruction": "push rbp", "class": "emulated",
                          "reason": "r", "hits": 2000, "estimated_cost": 1e-3}
            })
        })
        .collect();
    let events: Vec<Value> = (0..events)
        .map(|i| {
            let severity = ["critical", "high", "medium", "low"][i % 4];
            json!({
                "id": i, "caused_by": null, "led_to": [], "error_type": "ENOENT",
                "category": "model_loading", "severity": severity,
                "pattern": format!("PATTERN_{}", i % 20),
                "description": "A file could not be found.",
                "message": format!("openat(\"/models/model-{i}.pt\") = -1 ENOENT"),
                "solutions": ["Check the path.", "Download the weights first."],
                "prevention": ["Validate paths at startup."],
                "timestamp": i as f64 * 0.01, "tid": 7, "pid": 7, "command": ["app"],
                "source": "syscall",
                "context": {"syscall": "openat", "errno": "ENOENT",
                    "path": format!("/models/model-{i}.pt"), "frames": [],
                    "lines": ["Traceback (most recent call last):", "  File \"x.py\", line 1"],
                    "stack": (0..20).map(|s| format!("fn_{s} (app+0x10)")).collect::<Vec<_>>(),
                    "preceding": ["read(3) = 10"]}
            })
        })
        .collect();
    let patterns: Vec<Value> = (0..20)
        .map(|p| {
            json!({"id": format!("PATTERN_{p}"), "category": "model_loading", "severity": "high",
                   "count": 50, "occurrences": 50, "exact": true, "first_seen": 0.1,
                   "last_seen": 9.0, "trend": "stable"})
        })
        .collect();
    let stacks: Vec<Value> = (0..2000)
        .map(|i| {
            json!({"frames": ["t-1", "main", format!("module_{}", i % 40),
                              format!("app::module::function_{}", i % 1000)], "samples": 1 + i % 7})
        })
        .collect();
    json!({
        "schema_version": "3.2",
        "profiler": {"version": "0.1.0", "debug_level": "full", "mode": "run", "duration": 10.0,
                     "started_at": 1.0, "end_reason": "target_exited"},
        "target": {"pid": 7, "exe": "/usr/bin/app", "cmdline": ["app", "--serve"],
                   "exited": true, "exit_status": {"code": 1, "signal": null, "core_dumped": false}},
        "processes": [],
        "families": [{"name": "functions", "status": "attached", "probes": 2000}],
        "functions": funcs, "skipped_functions": [],
        "overhead": {"probes_attached": 2000, "probe_hits": 1, "cost_model": {"source": "default"},
                     "estimated_cost": 0.0, "target_cpu_time": 1.0,
                     "estimated_slowdown_percent": 0.0, "probe_share_percent": 0.0,
                     "dominated": false, "lost": {}, "notes": {}},
        "system": {"interval": 0.2, "samples": 50, "current_cpu": 10.0, "peak_cpu": 90.0,
                   "average_cpu": 50.0, "current_rss": 1000, "peak_rss": 5000, "cpu_cores": 2,
                   "machine": {"cores": 2, "physical_cores": 2, "cpu_model": "x", "memory": 1,
                               "kernel": "6.18"},
                   "timeline": (0..50).map(|i| json!({"at": i as f64 * 0.2, "cpu": 50.0,
                       "rss": 1000 * i})).collect::<Vec<_>>()},
        "errors": {"total": 1000, "exact": true, "events": events, "dropped": 0,
                   "patterns": patterns, "by_category": {"model_loading": 1000},
                   "by_severity": {"high": 1000}, "by_source": {"syscall": 1000}, "benign": [],
                   "benign_signals": [], "syscall_failures": []},
        "cpu": {"samples": 8000, "frequency": 99, "stacks": stacks},
        "warnings": []
    })
}

/// One headless Chromium opening `page`: seconds until it has run the page's script and dumped
/// the DOM, and the DOM.
fn open(dir: &Path, page: &Path, round: u32) -> anyhow::Result<(f64, String)> {
    let profile = dir.join(format!("chromium-{round}"));
    let started = Instant::now();
    let out = Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--dump-dom",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg(format!("file://{}", page.display()))
        .output()
        .context("starting chromium")?;
    let secs = started.elapsed().as_secs_f64();
    let _ = std::fs::remove_dir_all(&profile);
    if !out.status.success() {
        bail!(
            "chromium failed on {}: {}",
            page.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok((secs, String::from_utf8_lossy(&out.stdout).into_owned()))
}

pub fn bench(tools: &Tools, dir: &Path, runs: u32) -> anyhow::Result<()> {
    println!("HTML report: 1,000 functions, 1,000 error events, 2,000 sampled stacks");
    let json = dir.join("big-report.json");
    std::fs::write(&json, serde_json::to_vec(&report(1000, 1000))?)?;
    let page = dir.join("big-report.html");
    let mut renders = Vec::new();
    for _ in 0..runs {
        let started = Instant::now();
        let status = Command::new(&tools.profiler)
            .arg("report")
            .arg(&json)
            .arg("--html")
            .arg(&page)
            .output()
            .context("starting the profiler")?;
        renders.push(started.elapsed().as_secs_f64());
        if !status.status.success() {
            bail!(
                "profiler report failed: {}",
                String::from_utf8_lossy(&status.stderr)
            );
        }
    }
    let size = std::fs::metadata(&page)?.len();
    println!(
        "  render (profiler report --html): median {:.3} s; page {:.2} MB (JSON {:.2} MB)",
        median(renders).unwrap_or(0.0),
        size as f64 / 1e6,
        std::fs::metadata(&json)?.len() as f64 / 1e6
    );
    if !Path::new(CHROMIUM).exists() {
        println!("  open: unavailable ({CHROMIUM} is missing: apt-get install chromium)");
        return Ok(());
    }
    let empty = dir.join("empty.html");
    std::fs::write(&empty, "<!doctype html><title>empty</title><p>empty</p>")?;
    // Interleaved, a page and the empty one each round; the first round warms the disk cache.
    let (mut pages, mut empties, mut ready) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..=runs {
        let (p, dom) = open(dir, &page, round)?;
        let (e, _) = open(dir, &empty, round)?;
        if !dom.contains("app::module::function_999") {
            bail!("the page did not render its functions in chromium");
        }
        if round > 0 {
            pages.push(p);
            empties.push(e);
            ready.extend(ready_ms(&dom));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let (p, e) = (median(pages).unwrap_or(0.0), median(empties).unwrap_or(0.0));
    println!(
        "  open in headless chromium, to the DOM dumped: page {p:.2} s, empty page {e:.2} s \
         (the page's own: {:.2} s); the page's script done {:.0} ms after navigation",
        (p - e).max(0.0),
        median(ready).unwrap_or(0.0)
    );
    Ok(())
}

/// The page's `data-ready-ms` (milliseconds from navigation to the end of its script).
fn ready_ms(dom: &str) -> Option<f64> {
    let at = dom.find("data-ready-ms=\"")? + "data-ready-ms=\"".len();
    dom[at..].split('"').next()?.parse().ok()
}
