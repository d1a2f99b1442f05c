//! The page on synthesized reports: escaping, units, which tabs a report gets, and its size.

use serde_json::{Value, json};

use super::*;

/// A report with `functions` traced functions and `events` error events, each with the
/// callers, stacks, context and advice a real one has.
fn synthesized(functions: usize, events: usize) -> Value {
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
                "histogram": (0..12).map(|b| json!({"low": b as f64 * 1e-6, "high": (b + 1) as f64 * 1e-6, "count": b * 10})).collect::<Vec<_>>(),
                "in_flight": 0, "abandoned": 0, "threads": [{"tid": 1, "calls": 1000, "total_time": 0.5}],
                "callers": (0..20).map(|c| { let mut f = frame(c); f["calls"] = json!(50); f }).collect::<Vec<_>>(),
                "call_stacks": (0..20).map(|_| json!({"frames": (0..30).map(frame).collect::<Vec<_>>(), "samples": 3})).collect::<Vec<_>>(),
                "probe": {"offset": 4, "instruction": "push rbp", "class": "emulated", "reason": "r", "hits": 2000, "estimated_cost": 1e-3}
            })
        })
        .collect();
    let events: Vec<Value> = (0..events)
        .map(|i| {
            let severity = ["critical", "high", "medium", "low"][i % 4];
            json!({
                "id": i, "caused_by": null, "led_to": [], "error_type": "ENOENT",
                "category": "model_loading", "severity": severity,
                "pattern": format!("PATTERN_{}", i % 20), "description": "A file could not be found.",
                "message": format!("openat(\"/models/model-{i}.pt\") = -1 ENOENT"),
                "solutions": ["Check the path.", "Download the weights first."],
                "prevention": ["Validate paths at startup."],
                "timestamp": i as f64 * 0.01, "tid": 7, "pid": 7, "command": ["app"], "source": "syscall",
                "context": {"syscall": "openat", "errno": "ENOENT", "path": format!("/models/model-{i}.pt"),
                    "arg": null, "signal": null, "fault_addr": null, "exception": null, "frames": [],
                    "lines": ["Traceback (most recent call last):", "  File \"x.py\", line 1"],
                    "stack": (0..20).map(|s| format!("fn_{s} (app+0x10)")).collect::<Vec<_>>(),
                    "function": null, "preceding": ["read(3) = 10"]}
            })
        })
        .collect();
    let patterns: Vec<Value> = (0..20)
        .map(|p| json!({"id": format!("PATTERN_{p}"), "category": "model_loading", "severity": "high",
                        "count": 50, "occurrences": 50, "exact": true, "first_seen": 0.1, "last_seen": 9.0, "trend": "stable"}))
        .collect();
    json!({
        "schema_version": "3.1",
        "profiler": {"version": "0.1.0", "debug_level": "full", "mode": "run", "duration": 10.0,
                     "started_at": 1.0, "end_reason": "target_exited"},
        "target": {"pid": 7, "exe": "/usr/bin/app", "cmdline": ["app", "--serve"], "exited": true,
                   "exit_status": {"code": 1, "signal": null, "core_dumped": false}},
        "processes": [], "families": [{"name": "functions", "status": "attached", "probes": 2000}],
        "functions": funcs, "skipped_functions": [],
        "overhead": {"probes_attached": 2000, "probe_hits": 1, "cost_model": {"source": "default"},
                     "estimated_cost": 0.0, "target_cpu_time": 1.0, "estimated_slowdown_percent": 0.0,
                     "probe_share_percent": 0.0, "dominated": false, "lost": {}, "notes": {}},
        "system": {"interval": 0.2, "samples": 50, "current_cpu": 10.0, "peak_cpu": 90.0, "average_cpu": 50.0,
                   "current_rss": 1000, "peak_rss": 5000, "cpu_cores": 2,
                   "machine": {"cores": 2, "physical_cores": 2, "cpu_model": "x", "memory": 1, "kernel": "6.18"},
                   "timeline": (0..50).map(|i| json!({"at": i as f64 * 0.2, "cpu": 50.0, "rss": 1000 * i})).collect::<Vec<_>>()},
        "errors": {"total": 1000, "exact": true, "events": events, "dropped": 0, "patterns": patterns,
                   "by_category": {"model_loading": 1000}, "by_severity": {"high": 1000},
                   "by_source": {"syscall": 1000}, "benign": [], "benign_signals": [], "syscall_failures": []},
        "warnings": ["a <b>warning</b>"]
    })
}

