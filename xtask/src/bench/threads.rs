//! The threads family's benchmark: what `--level threading` costs a program that does little
//! but switch threads (pairs of threads handing a turn back and forth, `xtask/bench/threads.c`),
//! per context switch, next to two anchors in the same interleaved rounds:
//!
//! - the profiler twice: as a user runs it, and with `--no-lock-probes`. Its uprobes on libc's
//!   lock functions (about 1 µs a lock call) are most of its cost in `cond` mode, and neither
//!   anchor probes a lock function, so the second is what compares per-switch accounting.
//! - `offcputime` from libbpf-tools (bcc's tool rewritten on libbpf): a `sched_switch` program
//!   that notes when a thread of the target goes off the CPU and, when it comes back, adds the
//!   time to a map keyed by its user and kernel stacks. The usual off-CPU tool.
//! - a bpftrace script on `tracepoint:sched:sched_switch` doing the per-thread accounting our
//!   `sched_switch` program does at its core (on-CPU and off-CPU time per thread, in maps), and
//!   nothing else: the floor for "account every switch of the target's threads".
//!
//! The workload runs on one CPU (the last) and the tracers on the others, so nearly every
//! switch is from one of its threads to another and every probe run is charged to it; the cost
//! is read from its CPU time (all threads, user + system), as in the level table, because the
//! wall time of a shared machine moves by more.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    BASELINE, BPFTRACE, PROFILER, SETTLE, levels, median, mib,
    proc::{self, Ended, Proc, Stream},
    tracer::{self, Tools, Tracer},
    workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "threads";

const THREADS_C: &str = include_str!("../../bench/threads.c");

/// Thread pairs of the workload.
const PAIRS: u64 = 2;

/// The workload's modes (see threads.c): mutex and condition variable, or pipes.
const MODES: [(&str, &str); 2] = [
    ("cond", "pthread mutex + condition variable handoff"),
    ("pipe", "a byte round two pipes (no lock calls)"),
];

const OFFCPUTIME: &str = "offcputime";

/// How a profiler run says that a family its level selects is not in this build.
const NOT_IN_BUILD: &str = "selected, not in this build";

/// Where the profiler must be to pass: at most bpftrace's cost per switch.
const TARGET_RATIO: f64 = 1.0;

/// The profiler without its lock probes: what its per-switch accounting costs.
const PROFILER_NOLOCKS: &str = "profiler-nolocks";

/// The configurations, in the order of the tables.
const LABELS: [&str; 5] = [BASELINE, PROFILER, PROFILER_NOLOCKS, OFFCPUTIME, BPFTRACE];

/// The profiler's arguments under `label`, or `None` for a configuration that is not it.
fn profiler_args(label: &str) -> Option<Vec<String>> {
    let mut args = vec!["--level", "threading", "--max-overhead", "0"];
    match label {
        PROFILER => {}
        PROFILER_NOLOCKS => args.push("--no-lock-probes"),
        _ => return None,
    }
    Some(args.into_iter().map(String::from).collect())
}

/// bpftrace's per-thread accounting. `pid` is the tgid of the task switched out (the probe runs
/// in its context); the task switched in is known by the thread id it had when it went out.
/// Time on the CPU is counted from a switch in to the next switch out, time off it from a
/// switch out to the next switch in. `BEGIN` runs after every probe is attached; its line
/// (with `-B line`) is the readiness signal.
fn bpftrace_script(pid: i32) -> String {
    format!(
        "BEGIN {{ printf(\"attached\\n\"); }}
tracepoint:sched:sched_switch /pid == {pid}/ {{
  $t = args->prev_pid;
  if (@in[$t]) {{ @on_cpu_ns[$t] += nsecs - @in[$t]; delete(@in[$t]); }}
  @out[$t] = nsecs;
  @switches = count();
}}
tracepoint:sched:sched_switch /@out[args->next_pid]/ {{
  $t = args->next_pid;
  @off_cpu_ns[$t] += nsecs - @out[$t];
  delete(@out[$t]);
  @in[$t] = nsecs;
}}
END {{ clear(@in); clear(@out); }}"
    )
}

/// What the workload printed.
struct Run {
    /// Round trips made.
    calls: u64,
    wall_ns: f64,
    cpu_ns: f64,
    /// Voluntary + involuntary switches of its threads over the timed span.
    switches: u64,
    involuntary: u64,
}

