//! The errors family against real processes: Python scripts and a C program that fail in the
//! ways the pattern database knows, run under the profiler (run and attach mode).

use std::{
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
};

use profiler_tests::{
    Event, Outcome, Profiler, Report, TempDir, Victim,
    live::{attach_live, next_snapshot},
    process::profile,
    require_python, require_root, run_reported, victims,
};

#[path = "errors/connects.rs"]
mod connects;

/// Writes `contents` to `name` in `dir`; returns the path.
fn write(dir: &TempDir, name: &str, contents: &str) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}

fn utf8(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

/// Starts `py script` (which prints `ready`, then waits for a line on stdin) with its stderr
/// sent to /dev/null (exec keeps the process; its tracebacks stay out of the test's output, and
/// are still writes to fd 2), and `profiler attach --level basic` on it, writing `json`; returns
/// both once the probes are attached.
fn attach_to_script(py: &Path, script: &Path, json: &Path) -> (Victim, Profiler) {
    let shell = format!("exec {} {} 2>/dev/null", py.display(), script.display());
    let mut target = Victim::start("/bin/sh", ["-c", &shell]);
    target.expect_line("ready");
    let pid = target.pid().to_string();
    let mut profiler = Profiler::start([
        "attach",
        &pid,
        "--level",
        "basic",
        "--duration",
        "30",
        "--json",
        utf8(json),
    ]);
    assert_eq!(profiler.wait_ready(), target.pid());
    (target, profiler)
}

/// `profiler run --level basic ARGS... -- CMD...` with `env` (see [`run_reported`]).
fn run_basic(
    dir: &TempDir,
    args: &[&str],
    cmd: &[&str],
    env: &[(&str, &str)],
) -> (Outcome, Report) {
    let all = [&["--level", "basic"], args].concat();
    run_reported(dir, &all, cmd, env)
}

/// `py script` under `profiler run --level basic -q EXTRA...` with `env`; its report.
fn run_script(
    dir: &TempDir,
    py: &Path,
    script: &Path,
    extra: &[&str],
    env: &[(&str, &str)],
) -> Report {
    let args = [&["-q"], extra].concat();
    run_basic(dir, &args, &[utf8(py), utf8(script)], env).1
}

#[test]
fn missing_model_file_is_model_not_found_with_path_and_exception() {
    missing_model_file(&[]);
}

/// Where the kernel refuses the BTF `sys_exit` program the raw one runs: the same failure, its
/// path, and the traceback the script printed.
#[test]
fn raw_sys_exit_fallback_sees_the_same_failure_and_output() {
    missing_model_file(&[("PROFILER_RAW_SYS_EXIT", "1")]);
}

/// Writes a script that opens a missing checkpoint; returns the script and the checkpoint.
fn missing_model_script(dir: &TempDir) -> (PathBuf, PathBuf) {
    let missing = dir.path().join("checkpoints/resnet50.pt");
    let script = write(
        dir,
        "load.py",
        &format!("open({:?}, 'rb').read()\n", missing.display().to_string()),
    );
    (script, missing)
}

/// A script that opens a missing checkpoint, profiled with `env`.
fn missing_model_file(env: &[(&str, &str)]) {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let (script, missing) = missing_model_script(&dir);
    let report = run_script(&dir, &py, &script, &[], env);
    let errors = report.errors();
    let found = errors.with_pattern("MODEL_NOT_FOUND");
    assert!(
        !found.is_empty(),
        "no MODEL_NOT_FOUND in:\n{}",
        errors.describe()
    );
    assert!(found.iter().all(|e| e.category() == "model_loading"));
    let path = missing.display().to_string();
    assert!(
        found
            .iter()
            .any(|e| e.source() == "syscall" && e.context("path") == Some(path.as_str())),
        "no failed open of {path}:\n{}",
        errors.describe()
    );
    assert!(
        found
            .iter()
            .any(|e| e.context("exception") == Some("FileNotFoundError")),
        "no FileNotFoundError:\n{}",
        errors.describe()
    );
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(1));
    expect_sys_exit_program(&report, env);
}

