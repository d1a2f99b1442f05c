//! The memory family's benchmark: what tracking every allocation costs a malloc/free-heavy
//! program with `profiler attach --level memory`, next to bpftrace doing the same
//! outstanding-allocation tracking (uprobes on malloc and free, a uretprobe on malloc, a map of
//! outstanding blocks), in the same rounds; and the profiler's own peak RSS while a target holds
//! a million outstanding blocks.

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    BASELINE, BPFTRACE, PROFILER, duration, median, mib,
    proc::{Proc, Stream},
    tracer::{Outcome, Tools, Tracer},
    wait_for_probe, workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "memory";

const MALLOC_C: &str = include_str!("../../bench/malloc.c");

/// Blocks the target holds for the profiler's RSS measurement.
const HELD_BLOCKS: u64 = 1_000_000;

/// The target: at most this ratio of the profiler's slowdown to bpftrace's.
const TARGET_RATIO: f64 = 0.70;

/// bpftrace's outstanding-allocation tracking, as small as it goes: the size at malloc's entry
/// by thread, the block at its return, deleted at free.
const BPFTRACE_SCRIPT: &str = "uprobe:libc:malloc { @sz[tid] = arg0; } \
     uretprobe:libc:malloc /@sz[tid]/ { @a[retval] = @sz[tid]; delete(@sz[tid]); } \
     uprobe:libc:free { delete(@a[arg0]); }";

fn tracer(label: &str) -> Option<Tracer> {
    match label {
        PROFILER => Some(Tracer::Profiler {
            // The overhead guard would detach nothing here (no --func), but keep it off as in
            // the other scenarios.
            args: [
                "--level",
                "memory",
                "--memory",
                "exact",
                "--max-overhead",
                "0",
            ]
            .map(String::from)
            .to_vec(),
        }),
        BPFTRACE => Some(Tracer::Bpftrace {
            script: BPFTRACE_SCRIPT.to_string(),
        }),
        _ => None,
    }
}

/// Builds the workload, measures the churn loop under every configuration `runs` times
/// (interleaved), then the profiler's RSS with a million outstanding blocks; prints the tables.
pub fn bench(tools: &Tools, dir: &Path, runs: u32, pairs: u64) -> anyhow::Result<()> {
    let src = dir.join("malloc.c");
    std::fs::write(&src, MALLOC_C).with_context(|| format!("writing {}", src.display()))?;
    let exe = dir.join("malloc");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-fno-omit-frame-pointer", "-o"])
        .arg(&exe)
        .arg(&src);
    crate::status(gcc).context("building the malloc workload (is gcc installed?)")?;

    let labels = [BASELINE, PROFILER, BPFTRACE];
    let skipped: Vec<Option<String>> = labels
        .iter()
        .map(|l| tracer(l).and_then(|t| t.available(tools).err().map(str::to_string)))
        .collect();
    let mut samples: Vec<Vec<f64>> = labels.iter().map(|_| Vec::new()).collect();
    let mut costs: Vec<Outcome> = Vec::new();
    for round in 0..runs as usize {
        for k in 0..labels.len() {
            let i = (k + round) % labels.len();
            if skipped[i].is_some() {
                continue;
            }
            let label = labels[i];
            let json = dir.join(format!("memory-{label}-{round}.json"));
            let (ns, outcome) = churn(&exe, tracer(label), tools, &json, pairs)
                .with_context(|| format!("measuring malloc churn under {label}"))?;
            let cost = outcome.as_ref().map_or(String::new(), |o| {
                format!(
                    "  (tracer cpu {:.2} s, rss {})",
                    o.cost.cpu,
                    mib(o.cost.max_rss)
                )
            });
            println!(
                "[{}/{runs}] {:<12} {:<9} {:>10.1} ns/pair{cost}",
                round + 1,
                "malloc_churn",
                label,
                ns
            );
            samples[i].push(ns);
            if label == PROFILER {
                costs.extend(outcome);
            }
        }
    }
    let held = hold(&exe, tools, &dir.join("memory-hold.json"))
        .context("measuring the profiler with a million outstanding blocks")?;
    println!();
    print!(
        "{}",
        report(&labels, &samples, &skipped, &costs, &held, runs, pairs)
    );
    Ok(())
}