impl Run {
    fn parse(line: &str) -> anyhow::Result<Run> {
        let field = |name: &str| workload::field(line, name);
        let calls = field("calls")? as u64;
        Ok(Run {
            calls,
            wall_ns: field("ns_per_call")? * calls as f64,
            cpu_ns: field("cpu_ns_per_call")? * calls as f64,
            switches: field("switches")? as u64,
            involuntary: field("involuntary")? as u64,
        })
    }
}

/// One measurement: the workload's run, and for a traced one the tracer's cost and what it saw.
struct Sample {
    run: Run,
    tracer: Option<(Ended, String)>,
}

/// Builds the workload, measures every mode under every configuration `runs` times
/// (interleaved, each round starting one configuration later), and prints the tables.
pub fn bench(tools: &Tools, dir: &Path, runs: u32, round_trips: u64) -> anyhow::Result<()> {
    let exe = dir.join("threads");
    let src = dir.join("threads.c");
    std::fs::write(&src, THREADS_C).with_context(|| format!("writing {}", src.display()))?;
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-pthread", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src);
    crate::status(gcc).context("building the threads workload (is gcc installed?)")?;

    let offcputime = tracer::ensure_tool(OFFCPUTIME, "libbpf-tools");
    let skipped: Vec<Option<String>> = LABELS
        .iter()
        .map(|l| match *l {
            OFFCPUTIME => offcputime.as_ref().err().cloned(),
            BPFTRACE => tools.bpftrace.as_ref().err().cloned(),
            _ => None,
        })
        .collect();
    for (label, why) in LABELS.iter().zip(&skipped) {
        if let Some(why) = why {
            eprintln!("bench: warning: threads: {label} will not be measured: {why}");
        }
    }
    println!(
        "threads workload: {PAIRS} pairs of threads × {round_trips} round trips, on one CPU; \
         profiler: attach --level threading --max-overhead 0 (profiler-nolocks: and \
         --no-lock-probes); offcputime: -p PID; bpftrace: per-thread on/off-CPU time on \
         tracepoint:sched:sched_switch"
    );
    let mut samples: Vec<Vec<Vec<Sample>>> = MODES
        .iter()
        .map(|_| LABELS.iter().map(|_| Vec::new()).collect())
        .collect();
    for round in 0..runs as usize {
        for (m, (mode, _)) in MODES.iter().enumerate() {
            for k in 0..LABELS.len() {
                let i = (k + round) % LABELS.len();
                if skipped[i].is_some() {
                    continue;
                }
                let label = LABELS[i];
                let json = dir.join(format!("threads-{mode}-{label}-{round}.json"));
                let sample = measure(&exe, mode, label, tools, &offcputime, &json, round_trips)
                    .with_context(|| {
                        format!("measuring the {mode} threads workload under {label}")
                    })?;
                let cost = sample.tracer.as_ref().map_or(String::new(), |(e, _)| {
                    format!("  (tracer cpu {:.2} s, rss {})", e.cpu, mib(e.max_rss))
                });
                println!(
                    "[{}/{runs}] threads-{mode:<5} {label:<16} {:>7.2} µs cpu, {:>7.2} µs wall \
                     /round trip, {} switches{cost}",
                    round + 1,
                    sample.run.cpu_ns / sample.run.calls as f64 / 1e3,
                    sample.run.wall_ns / sample.run.calls as f64 / 1e3,
                    sample.run.switches,
                );
                samples[m][i].push(sample);
            }
        }
    }
    println!();
    print!("{}", report(&samples, &skipped, runs, round_trips));
    Ok(())
}