/// The errors family's entry says which sys_exit program ran: the raw one where `env` asks for
/// it (`PROFILER_RAW_SYS_EXIT`), else the BTF one.
fn expect_sys_exit_program(report: &Report, env: &[(&str, &str)]) {
    let family = report.family("errors");
    let program = if env.is_empty() {
        "sys_exit: tp_btf"
    } else {
        "sys_exit: raw tracepoint"
    };
    assert!(family.note().unwrap_or("").starts_with(program), "{family}");
}

/// `--without errors`: the same failing script, with no syscall program attached; the report
/// says the family was left out, has no errors section, and still has the exit status.
#[test]
fn without_errors_attaches_no_syscall_program_and_says_so() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let (script, _) = missing_model_script(&dir);
    let report = run_script(&dir, &py, &script, &["--without", "errors"], &[]);
    let errors = report.family("errors");
    assert_eq!(errors.status(), "not_selected", "{errors}");
    assert_eq!(errors.probes(), 0, "{errors}");
    assert_eq!(errors.note(), Some("left out by --without"), "{errors}");
    if let Some(section) = report.errors_section() {
        panic!(
            "an errors section without the family:\n{}",
            section.describe()
        );
    }
    let process = report.family("process");
    assert_eq!(process.status(), "attached", "{process}");
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(1));
}

#[test]
fn value_error_is_invalid_input_with_the_exception_type() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let script = write(
        &dir,
        "bad.py",
        "def check(shape):\n    raise ValueError(f'expected 3 dims, got {shape}')\ncheck((2, 2))\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("INVALID_INPUT");
    let e = found
        .iter()
        .find(|e| e.context("exception") == Some("ValueError"))
        .unwrap_or_else(|| panic!("no ValueError INVALID_INPUT:\n{}", errors.describe()));
    assert_eq!(e.category(), "input_validation");
    assert!(e.message().contains("expected 3 dims"), "{e}");
    let frames = e.at("/context/frames");
    assert!(
        !frames.as_array().expect("frames is an array").is_empty(),
        "traceback frames kept: {e}"
    );
}

#[test]
fn refused_connection_is_econnrefused_network_with_the_address() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    // Port 9 (discard) on loopback: nothing listens there here.
    let script = write(
        &dir,
        "connect.py",
        "import socket\ns = socket.socket()\ntry:\n    s.connect(('127.0.0.1', 9))\nexcept ConnectionRefusedError:\n    pass\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let e = errors
        .events()
        .into_iter()
        .find(|e| e.error_type() == "ECONNREFUSED" && e.source() == "syscall")
        .unwrap_or_else(|| panic!("no ECONNREFUSED:\n{}", errors.describe()));
    assert_eq!(e.category(), "network");
    assert!(e.message().contains("127.0.0.1:9"), "{}", e.message());
}

#[test]
fn socket_read_timeout_is_network_timeout() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    // A listener that accepts the connection (the kernel does) but never sends.
    let script = write(
        &dir,
        "timeout.py",
        "import socket\nsrv = socket.socket()\nsrv.bind(('127.0.0.1', 0))\nsrv.listen(1)\n\
         c = socket.create_connection(srv.getsockname())\nc.settimeout(0.2)\nc.recv(16)\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("NETWORK_TIMEOUT");
    assert!(
        !found.is_empty(),
        "no NETWORK_TIMEOUT:\n{}",
        errors.describe()
    );
    assert!(found.iter().all(|e| e.category() == "network"));
}

