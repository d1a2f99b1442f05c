//! The memory family's benchmark: what tracking every allocation costs a malloc/free-heavy
//! program with `profiler attach --level memory --memory exact`, next to bpftrace doing the same
//! outstanding-allocation tracking (uprobes on malloc and free, a uretprobe on malloc, a map of
//! outstanding blocks) and heaptrack (its preloaded library, recording every call with its
//! stack), in the same rounds; the profiler's own peak RSS while a target holds a million
//! outstanding blocks; and the leak findings of the profiler and of heaptrack on one program
//! with known leaks.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
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
const TARGET_RATIO: f64 = 0.50;

/// heaptrack's column.
const HEAPTRACK: &str = "heaptrack";

/// The memory family's test victim: its `reach` scenario drops 100 blocks of 48 bytes, keeps
/// 200 of 64 in a global array, and drops the head of a 50-node list of 32-byte nodes.
const MEM_VICTIM_C: &str = include_str!("../../../tests/victims/mem_victim.c");

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

    let heaptrack = super::tracer::ensure_tool("heaptrack", "heaptrack");
    let labels = [BASELINE, PROFILER, BPFTRACE, HEAPTRACK];
    let skipped: Vec<Option<String>> = labels
        .iter()
        .map(|l| match *l {
            HEAPTRACK => heaptrack.as_ref().err().map(|e| format!("heaptrack: {e}")),
            l => tracer(l).and_then(|t| t.available(tools).err().map(str::to_string)),
        })
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
            let (ns, outcome) = match (label, &heaptrack) {
                (HEAPTRACK, Ok(ht)) => (
                    heaptrack_churn(ht, &exe, &dir.join(format!("heaptrack-{round}")), pairs)?,
                    None,
                ),
                _ => churn(&exe, tracer(label), tools, &json, pairs)
                    .with_context(|| format!("measuring malloc churn under {label}"))?,
            };
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
    let findings = leak_findings(tools, heaptrack.as_ref().ok(), dir)
        .context("comparing leak findings on the memory victim")?;
    println!();
    print!(
        "{}",
        report(&labels, &samples, &skipped, &costs, &held, runs, pairs)
    );
    print!("{findings}");
    Ok(())
}

/// The churn under heaptrack (`heaptrack -o OUT EXE churn N`: its library preloaded from the
/// start, as heaptrack is meant to be run; its attach mode injects through gdb and says it can
/// crash the target): ns per pair, as the workload times its own loop.
fn heaptrack_churn(heaptrack: &Path, exe: &Path, out: &Path, pairs: u64) -> anyhow::Result<f64> {
    let mut cmd = Command::new(heaptrack);
    cmd.arg("-o")
        .arg(out)
        .arg(exe)
        .args(["churn", &pairs.to_string()]);
    let mut target = Proc::spawn("heaptrack", cmd, true)?;
    workload::wait_ready(&mut target, Duration::from_secs(60))?;
    let budget = Duration::from_secs(60) + Duration::from_micros(pairs.saturating_mul(200));
    let line = workload::go(&mut target, budget)?;
    let (n, ns) = workload::parse_result(&line)?;
    if n != pairs {
        bail!("workload made {n} pairs under heaptrack, asked for {pairs}");
    }
    // heaptrack writes and compresses its trace after the program exits.
    target.finish(
        Duration::from_secs(120),
        libc::SIGTERM,
        Duration::from_secs(5),
    )?;
    Ok(ns)
}

