//! The cpu family's benchmark: what sampling costs a CPU-bound program, how whole its stacks
//! are, and how its shares per function compare, next to perf in the same interleaved rounds.
//! The workload (`xtask/bench/cpu.c`, built `-O2 -fomit-frame-pointer -g`) is three threads
//! whose time the code splits between functions at different depths in known proportions
//! ([`HOT`]). Configurations:
//!
//! - the profiler, `attach --level profiling --max-overhead 0`, at its default 99 Hz and at
//!   999 Hz: user stacks unwound in the kernel from the objects' `.eh_frame` tables;
//! - `perf record -e cpu-clock -F 99 --call-graph dwarf -p PID`: the usual way to profile code
//!   without frame pointers, 8 KiB of the stack copied at every sample and unwound afterwards
//!   from the DWARF information by `perf script`, whose cost is counted apart;
//! - `perf record -e cpu-clock -F 99 -g -p PID`: frame pointers, which this build has not: the
//!   stacks such a walk gets without them.
//!
//! The workload runs on one CPU (the last) and the samplers on the others, as in the threads
//! benchmark, so every sample of that CPU is one of its threads and runs in its context: the
//! cost is read from its CPU time per unit of work (all threads, user + system), as in the
//! level table. The samplers' own CPU time is read from `/proc/PID/stat` at the start and the
//! end of the workload's timed span. The profiler runs with `PROFILER_BPF_STATS=1`, so that
//! the kernel times its sampling program: the direct cost of the samples, under the noise of a
//! slowdown of a percent or less. A second, small scenario ([`objects`]) measures the
//! profiler's memory on a target that maps 200 objects.