/// A subprocess that outlives its timeout is SUBPROCESS_TIMEOUT, not a network timeout, even
/// when its command line talks about sockets; a connect that times out is NETWORK_TIMEOUT.
#[test]
fn subprocess_timeout_is_not_a_network_timeout_but_a_connect_timeout_is() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let script = write(
        &dir,
        "child.py",
        "import subprocess, sys\n\
         subprocess.run([sys.executable, '-c', 'import socket, time; time.sleep(5)'], timeout=0.5)\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("SUBPROCESS_TIMEOUT");
    assert!(
        found
            .iter()
            .any(|e| e.context("exception") == Some("subprocess.TimeoutExpired")),
        "no subprocess.TimeoutExpired SUBPROCESS_TIMEOUT:\n{}",
        errors.describe()
    );
    assert!(found.iter().all(|e| e.category() == "system"));
    assert!(
        errors.with_pattern("NETWORK_TIMEOUT").is_empty(),
        "a subprocess timeout taken for a network one:\n{}",
        errors.describe()
    );

    // A listener with a full accept queue: the kernel drops further SYNs, so a connect with a
    // timeout times out (TimeoutError: timed out, socket.timeout before Python 3.10).
    let script = write(
        &dir,
        "connect.py",
        "import socket\nsrv = socket.socket()\nsrv.bind(('127.0.0.1', 0))\nsrv.listen(0)\n\
         held = []\nfor _ in range(16):\n    c = socket.socket()\n    c.settimeout(0.3)\n    \
         c.connect(srv.getsockname())\n    held.append(c)\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("NETWORK_TIMEOUT");
    let e = found
        .iter()
        .find(|e| {
            matches!(
                e.context("exception"),
                Some("TimeoutError" | "socket.timeout")
            )
        })
        .unwrap_or_else(|| panic!("no connect NETWORK_TIMEOUT:\n{}", errors.describe()));
    assert_eq!((e.category(), e.severity()), ("network", "high"), "{e}");
    assert!(!e.solutions().is_empty(), "{e}");
}

/// Compiles C `source` at -O0 into program `name` in `dir`, with `flags`; returns its path.
fn build_c(dir: &TempDir, name: &str, source: &str, flags: &[&str]) -> PathBuf {
    let src = write(dir, &format!("{name}.c"), source);
    let bin = dir.path().join(name);
    let built = Command::new("cc")
        .args(["-O0", "-o"])
        .arg(&bin)
        .arg(&src)
        .args(flags)
        .status()
        .expect("cc");
    assert!(built.success());
    bin
}

#[test]
fn segfault_is_critical_with_the_fault_address() {
    require_root!();
    let dir = TempDir::new();
    let source = "int main(void) { volatile int *p = (int *)0x10; return *p; }\n";
    let bin = build_c(&dir, "segv", source, &[]);
    let (_, report) = run_basic(&dir, &["-q"], &[utf8(&bin)], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("SEGFAULT");
    assert_eq!(found.len(), 1, "one SEGFAULT:\n{}", errors.describe());
    assert_eq!(found[0].severity(), "critical");
    assert_eq!(found[0].context("signal"), Some("SIGSEGV"));
    assert_eq!(found[0].context("fault_addr"), Some("0x10"));
    assert_eq!(report.str_at("/target/exit_status/signal"), "SIGSEGV");
}

/// The user stack where the kernel delivers a fatal signal, which the SEGFAULT pattern tells the
/// user to read: the faulting function, then its caller, then `main`, by name, in that order.
/// Built with frame pointers, which the kernel's stack walk follows.
#[test]
fn segfault_has_the_stack_of_the_faulting_function_and_its_callers() {
    require_root!();
    let dir = TempDir::new();
    // It sleeps first: the profiler reads the program's mappings, which symbolize its stacks,
    // every 20 ms of its first second, and a program that dies sooner may be gone by then.
    let source = "#include <unistd.h>\n\
                  __attribute__((noinline)) int write_through_null(volatile int *p) \
                  { *p = 1; return 0; }\n\
                  __attribute__((noinline)) int load_batch(void) \
                  { return write_through_null((int *)0x10) + 1; }\n\
                  int main(void) { usleep(200000); return load_batch(); }\n";
    let bin = build_c(&dir, "segv_stack", source, &["-fno-omit-frame-pointer"]);
    let (_, report) = run_basic(&dir, &["-q"], &[utf8(&bin)], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("SEGFAULT");
    assert_eq!(found.len(), 1, "one SEGFAULT:\n{}", errors.describe());
    let e = found[0];
    assert_eq!(e.context("fault_addr"), Some("0x10"), "{e}");
    // "function (module+offset)", innermost first.
    let frames: Vec<(&str, &str)> = e
        .at("/context/stack")
        .as_array()
        .expect("stack is an array")
        .iter()
        .take(3)
        .map(|f| {
            let f = f.as_str().expect("a frame is a string");
            let (function, rest) = f.split_once(" (").expect("function (module+offset)");
            (function, rest.split_once('+').expect("module+offset").0)
        })
        .collect();
    assert_eq!(
        frames,
        [
            ("write_through_null", "segv_stack"),
            ("load_batch", "segv_stack"),
            ("main", "segv_stack"),
        ],
        "{e}"
    );
}

#[test]
fn printed_cuda_oom_is_cuda_out_of_memory_critical() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let script = write(
        &dir,
        "oom.py",
        "raise RuntimeError('CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity)')\n",
    );
    let report = run_script(&dir, &py, &script, &[], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("CUDA_OUT_OF_MEMORY");
    assert!(
        !found.is_empty(),
        "no CUDA_OUT_OF_MEMORY:\n{}",
        errors.describe()
    );
    assert_eq!(found[0].category(), "memory");
    assert_eq!(found[0].severity(), "critical");
    assert!(!found[0].solutions().is_empty(), "{}", found[0]);
}

#[test]
fn a_custom_pattern_file_classifies_a_new_message() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let patterns = write(
        &dir,
        "patterns.toml",
        "[[pattern]]\nid = \"FEATURE_STORE_STALE\"\ncategory = \"inference\"\nseverity = \"high\"\n\
         text = 'feature store snapshot is stale'\nsolutions = [\"Refresh the snapshot.\"]\n\
         prevention = [\"Alert on snapshot age.\"]\n",
    );
    let script = write(
        &dir,
        "stale.py",
        "import sys\nprint('ERROR feature store snapshot is stale (age 7200s)', file=sys.stderr)\n",
    );
    let report = run_script(&dir, &py, &script, &["--patterns", utf8(&patterns)], &[]);
    let errors = report.errors();
    let found = errors.with_pattern("FEATURE_STORE_STALE");
    assert_eq!(found.len(), 1, "custom pattern:\n{}", errors.describe());
    assert_eq!(found[0].category(), "inference");
    assert_eq!(
        found[0].solutions().first(),
        Some(&"Refresh the snapshot."),
        "{}",
        found[0]
    );
}

#[test]
fn a_malformed_pattern_file_is_one_line_with_line_and_column() {
    require_root!();
    let dir = TempDir::new();
    let patterns = write(
        &dir,
        "bad.toml",
        "[[pattern]]\nid = \"X\"\ncategory = \"memory\"\nseverty = \"high\"\n",
    );
    let out = profile([
        "run",
        "--level",
        "basic",
        "--patterns",
        utf8(&patterns),
        "--",
        "/bin/true",
    ]);
    let line = out.expect_error();
    let stderr = &out.stderr;
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        line.contains("bad.toml:4:1") && line.contains("severty"),
        "{stderr}"
    );
}

#[test]
fn benign_failures_are_counted_not_alarmed() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    // A stat that fails before a create, and a non-blocking read with nothing to read.
    let script = write(
        &dir,
        "benign.py",
        &format!(
            "import os, socket\np = {:?}\nif not os.path.exists(p):\n    open(p, 'w').close()\n\
             a, b = socket.socketpair()\na.setblocking(False)\ntry:\n    a.recv(1)\nexcept BlockingIOError:\n    pass\n",
            dir.path().join("created.txt").display().to_string()
        ),
    );
    let (out, report) = run_basic(&dir, &[], &[utf8(&py), utf8(&script)], &[]);
    let errors = report.errors();
    for e in errors.events() {
        assert!(
            e.context("errno") != Some("EAGAIN"),
            "EAGAIN reported as an error: {e}"
        );
        assert!(
            !(e.source() == "syscall" && e.message().contains("created.txt")),
            "the stat before the create is an error: {e}"
        );
    }
    let failures = errors.syscall_failures();
    assert!(
        failures
            .iter()
            .any(|&(_, errno, count)| errno == "EAGAIN" && count >= 1),
        "the EAGAIN is still counted: {failures:?}"
    );
    let stdout = &out.stdout;
    assert!(
        !stdout.contains("EAGAIN"),
        "benign failures are not in the summary: {stdout}"
    );
}

