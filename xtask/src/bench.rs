//! `cargo xtask bench`: what the profiler's probes cost a traced program, per call, next to
//! bpftrace on the same workloads, and what the profiler itself uses (CPU, memory).
//!
//! Every measurement starts a fresh workload process (C, built here with gcc), attaches the
//! tracer of its configuration, waits until the probes are in the target's code, and then lets
//! the workload run its loop, which times itself. A scenario is one workload and the
//! configurations it is measured under, the untraced baseline first; rounds interleave all
//! configurations of all scenarios and the median of the rounds is reported. See BENCHMARKS.md.

mod attach;
mod cpu;
mod estimate;
mod gpu;
mod html;
mod levels;
mod memory;
mod proc;
mod python;
mod threads;
mod tracer;
mod workload;

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use proc::Proc;
use tracer::{Expect, Outcome, Placement, Tools, Tracer};
use workload::Built;

#[derive(clap::Args)]
pub struct BenchArgs {
    /// Measurements of each configuration (interleaved); the median is reported.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..))]
    runs: u32,
    /// Calls of the traced function per measurement.
    #[arg(long, default_value_t = 300_000, value_parser = clap::value_parser!(u64).range(1..))]
    calls: u64,
    /// Measure only this workload (repeatable): cet_nonleaf, plain, cet_leaf, memory, gpu (the
    /// CUDA allocation probes, on the stub runtime, next to bpftrace), levels, threads (cost per
    /// context switch, next to offcputime and bpftrace), cpu (sampling at 99 and 999 Hz, next to
    /// perf), python (Python frames in the samples, next to py-spy), estimate, attach (attach and stop times for 2 to 2,000 probes, next to bpftrace's),
    /// html (the HTML report of 1,000 functions and 1,000 errors opened in headless Chromium).
    #[arg(long, value_name = "WORKLOAD")]
    only: Vec<String>,
    /// cudaMalloc+cudaFree rounds of the gpu workload (two probed calls a round).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    cuda_rounds: u64,
    /// Requests per thread of the level table's workload (4 threads).
    #[arg(long, default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(8..))]
    requests: u64,
    /// Round trips per thread pair of the threads workload (2 pairs, two switches a round trip).
    #[arg(long, default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    round_trips: u64,
    /// Units of work per thread of the cpu workload (3 threads, ~30 µs a unit here).
    #[arg(long, default_value_t = 50_000, value_parser = clap::value_parser!(u64).range(1..))]
    units: u64,
    /// Leave bpftrace out (it is installed with apt-get when missing otherwise).
    #[arg(long)]
    no_bpftrace: bool,
    /// Keep the built workloads and the profiler's reports in the work directory.
    #[arg(long)]
    keep: bool,
}

/// One way of running a workload: untraced, or under a tracer.
struct Config {
    label: &'static str,
    tracer: Option<Tracer>,
    /// Counts the tracer must report exactly, or the benchmark fails.
    expect: Vec<Expect>,
}

impl Config {
    fn baseline() -> Config {
        Config {
            label: BASELINE,
            tracer: None,
            expect: Vec::new(),
        }
    }
}

const BASELINE: &str = "baseline";
const PROFILER: &str = "profiler";
/// The profiler with the functions family alone (`--without errors`): no syscall tracepoint.
const FN_ONLY: &str = "fn-only";
const BPFTRACE: &str = "bpftrace";

/// A workload and the configurations it is measured under, the untraced baseline first.
struct Scenario<'w> {
    workload: &'w Built,
    /// Calls the workload makes per measurement.
    calls: u64,
    configs: Vec<Config>,
}

