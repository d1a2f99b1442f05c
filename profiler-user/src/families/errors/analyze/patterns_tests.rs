use super::*;
use crate::linux;

pub(super) fn db() -> PatternDb {
    PatternDb::builtin()
}

pub(super) fn syscall<'a>(name: &'a str, errno: &str, path: Option<&'a str>) -> Subject<'a> {
    Subject {
        syscall: Some(name),
        errno: linux::errno_value(errno),
        path,
        syscall_failure: true,
        ..Subject::default()
    }
}

/// Output with an exception type (as a traceback gives) and its text.
pub(super) fn exception_event(exception: &'static str, text: &'static str) -> Subject<'static> {
    Subject {
        text,
        exception: Some(exception),
        ..Subject::default()
    }
}

/// Output with only a text.
pub(super) fn text_event(text: &'static str) -> Subject<'static> {
    Subject {
        text,
        ..Subject::default()
    }
}

pub(super) fn id(db: &PatternDb, s: &Subject) -> Option<String> {
    db.classify(s).map(|p| p.id.clone())
}

#[test]
fn builtin_loads_and_covers_the_required_ids() {
    let db = db();
    for required in [
        "CUDA_OUT_OF_MEMORY",
        "MODEL_NOT_FOUND",
        "INVALID_INPUT",
        "NETWORK_TIMEOUT",
        "SUBPROCESS_TIMEOUT",
        "LOCK_TIMEOUT",
        "HOST_OUT_OF_MEMORY",
        "DISK_FULL",
        "TOO_MANY_OPEN_FILES",
        "PERMISSION_DENIED",
        "CONNECTION_REFUSED",
        "CONNECTION_RESET",
        "BROKEN_PIPE",
        "SEGFAULT",
        "BUS_ERROR",
        "FLOATING_POINT_EXCEPTION",
        "ILLEGAL_INSTRUCTION",
        "ABORT",
        "OOM_KILL",
        "RUST_PANIC",
        "CPP_UNCAUGHT_EXCEPTION",
        "CUDA_ERROR",
        "NCCL_ERROR",
        "DOUBLE_FREE",
        "HEAP_CORRUPTION",
        "STACK_SMASHING",
        "PYTHON_IMPORT_ERROR",
        "WORKER_TIMEOUT",
        "GLOG_CHECK_FAILED",
    ] {
        let p = db
            .get(required)
            .unwrap_or_else(|| panic!("{required} missing"));
        assert!(!p.benign);
        assert!((2..=4).contains(&p.solutions.len()), "{required} solutions");
        assert!(
            (1..=4).contains(&p.prevention.len()),
            "{required} prevention"
        );
        assert!(p.description.is_some(), "{required} description");
    }
    let seg = db.get("SEGFAULT").unwrap();
    assert_eq!(
        (seg.category, seg.severity),
        (Category::System, Severity::Critical)
    );
    let oom = db.get("CUDA_OUT_OF_MEMORY").unwrap();
    assert_eq!(
        (oom.category, oom.severity),
        (Category::Memory, Severity::Critical)
    );
}

/// The four patterns of the seed, exactly as it defines them: category, severity, and its
/// solutions (each found, case-insensitively, in one of the pattern's solutions).
#[test]
fn seed_patterns_exactly_as_written() {
    let db = db();
    let seed: [(&str, Category, Severity, &[&[&str]]); 4] = [
        (
            "CUDA_OUT_OF_MEMORY",
            Category::Memory,
            Severity::Critical,
            &[
                &["reduce the batch size"],
                &["gradient checkpointing"],
                &["mixed precision"],
                &["clear the cache", "empty_cache()"],
            ],
        ),
        (
            "MODEL_NOT_FOUND",
            Category::ModelLoading,
            Severity::High,
            &[
                &["check that the path exists"],
                &["download"],
                &["check the permissions"],
            ],
        ),
        (
            "INVALID_INPUT",
            Category::InputValidation,
            Severity::Medium,
            &[
                &["validate input shapes and types"],
                &["check the preprocessing"],
            ],
        ),
        (
            "NETWORK_TIMEOUT",
            Category::Network,
            Severity::High,
            &[
                &["increase the timeout settings"],
                &["check the internet connection"],
                &["use local models"],
                &["implement retry logic"],
            ],
        ),
    ];
    for (id, category, severity, solutions) in seed {
        let p = db.get(id).unwrap_or_else(|| panic!("{id} missing"));
        assert_eq!(p.id, id);
        assert!(!p.benign && !p.user, "{id}");
        assert_eq!((p.category, p.severity), (category, severity), "{id}");
        let lower: Vec<String> = p.solutions.iter().map(|s| s.to_lowercase()).collect();
        for phrases in solutions {
            assert!(
                phrases
                    .iter()
                    .all(|ph| lower.iter().any(|s| s.contains(ph))),
                "{id}: no solution says {phrases:?}: {:#?}",
                p.solutions
            );
        }
    }
}

#[test]
fn syscall_rules() {
    let db = db();
    let cases = [
        (
            "openat",
            "ENOENT",
            Some("/tmp/x/model.safetensors"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "openat",
            "ENOENT",
            Some("/srv/models/bert/config.json"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "newfstatat",
            "ENOENT",
            Some("/models/x.pt"),
            Some("BENIGN_PROBE_STAT"),
        ),
        (
            "openat",
            "ENOENT",
            Some("/lib/x86_64-linux-gnu/glibc-hwcaps/x86-64-v3/libfoo.so.1"),
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "openat",
            "ENOENT",
            Some("/usr/lib/x86_64-linux-gnu/tls/x"),
            Some("BENIGN_LIBRARY_DIR"),
        ),
        ("openat", "ENOENT", Some("/etc/app.yaml"), None),
        ("read", "EAGAIN", None, Some("BENIGN_WOULD_BLOCK")),
        ("futex", "ETIMEDOUT", None, Some("BENIGN_TIMED_WAIT")),
        ("recvfrom", "ETIMEDOUT", None, Some("NETWORK_TIMEOUT")),
        (
            "connect",
            "ECONNREFUSED",
            Some("127.0.0.1:9"),
            Some("CONNECTION_REFUSED"),
        ),
        (
            "connect",
            "EINPROGRESS",
            Some("127.0.0.1:9"),
            Some("BENIGN_CONNECT_IN_PROGRESS"),
        ),
        ("write", "EPIPE", None, Some("BROKEN_PIPE")),
        ("openat", "EMFILE", None, Some("TOO_MANY_OPEN_FILES")),
        ("write", "ENOSPC", None, Some("DISK_FULL")),
        (
            "openat",
            "EACCES",
            Some("/data/x"),
            Some("PERMISSION_DENIED"),
        ),
        ("mmap", "ENOMEM", None, Some("HOST_OUT_OF_MEMORY")),
        ("ioctl", "ENOTTY", None, Some("BENIGN_NO_TTY")),
        ("clone3", "ENOSYS", None, Some("BENIGN_FEATURE_PROBE")),
        (
            "mkdir",
            "EEXIST",
            Some("/tmp/x"),
            Some("BENIGN_MKDIR_EXISTS"),
        ),
    ];
    for (name, errno, path, want) in cases {
        let got = id(&db, &syscall(name, errno, path));
        assert_eq!(got.as_deref(), want, "{name} {errno} {path:?}");
    }
}

#[test]
fn benign_rules_do_not_apply_to_output() {
    let db = db();
    let s = Subject {
        text: "fork: Resource temporarily unavailable",
        errno: Some(11),
        ..Subject::default()
    };
    assert_eq!(db.classify(&s), None);
}

#[test]
fn text_and_exception_rules() {
    let db = db();
    let text = |t: &str| {
        id(
            &db,
            &Subject {
                text: t,
                ..Subject::default()
            },
        )
    };
    assert_eq!(
        text("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB").as_deref(),
        Some("CUDA_OUT_OF_MEMORY")
    );
    assert_eq!(
        text("RuntimeError: CUDA error: device-side assert triggered").as_deref(),
        Some("CUDA_ERROR")
    );
    assert_eq!(
        text("NCCL error in: ProcessGroupNCCL.cpp:1275, unhandled system error").as_deref(),
        Some("NCCL_ERROR")
    );
    assert_eq!(
        text("free(): double free detected in tcache 2").as_deref(),
        Some("DOUBLE_FREE")
    );
    assert_eq!(
        text("malloc(): corrupted top size").as_deref(),
        Some("HEAP_CORRUPTION")
    );
    assert_eq!(
        text("*** stack smashing detected ***: terminated").as_deref(),
        Some("STACK_SMASHING")
    );
    assert_eq!(
        text("thread 'main' panicked at src/main.rs:4:5:\nboom").as_deref(),
        Some("RUST_PANIC")
    );
    assert_eq!(text("nothing to see").as_deref(), None);
    let exc = |e: &str, t: &str| {
        id(
            &db,
            &Subject {
                text: t,
                exception: Some(e),
                ..Subject::default()
            },
        )
    };
    assert_eq!(
        exc("ValueError", "ValueError: bad input").as_deref(),
        Some("INVALID_INPUT")
    );
    // Nothing says the input was wrong: left to the fallback classifier.
    assert_eq!(exc("ValueError", "ValueError: bad"), None);
    assert_eq!(
        exc("json.decoder.JSONDecodeError", "x").as_deref(),
        Some("INVALID_INPUT")
    );
    assert_eq!(
        exc("torch.cuda.OutOfMemoryError", "x").as_deref(),
        Some("CUDA_OUT_OF_MEMORY")
    );
    assert_eq!(
        exc("socket.timeout", "socket.timeout: timed out").as_deref(),
        Some("NETWORK_TIMEOUT")
    );
    assert_eq!(
        exc("TimeoutError", "TimeoutError: timed out").as_deref(),
        Some("NETWORK_TIMEOUT")
    );
    // A bare TimeoutError (asyncio, concurrent.futures) does not say what timed out.
    assert_eq!(exc("TimeoutError", "x"), None);
    assert_eq!(
        exc("ModuleNotFoundError", "No module named 'x'").as_deref(),
        Some("PYTHON_IMPORT_ERROR")
    );
    assert_eq!(exc("MyValueError", "x"), None);
    assert_eq!(
        exc(
            "std::bad_alloc",
            "terminate called after throwing an instance of 'std::bad_alloc'"
        )
        .as_deref(),
        Some("HOST_OUT_OF_MEMORY")
    );
    assert_eq!(
        exc(
            "std::runtime_error",
            "terminate called after throwing an instance of 'std::runtime_error'"
        )
        .as_deref(),
        Some("CPP_UNCAUGHT_EXCEPTION")
    );
    let model = Subject {
        text: "FileNotFoundError: [Errno 2] No such file or directory: '/models/missing.pt'",
        exception: Some("FileNotFoundError"),
        errno: Some(2),
        path: Some("/models/missing.pt"),
        ..Subject::default()
    };
    assert_eq!(id(&db, &model).as_deref(), Some("MODEL_NOT_FOUND"));
}

#[test]
fn signals_levels_exit_codes_and_oom() {
    let db = db();
    let sig = |n: &str| {
        id(
            &db,
            &Subject {
                signal: linux::signal_value(n),
                ..Subject::default()
            },
        )
    };
    assert_eq!(sig("SIGSEGV").as_deref(), Some("SEGFAULT"));
    assert_eq!(sig("SIGBUS").as_deref(), Some("BUS_ERROR"));
    assert_eq!(sig("SIGABRT").as_deref(), Some("ABORT"));
    assert_eq!(sig("SIGKILL").as_deref(), Some("KILLED"));
    let oom = Subject {
        signal: Some(9),
        oom: true,
        ..Subject::default()
    };
    assert_eq!(id(&db, &oom).as_deref(), Some("OOM_KILL"));
    let exit = Subject {
        exit_code: Some(139),
        ..Subject::default()
    };
    assert_eq!(id(&db, &exit).as_deref(), Some("SEGFAULT"));
    let worker = Subject {
        text: "[CRITICAL] WORKER TIMEOUT (pid:12)",
        level: Some(Level::Critical),
        ..Subject::default()
    };
    assert_eq!(id(&db, &worker).as_deref(), Some("WORKER_TIMEOUT"));
    let no_level = Subject {
        text: "WORKER TIMEOUT",
        ..Subject::default()
    };
    assert_eq!(id(&db, &no_level), None);
}

const USER: &str = r#"
[[pattern]]
id = "FEATURE_STORE_DOWN"
category = "network"
severity = "critical"
description = "The feature store is unreachable."
text = 'feature store .* unavailable'
solutions = ["Restart the feature store."]

[[pattern]]
id = "CONNECTION_REFUSED"
category = "network"
severity = "low"
errno = ["ECONNREFUSED", 111]
"#;

#[test]
fn user_patterns_add_and_override() {
    let db = PatternDb::load(Some(("mine.toml", USER))).unwrap();
    let s = Subject {
        text: "ERROR feature store shard-3 unavailable",
        ..Subject::default()
    };
    let p = db.classify(&s).unwrap();
    assert_eq!(p.id, "FEATURE_STORE_DOWN");
    assert!(p.user);
    let refused = db
        .classify(&syscall("connect", "ECONNREFUSED", None))
        .unwrap();
    assert_eq!((refused.severity, refused.user), (Severity::Low, true));
    assert_eq!(
        db.list()
            .iter()
            .filter(|p| p.id == "CONNECTION_REFUSED")
            .count(),
        1
    );
    let list = db.list();
    assert_eq!(list[0].source, "user");
    let table = format_table(&list);
    assert!(table.starts_with("ID "));
    assert!(table.contains("FEATURE_STORE_DOWN") && table.contains("[user] The feature store"));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("BENIGN_WOULD_BLOCK") && l.contains("benign"))
    );
}

fn load_err(src: &str) -> String {
    PatternDb::load(Some(("patterns.toml", src)))
        .unwrap_err()
        .to_string()
}

#[test]
fn malformed_files_report_line_and_column() {
    let e = load_err("[[pattern]]\nid = \"X\"\ncategory = \"memory\"\n    severty = \"high\"\n");
    assert!(
        e.starts_with("patterns.toml:4:5: unknown field `severty`, expected one of"),
        "{e}"
    );
    assert!(!e.contains('\n'));
    let e = load_err("[[pattern]]\nid = \"X\"\ncategory = \"ram\"\n");
    assert!(
        e.starts_with("patterns.toml:3:12: unknown variant `ram`"),
        "{e}"
    );
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\ntext = '(unclosed'\n",
    );
    assert!(
        e.starts_with("patterns.toml:5:8: pattern `X`: invalid `text` regex: unclosed group"),
        "{e}"
    );
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\nerrno = [\"ENOPE\"]\n",
    );
    assert_eq!(e, "patterns.toml:5:10: pattern `X`: unknown errno `ENOPE`");
    let e = load_err("[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\n");
    assert!(
        e.starts_with("patterns.toml:2:6: pattern `X`: no matchers"),
        "{e}"
    );
    let e = load_err("[[pattern]]\nid = \"X\"\nseverity = \"high\"\ntext = 'a'\n");
    assert_eq!(
        e,
        "patterns.toml:2:6: pattern `X`: missing field `category`"
    );
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\ntext = 'a'\n[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\ntext = 'b'\n",
    );
    assert_eq!(
        e,
        "patterns.toml:7:6: pattern `X`: duplicate id (first defined on line 2)"
    );
    let e = load_err("[[pattern]\n");
    assert!(e.starts_with("patterns.toml:1:"), "{e}");
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\nsignal = [\"SIGNOPE\"]\n",
    );
    assert_eq!(e, "patterns.toml:5:11: pattern `X`: unknown signal");
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\ntext = 'a'\n[[pattern.match]]\ntext = 'b'\n",
    );
    assert!(e.contains("not both"), "{e}");
}