/// One churn measurement: ns per malloc/free pair, and the tracer's outcome.
fn churn(
    exe: &Path,
    tracer: Option<Tracer>,
    tools: &Tools,
    json: &Path,
    pairs: u64,
) -> anyhow::Result<(f64, Option<Outcome>)> {
    let mut cmd = Command::new(exe);
    cmd.args(["churn", &pairs.to_string()]);
    let (mut target, traced) = start(cmd, tracer.as_ref(), tools, json)?;
    // bpftrace single-steps free: ~15-20 us a pair on a VM; allow ten times that.
    let budget = Duration::from_secs(60) + Duration::from_micros(pairs.saturating_mul(200));
    let line = workload::go(&mut target, budget)?;
    let (n, ns) = workload::parse_result(&line)?;
    if n != pairs {
        bail!("workload made {n} pairs, asked for {pairs}");
    }
    target.exit_cleanly()?;
    let outcome = match traced {
        None => None,
        Some((t, proc)) => {
            let outcome = t.finish(proc, json, &[])?;
            if let Tracer::Profiler { .. } = t {
                check_churn(json, pairs)?;
            }
            Some(outcome)
        }
    };
    Ok((ns, outcome))
}

/// Starts the workload and, when traced, the tracer, returning once the tracer's probes are in
/// the target's code.
fn start<'t>(
    cmd: Command,
    tracer: Option<&'t Tracer>,
    tools: &Tools,
    json: &Path,
) -> anyhow::Result<(Proc, Option<(&'t Tracer, Proc)>)> {
    let mut target = Proc::spawn("malloc", cmd, true)?;
    let ready = workload::wait_ready(&mut target, Duration::from_secs(10))?;
    let addr = workload::parse_ready(&ready)?;
    let pid = target.pid();
    let traced = match tracer {
        None => None,
        Some(t) => {
            let before = workload::read_code(pid, addr)?;
            let mut proc = t.start(tools, pid, json, None)?;
            wait_for_probe(pid, addr, &before, &mut proc)?;
            std::thread::sleep(super::SETTLE);
            Some((t, proc))
        }
    };
    Ok((target, traced))
}

/// The profiler must have seen every block of the loop allocated by `alloc_block` and freed.
fn check_churn(json: &Path, pairs: u64) -> anyhow::Result<()> {
    let report = read_report(json)?;
    let f = charged(&report, "alloc_block")?;
    let got = (f["allocations"].as_u64(), f["frees"].as_u64());
    if got != (Some(pairs), Some(pairs)) {
        bail!(
            "the profiler counted {got:?} allocations and frees in alloc_block, expected {pairs} of each"
        );
    }
    let lost = &report["overhead"]["lost"];
    if lost.as_object().is_some_and(|l| !l.is_empty()) {
        bail!("the profiler lost data: {lost}");
    }
    Ok(())
}

fn read_report(json: &Path) -> anyhow::Result<serde_json::Value> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))
}

/// The `allocations.by_function` entry of `function`.
fn charged<'r>(
    report: &'r serde_json::Value,
    function: &str,
) -> anyhow::Result<&'r serde_json::Value> {
    report["memory"]["allocations"]["by_function"]
        .as_array()
        .and_then(|fs| fs.iter().find(|f| f["function"] == function))
        .with_context(|| format!("the profiler report charges nothing to {function}"))
}

/// What the profiler costs while its target holds a million blocks.
struct Held {
    /// The profiler's peak RSS and CPU time over the whole run.
    max_rss: u64,
    cpu: f64,
    /// Time the target took to allocate the blocks under the probes.
    allocate: Duration,
    /// From the target's exit to the profiler's (reading the blocks, writing the report).
    teardown: Duration,
}