fn measure(
    exe: &Path,
    mode: &str,
    label: &str,
    tools: &Tools,
    offcputime: &Result<PathBuf, String>,
    json: &Path,
    round_trips: u64,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(exe);
    cmd.args([mode, &round_trips.to_string(), &PAIRS.to_string()]);
    proc::pin(&mut cmd, proc::Side::Workload);
    let mut target = Proc::spawn("threads", cmd, true)?;
    workload::wait_ready(&mut target, Duration::from_secs(10))?;
    let pid = target.pid();
    let profiler = profiler_args(label).map(|args| Tracer::Profiler { args });
    let tracer = match (label, &profiler) {
        (_, Some(profiler)) => Some(profiler.start(tools, pid, json, Some(proc::Side::Tracer))?),
        (BASELINE, _) => None,
        (OFFCPUTIME, _) => Some(start_offcputime(offcputime, pid)?),
        (BPFTRACE, _) => Some(start_bpftrace(tools, pid)?),
        _ => bail!("no configuration {label}"),
    };
    if tracer.is_some() {
        std::thread::sleep(SETTLE);
    }

    // Each probe run is a few µs at most: a minute is far more than any tracer needs.
    let line = workload::go(&mut target, Duration::from_secs(120))?;
    let run = Run::parse(&line)?;
    if run.calls != PAIRS * round_trips {
        bail!(
            "workload made {} round trips, asked for {}",
            run.calls,
            PAIRS * round_trips
        );
    }
    target.exit_cleanly()?;

    let tracer = match (tracer, profiler) {
        (None, _) => None,
        (Some(proc), Some(profiler)) => {
            let outcome = profiler.finish(proc, json, &[])?;
            let (families, lost) = levels::families_and_losses(json)?;
            let with = |status: &str| {
                let names: Vec<&str> = families
                    .iter()
                    .filter(|(_, st)| st == status)
                    .map(|(name, _)| name.as_str())
                    .collect();
                names.join(", ")
            };
            let mut seen = format!("families attached: {}", with("attached"));
            let missing = with("not_available");
            if !missing.is_empty() {
                let _ = write!(seen, "; {NOT_IN_BUILD}: {missing}");
            }
            for (name, n) in lost {
                let _ = write!(seen, "; LOST {name}={n}");
            }
            Some((outcome.cost, seen))
        }
        (Some(proc), None) => Some(stop(proc, label, &run)?),
    };
    Ok(Sample { run, tracer })
}

/// `offcputime -p PID`, returned once its `sched_switch` program is attached: it prints nothing
/// until it stops, so the sign is its BPF link (a raw tracepoint's descriptor on kernels without
/// BTF) among its descriptors.
fn start_offcputime(path: &Result<PathBuf, String>, pid: i32) -> anyhow::Result<Proc> {
    let path = path.as_ref().map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cmd = Command::new(path);
    cmd.args(["-p", &pid.to_string()]);
    proc::pin(&mut cmd, proc::Side::Tracer);
    let mut tracer = Proc::spawn(OFFCPUTIME, cmd, false)?;
    tracer.wait_for_fds(
        "its BPF link",
        1,
        Instant::now() + Duration::from_secs(30),
        |t| t.contains("bpf_link") || t.contains("bpf-raw-tracepoint"),
    )?;
    Ok(tracer)
}

/// bpftrace running [`bpftrace_script`], returned once its `BEGIN` line says it is attached.
fn start_bpftrace(tools: &Tools, pid: i32) -> anyhow::Result<Proc> {
    let path = tools
        .bpftrace
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut cmd = Command::new(path);
    cmd.args(["-B", "line", "-e", &bpftrace_script(pid)]);
    proc::pin(&mut cmd, proc::Side::Tracer);
    let mut tracer = Proc::spawn(BPFTRACE, cmd, false)?;
    // It compiles the script with LLVM first.
    tracer.wait_line(
        "its BEGIN line",
        Instant::now() + Duration::from_secs(60),
        |s, l| s == Stream::Stdout && l == "attached",
    )?;
    Ok(tracer)
}

