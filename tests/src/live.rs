//! The live snapshots (`PROFILER_LIVE_SNAPSHOT=PATH`): while profiling, `attach` and `run`
//! write the report so far to PATH about once a second, replacing it whole each time.

use std::{
    path::Path,
    thread,
    time::{Duration, Instant},
};

use crate::{Profiler, Report, TIMEOUT, Victim};

/// The variable that names the file the profiler writes its live snapshots to.
pub const SNAPSHOT_VAR: &str = "PROFILER_LIVE_SNAPSHOT";

/// Starts `profiler attach ARGS... PID` on `victim` (as [`crate::attach`]) with its live
/// snapshots written to `snapshot`, and waits until its probes are attached.
pub fn attach_live(victim: &Victim, args: &[&str], snapshot: &Path) -> Profiler {
    let pid = victim.pid().to_string();
    let mut all = vec!["attach", "--max-overhead", "0"];
    all.extend_from_slice(args);
    all.push(&pid);
    let mut command = Profiler::command(all);
    command.env(SNAPSHOT_VAR, snapshot);
    let mut profiler = Profiler::spawn(command);
    let target = profiler.wait_ready();
    assert_eq!(target, victim.pid(), "the profiler names another pid");
    profiler
}

/// The first snapshot at `path` built wholly after this call: the file is removed and waited
/// for twice, since the first one to appear may have been built before the call and written
/// after it, and the profiler builds the next one only after it wrote that one.
pub fn next_snapshot(path: &Path) -> Report {
    for _ in 0..2 {
        match std::fs::remove_file(path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => panic!("failed to remove the snapshot {}: {e}", path.display()),
        }
        let deadline = Instant::now() + TIMEOUT;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "no live snapshot at {} after {} s",
                path.display(),
                TIMEOUT.as_secs()
            );
            thread::sleep(Duration::from_millis(20));
        }
    }
    Report::read(path)
}

/// The first snapshot at `path` that `want` accepts (what the test waits for has happened), or
/// a failure after [`TIMEOUT`] naming `what`, with the last snapshot read.
pub fn snapshot_showing(path: &Path, what: &str, want: impl Fn(&Report) -> bool) -> Report {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        let snapshot = next_snapshot(path);
        if want(&snapshot) {
            return snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "no live snapshot showed {what}; the last one:\n{:#}",
            snapshot.json
        );
    }
}
