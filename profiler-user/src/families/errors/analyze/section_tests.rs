//! The section from events, incident links and the kernel's counts, and its text summary.

use super::*;
use crate::report::errors::ErrorContext;

const S: u64 = 1_000_000_000;

fn event(id: u64, pattern: Option<&str>, severity: Severity, t: f64, source: Source) -> ErrorEvent {
    ErrorEvent {
        id,
        caused_by: None,
        led_to: Vec::new(),
        error_type: "E".into(),
        category: Category::System,
        severity,
        pattern: pattern.map(String::from),
        description: None,
        message: format!("message at {t}"),
        solutions: vec!["do this".into()],
        prevention: vec![],
        timestamp: t,
        tid: 1,
        pid: 1,
        command: Vec::new(),
        source,
        context: ErrorContext::default(),
    }
}

fn printed(id: u64, pattern: Option<&str>, severity: Severity, t: f64) -> ErrorEvent {
    event(id, pattern, severity, t, Source::Output)
}

fn failures(
    syscall: &str,
    errno: i32,
    class: Class,
    count: u64,
    first_half: f64,
    exact: bool,
) -> ClassCount {
    ClassCount {
        kind: (syscall.into(), errno),
        class,
        count,
        first_half,
        first_ns: S,
        last_ns: 9 * S,
        exact,
    }
}

fn model_not_found() -> Class {
    Class::Error {
        pattern: Some("MODEL_NOT_FOUND".into()),
        category: Category::ModelLoading,
        severity: Severity::High,
    }
}

#[test]
fn trends() {
    assert_eq!(trend(1.0, 0.0, 1, 10.0), Trend::Single);
    assert_eq!(trend(1.0, 1.0, 2, 10.0), Trend::Stable);
    assert_eq!(trend(0.0, 3.0, 3, 10.0), Trend::Increasing);
    assert_eq!(trend(3.0, 0.0, 3, 10.0), Trend::Decreasing);
    assert_eq!(trend(2.0, 0.0, 2, 0.0), Trend::Stable);
    // A steady failure, 5,000 and 5,000, whatever was detailed.
    assert_eq!(trend(5_000.0, 5_000.0, 10_000, 10.0), Trend::Stable);
}

#[test]
fn bounded_events_and_counts() {
    let mut agg = Aggregator::new(3);
    for i in 0..5 {
        agg.add(printed(i, Some("P"), Severity::High, i as f64), None);
    }
    agg.add(printed(5, None, Severity::Low, 5.0), None);
    agg.add_benign_signal(11);
    let eagain = Class::Benign("BENIGN_WOULD_BLOCK".into());
    let s = agg.section(10.0, 0, &[failures("read", 11, eagain, 2, 1.0, true)]);
    assert_eq!((s.total, s.dropped, s.events.len()), (6, 3, 3));
    assert_eq!(s.events[0].timestamp, 3.0);
    assert_eq!(s.patterns.len(), 1);
    let p = &s.patterns[0];
    assert_eq!(
        (
            p.count,
            p.occurrences,
            p.exact,
            p.first_seen,
            p.last_seen,
            p.trend
        ),
        (5, 5, true, 0.0, 4.0, Trend::Decreasing)
    );
    assert_eq!(s.by_severity["high"], 5);
    assert_eq!(s.by_category["system"], 6);
    assert_eq!(
        s.by_source,
        BTreeMap::from([
            ("exit".into(), 0),
            ("output".into(), 6),
            ("signal".into(), 0),
            ("syscall".into(), 0)
        ])
    );
    assert_eq!(
        s.benign,
        vec![BenignCount {
            syscall: "read".into(),
            errno: "EAGAIN".into(),
            pattern: "BENIGN_WOULD_BLOCK".into(),
            count: 2
        }]
    );
    assert_eq!(s.benign_signals[0].signal, "SIGSEGV");
}

/// 10,000 failures of a kind, one of them detailed with the traceback and the exit it led to:
/// 10,000 incidents, the traceback and the exit in the first one.
#[test]
fn failed_syscalls_count_from_the_kernel_and_their_consequences_join_them() {
    let mut agg = Aggregator::new(100);
    agg.add(
        event(
            0,
            Some("MODEL_NOT_FOUND"),
            Severity::High,
            1.0,
            Source::Syscall,
        ),
        None,
    );
    let tb = printed(1, Some("MODEL_NOT_FOUND"), Severity::High, 1.001);
    let joined = Joined {
        root: 0,
        new_pattern: false,
        raised: None,
    };
    agg.add(tb, Some(&joined));
    let exit = event(2, None, Severity::Medium, 9.5, Source::Exit);
    agg.add(exit, Some(&joined));
    let counts = [failures(
        "openat",
        2,
        model_not_found(),
        10_000,
        5_000.0,
        true,
    )];
    let s = agg.section(10.0, 0, &counts);
    assert_eq!((s.total, s.exact), (10_000, true));
    assert_eq!(
        s.by_category,
        BTreeMap::from([("model_loading".into(), 10_000)])
    );
    assert_eq!(s.by_severity, BTreeMap::from([("high".into(), 10_000)]));
    assert_eq!(
        (
            s.by_source["syscall"],
            s.by_source["output"],
            s.by_source["exit"]
        ),
        (10_000, 1, 1)
    );
    let p = &s.patterns[0];
    assert_eq!(
        (p.id.as_str(), p.count, p.occurrences, p.exact, p.trend),
        ("MODEL_NOT_FOUND", 10_000, 10_001, true, Trend::Stable)
    );
    assert_eq!((p.first_seen, p.last_seen), (1.0, 9.0));
    let links: Vec<(u64, Option<u64>, &[u64])> = s
        .events
        .iter()
        .map(|e| (e.id, e.caused_by, e.led_to.as_slice()))
        .collect();
    assert_eq!(
        links,
        [
            (0, None, &[1, 2][..]),
            (1, Some(0), &[][..]),
            (2, Some(0), &[][..])
        ]
    );
}

