//! The level table: what each debug level costs one realistic program (a request loop with
//! compute, allocations, syscalls and four threads, `xtask/bench/mixed.c`), measured as the
//! slowdown of its own timed run under `profiler attach --level L`, next to the range the
//! in-process system the profiler grew from promised for that level.
//!
//! The slowdown is that of the workload's CPU time (all threads, user + system: the probes run
//! in the target's threads and are charged to them): on a shared machine its wall time also
//! moves with whatever else runs, by more than the cheaper levels cost. The wall time is shown
//! too.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::{Context as _, bail};

use super::{
    BASELINE, SETTLE, median, mib,
    proc::Proc,
    tracer::{Expect, Outcome, Tools, Tracer},
    wait_for_probe, workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "levels";

const MIXED_C: &str = include_str!("../../bench/mixed.c");

/// Threads of the workload.
pub const THREADS: u64 = 4;

/// Functions traced at the levels that trace functions: the per-request handler and the
/// every-8th-request log flush.
pub const FUNCS: [&str; 2] = ["handle_request", "flush_log"];

/// Calls of [`FUNCS`] per request: one `handle_request`, and `flush_log` every 8th.
const TRACED_PER_REQUEST: f64 = 1.125;

/// A level, whether it is given `--func`, and the slowdown range (percent) the in-process system
/// promised for it.
struct Level {
    /// How the table names it.
    name: &'static str,
    /// The `--level` it runs, and what else it is given.
    level: &'static str,
    extra: &'static [&'static str],
    traces_functions: bool,
    promised: (f64, f64),
}

const LEVELS: [Level; 7] = [
    Level {
        name: "basic",
        level: "basic",
        extra: &[],
        traces_functions: false,
        promised: (1.0, 2.0),
    },
    Level {
        name: "detailed",
        level: "detailed",
        extra: &[],
        traces_functions: true,
        promised: (5.0, 10.0),
    },
    Level {
        name: "profiling",
        level: "profiling",
        extra: &[],
        traces_functions: true,
        promised: (15.0, 25.0),
    },
    Level {
        name: "memory",
        level: "memory",
        extra: &[],
        traces_functions: false,
        promised: (5.0, 10.0),
    },
    Level {
        name: "memory exact",
        level: "memory",
        extra: &["--memory", "exact"],
        traces_functions: false,
        promised: (5.0, 10.0),
    },
    Level {
        name: "threading",
        level: "threading",
        extra: &[],
        traces_functions: false,
        promised: (10.0, 20.0),
    },
    Level {
        name: "full",
        level: "full",
        extra: &[],
        traces_functions: true,
        promised: (30.0, 50.0),
    },
];

/// One measurement.
struct Sample {
    /// Wall time over the requests handled.
    ns_per_request: f64,
    /// CPU time of the workload (all threads) over the requests handled.
    cpu_ns_per_request: f64,
    /// Present for traced runs.
    traced: Option<Traced>,
}

/// What a traced run's report and process say.
struct Traced {
    outcome: Outcome,
    /// Family statuses from the report: (name, status).
    families: Vec<(String, String)>,
    /// Non-zero loss counters.
    lost: Vec<(String, u64)>,
}

/// Builds the workload, measures the baseline and every level `runs` times (interleaved, each
/// round starting one configuration later), and prints the table.
pub fn bench(tools: &Tools, dir: &Path, runs: u32, requests: u64) -> anyhow::Result<()> {
    let exe = build(dir)?;

    let labels: Vec<&str> = [BASELINE]
        .into_iter()
        .chain(LEVELS.iter().map(|l| l.name))
        .collect();
    println!(
        "level table workload: {THREADS} threads × {requests} requests (compute, 4 mallocs, a pipe \
         write and read, every 8th a log write); --func {} at {}",
        FUNCS.join(" --func "),
        LEVELS
            .iter()
            .filter(|l| l.traces_functions)
            .map(|l| l.name)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let mut samples: Vec<Vec<Sample>> = labels.iter().map(|_| Vec::new()).collect();
    for round in 0..runs as usize {
        for k in 0..labels.len() {
            let i = (k + round) % labels.len();
            let level = LEVELS.iter().find(|l| l.name == labels[i]);
            let json = dir.join(format!(
                "levels-{}-{round}.json",
                labels[i].replace(' ', "-")
            ));
            let sample = measure(&exe, level, tools, &json, requests)
                .with_context(|| format!("measuring the mixed workload under {}", labels[i]))?;
            let cost = sample.traced.as_ref().map_or(String::new(), |t| {
                format!(
                    "  (profiler cpu {:.2} s, rss {})",
                    t.outcome.cost.cpu,
                    mib(t.outcome.cost.max_rss)
                )
            });
            println!(
                "[{}/{runs}] {:<12} {:<12} {:>8.1} µs cpu, {:>6.1} µs wall /request{cost}",
                round + 1,
                "mixed",
                labels[i],
                sample.cpu_ns_per_request / 1e3,
                sample.ns_per_request / 1e3
            );
            samples[i].push(sample);
        }
    }
    println!();
    print!("{}", report(&labels, &samples, runs, requests));
    Ok(())
}

/// Builds the workload in `dir`; returns its path.
pub fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let src = dir.join("mixed.c");
    std::fs::write(&src, MIXED_C).with_context(|| format!("writing {}", src.display()))?;
    let exe = dir.join("mixed");
    let mut gcc = Command::new("gcc");
    gcc.args(["-O2", "-pthread", "-o"]).arg(&exe).arg(&src);
    crate::status(gcc).context("building the mixed workload (is gcc installed?)")?;
    Ok(exe)
}