#[test]
fn attach_mode_sees_a_running_scripts_error() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    // Says it is up, waits for a line on stdin (sent once the profiler is attached), then fails.
    let script = write(
        &dir,
        "later.py",
        "import sys\nprint('ready', flush=True)\nsys.stdin.readline()\n\
         raise ValueError('bad batch size -1')\n",
    );
    let (mut target, profiler) = attach_to_script(&py, &script, &dir.json());
    target.proceed();
    assert!(!target.release().success(), "the script should fail");
    profiler.finish().expect_success();
    let report = Report::read(&dir.json());
    assert_eq!(report.end_reason(), "target_exited");
    let errors = report.errors();
    let found = errors.with_pattern("INVALID_INPUT");
    assert!(
        found
            .iter()
            .any(|e| e.context("exception") == Some("ValueError")),
        "no ValueError in:\n{}",
        errors.describe()
    );
}

#[test]
fn secrets_never_reach_the_report_or_the_output() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let secrets = [
        "sk-abcdefghijklmnopqrstuvwx0123456789",
        "hunter2hunter2",
        "dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
        "s3cr3tpass",
        "ghp_0123456789abcdefghijklmnopqrstuvwxyz",
        "AKIAIOSFODNN7EXAMPLE",
    ];
    let script = write(
        &dir,
        "secrets.py",
        &format!(
            "import sys\nprint('ERROR login failed api_key={} password={}', file=sys.stderr)\n\
             print('Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.{}', file=sys.stderr)\n\
             raise RuntimeError('cannot reach https://admin:{}@db.internal/ token {} key {}')\n",
            secrets[0], secrets[1], secrets[2], secrets[3], secrets[4], secrets[5]
        ),
    );
    // The script's own stderr goes to /dev/null (exec keeps the process), so what is checked
    // below is only what the profiler printed; its writes are still captured by the probes.
    let shell = format!("exec {} {} 2>/dev/null", py.display(), script.display());
    let (out, _) = run_basic(&dir, &[], &["/bin/sh", "-c", &shell], &[]);
    // The report as written, every field of it.
    let json = dir.json();
    let report = std::fs::read_to_string(&json).unwrap();
    let printed = format!("{}{}", out.stdout, out.stderr);
    for secret in secrets {
        assert!(!report.contains(secret), "{secret} in the report");
        assert!(
            !printed.contains(secret),
            "{secret} in the profiler's output"
        );
    }
    assert!(
        report.contains("[REDACTED]"),
        "the secrets were redacted, not dropped with their errors"
    );
    let mode = std::fs::metadata(&json).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "report mode");
}

