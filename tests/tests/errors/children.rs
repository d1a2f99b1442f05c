//! Child processes: a Python parent whose `multiprocessing` child fails. The child's error is
//! recorded with the child's pid (and not with `--no-children`), `processes` lists it with its
//! parent and exit status, and the session ends when the parent exits, not when a child does.

use std::path::{Path, PathBuf};

use profiler_tests::{Report, TempDir, require_python, require_root};

use super::{attach_to_script, expect_sys_exit_program, run_script, write};

/// A parent that forks a `multiprocessing` child (the fork start method, as DataLoader workers)
/// which writes its pid to `child.pid` and raises a ValueError about an input shape; the parent
/// waits for it, then fails on its own, after the child is gone: a missing model file.
const PARENT: &str = r#"
import multiprocessing, os, sys

def work(pid_file):
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    raise ValueError("expected input of shape (1, 3, 224, 224), got (1, 3, 225, 225)")

if __name__ == "__main__":
    here = os.path.dirname(os.path.abspath(__file__))
    ctx = multiprocessing.get_context("fork")
    child = ctx.Process(target=work, args=(os.path.join(here, "child.pid"),))
    child.start()
    child.join()
    print(f"child exited {child.exitcode}", flush=True)
    open(os.path.join(here, "checkpoints", "model.pt"), "rb").read()
"#;

/// The parent script under `profiler run --level basic -q EXTRA...`: its report, and the pid
/// its child wrote.
fn run_parent(py: &Path, extra: &[&str], env: &[(&str, &str)]) -> (Report, u32, PathBuf) {
    let dir = TempDir::new();
    let script = write(&dir, "parent.py", PARENT);
    let report = run_script(&dir, py, &script, extra, env);
    let child = std::fs::read_to_string(dir.path().join("child.pid"))
        .expect("the child wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    (report, child, script)
}

/// The child's ValueError is classified, with the child's pid and command line; `processes`
/// lists the child under the target with exit code 1; the parent's own later failure is there
/// too (the child's exit did not end the session) with the target's pid.
#[test]
fn a_multiprocessing_childs_value_error_is_recorded_with_its_pid() {
    multiprocessing_child(&[]);
}

/// The same where the raw `sys_exit` program runs (it looks a child up later than the BTF one).
#[test]
fn raw_sys_exit_follows_the_child_too() {
    multiprocessing_child(&[("PROFILER_RAW_SYS_EXIT", "1")]);
}

fn multiprocessing_child(env: &[(&str, &str)]) {
    require_root!();
    let py = require_python!();
    let (report, child, script) = run_parent(&py, &[], env);
    let target = report.at("/target/pid").as_u64().unwrap() as u32;
    assert_ne!(child, target);
    let errors = report.errors();
    let invalid = errors.with_pattern("INVALID_INPUT");
    assert_eq!(invalid.len(), 1, "{}", errors.describe());
    let e = invalid[0];
    assert_eq!(e.context("exception"), Some("ValueError"), "{e}");
    assert_eq!(e.pid(), child, "{e}");
    assert_eq!(
        e.command().last().map(String::as_str),
        script.to_str(),
        "{e}"
    );
    // The parent's own failure, after the child exited: recorded, with the parent's pid.
    let model = errors.with_pattern("MODEL_NOT_FOUND");
    assert!(!model.is_empty(), "{}", errors.describe());
    assert!(
        model.iter().all(|e| e.pid() == target),
        "{}",
        errors.describe()
    );
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(1));

    let processes = report.processes();
    assert_eq!(processes[0].pid, target, "{processes:?}");
    assert!(processes[0].followed);
    let entry = processes
        .iter()
        .find(|p| p.pid == child)
        .unwrap_or_else(|| panic!("no child {child} in {processes:?}"));
    assert_eq!(entry.parent_pid, Some(target), "{entry:?}");
    assert_eq!(entry.exit_code, Some(1), "{entry:?}");
    assert!(entry.followed, "{entry:?}");
    assert_eq!(
        entry.command.last().map(String::as_str),
        script.to_str(),
        "{entry:?}"
    );
    // When the child started and ended, from its records' kernel times: its error in between,
    // the parent's later failure after. The target was there before profiling: no fork time.
    let times = |pid: u32| {
        let p = report
            .at("/processes")
            .as_array()
            .and_then(|ps| {
                ps.iter()
                    .find(|p| p["pid"].as_u64() == Some(u64::from(pid)))
            })
            .expect("an entry");
        (p["forked_at"].as_f64(), p["exited_at"].as_f64())
    };
    let (Some(forked), Some(exited)) = times(child) else {
        panic!("the child's times: {:?}", times(child));
    };
    let raised = e.at("/timestamp").as_f64().expect("a timestamp");
    assert!(
        forked < raised && raised <= exited,
        "{forked} {raised} {exited}"
    );
    assert!(
        model
            .iter()
            .all(|m| m.at("/timestamp").as_f64() >= Some(exited)),
        "{forked} {exited}\n{}",
        errors.describe()
    );
    assert_eq!(times(target).0, None);
    let note = report.family("process");
    assert!(
        note.note().unwrap_or("").contains("child processes"),
        "{note}"
    );
    expect_sys_exit_program(&report, env);
}

