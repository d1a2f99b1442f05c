//! Mistakes a user can make, and kernels without a feature: each must end with one `error: `
//! line on stderr naming the problem, a non-zero exit, and no panic.

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use profiler_tests::{Profiler, TempDir, Victim, process::profile, require_root, skip, victims};

/// Runs the profiler with `args`, expects a user error, and returns its line.
fn error_of(args: &[&str]) -> String {
    profile(args).expect_error().to_string()
}

fn assert_mentions(line: &str, words: &[&str]) {
    for word in words {
        assert!(line.contains(word), "{line:?} should mention {word:?}");
    }
}

#[test]
fn no_such_pid() {
    require_root!();
    let line = error_of(&["attach", "--func", "leaf", "999999999"]);
    assert_mentions(&line, &["no such process", "999999999"]);
}

#[test]
fn pid_that_just_exited() {
    require_root!();
    let mut child = Command::new(victims::C)
        .args(["calls", "0"])
        .spawn()
        .expect("start the victim");
    let pid = child.id().to_string();
    assert!(child.wait().expect("wait for the victim").success());
    let line = error_of(&["attach", "--func", "leaf", &pid]);
    assert!(
        line.contains(&pid) && (line.contains("no such process") || line.contains("exited")),
        "{line:?}"
    );
}

#[test]
fn kernel_thread() {
    require_root!();
    // pid 2 is kthreadd on every Linux system.
    let line = error_of(&["attach", "--func", "leaf", "2"]);
    assert_mentions(&line, &["kernel thread", "2"]);
}

/// Numbers a flag cannot take: each is refused before anything starts, with one line that
/// names the flag, the value and what it must be (and no hint to put the value after `--`).
#[test]
fn numbers_out_of_range() {
    let why_seconds = "must be a positive number of seconds, at most 31536000 (a year)";
    let cases = [
        ("--duration", "inf", why_seconds),
        ("--duration", "1e30", why_seconds),
        ("--duration", "-1", why_seconds),
        ("--duration", "nan", why_seconds),
        ("--duration", "0", why_seconds),
        (
            "--max-overhead",
            "-5",
            "must be a number of percent, 0 or more",
        ),
        (
            "--max-overhead",
            "inf",
            "must be a number of percent, 0 or more",
        ),
        (
            "--time-every",
            "-1",
            "must be a power of two from 1 to 65536",
        ),
        ("--max-funcs", "0", "must be a whole number, 1 or more"),
        ("--max-funcs", "-1", "must be a whole number, 1 or more"),
        (
            "--leak-min-growth",
            "nan",
            "must be a number of bytes per second, 0 or more",
        ),
        (
            "--leak-warmup",
            "-0.1",
            "must be a fraction of the run from 0 to 0.5",
        ),
        (
            "--leak-warmup",
            "nan",
            "must be a fraction of the run from 0 to 0.5",
        ),
        (
            "--min-block",
            "-1",
            "must be a number of milliseconds from 0 to 3600000",
        ),
        (
            "--deadlock-after",
            "0",
            "must be a positive number of seconds, at most 86400",
        ),
        (
            "--deadlock-after",
            "inf",
            "must be a positive number of seconds, at most 86400",
        ),
    ];
    for (flag, value, why) in cases {
        for mode in ["run", "attach"] {
            let target = if mode == "run" { "--" } else { "1" };
            let line = error_of(&[mode, flag, value, target, victims::C]);
            let expected = format!("error: invalid value '{value}' for '{flag} <");
            assert!(line.starts_with(&expected), "{line:?}");
            assert!(line.contains(why), "{line:?}");
        }
    }
    let line = error_of(&["demo", "--duration", "-1"]);
    assert_eq!(
        line,
        format!("error: invalid value '-1' for '--duration <SECS>': {why_seconds}")
    );
    for pid in ["-1", "0", "x"] {
        let line = error_of(&["attach", pid]);
        assert_eq!(
            line,
            format!(
                "error: invalid value '{pid}' for '<PID>': must be a process id (a whole \
                 number, 1 or more)"
            )
        );
    }
}

#[test]
fn own_pid() {
    require_root!();
    // The shell's pid is the profiler's once it execs it.
    let mut cmd = Command::new("/bin/sh");
    cmd.args(["-c", "exec \"$0\" attach --level basic $$"])
        .arg(profiler_tests::profiler_bin());
    let outcome = Profiler::spawn(cmd).finish();
    let line = outcome.expect_error();
    assert!(
        line.starts_with("error: pid ")
            && line.ends_with(" is the profiler itself: it cannot profile itself"),
        "{line:?}"
    );
}

#[test]
fn glob_matching_nothing_lists_close_names() {
    require_root!();
    let line = error_of(&["run", "--func", "lef", "--", victims::C, "calls", "1"]);
    assert_mentions(&line, &["lef", "closest", "leaf"]);
}

#[test]
fn rust_name_matching_nothing_lists_the_demangled_name() {
    require_root!();
    let rust = env!("CARGO_BIN_EXE_victim_rust");
    let line = error_of(&[
        "run",
        "--func",
        "victim_rust::work::comput",
        "--",
        rust,
        "1",
    ]);
    assert_mentions(&line, &["closest", "victim_rust::work::compute"]);
}