/// The profiler's arguments for `level`.
fn tracer(level: &Level) -> Tracer {
    let mut args: Vec<String> = ["--level", level.level, "--max-overhead", "0"]
        .map(String::from)
        .to_vec();
    args.extend(level.extra.iter().map(|a| a.to_string()));
    if level.traces_functions {
        for f in FUNCS {
            args.extend(["--func".to_string(), f.to_string()]);
        }
    }
    Tracer::Profiler { args }
}

/// Calls of the traced functions the workload makes: every request, and every 8th.
fn expected(level: &Level, requests: u64) -> Vec<Expect> {
    if !level.traces_functions {
        return Vec::new();
    }
    let counts = [THREADS * requests, THREADS * (requests / 8)];
    FUNCS
        .iter()
        .zip(counts)
        .map(|(f, count)| Expect {
            name: f.to_string(),
            count,
        })
        .collect()
}

fn measure(
    exe: &Path,
    level: Option<&Level>,
    tools: &Tools,
    json: &Path,
    requests: u64,
) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(exe);
    cmd.args([requests.to_string(), THREADS.to_string()]);
    let mut target = Proc::spawn("mixed", cmd, true)?;
    let ready = workload::wait_ready(&mut target, Duration::from_secs(10))?;
    let addr = workload::parse_ready(&ready)?;
    let pid = target.pid();

    let traced = match level {
        None => None,
        Some(level) => {
            let t = tracer(level);
            let before = workload::read_code(pid, addr)?;
            // The readiness line comes once every probe is attached; a traced function's
            // breakpoint is checked too, as in the other scenarios.
            let mut proc = t.start(tools, pid, json, None)?;
            if level.traces_functions {
                wait_for_probe(pid, addr, &before, &mut proc)?;
            }
            std::thread::sleep(SETTLE);
            Some((level, t, proc))
        }
    };

    let line = workload::go(&mut target, Duration::from_secs(300))?;
    let (handled, ns_per_request) = workload::parse_result(&line)?;
    let cpu_ns_per_request = workload::field(&line, "cpu_ns_per_call")?;
    if handled != THREADS * requests {
        bail!(
            "workload handled {handled} requests, asked for {}",
            THREADS * requests
        );
    }
    target.exit_cleanly()?;

    let traced = match traced {
        None => None,
        Some((level, t, proc)) => {
            let outcome = t.finish(proc, json, &expected(level, requests))?;
            let (families, lost) = families_and_losses(json)?;
            Some(Traced {
                outcome,
                families,
                lost,
            })
        }
    };
    Ok(Sample {
        ns_per_request,
        cpu_ns_per_request,
        traced,
    })
}

type Families = Vec<(String, String)>;
type Losses = Vec<(String, u64)>;

/// The report's family statuses and non-zero loss counters.
pub(super) fn families_and_losses(json: &Path) -> anyhow::Result<(Families, Losses)> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let families = report["families"]
        .as_array()
        .context("the report has no families array")?
        .iter()
        .map(|f| {
            let s = |k: &str| f[k].as_str().unwrap_or("?").to_string();
            (s("name"), s("status"))
        })
        .collect();
    let lost = report["overhead"]["lost"]
        .as_object()
        .map(|l| {
            l.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64().filter(|n| *n > 0)?)))
                .collect()
        })
        .unwrap_or_default();
    Ok((families, lost))
}

