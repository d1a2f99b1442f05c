//! Estimated against measured: for three workloads whose traced calls range from most of the
//! work to a small part of it, the slowdown the profiler's report estimates
//! (`overhead.estimated_slowdown_percent`, `dominated`, `estimated_cost`) next to the slowdown
//! measured by running the workload's timed section with and without the profiler attached.

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use anyhow::Context as _;

use super::{
    SETTLE, median,
    proc::Proc,
    tracer::{Tools, Tracer},
    workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "estimate";

/// A loop of `map(f, range(n))`: the interpreter enters `_PyEval_EvalFrameDefault` from C for
/// every call of `f` (Python-to-Python calls would stay in one evaluation loop).
const PY_LOOP: &str = r#"import sys, time
def f(n):
    return n + 1
n = int(sys.argv[1])
print("ready addr=0x0", flush=True)
sys.stdin.read(1)
c0 = time.process_time(); t0 = time.perf_counter()
s = 0
for x in map(f, range(n)):
    s += x
c = time.process_time() - c0; w = time.perf_counter() - t0
print(f"calls={n} ns_per_call={w*1e9/n:.3f} cpu_ns_per_call={c*1e9/n:.3f}", flush=True)
"#;

/// One workload of the comparison.
pub struct Case {
    pub name: &'static str,
    pub about: String,
    pub program: PathBuf,
    pub args: Vec<String>,
    /// The profiler's arguments (besides `attach PID --json`).
    pub profiler: Vec<String>,
}

impl Case {
    /// The C loop of the call-overhead table (`plain`): `calls` calls of `bench_traced`.
    pub fn c_loop(w: &workload::Built, calls: u64) -> Case {
        Case {
            name: "c_loop",
            about: format!("{calls} calls of {} ({})", w.func, w.prologue_short()),
            program: w.path.clone(),
            args: vec![calls.to_string()],
            profiler: profiler_args(&[w.func]),
        }
    }

    /// python3 calling a Python function through `map` `calls` times.
    pub fn python(dir: &Path, calls: u64) -> anyhow::Result<Case> {
        let script = dir.join("loop.py");
        std::fs::write(&script, PY_LOOP)
            .with_context(|| format!("writing {}", script.display()))?;
        let python = ["/usr/bin/python3", "/usr/local/bin/python3"]
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .context("no python3 in /usr/bin or /usr/local/bin")?;
        Ok(Case {
            name: "python",
            about: format!("{} calls of a Python function through map()", calls),
            program: python,
            args: vec![script.display().to_string(), calls.to_string()],
            profiler: profiler_args(&["_PyEval_EvalFrameDefault"]),
        })
    }

    /// The level table's workload, traced as its `detailed` row is.
    pub fn levels(exe: &Path, requests: u64, threads: u64, funcs: &[&str]) -> Case {
        Case {
            name: "levels",
            about: format!("the level table's workload, {threads} threads × {requests} requests"),
            program: exe.to_path_buf(),
            args: vec![requests.to_string(), threads.to_string()],
            profiler: profiler_args(funcs),
        }
    }
}

fn profiler_args(funcs: &[&str]) -> Vec<String> {
    let mut args: Vec<String> = ["--level", "detailed", "--max-overhead", "0"]
        .map(String::from)
        .to_vec();
    for f in funcs {
        args.extend(["--func".to_string(), f.to_string()]);
    }
    args
}

/// One run: the CPU time of the timed section, ns, where the workload reports it, else of the
/// whole process; and for a traced run what the report estimated.
struct Sample {
    ns: f64,
    estimate: Option<Estimate>,
}

struct Estimate {
    cost: f64,
    percent: f64,
    dominated: bool,
    share: f64,
}

/// Measures every case `runs` times untraced and traced (interleaved), and prints the table.
pub fn bench(cases: &[Case], tools: &Tools, dir: &Path, runs: u32) -> anyhow::Result<()> {
    let mut samples: Vec<[Vec<Sample>; 2]> = cases.iter().map(|_| [vec![], vec![]]).collect();
    for round in 0..runs as usize {
        for (c, case) in cases.iter().enumerate() {
            for k in 0..2 {
                let traced = (k + round) % 2 == 1;
                let json = dir.join(format!("estimate-{}-{round}.json", case.name));
                let sample = measure(case, traced, tools, &json)
                    .with_context(|| format!("measuring {} (traced: {traced})", case.name))?;
                println!(
                    "[{}/{runs}] {:<8} {:<9} {:>12.3} ms",
                    round + 1,
                    case.name,
                    if traced { "profiler" } else { "baseline" },
                    sample.ns / 1e6
                );
                samples[c][usize::from(traced)].push(sample);
            }
        }
    }
    println!();
    print!("{}", report(cases, &samples, runs));
    Ok(())
}

fn measure(case: &Case, traced: bool, tools: &Tools, json: &Path) -> anyhow::Result<Sample> {
    let mut cmd = Command::new(&case.program);
    cmd.args(&case.args);
    super::proc::pin(&mut cmd, super::proc::Side::Workload);
    let mut target = Proc::spawn(case.name, cmd, true)?;
    workload::wait_ready(&mut target, Duration::from_secs(10))?;
    let tracer = Tracer::Profiler {
        args: case.profiler.clone(),
    };
    let proc = if traced {
        // Its readiness line is printed once every probe is attached.
        let proc = tracer.start(tools, target.pid(), json, Some(super::proc::Side::Tracer))?;
        std::thread::sleep(SETTLE);
        Some(proc)
    } else {
        None
    };
    let line = workload::go(&mut target, Duration::from_secs(600))?;
    let (calls, _) = workload::parse_result(&line)?;
    let cpu_ns = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("cpu_ns_per_call=")?.parse::<f64>().ok());
    let ended = target.exit_cleanly()?;
    let estimate = match proc {
        None => None,
        Some(proc) => {
            tracer.finish(proc, json, &[])?;
            Some(read_estimate(json)?)
        }
    };
    Ok(Sample {
        // Without its own CPU figure: the whole process's (start-up included), from wait4.
        ns: cpu_ns.map_or(ended.cpu * 1e9, |ns| ns * calls as f64),
        estimate,
    })
}

