//! The failure series, and kinds' counts over the classes of their failures, on synthetic reads
//! and events.

use super::*;

const MS: u64 = 1_000_000;

fn kind(syscall: &str, errno: i32) -> Kind {
    (syscall.to_string(), errno)
}

fn error(pattern: &str) -> Class {
    Class::Error {
        pattern: Some(pattern.to_string()),
        category: Category::ModelLoading,
        severity: Severity::High,
    }
}

fn benign(pattern: &str) -> Class {
    Class::Benign(pattern.to_string())
}

/// Reads every 200 ms from 0 to `end_ms` of a kind failing `per_ms` times a millisecond from
/// `from_ms` on.
fn steady(k: &Kind, from_ms: u64, end_ms: u64, per_ms: u64) -> FailureSeries {
    let mut s = FailureSeries::default();
    s.start(0);
    for t in (200..=end_ms).step_by(200) {
        let n = t.saturating_sub(from_ms) * per_ms;
        let counts = if n == 0 {
            BTreeMap::new()
        } else {
            BTreeMap::from([(k.clone(), n)])
        };
        s.record(t * MS, &counts);
    }
    s
}

fn no_classify(_: &str, _: i32) -> Class {
    panic!("every kind here has detailed failures")
}

#[test]
fn a_steady_count_is_half_at_the_middle() {
    let k = kind("openat", 2);
    let s = steady(&k, 0, 10_000, 1);
    assert_eq!(s.totals()[&k], 10_000);
    assert_eq!(s.get(&k).unwrap().at(5_000 * MS), 5_000.0);
    assert_eq!(s.get(&k).unwrap().at(5_100 * MS), 5_100.0);
    // Before the first read, nothing; after the last, the total.
    assert_eq!(s.get(&k).unwrap().at(0), 0.0);
    assert_eq!(s.get(&k).unwrap().at(20_000 * MS), 10_000.0);
}

#[test]
fn a_count_stays_flat_between_reads_that_saw_no_change() {
    let k = kind("read", 11);
    let mut s = FailureSeries::default();
    s.start(0);
    s.record(200 * MS, &BTreeMap::new());
    s.record(400 * MS, &BTreeMap::new());
    s.record(600 * MS, &BTreeMap::from([(k.clone(), 100)]));
    s.record(800 * MS, &BTreeMap::from([(k.clone(), 100)]));
    s.record(1_000 * MS, &BTreeMap::from([(k.clone(), 100)]));
    s.record(1_200 * MS, &BTreeMap::from([(k.clone(), 300)]));
    let series = s.get(&k).unwrap();
    // Zero up to the read at 400 ms, which still saw none.
    assert_eq!(series.at(300 * MS), 0.0);
    assert_eq!(series.at(500 * MS), 50.0);
    // 100 from 600 ms to the read at 1 s, which still saw 100.
    assert_eq!(series.at(900 * MS), 100.0);
    assert_eq!(series.at(1_100 * MS), 200.0);
    assert_eq!(series.first_last(), Some((600 * MS, 1_200 * MS)));
}

#[test]
fn a_long_series_is_thinned_and_keeps_its_ends() {
    let k = kind("read", 11);
    let s = steady(&k, 0, 2_000_000, 1);
    let series = s.get(&k).unwrap();
    assert!(series.points.len() <= MAX_POINTS, "{}", series.points.len());
    assert_eq!(series.total(), 2_000_000);
    assert_eq!(series.points[0], (0, 0));
    let mid = series.at(1_000_000 * MS);
    assert!((mid - 1_000_000.0).abs() < 1_000.0, "{mid}");
}

#[test]
fn split_is_whole_and_proportional() {
    assert_eq!(split(10, &[1, 1, 1]), [4, 3, 3]);
    assert_eq!(split(10, &[3, 1]), [8, 2]);
    assert_eq!(split(0, &[3, 1]), [0, 0]);
    assert_eq!(split(5, &[0, 0]), [5, 0]);
    assert_eq!(split(7, &[]), Vec::<u64>::new());
    let big = split(u64::MAX / 2, &[u64::MAX / 4, u64::MAX / 4]);
    assert_eq!(big.iter().sum::<u64>(), u64::MAX / 2);
}

