//! The live view on a real terminal: `profiler top` in a tmux pane of 80×24 against the demo
//! workload (four threads serving requests), driven with send-keys and read with capture-pane:
//! the panels fill in, a key switches panel, `q` ends profiling with the report written and the
//! terminal given back; SIGTERM does the same; without a terminal it is `attach`.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use profiler_tests::{Report, TempDir, process::Victim, profiler_bin, require_root, skip};

const REQUEST: &str = "profiler_user::demo::handle_request";

/// A tmux server of the test's own (its socket in the test's directory), killed on drop.
struct Tmux {
    socket: std::path::PathBuf,
}

impl Tmux {
    fn start(dir: &Path, command: &str) -> Option<Self> {
        let socket = dir.join("tmux.sock");
        let started = Command::new("tmux")
            .arg("-S")
            .arg(&socket)
            .args([
                "-f",
                "/dev/null",
                "new-session",
                "-d",
                "-x",
                "80",
                "-y",
                "24",
            ])
            .arg(command)
            .status()
            .ok()?;
        assert!(started.success(), "tmux new-session failed");
        Some(Self { socket })
    }

    fn tmux(&self) -> Command {
        let mut cmd = Command::new("tmux");
        cmd.arg("-S").arg(&self.socket);
        cmd
    }

    /// The pane as it looks now.
    fn screen(&self) -> String {
        let out = self
            .tmux()
            .args(["capture-pane", "-p"])
            .output()
            .expect("tmux capture-pane");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Waits until the pane shows what `ready` accepts; the pane then.
    fn wait_for(&self, what: &str, ready: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let screen = self.screen();
            if ready(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "the pane never showed {what}:\n{screen}"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn keys(&self, keys: &str) {
        let sent = self
            .tmux()
            .args(["send-keys", keys])
            .status()
            .expect("tmux send-keys");
        assert!(sent.success());
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.tmux().arg("kill-server").status();
    }
}

/// The pane's command: `profiler top` on `pid`, its stderr and exit code kept in `dir`, then
/// a wait so that the pane (and what the profiler left on it) stays to be read.
fn top_command(dir: &Path, pid: u32, json: &Path) -> String {
    format!(
        "{} top {pid} --level full --func '{REQUEST}' --json {} 2> {}; echo $? > {}.tmp; \
         stty -a > {}; mv {}.tmp {}; sleep 600",
        profiler_bin().display(),
        json.display(),
        dir.join("stderr").display(),
        dir.join("rc").display(),
        dir.join("stty").display(),
        dir.join("rc").display(),
        dir.join("rc").display(),
    )
}

/// Whether the pane shows its alternate screen (the view's) now.
fn alternate_screen(tmux: &Tmux) -> bool {
    let out = tmux
        .tmux()
        .args(["display-message", "-p", "#{alternate_on}"])
        .output()
        .expect("tmux display-message");
    String::from_utf8_lossy(&out.stdout).trim() == "1"
}

/// The terminal as the profiler left it: the main screen, and the line discipline back in
/// canonical mode with echo (not raw).
fn expect_terminal_restored(tmux: &Tmux, dir: &Path) {
    assert!(!alternate_screen(tmux), "still on the alternate screen");
    let stty = std::fs::read_to_string(dir.join("stty")).expect("stty -a ran after the profiler");
    let flags: Vec<&str> = stty.split_whitespace().collect();
    for flag in ["icanon", "echo", "isig"] {
        assert!(flags.contains(&flag), "{flag} not restored: {stty}");
    }
}

/// The profiler's exit code, once it has one.
fn exit_code(dir: &Path) -> i32 {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(rc) = std::fs::read_to_string(dir.join("rc"))
            && let Ok(rc) = rc.trim().parse()
        {
            return rc;
        }
        assert!(Instant::now() < deadline, "the profiler did not end");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn demo_victim() -> Victim {
    Victim::start(
        profiler_bin().to_str().expect("a UTF-8 path"),
        ["demo-workload", "--seconds", "120"],
    )
}

/// The calls the function table shows for `name` (whose start the table may cut, in 80
/// columns: `…demo::handle_request`).
fn calls_shown(screen: &str, name: &str) -> Option<u64> {
    let end = name.rsplitn(3, "::").take(2).collect::<Vec<_>>();
    let end = format!("{}::{}", end[1], end[0]);
    screen
        .lines()
        .find(|l| {
            l.split_whitespace()
                .next()
                .is_some_and(|n| n.ends_with(&end))
        })?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

fn have_tmux() -> bool {
    Command::new("tmux")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// `profiler top` on the demo workload in a fresh tmux pane, the pane's command run with
/// `env` first (empty: none): the test's directory, the report's path, the victim and tmux.
fn top_in_tmux(env: &str) -> (TempDir, std::path::PathBuf, Victim, Tmux) {
    let dir = TempDir::new();
    let json = dir.json();
    let victim = demo_victim();
    let command = format!("{env} {}", top_command(dir.path(), victim.pid(), &json));
    let tmux = Tmux::start(dir.path(), command.trim_start()).expect("tmux starts");
    (dir, json, victim, tmux)
}

#[test]
fn top_shows_the_panels_switches_on_a_key_and_quits_with_the_report() {
    require_root!();
    if !have_tmux() {
        skip!("tmux (apt-get install tmux)");
    }
    let (dir, json, victim, tmux) = top_in_tmux("");

    // The header, the tabs of level full, and the traced function counting.
    let screen = tmux.wait_for("the function counting", |s| {
        calls_shown(s, REQUEST).is_some_and(|n| n > 0)
    });
    assert!(
        screen.contains(&format!("pid {}", victim.pid())),
        "{screen}"
    );
    assert!(
        screen.contains(
            " 1 Functions │ 2 Errors │ 3 Memory │ 4 Threads │ 5 CPU │ 6 GPU │ 7 Overhead"
        ),
        "{screen}"
    );
    assert!(screen.contains("q quit"), "{screen}");
    assert!(alternate_screen(&tmux));
    let shown = calls_shown(&screen, REQUEST).expect("a row");
    // Every line fits 80 columns: nothing wrapped.
    assert!(screen.lines().count() <= 24, "{screen}");

    // A panel switch: the overhead panel, with the families and the budget.
    tmux.keys("7");
    let screen = tmux.wait_for("the overhead panel", |s| {
        s.contains("budget --max-overhead")
    });
    assert!(screen.contains("estimated slowdown"), "{screen}");
    assert!(screen.contains("functions attached"), "{screen}");
    // And the threads panel, with the demo's contended lock.
    tmux.keys("4");
    tmux.wait_for("the contended metrics lock", |s| {
        s.contains("profiler_user::demo::METRICS_LOCK")
    });

    // q ends profiling: the terminal is given back (the summary is on the pane, not the view)
    // and the report is written.
    tmux.keys("q");
    assert_eq!(exit_code(dir.path()), 0);
    expect_terminal_restored(&tmux, dir.path());
    let screen = tmux.wait_for("the summary", |s| s.contains("overhead:"));
    assert!(!screen.contains("q quit"), "the view is gone\n{screen}");
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(stderr.contains("report written to"), "{stderr}");
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    let calls = report.function(REQUEST).total_calls();
    assert!(
        calls >= shown,
        "the report ({calls}) has what the view showed ({shown})"
    );
    // The view's own stderr lines (held while it was up) come after it.
    assert!(stderr.contains("profiling pid"), "{stderr}");
}

#[test]
fn sigterm_under_top_gives_the_terminal_back_and_writes_the_report() {
    require_root!();
    if !have_tmux() {
        skip!("tmux (apt-get install tmux)");
    }
    let (dir, json, victim, tmux) = top_in_tmux("");
    tmux.wait_for("the view", |s| s.contains("q quit"));
    let top = Command::new("pgrep")
        .args(["-f", &format!("top {} --level full", victim.pid())])
        .output()
        .expect("pgrep");
    let pid: i32 = String::from_utf8_lossy(&top.stdout)
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .find(|&p: &i32| {
            std::fs::read_link(format!("/proc/{p}/exe")).is_ok_and(|e| e == profiler_bin())
        })
        .expect("the profiler's pid");
    // SAFETY: kill(2) on a pid this test found; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert_eq!(exit_code(dir.path()), 0);
    expect_terminal_restored(&tmux, dir.path());
    let screen = tmux.wait_for("the summary", |s| s.contains("overhead:"));
    assert!(!screen.contains("q quit"), "{screen}");
    assert_eq!(Report::read(&json).end_reason(), "interrupted");
}

#[test]
fn top_without_a_terminal_prints_the_plain_summary() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let victim = demo_victim();
    let out = Command::new(profiler_bin())
        .args([
            "top",
            &victim.pid().to_string(),
            "--duration",
            "2",
            "--func",
            REQUEST,
        ])
        .arg("--json")
        .arg(&json)
        .output()
        .expect("the profiler runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains('\x1b'), "no escape sequence: {stdout}");
    assert!(
        stdout.contains(REQUEST) && stdout.contains("overhead:"),
        "{stdout}"
    );
    assert!(Report::read(&json).function(REQUEST).total_calls() > 0);
}

#[test]
fn closing_the_terminal_under_top_still_writes_the_report() {
    require_root!();
    if !have_tmux() {
        skip!("tmux (apt-get install tmux)");
    }
    let (_dir, json, _victim, tmux) = top_in_tmux("");
    tmux.wait_for("the view", |s| s.contains("q quit"));
    // The pane goes: SIGHUP.
    drop(tmux);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !json.exists() {
        assert!(Instant::now() < deadline, "no report after SIGHUP");
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(Report::read(&json).end_reason(), "interrupted");
}

#[test]
fn a_panic_in_the_view_gives_the_terminal_back() {
    require_root!();
    if !have_tmux() {
        skip!("tmux (apt-get install tmux)");
    }
    let (dir, _json, victim, tmux) = top_in_tmux("env PROFILER_TEST_LIVE_PANIC=1");
    let code = exit_code(dir.path());
    assert_ne!(code, 0, "a panic is a failure");
    expect_terminal_restored(&tmux, dir.path());
    let stderr = std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default();
    assert!(
        stderr.contains("PROFILER_TEST_LIVE_PANIC is set"),
        "{stderr}"
    );
    // The target runs on: the kernel took the probes down with the profiler.
    assert!(
        std::path::Path::new(&format!("/proc/{}", victim.pid())).exists(),
        "the target is gone"
    );
}
