//! The grouping of error events into incidents, on synthetic events.

use super::*;

const MS: u64 = 1_000_000;

fn occ(id: u64, source: Source, at_ms: u64) -> Occurrence<'static> {
    Occurrence {
        id,
        source,
        tid: 7,
        timestamp_ns: at_ms * MS,
        path: None,
        errno: None,
        text: "",
        uncaught: false,
        ending: false,
        pattern: None,
        severity: Severity::Medium,
    }
}

/// A failed openat of `path` (ENOENT) on thread 7.
fn openat(id: u64, at_ms: u64, path: &'static str) -> Occurrence<'static> {
    Occurrence {
        path: Some(path),
        errno: Some(2),
        pattern: Some("MODEL_NOT_FOUND"),
        severity: Severity::High,
        ..occ(id, Source::Syscall, at_ms)
    }
}

/// An uncaught Python traceback that says `text` (its path and errno as the analyzer finds
/// them there).
fn traceback(id: u64, at_ms: u64, text: &'static str) -> Occurrence<'static> {
    Occurrence {
        text,
        uncaught: true,
        errno: text.contains("[Errno 2]").then_some(2),
        ..occ(id, Source::Output, at_ms)
    }
}

fn exit(id: u64, at_ms: u64) -> Occurrence<'static> {
    Occurrence {
        tid: 0,
        ending: true,
        ..occ(id, Source::Exit, at_ms)
    }
}

const MISSING: &str = "[Errno 2] No such file or directory: '/models/resnet50.pt'";

#[test]
fn a_failed_open_its_traceback_and_the_exit_are_one_incident() {
    let mut g = Incidents::default();
    assert_eq!(g.group(&openat(0, 10, "/models/resnet50.pt")), None);
    let tb = Occurrence {
        pattern: Some("MODEL_NOT_FOUND"),
        severity: Severity::High,
        ..traceback(1, 12, MISSING)
    };
    assert_eq!(
        g.group(&tb),
        Some(Joined {
            root: 0,
            new_pattern: false,
            raised: None
        })
    );
    // The exit joins through the traceback, and names the root.
    assert_eq!(
        g.group(&exit(2, 40)),
        Some(Joined {
            root: 0,
            new_pattern: false,
            raised: None
        })
    );
}

#[test]
fn a_path_beats_an_errno_and_the_latest_failure_is_the_cause() {
    let mut g = Incidents::default();
    g.group(&openat(0, 10, "/models/resnet50.pt"));
    g.group(&openat(1, 11, "/models/other.pt"));
    g.group(&openat(2, 12, "/models/resnet50.pt"));
    g.group(&openat(3, 13, "/models/third.pt"));
    assert_eq!(g.group(&traceback(4, 14, MISSING)).map(|j| j.root), Some(2));
    // Only the errno named: the latest failure of the thread with that errno.
    let t = traceback(5, 15, "[Errno 2] No such file or directory");
    assert_eq!(g.group(&t).map(|j| j.root), Some(3));
}

#[test]
fn an_errno_alone_needs_the_same_thread() {
    let mut g = Incidents::default();
    g.group(&openat(0, 10, "/a/b.pt"));
    let other_thread = Occurrence {
        tid: 8,
        ..traceback(1, 11, "OSError: [Errno 2] something else")
    };
    assert_eq!(g.group(&other_thread), None);
    // The path names it on any thread.
    let named = Occurrence {
        tid: 8,
        ..traceback(2, 12, "cannot load /a/b.pt")
    };
    assert_eq!(g.group(&named).map(|j| j.root), Some(0));
}

#[test]
fn causes_only_within_their_windows() {
    let mut g = Incidents::default();
    g.group(&openat(0, 0, "/models/resnet50.pt"));
    let late = 1 + CAUSE_WINDOW_NS / MS;
    assert_eq!(g.group(&traceback(1, late, MISSING)), None);
    // The traceback is a root of its own; an exit 5 s after it is still its end, not later.
    let end = late + END_WINDOW_NS / MS;
    assert_eq!(g.group(&exit(2, end)).map(|j| j.root), Some(1));
    assert_eq!(g.group(&exit(3, end + 1)), None);
    let mut g = Incidents::default();
    g.group(&traceback(0, 0, "ValueError: bad"));
    assert_eq!(g.group(&exit(1, 1 + END_WINDOW_NS / MS)), None);
}

#[test]
fn a_cause_comes_before_its_effect() {
    let mut g = Incidents::default();
    // A failure processed before a traceback that began earlier (blocks are complete only
    // when the next line comes) did not cause it.
    g.group(&openat(0, 20, "/models/resnet50.pt"));
    assert_eq!(g.group(&traceback(1, 10, MISSING)), None);
}

#[test]
fn what_is_neither_printed_nor_an_end_starts_its_own_incident() {
    let mut g = Incidents::default();
    g.group(&openat(0, 10, "/models/resnet50.pt"));
    // A second failure of the same path, a signal, a caught exception line with the path:
    // only printed errors are caused by failures, and only ends by uncaught errors.
    assert_eq!(g.group(&openat(1, 11, "/models/resnet50.pt")), None);
    let signal = Occurrence {
        path: Some("/models/resnet50.pt"),
        ..occ(2, Source::Signal, 12)
    };
    assert_eq!(g.group(&signal), None);
    // An exit after failures but no uncaught error is an incident of its own.
    assert_eq!(g.group(&exit(3, 13)), None);
}

#[test]
fn an_incident_counts_each_pattern_once_at_its_highest_severity() {
    let mut g = Incidents::default();
    let panic = Occurrence {
        uncaught: true,
        pattern: Some("RUST_PANIC"),
        severity: Severity::High,
        ..occ(0, Source::Output, 10)
    };
    assert_eq!(g.group(&panic), None);
    // The panic aborts: a fatal SIGABRT, critical, of another pattern.
    let abort = Occurrence {
        ending: true,
        pattern: Some("ABORT"),
        severity: Severity::Critical,
        ..occ(1, Source::Signal, 11)
    };
    assert_eq!(
        g.group(&abort),
        Some(Joined {
            root: 0,
            new_pattern: true,
            raised: Some((Severity::High, Severity::Critical))
        })
    );
    // A second end of the same incident (an exit that was not recognised as the signal's)
    // raises nothing and adds no pattern.
    let again = Occurrence {
        pattern: Some("ABORT"),
        severity: Severity::Critical,
        ..exit(2, 12)
    };
    assert_eq!(
        g.group(&again),
        Some(Joined {
            root: 0,
            new_pattern: false,
            raised: None
        })
    );
}

#[test]
fn memory_stays_bounded() {
    let mut g = Incidents::default();
    for i in 0..20_000 {
        g.group(&openat(i, i / 100, "/models/resnet50.pt"));
    }
    assert!(g.members.len() <= MAX_MEMBERS);
    assert!(g.states.len() <= 2 * MAX_MEMBERS + 64);
    // A failure within the window still causes a traceback.
    assert_eq!(
        g.group(&traceback(20_000, 200, MISSING)).map(|j| j.root),
        Some(19_999)
    );
}