/// Stops an anchor (neither stops when its target exits) with SIGINT, and checks that it saw
/// the workload: bpftrace must have counted at least every switch the workload counted (it also
/// sees those around the timed span), offcputime must print stacks of the workload's threads.
/// Returns its cost and what it saw, in a few words.
fn stop(mut tracer: Proc, label: &str, run: &Run) -> anyhow::Result<(Ended, String)> {
    let ended = tracer.finish_ok(
        Duration::ZERO,
        libc::SIGINT,
        Duration::from_secs(30),
        Duration::from_secs(2),
    )?;
    let stdout = || {
        tracer
            .lines
            .iter()
            .filter(|(s, _)| *s == Stream::Stdout)
            .map(|(_, l)| l.as_str())
    };
    let seen = if label == BPFTRACE {
        let map = |name: &str| {
            stdout()
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|rest| rest.rsplit_once(": ")?.1.trim().parse::<u64>().ok())
                .collect::<Vec<_>>()
        };
        let switches = map("@switches").into_iter().sum::<u64>();
        if switches < run.switches {
            bail!(
                "bpftrace counted {switches} switches, fewer than the workload's {}; its output:\n{}",
                run.switches,
                tracer.output()
            );
        }
        let on: u64 = map("@on_cpu_ns[").iter().sum();
        let off: u64 = map("@off_cpu_ns[").iter().sum();
        format!(
            "switches={switches} on-cpu={:.2} s off-cpu={:.2} s ({} threads)",
            on as f64 / 1e9,
            off as f64 / 1e9,
            map("@off_cpu_ns[").len()
        )
    } else {
        // A stack ends with "-  <comm> (<tid>)" and its total (µs) on the next line.
        let lines: Vec<&str> = stdout().collect();
        let mut stacks = 0;
        let mut us = 0u64;
        for w in lines.windows(2) {
            let frame = w[0].trim();
            if frame.starts_with('-') && frame.contains(" threads (") {
                stacks += 1;
                us += w[1].trim().parse::<u64>().unwrap_or(0);
            }
        }
        if stacks == 0 {
            bail!(
                "offcputime printed no stack of the workload's threads; its output:\n{}",
                tracer.output()
            );
        }
        format!("{stacks} stacks, off-cpu={:.2} s", us as f64 / 1e6)
    };
    Ok((ended, seen))
}

