//! Stop latency against probe count: how long the profiler and bpftrace take to attach N probes
//! (entry and return of N/2 libc functions) to a running python3, and, once told to stop
//! (SIGINT), to write what they counted and to exit, leaving the target free of probes.
//!
//! Both tools get the same functions: the profiler's report names those the kernel cannot probe,
//! and bpftrace is given the rest.

use std::{
    fmt::Write as _,
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::{
    median,
    proc::{Proc, Stream},
    tracer::Tools,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "stop";

/// Probe counts measured; bpftrace (one perf event per probe) only up to [`BPFTRACE_MAX`].
const PROBES: [usize; 3] = [100, 1_000, 2_000];
const BPFTRACE_MAX: usize = 1_000;
/// How long each tool profiles before it is told to stop.
const WINDOW: Duration = Duration::from_secs(2);
/// The longest a tool may take to stop before the benchmark gives up on it.
const STOP_LIMIT: Duration = Duration::from_secs(600);

const LIBC: &str = "/lib/x86_64-linux-gnu/libc.so.6";

/// A python3 loop that calls into libc all the time (string, memory and time functions).
const PY_LOOP: &str = r#"import json, re, time, sys
print("ready", flush=True)
while True:
    json.dumps({"a": [1, 2, 3], "t": time.time()}); re.match("a+b", "aaab"); "x".join(["a", "b"])
"#;

/// One tool's times for one probe count, seconds.
#[derive(Default, Clone, Copy)]
struct Times {
    attach: f64,
    /// From SIGINT to the report or the printed counts.
    report: f64,
    /// From SIGINT to the process's exit: every probe taken down.
    exit: f64,
}

pub fn bench(tools: &Tools, dir: &Path, runs: u32) -> anyhow::Result<()> {
    let functions = libc_functions()?;
    let script = dir.join("stop-loop.py");
    std::fs::write(&script, PY_LOOP).with_context(|| format!("writing {}", script.display()))?;
    let mut rows = Vec::new();
    for probes in PROBES {
        let wanted = &functions[..(probes / 2).min(functions.len())];
        let mut profiler = Vec::new();
        let mut bpftrace = Vec::new();
        let mut probed = wanted.to_vec();
        for round in 0..runs {
            let json = dir.join(format!("stop-{probes}-{round}.json"));
            let (times, skipped) = profiler_run(tools, &script, wanted, &json)?;
            probed.retain(|f| !skipped.contains(f));
            println!(
                "[{}/{runs}] stop {probes:>5} probes  profiler: attach {:.2} s, report {:.2} s, \
                 exit {:.2} s",
                round + 1,
                times.attach,
                times.report,
                times.exit
            );
            profiler.push(times);
            if probes <= BPFTRACE_MAX
                && let Ok(bt) = &tools.bpftrace
            {
                let times = bpftrace_run(bt, &script, &probed)?;
                println!(
                    "[{}/{runs}] stop {probes:>5} probes  bpftrace: attach {:.2} s, report {:.2} \
                     s, exit {:.2} s",
                    round + 1,
                    times.attach,
                    times.report,
                    times.exit
                );
                bpftrace.push(times);
            }
        }
        rows.push((probes, profiler, bpftrace));
    }
    println!();
    print!("{}", report(&rows, runs));
    Ok(())
}

/// The functions libc exports, sorted (the same list every run).
fn libc_functions() -> anyhow::Result<Vec<String>> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only", LIBC])
        .output()
        .context("running nm (binutils)")?;
    if !out.status.success() {
        bail!("nm -D {LIBC} failed");
    }
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (_, kind, name) = (f.next()?, f.next()?, f.next()?);
            matches!(kind, "T" | "W").then(|| name.split('@').next().unwrap_or(name).to_string())
        })
        .filter(|n| !n.starts_with('_'))
        .collect();
    names.sort();
    names.dedup();
    Ok(names)
}

fn start_target(script: &Path) -> anyhow::Result<Proc> {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg(script);
    let mut target = Proc::spawn("python3", cmd, false)?;
    target.wait_line("its ready line", deadline(10), |s, l| {
        s == Stream::Stdout && l == "ready"
    })?;
    Ok(target)
}

fn deadline(secs: u64) -> Instant {
    Instant::now() + Duration::from_secs(secs)
}

