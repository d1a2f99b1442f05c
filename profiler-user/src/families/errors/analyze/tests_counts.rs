//! End-to-end tests of the counts: the kernel's exact counts with the detailed failures as
//! examples, the kinds never detailed, and incidents.

use std::collections::BTreeMap;

use super::*;

/// The kernel's counts read every 200 ms over the 10 s run: `per_s` failures a second of each
/// kind, from the start.
fn steady(kinds: &[(&str, &str, u64)]) -> FailureSeries {
    let mut series = FailureSeries::default();
    series.start(START);
    for t in (200..=10_000).step_by(200) {
        let counts: BTreeMap<(String, i32), u64> = kinds
            .iter()
            .map(|(syscall, errno, per_s)| {
                let errno = linux::errno_value(errno).unwrap();
                ((syscall.to_string(), errno), per_s * t / 1000)
            })
            .collect();
        series.record(START + t * MS, &counts);
    }
    series
}

/// 1,000 failed opens a second for 10 s, of which the kernel detailed the first 256 and then
/// 16 a second: every one of the 10,000 counts, and the trend is that of all of them.
#[test]
fn a_steady_failure_past_the_detail_budget_is_counted_exactly_and_stable() {
    let mut a = analyzer();
    a.set_failure_series(steady(&[("openat", "ENOENT", 1000)]));
    let missing = Some("/nonexistent/models/model.pt");
    for i in 0..256 {
        syscall(&mut a, i, "openat", "ENOENT", missing);
    }
    for t in (256..10_000).step_by(63) {
        syscall(&mut a, t, "openat", "ENOENT", missing);
    }
    let s = finish(a);
    assert_eq!((s.total, s.exact), (10_000, true));
    assert_eq!(s.by_source["syscall"], 10_000);
    assert_eq!(s.by_category["model_loading"], 10_000);
    let p = &s.patterns[0];
    assert_eq!(
        (p.id.as_str(), p.count, p.occurrences, p.exact, p.trend),
        ("MODEL_NOT_FOUND", 10_000, 10_000, true, Trend::Stable)
    );
    // The detailed ones are the examples.
    assert_eq!(s.events.len(), 256 + 155);
}

/// The same failures counted from the detailed ones alone would read as decreasing: the burst
/// is all at the start.
#[test]
fn without_the_counts_the_burst_makes_a_steady_failure_look_decreasing() {
    let mut a = analyzer();
    for i in 0..256 {
        syscall(&mut a, i, "openat", "ENOENT", Some("/m/model.pt"));
    }
    for t in (256..10_000).step_by(63) {
        syscall(&mut a, t, "openat", "ENOENT", Some("/m/model.pt"));
    }
    let s = finish(a);
    assert_eq!((s.total, s.patterns[0].trend), (411, Trend::Decreasing));
}

/// EAGAIN, EINTR and EINPROGRESS are never detailed: classified from (syscall, errno), listed
/// in `benign` with the patterns that say they are expected, and counted exactly.
#[test]
fn kinds_never_detailed_are_classified_and_counted() {
    let mut a = analyzer();
    a.set_failure_series(steady(&[
        ("read", "EAGAIN", 500),
        ("read", "EINTR", 3),
        ("connect", "EINPROGRESS", 1),
        ("sendto", "EINPROGRESS", 1),
    ]));
    let s = finish(a);
    let benign: Vec<(&str, &str, &str, u64)> = s
        .benign
        .iter()
        .map(|b| {
            (
                b.syscall.as_str(),
                b.errno.as_str(),
                b.pattern.as_str(),
                b.count,
            )
        })
        .collect();
    assert_eq!(
        benign,
        [
            ("read", "EAGAIN", "BENIGN_WOULD_BLOCK", 5_000),
            ("read", "EINTR", "BENIGN_INTERRUPTED", 30),
            ("connect", "EINPROGRESS", "BENIGN_CONNECT_IN_PROGRESS", 10)
        ]
    );
    // EINPROGRESS from anything but connect is no expected failure: an error without a
    // pattern, counted, with no example.
    assert_eq!((s.total, s.by_severity["low"]), (10, 10));
    assert!(s.events.is_empty() && s.patterns.is_empty());
}

