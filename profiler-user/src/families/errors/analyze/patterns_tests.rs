use super::*;
use crate::linux;

fn db() -> PatternDb {
    PatternDb::builtin()
}

fn syscall<'a>(name: &'a str, errno: &str, path: Option<&'a str>) -> Subject<'a> {
    Subject {
        syscall: Some(name),
        errno: linux::errno_value(errno),
        path,
        syscall_failure: true,
        ..Subject::default()
    }
}

/// Output with an exception type (as a traceback gives) and its text.
fn exception_event(exception: &'static str, text: &'static str) -> Subject<'static> {
    Subject {
        text,
        exception: Some(exception),
        ..Subject::default()
    }
}

/// Output with only a text.
fn text_event(text: &'static str) -> Subject<'static> {
    Subject {
        text,
        ..Subject::default()
    }
}

fn id(db: &PatternDb, s: &Subject) -> Option<String> {
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

/// The built-in file with its patterns in reverse order.
fn reversed_builtin() -> String {
    let mut parts: Vec<&str> = BUILTIN_SOURCE.split("\n[[pattern]]\n").collect();
    let header = parts.remove(0);
    parts.reverse();
    let mut out = header.to_string();
    for p in parts {
        out.push_str("\n[[pattern]]\n");
        out.push_str(p);
        out.push('\n');
    }
    out
}

/// Events that more than one built-in pattern matches, with the pattern that must win.
fn overlaps() -> Vec<(&'static str, Subject<'static>, Option<&'static str>)> {
    let open = |path| Subject {
        syscall: Some("openat"),
        errno: Some(2),
        path: Some(path),
        syscall_failure: true,
        ..Subject::default()
    };
    vec![
        (
            "CUDA OOM, not the generic CUDA error",
            text_event(
                "RuntimeError: CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`",
            ),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "CUDA OOM outside the caching allocator",
            text_event(
                "RuntimeError: CUDA error: out of memory\nCUDA kernel errors might be asynchronously reported",
            ),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "CUDA OOM from the driver API",
            text_event("CUDA_ERROR_OUT_OF_MEMORY: out of memory"),
            Some("CUDA_OUT_OF_MEMORY"),
        ),
        (
            "the CUDA error, not the assertion it printed",
            text_event(
                "Indexing.cu:1146: block: [0,0,0] Assertion `srcIndex < srcSelectDimSize` failed.\nRuntimeError: CUDA error: device-side assert triggered",
            ),
            Some("CUDA_ERROR"),
        ),
        (
            "the OOM kill, not the SIGKILL",
            Subject {
                signal: Some(9),
                oom: true,
                ..Subject::default()
            },
            Some("OOM_KILL"),
        ),
        (
            "host OOM, not the uncaught C++ exception",
            exception_event(
                "std::bad_alloc",
                "terminate called after throwing an instance of 'std::bad_alloc'\n  what():  std::bad_alloc",
            ),
            Some("HOST_OUT_OF_MEMORY"),
        ),
        (
            "the uncaught C++ exception, not the assertion in its message",
            exception_event(
                "c10::Error",
                "terminate called after throwing an instance of 'c10::Error'\n  what():  Assertion `t.defined()` failed",
            ),
            Some("CPP_UNCAUGHT_EXCEPTION"),
        ),
        (
            "the Go panic, not the segfault it reports",
            text_event(
                "panic: runtime error: invalid memory address or nil pointer dereference\n[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4]",
            ),
            Some("GO_PANIC"),
        ),
        (
            "double free, not generic heap corruption",
            text_event(
                "*** Error in `python3': double free or corruption (fasttop): 0x000055d5c8a0e2a0 ***",
            ),
            Some("DOUBLE_FREE"),
        ),
        (
            "the missing native library, not the import error",
            exception_event(
                "ImportError",
                "ImportError: libcudart.so.12: cannot open shared object file: No such file or directory",
            ),
            Some("MISSING_SHARED_LIBRARY"),
        ),
        (
            "a loader error, not invalid input",
            exception_event(
                "ValueError",
                "ValueError: Unrecognized model in ./bert. Should have a `model_type` key in its config.json",
            ),
            Some("MODEL_LOAD_ERROR"),
        ),
        (
            "the exception inside the request handler, not the handler",
            exception_event(
                "ValueError",
                "ERROR:    Exception in ASGI application\nValueError: bad shape",
            ),
            Some("INVALID_INPUT"),
        ),
        (
            "a shape error inside the request handler",
            exception_event(
                "RuntimeError",
                "ERROR:    Exception in ASGI application\nRuntimeError: mat1 and mat2 shapes cannot be multiplied (4x10 and 20x5)",
            ),
            Some("INVALID_INPUT"),
        ),
        (
            "a hub repository that does not exist, not an authentication failure",
            exception_event(
                "RepositoryNotFoundError",
                "huggingface_hub.errors.RepositoryNotFoundError: 401 Client Error. Repository Not Found for url: https://huggingface.co/api/models/x/y.",
            ),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "an NCCL collective timeout is NCCL's",
            text_event(
                "Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1, OpType=ALLREDUCE, Timeout(ms)=600000) ran for 600001 milliseconds before timing out.",
            ),
            Some("NCCL_ERROR"),
        ),
        (
            "a subprocess timeout whose command line mentions a socket",
            exception_event(
                "subprocess.TimeoutExpired",
                "subprocess.TimeoutExpired: Command '['python3', 'read_socket.py']' timed out after 0.5 seconds",
            ),
            Some("SUBPROCESS_TIMEOUT"),
        ),
        (
            "a lock wait on a socket's lock file",
            exception_event(
                "filelock._error.Timeout",
                "filelock._error.Timeout: The file lock '/run/app/socket.lock' could not be acquired (connection timed out)",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            "a gunicorn worker timeout is not a network timeout",
            Subject {
                text: "[2024-01-01 00:00:00 +0000] [1] [CRITICAL] WORKER TIMEOUT (pid:12)",
                level: Some(Level::Critical),
                ..Subject::default()
            },
            Some("WORKER_TIMEOUT"),
        ),
        (
            "a model file under a library directory is still missing",
            open("/usr/local/lib/ml/resnet50.onnx"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "a compiled model missing from a models directory, not a shared object search",
            open("/srv/models/resnet50/deploy_lib.so"),
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "a library directory probe",
            open("/usr/local/lib/ml/libfoo.conf"),
            Some("BENIGN_LIBRARY_DIR"),
        ),
        (
            "a virtualenv probe under a models directory is expected",
            open("/srv/models/app/.venv/pyvenv.cfg"),
            Some("BENIGN_SYSTEM_PROBE"),
        ),
        (
            "a byte-code cache probe under a models directory is expected",
            open("/srv/models/app/__pycache__/serve.cpython-312.pyc"),
            Some("BENIGN_SYSTEM_PROBE"),
        ),
        (
            "an IPv6 attempt before IPv4 is expected, not an unreachable network",
            Subject {
                syscall: Some("connect"),
                errno: linux::errno_value("ENETUNREACH"),
                path: Some("[2001:db8::1]:443"),
                syscall_failure: true,
                ..Subject::default()
            },
            Some("BENIGN_IPV6_FALLBACK"),
        ),
        (
            "the loader's hwcaps probes under a models directory are expected",
            open(
                "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/glibc-hwcaps/x86-64-v3/libc10.so",
            ),
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
    ]
}

/// Precedence is in the data: with the built-in file's patterns in reverse order, every
/// overlap is still decided the same way.
#[test]
fn overlaps_are_decided_by_priority_not_file_order() {
    let db = db();
    let reversed = PatternDb::load_with(&reversed_builtin(), None).unwrap();
    assert_eq!(reversed.list().len(), db.list().len());
    let mut wrong = Vec::new();
    for (what, subject, want) in overlaps() {
        let got = id(&db, &subject);
        let got_reversed = id(&reversed, &subject);
        if got.as_deref() != want || got_reversed.as_deref() != want {
            wrong.push(format!(
                "{what}: want {want:?}, got {got:?}, reversed file {got_reversed:?}"
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// INVALID_INPUT needs evidence about the input: a validation exception, a ValueError-like
/// exception whose message is about shapes, dtypes or inputs, or a known shape message. A
/// bare EINVAL, KeyError, AssertionError or TypeError is left to the fallback classifier.
#[test]
fn invalid_input_needs_input_evidence() {
    let db = db();
    let caught = [
        exception_event("ValueError", "ValueError: expected 3 dims, got (2, 2)"),
        exception_event(
            "ValueError",
            "ValueError: could not convert string to float: 'abc'",
        ),
        exception_event("ValueError", "ValueError: bad batch size -1"),
        exception_event(
            "ValueError",
            "ValueError: invalid literal for int() with base 10: 'x'",
        ),
        exception_event(
            "ValueError",
            "ValueError: Expected input batch_size (4) to match target batch_size (8).",
        ),
        exception_event(
            "ValueError",
            "ValueError: operands could not be broadcast together with shapes (3,) (4,)",
        ),
        exception_event("TypeError", "TypeError: expected dtype float32, got int64"),
        exception_event(
            "IndexError",
            "IndexError: index 5 is out of bounds for axis 0 with size 3",
        ),
        exception_event("IndexError", "IndexError: index out of range in self"),
        exception_event("AssertionError", "AssertionError: input shape mismatch"),
        exception_event("KeyError", "KeyError: 'input_ids'"),
        exception_event(
            "json.decoder.JSONDecodeError",
            "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)",
        ),
        exception_event(
            "pydantic_core._pydantic_core.ValidationError",
            "1 validation error for Request",
        ),
        exception_event(
            "RequestValidationError",
            "RequestValidationError: body -> prompt",
        ),
        exception_event(
            "tensorflow.python.framework.errors_impl.InvalidArgumentError",
            "Incompatible shapes: [2,3] vs. [2,4]",
        ),
        exception_event(
            "java.lang.NumberFormatException",
            "java.lang.NumberFormatException: For input string: \"x\"",
        ),
        exception_event(
            "java.lang.IllegalArgumentException",
            "java.lang.IllegalArgumentException: invalid input shape [1, 3]",
        ),
        exception_event(
            "RuntimeError",
            "RuntimeError: mat1 and mat2 shapes cannot be multiplied (4x10 and 20x5)",
        ),
        exception_event(
            "RuntimeError",
            "RuntimeError: Invalid input: the prompt is empty",
        ),
        Subject {
            text: "2024-01-01 12:00:00 ERROR invalid input: prompt is empty",
            level: Some(Level::Error),
            ..Subject::default()
        },
        Subject {
            text: "ERROR 2024-01-01 KeyError: 'input_ids'",
            exception: Some("KeyError"),
            level: Some(Level::Error),
            ..Subject::default()
        },
    ];
    let mut wrong = Vec::new();
    for s in caught {
        let got = id(&db, &s);
        if got.as_deref() != Some("INVALID_INPUT") {
            wrong.push(format!("missed {:?}: {got:?}", s.text));
        }
    }
    let not_input: [(Subject, Option<&str>); 13] = [
        (syscall("ioctl", "EINVAL", None), None),
        (syscall("mmap", "EINVAL", None), None),
        (
            Subject {
                text: "OSError: [Errno 22] Invalid argument: 'x'",
                exception: Some("OSError"),
                errno: Some(22),
                ..Subject::default()
            },
            None,
        ),
        (exception_event("KeyError", "KeyError: 'llama'"), None),
        (exception_event("KeyError", "KeyError: 'model_type'"), None),
        (
            exception_event(
                "AssertionError",
                "AssertionError: Torch not compiled with CUDA enabled",
            ),
            None,
        ),
        (exception_event("AssertionError", "AssertionError"), None),
        (
            exception_event(
                "TypeError",
                "TypeError: 'NoneType' object is not subscriptable",
            ),
            None,
        ),
        (
            exception_event(
                "ValueError",
                "ValueError: too many values to unpack (expected 2)",
            ),
            None,
        ),
        (
            exception_event("IndexError", "IndexError: list index out of range"),
            None,
        ),
        (
            exception_event(
                "UnicodeEncodeError",
                "UnicodeEncodeError: 'ascii' codec can't encode character '\\xe9' in position 3",
            ),
            None,
        ),
        (
            exception_event(
                "std::out_of_range",
                "terminate called after throwing an instance of 'std::out_of_range'\n  what():  vector::_M_range_check: __n (which is 3) >= this->size() (which is 3)",
            ),
            Some("CPP_UNCAUGHT_EXCEPTION"),
        ),
        (
            Subject {
                text: "skipping invalid input row 3",
                ..Subject::default()
            },
            None,
        ),
    ];
    for (s, want) in not_input {
        let got = id(&db, &s);
        if got.as_deref() != want {
            wrong.push(format!(
                "{:?} {:?} {:?}: want {want:?}, got {got:?}",
                s.syscall, s.exception, s.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// NETWORK_TIMEOUT is about the network: sockets, HTTP clients, RPC deadlines. A subprocess
/// or lock timeout has its own pattern; a timeout that says nothing about what timed out
/// (asyncio's bare TimeoutError, a job's own timeout) is left to the fallback classifier.
#[test]
fn network_timeouts_are_network_ones() {
    let db = db();
    let network = [
        syscall("recvfrom", "ETIMEDOUT", None),
        syscall("connect", "ETIMEDOUT", Some("10.0.0.1:443")),
        exception_event("socket.timeout", "socket.timeout: timed out"),
        exception_event("TimeoutError", "TimeoutError: timed out"),
        Subject {
            errno: Some(110),
            ..exception_event(
                "TimeoutError",
                "TimeoutError: [Errno 110] Connection timed out",
            )
        },
        exception_event("TimeoutError", "TimeoutError: The read operation timed out"),
        exception_event(
            "requests.exceptions.ConnectTimeout",
            "requests.exceptions.ConnectTimeout: HTTPSConnectionPool(host='huggingface.co', port=443): Max retries exceeded with url: /api/models/x (Caused by ConnectTimeoutError(<urllib3.connection.HTTPSConnection object at 0x7f>, 'Connection to huggingface.co timed out. (connect timeout=10)'))",
        ),
        exception_event(
            "requests.exceptions.ReadTimeout",
            "requests.exceptions.ReadTimeout: HTTPSConnectionPool(host='x', port=443): Read timed out. (read timeout=10)",
        ),
        exception_event("requests.exceptions.Timeout", "requests.exceptions.Timeout"),
        exception_event("urllib3.exceptions.ReadTimeoutError", "x"),
        exception_event("httpx.ConnectTimeout", "httpx.ConnectTimeout"),
        exception_event("httpx.PoolTimeout", "httpx.PoolTimeout"),
        exception_event(
            "aiohttp.client_exceptions.ServerTimeoutError",
            "aiohttp.client_exceptions.ServerTimeoutError: Timeout on reading data from socket",
        ),
        exception_event("aiohttp.client_exceptions.ConnectionTimeoutError", "x"),
        exception_event(
            "openai.APITimeoutError",
            "openai.APITimeoutError: Request timed out.",
        ),
        exception_event(
            "google.api_core.exceptions.DeadlineExceeded",
            "google.api_core.exceptions.DeadlineExceeded: 504 Deadline Exceeded",
        ),
        exception_event(
            "grpc._channel._InactiveRpcError",
            "grpc._channel._InactiveRpcError: <_InactiveRpcError of RPC that terminated with:\n\tstatus = StatusCode.DEADLINE_EXCEEDED\n\tdetails = \"Deadline Exceeded\"",
        ),
        exception_event(
            "java.net.SocketTimeoutException",
            "java.net.SocketTimeoutException: Read timed out",
        ),
        exception_event(
            "redis.exceptions.TimeoutError",
            "redis.exceptions.TimeoutError: Timeout reading from socket",
        ),
        exception_event(
            "urllib.error.URLError",
            "urllib.error.URLError: <urlopen error timed out>",
        ),
        text_event("Get \"https://example.com\": dial tcp 10.0.0.1:443: i/o timeout"),
        text_event("net/http: request canceled (Client.Timeout exceeded while awaiting headers)"),
        text_event("curl: (28) Connection timed out after 5001 milliseconds"),
        text_event("Error: connect ETIMEDOUT 10.0.0.1:443"),
    ];
    let mut wrong = Vec::new();
    for s in network {
        let got = id(&db, &s);
        if got.as_deref() != Some("NETWORK_TIMEOUT") {
            wrong.push(format!(
                "missed {:?} {:?} {:?}: {got:?}",
                s.syscall, s.exception, s.text
            ));
        }
    }
    let others: [(Subject, Option<&str>); 11] = [
        (
            exception_event(
                "subprocess.TimeoutExpired",
                "subprocess.TimeoutExpired: Command '['python3', 'read_socket.py']' timed out after 0.5 seconds",
            ),
            Some("SUBPROCESS_TIMEOUT"),
        ),
        (
            exception_event(
                "filelock._error.Timeout",
                "filelock._error.Timeout: The file lock '/root/.cache/huggingface/hub/.locks/x.lock' could not be acquired.",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event("filelock.Timeout", "filelock.Timeout"),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "TimeoutError",
                "TimeoutError: timed out acquiring the lock on /data/index",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "pymysql.err.OperationalError",
                "pymysql.err.OperationalError: (1205, 'Lock wait timeout exceeded; try restarting transaction')",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        (
            exception_event(
                "sqlite3.OperationalError",
                "sqlite3.OperationalError: database is locked",
            ),
            Some("LOCK_TIMEOUT"),
        ),
        // asyncio.wait_for() and asyncio.timeout() raise a bare TimeoutError: a lock, a queue
        // or a connection, nothing says which.
        (exception_event("TimeoutError", "TimeoutError"), None),
        (
            exception_event(
                "asyncio.exceptions.TimeoutError",
                "asyncio.exceptions.TimeoutError",
            ),
            None,
        ),
        (
            exception_event(
                "concurrent.futures._base.TimeoutError",
                "concurrent.futures._base.TimeoutError: 3 (of 4) futures unfinished",
            ),
            None,
        ),
        (
            text_event("Task build-index timed out after 300 seconds"),
            None,
        ),
        (
            text_event("Timed out waiting for lock"),
            Some("LOCK_TIMEOUT"),
        ),
    ];
    for (s, want) in others {
        let got = id(&db, &s);
        if got.as_deref() != want {
            wrong.push(format!(
                "{:?} {:?}: want {want:?}, got {got:?}",
                s.exception, s.text
            ));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// A compiled model (`model.so`, TVM's `deploy_lib.so`, AOTInductor) missing from a models
/// directory is MODEL_NOT_FOUND; the dynamic loader's own search (library names, hwcaps
/// subdirectories) stays benign wherever the search path points, models directories included.
#[test]
fn a_missing_compiled_model_is_not_a_library_search() {
    let db = db();
    let cases = [
        (
            "/srv/models/resnet50/deploy_lib.so",
            Some("MODEL_NOT_FOUND"),
        ),
        ("/opt/models/llama/model.so", Some("MODEL_NOT_FOUND")),
        (
            "/data/checkpoints/step-100/compiled.so",
            Some("MODEL_NOT_FOUND"),
        ),
        (
            "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/libcudart.so.12",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/opt/models/lib/tls/x86_64/libfoo.so",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/srv/models/app/.venv/lib/python3.12/site-packages/torch/lib/glibc-hwcaps/x86-64-v3/libc10.so",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        (
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1",
            Some("BENIGN_LIBRARY_SEARCH"),
        ),
        ("/etc/ld.so.preload", Some("BENIGN_LIBRARY_SEARCH")),
        (
            "/opt/app/plugins/codec_h264.so",
            Some("BENIGN_SHARED_OBJECT_SEARCH"),
        ),
    ];
    let mut wrong = Vec::new();
    for (path, want) in cases {
        let got = id(&db, &syscall("openat", "ENOENT", Some(path)));
        if got.as_deref() != want {
            wrong.push(format!("{path}: want {want:?}, got {got:?}"));
        }
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
