use super::*;

fn level(line: &str) -> Option<(Level, String)> {
    error_level(line)
}

#[test]
fn log_levels() {
    let cases = [
        (
            "2024-01-01 12:00:00 ERROR something broke",
            Level::Error,
            "something broke",
        ),
        ("[ERROR] x", Level::Error, "x"),
        (
            "ERROR:root:failed to load",
            Level::Error,
            "root:failed to load",
        ),
        (
            "2024-01-01 12:00:00,123 - app - CRITICAL - disk gone",
            Level::Critical,
            "disk gone",
        ),
        (
            "time=\"2024\" level=error msg=\"db down\"",
            Level::Error,
            "db down",
        ),
        (r#"{"level":"fatal","msg":"boom"}"#, Level::Fatal, "boom"),
        (
            "E0101 12:00:00.000000  1234 main.cc:42] check this",
            Level::Error,
            "check this",
        ),
        (
            "F0101 12:00:00.000000 1234 main.cc:42] Check failed: x",
            Level::Fatal,
            "Check failed: x",
        ),
        (
            "[2024-01-01T00:00:00Z ERROR my_crate] oops",
            Level::Error,
            "my_crate] oops",
        ),
        ("Error: config missing", Level::Error, "config missing"),
        (
            "fatal: not a git repository",
            Level::Fatal,
            "not a git repository",
        ),
        ("[error] lower bracketed", Level::Error, "lower bracketed"),
        ("<3>systemd style", Level::Error, "systemd style"),
        (
            "ERROR:    Exception in ASGI application",
            Level::Error,
            "Exception in ASGI application",
        ),
    ];
    for (line, want, msg) in cases {
        let got = level(line).unwrap_or_else(|| panic!("no level in {line}"));
        assert_eq!(got.0, want, "{line}");
        assert_eq!(got.1, msg, "{line}");
    }
}

#[test]
fn not_error_levels() {
    for line in [
        "INFO all good",
        "2024-01-01 INFO retrying after ERROR in worker",
        "0 errors found",
        "error_rate=0.1",
        "the error handler is ready",
        "WARNING: low disk",
        "ErrorHandler initialized",
        "I0101 12:00:00.000000 1 x.cc:1] info",
    ] {
        assert_eq!(level(line), None, "{line}");
    }
    assert!(is_new_record("INFO: 127.0.0.1 GET /"));
    assert!(is_new_record("2024-01-01 something"));
    assert!(!is_new_record(
        "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"
    ));
}

#[test]
fn starts() {
    assert_eq!(
        start("Traceback (most recent call last):"),
        Some(Start::PythonTraceback { group: false })
    );
    assert_eq!(
        start("  + Exception Group Traceback (most recent call last):"),
        Some(Start::PythonTraceback { group: true })
    );
    assert_eq!(
        start("thread 'main' panicked at src/main.rs:4:5:"),
        Some(Start::RustPanic {
            thread: "main".into(),
            location: Some("src/main.rs:4:5".into()),
            message: None
        })
    );
    assert_eq!(
        start("thread 'main' (4321) panicked at src/main.rs:4:5:"),
        Some(Start::RustPanic {
            thread: "main".into(),
            location: Some("src/main.rs:4:5".into()),
            message: None
        })
    );
    assert_eq!(
        start("thread 'main' panicked at 'boom', src/main.rs:4:5"),
        Some(Start::RustPanic {
            thread: "main".into(),
            location: Some("src/main.rs:4:5".into()),
            message: Some("boom".into())
        })
    );
    assert_eq!(
        start("terminate called after throwing an instance of 'std::runtime_error'"),
        Some(Start::CppTerminate {
            exception: Some("std::runtime_error".into()),
            message: None,
            complete: false
        })
    );
    assert_eq!(cpp_what("  what():  boom").as_deref(), Some("boom"));
    assert!(matches!(
        start("libc++abi: terminating due to uncaught exception of type std::logic_error: bad"),
        Some(Start::CppTerminate { complete: true, .. })
    ));
    for line in [
        "free(): double free detected in tcache 2",
        "double free or corruption (out)",
        "malloc(): corrupted top size",
        "*** stack smashing detected ***: terminated",
        "*** Error in `./a.out': double free or corruption (fasttop): 0x0000000001c2a010 ***",
    ] {
        assert!(
            matches!(start(line), Some(Start::RuntimeAbort { .. })),
            "{line}"
        );
    }
    assert_eq!(
        start("RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"),
        Some(Start::Exception {
            exception: "RuntimeError".into(),
            message: "CUDA out of memory. Tried to allocate 2.00 GiB".into()
        })
    );
    assert!(matches!(
        start("socket.timeout: timed out"),
        Some(Start::Exception { .. })
    ));
    assert!(matches!(
        start("panic: runtime error: index out of range [5] with length 3"),
        Some(Start::GoPanic { .. })
    ));
    assert!(matches!(
        start(r#"Exception in thread "main" java.lang.IllegalStateException: bad"#),
        Some(Start::JavaException { .. })
    ));
    for line in [
        "Loading model",
        "UserWarning: deprecated",
        "Error",
        "hello: world",
    ] {
        assert_eq!(start(line), None, "{line}");
    }
}

#[test]
fn frames() {
    let f = python_frame(r#"  File "/app/main.py", line 3, in <module>"#).unwrap();
    assert_eq!(
        (f.file.as_str(), f.line, f.function.as_deref()),
        ("/app/main.py", Some(3), Some("<module>"))
    );
    let f = python_frame(r#"  File "x.py", line 1"#).unwrap();
    assert_eq!(f.function, None);
    let f = python_frame(r#"  File "x.py", line 7 in run"#).unwrap();
    assert_eq!(f.function.as_deref(), Some("run"));
    let f = java_frame("\tat com.x.Y.f(Y.java:10)").unwrap();
    assert_eq!((f.file.as_str(), f.line), ("Y.java", Some(10)));
    assert_eq!(
        traceback_exception("KeyboardInterrupt"),
        Some(("KeyboardInterrupt".into(), String::new()))
    );
    assert_eq!(group_exception("raise_it()"), None);
}

#[test]
fn errno_inference() {
    assert_eq!(
        infer_errno("[Errno 2] No such file or directory: 'x'"),
        Some(2)
    );
    assert_eq!(
        infer_errno("No such file or directory (os error 2)"),
        Some(2)
    );
    assert_eq!(
        infer_errno("Error: ENOENT: no such file or directory, open 'm.onnx'"),
        Some(2)
    );
    assert_eq!(
        infer_errno("dial tcp 127.0.0.1:9: connect: connection refused"),
        Some(111)
    );
    assert_eq!(infer_errno("open /x: permission denied"), Some(13));
    assert_eq!(
        infer_errno(r#"Os { code: 24, kind: Uncategorized, message: "Too many open files" }"#),
        Some(24)
    );
    assert_eq!(infer_errno("all good"), None);
    assert_eq!(infer_errno("ERROR x"), None);
}

#[test]
fn path_extraction() {
    let p = |t: &str| extract_path(t);
    assert_eq!(
        p("[Errno 2] No such file or directory: '/models/missing.pt'").as_deref(),
        Some("/models/missing.pt")
    );
    assert_eq!(
        p("open /models/x.pt: no such file or directory").as_deref(),
        Some("/models/x.pt")
    );
    assert_eq!(
        p("No such file or directory: 'model.safetensors'").as_deref(),
        Some("model.safetensors")
    );
    assert_eq!(
        p("Can't load 'https://huggingface.co/x' model").as_deref(),
        None
    );
    assert_eq!(p("KeyError: 'input_ids'"), None);
}