#[test]
fn escaping_covers_markup_and_quotes() {
    assert_eq!(
        esc("<script>alert('x') & \"y\"</script>"),
        "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
    );
    assert_eq!(esc("plain µs"), "plain µs");
    // Text in the flame graph's JSON cannot close its script block.
    assert!(!script_json(&json!({"n": "</script><b>"})).contains("</script>"));
}

#[test]
fn what_the_target_printed_is_escaped_in_the_page() {
    let mut report = synthesized(1, 1);
    report["errors"]["events"][0]["message"] = json!("<img src=x onerror=alert(1)>");
    report["target"]["exe"] = json!("/tmp/<evil>\"app");
    let page = render(&report);
    assert!(!page.contains("<img src=x"), "an unescaped message");
    assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
    assert!(!page.contains("<evil>"));
    assert!(page.contains("a &lt;b&gt;warning&lt;/b&gt;"));
}

#[test]
fn units_are_always_shown_in_the_unit_that_fits() {
    assert_eq!(time(2.5), "2.50 s");
    assert_eq!(time(0.0042), "4.20 ms");
    assert_eq!(time(4.2e-6), "4.20 µs");
    assert_eq!(time(42e-9), "42.00 ns");
    assert_eq!(bytes(3 * 1024 * 1024), "3.0 MiB");
    let page = render(&synthesized(1, 0));
    assert!(page.contains("500.00 µs"), "the average, with its unit");
}

#[test]
fn tabs_follow_the_sections_present() {
    let ids = |v: &Value| tabs(v).iter().map(|t| t.id).collect::<Vec<_>>();
    let mut report = synthesized(0, 0);
    assert_eq!(ids(&report), ["debug", "performance", "errors", "system"]);
    report["memory"] = json!({});
    report["cpu"] = json!({"stacks": []});
    report["threads"] = Value::Null;
    assert_eq!(
        ids(&report),
        ["debug", "performance", "errors", "system", "memory", "cpu"]
    );
    report["threads"] = json!({});
    report["python"] = json!({});
    report["gpu"] = json!({});
    assert_eq!(ids(&report).len(), 9);
    let page = render(&report);
    for id in ids(&report) {
        assert!(page.contains(&format!("id=\"tab-{id}\"")), "{id}");
    }
}

#[test]
fn a_thousand_functions_and_a_thousand_errors_stay_under_5_mb() {
    let page = render(&synthesized(1000, 1000));
    assert!(page.len() < 5_000_000, "{} bytes", page.len());
    assert_eq!(page.matches("<tbody class=\"fn\">").count(), 1000);
}

#[test]
fn the_page_fetches_nothing() {
    let mut report = synthesized(3, 3);
    report["cpu"] = json!({"samples": 3, "frequency": 99,
        "stacks": [{"frames": ["t-1", "main", "work"], "samples": 3}]});
    let page = render(&report);
    for needle in [
        "http://", "https://", "src=\"", "href=\"", "@import", "url(",
    ] {
        assert!(!page.contains(needle), "the page has {needle}");
    }
    assert!(page.contains("id=\"flame-data\""));
}

#[test]
fn a_report_with_missing_fields_still_renders() {
    let page = render(&json!({"schema_version": "3.0"}));
    assert!(page.contains("id=\"tab-errors\""));
    assert!(page.contains("no errors section"));
}

#[test]
fn the_event_log_has_the_processes_started_and_ended_in_time_order() {
    let mut report = synthesized(1, 2);
    report["processes"] = json!([
        {"pid": 7, "parent_pid": 1, "command": ["app"], "followed": true, "exited_at": 9.5},
        {"pid": 8, "parent_pid": 7, "command": ["sh", "-c", "worker"], "followed": true,
         "forked_at": 0.005, "exited_at": 0.015, "exit_status": {"code": 0, "signal": null, "core_dumped": false}}
    ]);
    let page = render(&report);
    let log = &page[page.find("<h2>Event log</h2>").expect("the log")..];
    let started = log
        .find("pid 8 started by 7 (sh -c worker)")
        .expect("the fork");
    let exited = log.find("pid 8 exited (sh -c worker)").expect("the exit");
    // The errors at 0 s and 0.01 s around them.
    let first_error = log.find("model-0.pt").expect("an error");
    let second_error = log.find("model-1.pt").expect("an error");
    assert!(first_error < started && started < second_error && second_error < exited);
    // The target's own exit is the end of the run, said once.
    assert!(!log.contains("pid 7 exited"));
    assert_eq!(log.matches("target 7 exited").count(), 1);
}