#[test]
fn glob_matching_nothing_in_attach_mode() {
    require_root!();
    let victim = Victim::ready(victims::C, ["calls", "1"]);
    let pid = victim.pid().to_string();
    let line = error_of(&["attach", "--func", "recurze", &pid]);
    assert_mentions(&line, &["recurze", "recurse"]);
}

#[test]
fn library_not_mapped() {
    require_root!();
    let line = error_of(&[
        "run",
        "--func",
        "libnosuchlib:foo",
        "--",
        victims::C,
        "calls",
        "1",
    ]);
    assert_mentions(&line, &["libnosuchlib", "not mapped"]);
}

#[test]
fn library_glob_matching_nothing() {
    require_root!();
    let line = error_of(&["run", "--func", "libnosuch*:foo", "--", victims::LIB, "1"]);
    assert!(
        line.starts_with(
            "error: library glob \"libnosuch*\" matches nothing the target maps (mapped: "
        ) && line.contains("libvictim.so"),
        "{line:?}"
    );
}

#[test]
fn library_function_named_without_its_library_is_suggested_with_it() {
    require_root!();
    let exe = Path::new(victims::LIB)
        .file_name()
        .unwrap()
        .to_str()
        .unwrap();
    for (mode, spec) in [("run", "lib_function"), ("attach", "lib_func*")] {
        let line = if mode == "run" {
            error_of(&["run", "--func", spec, "--", victims::LIB, "1"])
        } else {
            let victim = Victim::ready(victims::LIB, ["1"]);
            error_of(&["attach", "--func", spec, &victim.pid().to_string()])
        };
        assert_eq!(
            line,
            format!(
                "error: --func \"{spec}\": no function in {exe} matches; did you mean \
                 libvictim:{spec}?"
            )
        );
    }
}

#[test]
fn report_path_in_a_missing_directory() {
    require_root!();
    for path in ["/proc/x/y.json", "/nonexistent-profiler-dir/report.json"] {
        let line = error_of(&["run", "--func", "leaf", "--json", path, "--", victims::C]);
        assert_mentions(&line, &["cannot write the report", path]);
        assert!(!Path::new(path).exists());
    }
}

#[test]
fn command_that_does_not_exist() {
    require_root!();
    for cmd in ["/no/such/command", "no-such-command-anywhere"] {
        let line = error_of(&["run", "--func", "leaf", "--", cmd]);
        assert_mentions(&line, &["no such command", cmd]);
    }
}

#[test]
fn kernel_without_uprobes_or_btf() {
    require_root!();
    for (missing, named) in [("uprobes", "uprobes"), ("btf", "BTF")] {
        let mut cmd = Profiler::command(["run", "--func", "leaf", "--", victims::C, "calls", "1"]);
        cmd.env("PROFILER_ASSUME_MISSING", missing);
        let outcome = Profiler::spawn(cmd).finish();
        let line = outcome.expect_error();
        assert_mentions(line, &["kernel lacks", named]);
    }
}

/// Whether `program` is found on PATH.
fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
}

/// A copy of the profiler in `dir` that any user may run: the build tree may lie where only root
/// can enter (a clone in /root, as in CI).
fn copy_for_everyone(dir: &TempDir) -> PathBuf {
    let copy = dir.path().join("profiler");
    let open = |path: &Path| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
            .unwrap_or_else(|e| panic!("failed to open {} to all: {e}", path.display()));
    };
    std::fs::copy(profiler_tests::profiler_bin(), &copy)
        .unwrap_or_else(|e| panic!("failed to copy the profiler to {}: {e}", copy.display()));
    open(dir.path());
    open(&copy);
    copy
}

#[test]
fn not_root() {
    let args = ["run", "--func", "leaf", "--", victims::C, "calls", "1"];
    let dir = TempDir::new();
    // SAFETY: geteuid has no preconditions.
    let cmd = if unsafe { libc::geteuid() } != 0 {
        Profiler::command(args)
    } else if on_path("setpriv") {
        let mut cmd = Command::new("setpriv");
        cmd.args(["--reuid=65534", "--regid=65534", "--clear-groups"]);
        cmd.arg(copy_for_everyone(&dir)).args(args);
        cmd
    } else if on_path("runuser") {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "nobody", "--"])
            .arg(copy_for_everyone(&dir))
            .args(args);
        cmd
    } else {
        skip!("setpriv or runuser, to run the profiler unprivileged (neither is on PATH)");
    };
    let outcome = Profiler::spawn(cmd).finish();
    if outcome.stderr.starts_with("setpriv:") || outcome.stderr.starts_with("runuser:") {
        // Even the copy could not be run as nobody (a temporary folder mounted noexec?).
        skip!(
            "a place where nobody may run the profiler: {}",
            outcome.stderr.trim()
        );
    }
    let line = outcome.expect_error();
    assert_mentions(line, &["root", "sudo"]);
}
