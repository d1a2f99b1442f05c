use std::{path::PathBuf, process::Command};

use super::*;

/// The offsets the interpreter's own headers give, printed by a C program compiled against them
/// (`headers_offsets.c`).
fn from_headers(include: &std::path::Path, tag: usize, minor: u8) -> Vec<(String, u64)> {
    let dir = std::env::temp_dir().join(format!(
        "profiler-python-offsets-{}-{tag}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let exe = dir.join("offsets");
    let source = dir.join("offsets.c");
    let program = if minor == 10 {
        include_str!("headers_offsets_310.c")
    } else {
        include_str!("headers_offsets.c")
    };
    std::fs::write(&source, program).unwrap();
    let built = Command::new("cc")
        .arg("-I")
        .arg(include)
        .arg("-o")
        .arg(&exe)
        .arg(&source)
        .output()
        .expect("cc");
    assert!(
        built.status.success(),
        "cannot compile against {}: {}",
        include.display(),
        String::from_utf8_lossy(&built.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.split_once(' ').unwrap();
            (k.to_string(), v.parse().unwrap())
        })
        .collect()
}

/// The header folders of the installed interpreters: Debian's python3.11-dev, and the image's
/// own builds of 3.10, 3.11 and 3.12.
fn installed_headers() -> Vec<(u8, PathBuf)> {
    let mut out = vec![(11, PathBuf::from("/usr/include/python3.11"))];
    for minor in [10u8, 11, 12] {
        let dir = crate::families::python::testing::interpreter_dir(minor)
            .unwrap_or_else(|| panic!("no Python 3.{minor} installed (see tests/README)"));
        out.push((minor, dir.join(format!("include/python3.{minor}"))));
    }
    for (_, dir) in &out {
        assert!(
            dir.join("internal/pycore_runtime.h").exists(),
            "{} has no internal headers (python3.11-dev)",
            dir.display()
        );
    }
    out
}

#[test]
fn python_layouts_match_the_headers() {
    for (tag, (minor, include)) in installed_headers().into_iter().enumerate() {
        let layout = builtin(minor).unwrap();
        for (field, value) in from_headers(&include, tag, minor) {
            let ours = match field.as_str() {
                "runtime_interpreters_head" => layout.runtime_interpreters_head,
                "interp_threads_head" => layout.interp_threads_head,
                "tstate_next" => layout.tstate_next,
                "tstate_key" => layout.tstate_key,
                "tstate_frame" => layout.tstate_frame.into(),
                "cframe_frame" => layout.cframe_frame.into(),
                "frame_code" => layout.frame_code.into(),
                "frame_previous" => layout.frame_previous.into(),
                "frame_instr" => layout.frame_instr.into(),
                "frame_entry" => layout.frame_entry.into(),
                "frame_owner" => layout.frame_owner.into(),
                "owner_cstack" => layout.owner_cstack.into(),
                "code_filename" => layout.code_filename,
                "code_name" => layout.code_name,
                "code_qualname" => layout.code_qualname,
                "code_firstlineno" => layout.code_firstlineno,
                "code_linetable" => layout.code_linetable,
                "code_adaptive" => layout.code_adaptive,
                "ascii_data" => layout.ascii_data.into(),
                "compact_data" => layout.compact_data.into(),
                "exception_args" => layout.config().exception_args.into(),
                "tuple_items" => layout.config().tuple_items.into(),
                "type_flags" => layout.config().type_flags.into(),
                other => panic!("unknown field {other}"),
            };
            assert_eq!(ours, value, "3.{minor} {field} ({})", include.display());
        }
    }
}

#[test]
fn unknown_versions_have_no_builtin_layout() {
    assert!(builtin(9).is_none());
    assert!(builtin(13).is_none());
}

/// 3.13's `_Py_DebugOffsets` as the running interpreter holds it (dumped with gdb from the
/// image's 3.13.0), read as the family reads it.
#[test]
fn debug_offsets_give_the_layout() {
    let mut b = vec![0u8; DEBUG_OFFSETS_BYTES];
    let mut put = |at: usize, v: u64| b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    put(8, 0x030D00F0);
    for (at, v) in [
        (40, 632),
        (72, 7344),
        (168, 8),
        (184, 72),
        (200, 160),
        (232, 8),
        (240, 0),
        (248, 56),
        (264, 70),
        (280, 112),
        (288, 120),
        (296, 128),
        (304, 136),
        (312, 68),
        (344, 200),
        (560, 40),
    ] {
        put(at, v);
    }
    b[..8].copy_from_slice(DEBUG_COOKIE);
    let l = from_debug_offsets(&b).unwrap();
    assert_eq!(l.version, (3, 13));
    assert_eq!(
        (l.runtime_interpreters_head, l.interp_threads_head),
        (632, 7344)
    );
    assert_eq!((l.tstate_frame, l.cframe_frame), (72, NONE));
    assert_eq!(
        (l.frame_instr, l.frame_owner, l.code_adaptive),
        (56, 70, 200)
    );
    assert_eq!((l.ascii_data, l.compact_data), (40, 56));
    // No cookie, or a free-threaded build: not read.
    let mut other = b.clone();
    other[0] = b'y';
    assert!(from_debug_offsets(&other).is_none());
    let mut free = b.clone();
    free[16] = 1;
    assert!(from_debug_offsets(&free).is_none());
}