/// The exception line the long tracebacks below end with: the CUDA_OUT_OF_MEMORY pattern
/// matches it, and nothing before it.
const CUDA_OOM_LINE: &str = "torch.cuda.OutOfMemoryError: CUDA out of memory. Tried to allocate \
                             2.00 GiB (GPU 0; 15.78 GiB total capacity; 13.20 GiB already allocated)";

/// What the kernel keeps of one write at most (profiler-common's `OUTPUT_KEEP`): all of a shorter
/// one; of a longer one its first 60 KiB and last 4 KiB.
const OUTPUT_KEEP: usize = 64 << 10;

/// A Python traceback of at least `size` bytes, as `logging.exception` prints a deep one:
/// numbered frames, then [`CUDA_OOM_LINE`].
fn long_traceback(size: usize) -> String {
    let mut text = String::from("Traceback (most recent call last):\n");
    let mut frame = 0;
    while text.len() + CUDA_OOM_LINE.len() + 1 < size {
        text.push_str(&format!(
            "  File \"/srv/app/model/layer_{frame:04}.py\", line {}, in forward\n    out = self.block(x)\n",
            10 + frame % 900
        ));
        frame += 1;
    }
    text.push_str(CUDA_OOM_LINE);
    text.push('\n');
    text
}

/// Runs a script that writes `text` to stderr in ONE call: `write(2)`, or with `cuts` (offsets
/// into `text`, ascending) one `writev(2)` of the pieces between them. The script exits 1 when
/// that call wrote all of `text`, 3 when it did not (checked here). Returns the report.
fn write_in_one_call(
    dir: &TempDir,
    py: &Path,
    text: &str,
    cuts: &[usize],
    env: &[(&str, &str)],
) -> Report {
    let data = write(dir, "traceback.txt", text);
    let call = if cuts.is_empty() {
        "os.write(2, data)".to_string()
    } else {
        format!("os.writev(2, [data[a:b] for a, b in zip([0] + {cuts:?}, {cuts:?} + [len(data)])])")
    };
    let script = write(
        dir,
        "long_write.py",
        &format!(
            "import os, sys\ndata = open({:?}, 'rb').read()\nn = {call}\n\
             sys.exit(1 if n == len(data) else 3)\n",
            utf8(&data)
        ),
    );
    let report = run_script(dir, py, &script, &[], env);
    assert_eq!(
        report.at("/target/exit_status/code").as_i64(),
        Some(1),
        "the script did not write {} bytes in one call",
        text.len()
    );
    report
}

