use super::*;

/// Groups `text` written by thread 1 to stderr, one write per line, 1 µs apart; a line
/// starting with `@` comes 10 ms after the one before.
fn group(text: &str) -> Vec<Block> {
    let lines: Vec<(u64, &str)> = text
        .lines()
        .map(|l| match l.strip_prefix('@') {
            Some(rest) => (10_000_000, rest),
            None => (0, l),
        })
        .collect();
    group_timed(&lines)
}

/// Lines with a delay (ns) before each.
fn group_timed(lines: &[(u64, &str)]) -> Vec<Block> {
    let mut g = Grouper::new(GroupOptions::default());
    let mut out = Vec::new();
    let mut ts = 1_000_000_000;
    for (delay, text) in lines {
        ts += delay + 1_000;
        let line = Line {
            tid: 1,
            fd: 2,
            timestamp_ns: ts,
            text: text.to_string(),
            context: None,
        };
        g.push(line, &mut out);
    }
    g.flush(&mut out);
    out
}

fn errors(blocks: &[Block]) -> Vec<&Block> {
    blocks
        .iter()
        .filter(|b| b.kind != BlockKind::Plain)
        .collect()
}

#[test]
fn python_traceback() {
    let blocks = group(
        r#"starting
Traceback (most recent call last):
  File "/app/main.py", line 3, in <module>
    open('/models/missing.pt')
    ~~~~^^^^^^^^^^^^^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: '/models/missing.pt'
@done"#,
    );
    assert_eq!(blocks.len(), 3);
    let b = &blocks[1];
    assert_eq!(b.kind, BlockKind::PythonTraceback);
    assert_eq!(b.exception.as_deref(), Some("FileNotFoundError"));
    assert_eq!(
        b.message,
        "[Errno 2] No such file or directory: '/models/missing.pt'"
    );
    assert_eq!(b.frames.len(), 1);
    assert_eq!(b.frames[0].file, "/app/main.py");
    assert_eq!(b.frames[0].line, Some(3));
    assert_eq!(b.frames[0].function.as_deref(), Some("<module>"));
    assert_eq!(
        b.frames[0].code.as_deref(),
        Some("open('/models/missing.pt')")
    );
    assert_eq!(b.lines.len(), 5);
    assert!(b.text.starts_with("FileNotFoundError:"), "{}", b.text);
    assert!(!b.text.contains("File \""));
    assert_eq!(blocks[2].message, "done");
}

#[test]
fn chained_python_exceptions_keep_the_chain() {
    let blocks = group(
        r#"Traceback (most recent call last):
  File "a.py", line 2, in load
    return json.loads(s)
json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "a.py", line 9, in <module>
    load()
  File "a.py", line 4, in load
    raise ValueError("bad config")
ValueError: bad config"#,
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 1, "{blocks:#?}");
    let b = e[0];
    assert_eq!(b.exception.as_deref(), Some("ValueError"));
    assert_eq!(b.message, "bad config");
    assert_eq!(b.chain.len(), 1);
    assert_eq!(b.chain[0].exception, "json.decoder.JSONDecodeError");
    assert_eq!(b.frames.len(), 2);
    assert!(b.text.contains("JSONDecodeError") && b.text.contains("ValueError: bad config"));
}