/// The failed open of a model file, the traceback it causes and the exit it ends in: one
/// incident, its root the open.
#[test]
fn a_missing_model_is_one_incident() {
    let mut a = analyzer();
    syscall(&mut a, 5, "openat", "ENOENT", Some("/models/missing.pt"));
    out(&mut a, 7, 6, MODEL_TRACEBACK);
    a.on_exit(ExitEvent {
        timestamp_ns: START + 40 * MS,
        status: 1 << 8,
    });
    let s = finish(a);
    assert_eq!(s.total, 1);
    assert_eq!(s.by_category, BTreeMap::from([("model_loading".into(), 1)]));
    assert_eq!(s.by_severity, BTreeMap::from([("high".into(), 1)]));
    assert_eq!(
        (
            s.by_source["syscall"],
            s.by_source["output"],
            s.by_source["exit"]
        ),
        (1, 1, 1)
    );
    let got: Vec<(Source, u64, Option<u64>, &[u64])> = s
        .events
        .iter()
        .map(|e| (e.source, e.id, e.caused_by, e.led_to.as_slice()))
        .collect();
    assert_eq!(
        got,
        [
            (Source::Syscall, 0, None, &[1, 2][..]),
            (Source::Output, 1, Some(0), &[][..]),
            (Source::Exit, 2, Some(0), &[][..])
        ]
    );
    let p = &s.patterns[0];
    assert_eq!(
        (p.id.as_str(), p.count, p.occurrences),
        ("MODEL_NOT_FOUND", 1, 2)
    );
    let summary = summary_lines(&s);
    assert_eq!(summary[0], "errors: 1 (1 high)");
    assert!(
        summary[1].starts_with("  [high] MODEL_NOT_FOUND x1"),
        "{summary:?}"
    );
    assert_eq!(summary[3], "      led to: FileNotFoundError, exit(1)");
    assert_eq!(summary.len(), 4, "{summary:?}");
}

/// A traceback that names another path, or comes too late, is an incident of its own; a
/// failure with no printed consequence is one too.
#[test]
fn unrelated_errors_stay_apart() {
    let mut a = analyzer();
    syscall(&mut a, 5, "openat", "ENOENT", Some("/models/other.pt"));
    out(&mut a, 1, 6, MODEL_TRACEBACK);
    syscall(&mut a, 100, "openat", "ENOENT", Some("/models/missing.pt"));
    out(&mut a, 2, 2_200, MODEL_TRACEBACK);
    let s = finish(a);
    assert_eq!(s.total, 4);
    assert!(
        s.events.iter().all(|e| e.caused_by.is_none()),
        "{:#?}",
        s.events
    );
}

/// A Rust panic that aborts: the fatal SIGABRT (and the exit status it leaves, which is no
/// event of its own) is its end.
#[test]
fn a_panic_and_the_abort_it_ends_in_are_one_incident() {
    let mut a = analyzer();
    out(
        &mut a,
        1,
        0,
        "thread 'main' panicked at src/main.rs:4:5:\nindex out of bounds\n",
    );
    signal(&mut a, 10, 6, true);
    a.on_exit(ExitEvent {
        timestamp_ns: START + 11 * MS,
        status: 6 | 0x80,
    });
    let s = finish(a);
    assert_eq!(s.total, 1);
    assert_eq!(s.by_severity, BTreeMap::from([("high".into(), 1)]));
    assert_eq!(s.events.len(), 2);
    assert_eq!(s.events[1].caused_by, Some(s.events[0].id));
    let counts: BTreeMap<&str, u64> = s
        .patterns
        .iter()
        .map(|p| (p.id.as_str(), p.count))
        .collect();
    assert_eq!(counts, BTreeMap::from([("ABORT", 1), ("RUST_PANIC", 1)]));
}

/// Python's faulthandler prints its dump from the SIGSEGV handler, then the signal kills the
/// process: one incident, as critical as the segfault.
#[test]
fn a_fatal_python_error_and_its_segfault_are_one_critical_incident() {
    let mut a = analyzer();
    signal(&mut a, 0, 11, false);
    out(
        &mut a,
        1,
        1,
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n  File \"/app/x.py\", line 3 in <module>\n",
    );
    signal(&mut a, 3, 11, true);
    let s = finish(a);
    assert_eq!(s.total, 1, "{:#?}", s.events);
    assert_eq!(s.by_severity, BTreeMap::from([("critical".into(), 1)]));
    let sources: Vec<(Source, Option<u64>)> =
        s.events.iter().map(|e| (e.source, e.caused_by)).collect();
    assert_eq!(sources, [(Source::Output, None), (Source::Signal, Some(0))]);
}