/// The test's case: a target fails 1,000 times a second for 10 s; the kernel details the first
/// 256 and then 16 a second. Every failure is counted, in its class, exactly.
#[test]
fn a_kind_past_its_burst_counts_every_failure_in_the_class_of_its_examples() {
    let k = kind("openat", 2);
    let series = steady(&k, 0, 10_000, 1);
    let mut obs = Observations::default();
    // The dynamic loader's probes first (benign), then the target's failures.
    for i in 0..3 {
        obs.observe("openat", 2, i * MS / 10, benign("BENIGN_LIBRARY_SEARCH"));
    }
    for i in 0..253 {
        obs.observe("openat", 2, MS + i * MS, error("MODEL_NOT_FOUND"));
    }
    for t in (300..10_000).step_by(63) {
        obs.observe("openat", 2, t * MS, error("MODEL_NOT_FOUND"));
    }
    let counts = apportion(&obs, &series, 256, 5_000 * MS, no_classify);
    assert_eq!(counts.len(), 2);
    let b = &counts[0];
    assert_eq!(
        (&b.class, b.count, b.exact),
        (&benign("BENIGN_LIBRARY_SEARCH"), 3, true)
    );
    let e = &counts[1];
    assert_eq!(
        (&e.class, e.count, e.exact),
        (&error("MODEL_NOT_FOUND"), 9_997, true)
    );
    // Half of them in each half of the run.
    assert!((e.first_half - 4_997.0).abs() < 1.0, "{}", e.first_half);
    assert_eq!((e.first_ns, e.last_ns), (MS, 9_939 * MS));
}

#[test]
fn the_failures_not_detailed_split_like_the_sample_after_the_burst() {
    let k = kind("openat", 2);
    let mut series = FailureSeries::default();
    series.start(0);
    series.record(10_000 * MS, &BTreeMap::from([(k.clone(), 1_010)]));
    let mut obs = Observations::default();
    // A burst of 4 (all A), then a sample of 3 A and 1 B: 1,002 not detailed, 3:1.
    for i in 0..4 {
        obs.observe("openat", 2, i * MS, error("A"));
    }
    for (t, c) in [(6_000, "A"), (7_000, "B"), (8_000, "A"), (9_000, "A")] {
        obs.observe("openat", 2, t * MS, error(c));
    }
    let counts = apportion(&obs, &series, 4, 5_000 * MS, no_classify);
    let got: Vec<(&Class, u64, bool)> = counts
        .iter()
        .map(|c| (&c.class, c.count, c.exact))
        .collect();
    assert_eq!(
        got,
        [
            (&error("A"), 4 + 3 + 752, false),
            (&error("B"), 1 + 250, false)
        ]
    );
    assert_eq!(counts.iter().map(|c| c.count).sum::<u64>(), 1_010);
}

#[test]
fn a_kind_never_detailed_is_classified_from_syscall_and_errno() {
    let k = kind("read", 11);
    let series = steady(&k, 1_000, 5_000, 2);
    let counts = apportion(
        &Observations::default(),
        &series,
        256,
        2_500 * MS,
        |s, e| {
            assert_eq!((s, e), ("read", 11));
            benign("BENIGN_WOULD_BLOCK")
        },
    );
    assert_eq!(counts.len(), 1);
    let c = &counts[0];
    assert_eq!(
        (&c.class, c.count, c.exact),
        (&benign("BENIGN_WOULD_BLOCK"), 8_000, true)
    );
    assert_eq!(c.first_half, 3_000.0);
    // The reads that first saw it, and first saw its total.
    assert_eq!((c.first_ns, c.last_ns), (1_200 * MS, 5_000 * MS));
}

#[test]
fn without_counts_the_detailed_failures_are_the_count() {
    let mut obs = Observations::default();
    obs.observe("connect", 111, 100 * MS, error("CONNECTION_REFUSED"));
    obs.observe("connect", 111, 7_000 * MS, error("CONNECTION_REFUSED"));
    obs.observe("connect", 111, 8_000 * MS, error("CONNECTION_REFUSED"));
    let counts = apportion(
        &obs,
        &FailureSeries::default(),
        256,
        5_000 * MS,
        no_classify,
    );
    assert_eq!(counts.len(), 1);
    assert_eq!((counts[0].count, counts[0].first_half), (3, 1.0));
}
