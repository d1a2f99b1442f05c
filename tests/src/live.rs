//! The live view's snapshots as the tests read them: with `PROFILER_LIVE_SNAPSHOT=<path>` the
//! profiler writes the report of the run so far to `<path>` about once a second while it
//! profiles (the `--json` schema, the file replaced atomically each time).

use std::{
    path::{Path, PathBuf},
    time::{Instant, SystemTime},
};

use crate::{Report, TIMEOUT, TempDir};

/// The variable that makes the profiler write its live snapshots.
pub const SNAPSHOT_ENV: &str = "PROFILER_LIVE_SNAPSHOT";

/// Where one profiler writes its live snapshots.
pub struct Snapshots {
    path: PathBuf,
}

impl Snapshots {
    /// Snapshots written to `live.json` in `dir`.
    pub fn in_dir(dir: &TempDir) -> Self {
        Self {
            path: dir.path().join("live.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The variable to set in the profiler's environment.
    pub fn env(&self) -> (&'static str, &str) {
        (SNAPSHOT_ENV, self.path.to_str().expect("a UTF-8 path"))
    }

    /// When the snapshot now in place was written, if there is one.
    fn written(&self) -> Option<SystemTime> {
        std::fs::metadata(&self.path)
            .and_then(|m| m.modified())
            .ok()
    }

    /// Waits for a snapshot written after `after`; returns when it was written.
    fn wait_written_after(&self, after: SystemTime, what: &str) -> SystemTime {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(at) = self.written().filter(|at| *at > after) {
                return at;
            }
            assert!(
                Instant::now() < deadline,
                "no live snapshot {what} at {} within {} s",
                self.path.display(),
                TIMEOUT.as_secs()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// A snapshot whose every read was made after this call: the second one written after it
    /// (the first may have been under way when it was made; the profiler makes them one after
    /// the other). File times come from the kernel's coarse clock, which is never ahead of the
    /// precise one: a file stamped after an instant was written after it.
    pub fn after_now(&self) -> Report {
        let now = SystemTime::now();
        let first = self.wait_written_after(now, "written after now");
        self.wait_written_after(first, "made after the one under way");
        Report::read(&self.path)
    }

    /// The first snapshot that `want` accepts (the state it waits for reached), or a failure
    /// after [`TIMEOUT`] naming `what`, with the last snapshot.
    pub fn wait_for(&self, what: &str, want: impl Fn(&Report) -> bool) -> Report {
        let deadline = Instant::now() + TIMEOUT;
        let mut seen = SystemTime::UNIX_EPOCH;
        loop {
            let at = self.wait_written_after(seen, "to look at");
            let report = Report::read(&self.path);
            if want(&report) {
                return report;
            }
            assert!(
                Instant::now() < deadline,
                "no live snapshot showed {what}; the last one:\n{:#}",
                report.json
            );
            seen = at;
        }
    }
}