mod objects;
mod perf;
mod report;

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{
    BASELINE, median, mib,
    proc::{self, Ended, Proc},
    tracer::{Tools, Tracer},
    workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "cpu";

const CPU_C: &str = include_str!("../../bench/cpu.c");
/// The timed span and result line of cpu.c and dlopen.c.
const TIMING_H: &str = include_str!("../../bench/timing.h");

/// Threads of the workload (the main thread and two created ones).
const THREADS: u64 = 3;

/// A function of the workload the shares are compared on, with the shares of the workload's
/// CPU time its code gives it, percent (see the table at the top of cpu.c).
struct Hot {
    name: &'static str,
    /// Callees included.
    total: f64,
    /// In the function itself.
    own: f64,
}

const HOT: [Hot; 6] = [
    Hot::new("unit", 100.0, 10.0),
    Hot::new("leaf_shallow", 30.0, 30.0),
    Hot::new("outer", 60.0, 10.0),
    Hot::new("middle", 50.0, 10.0),
    Hot::new("descend", 40.0, 0.0),
    Hot::new("leaf_deep", 40.0, 40.0),
];

impl Hot {
    const fn new(name: &'static str, total: f64, own: f64) -> Hot {
        Hot { name, total, own }
    }
}

/// Functions a thread's stack starts in: a sampled stack whose outermost frame is one of them
/// is complete (the main thread's `_start`, a created thread's `clone3` or `start_thread`).
const OUTERMOST: [&str; 6] = [
    "_start",
    "start_thread",
    "clone3",
    "__clone3",
    "clone",
    "__clone",
];

const PROFILER_99: &str = "profiler-99";
const PROFILER_999: &str = "profiler-999";
const PERF_DWARF: &str = "perf-dwarf";
const PERF_FP: &str = "perf-fp";
const PROFILER_9999: &str = "profiler-9999";
const PERF_FP_9999: &str = "perf-fp-9999";
const ELSEWHERE_9999: &str = "elsewhere-9999";

/// Objects the target loads.
const OBJECTS: usize = 200;

/// How a configuration samples the workload.
#[derive(Clone, Copy)]
enum Sampler {
    /// The profiler at this frequency, Hz.
    Profiler(u64),
    /// `perf record` at this frequency, walking the stacks this way.
    Perf(u64, Walk),
    /// The profiler at this frequency, profiling another process (one that sleeps): what its
    /// sampling costs a process it does not profile.
    Elsewhere(u64),
}

/// How perf gets a sample's stack.
#[derive(Clone, Copy, PartialEq)]
enum Walk {
    /// A copy of the stack's top 8 KiB, unwound by `perf script` from the DWARF information.
    Dwarf,
    /// The frame-pointer chain, walked in the kernel.
    FramePointers,
}

/// The configurations, in the order of the tables. Those at 9999 Hz price one sample: the
/// slowdown at 99 Hz is a fraction of the noise of a shared machine, at 9999 Hz it is a
/// hundred times that fraction.
const CONFIGS: [(&str, Option<Sampler>); 8] = [
    (BASELINE, None),
    (PROFILER_99, Some(Sampler::Profiler(99))),
    (PROFILER_999, Some(Sampler::Profiler(999))),
    (PERF_DWARF, Some(Sampler::Perf(99, Walk::Dwarf))),
    (PERF_FP, Some(Sampler::Perf(99, Walk::FramePointers))),
    (PROFILER_9999, Some(Sampler::Profiler(9999))),
    (PERF_FP_9999, Some(Sampler::Perf(9999, Walk::FramePointers))),
    (ELSEWHERE_9999, Some(Sampler::Elsewhere(9999))),
];

/// The environment variable that makes the profiler time its programs in the kernel and print
/// each one's runs and mean run time at the end (`bpf-stats NAME: N runs, M ns mean`).
const BPF_STATS: &str = "PROFILER_BPF_STATS";
const SAMPLE_PROGRAM: &str = "cpu_sample";

/// What the workload printed.
struct Run {
    units: u64,
    wall_ns: f64,
    cpu_ns: f64,
}

impl Run {
    fn parse(line: &str) -> anyhow::Result<Run> {
        let field = |name: &str| workload::field(line, name);
        let units = field("calls")? as u64;
        Ok(Run {
            units,
            wall_ns: field("ns_per_call")? * units as f64,
            cpu_ns: field("cpu_ns_per_call")? * units as f64,
        })
    }
}

/// Sampled stacks in a few numbers, one run's or several pooled.
#[derive(Debug, Clone, Default)]
struct Stacks {
    samples: u64,
    complete: u64,
    /// Per [`HOT`] function: samples with it anywhere on the user stack, and innermost.
    total: [u64; HOT.len()],
    innermost: [u64; HOT.len()],
}

impl Stacks {
    /// Counts one sample's user frames (function names, innermost first).
    fn add(&mut self, frames: &[&str]) {
        self.samples += 1;
        if frames.last().is_some_and(|f| OUTERMOST.contains(f)) {
            self.complete += 1;
        }
        for (i, hot) in HOT.iter().enumerate() {
            if frames.contains(&hot.name) {
                self.total[i] += 1;
            }
            if frames.first() == Some(&hot.name) {
                self.innermost[i] += 1;
            }
        }
    }

    fn pool<'a>(all: impl Iterator<Item = &'a Stacks>) -> Stacks {
        let mut p = Stacks::default();
        for s in all {
            p.samples += s.samples;
            p.complete += s.complete;
            for i in 0..HOT.len() {
                p.total[i] += s.total[i];
                p.innermost[i] += s.innermost[i];
            }
        }
        p
    }

    fn percent(&self, n: u64) -> f64 {
        n as f64 * 100.0 / self.samples.max(1) as f64
    }
}

/// What a sampler cost and saw in one run.
struct Traced {
    /// Its CPU time over the workload's timed span, seconds, and the span's wall seconds.
    during: f64,
    span: f64,
    /// The sampler's process as `wait4` saw it: its whole life's CPU time and peak RSS (the
    /// kernel's high-water mark, `VmHWM`, at its exit).
    ended: Ended,
    /// The harness's resident size when it started the sampler: a floor of that peak (see
    /// [`proc::own_rss`]).
    harness_rss: u64,
    /// perf: `perf script`, which unwinds and symbolizes the stacks after the run.
    post: Option<Ended>,
    stacks: Stacks,
    /// The profiler: the kernel's time in its sampling program, all CPUs, whole run, ns
    /// (`PROFILER_BPF_STATS`).
    program_ns: Option<f64>,
    /// What else it said, in a few words (the profiler's tables and unwind failures).
    seen: String,
}

impl Traced {
    /// Its CPU time while the workload ran, percent of one core.
    fn core_percent(&self) -> f64 {
        self.during / self.span * 100.0
    }
}

/// One measurement.
struct Sample {
    run: Run,
    traced: Option<Traced>,
}

/// Where the samplers are, and where a run's files go.
struct Env<'a> {
    tools: &'a Tools,
    perf: &'a Result<PathBuf, String>,
    dir: &'a Path,
}

