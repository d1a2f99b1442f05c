//! End-to-end tests of the analyzer: raw inputs in, report section out.

use super::*;
use crate::{
    linux,
    report::errors::{Category, Severity, SignalCount, Trend},
};

const START: u64 = 1_000_000_000_000;
const MS: u64 = 1_000_000;

fn analyzer() -> ErrorAnalyzer {
    ErrorAnalyzer::new(
        PatternDb::builtin(),
        AnalyzerOptions {
            start_ns: START,
            ..AnalyzerOptions::default()
        },
    )
}

fn out(a: &mut ErrorAnalyzer, tid: u32, at_ms: u64, text: &str) {
    a.on_output(OutputChunk {
        tid,
        timestamp_ns: START + at_ms * MS,
        fd: 2,
        bytes: text.as_bytes().to_vec(),
        ..OutputChunk::default()
    });
}

fn syscall(a: &mut ErrorAnalyzer, at_ms: u64, name: &str, errno: &str, arg: Option<&str>) {
    a.on_syscall(SyscallFailure {
        tid: 7,
        timestamp_ns: START + at_ms * MS,
        syscall: name.into(),
        errno: linux::errno_value(errno).unwrap(),
        arg: arg.map(String::from),
        ..SyscallFailure::default()
    });
}

/// Signal `signo` delivered to thread 1 at `at_ms`, fatal or handled.
fn signal(a: &mut ErrorAnalyzer, at_ms: u64, signo: i32, fatal: bool) {
    a.on_signal(SignalEvent {
        tid: 1,
        timestamp_ns: START + at_ms * MS,
        signo,
        fatal,
        ..SignalEvent::default()
    });
}

fn finish(a: ErrorAnalyzer) -> ErrorsSection {
    a.finish(START + 10_000 * MS)
}

fn only_event(s: &ErrorsSection) -> &ErrorEvent {
    assert_eq!(s.events.len(), 1, "{:#?}", s.events);
    &s.events[0]
}

const MODEL_TRACEBACK: &str = "Traceback (most recent call last):\n  File \"/app/serve.py\", line 3, in <module>\n    open('/models/missing.pt')\nFileNotFoundError: [Errno 2] No such file or directory: '/models/missing.pt'\n";

#[test]
fn python_traceback_of_a_missing_model() {
    let mut a = analyzer();
    out(&mut a, 1, 100, MODEL_TRACEBACK);
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("MODEL_NOT_FOUND"));
    assert_eq!(e.category, Category::ModelLoading);
    assert_eq!(e.error_type, "FileNotFoundError");
    assert_eq!(e.source, Source::Output);
    assert_eq!(e.context.exception.as_deref(), Some("FileNotFoundError"));
    assert_eq!(e.context.path.as_deref(), Some("/models/missing.pt"));
    assert_eq!(e.context.errno.as_deref(), Some("ENOENT"));
    assert_eq!(e.context.frames[0].file, "/app/serve.py");
    assert_eq!(e.context.lines.len(), 4);
    assert!((e.timestamp - 0.1).abs() < 1e-9);
    assert!(!e.solutions.is_empty() && !e.prevention.is_empty());
}

#[test]
fn traceback_split_across_writes_and_threads() {
    let mut a = analyzer();
    let (head, tail) = MODEL_TRACEBACK.split_at(57);
    out(&mut a, 1, 100, head);
    out(&mut a, 2, 100, "INFO other thread is fine\n");
    out(&mut a, 1, 100, tail);
    let s = finish(a);
    assert_eq!(only_event(&s).pattern.as_deref(), Some("MODEL_NOT_FOUND"));
}

#[test]
fn openat_of_a_missing_model_file() {
    let mut a = analyzer();
    syscall(
        &mut a,
        5,
        "openat",
        "ENOENT",
        Some("/tmp/x/model.safetensors"),
    );
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("MODEL_NOT_FOUND"));
    assert_eq!(e.error_type, "ENOENT");
    assert_eq!(e.source, Source::Syscall);
    assert_eq!(e.context.path.as_deref(), Some("/tmp/x/model.safetensors"));
    assert_eq!(e.context.syscall.as_deref(), Some("openat"));
    assert_eq!(
        e.message,
        "openat(\"/tmp/x/model.safetensors\") = -1 ENOENT (No such file or directory)"
    );
}