/// The gpu section of the report model's sample: one NVML device and a cuda part with one of
/// each entry, as the JSON has it.
fn gpu_section() -> Value {
    let sample = serde_json::to_value(crate::report::tests::sample()).expect("it serializes");
    sample["gpu"].clone()
}

/// The panel of tab `id` in `page`.
fn panel<'a>(page: &'a str, id: &str) -> &'a str {
    let start = page
        .find(&format!("id=\"tab-{id}\""))
        .unwrap_or_else(|| panic!("no tab {id}"));
    let end = start + page[start..].find("</section>").expect("the panel's end");
    &page[start..end]
}

#[test]
fn the_gpu_tab_has_the_devices_the_memory_and_what_the_cuda_probes_saw() {
    let mut report = synthesized(0, 0);
    report["gpu"] = gpu_section();
    // A second library, probed at the start (the sample's was mapped later).
    let mut driver = report["gpu"]["cuda"]["libraries"][0].clone();
    driver["module"] = json!("libcuda.so.1");
    driver["api"] = json!("driver");
    driver["probed_at"] = json!(0.0);
    report["gpu"]["cuda"]["libraries"]
        .as_array_mut()
        .expect("the libraries")
        .push(driver);
    assert_eq!(
        tabs(&report).last(),
        Some(&Tab {
            id: "gpu",
            title: "GPU"
        })
    );
    let page = render(&report);
    assert!(page.contains("<button class=\"tab\" data-tab=\"gpu\">GPU</button>"));
    let gpu = panel(&page, "gpu");
    for needle in [
        // The device and the target's memory, with its source.
        "NVIDIA H100 80GB HBM3",
        "GPU-5f1e",
        "550.54.15",
        "6.0 GiB (7.0 GiB) of 79.6 GiB",
        "61 °C",
        "250.5 W",
        "1980 MHz / —",
        // Its PCIe, throttling and XID errors.
        "1.4 GiB/s / 238.4 MiB/s",
        "25.0% (sw_power_cap)",
        "<td class=\"num\">0</td><td>79 at 3.50 s</td>",
        "38.0%",
        "5.0 GiB at the end, 6.0 GiB peak, trend increasing",
        "NVML (the driver&#39;s per-process accounting)",
        // The libraries, the later one marked.
        "<b>libcudart.so.12</b> runtime · <b>mapped later</b>: probed at 500.00 ms",
        "<b>libcuda.so.1</b> driver · probed at the start",
        "/opt/cuda/libcudart.so.12",
        "emulated at +4",
        // The totals and the verdict, in the memory tab's colours.
        "<span class=\"sev sev-high\">leak detected</span>",
        "(method: reachability)",
        "11.0 MiB in 35 block(s)",
        "10.0 MiB in 15 block(s) (device 10.0 MiB in 15 block(s))",
        "1.2 MiB in 5 block(s)",
        "<span class=\"sev sev-low\">low</span> <b>reachable</b> keep_buffers · cudaMalloc (device)",
        "keep_buffers (gpu_victim+0x1234)",
        // Copies, kernels, syncs and failed calls, with what charged them.
        "<td>cudaMemcpy</td><td>host to device</td>",
        "<summary>copy_in</summary>",
        "8.0 MiB",
        "vector_add",
        "not GPU time",
        "cudaDeviceSynchronize",
        "<summary>synchronize</summary>",
        "60.00 ms",
        "cudaErrorMemoryAllocation (2)",
        "<summary>too_big</summary>",
        "on the Errors tab",
        "host-side times",
    ] {
        assert!(gpu.contains(needle), "no {needle} in the GPU tab:\n{gpu}");
    }
    // Two rows a device, one a copy, kernel, sync and failed call; a card a library and a
    // site.
    assert_eq!(gpu.matches("<details class=\"site\">").count(), 3);
    assert_eq!(gpu.matches("<tr><td").count(), 2 + 2 + 1 + 1 + 1 + 1);
}