fn report(
    samples: &[Vec<Vec<Sample>>],
    skipped: &[Option<String>],
    runs: u32,
    round_trips: u64,
) -> String {
    let mut s = String::new();
    let at = |label: &str| LABELS.iter().position(|l| *l == label).unwrap_or(0);
    // Per round, the traced run's extra time over the same round's baseline, per switch of the
    // traced run: the switches it had to account.
    let per_switch = |mode: &[Vec<Sample>], label: &str, time: fn(&Run) -> f64| {
        let (base, traced) = (&mode[0], &mode[at(label)]);
        median(
            base.iter()
                .zip(traced)
                .map(|(b, t)| (time(&t.run) - time(&b.run)) / t.run.switches as f64)
                .collect(),
        )
    };
    let slowdown = |mode: &[Vec<Sample>], label: &str| {
        let cpu = |i: usize| median(mode[i].iter().map(|x| x.run.cpu_ns).collect());
        Some((cpu(at(label))? / cpu(0)? - 1.0) * 100.0)
    };
    let cpu = |r: &Run| r.cpu_ns;
    let wall = |r: &Run| r.wall_ns;
    // A profiler configuration's cost per switch over bpftrace's.
    let ratio = |mode: &[Vec<Sample>], label: &str| match (
        per_switch(mode, label, cpu),
        per_switch(mode, BPFTRACE, cpu),
    ) {
        (Some(p), Some(b)) if b > 0.0 => Some(p / b),
        _ => None,
    };
    let ratio_cell = |r: Option<f64>| r.map_or("-".into(), |r| format!("{r:.2}×"));
    let _ = writeln!(
        s,
        "threads: cost per context switch of the target, ns (median of {runs} rounds of (traced − \
         baseline CPU time) / the traced run's switches; {PAIRS} pairs × {round_trips} round \
         trips); CPU slowdown in parentheses"
    );
    let _ = writeln!(
        s,
        "{:<8}{:>22}{:>18}{:>18}{:>18}{:>18}{:>9}{:>9}",
        "mode", "baseline", PROFILER, PROFILER_NOLOCKS, OFFCPUTIME, BPFTRACE, "p/bpft", "nl/bpft"
    );
    for ((mode, _), m) in MODES.iter().zip(samples) {
        let base = median(m[0].iter().map(|x| x.run.cpu_ns).collect());
        let switches = median(m[0].iter().map(|x| x.run.switches as f64).collect());
        let wall_s = median(m[0].iter().map(|x| x.run.wall_ns).collect());
        let (Some(base), Some(switches), Some(wall_s)) = (base, switches, wall_s) else {
            continue;
        };
        let cell = |label: &str| match (per_switch(m, label, cpu), slowdown(m, label)) {
            (Some(ns), Some(pct)) => format!("{ns:.0} ({pct:+.0}%)"),
            _ if skipped[at(label)].is_some() => "unavailable".into(),
            _ => "-".into(),
        };
        let _ = writeln!(
            s,
            "{mode:<8}{:>22}{:>18}{:>18}{:>18}{:>18}{:>9}{:>9}",
            format!(
                "{:.0} ns, {:.0}k sw/s",
                base / switches,
                switches / (wall_s / 1e9) / 1e3
            ),
            cell(PROFILER),
            cell(PROFILER_NOLOCKS),
            cell(OFFCPUTIME),
            cell(BPFTRACE),
            ratio_cell(ratio(m, PROFILER)),
            ratio_cell(ratio(m, PROFILER_NOLOCKS)),
        );
    }
    let _ = writeln!(
        s,
        "baseline: the workload's own CPU time per switch, and switches per second of wall \
         time; p/bpft: profiler / bpftrace; nl/bpft: profiler-nolocks / bpftrace"
    );

    let _ = writeln!(
        s,
        "\nper switch by wall time instead, ns (same rounds); switches per run, median \
         (involuntary)"
    );
    for ((mode, _), m) in MODES.iter().zip(samples) {
        let mut line = format!("  {mode:<6}");
        for (i, label) in LABELS.iter().enumerate() {
            let sw = median(m[i].iter().map(|x| x.run.switches as f64).collect());
            let inv = median(m[i].iter().map(|x| x.run.involuntary as f64).collect());
            let (Some(sw), Some(inv)) = (sw, inv) else {
                continue;
            };
            let ns = if i == 0 {
                String::new()
            } else {
                per_switch(m, label, wall).map_or("-".into(), |v| format!("{v:.0} ns, "))
            };
            let _ = write!(line, "  {label} {ns}{sw:.0} ({inv:.0})");
        }
        let _ = writeln!(s, "{line}");
    }

    let _ = writeln!(
        s,
        "\ntracers' own cost per run (CPU user+sys: median; peak RSS: max) and what they saw \
         (last run)"
    );
    for ((mode, _), m) in MODES.iter().zip(samples) {
        for (i, label) in LABELS.iter().enumerate().skip(1) {
            let ended: Vec<&(Ended, String)> =
                m[i].iter().filter_map(|x| x.tracer.as_ref()).collect();
            let (Some(c), Some(r), Some(last)) = (
                median(ended.iter().map(|(e, _)| e.cpu).collect()),
                ended.iter().map(|(e, _)| e.max_rss).max(),
                ended.last(),
            ) else {
                continue;
            };
            let _ = writeln!(
                s,
                "  {mode:<6}{label:<17} cpu {c:.2} s, rss {}: {}",
                mib(r),
                last.1
            );
        }
    }
    for (label, why) in LABELS.iter().zip(skipped) {
        if let Some(why) = why {
            let _ = writeln!(s, "warning: {label} was not measured: {why}");
        }
    }

    let _ = writeln!(
        s,
        "\ntarget: profiler cost per switch ≤ {TARGET_RATIO:.2}× bpftrace's, judged on \
         {PROFILER_NOLOCKS}: bpftrace's script probes no lock function (the level table holds \
         the 10–20% target of --level threading)"
    );
    for ((mode, _), m) in MODES.iter().zip(samples) {
        let verdict = match ratio(m, PROFILER_NOLOCKS) {
            Some(_) if !threads_attached(&m[at(PROFILER_NOLOCKS)]) => {
                "no verdict: the profiler's report does not list the threads family as attached"
                    .to_string()
            }
            Some(r) if r <= TARGET_RATIO => format!("{r:.2}×: PASS"),
            Some(r) => format!("{r:.2}×: FAIL"),
            None => "no ratio (not measured)".to_string(),
        };
        let full = ratio(m, PROFILER).map_or("not measured".into(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            s,
            "  {mode:<6}{verdict}  (full profiler {full}: with the lock probes, ~1 µs a lock \
             call, which bpftrace's script does not have)"
        );
    }
    s
}

/// Whether every profiler run of a configuration listed the threads family as attached: a
/// build without it (or a level that does not select it) would otherwise be judged on the
/// families it does attach.
fn threads_attached(runs: &[Sample]) -> bool {
    !runs.is_empty()
        && runs.iter().all(|x| {
            x.tracer.as_ref().is_some_and(|(_, seen)| {
                seen.strip_prefix("families attached: ")
                    .and_then(|rest| rest.split(';').next())
                    .is_some_and(|names| names.split(", ").any(|n| n == "threads"))
            })
        })
}
