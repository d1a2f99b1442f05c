//! `profiler demo`: the bundled model-serving workload at `--level full`, and each fault it
//! carries found by its family.

use profiler_tests::{Report, TempDir, process::profile, require_root};

#[test]
fn the_demo_shows_each_fault_it_carries() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let html = dir.path().join("demo.html");
    let outcome = profile([
        "demo",
        "--duration",
        "2",
        "--json",
        json.to_str().unwrap(),
        "--html",
        html.to_str().unwrap(),
    ]);
    outcome.expect_success();
    // It ends with the HTML report, and says where.
    let page = std::fs::read_to_string(&html).expect("the demo writes its HTML report");
    assert!(page.contains("profiler_user::demo::handle_request"));
    assert!(
        outcome
            .stderr
            .contains(&format!("HTML report written to {}", html.display())),
        "{}",
        outcome.stderr
    );
    let report = Report::read(&json);
    let context = &outcome.stdout;

    // A slow function, and a slow request in 64 (5 ms in postprocess): its p99.
    let load = report.function("profiler_user::demo::load_model");
    assert_eq!(load.total_calls(), 1);
    let request = report.function("profiler_user::demo::handle_request");
    assert!(request.total_calls() > 200, "{context}");
    let p99 = request.0["percentiles"]["p99"].as_f64().unwrap();
    assert!(p99 >= 0.004, "p99 {p99}\n{context}");

    // The leak: one 256-byte block in 16 requests, definitely lost (what the stack shows above
    // the allocator depends on the build: the standard library keeps no frame pointers); the
    // sessions are reachable.
    let detection = report.at("/memory/memory_leak_detection");
    assert_eq!(detection["method"], "reachability", "{detection:#}");
    let (bytes, count) = (
        detection["definitely_lost"]["bytes"].as_u64().unwrap(),
        detection["definitely_lost"]["count"].as_u64().unwrap(),
    );
    assert!(count > 10, "{detection:#}");
    assert_eq!(bytes, count * 256, "{detection:#}");
    assert!(detection["reachable"]["count"].as_u64().unwrap() > count / 2);

    // The contended lock, named, and the two lock orders: a potential deadlock.
    let threads = report.threads();
    let metrics = threads.lock_named("profiler_user::demo::METRICS_LOCK");
    assert!(metrics.contended() > 0, "{:#}", metrics.json());
    // Some record waited behind a 4 ms flush.
    let max_wait = metrics.json()["max_wait"].as_f64().unwrap();
    assert!(max_wait >= 0.001, "{:#}", metrics.json());
    assert!(!threads.potential().is_empty(), "{context}");

    // The two errors a model server runs into, classified.
    let errors = report.at("/errors").to_string();
    for pattern in ["CUDA_OUT_OF_MEMORY", "CONNECTION_REFUSED"] {
        assert!(errors.contains(pattern), "{pattern}\n{context}");
    }

    // Hot code for the flame graph: matmul, with whole stacks.
    assert!(context.contains("profiler_user::demo::matmul"), "{context}");
    assert!(report.cpu().complete_percent() >= 90.0, "{context}");
}
