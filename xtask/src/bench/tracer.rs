//! The tracers the benchmark runs against a workload: the profiler and bpftrace. Each is
//! started on the workload's pid, waited for until its probes are attached, stopped, and checked
//! (exact counts) afterwards.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::proc::{Ended, Proc, Stream};

/// Where the tracers are; bpftrace may be missing (then the reason).
pub struct Tools {
    pub profiler: PathBuf,
    pub bpftrace: Result<PathBuf, String>,
}

/// How a measurement traces the workload.
#[derive(Clone)]
pub enum Tracer {
    /// `profiler attach <pid> <args> --json <tmp>`.
    Profiler { args: Vec<String> },
    /// `bpftrace -p <pid> -e <script>`.
    Bpftrace { script: String },
}

/// A count the tracer must report exactly: for the profiler, `total_calls` of the function
/// named `name`; for bpftrace, the value of map `@name`.
#[derive(Clone)]
pub struct Expect {
    pub name: String,
    pub count: u64,
}

/// Where the profiler put a function's entry probe (its report's `functions[].probe`).
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    pub offset: u64,
    pub instruction: String,
    pub class: String,
    pub reason: String,
}

/// What a traced run tells about the tracer.
pub struct Outcome {
    /// The tracer process's CPU time and peak RSS.
    pub cost: Ended,
    /// The expected counts, as the tracer reported them.
    pub counts: Vec<(String, u64)>,
    /// The profiler's probe placement for each traced function, by name.
    pub placements: Vec<(String, Placement)>,
    /// Everything the tracer printed.
    pub lines: Vec<(Stream, String)>,
}

/// The readiness line of the profiler (stderr), printed once its probes are attached.
const PROFILER_READY: &str = "profiler: profiling pid";

impl Tracer {
    pub fn name(&self) -> &'static str {
        match self {
            Tracer::Profiler { .. } => "profiler",
            Tracer::Bpftrace { .. } => "bpftrace",
        }
    }

    /// Whether this tracer can run here.
    pub fn available<'a>(&self, tools: &'a Tools) -> Result<(), &'a str> {
        match self {
            Tracer::Profiler { .. } => Ok(()),
            Tracer::Bpftrace { .. } => tools.bpftrace.as_ref().map(|_| ()).map_err(|e| &e[..]),
        }
    }

    /// Starts the tracer on `pid` and returns once it says its probes are attached.
    pub fn start(
        &self,
        tools: &Tools,
        pid: i32,
        json: &Path,
        pin: Option<super::proc::Side>,
    ) -> anyhow::Result<Proc> {
        self.start_with(tools, pid, json, pin, &[])
    }

    /// [`Tracer::start`], with variables `env` added to the tracer's environment.
    pub fn start_with(
        &self,
        tools: &Tools,
        pid: i32,
        json: &Path,
        pin: Option<super::proc::Side>,
        env: &[(&str, &str)],
    ) -> anyhow::Result<Proc> {
        let mut cmd;
        match self {
            Tracer::Profiler { args } => {
                cmd = Command::new(&tools.profiler);
                cmd.arg("attach").arg(pid.to_string()).args(args);
                cmd.arg("--json").arg(json);
            }
            Tracer::Bpftrace { script } => {
                let path = tools
                    .bpftrace
                    .as_ref()
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
                cmd = Command::new(path);
                cmd.arg("-p").arg(pid.to_string()).arg("-e").arg(script);
            }
        }
        cmd.envs(env.iter().copied());
        if let Some(side) = pin {
            super::proc::pin(&mut cmd, side);
        }
        let mut proc = Proc::spawn(self.name(), cmd, false)?;
        // bpftrace compiles its script with LLVM first: allow for a slow first start.
        let deadline = Instant::now() + Duration::from_secs(60);
        match self {
            Tracer::Profiler { .. } => {
                proc.wait_line("its readiness line", deadline, |s, l| {
                    s == Stream::Stderr && l.starts_with(PROFILER_READY)
                })?;
            }
            Tracer::Bpftrace { .. } => {
                // Printed just before it attaches: the caller also waits for the breakpoint.
                proc.wait_line("\"Attaching N probes...\"", deadline, |s, l| {
                    s == Stream::Stdout && l.starts_with("Attaching ")
                })?;
            }
        }
        Ok(proc)
    }

    /// Waits for the tracer to end after the workload exited (both tracers stop by themselves
    /// when their target exits), then checks what it reported.
    pub fn finish(
        &self,
        mut proc: Proc,
        json: &Path,
        expect: &[Expect],
    ) -> anyhow::Result<Outcome> {
        let cost = proc.finish_ok(
            Duration::from_secs(20),
            libc::SIGINT,
            Duration::from_secs(20),
            Duration::from_secs(2),
        )?;
        let (counts, placements) = match self {
            Tracer::Profiler { .. } => profiler_report(json, expect)?,
            Tracer::Bpftrace { .. } => (bpftrace_maps(&proc, expect), Vec::new()),
        };
        for (e, (_, got)) in expect.iter().zip(&counts) {
            if *got != e.count {
                bail!(
                    "{} counted {got} for {}, expected exactly {}; its output:\n{}",
                    proc.name,
                    e.name,
                    e.count,
                    proc.output()
                );
            }
        }
        Ok(Outcome {
            cost,
            counts,
            placements,
            lines: std::mem::take(&mut proc.lines),
        })
    }
}