#[test]
fn specificity_orders_rules() {
    let src = r#"
[[pattern]]
id = "GENERIC"
category = "unknown"
severity = "low"
text = 'boom'

[[pattern]]
id = "SPECIFIC"
category = "system"
severity = "high"
text = 'boom'
level = ["error"]
"#;
    let db = PatternDb::load(Some(("u.toml", src))).unwrap();
    let s = Subject {
        text: "boom",
        level: Some(Level::Error),
        ..Subject::default()
    };
    assert_eq!(db.classify(&s).unwrap().id, "SPECIFIC");
    let s = Subject {
        text: "boom",
        ..Subject::default()
    };
    assert_eq!(db.classify(&s).unwrap().id, "GENERIC");
}

#[test]
fn priority_decides_before_matchers_and_file_order() {
    let src = r#"
[[pattern]]
id = "SPECIFIC_FIRST"
category = "unknown"
severity = "low"
text = 'boom'
level = ["error"]

[[pattern]]
id = "PREFERRED"
category = "system"
severity = "high"
priority = 5
text = 'boom'

[[pattern]]
id = "FALLBACK"
category = "unknown"
severity = "low"
priority = -5
text = 'bo'

[[pattern]]
id = "DEFAULT"
category = "unknown"
severity = "low"
text = 'bo+m!'
"#;
    let db = PatternDb::load(Some(("u.toml", src))).unwrap();
    let classify = |text: &str, level: Option<Level>| {
        db.classify(&Subject {
            text,
            level,
            ..Subject::default()
        })
        .map(|p| p.id.clone())
    };
    // More matchers and an earlier place in the file lose to a higher priority.
    assert_eq!(
        classify("boom", Some(Level::Error)).as_deref(),
        Some("PREFERRED")
    );
    // A default-priority pattern beats a negative one that comes first.
    assert_eq!(classify("bom!", None).as_deref(), Some("DEFAULT"));
    assert_eq!(classify("bob", None).as_deref(), Some("FALLBACK"));
    let priority = |id: &str| db.get(id).unwrap().priority;
    assert_eq!(
        [
            priority("SPECIFIC_FIRST"),
            priority("PREFERRED"),
            priority("FALLBACK")
        ],
        [DEFAULT_PRIORITY, 5, -5]
    );
    let table = format_table(&db.list());
    assert!(
        table.lines().next().unwrap().contains("  PRIORITY  "),
        "{table}"
    );
    assert!(
        table
            .lines()
            .any(|l| l.starts_with("FALLBACK ") && l.ends_with("      -5  [user]")),
        "{table}"
    );
}