/// The per-call comparison: the profiler tracing the workload's function (entry and return)
/// against bpftrace's smallest script that does the same (a uprobe and a uretprobe counting).
/// The profiler runs twice: at the `detailed` level as a user gets it, and with the functions
/// family alone, which is what the bpftrace script does.
fn call_overhead(w: &Built, calls: u64) -> Scenario<'_> {
    let (path, func) = (w.path.display(), w.func);
    let script = format!(
        "uprobe:{path}:{func} {{ @c = count(); }} uretprobe:{path}:{func} {{ @r = count(); }}"
    );
    let expect = |name: &str| Expect {
        name: name.to_string(),
        count: calls,
    };
    // The overhead guard would detach the probes part-way: measure them all.
    let profiler = |extra: &[&str]| Tracer::Profiler {
        args: ["--func", func, "--level", "detailed", "--max-overhead", "0"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
    };
    Scenario {
        workload: w,
        calls,
        configs: vec![
            Config::baseline(),
            Config {
                label: PROFILER,
                tracer: Some(profiler(&[])),
                expect: vec![expect(func)],
            },
            Config {
                label: FN_ONLY,
                tracer: Some(profiler(&["--without", "errors"])),
                expect: vec![expect(func)],
            },
            Config {
                label: BPFTRACE,
                tracer: Some(Tracer::Bpftrace { script }),
                expect: vec![expect("c"), expect("r")],
            },
        ],
    }
}

/// One measurement.
struct Sample {
    /// The workload's loop time over its calls.
    ns_per_call: f64,
    /// Present for traced runs.
    outcome: Option<Outcome>,
}

/// A scenario's measurements, per configuration (same order as `scenario.configs`).
struct Measured<'s> {
    scenario: &'s Scenario<'s>,
    samples: Vec<Vec<Sample>>,
    /// Why a configuration was not measured (its tracer is not available).
    skipped: Vec<Option<String>>,
}

impl Measured<'_> {
    fn index(&self, label: &str) -> Option<usize> {
        self.scenario.configs.iter().position(|c| c.label == label)
    }

    fn samples(&self, label: &str) -> &[Sample] {
        self.index(label).map_or(&[], |i| &self.samples[i])
    }

    fn median_ns(&self, label: &str) -> Option<f64> {
        median(self.samples(label).iter().map(|s| s.ns_per_call).collect())
    }

    /// Median per-call time under `label` minus the baseline's.
    fn slowdown_ns(&self, label: &str) -> Option<f64> {
        Some(self.median_ns(label)? - self.median_ns(BASELINE)?)
    }

    fn why_skipped(&self, label: &str) -> Option<&str> {
        self.index(label).and_then(|i| self.skipped[i].as_deref())
    }

    fn outcomes(&self, label: &str) -> impl Iterator<Item = &Outcome> {
        self.samples(label)
            .iter()
            .filter_map(|s| s.outcome.as_ref())
    }
}

pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("the benchmark attaches uprobes and reads other processes' memory: run it as root");
    }
    let workloads = workload::call_workloads();
    let others = [
        memory::NAME,
        gpu::NAME,
        levels::NAME,
        threads::NAME,
        cpu::NAME,
        python::NAME,
        estimate::NAME,
        attach::NAME,
        html::NAME,
    ];
    for name in &args.only {
        if !workloads.iter().any(|w| w.name == name) && !others.contains(&&**name) {
            let mut names: Vec<_> = workloads.iter().map(|w| w.name).collect();
            names.extend(others);
            bail!("no workload {name:?}; there are: {}", names.join(", "));
        }
    }
    let started = Instant::now();
    crate::cargo(&["build", "--release", "-p", "profiler-user"])?;
    let tools = Tools {
        profiler: crate::workspace_root()?.join("target/release/profiler"),
        bpftrace: if args.no_bpftrace {
            Err("skipped (--no-bpftrace)".into())
        } else {
            tracer::ensure_bpftrace()
        },
    };

    let dir = std::env::temp_dir().join(format!("profiler-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let result = bench_in(args, workloads, &tools, &dir);
    if args.keep || result.is_err() {
        eprintln!("bench: workloads and reports kept in {}", dir.display());
    } else {
        let _ = std::fs::remove_dir_all(&dir);
    }
    eprintln!("bench: took {:.0} s", started.elapsed().as_secs_f64());
    result
}

fn bench_in(
    args: &BenchArgs,
    workloads: Vec<workload::Workload>,
    tools: &Tools,
    dir: &Path,
) -> anyhow::Result<()> {
    let built = workloads
        .iter()
        .filter(|w| args.only.is_empty() || args.only.iter().any(|o| o == w.name))
        .map(|w| workload::build(w, dir))
        .collect::<anyhow::Result<Vec<_>>>()?;

    println!("{}", machine(tools));
    if !built.is_empty() {
        println!("workloads (gcc, disassembled with objdump):");
        for w in &built {
            println!(
                "  {:<12} {}: {} = {}",
                w.name,
                w.about,
                w.func,
                w.prologue.join("; ")
            );
            if let Some(why) = &w.unexpected {
                println!(
                    "  warning: {}: {why}; its row does not measure what it is named for",
                    w.name
                );
            }
        }
        println!();

        let scenarios: Vec<Scenario> = built.iter().map(|w| call_overhead(w, args.calls)).collect();
        let measured = measure_all(&scenarios, tools, dir, args.runs)?;
        println!();
        print!("{}", call_overhead_report(&measured, args.runs, tools));
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == memory::NAME) {
        // A malloc/free pair costs a few probe hits: a third of --calls keeps the run short.
        println!();
        memory::bench(tools, dir, args.runs, (args.calls / 3).max(1000))?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == gpu::NAME) {
        println!();
        gpu::bench(tools, dir, args.runs, args.cuda_rounds)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == levels::NAME) {
        println!();
        levels::bench(tools, dir, args.runs, args.requests)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == threads::NAME) {
        println!();
        threads::bench(tools, dir, args.runs, args.round_trips)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == cpu::NAME) {
        println!();
        cpu::bench(tools, dir, args.runs, args.units)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == python::NAME) {
        println!();
        python::bench(tools, dir, args.runs)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == estimate::NAME) {
        println!();
        estimate_bench(args, &workloads, tools, dir)?;
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == attach::NAME) {
        print!("{}", attach::bench(tools, dir, args.runs)?);
    }
    if args.only.is_empty() || args.only.iter().any(|o| o == html::NAME) {
        println!();
        html::bench(tools, dir, args.runs)?;
    }
    Ok(())
}

/// The estimate against the measured slowdown: the `plain` C loop, python, the level table's
/// workload.
fn estimate_bench(
    args: &BenchArgs,
    workloads: &[workload::Workload],
    tools: &Tools,
    dir: &Path,
) -> anyhow::Result<()> {
    let plain = workloads
        .iter()
        .find(|w| w.name == "plain")
        .context("no plain workload")?;
    let plain = workload::build(plain, dir)?;
    let mixed = levels::build(dir)?;
    let cases = [
        estimate::Case::c_loop(&plain, args.calls),
        estimate::Case::python(dir, args.calls)?,
        estimate::Case::levels(&mixed, args.requests, levels::THREADS, &levels::FUNCS),
    ];
    estimate::bench(&cases, tools, dir, args.runs)
}

/// Runs every configuration of every scenario `runs` times, interleaved: each round measures
/// every scenario once under each configuration, starting one configuration later than the
/// round before.
fn measure_all<'s>(
    scenarios: &'s [Scenario<'s>],
    tools: &Tools,
    dir: &Path,
    runs: u32,
) -> anyhow::Result<Vec<Measured<'s>>> {
    let mut measured: Vec<Measured> = scenarios
        .iter()
        .map(|s| Measured {
            scenario: s,
            samples: s.configs.iter().map(|_| Vec::new()).collect(),
            skipped: s
                .configs
                .iter()
                .map(|c| {
                    let t = c.tracer.as_ref()?;
                    t.available(tools).err().map(str::to_string)
                })
                .collect(),
        })
        .collect();
    for round in 0..runs as usize {
        for m in &mut measured {
            let n = m.scenario.configs.len();
            for k in 0..n {
                let i = (k + round) % n;
                if m.skipped[i].is_some() {
                    continue;
                }
                let config = &m.scenario.configs[i];
                let json = dir.join(format!(
                    "{}-{}-{round}.json",
                    m.scenario.workload.name, config.label
                ));
                let sample = measure(m.scenario, config, tools, &json).with_context(|| {
                    format!(
                        "measuring {} under {} (round {})",
                        m.scenario.workload.name,
                        config.label,
                        round + 1
                    )
                })?;
                progress(
                    (round, runs),
                    m.scenario.workload.name,
                    config.label,
                    sample.ns_per_call,
                    sample.outcome.as_ref(),
                );
                m.samples[i].push(sample);
            }
        }
    }
    Ok(measured)
}