/// The one CUDA_OUT_OF_MEMORY of a report: critical, from the output, with the exception line
/// as its message and the traceback from its first line to that one.
fn the_cuda_oom(report: &Report) -> Event<'_> {
    let errors = report.errors();
    let found = errors.with_pattern("CUDA_OUT_OF_MEMORY");
    assert_eq!(
        found.len(),
        1,
        "one CUDA_OUT_OF_MEMORY:\n{}",
        errors.describe()
    );
    let e = found[0];
    assert_eq!(e.severity(), "critical", "{e}");
    assert_eq!(e.source(), "output", "{e}");
    assert_eq!(
        e.context("exception"),
        Some("torch.cuda.OutOfMemoryError"),
        "{e}"
    );
    assert_eq!(
        e.message(),
        "CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 15.78 GiB total capacity; \
         13.20 GiB already allocated)",
        "{e}"
    );
    let lines = e
        .at("/context/lines")
        .as_array()
        .expect("lines is an array");
    assert_eq!(
        lines.first().and_then(|l| l.as_str()),
        Some("Traceback (most recent call last):"),
        "{e}"
    );
    assert_eq!(
        lines.last().and_then(|l| l.as_str()),
        Some(CUDA_OOM_LINE),
        "{e}"
    );
    e
}

/// The bytes of the target's output the report counts as not captured (0: none).
fn output_lost(report: &Report) -> u64 {
    let lost = report.at("/overhead/lost");
    lost.get("output_truncated_bytes")
        .map_or(0, |n| n.as_u64().expect("a count"))
}

/// A 20 KiB traceback written in one call (gunicorn's and uvicorn's `logging.exception` do
/// that): all of it is kept, so its last line, the one the pattern matches, is there.
#[test]
fn a_traceback_written_in_one_call_keeps_its_exception_line() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let text = long_traceback(20 << 10);
    let report = write_in_one_call(&dir, &py, &text, &[], &[]);
    the_cuda_oom(&report);
    assert_eq!(output_lost(&report), 0, "{}", report.at("/overhead"));
}