#[test]
fn value_error_is_invalid_input() {
    let mut a = analyzer();
    out(
        &mut a,
        1,
        0,
        "Traceback (most recent call last):\n  File \"p.py\", line 9, in predict\n    x = float(v)\nValueError: could not convert string to float: 'abc'\n",
    );
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("INVALID_INPUT"));
    assert_eq!(e.category, Category::InputValidation);
    assert_eq!(e.error_type, "ValueError");
    assert_eq!(e.message, "could not convert string to float: 'abc'");
}

#[test]
fn connection_refused() {
    let mut a = analyzer();
    syscall(&mut a, 1, "connect", "ECONNREFUSED", Some("127.0.0.1:9"));
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("CONNECTION_REFUSED"));
    assert_eq!(e.category, Category::Network);
    assert_eq!(e.error_type, "ECONNREFUSED");
    assert_eq!(e.context.arg.as_deref(), Some("127.0.0.1:9"));
    assert_eq!(e.context.path, None);
}

/// A non-blocking connect that failed after it returned EINPROGRESS is a failed connect like
/// any other, with its address and stack; its message says what connect(2) itself returned.
#[test]
fn a_non_blocking_connect_that_fails_later() {
    let mut a = analyzer();
    for (at_ms, errno, address) in [
        (1, "ECONNREFUSED", "127.0.0.1:9"),
        (2, "ETIMEDOUT", "[::1]:8"),
    ] {
        a.on_syscall(SyscallFailure {
            tid: 7,
            timestamp_ns: START + at_ms * MS,
            syscall: "connect".into(),
            errno: linux::errno_value(errno).unwrap(),
            arg: Some(address.into()),
            stack: vec!["__libc_connect (libc.so.6+0x10a7c0)".into()],
            deferred: true,
            ..SyscallFailure::default()
        });
    }
    let s = finish(a);
    let [refused, timeout] = &s.events[..] else {
        panic!("two events: {:?}", s.events);
    };
    assert_eq!(refused.pattern.as_deref(), Some("CONNECTION_REFUSED"));
    assert_eq!(
        refused.message,
        "connect(127.0.0.1:9) = -1 EINPROGRESS, then ECONNREFUSED (Connection refused)"
    );
    assert_eq!(refused.context.arg.as_deref(), Some("127.0.0.1:9"));
    assert_eq!(refused.context.errno.as_deref(), Some("ECONNREFUSED"));
    assert_eq!(
        refused.context.stack,
        ["__libc_connect (libc.so.6+0x10a7c0)"]
    );
    assert_eq!(timeout.pattern.as_deref(), Some("NETWORK_TIMEOUT"));
    assert_eq!(
        (timeout.category, refused.category),
        (Category::Network, Category::Network)
    );
}

#[test]
fn network_timeouts() {
    let mut a = analyzer();
    syscall(&mut a, 1, "recvfrom", "ETIMEDOUT", None);
    syscall(&mut a, 2, "read", "ETIMEDOUT", None);
    out(
        &mut a,
        1,
        3,
        "Traceback (most recent call last):\n  File \"c.py\", line 1, in <module>\n    s.recv(1)\nsocket.timeout: timed out\n",
    );
    out(
        &mut a,
        1,
        500,
        "Traceback (most recent call last):\n  File \"c.py\", line 1, in <module>\n    s.recv(1)\nTimeoutError: timed out\n",
    );
    syscall(&mut a, 600, "futex", "ETIMEDOUT", None);
    let s = finish(a);
    assert_eq!(s.events.len(), 4);
    assert!(
        s.events
            .iter()
            .all(|e| e.pattern.as_deref() == Some("NETWORK_TIMEOUT"))
    );
    assert_eq!(s.events[2].error_type, "socket.timeout");
    assert_eq!(s.patterns[0].count, 4);
    assert_eq!(s.benign[0].syscall, "futex");
}

#[test]
fn cuda_out_of_memory_line() {
    let mut a = analyzer();
    out(
        &mut a,
        1,
        0,
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB\n",
    );
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("CUDA_OUT_OF_MEMORY"));
    assert_eq!(
        (e.category, e.severity),
        (Category::Memory, Severity::Critical)
    );
    assert_eq!(e.error_type, "RuntimeError");
}