#[test]
fn a_report_without_a_gpu_section_has_no_gpu_tab() {
    let mut report = synthesized(1, 1);
    let page = render(&report);
    assert!(!page.contains("data-tab=\"gpu\"") && !page.contains("id=\"tab-gpu\""));
    report["gpu"] = Value::Null;
    assert!(!tabs(&report).iter().any(|t| t.id == "gpu"));
    assert!(!render(&report).contains("id=\"tab-gpu\""));
}

#[test]
fn the_gpu_tab_says_why_nvml_could_not_run() {
    let mut report = synthesized(0, 0);
    report["gpu"] = json!({
        "driver_version": "", "interval": 1.0, "samples": 0, "devices": [],
        "gpu_memory": {"allocated": 0, "peak": 0, "trend": "stable", "source": "cuda"},
        "nvml_unavailable": "no NVIDIA driver <libnvidia-ml.so.1: not found>"
    });
    let page = render(&report);
    let gpu = panel(&page, "gpu");
    assert!(
        gpu.contains(
            "NVML could not run: <b>no NVIDIA driver &lt;libnvidia-ml.so.1: not found&gt;</b>"
        ),
        "{gpu}"
    );
    assert!(!gpu.contains("<th>device</th>"), "no devices table: {gpu}");
    assert!(gpu.contains("the CUDA probes (the device allocations outstanding"));
    assert!(gpu.contains("The target mapped no CUDA library"));
}

#[test]
fn the_gpu_tab_escapes_what_the_target_named_and_says_when_it_did_not_scan() {
    let mut report = synthesized(0, 0);
    report["gpu"] = gpu_section();
    let cuda = &mut report["gpu"]["cuda"];
    cuda["kernels"][0]["name"] = json!("<script>alert(1)</script>");
    cuda["errors"][0]["function"] = json!("f<T>");
    cuda["allocations"]["method"] = json!("outstanding");
    cuda["allocations"]["detected"] = json!(false);
    cuda["allocations"]["scan_reason"] = json!("the target <exited> first");
    cuda["sites"][0]["verdict"] = json!("definitely_lost");
    let page = render(&report);
    let gpu = panel(&page, "gpu");
    assert!(!gpu.contains("<script>alert"), "an unescaped kernel name");
    assert!(gpu.contains("&lt;script&gt;alert(1)&lt;/script&gt;"));
    assert!(gpu.contains("<summary>f&lt;T&gt;</summary>"));
    assert!(gpu.contains("<span class=\"sev sev-none\">not scanned</span>"));
    assert!(gpu.contains("the target &lt;exited&gt; first"));
    assert!(
        !gpu.contains("definitely lost</th>"),
        "no scan, no lost tallies"
    );
    assert!(gpu.contains("<span class=\"sev sev-high\">high</span> <b>definitely lost</b>"));
}

#[test]
fn a_failed_cuda_call_names_its_group_on_the_errors_tab() {
    let mut report = synthesized(0, 2);
    report["gpu"] = gpu_section();
    let events = report["errors"]["events"]
        .as_array_mut()
        .expect("the events");
    events[0]["source"] = json!("cuda");
    events[0]["pattern"] = json!("CUDA_OUT_OF_MEMORY");
    events[0]["message"] = json!("cudaMalloc(4294967296 bytes) = cudaErrorMemoryAllocation (2)");
    // Another call's failure, and a syscall's: not this one's group.
    events[1]["source"] = json!("cuda");
    events[1]["pattern"] = json!("CUDA_ERROR");
    events[1]["message"] = json!("cuMemAlloc_v2(64 bytes) = CUDA_ERROR_INVALID_VALUE (1)");
    let page = render(&report);
    let gpu = panel(&page, "gpu");
    assert!(
        gpu.contains("<code class=\"pattern\">CUDA_OUT_OF_MEMORY</code>"),
        "{gpu}"
    );
    assert!(!gpu.contains("CUDA_ERROR<"), "{gpu}");
    // Without the errors family, the tab says so.
    report["errors"] = Value::Null;
    let page = render(&report);
    assert!(panel(&page, "gpu").contains("The errors family was not attached"));
}
