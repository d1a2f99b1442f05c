//! The python family's probes, priced: what a raise costs a CPython program under the exception
//! probe (`--level basic`), and what an allocation and its free cost under pymalloc's probes
//! (`--level memory`), against the same program unprofiled, in the same interleaved rounds.
//! The workload (`xtask/bench/python_probes.py`) does one such operation a unit; the price is
//! the extra CPU time per unit. The cost model's estimates are printed beside them.

use std::{fmt::Write as _, path::Path, process::Command, time::Duration};

use anyhow::{Context as _, bail};

use super::med;
use crate::bench::{
    proc::{self, Proc},
    tracer::{Tools, Tracer},
    workload,
};

const WORKLOAD: &str = include_str!("../../../bench/python_probes.py");

/// An operation priced: the workload's mode, its units a run, the level that probes it.
struct Operation {
    mode: &'static str,
    units: u64,
    level: &'static str,
    what: &'static str,
}

const OPERATIONS: [Operation; 2] = [
    Operation {
        mode: "raise",
        units: 300_000,
        level: "basic",
        what: "a raise (KeyError raised and caught)",
    },
    Operation {
        mode: "alloc",
        units: 100_000,
        level: "memory",
        what: "an allocation and its free (object())",
    },
];

/// The python family's estimates beyond the probe hits (profiler-user's `RAISE_NS`, `WALK_NS`,
/// `FRAME_NS`), ns.
const PROGRAM_NS: f64 = 200.0;
const WALK_NS: f64 = 150.0;
const FRAME_NS: f64 = 120.0;

/// What the profiler's cost model prices one operation at, from its report: each probe hit at
/// its instruction class's calibrated price, an allocation's return probe, the walk and its
/// frames at their estimates.
fn model_ns(json: &Path, mode: &str) -> anyhow::Result<f64> {
    let text =
        std::fs::read_to_string(json).with_context(|| format!("reading {}", json.display()))?;
    let r: serde_json::Value = serde_json::from_str(&text)?;
    let cm = &r["overhead"]["cost_model"];
    let price = |field: &str| cm[field].as_f64().unwrap_or(0.0);
    let entry = |probe: &serde_json::Value| {
        if probe["cost_class"] == "emulated" {
            price("emulated_entry_ns")
        } else {
            price("single_stepped_entry_ns")
        }
    };
    let py = &r["python"];
    let walks = &py["walks"];
    let frames =
        walks["frames"].as_f64().unwrap_or(0.0) / walks["stacks"].as_f64().unwrap_or(1.0).max(1.0);
    let walk = PROGRAM_NS + WALK_NS + frames * FRAME_NS;
    Ok(if mode == "raise" {
        entry(&py["interpreter"]["raise_probe"]) + walk
    } else {
        let probes = &py["allocations"]["probes"];
        let by = |name: &str| {
            probes
                .as_array()
                .into_iter()
                .flatten()
                .find(|p| p["function"] == name)
                .map_or(0.0, entry)
        };
        // The return probe on a single-stepped entry as the family prices it: another step.
        let returned = if by("PyObject_Malloc") > price("emulated_entry_ns") {
            price("single_stepped_entry_ns")
        } else {
            price("return_ns")
        };
        by("PyObject_Malloc") + returned + walk + by("PyObject_Free")
    })
}

/// Runs the workload in `mode` once, profiled at `level` or not; its CPU time per unit, ns.
fn run(
    script: &Path,
    op: &Operation,
    level: Option<&str>,
    tools: &Tools,
    json: &Path,
) -> anyhow::Result<f64> {
    let mut cmd = Command::new("python3");
    cmd.arg(script).arg(op.mode).arg(op.units.to_string());
    proc::pin(&mut cmd, proc::Side::Workload);
    let mut target = Proc::spawn("workload", cmd, true)?;
    workload::wait_ready(&mut target, Duration::from_secs(30))?;
    let tracer = level.map(|l| Tracer::Profiler {
        args: ["--level", l, "--max-overhead", "0"]
            .map(String::from)
            .into(),
    });
    let attached = match &tracer {
        Some(t) => Some(t.start(tools, target.pid(), json, Some(proc::Side::Tracer))?),
        None => None,
    };
    let (line, _, _) = workload::go_sampled(&mut target, attached.as_ref())?;
    if workload::field(&line, "calls")? as u64 != op.units {
        bail!("the workload made another number of units: {line}");
    }
    target.exit_cleanly()?;
    if let (Some(t), Some(p)) = (tracer, attached) {
        t.finish(p, json, &[])?;
    }
    workload::field(&line, "cpu_ns_per_call")
}

/// Measures each operation `runs` times, unprofiled and profiled by turns, and prints the
/// price of one.
pub fn bench(tools: &Tools, dir: &Path, runs: u32) -> anyhow::Result<String> {
    let script = dir.join("python_probes.py");
    std::fs::write(&script, WORKLOAD).with_context(|| format!("writing {}", script.display()))?;
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<44} {:>12} {:>12} {:>12} {:>12}",
        "python probes: extra CPU per", "baseline ns", "profiled ns", "price ns", "model ns"
    );
    for op in &OPERATIONS {
        let (mut base, mut probed, mut model) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..runs {
            let json = dir.join(format!("python-{}-{round}.json", op.mode));
            // Interleaved, the first of each pair by turns.
            let order = if round % 2 == 0 {
                [None, Some(op.level)]
            } else {
                [Some(op.level), None]
            };
            for level in order {
                let ns = run(&script, op, level, tools, &json)
                    .with_context(|| format!("pricing {} (level {level:?})", op.what))?;
                println!(
                    "[{}/{runs}] python {:<5} {:<7} {ns:>9.1} ns cpu/unit",
                    round + 1,
                    op.mode,
                    level.unwrap_or("unprofiled"),
                );
                if level.is_some() {
                    probed.push(ns);
                    model.push(model_ns(&json, op.mode)?);
                } else {
                    base.push(ns);
                }
            }
        }
        let (b, p) = (med(base), med(probed));
        let _ = writeln!(
            out,
            "{:<44} {b:>12.0} {p:>12.0} {:>12.0} {:>12.0}",
            format!("{} (--level {})", op.what, op.level),
            p - b,
            med(model)
        );
    }
    let _ = writeln!(
        out,
        "(medians of the runs; price: profiled less baseline, the probes' cost to the program \
         per operation; model: what the profiler's cost model priced it at, from its report: \
         each probe hit at its instruction class's calibrated price, and the walk)"
    );
    Ok(out)
}