/// The profiler on `functions`; its times and the functions it reported it could not probe.
fn profiler_run(
    tools: &Tools,
    script: &Path,
    functions: &[String],
    json: &Path,
) -> anyhow::Result<(Times, Vec<String>)> {
    let mut target = start_target(script)?;
    let mut cmd = Command::new(&tools.profiler);
    cmd.args(["attach", "--max-overhead", "0", "--without", "errors"]);
    cmd.args(["--max-funcs", "100000", "--json"]).arg(json);
    for f in functions {
        cmd.arg("--func").arg(format!("libc:{f}"));
    }
    cmd.arg(target.pid().to_string());
    let started = Instant::now();
    let mut proc = Proc::spawn("profiler", cmd, false)?;
    proc.wait_line("its readiness line", deadline(600), |s, l| {
        s == Stream::Stderr && l.starts_with("profiler: profiling pid")
    })?;
    let attach = started.elapsed().as_secs_f64();
    std::thread::sleep(WINDOW);
    let stop = Instant::now();
    proc.signal(libc::SIGINT);
    proc.wait_line("its report line", stop + STOP_LIMIT, |s, l| {
        s == Stream::Stderr && l.starts_with("report written")
    })?;
    let report = stop.elapsed().as_secs_f64();
    let ended = proc
        .wait_until(stop + STOP_LIMIT)?
        .context("the profiler did not exit")?;
    let exit = stop.elapsed().as_secs_f64();
    if !ended.success() {
        bail!("the profiler failed ({})", ended.describe());
    }
    target.signal(libc::SIGKILL);
    Ok((
        Times {
            attach,
            report,
            exit,
        },
        skipped(json)?,
    ))
}

/// The functions the report says were not probed.
fn skipped(json: &Path) -> anyhow::Result<Vec<String>> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)?;
    let mut names = Vec::new();
    for f in report["functions"].as_array().into_iter().flatten() {
        if f["probes"].as_u64() == Some(0)
            && let Some(name) = f["name"].as_str()
        {
            names.push(name.to_string());
        }
    }
    for s in report["functions_skipped"].as_array().into_iter().flatten() {
        if let Some(name) = s["name"].as_str() {
            names.push(name.to_string());
        }
    }
    Ok(names)
}

/// bpftrace counting the entries and returns of `functions` the same way.
fn bpftrace_run(bpftrace: &Path, script: &Path, functions: &[String]) -> anyhow::Result<Times> {
    let mut target = start_target(script)?;
    let pid = target.pid();
    let points = |kind: &str| {
        functions
            .iter()
            .map(|f| format!("{kind}:{LIBC}:{f}"))
            .collect::<Vec<_>>()
            .join(",")
    };
    let program = format!(
        "{} /pid == {pid}/ {{ @entries[probe] = count(); }} {} /pid == {pid}/ {{ @returns[probe] \
         = count(); }}",
        points("uprobe"),
        points("uretprobe")
    );
    let mut cmd = Command::new(bpftrace);
    cmd.args(["-p", &pid.to_string(), "-e", &program]);
    let started = Instant::now();
    let mut proc = Proc::spawn("bpftrace", cmd, false)?;
    proc.wait_line("its attaching line", deadline(600), |s, l| {
        s == Stream::Stdout && l.starts_with("Attaching")
    })?;
    // bpftrace prints "Attaching N probes..." before it attaches; it is attached once the
    // target's code holds the breakpoints, which the kernel shows as the [uprobes] mapping.
    while !uprobes_mapped(pid) {
        if started.elapsed() > STOP_LIMIT {
            bail!("bpftrace never attached");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    let attach = started.elapsed().as_secs_f64();
    std::thread::sleep(WINDOW);
    let stop = Instant::now();
    proc.signal(libc::SIGINT);
    proc.wait_line("its counts", stop + STOP_LIMIT, |s, l| {
        s == Stream::Stdout && l.starts_with("@")
    })?;
    let report = stop.elapsed().as_secs_f64();
    proc.wait_until(stop + STOP_LIMIT)?
        .context("bpftrace did not exit")?;
    let exit = stop.elapsed().as_secs_f64();
    target.signal(libc::SIGKILL);
    Ok(Times {
        attach,
        report,
        exit,
    })
}

fn uprobes_mapped(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/maps")).is_ok_and(|m| m.contains("[uprobes]"))
}

fn report(rows: &[(usize, Vec<Times>, Vec<Times>)], runs: u32) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "stop latency (median of {runs}; python3 calling libc, N/2 libc functions with entry and \
         return probes; SIGINT after {} s):",
        WINDOW.as_secs()
    );
    let _ = writeln!(
        s,
        "  {:>6}  {:>22}  {:>22}",
        "probes", "profiler attach/report/exit", "bpftrace attach/report/exit"
    );
    let fmt = |times: &[Times]| {
        if times.is_empty() {
            return "not measured".to_string();
        }
        let m = |f: fn(&Times) -> f64| median(times.iter().map(f).collect()).unwrap_or(f64::NAN);
        format!(
            "{:.2} / {:.2} / {:.2} s",
            m(|t| t.attach),
            m(|t| t.report),
            m(|t| t.exit)
        )
    };
    for (probes, profiler, bpftrace) in rows {
        let _ = writeln!(
            s,
            "  {probes:>6}  {:>27}  {:>27}",
            fmt(profiler),
            fmt(bpftrace)
        );
    }
    s
}