/// Builds the workload, measures it under every configuration `runs` times (interleaved, each
/// round starting one configuration later), prints the tables, then runs the objects scenario
/// and prints the targets.
pub fn bench(tools: &Tools, dir: &Path, runs: u32, units: u64) -> anyhow::Result<()> {
    let exe = build(dir, "cpu", CPU_C, &["-fomit-frame-pointer", "-pthread"])?;

    let perf = perf::find(dir);
    if let Err(why) = &perf {
        eprintln!("bench: warning: cpu: perf will not be measured: {why}");
    }
    let env = Env {
        tools,
        perf: &perf,
        dir,
    };
    let skipped = |s: &Option<Sampler>| matches!(s, Some(Sampler::Perf(..))) && perf.is_err();
    println!(
        "cpu workload: {THREADS} threads × {units} units (~20,000 iterations of a mixing loop \
         split between functions at depths 1 to 12), on one CPU; profiler: attach --level \
         profiling --max-overhead 0 [--frequency 999]; perf: record -e cpu-clock -F 99 \
         --call-graph dwarf | -g -p PID, then perf script"
    );
    let mut samples: Vec<Vec<Sample>> = CONFIGS.iter().map(|_| Vec::new()).collect();
    for round in 0..runs as usize {
        for k in 0..CONFIGS.len() {
            let i = (k + round) % CONFIGS.len();
            let (label, sampler) = CONFIGS[i];
            if skipped(&sampler) {
                continue;
            }
            let mut cmd = Command::new(&exe);
            cmd.args([units.to_string(), THREADS.to_string()]);
            let files = dir.join(format!("cpu-{label}-{round}"));
            let sample = measure(cmd, THREADS * units, sampler, &env, &files)
                .with_context(|| format!("measuring the cpu workload under {label}"))?;
            println!("[{}/{runs}] cpu {label:<13} {}", round + 1, sample.line());
            samples[i].push(sample);
        }
    }
    println!();
    print!("{}", report::report(&samples, &perf, runs, units));

    println!();
    let rss = objects::bench(&env, runs)?;
    println!();
    print!("{}", report::targets(&samples, rss));
    Ok(())
}