#[test]
fn custom_pattern_file_classifies_a_new_message() {
    let user = "[[pattern]]\nid = \"FEATURE_STORE_DOWN\"\ncategory = \"network\"\nseverity = \"critical\"\ntext = 'feature store .* unavailable'\nsolutions = [\"Check the feature store.\"]\n";
    let db = PatternDb::load(Some(("mine.toml", user))).unwrap();
    let mut a = ErrorAnalyzer::new(
        db,
        AnalyzerOptions {
            start_ns: START,
            ..AnalyzerOptions::default()
        },
    );
    out(
        &mut a,
        1,
        0,
        "feature store shard-3 unavailable, serving defaults\n",
    );
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.pattern.as_deref(), Some("FEATURE_STORE_DOWN"));
    assert_eq!(e.severity, Severity::Critical);
    assert_eq!(e.solutions, ["Check the feature store."]);
}

#[test]
fn benign_failures_are_counted_not_reported() {
    let mut a = analyzer();
    syscall(&mut a, 1, "read", "EAGAIN", None);
    syscall(&mut a, 2, "read", "EAGAIN", None);
    syscall(
        &mut a,
        3,
        "openat",
        "ENOENT",
        Some("/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libfoo.so.1"),
    );
    syscall(&mut a, 4, "newfstatat", "ENOENT", Some("/models/x.pt"));
    signal(&mut a, 0, 11, false);
    let s = finish(a);
    assert_eq!(s.total, 0);
    assert!(s.events.is_empty());
    let counts: Vec<(&str, &str, u64)> = s
        .benign
        .iter()
        .map(|b| (b.syscall.as_str(), b.errno.as_str(), b.count))
        .collect();
    assert_eq!(
        counts,
        [
            ("read", "EAGAIN", 2),
            ("newfstatat", "ENOENT", 1),
            ("openat", "ENOENT", 1)
        ]
    );
    assert_eq!(
        s.benign_signals,
        [SignalCount {
            signal: "SIGSEGV".into(),
            count: 1
        }]
    );
    assert_eq!(summary_lines(&s), ["errors: none"]);
}

#[test]
fn secrets_are_redacted_in_every_field() {
    let mut a = analyzer();
    syscall(
        &mut a,
        1,
        "openat",
        "ENOENT",
        Some("/etc/app/password=hunter2.conf"),
    );
    let text = "Traceback (most recent call last):\n  File \"/app/token=abcdef123456/run.py\", line 4, in call_api\n    client = Client(api_key=\"sk-proj-abc123DEF456ghi789JKL0\")\nValueError: bad credentials password=hunter2 Authorization: Bearer abcdefgh12345678 -----BEGIN RSA PRIVATE KEY-----\nMIIEsecretkeymaterial\n-----END RSA PRIVATE KEY-----\n";
    out(&mut a, 1, 5, text);
    let s = finish(a);
    let json = serde_json::to_string(&s).unwrap();
    for secret in [
        "hunter2",
        "sk-proj-abc123",
        "abcdefgh12345678",
        "MIIEsecretkeymaterial",
        "abcdef123456",
    ] {
        assert!(!json.contains(secret), "{secret} leaked: {json}");
    }
    let e = s
        .events
        .iter()
        .find(|e| e.source == Source::Output)
        .unwrap();
    assert_eq!(e.error_type, "ValueError");
    assert!(e.message.contains("password=[REDACTED]"));
    assert!(
        e.context.frames[0]
            .code
            .as_deref()
            .unwrap()
            .contains("api_key=\"sk-[REDACTED]\"")
    );
    assert!(
        e.context
            .preceding
            .iter()
            .any(|p| p.contains("password=[REDACTED]"))
    );
}

#[test]
fn preceding_lists_what_happened_just_before() {
    let mut a = analyzer();
    syscall(
        &mut a,
        10,
        "newfstatat",
        "ENOENT",
        Some("/models/missing.pt"),
    );
    for i in 0..100 {
        syscall(&mut a, 20 + i / 10, "read", "EAGAIN", None);
    }
    out(&mut a, 1, 30, MODEL_TRACEBACK);
    let s = finish(a);
    let e = only_event(&s);
    assert_eq!(e.context.preceding.len(), 2);
    assert!(
        e.context.preceding[0].starts_with("0.010s newfstatat(\"/models/missing.pt\") = -1 ENOENT"),
        "{:?}",
        e.context.preceding
    );
    assert!(e.context.preceding[0].ends_with("(expected)"));
    assert_eq!(
        e.context.preceding[1],
        "0.020s read() = -1 EAGAIN (Resource temporarily unavailable) (expected) (x100 until 0.029s)"
    );
}