/// `--no-children`: the child's error is not recorded, `processes` holds the target alone; the
/// parent's own failure still is.
#[test]
fn no_children_leaves_the_childs_error_out() {
    require_root!();
    let py = require_python!();
    let (report, child, _) = run_parent(&py, &["--no-children"], &[]);
    let errors = report.errors();
    assert!(
        errors.with_pattern("INVALID_INPUT").is_empty(),
        "{}",
        errors.describe()
    );
    assert!(errors.events().iter().all(|e| e.pid() != child));
    assert!(!errors.with_pattern("MODEL_NOT_FOUND").is_empty());
    let processes = report.processes();
    assert_eq!(processes.len(), 1, "{processes:?}");
    let target = report.at("/target/pid").as_u64().unwrap() as u32;
    assert_eq!(processes[0].pid, target);
    assert_eq!(processes[0].exit_code, Some(1));
}

/// A parent that leaves a child running: the session ends when the parent exits (the child is
/// still running, with no exit status), and the child is killed after.
#[test]
fn the_session_ends_when_the_parent_exits_not_its_child() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let script = write(
        &dir,
        "leave.py",
        "import os, time\n\
         pid = os.fork()\n\
         if pid == 0:\n\
         \x20   null = os.open(os.devnull, os.O_RDWR)\n\
         \x20   for fd in (0, 1, 2):\n\
         \x20       os.dup2(null, fd)\n\
         \x20   time.sleep(60)\n\
         \x20   os._exit(0)\n",
    );
    let started = std::time::Instant::now();
    let report = run_script(&dir, &py, &script, &[], &[]);
    let processes = report.processes();
    let child = processes.get(1).map(|p| p.pid);
    if let Some(pid) = child {
        // SAFETY: kill(2) has no memory-safety preconditions; `pid` is the test's own child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    }
    assert!(
        started.elapsed().as_secs() < 30,
        "the session waited for the child"
    );
    assert_eq!(report.end_reason(), "target_exited");
    assert_eq!(report.at("/target/exit_status/code").as_i64(), Some(0));
    assert_eq!(processes.len(), 2, "{processes:?}");
    assert!(!processes[1].exited, "{processes:?}");
    assert_eq!(processes[1].parent_pid, Some(processes[0].pid));
}

/// A parent with a worker that exists before the profiler attaches (a pool's or a server's
/// worker), then fails: attach follows it from the start, records its ValueError with its pid,
/// and lists it in `processes` under the target with its exit status.
#[test]
fn attach_follows_a_child_that_existed_before() {
    require_root!();
    let py = require_python!();
    let dir = TempDir::new();
    let script = write(
        &dir,
        "pool.py",
        r#"
import multiprocessing, os, sys, time

def work(pid_file, go):
    with open(pid_file + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.rename(pid_file + ".tmp", pid_file)
    go.wait()
    raise ValueError("expected input of shape (1, 3, 224, 224), got (1, 3, 225, 225)")

if __name__ == "__main__":
    pid_file = os.path.join(os.path.dirname(os.path.abspath(__file__)), "child.pid")
    ctx = multiprocessing.get_context("fork")
    go = ctx.Event()
    child = ctx.Process(target=work, args=(pid_file, go))
    child.start()
    while not os.path.exists(pid_file):
        time.sleep(0.01)
    print("ready", flush=True)
    sys.stdin.readline()
    go.set()
    child.join()
    print(f"child exited {child.exitcode}", flush=True)
"#,
    );
    let json = dir.json();
    let (mut target, profiler) = attach_to_script(&py, &script, &json);
    let child: u32 = std::fs::read_to_string(dir.path().join("child.pid"))
        .expect("the child wrote its pid")
        .trim()
        .parse()
        .expect("a pid");
    target.proceed();
    assert!(target.release().success(), "the parent should succeed");
    profiler.finish().expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited");
    let errors = report.errors();
    let invalid = errors.with_pattern("INVALID_INPUT");
    assert_eq!(invalid.len(), 1, "{}", errors.describe());
    assert_eq!(invalid[0].pid(), child, "{}", invalid[0]);
    let processes = report.processes();
    assert_eq!(processes[0].pid, target.pid(), "{processes:?}");
    let entry = processes
        .iter()
        .find(|p| p.pid == child)
        .unwrap_or_else(|| panic!("no child {child} in {processes:?}"));
    assert_eq!(entry.parent_pid, Some(target.pid()), "{entry:?}");
    assert_eq!(entry.exit_code, Some(1), "{entry:?}");
    assert!(entry.followed, "{entry:?}");
}