#[test]
fn multi_line_message_only_within_the_window() {
    let blocks = group_timed(&[
        (0, "Traceback (most recent call last):"),
        (0, r#"  File "x.py", line 1, in <module>"#),
        (0, "RuntimeError: CUDA error: device-side assert triggered"),
        (0, "For debugging consider passing CUDA_LAUNCH_BLOCKING=1"),
        (0, "INFO: next request"),
        (0, "Traceback (most recent call last):"),
        (0, r#"  File "x.py", line 1, in <module>"#),
        (0, "ValueError: x"),
        (1_000_000_000, "much later"),
    ]);
    let e = errors(&blocks);
    assert_eq!(e.len(), 2);
    assert!(e[0].message.ends_with("CUDA_LAUNCH_BLOCKING=1"));
    assert_eq!(e[1].message, "x");
    assert_eq!(blocks.last().unwrap().message, "much later");
}

#[test]
fn logging_exception_merges_log_line_and_traceback() {
    let blocks = group(
        r#"ERROR:root:request failed
Traceback (most recent call last):
  File "srv.py", line 5, in handle
    raise KeyError("user")
KeyError: 'user'"#,
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, BlockKind::PythonTraceback);
    assert_eq!(e[0].level, Some(Level::Error));
    assert_eq!(e[0].exception.as_deref(), Some("KeyError"));
    assert!(e[0].text.contains("request failed"));
}

#[test]
fn exception_group() {
    let blocks = group(
        r#"  + Exception Group Traceback (most recent call last):
  |   File "g.py", line 1, in <module>
  |     raise ExceptionGroup("many", [ValueError(1), TypeError(2)])
  | ExceptionGroup: many (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | ValueError: 1
    +---------------- 2 ----------------
    | TypeError: 2
    +------------------------------------
after"#,
    );
    let b = errors(&blocks)[0];
    assert_eq!(b.exception.as_deref(), Some("ExceptionGroup"));
    assert_eq!(b.chain.len(), 2);
    assert_eq!(b.frames.len(), 1);
    assert_eq!(blocks.last().unwrap().message, "after");
}

#[test]
fn rust_panics_new_and_old() {
    let blocks = group(
        "thread 'main' panicked at src/main.rs:4:5:\n\
         called `Option::unwrap()` on a `None` value\n\
         note: run with `RUST_BACKTRACE=1` environment variable to display a backtrace\n\
         thread 'worker' panicked at 'boom', src/lib.rs:10:9\n\
         next",
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 2);
    assert_eq!(e[0].kind, BlockKind::RustPanic);
    assert_eq!(e[0].message, "called `Option::unwrap()` on a `None` value");
    assert_eq!(e[0].location.as_deref(), Some("src/main.rs:4:5"));
    assert_eq!(e[0].thread.as_deref(), Some("main"));
    assert_eq!(e[1].message, "boom");
    assert_eq!(e[1].location.as_deref(), Some("src/lib.rs:10:9"));
}

#[test]
fn rust_panic_with_backtrace() {
    let blocks = group(
        "thread 'main' (77) panicked at src/main.rs:2:5:\n\
         assertion `left == right` failed\n  left: 1\n right: 2\n\
         stack backtrace:\n   0: rust_begin_unwind\n             at /rustc/x/library/std/src/panicking.rs:647:5\n\
         \x20  1: demo::main\n             at ./src/main.rs:2:5\n\
         note: Some details are omitted, run with `RUST_BACKTRACE=full` for a verbose backtrace.",
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].message,
        "assertion `left == right` failed\n  left: 1\n right: 2"
    );
    assert_eq!(e[0].frames.len(), 2);
    assert_eq!(e[0].frames[1].function.as_deref(), Some("demo::main"));
    assert_eq!(e[0].frames[1].file, "./src/main.rs");
    assert_eq!(e[0].frames[1].line, Some(2));
}

#[test]
fn cpp_terminate() {
    let blocks = group(
        "terminate called after throwing an instance of 'std::runtime_error'\n  what():  boom\nAborted",
    );
    let e = errors(&blocks);
    assert_eq!(e[0].kind, BlockKind::CppTerminate);
    assert_eq!(e[0].exception.as_deref(), Some("std::runtime_error"));
    assert_eq!(e[0].message, "boom");
    assert_eq!(blocks.len(), 2);
}

#[test]
fn glibc_aborts_are_single_blocks() {
    let blocks = group(
        "free(): double free detected in tcache 2\n*** stack smashing detected ***: terminated",
    );
    assert_eq!(blocks.len(), 2);
    assert!(blocks.iter().all(|b| b.kind == BlockKind::RuntimeAbort));
}

#[test]
fn go_panic() {
    let blocks = group(
        "panic: runtime error: invalid memory address or nil pointer dereference\n\
         [signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x48f0b6]\n\
         \n\
         goroutine 1 [running]:\n\
         main.(*Server).handle(0x0)\n\
         \t/app/main.go:12 +0x16\n\
         main.main()\n\
         \t/app/main.go:20 +0x1d\n\
         exit status 2\n\
         other",
    );
    let e = errors(&blocks);
    assert_eq!(e[0].kind, BlockKind::GoPanic);
    assert_eq!(e[0].frames.len(), 2);
    assert_eq!(
        e[0].frames[0].function.as_deref(),
        Some("main.(*Server).handle")
    );
    assert_eq!(e[0].frames[0].line, Some(12));
    assert!(e[0].text.contains("[signal SIGSEGV"));
    assert_eq!(blocks.last().unwrap().message, "other");
}

#[test]
fn java_exception_with_cause() {
    let blocks = group(
        "Exception in thread \"main\" java.lang.RuntimeException: outer\n\
         \tat com.x.Main.run(Main.java:10)\n\
         Caused by: java.io.FileNotFoundException: /data/x (No such file or directory)\n\
         \tat java.io.FileInputStream.open0(Native Method)\n\
         \t... 3 more",
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 1);
    assert_eq!(
        e[0].exception.as_deref(),
        Some("java.io.FileNotFoundException")
    );
    assert_eq!(e[0].chain[0].exception, "java.lang.RuntimeException");
    assert_eq!(e[0].frames.len(), 2);
    assert_eq!(e[0].thread.as_deref(), Some("main"));
}

#[test]
fn log_lines_and_plain_lines() {
    let blocks = group("INFO ok\n2024-01-01 12:00:00 ERROR db down\n  detail line\nplain");
    assert_eq!(blocks.len(), 3);
    assert_eq!(blocks[1].kind, BlockKind::LogLine);
    assert_eq!(blocks[1].message, "db down");
    assert_eq!(blocks[1].lines.len(), 2);
    assert_eq!(blocks[2].kind, BlockKind::Plain);
}

#[test]
fn python_faulthandler_dump() {
    let blocks = group(
        "Fatal Python error: Segmentation fault\n\nCurrent thread 0x00007f (most recent call first):\n  File \"/app/x.py\", line 3 in crash\n  File \"/app/x.py\", line 5 in <module>\n\nExtension modules: numpy (total: 1)",
    );
    let e = errors(&blocks);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].kind, BlockKind::PythonFatal);
    assert_eq!(e[0].message, "Segmentation fault");
    assert_eq!(e[0].frames.len(), 2);
}

