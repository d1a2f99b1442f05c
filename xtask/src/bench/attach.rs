//! What attaching and detaching many probes costs: `profiler attach --func GLOB` on a program with
//! 1,000 small functions, the glob taking in 50, 500 or all 1,000 of them (100, 1,000 and 2,000
//! probes: an entry and a return probe each).
//!
//! Attach: from starting the profiler to its `profiling pid` line, less the same for one
//! function (which holds what every run does besides attaching: calibration, loading the
//! programs, the other families). Stop: from SIGINT to the profiler's exit, which writes the
//! report and detaches every probe: a multi-uprobe link per file and kind, each taken down with
//! one RCU grace period (perf-event uprobes took one each, serialized by the kernel).

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::Context as _;

use super::{median, proc::Proc, proc::Stream, tracer::Tools};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "attach";

/// Functions of the workload.
const FUNCTIONS: usize = 1000;

/// The most probes bpftrace is measured with (its stop takes ~0.1 s a probe), and the most it is
/// measured with in every round (above it, in the first round only: ~2 minutes each).
const BPFTRACE_MAX_PROBES: usize = 1000;
const BPFTRACE_EVERY_ROUND: usize = 100;

/// (glob, functions it takes in).
const SIZES: [(&str, usize); 4] = [
    ("attach_fn_0000", 1),
    ("attach_fn_00[0-4]*", 50),
    ("attach_fn_0[0-4]*", 500),
    ("attach_fn_*", 1000),
];

/// The workload: `FUNCTIONS` functions the profiler can trace, then it waits for stdin to close.
fn source() -> String {
    let mut c = String::from("#include <stdio.h>\n#include <unistd.h>\nvolatile long sink;\n");
    for i in 0..FUNCTIONS {
        let _ = writeln!(
            c,
            "__attribute__((noinline)) void attach_fn_{i:04}(long x) {{ sink += x + {i}; }}"
        );
    }
    c.push_str("int main(void) {\n");
    for i in 0..FUNCTIONS {
        let _ = writeln!(c, "\tattach_fn_{i:04}({i});");
    }
    c.push_str(
        "\tputs(\"ready\");\n\tfflush(stdout);\n\tchar b;\n\twhile (read(0, &b, 1) > 0) {}\n",
    );
    c.push_str("\treturn 0;\n}\n");
    c
}

/// The workload, started and ready.
fn start_workload(workload: &Path) -> anyhow::Result<Proc> {
    let mut target = Proc::spawn("workload", Command::new(workload), true)?;
    let deadline = Instant::now() + Duration::from_secs(30);
    target.wait_line("ready", deadline, |s, l| {
        s == Stream::Stdout && l == "ready"
    })?;
    Ok(target)
}

/// One measurement: seconds to the `profiling pid` line, and from SIGINT to the exit.
fn measure(tools: &Tools, workload: &Path, glob: &str) -> anyhow::Result<(f64, f64)> {
    let target = start_workload(workload)?;
    let mut cmd = Command::new(&tools.profiler);
    cmd.args(["attach", &target.pid().to_string(), "--func", glob])
        .args(["--max-funcs", "5000", "--max-overhead", "0"]);
    let started = Instant::now();
    let mut profiler = Proc::spawn("profiler", cmd, false)?;
    let deadline = started + Duration::from_secs(120);
    profiler.wait_line("its profiling line", deadline, |s, l| {
        s == Stream::Stderr && l.starts_with("profiler: profiling pid")
    })?;
    let attach = started.elapsed().as_secs_f64();
    let stopping = Instant::now();
    profiler.signal(libc::SIGINT);
    let ended = profiler.finish(Duration::from_secs(1800), libc::SIGKILL, Duration::ZERO)?;
    let stop = stopping.elapsed().as_secs_f64();
    anyhow::ensure!(
        ended.success(),
        "the profiler failed: {}",
        profiler.output()
    );
    drop(target);
    Ok((attach, stop))
}