/// Wait after the probes appear in the target's code, for the rest of a tracer's probes (a
/// uretprobe on the same instruction does not change the code again) to be attached.
const SETTLE: Duration = Duration::from_millis(250);

/// Starts the workload, attaches the configuration's tracer, runs the loop, and checks the
/// tracer's counts.
fn measure(
    scenario: &Scenario,
    config: &Config,
    tools: &Tools,
    json: &Path,
) -> anyhow::Result<Sample> {
    let w = scenario.workload;
    let mut cmd = Command::new(&w.path);
    cmd.arg(scenario.calls.to_string());
    proc::pin(&mut cmd, proc::Side::Workload);
    let mut target = Proc::spawn(w.name, cmd, true)?;
    let ready = workload::wait_ready(&mut target, Duration::from_secs(10))?;
    let addr = workload::parse_ready(&ready)?;
    let pid = target.pid();

    let traced = match &config.tracer {
        None => None,
        Some(t) => {
            let before = workload::read_code(pid, addr)?;
            let mut proc = t.start(tools, pid, json, Some(proc::Side::Tracer))?;
            wait_for_probe(pid, addr, &before, &mut proc)?;
            std::thread::sleep(SETTLE);
            Some((t, proc))
        }
    };

    // Single-stepped probes cost ~10-15 us a call; allow ten times that.
    let budget =
        Duration::from_secs(60) + Duration::from_micros(scenario.calls.saturating_mul(150));
    let line = workload::go(&mut target, budget)?;
    let (calls, ns_per_call) = workload::parse_result(&line)?;
    if calls != scenario.calls {
        bail!("workload made {calls} calls, asked for {}", scenario.calls);
    }
    target.exit_cleanly()?;

    let outcome = match traced {
        None => None,
        Some((t, proc)) => Some(t.finish(proc, json, &config.expect)?),
    };
    Ok(Sample {
        ns_per_call,
        outcome,
    })
}

/// Waits until a breakpoint (int3) shows in the first bytes of the traced function: the kernel
/// writes it when the first probe on the function is registered for this process.
fn wait_for_probe(pid: i32, addr: u64, before: &[u8; 16], tracer: &mut Proc) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = workload::read_code(pid, addr)?;
        if now.iter().zip(before).any(|(n, b)| *n == 0xcc && n != b) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracer.drain(Duration::ZERO);
            bail!(
                "{} said it attached, but no breakpoint appeared at {addr:#x} in pid {pid}; \
                 its output:\n{}",
                tracer.name,
                tracer.output()
            );
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The machine: kernel, CPU, cores, virtualization, compilers and tracers.
fn machine(tools: &Tools) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name")?.split_once(':').map(|x| x.1))
        .unwrap_or("unknown CPU")
        .trim()
        .to_string();
    let vm = cpuinfo
        .lines()
        .any(|l| l.starts_with("flags") && l.split_whitespace().any(|f| f == "hypervisor"));
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let gcc = Command::new("gcc")
        .arg("--version")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .next()
                .map(String::from)
        })
        .unwrap_or_default();
    let bpftrace = match &tools.bpftrace {
        Ok(p) => tracer::bpftrace_version(p),
        Err(e) => format!("bpftrace {e}"),
    };
    let tree = crate::workspace_root()
        .ok()
        .and_then(|root| {
            Command::new("git")
                .args(["describe", "--always", "--dirty"])
                .current_dir(root)
                .output()
                .ok()
        })
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".into());
    let mut s = String::new();
    let _ = writeln!(s, "profiler: release build of the working tree at {tree}");
    let _ = writeln!(
        s,
        "machine: Linux {}, {model}, {cores} cores{}",
        read("/proc/sys/kernel/osrelease").trim(),
        if vm { ", virtual machine" } else { "" }
    );
    let _ = write!(s, "tools:   {gcc}; {bpftrace}");
    s
}