/// The profiler's (`run --level memory --memory exact`) and heaptrack's leak findings on the
/// memory victim's `reach` scenario, as a few lines of the report.
fn leak_findings(tools: &Tools, heaptrack: Option<&PathBuf>, dir: &Path) -> anyhow::Result<String> {
    let src = dir.join("mem_victim.c");
    std::fs::write(&src, MEM_VICTIM_C).with_context(|| format!("writing {}", src.display()))?;
    let exe = dir.join("mem_victim");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-g", "-fno-omit-frame-pointer", "-pthread", "-o"])
        .arg(&exe)
        .arg(&src);
    crate::status(gcc).context("building the memory victim")?;

    let json = dir.join("memory-reach.json");
    let mut profiler = Command::new(&tools.profiler);
    profiler
        .args(["run", "--level", "memory", "--memory", "exact", "--json"])
        .arg(&json)
        .arg("--")
        .arg(&exe)
        .arg("reach")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    crate::status(profiler).context("profiling the memory victim")?;
    let report = read_report(&json)?;
    let d = &report["memory"]["memory_leak_detection"];
    let tally = |k: &str| {
        format!(
            "{} B in {} blocks",
            d[k]["bytes"].as_u64().unwrap_or(0),
            d[k]["count"].as_u64().unwrap_or(0)
        )
    };
    let mut s = String::new();
    let _ = writeln!(
        s,
        "
leak findings on a program that drops 100 blocks of 48 B, keeps 200 of 64 B in a global \
         array, and drops the head of a 50-node list of 32 B nodes (expected: 4832 B in 101 \
         blocks definitely lost, 1568 B in 49 indirectly lost, and 12800 B in 200 reachable, \
         with the few blocks the C library and the loader keep)"
    );
    let _ = writeln!(
        s,
        "profiler:  definitely lost {}, indirectly lost {}, reachable {}",
        tally("definitely_lost"),
        tally("indirectly_lost"),
        tally("reachable")
    );
    let Some(heaptrack) = heaptrack else {
        let _ = writeln!(s, "heaptrack: unavailable");
        return Ok(s);
    };
    let out = dir.join("heaptrack-reach");
    let run = Command::new(heaptrack)
        .arg("-o")
        .arg(&out)
        .arg(&exe)
        .arg("reach")
        .output()
        .context("running heaptrack")?;
    let text =
        String::from_utf8_lossy(&run.stdout).into_owned() + &String::from_utf8_lossy(&run.stderr);
    let leaked_allocations = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("leaked allocations:"))
        .map_or("?".to_string(), |v| v.trim().to_string());
    let file = ["zst", "gz"]
        .iter()
        .map(|e| out.with_extension(e))
        .find(|p| p.exists())
        .context("heaptrack wrote no trace")?;
    let printed = Command::new("heaptrack_print")
        .arg("-f")
        .arg(&file)
        .output()
        .context("running heaptrack_print")?;
    let printed = String::from_utf8_lossy(&printed.stdout);
    let leaked = printed
        .lines()
        .find_map(|l| l.strip_prefix("total memory leaked:"))
        .map_or("?".to_string(), |v| v.trim().to_string());
    let _ = writeln!(
        s,
        "heaptrack: total memory leaked {leaked} in {leaked_allocations} allocations (every block \
         not freed at the exit: it does not tell lost from still reachable)"
    );
    Ok(s)
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
        "{:<14}{:>10}{:>13}{:>13}{:>13}{:>20}{:>21}",
        "workload",
        "baseline",
        "profiler",
        "bpftrace",
        "heaptrack",
        "profiler/bpftrace",
        "profiler/heaptrack"
    );
    let cell = |l: &str| match (slow(l), labels.iter().position(|x| *x == l)) {
        (Some(ns), _) => format!("+{}", duration(ns)),
        (None, Some(i)) if skipped[i].is_some() => "unavailable".into(),
        _ => "-".into(),
    };
    let over = |other: &str| match (slow(PROFILER), slow(other)) {
        (Some(p), Some(b)) if b > 0.0 => Some(p / b),
        _ => None,
    };
    let ratio = over(BPFTRACE);
    let _ = writeln!(
        s,
        "{:<14}{:>10}{:>13}{:>13}{:>13}{:>20}{:>21}",
        "malloc_churn",
        med(BASELINE).map_or("-".into(), duration),
        cell(PROFILER),
        cell(BPFTRACE),
        cell(HEAPTRACK),
        ratio.map_or("-".into(), |r| format!("{r:.2}×")),
        over(HEAPTRACK).map_or("-".into(), |r| format!("{r:.2}×"))
    );
    for why in skipped.iter().flatten() {
        let _ = writeln!(s, "{why}");
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