/// A write over 64 KiB: its first 60 KiB and last 4 KiB are kept (the exception line with
/// them), the bytes between are counted in `overhead.lost` with a warning, and the traceback
/// says where they were.
#[test]
fn a_write_over_64_kib_keeps_head_and_tail_and_counts_the_rest() {
    over_64_kib(&[]);
}

/// The same with the raw `sys_exit` program.
#[test]
fn raw_sys_exit_fallback_keeps_head_and_tail_of_a_long_write() {
    over_64_kib(&[("PROFILER_RAW_SYS_EXIT", "1")]);
}

fn over_64_kib(env: &[(&str, &str)]) {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let text = long_traceback(100_000);
    let report = write_in_one_call(&dir, &py, &text, &[], env);
    let missing = (text.len() - OUTPUT_KEEP) as u64;
    assert_eq!(output_lost(&report), missing, "{}", report.at("/overhead"));
    let warnings = report.at("/warnings").to_string();
    assert!(
        warnings.contains(&format!("{missing} byte(s) lost: output truncated bytes")),
        "{warnings}"
    );
    let e = the_cuda_oom(&report);
    let marker = format!(" ...[{missing} bytes not captured]... ");
    let lines = e.at("/context/lines").to_string();
    assert_eq!(lines.matches(&marker).count(), 1, "{lines}");
}

/// One writev(2) of three buffers, 80 KB in all: the head crosses the first boundary, the tail
/// the second, which splits the exception line. The pieces are put back in order, the middle
/// is counted.
#[test]
fn a_writev_is_kept_in_order_across_its_buffers() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let text = long_traceback(80_000);
    let in_exception_line = text.len() - CUDA_OOM_LINE.len() + 40;
    let report = write_in_one_call(&dir, &py, &text, &[30_000, in_exception_line], &[]);
    assert_eq!(
        output_lost(&report),
        (text.len() - OUTPUT_KEEP) as u64,
        "{}",
        report.at("/overhead")
    );
    the_cuda_oom(&report);
}

/// The live view while the target runs (`PROFILER_LIVE_SNAPSHOT`): a snapshot made while the
/// victim waits between two batches of failed opens of a missing model counts the first batch
/// exactly, from the kernel's count read then (300: past the 256 the kernel details), classified
/// as the report classifies it; the report at the end counts both batches, every failure: the
/// snapshots took nothing from the family.
#[test]
fn a_live_snapshot_counts_the_failures_so_far_and_the_report_all_of_them() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::start(victims::ERR, ["pause", "300", "200"]);
    victim.expect_line("ready");
    let args = ["--level", "basic", "--json", utf8(&json)];
    let profiler = attach_live(&victim, &args, &live);
    victim.proceed();
    victim.expect_line("failed 300");

    let snapshot = next_snapshot(&live);
    assert_eq!(snapshot.end_reason(), "running");
    expect_model_not_found(&snapshot, 300);
    // The detailed ones so far: the kernel's burst.
    let errors = snapshot.errors();
    let examples = errors.with_pattern("MODEL_NOT_FOUND").len();
    assert!((256..300).contains(&examples), "{examples} examples");

    victim.proceed();
    victim.expect_line("failed 500");
    assert!(victim.release().success());
    profiler.finish().expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited");
    expect_model_not_found(&report, 500);
}

/// `n` failed opens of the missing model in `report`, and no other error: MODEL_NOT_FOUND
/// counts them all, exactly, and so do the kernel's count of the kind and the total.
fn expect_model_not_found(report: &Report, n: u64) {
    let errors = report.errors();
    let p = errors.pattern("MODEL_NOT_FOUND");
    assert_eq!((p.count(), p.occurrences(), p.exact()), (n, n, true), "{p}");
    assert_eq!(errors.failures_of("openat", "ENOENT"), n);
    assert_eq!(errors.total(), n, "{}", errors.describe());
    assert_eq!(errors.by_source("syscall"), n);
}

/// Counts against the kernel's exact counts, and incidents.
#[path = "errors/counts.rs"]
mod counts;

#[path = "errors/children.rs"]
mod children;