fn read_estimate(json: &Path) -> anyhow::Result<Estimate> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let o = &report["overhead"];
    let f = |k: &str| o[k].as_f64().with_context(|| format!("no overhead.{k}"));
    Ok(Estimate {
        cost: f("estimated_cost")?,
        percent: f("estimated_slowdown_percent")?,
        share: f("probe_share_percent")?,
        dominated: o["dominated"].as_bool().context("no overhead.dominated")?,
    })
}

fn report(cases: &[Case], samples: &[[Vec<Sample>; 2]], runs: u32) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "estimated against measured slowdown (median of {runs}; profiler attach --level detailed \
         --max-overhead 0 --func ...)"
    );
    let _ = writeln!(
        s,
        "{:<8}{:>12}{:>12}{:>11}{:>24}{:>9}{:>12}{:>12}{:>8}",
        "workload",
        "baseline",
        "traced",
        "measured",
        "estimated",
        "share",
        "added",
        "est. cost",
        "ratio"
    );
    for (case, [base, traced]) in cases.iter().zip(samples) {
        let times = |v: &[Sample]| median(v.iter().map(|x| x.ns).collect());
        let (Some(b), Some(t)) = (times(base), times(traced)) else {
            continue;
        };
        let est = |f: fn(&Estimate) -> f64| {
            median(
                traced
                    .iter()
                    .filter_map(|x| x.estimate.as_ref().map(f))
                    .collect(),
            )
        };
        let (Some(cost), Some(pct), Some(share)) =
            (est(|e| e.cost), est(|e| e.percent), est(|e| e.share))
        else {
            continue;
        };
        let dominated = traced
            .iter()
            .filter(|x| x.estimate.as_ref().is_some_and(|e| e.dominated))
            .count();
        let estimated = if dominated * 2 > traced.len() {
            "dominated (≥10×)".to_string()
        } else {
            format!("{pct:.1}% ({:.2}×)", 1.0 + pct / 100.0)
        };
        let added = (t - b) * 1e-9;
        let _ = writeln!(
            s,
            "{:<8}{:>12}{:>12}{:>11}{:>24}{:>8.1}%{:>10.3} s{:>10.3} s{:>7.2}×",
            case.name,
            format!("{:.1} ms", b / 1e6),
            format!("{:.1} ms", t / 1e6),
            format!("{:.2}×", t / b),
            estimated,
            share,
            added,
            cost,
            cost / added
        );
        let _ = writeln!(s, "  {}: {}", case.name, case.about);
    }
    let _ = writeln!(
        s,
        "measured: CPU time, traced over untraced: of the timed section (python, levels), of the \
         whole process from wait4 (c_loop: its start-up is in the baseline); added: traced − untraced; est. cost: the report's estimated_cost; ratio: \
         est. cost / added"
    );
    s
}