/// A failure of low severity that ends in a critical crash is one critical incident; the
/// crash's pattern counts it too.
#[test]
fn an_incident_is_counted_at_its_highest_severity_and_in_each_pattern() {
    let mut agg = Aggregator::new(100);
    agg.add(printed(0, Some("RUST_PANIC"), Severity::High, 1.0), None);
    let abort = event(1, Some("ABORT"), Severity::Critical, 1.1, Source::Signal);
    let joined = Joined {
        root: 0,
        new_pattern: true,
        raised: Some((Severity::High, Severity::Critical)),
    };
    agg.add(abort, Some(&joined));
    let s = agg.section(2.0, 0, &[]);
    assert_eq!(s.total, 1);
    assert_eq!(s.by_severity, BTreeMap::from([("critical".into(), 1)]));
    let counts: Vec<(&str, u64, u64)> = s
        .patterns
        .iter()
        .map(|p| (p.id.as_str(), p.count, p.occurrences))
        .collect();
    assert_eq!(counts, [("ABORT", 1, 1), ("RUST_PANIC", 1, 1)]);
}

/// Failures that were not detailed, split over two patterns by the examples: not exact.
#[test]
fn a_split_count_says_it_is_not_exact() {
    let agg = Aggregator::new(10);
    let other = Class::Error {
        pattern: Some("OTHER".into()),
        category: Category::System,
        severity: Severity::Low,
    };
    let counts = [
        failures("openat", 2, model_not_found(), 750, 10.0, false),
        failures("openat", 2, other, 250, 240.0, false),
        failures("open", 2, model_not_found(), 5, 5.0, true),
    ];
    let s = agg.section(10.0, 0, &counts);
    let got: Vec<(&str, u64, bool, Trend)> = s
        .patterns
        .iter()
        .map(|p| (p.id.as_str(), p.count, p.exact, p.trend))
        .collect();
    assert_eq!(
        got,
        [
            ("MODEL_NOT_FOUND", 755, false, Trend::Increasing),
            ("OTHER", 250, false, Trend::Decreasing)
        ]
    );
    assert_eq!(s.by_severity["high"], 755);
    assert!(!s.exact);
    assert_eq!(s.by_category["system"], 250);
}

#[test]
fn occurrence_sample_is_bounded() {
    let mut agg = Aggregator::new(1);
    for i in 0..20_000 {
        agg.add(
            printed(i, Some("P"), Severity::Low, i as f64 / 1000.0),
            None,
        );
    }
    let acc = &agg.patterns["P"];
    assert!(acc.times.len() < MAX_TIMES);
    let s = agg.section(20.0, 0, &[]);
    assert_eq!(
        (s.patterns[0].count, s.patterns[0].trend),
        (20_000, Trend::Stable)
    );
}

#[test]
fn summary_is_most_severe_first_and_hides_benign() {
    let mut agg = Aggregator::new(100);
    agg.add(printed(0, Some("LOW_ONE"), Severity::Low, 1.0), None);
    agg.add(printed(1, Some("LOW_ONE"), Severity::Low, 2.0), None);
    agg.add(printed(2, Some("BAD"), Severity::Critical, 3.0), None);
    let eagain = Class::Benign("BENIGN_WOULD_BLOCK".into());
    let s = agg.section(4.0, 0, &[failures("read", 11, eagain, 1, 1.0, true)]);
    let lines = summary_lines(&s);
    assert_eq!(lines[0], "errors: 3 (1 critical, 2 low)");
    assert!(
        lines[1].starts_with("  [critical] BAD x1 (system) at 3.000s: message at 3"),
        "{}",
        lines[1]
    );
    assert_eq!(lines[2], "      fix: do this");
    assert!(lines[3].starts_with("  [low] LOW_ONE x2"));
    assert!(!lines.join("\n").contains("EAGAIN"));
    assert_eq!(summary_lines(&ErrorsSection::default()), ["errors: none"]);
}