type Counts = Vec<(String, u64)>;

/// The expected functions' `total_calls` and every function's probe placement, from the
/// profiler's JSON report.
fn profiler_report(
    json: &Path,
    expect: &[Expect],
) -> anyhow::Result<(Counts, Vec<(String, Placement)>)> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value = serde_json::from_str(&text)
        .with_context(|| format!("parsing the profiler report {}", json.display()))?;
    let functions = report["functions"]
        .as_array()
        .context("profiler report has no functions array")?;
    let name_of = |f: &serde_json::Value| f["function_name"].as_str().unwrap_or("").to_string();
    let mut counts = Vec::new();
    for e in expect {
        let f = functions
            .iter()
            .find(|f| name_of(f) == e.name)
            .with_context(|| format!("profiler report has no function {}", e.name))?;
        let calls = f["total_calls"]
            .as_u64()
            .context("total_calls is not a number")?;
        counts.push((e.name.clone(), calls));
    }
    let placements = functions
        .iter()
        .map(|f| {
            let p = &f["probe"];
            let s = |k: &str| p[k].as_str().unwrap_or("?").to_string();
            (
                name_of(f),
                Placement {
                    offset: p["offset"].as_u64().unwrap_or(0),
                    instruction: s("instruction"),
                    class: s("class"),
                    reason: s("reason"),
                },
            )
        })
        .collect();
    Ok((counts, placements))
}

/// The expected maps' values from bpftrace's exit output (`@name: value`; a map never
/// updated is not printed, so it counts 0).
fn bpftrace_maps(proc: &Proc, expect: &[Expect]) -> Counts {
    expect
        .iter()
        .map(|e| {
            let prefix = format!("@{}: ", e.name);
            let value = proc
                .lines
                .iter()
                .filter(|(s, _)| *s == Stream::Stdout)
                .find_map(|(_, l)| l.strip_prefix(&prefix)?.trim().parse().ok())
                .unwrap_or(0);
            (e.name.clone(), value)
        })
        .collect()
}

/// bpftrace from PATH; if missing, installed from the system packages (see [`ensure_tool`]).
/// Err(reason) when it cannot be had.
pub fn ensure_bpftrace() -> Result<PathBuf, String> {
    ensure_tool("bpftrace", "bpftrace")
}

/// `binary` from PATH (or /usr/sbin, /usr/bin); if missing, `apt-get install -y package`, and
/// `apt-get update` first only when that install fails (the lists are usually fresh enough, and
/// an update is slow). Err(reason) when it cannot be had: the caller shows its column as
/// unavailable, with the reason, rather than failing the whole benchmark for one anchor.
pub fn ensure_tool(binary: &str, package: &str) -> Result<PathBuf, String> {
    if let Some(p) = find_in_path(binary) {
        return Ok(p);
    }
    if find_in_path("apt-get").is_none() {
        return Err(format!(
            "not installed, and no apt-get to install {package}"
        ));
    }
    eprintln!("bench: {binary} not found; installing {package} with apt-get");
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(std::process::Stdio::null());
        crate::status(cmd)
    };
    let install = ["install", "-y", "-q", package];
    if let Err(first) = apt(&install) {
        eprintln!("bench: {first:#}; updating the package lists and retrying");
        if let Err(e) = apt(&["update", "-q"]).and_then(|()| apt(&install)) {
            return Err(format!("install of {package} failed: {e:#}"));
        }
    }
    find_in_path(binary).ok_or_else(|| format!("{package} installed, but not on PATH"))
}

fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/usr/bin")])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// `bpftrace --version`, for the machine description.
pub fn bpftrace_version(path: &Path) -> String {
    Command::new(path)
        .arg("--version")
        .output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "bpftrace (version unknown)".into())
}
