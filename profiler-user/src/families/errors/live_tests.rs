//! The live view of the errors family: the same analysis as the report, on copies, so that the
//! report at the end is the one a run without the live view would give.

use std::collections::BTreeMap;

use super::*;
use crate::family_testing::TestReporting;

/// CLOCK_MONOTONIC when the (pretend) probes were attached, ns.
const START: u64 = 1_000_000_000_000;
const MS: u64 = 1_000_000;
const MISSING: &str = "/nonexistent/models/model.pt";

/// The family as its probes leave it after `failed` opens of a missing model, one a ms, of
/// which the kernel detailed the first 256 (in `raw`), and its counts read at the last one.
fn family(failed: u64) -> Errors {
    let mut errors = Errors::new(PatternDb::builtin(), None, None);
    errors.series.start(START);
    add_failures(&mut errors, 0, failed);
    errors
}

/// Opens `from..to` (their numbers: the n-th at n ms), and the kernel's count after them.
fn add_failures(errors: &mut Errors, from: u64, to: u64) {
    for n in from..to.min(256) {
        errors.raw.push(Raw::Syscall {
            tid: 7,
            ts: START + n * MS,
            syscall: "openat".into(),
            errno: libc::ENOENT,
            arg: Some(MISSING.into()),
            stack_id: None,
            func: None,
            deferred: false,
            python: 0,
        });
    }
    errors.series.record(START + to * MS, &counts(to));
}

/// The kernel's count of failed opens.
fn counts(n: u64) -> BTreeMap<Kind, u64> {
    BTreeMap::from([(("openat".to_string(), libc::ENOENT), n)])
}

/// MODEL_NOT_FOUND's count and occurrences, and the section's total.
fn model_not_found(s: &ErrorsSection) -> (u64, u64, u64) {
    let p = s
        .patterns
        .iter()
        .find(|p| p.id == "MODEL_NOT_FOUND")
        .unwrap_or_else(|| panic!("no MODEL_NOT_FOUND in {:?}", s.patterns));
    (p.count, p.occurrences, s.total)
}

/// The report's section: what `report` analyzes, taken from the family.
fn final_section(errors: &mut Errors, r: &mut TestReporting, end_ns: u64) -> ErrorsSection {
    let input = errors.take_input().expect("not reported yet");
    errors.section(input, &[], &mut r.ctx(START, end_ns))
}

/// A live snapshot counts what failed so far, with the kernel's count read then (past the last
/// tick's), classified as the report classifies it; made twice, it is the same, and the family
/// keeps every record and count for the report.
#[test]
fn a_live_snapshot_counts_the_failures_so_far_and_takes_nothing() {
    let mut r = TestReporting::new();
    let errors = family(300);
    let now = START + 320 * MS;
    let live = errors
        .live_section(Some(counts(310)), now, &[], &mut r.ctx(START, now))
        .expect("a snapshot");
    // 310: the count read at the snapshot, 10 more than the family's last tick saw.
    assert_eq!(model_not_found(&live), (310, 310, 310));
    assert_eq!(live.events.len(), 256);
    let again = errors
        .live_section(Some(counts(310)), now, &[], &mut r.ctx(START, now))
        .expect("a snapshot");
    assert_eq!(again, live);
    assert_eq!(errors.raw.len(), 256);
    assert_eq!(errors.series.totals(), counts(300));
    assert!(errors.db.is_some());
    // Unreadable counts: the last tick's.
    let stale = errors
        .live_section(None, now, &[], &mut r.ctx(START, now))
        .expect("a snapshot");
    assert_eq!(model_not_found(&stale), (300, 300, 300));
}

/// With snapshots made along the way, the report at the end is exactly that of a run without
/// them: the whole run's count, every example.
#[test]
fn the_report_after_live_snapshots_is_the_whole_run() {
    let mut r = TestReporting::new();
    let mut watched = family(100);
    let mut unwatched = family(100);
    for (ms, count) in [(150, 120), (400, 300)] {
        let now = START + ms * MS;
        let live = watched
            .live_section(Some(counts(count)), now, &[], &mut r.ctx(START, now))
            .expect("a snapshot");
        assert_eq!(model_not_found(&live).0, count);
    }
    for errors in [&mut watched, &mut unwatched] {
        add_failures(errors, 100, 1000);
    }
    let end = START + 1_000 * MS;
    let watched = final_section(&mut watched, &mut r, end);
    let unwatched = final_section(&mut unwatched, &mut r, end);
    assert_eq!(model_not_found(&watched), (1000, 1000, 1000));
    assert_eq!(watched, unwatched);
}

/// Once the family has reported there is nothing to show live.
#[test]
fn no_live_snapshot_after_the_report() {
    let mut r = TestReporting::new();
    let mut errors = family(10);
    let end = START + 10 * MS;
    final_section(&mut errors, &mut r, end);
    assert!(
        errors
            .live_section(Some(counts(10)), end, &[], &mut r.ctx(START, end))
            .is_none()
    );
}