fn hold(exe: &Path, tools: &Tools, json: &Path) -> anyhow::Result<Held> {
    let mut cmd = Command::new(exe);
    cmd.args(["hold", &HELD_BLOCKS.to_string()]);
    let profiler = tracer(PROFILER).expect("the profiler is a tracer");
    let (mut target, traced) = start(cmd, Some(&profiler), tools, json)?;
    let (_, mut proc) = traced.expect("traced");
    let began = Instant::now();
    target.send(b"g")?;
    target.wait_line(
        "its held line",
        Instant::now() + Duration::from_secs(600),
        |s, l| s == Stream::Stdout && l.starts_with("held "),
    )?;
    let allocate = began.elapsed();
    // A few of the profiler's ticks with the blocks outstanding.
    std::thread::sleep(Duration::from_secs(1));
    target.send(b"g")?;
    target.exit_cleanly()?;
    let exited = Instant::now();
    let cost = proc.finish(
        Duration::from_secs(120),
        libc::SIGINT,
        Duration::from_secs(30),
    )?;
    let teardown = exited.elapsed();
    if !cost.success() {
        bail!(
            "the profiler failed ({}); its output:\n{}",
            cost.describe(),
            proc.output()
        );
    }
    let report = read_report(json)?;
    let f = charged(&report, "hold_block")?;
    let got = (f["allocations"].as_u64(), f["outstanding"].as_u64());
    if got != (Some(HELD_BLOCKS), Some(HELD_BLOCKS)) {
        bail!(
            "the profiler counted {got:?} blocks allocated and outstanding in hold_block, expected {HELD_BLOCKS}"
        );
    }
    Ok(Held {
        max_rss: cost.max_rss,
        cpu: cost.cpu,
        allocate,
        teardown,
    })
}

fn report(
    labels: &[&str],
    samples: &[Vec<f64>],
    skipped: &[Option<String>],
    costs: &[Outcome],
    held: &Held,
    runs: u32,
    pairs: u64,
) -> String {
    let mut s = String::new();
    let med = |l: &str| {
        let i = labels.iter().position(|x| *x == l)?;
        median(samples[i].clone())
    };
    let slow = |l: &str| Some(med(l)? - med(BASELINE)?);
    let _ = writeln!(
        s,
        "malloc/free churn: slowdown per malloc+free pair (median of {runs} runs of {pairs} pairs)"
    );
    let _ = writeln!(
        s,
        "{:<14}{:>10}{:>13}{:>13}{:>20}",
        "workload", "baseline", "profiler", "bpftrace", "profiler/bpftrace"
    );
    let cell = |l: &str| match (slow(l), labels.iter().position(|x| *x == l)) {
        (Some(ns), _) => format!("+{}", duration(ns)),
        (None, Some(i)) if skipped[i].is_some() => "unavailable".into(),
        _ => "-".into(),
    };
    let ratio = match (slow(PROFILER), slow(BPFTRACE)) {
        (Some(p), Some(b)) if b > 0.0 => Some(p / b),
        _ => None,
    };
    let _ = writeln!(
        s,
        "{:<14}{:>10}{:>13}{:>13}{:>20}",
        "malloc_churn",
        med(BASELINE).map_or("-".into(), duration),
        cell(PROFILER),
        cell(BPFTRACE),
        ratio.map_or("-".into(), |r| format!("{r:.2}×"))
    );
    if let Some(why) = skipped.iter().flatten().next() {
        let _ = writeln!(s, "bpftrace: {why}");
    }
    let _ = writeln!(
        s,
        "exact: the profiler counted all {pairs} allocations and frees of alloc_block in every run"
    );
    if let (Some(cpu), Some(rss)) = (
        median(costs.iter().map(|o| o.cost.cpu).collect()),
        costs.iter().map(|o| o.cost.max_rss).max(),
    ) {
        let _ = writeln!(
            s,
            "profiler per churn run: cpu {cpu:.2} s, peak rss {}",
            mib(rss)
        );
    }
    let _ = writeln!(
        s,
        "\nprofiler with {HELD_BLOCKS} outstanding blocks (all counted exactly): peak rss {}, cpu \
         {:.2} s; the target took {:.1} s to allocate them under the probes; report written {:.1} \
         s after the target exited",
        mib(held.max_rss),
        held.cpu,
        held.allocate.as_secs_f64(),
        held.teardown.as_secs_f64()
    );
    let verdict = match ratio {
        Some(r) if r <= TARGET_RATIO => format!("{r:.2}× PASS"),
        Some(r) => format!("{r:.2}× FAIL"),
        None => "no ratio (bpftrace not measured)".into(),
    };
    let _ = writeln!(
        s,
        "\ntarget (profiler slowdown / bpftrace slowdown) ≤ {TARGET_RATIO:.2}: {verdict}"
    );
    s
}
