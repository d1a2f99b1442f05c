//! perf, the anchor of the cpu benchmark: `perf record` on the workload's pid, ready once every
//! thread of the target has its event, stopping by itself when the workload exits; then
//! `perf script`, which unwinds and symbolizes the recorded stacks, and whose frames are
//! counted as the profiler's are.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{Stacks, Walk};
use crate::bench::{
    proc::{self, Ended, Proc},
    tracer,
};

const PERF: &str = "perf";

/// perf from PATH (installed with apt-get, Debian package `linux-perf`, when missing), once a
/// trial `perf record` works here; Err(why) otherwise. As root, `perf_event_paranoid` does not
/// apply, and nothing is changed.
pub(super) fn find(dir: &Path) -> Result<PathBuf, String> {
    let perf = tracer::ensure_tool(PERF, "linux-perf")?;
    let out = Command::new(&perf)
        .args(["record", "-q", "-e", "cpu-clock", "-F", "99", "-o"])
        .arg(dir.join("perf-check.data"))
        .args(["--", "true"])
        .output()
        .map_err(|e| format!("running {}: {e}", perf.display()))?;
    if !out.status.success() {
        return Err(format!(
            "perf record does not work here: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(perf)
}

/// `perf record -e cpu-clock -F <hz>` on `pid`, walking stacks `walk`: DWARF (`--call-graph dwarf`,
/// 8 KiB of the stack a sample, perf's default) or frame pointers (`-g`), into `data`;
/// returned once it has an event open for every thread of the target (it prints nothing
/// until it stops).
pub(super) fn record(
    perf: &Result<PathBuf, String>,
    pid: i32,
    hz: u64,
    walk: Walk,
    data: &Path,
) -> anyhow::Result<Proc> {
    let path = perf.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let threads = std::fs::read_dir(format!("/proc/{pid}/task"))?.count();
    let mut cmd = Command::new(path);
    cmd.args(["record", "-e", "cpu-clock", "-F", &hz.to_string()]);
    cmd.args(if walk == Walk::Dwarf {
        &["--call-graph", "dwarf"][..]
    } else {
        &["-g"]
    });
    cmd.arg("-p").arg(pid.to_string()).arg("-o").arg(data);
    proc::pin(&mut cmd, proc::Side::Tracer);
    let mut record = Proc::spawn(PERF, cmd, false)?;
    record.wait_for_fds(
        "an event for every thread of the target",
        threads,
        Instant::now() + Duration::from_secs(30),
        |t| t.contains("perf_event"),
    )?;
    Ok(record)
}

/// Waits for `perf record` to end (it does when the target exits), then runs `perf script` on
/// its data. Returns both processes' cost, the stacks, and the data's size in a few words.
pub(super) fn finish(
    mut record: Proc,
    perf: &Result<PathBuf, String>,
    data: &Path,
) -> anyhow::Result<(Ended, Ended, Stacks, String)> {
    let path = perf.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let ended = record.finish_ok(
        Duration::from_secs(20),
        libc::SIGINT,
        Duration::from_secs(20),
        Duration::from_secs(2),
    )?;
    let mut cmd = Command::new(path);
    cmd.args(["script", "-F", "comm,tid,ip,sym,dso", "-i"])
        .arg(data);
    proc::pin(&mut cmd, proc::Side::Tracer);
    // Tens of MB at 9999 Hz: to a file, read back in one piece and let go.
    let out = data.with_extension("script");
    let file =
        std::fs::File::create(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut script = Proc::spawn_to("perf script", cmd, file)?;
    let post = script.finish_ok(
        Duration::from_secs(300),
        libc::SIGTERM,
        Duration::from_secs(5),
        Duration::from_secs(5),
    )?;
    let text =
        std::fs::read_to_string(&out).with_context(|| format!("reading {}", out.display()))?;
    let stacks = parse(text.lines());
    drop(text);
    let _ = std::fs::remove_file(&out);
    if stacks.samples == 0 {
        bail!("perf script printed no sample:\n{}", script.output());
    }
    let size = std::fs::metadata(data).map_or(0, |m| m.len());
    let seen = format!(
        "{:.2} MB of data; {} samples in perf script",
        size as f64 / 1e6,
        stacks.samples
    );
    Ok((ended, post, stacks, seen))
}

/// Counts `perf script -F comm,tid,ip,sym,dso`'s samples: a header line (`comm tid`), then one
/// indented line a frame, innermost first (`address symbol (object)`), then a blank line.
/// Kernel frames are left out: the stacks compared are the user stacks.
fn parse<'a>(lines: impl Iterator<Item = &'a str>) -> Stacks {
    let mut stacks = Stacks::default();
    let mut frames: Vec<&str> = Vec::new();
    let mut open = false;
    for line in lines.chain([""]) {
        if line.trim().is_empty() {
            if open {
                stacks.add(&frames);
            }
            frames.clear();
            open = false;
        } else if line.starts_with(char::is_whitespace) {
            let (_, rest) = line.trim().split_once(' ').unwrap_or(("", ""));
            let (symbol, object) = rest.rsplit_once(" (").unwrap_or((rest, ""));
            if !object.starts_with("[kernel") {
                frames.push(symbol);
            }
        } else {
            open = true;
        }
    }
    stacks
}
