//! End-to-end tests of how a process ends (signals, OOM kills, exit statuses) and of native
//! crash output.

use super::*;

#[test]
fn fatal_segfault_is_critical_and_not_repeated_by_exit() {
    let mut a = analyzer();
    a.on_signal(SignalEvent {
        tid: 3,
        timestamp_ns: START + 2_000 * MS,
        signo: 11,
        code: 1,
        fault_addr: Some(0),
        fatal: true,
        stack: vec!["crash_here".into(), "main".into()],
        function: Some("handler".into()),
        python: Vec::new(),
    });
    a.on_exit(ExitEvent {
        timestamp_ns: START + 2_001 * MS,
        status: 11 | 0x80,
    });
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("SEGFAULT"));
    assert_eq!(e.severity, Severity::Critical);
    assert_eq!(e.source, Source::Signal);
    assert_eq!(e.error_type, "SIGSEGV");
    assert_eq!(e.context.fault_addr.as_deref(), Some("0x0"));
    assert_eq!(
        e.context.signal_code.as_deref(),
        Some("SEGV_MAPERR (address not mapped)")
    );
    assert_eq!(e.context.stack, ["crash_here", "main"]);
    assert_eq!(e.context.function.as_deref(), Some("handler"));
    assert!(e.message.contains("null pointer"), "{}", e.message);
}

#[test]
fn oom_kill_explains_sigkill_and_exit() {
    let mut a = analyzer();
    a.on_oom_kill(OomKill {
        tid: 1,
        timestamp_ns: START + 100 * MS,
        rss_bytes: Some(512 << 20),
    });
    signal(&mut a, 101, 9, true);
    a.on_exit(ExitEvent {
        timestamp_ns: START + 102 * MS,
        status: 9,
    });
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("OOM_KILL"));
    assert_eq!(
        (e.category, e.severity),
        (Category::Memory, Severity::Critical)
    );
    assert!(e.message.contains("RSS 512.0 MiB"));
}

#[test]
fn sigkill_before_the_oom_event_is_merged() {
    let mut a = analyzer();
    signal(&mut a, 101, 9, true);
    a.on_oom_kill(OomKill {
        tid: 1,
        timestamp_ns: START + 100 * MS,
        rss_bytes: None,
    });
    let s = finish(a);
    assert_eq!(only_event(&s).pattern.as_deref(), Some("OOM_KILL"));
}

#[test]
fn sigkill_without_oom_is_killed() {
    let mut a = analyzer();
    signal(&mut a, 0, 9, true);
    a.on_exit(ExitEvent {
        timestamp_ns: START + 1,
        status: 9,
    });
    let s = finish(a);
    assert_eq!(only_event(&s).pattern.as_deref(), Some("KILLED"));
}

#[test]
fn exit_statuses() {
    let mut a = analyzer();
    a.on_exit(ExitEvent {
        timestamp_ns: START,
        status: 0,
    });
    assert_eq!(finish(a).total, 0);
    let mut a = analyzer();
    a.on_exit(ExitEvent {
        timestamp_ns: START,
        status: 3 << 8,
    });
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(
        (e.error_type.as_str(), e.source, e.severity),
        ("exit(3)", Source::Exit, Severity::Medium)
    );
    assert_eq!(e.context.exit_code, Some(3));
    let mut a = analyzer();
    a.on_exit(ExitEvent {
        timestamp_ns: START,
        status: 6 | 0x80,
    });
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("ABORT"));
    assert_eq!(e.context.core_dumped, Some(true));
}

#[test]
fn native_crash_outputs() {
    let mut a = analyzer();
    out(
        &mut a,
        1,
        0,
        "thread 'main' panicked at src/main.rs:4:5:\nindex out of bounds: the len is 3 but the index is 5\nnote: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n",
    );
    out(
        &mut a,
        2,
        10,
        "terminate called after throwing an instance of 'std::runtime_error'\n  what():  boom\n",
    );
    out(&mut a, 3, 20, "free(): double free detected in tcache 2\n");
    out(
        &mut a,
        4,
        30,
        "2024-01-01 12:00:00 ERROR reconciliation job stalled\n",
    );
    out(
        &mut a,
        5,
        40,
        "just a normal line\nLoading weights from /models/x.pt\n",
    );
    let s = finish(a);
    let got: Vec<(Option<&str>, &str)> = s
        .events
        .iter()
        .map(|e| (e.pattern.as_deref(), e.error_type.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (Some("RUST_PANIC"), "RUST_PANIC"),
            (Some("CPP_UNCAUGHT_EXCEPTION"), "std::runtime_error"),
            (Some("DOUBLE_FREE"), "DOUBLE_FREE"),
            (None, "ERROR"),
        ]
    );
    assert_eq!(
        s.events[0].context.location.as_deref(),
        Some("src/main.rs:4:5")
    );
    assert_eq!(s.events[1].message, "boom");
    assert_eq!(
        (s.events[3].category, s.events[3].severity),
        (Category::Unknown, Severity::Medium)
    );
    assert_eq!(s.events[3].message, "reconciliation job stalled");
}