#[test]
fn long_blocks_are_bounded() {
    let mut text = String::from("Traceback (most recent call last):\n");
    for i in 0..1000 {
        text.push_str(&format!("  File \"r.py\", line {i}, in f\n    f()\n"));
    }
    text.push_str("RecursionError: maximum recursion depth exceeded");
    let blocks = group(&text);
    let b = errors(&blocks)[0];
    assert_eq!(b.exception.as_deref(), Some("RecursionError"));
    assert_eq!(b.lines.len(), 201);
    assert!(b.lines.iter().any(|l| l.contains("lines omitted")));
    assert!(b.frames.len() <= 67);
    assert_eq!(
        b.lines.last().unwrap(),
        "RecursionError: maximum recursion depth exceeded"
    );
}

#[test]
fn idle_blocks_are_flushed() {
    let mut g = Grouper::new(GroupOptions::default());
    let mut out = Vec::new();
    let line = |ts, text: &str| Line {
        tid: 1,
        fd: 2,
        timestamp_ns: ts,
        text: text.into(),
        context: None,
    };
    g.push(line(0, "ValueError: bad"), &mut out);
    assert!(out.is_empty());
    g.flush_idle(10, 1_000, &mut out);
    assert!(out.is_empty());
    g.flush_idle(2_000, 1_000, &mut out);
    assert_eq!(out.len(), 1);
}