/// bpftrace counting the entries and returns of the same functions (one attach point each, as
/// bpftrace 0.17 attaches them: a perf event per probe): seconds until every probe is attached
/// (a perf-event descriptor open for each), and from SIGINT to its exit.
fn measure_bpftrace(
    bpftrace: &Path,
    workload: &Path,
    functions: usize,
) -> anyhow::Result<(f64, f64)> {
    let target = start_workload(workload)?;
    let points = |kind: &str| {
        (0..functions)
            .map(|i| format!("{kind}:{}:attach_fn_{i:04}", workload.display()))
            .collect::<Vec<_>>()
            .join(",")
    };
    let pid = target.pid();
    let program = format!(
        "{} /pid == {pid}/ {{ @entries = count(); }} {} /pid == {pid}/ {{ @returns = count(); }}",
        points("uprobe"),
        points("uretprobe")
    );
    let mut cmd = Command::new(bpftrace);
    cmd.args(["-p", &pid.to_string(), "-e", &program]);
    // It refuses more than 512 probes unless told.
    cmd.env("BPFTRACE_MAX_PROBES", (2 * functions + 16).to_string());
    let started = Instant::now();
    let mut tracer = Proc::spawn("bpftrace", cmd, false)?;
    let deadline = started + Duration::from_secs(600);
    // Its output buffer is one perf event per CPU; each probe adds one more. (Its "Attaching"
    // line sits in the pipe's buffer until it exits.)
    let buffers = std::thread::available_parallelism().map_or(1, |n| n.get());
    while perf_events(tracer.pid()) < buffers + 2 * functions {
        if let Some(ended) = tracer.wait_until(Instant::now())? {
            anyhow::bail!(
                "bpftrace ended ({}) before it attached:\n{}",
                ended.describe(),
                tracer.output()
            );
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "bpftrace never attached every probe"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let attach = started.elapsed().as_secs_f64();
    let stopping = Instant::now();
    tracer.signal(libc::SIGINT);
    tracer.finish(Duration::from_secs(1800), libc::SIGKILL, Duration::ZERO)?;
    let stop = stopping.elapsed().as_secs_f64();
    drop(target);
    Ok((attach, stop))
}

/// Perf-event descriptors `pid` holds.
fn perf_events(pid: i32) -> usize {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return 0;
    };
    fds.filter_map(|fd| std::fs::read_link(fd.ok()?.path()).ok())
        .filter(|target| target.to_string_lossy().contains("perf_event"))
        .count()
}

/// Runs the benchmark: `runs` rounds over every size; prints the medians.
pub fn bench(tools: &Tools, dir: &Path, runs: u32) -> anyhow::Result<String> {
    let src = dir.join("attach.c");
    std::fs::write(&src, source()).context("writing the attach workload")?;
    let workload = dir.join("attach_workload");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O1", "-o"]).arg(&workload).arg(&src);
    crate::status(gcc).context("building the attach workload (is gcc installed?)")?;
    let mut samples: Vec<Vec<(f64, f64)>> = SIZES.iter().map(|_| Vec::new()).collect();
    let mut anchor: Vec<Vec<(f64, f64)>> = SIZES.iter().map(|_| Vec::new()).collect();
    for round in 0..runs {
        for (i, (glob, functions)) in SIZES.iter().enumerate() {
            eprintln!("attach: round {}/{runs}, --func '{glob}'", round + 1);
            samples[i].push(measure(tools, &workload, glob)?);
            // One perf event per probe: 0.1 s each to stop, so only the smaller sizes.
            let probes = 2 * functions;
            if let Ok(bpftrace) = &tools.bpftrace
                && probes <= BPFTRACE_MAX_PROBES
                && (probes <= BPFTRACE_EVERY_ROUND || round == 0)
            {
                anchor[i].push(measure_bpftrace(bpftrace, &workload, *functions)?);
            }
        }
    }
    let mut out = String::from(
        "\n## Attach and stop\n\n| functions | probes | profiler attach (s, less 1 function) | \
         profiler stop (s) | bpftrace attach (s) | bpftrace stop (s) |\n\
         |---:|---:|---:|---:|---:|---:|\n",
    );
    let med = |s: &[(f64, f64)], pick: fn(&(f64, f64)) -> f64| {
        median(s.iter().map(pick).collect()).unwrap_or(f64::NAN)
    };
    let base = med(&samples[0], |s| s.0);
    for (((_, functions), s), a) in SIZES.iter().zip(&samples).zip(&anchor) {
        let attach = med(s, |s| s.0) - base;
        let stop = med(s, |s| s.1);
        let bpftrace = match a.is_empty() {
            true => "not run | not run".to_string(),
            false => format!("{:.3} | {:.2}", med(a, |s| s.0), med(a, |s| s.1)),
        };
        let _ = writeln!(
            out,
            "| {functions} | {} | {attach:.3} | {stop:.2} | {bpftrace} |",
            2 * functions
        );
    }
    Ok(out)
}