/// The per-call comparison tables and the targets.
fn call_overhead_report(measured: &[Measured], runs: u32, tools: &Tools) -> String {
    let mut s = String::new();
    let label = |m: &Measured| {
        let w = m.scenario.workload;
        format!("{} ({})", w.name, w.prologue_short())
    };
    let width = measured
        .iter()
        .map(|m| label(m).len())
        .max()
        .unwrap_or(8)
        .max(8)
        + 2;
    let bpftrace_missing = tools.bpftrace.as_ref().err();

    let _ = writeln!(
        s,
        "per-call slowdown of the target (median of {runs}; traced minus baseline ns/call)"
    );
    let _ = writeln!(
        s,
        "profiler: --level detailed; fn-only: the same with --without errors (no syscall \
         tracepoint, as the bpftrace script)"
    );
    let _ = writeln!(
        s,
        "{:<width$}{:>10}{:>13}{:>13}{:>13}{:>11}{:>11}",
        "workload", "baseline", "profiler", "fn-only", "bpftrace", "p/bpft", "fn/bpft"
    );
    for m in measured {
        let slow = |l: &str| match (m.slowdown_ns(l), m.why_skipped(l)) {
            (Some(ns), _) => format!("+{}", duration(ns)),
            (None, Some(_)) => "unavailable".into(),
            (None, None) => "-".into(),
        };
        let r = |l: &str| ratio(m, l).map_or("-".into(), |r| format!("{r:.2}×"));
        let _ = writeln!(
            s,
            "{:<width$}{:>10}{:>13}{:>13}{:>13}{:>11}{:>11}",
            label(m),
            m.median_ns(BASELINE).map_or("-".into(), duration),
            slow(PROFILER),
            slow(FN_ONLY),
            slow(BPFTRACE),
            r(PROFILER),
            r(FN_ONLY)
        );
    }
    if let Some(why) = bpftrace_missing {
        let _ = writeln!(s, "bpftrace: {why}");
    }

    let _ = writeln!(s, "\nper-call time, ns: median (min..max) over the runs");
    let _ = writeln!(
        s,
        "{:<width$}{:>24}{:>24}{:>24}{:>24}",
        "workload", BASELINE, PROFILER, FN_ONLY, BPFTRACE
    );
    for m in measured {
        let cell = |l: &str| {
            let v: Vec<f64> = m.samples(l).iter().map(|x| x.ns_per_call).collect();
            match median(v.clone()) {
                Some(med) => {
                    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
                    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    format!("{} ({}..{})", ns(med), ns(lo), ns(hi))
                }
                None => "-".into(),
            }
        };
        let _ = writeln!(
            s,
            "{:<width$}{:>24}{:>24}{:>24}{:>24}",
            m.scenario.workload.name,
            cell(BASELINE),
            cell(PROFILER),
            cell(FN_ONLY),
            cell(BPFTRACE)
        );
    }

    let _ = writeln!(s, "\nprobe placement (profiler report) and exact counts");
    for m in measured {
        let w = m.scenario.workload;
        let placement: Vec<&Placement> = m
            .outcomes(PROFILER)
            .filter_map(|o| o.placements.iter().find(|(n, _)| n == w.func).map(|x| &x.1))
            .collect();
        let _ = match placement.first() {
            Some(p) => writeln!(
                s,
                "  {:<12} {} +{} {} ({}): {}{}",
                w.name,
                w.func,
                p.offset,
                p.instruction,
                p.class,
                p.reason,
                if placement.iter().all(|q| q == p) {
                    ""
                } else {
                    " [differs between runs]"
                }
            ),
            None => writeln!(s, "  {:<12} no profiler run", w.name),
        };
        let counts = |l: &str| {
            let per_run: Vec<String> = m
                .outcomes(l)
                .map(|o| {
                    let c: Vec<String> = o.counts.iter().map(|(n, c)| format!("{n}={c}")).collect();
                    c.join(" ")
                })
                .collect();
            match per_run.first() {
                Some(first) if per_run.iter().all(|r| r == first) => {
                    format!("{first} (every run)")
                }
                Some(_) => per_run.join(", "),
                None => "-".into(),
            }
        };
        let _ = writeln!(
            s,
            "  {:<12} calls={}: profiler {}; fn-only {}; bpftrace {}",
            "",
            m.scenario.calls,
            counts(PROFILER),
            counts(FN_ONLY),
            counts(BPFTRACE)
        );
    }

    let _ = writeln!(
        s,
        "\ntracer's own cost per traced run (CPU user+sys: median; peak RSS: max over runs)"
    );
    let _ = writeln!(
        s,
        "{:<width$}{:>14}{:>14}{:>14}{:>14}",
        "workload", "profiler cpu", "profiler rss", "bpftrace cpu", "bpftrace rss"
    );
    let cost = |m: &Measured, l: &str| {
        let cpu = median(m.outcomes(l).map(|o| o.cost.cpu).collect());
        let rss = m.outcomes(l).map(|o| o.cost.max_rss).max();
        (cpu, rss)
    };
    for m in measured {
        let (pc, pr) = cost(m, PROFILER);
        let (bc, br) = cost(m, BPFTRACE);
        let f = |c: Option<f64>| c.map_or("-".into(), |c| format!("{c:.2} s"));
        let g = |r: Option<u64>| r.map_or("-".into(), mib);
        let _ = writeln!(
            s,
            "{:<width$}{:>14}{:>14}{:>14}{:>14}",
            m.scenario.workload.name,
            f(pc),
            g(pr),
            f(bc),
            g(br)
        );
    }
    let all_cpu: Vec<f64> = measured
        .iter()
        .flat_map(|m| m.outcomes(PROFILER).map(|o| o.cost.cpu))
        .collect();
    let all_rss = measured
        .iter()
        .flat_map(|m| m.outcomes(PROFILER).map(|o| o.cost.max_rss))
        .max();
    if let (Some(cpu), Some(rss)) = (median(all_cpu), all_rss) {
        let _ = writeln!(s, "profiler: cpu {cpu:.2} s, peak rss {}", mib(rss));
    }

    let _ = writeln!(s, "\ntargets (profiler slowdown / bpftrace slowdown)");
    for m in measured {
        let w = m.scenario.workload;
        for (l, name) in [(PROFILER, "detailed"), (FN_ONLY, "fn-only")] {
            let Some(r) = ratio(m, l) else {
                let _ = writeln!(s, "  {:<12} {name:<9} no ratio (not measured)", w.name);
                continue;
            };
            let verdict = |ok: bool| if ok { "PASS" } else { "FAIL" };
            let _ = write!(
                s,
                "  {:<12} {name:<9} {r:.2}×   ≤ 1.05 everywhere: {}",
                w.name,
                verdict(r <= 1.05)
            );
            let _ = if w.placement_can_help() {
                writeln!(
                    s,
                    "   ≤ 0.30 where the prologue allows it: {}",
                    verdict(r <= 0.30)
                )
            } else {
                writeln!(s, "   (prologue leaves nothing to skip to)")
            };
        }
    }
    s
}

/// The progress line of one measurement (round `round` of `runs`, from 0): the time per call,
/// and what the tracer itself used.
fn progress(
    (round, runs): (usize, u32),
    workload: &str,
    label: &str,
    ns_per_call: f64,
    outcome: Option<&Outcome>,
) {
    let cost = outcome.map_or(String::new(), |o| {
        format!(
            "  (tracer cpu {:.2} s, rss {})",
            o.cost.cpu,
            mib(o.cost.max_rss)
        )
    });
    println!(
        "[{}/{runs}] {workload:<12} {label:<9} {ns_per_call:>10.1} ns/call{cost}",
        round + 1
    );
}

/// The slowdown under `label` over bpftrace's.
fn ratio(m: &Measured, label: &str) -> Option<f64> {
    let b = m.slowdown_ns(BPFTRACE)?;
    (b > 0.0).then(|| m.slowdown_ns(label).map(|p| p / b))?
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// "3.1 ns", "2.05 µs", "1.20 ms".
fn duration(ns: f64) -> String {
    let a = ns.abs();
    if a < 1e3 {
        format!("{ns:.1} ns")
    } else if a < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// ns with a precision that suits its size.
fn ns(v: f64) -> String {
    if v.abs() < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}