#[test]
fn events_are_bounded_and_patterns_keep_counting() {
    let mut a = ErrorAnalyzer::new(
        PatternDb::builtin(),
        AnalyzerOptions {
            start_ns: START,
            max_events: 10,
            ..AnalyzerOptions::default()
        },
    );
    for i in 0..25 {
        syscall(
            &mut a,
            100 + i * 400,
            "connect",
            "ECONNREFUSED",
            Some("10.0.0.1:80"),
        );
    }
    let s = finish(a);
    assert_eq!((s.total, s.dropped, s.events.len()), (25, 15, 10));
    assert_eq!(s.patterns[0].count, 25);
    assert_eq!(s.patterns[0].trend, Trend::Stable);
    assert_eq!(s.by_category["network"], 25);
    let summary = summary_lines(&s);
    assert_eq!(summary[0], "errors: 25 (25 high), 15 oldest not kept");
    assert!(
        summary[1].starts_with("  [high] CONNECTION_REFUSED x25 (network)"),
        "{}",
        summary[1]
    );
}

#[test]
fn json_field_names() {
    let mut a = analyzer();
    syscall(&mut a, 1, "connect", "ECONNREFUSED", Some("127.0.0.1:9"));
    syscall(&mut a, 2, "read", "EAGAIN", None);
    let v = serde_json::to_value(finish(a)).unwrap();
    for key in [
        "events",
        "dropped",
        "patterns",
        "by_category",
        "by_severity",
        "by_source",
        "benign",
        "total",
        "exact",
    ] {
        assert!(v.get(key).is_some(), "{key}");
    }
    let e = &v["events"][0];
    for key in [
        "id",
        "caused_by",
        "led_to",
        "error_type",
        "category",
        "severity",
        "pattern",
        "message",
        "solutions",
        "prevention",
        "timestamp",
        "tid",
        "source",
        "context",
    ] {
        assert!(e.get(key).is_some(), "{key}");
    }
    assert_eq!(e["source"], "syscall");
    assert_eq!(e["category"], "network");
    assert_eq!(e["context"]["errno"], "ECONNREFUSED");
    for key in [
        "syscall",
        "errno",
        "path",
        "arg",
        "signal",
        "fault_addr",
        "exception",
        "frames",
        "lines",
        "stack",
        "function",
        "preceding",
    ] {
        assert!(e["context"].get(key).is_some(), "context.{key}");
    }
    assert!(e["context"].get("chain").is_none());
    let p = &v["patterns"][0];
    for key in [
        "id",
        "count",
        "occurrences",
        "exact",
        "first_seen",
        "last_seen",
        "trend",
    ] {
        assert!(p.get(key).is_some(), "{key}");
    }
    assert_eq!(p["trend"], "single");
    assert_eq!(
        v["benign"][0],
        serde_json::json!({
            "syscall": "read",
            "errno": "EAGAIN",
            "pattern": "BENIGN_WOULD_BLOCK",
            "count": 1
        })
    );
    let back: ErrorsSection = serde_json::from_value(v).unwrap();
    assert_eq!(back.total, 1);
}

#[test]
fn the_most_specific_cause_wins() {
    let mut a = analyzer();
    out(
        &mut a,
        1,
        0,
        "ERROR:    Exception in ASGI application\nTraceback (most recent call last):\n  File \"app.py\", line 3, in predict\n    raise ValueError(\"bad shape\")\nValueError: bad shape\n",
    );
    out(
        &mut a,
        2,
        10,
        "ERROR:    Exception in ASGI application\nTraceback (most recent call last):\n  File \"app.py\", line 3, in predict\n    run()\nRuntimeError: worker crashed\n",
    );
    out(
        &mut a,
        3,
        20,
        "Traceback (most recent call last):\n  File \"t.py\", line 3, in save\n    f.write(b)\nOSError: [Errno 28] No space left on device: '/models/ckpt/step-100.pt'\n",
    );
    out(
        &mut a,
        4,
        30,
        "2024-01-01 12:00:00 ERROR KeyError: 'input_ids'\n",
    );
    let s = finish(a);
    let ids: Vec<_> = s
        .events
        .iter()
        .map(|e| e.pattern.as_deref().unwrap_or("-"))
        .collect();
    assert_eq!(
        ids,
        [
            "INVALID_INPUT",
            "REQUEST_HANDLER_ERROR",
            "DISK_FULL",
            "INVALID_INPUT"
        ]
    );
    assert_eq!(s.events[0].context.level.as_deref(), Some("error"));
    assert_eq!(s.events[3].error_type, "KeyError");
    assert_eq!(s.events[3].message, "'input_ids'");
}

#[path = "tests_process.rs"]
mod process;

#[path = "tests_counts.rs"]
mod counts;