fn report(labels: &[&str], samples: &[Vec<Sample>], runs: u32, requests: u64) -> String {
    let mut s = String::new();
    let med = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
    let cpu = |x: &Sample| x.cpu_ns_per_request;
    let wall = |x: &Sample| x.ns_per_request;
    let (Some(base), Some(base_wall)) = (med(0, cpu), med(0, wall)) else {
        return s;
    };
    let _ = writeln!(
        s,
        "slowdown of the mixed workload per level: its CPU time per request (median of {runs}; \
         {THREADS} threads × {requests} requests; baseline {:.1} µs of CPU, {:.1} µs of wall \
         time per request)",
        base / 1e3,
        base_wall / 1e3
    );
    let _ = writeln!(
        s,
        "{:<13}{:>10}{:>11}{:>22}{:>7}   families attached (selected, not in this build)",
        "level", "slowdown", "promised", "vs top of the range", "wall"
    );
    for (i, label) in labels.iter().enumerate().skip(1) {
        let level = &LEVELS[i - 1];
        let (Some(m), Some(w)) = (med(i, cpu), med(i, wall)) else {
            continue;
        };
        let pct = (m - base) / base * 100.0;
        let (lo, hi) = level.promised;
        let verdict = if pct <= hi {
            format!("{:.1} points under", hi - pct)
        } else {
            format!("{:.1} points OVER", pct - hi)
        };
        let families = |status: &str| {
            let mut names: Vec<String> = Vec::new();
            for t in samples[i].iter().filter_map(|x| x.traced.as_ref()) {
                for (name, st) in &t.families {
                    if st == status && !names.contains(name) {
                        names.push(name.clone());
                    }
                }
            }
            names.join(", ")
        };
        let missing = families("not_available");
        let _ = writeln!(
            s,
            "{:<13}{:>9.1}%{:>11}{:>22}{:>6.0}%   {}{}",
            label,
            pct,
            format!("{lo:.0}–{hi:.0}%"),
            verdict,
            (w - base_wall) / base_wall * 100.0,
            families("attached"),
            if missing.is_empty() {
                String::new()
            } else {
                format!(" ({missing})")
            }
        );
    }

    // detailed = basic + functions: their difference is what the traced calls cost.
    let at = |name: &str| labels.iter().position(|l| *l == name);
    if let (Some(b), Some(d)) = (at("basic"), at("detailed"))
        && let (Some(b), Some(d)) = (med(b, cpu), med(d, cpu))
    {
        let _ = writeln!(
            s,
            "functions family: {:.2} µs of CPU per traced call (detailed − basic, over the \
             {TRACED_PER_REQUEST} traced calls of a request)",
            (d - b) / TRACED_PER_REQUEST / 1e3
        );
    }

    let _ = writeln!(
        s,
        "\nper request, µs: CPU time median (min..max); wall time median (min..max)"
    );
    for (i, label) in labels.iter().enumerate() {
        let range = |f: fn(&Sample) -> f64| {
            let v: Vec<f64> = samples[i].iter().map(|x| f(x) / 1e3).collect();
            let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            median(v).map(|m| format!("{m:.1} ({lo:.1}..{hi:.1})"))
        };
        let (Some(c), Some(w)) = (range(cpu), range(wall)) else {
            continue;
        };
        let cost: Vec<&Outcome> = samples[i]
            .iter()
            .filter_map(|x| x.traced.as_ref().map(|t| &t.outcome))
            .collect();
        let own = match (
            median(cost.iter().map(|o| o.cost.cpu).collect()),
            cost.iter().map(|o| o.cost.max_rss).max(),
        ) {
            (Some(cpu), Some(rss)) => format!("   profiler cpu {cpu:.2} s, peak rss {}", mib(rss)),
            _ => String::new(),
        };
        let _ = writeln!(s, "  {label:<13}{c:>18}  {w:>20}{own}");
    }

    let traced_counts: Vec<String> = labels
        .iter()
        .enumerate()
        .filter(|(i, _)| *i > 0 && LEVELS[i - 1].traces_functions)
        .map(|(_, l)| l.to_string())
        .collect();
    let _ = writeln!(
        s,
        "exact: {} counted {} = {} and {} = {} in every run",
        traced_counts.join(", "),
        FUNCS[0],
        THREADS * requests,
        FUNCS[1],
        THREADS * (requests / 8)
    );
    for (i, label) in labels.iter().enumerate().skip(1) {
        let mut lost: Vec<String> = Vec::new();
        for t in samples[i].iter().filter_map(|x| x.traced.as_ref()) {
            for (name, n) in &t.lost {
                lost.push(format!("{name}={n}"));
            }
        }
        if !lost.is_empty() {
            let _ = writeln!(
                s,
                "warning: {label}: the profiler lost data: {}",
                lost.join(" ")
            );
        }
    }
    s
}