/// Writes workload `name`'s source and [`TIMING_H`] into `dir` and builds it there with gcc
/// (`-O2 -g` and `flags`); returns the executable's path.
fn build(dir: &Path, name: &str, source: &str, flags: &[&str]) -> anyhow::Result<PathBuf> {
    let src = dir.join(format!("{name}.c"));
    for (path, text) in [(&src, source), (&dir.join("timing.h"), TIMING_H)] {
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    let exe = dir.join(name);
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-g"])
        .args(flags)
        .arg("-o")
        .arg(&exe)
        .arg(&src);
    crate::status(gcc)
        .with_context(|| format!("building the {name} workload (is gcc installed?)"))?;
    Ok(exe)
}

impl Sample {
    /// The run in one line, for the progress output.
    fn line(&self) -> String {
        let mut s = format!(
            "{:>6.2} µs cpu, {:>6.2} µs wall /unit",
            self.run.cpu_ns / self.run.units as f64 / 1e3,
            self.run.wall_ns / self.run.units as f64 / 1e3
        );
        if let Some(t) = &self.traced {
            let _ = write!(
                s,
                "  ({:.2}% of a core during the run, {:.2} s in all, rss {}; {} samples, {:.1}% \
                 complete)",
                t.core_percent(),
                t.ended.cpu,
                mib(t.ended.max_rss),
                t.stacks.samples,
                t.stacks.percent(t.stacks.complete)
            );
        }
        s
    }
}

/// Starts the workload `cmd` (pinned to the last CPU), attaches `sampler` (pinned to the
/// others), lets the workload make its `units`, and collects what the sampler cost and saw.
/// `files` is the path prefix of the sampler's report or data file.
fn measure(
    mut cmd: Command,
    units: u64,
    sampler: Option<Sampler>,
    env: &Env,
    files: &Path,
) -> anyhow::Result<Sample> {
    proc::pin(&mut cmd, proc::Side::Workload);
    let mut target = Proc::spawn("workload", cmd, true)?;
    workload::wait_ready(&mut target, Duration::from_secs(30))?;
    let pid = target.pid();
    let json = files.with_extension("json");
    let data = files.with_extension("data");
    let harness_rss = proc::own_rss();
    let profiler = |hz: u64| Tracer::Profiler {
        args: ["--level", "profiling", "--max-overhead", "0", "--frequency"]
            .map(String::from)
            .into_iter()
            .chain([hz.to_string()])
            .collect(),
    };
    // Another process to profile: a sleeping one, ended once the workload is done.
    let mut other = match sampler {
        Some(Sampler::Elsewhere(_)) => {
            let mut sleep = Command::new("sleep");
            sleep.arg("3600");
            Some(Proc::spawn("sleep", sleep, false)?)
        }
        _ => None,
    };
    let profiled = other.as_ref().map_or(pid, Proc::pid);
    let mut attached = match sampler {
        None => None,
        Some(Sampler::Profiler(hz) | Sampler::Elsewhere(hz)) => Some(profiler(hz).start_with(
            env.tools,
            profiled,
            &json,
            Some(proc::Side::Tracer),
            &[(BPF_STATS, "1")],
        )?),
        Some(Sampler::Perf(hz, walk)) => Some(perf::record(env.perf, pid, hz, walk, &data)?),
    };
    let (line, span, during) = workload::go_sampled(&mut target, attached.as_ref())?;
    let run = Run::parse(&line)?;
    if run.units != units {
        bail!("workload made {} units, asked for {units}", run.units);
    }
    target.exit_cleanly()?;
    if let Some(other) = other.as_mut() {
        other.finish(Duration::ZERO, libc::SIGKILL, Duration::from_secs(5))?;
    }

    let traced = match (sampler, attached.take()) {
        (Some(Sampler::Profiler(hz) | Sampler::Elsewhere(hz)), Some(p)) => {
            let outcome = profiler(hz).finish(p, &json, &[])?;
            let (stacks, mut seen) = profiler_stacks(&json)?;
            let program_ns = outcome.lines.iter().find_map(|(_, l)| {
                let (runs, mean) = l
                    .strip_prefix("bpf-stats ")?
                    .strip_prefix(SAMPLE_PROGRAM)?
                    .strip_prefix(": ")?
                    .trim_end_matches(" ns mean")
                    .split_once(" runs, ")?;
                let (runs, mean) = (runs.parse::<u64>().ok()?, mean.parse::<f64>().ok()?);
                let _ = write!(seen, "; {SAMPLE_PROGRAM}: {runs} runs, {mean:.0} ns mean");
                Some(runs as f64 * mean)
            });
            Some(Traced {
                during,
                span,
                ended: outcome.cost,
                harness_rss,
                post: None,
                stacks,
                program_ns,
                seen,
            })
        }
        (Some(Sampler::Perf(..)), Some(p)) => {
            let (ended, post, stacks, seen) = perf::finish(p, env.perf, &data)?;
            Some(Traced {
                during,
                span,
                ended,
                harness_rss,
                post: Some(post),
                stacks,
                program_ns: None,
                seen,
            })
        }
        _ => None,
    };
    Ok(Sample { run, traced })
}

/// The profiler's `cpu` section as [`Stacks`] (complete stacks from its percentage, the hot
/// functions from `top_total` and `top_self`), and its tables and unwind failures in a few
/// words.
fn profiler_stacks(json: &Path) -> anyhow::Result<(Stacks, String)> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let cpu = &report["cpu"];
    if cpu.is_null() {
        bail!(
            "the profiler's report {} has no cpu section (families: {})",
            json.display(),
            report["families"]
        );
    }
    let samples = cpu["samples"].as_u64().context("cpu.samples")?;
    let complete = cpu["complete_stacks_percent"]
        .as_f64()
        .context("cpu.complete_stacks_percent")?;
    let count = |list: &str, name: &str| {
        cpu[list]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["function"] == name)
            .and_then(|f| f["samples"].as_u64())
            .unwrap_or(0)
    };
    let mut stacks = Stacks {
        samples,
        complete: (complete * samples as f64 / 100.0).round() as u64,
        ..Stacks::default()
    };
    for (i, hot) in HOT.iter().enumerate() {
        stacks.total[i] = count("top_total", hot.name);
        stacks.innermost[i] = count("top_self", hot.name);
    }
    let t = &cpu["tables"];
    let mut seen = format!(
        "tables: {} objects, {} rows (capacity {}), {} compiled, {} from the cache",
        t["objects"], t["rows"], t["capacity"], t["compiled"], t["from_cache"]
    );
    let failures: Vec<String> = cpu["unwind_failures"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, v)| v.as_u64().is_some_and(|n| n > 0))
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    if !failures.is_empty() {
        let _ = write!(seen, "; unwind failures: {}", failures.join(" "));
    }
    for w in report["warnings"].as_array().into_iter().flatten() {
        let _ = write!(seen, "; warning: {}", w.as_str().unwrap_or("?"));
    }
    Ok((stacks, seen))
}