/// A user file is an override layer: its patterns are tried before every built-in one, even
/// with a lower priority, and one that replaces a built-in id takes its own priority.
#[test]
fn user_patterns_come_before_builtin_ones_whatever_the_priority() {
    let builtin = db();
    let highest = builtin.list().iter().map(|p| p.priority).max().unwrap();
    let src = format!(
        r#"
[[pattern]]
id = "MY_GPU_OOM"
category = "memory"
severity = "low"
priority = {}
text = 'CUDA out of memory'

[[pattern]]
id = "CUDA_ERROR"
category = "inference"
severity = "medium"
text = 'CUDA error'
"#,
        highest - 1000
    );
    let db = PatternDb::load(Some(("u.toml", &src))).unwrap();
    let text = |t: &str| {
        db.classify(&Subject {
            text: t,
            ..Subject::default()
        })
        .map(|p| (p.id.clone(), p.user, p.priority))
    };
    assert_eq!(
        text("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"),
        Some(("MY_GPU_OOM".into(), true, highest - 1000))
    );
    assert_eq!(
        text("RuntimeError: CUDA error: device-side assert triggered"),
        Some(("CUDA_ERROR".into(), true, DEFAULT_PRIORITY))
    );
    assert_eq!(db.list().iter().filter(|p| p.id == "CUDA_ERROR").count(), 1);
}

#[test]
fn malformed_priorities_report_line_and_column() {
    let head = "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\ntext = 'a'\n";
    let e = load_err(&format!("{head}priority = \"high\"\n"));
    assert!(
        e.starts_with("patterns.toml:6:12: invalid type: string \"high\", expected i64"),
        "{e}"
    );
    let e = load_err(&format!("{head}priority = 1.5\n"));
    assert!(
        e.starts_with("patterns.toml:6:12: invalid type: floating point `1.5`, expected i64"),
        "{e}"
    );
    let e = load_err(&format!("{head}priority = 4294967296\n"));
    assert_eq!(
        e,
        "patterns.toml:6:12: pattern `X`: priority 4294967296 out of range (-2147483648 to 2147483647)"
    );
    let e = load_err(
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverity = \"high\"\n[[pattern.match]]\ntext = 'a'\npriority = 3\n",
    );
    assert!(
        e.starts_with("patterns.toml:7:1: unknown field `priority`"),
        "{e}"
    );
    for e in [
        load_err(&format!("{head}priority = \"high\"\n")),
        load_err(&format!("{head}priority = 4294967296\n")),
    ] {
        assert!(!e.contains('\n'), "{e}");
    }
}
