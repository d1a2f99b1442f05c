//! The C workloads: built with gcc at bench time, checked with objdump, run under the harness's
//! protocol (print `ready addr=<traced function>`, wait for a byte on stdin, run the timed loop,
//! print `calls=N ns_per_call=X`).

use std::{
    os::unix::fs::FileExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};

use super::proc::{Proc, Stream};

/// The function-call workload (see the comment at its top).
const CALLS_C: &str = include_str!("../../bench/calls.c");

/// A workload before it is built.
pub struct Workload {
    /// Short name, used by `--only` and in the tables.
    pub name: &'static str,
    /// What the variant is, in a few words.
    pub about: &'static str,
    /// C source file name and text.
    pub source: (&'static str, &'static str),
    /// gcc flags besides `-o`.
    pub cflags: &'static [&'static str],
    /// The function the tracers probe.
    pub func: &'static str,
    /// The mnemonics `func` should start with; the row measures something else otherwise.
    pub expect: &'static [&'static str],
}

/// The function-call workloads, from the prologue where probe placement matters most to those
/// where it cannot.
pub fn call_workloads() -> Vec<Workload> {
    vec![
        Workload {
            name: "cet_nonleaf",
            about: "CET build, non-leaf: endbr64 then an emulated push",
            source: ("calls.c", CALLS_C),
            cflags: &["-O2", "-fcf-protection=full"],
            func: "bench_traced",
            expect: &["endbr64", "push"],
        },
        Workload {
            name: "plain",
            about: "no CET: the function starts with an emulated push",
            source: ("calls.c", CALLS_C),
            cflags: &["-O2", "-fcf-protection=none"],
            func: "bench_traced",
            expect: &["push"],
        },
        Workload {
            name: "cet_leaf",
            about: "CET build, leaf: endbr64 then an instruction that is single-stepped too",
            source: ("calls.c", CALLS_C),
            cflags: &["-O2", "-fcf-protection=full", "-DLEAF"],
            func: "bench_traced",
            expect: &["endbr64", "lea"],
        },
    ]
}

/// A built workload.
pub struct Built {
    pub name: &'static str,
    pub about: &'static str,
    pub func: &'static str,
    pub path: PathBuf,
    /// The first instructions of `func` (Intel syntax, objdump), e.g. `["endbr64", "push rbx"]`.
    pub prologue: Vec<String>,
    /// Set when the prologue is not the expected one (another compiler, other defaults).
    pub unexpected: Option<String>,
}

impl Built {
    /// The prologue in a few words, up to the first instruction that is not `endbr64`:
    /// "endbr64; push rbx", "push rbx", "endbr64; lea".
    pub fn prologue_short(&self) -> String {
        let mut out = Vec::new();
        for insn in &self.prologue {
            let mnemonic = insn.split_whitespace().next().unwrap_or("");
            // A push names the register; other operands say nothing about the cost.
            out.push(if mnemonic == "push" {
                insn.as_str()
            } else {
                mnemonic
            });
            if mnemonic != "endbr64" {
                break;
            }
        }
        out.join("; ")
    }

    /// Whether the profiler can move its probe off a single-stepped `endbr64` onto an
    /// instruction the kernel emulates (`push reg`, `call rel32`): the case where it should be
    /// several times cheaper than a probe on the symbol address.
    pub fn placement_can_help(&self) -> bool {
        let mnemonic = |i: usize| {
            self.prologue
                .get(i)
                .and_then(|s| s.split_whitespace().next())
        };
        mnemonic(0) == Some("endbr64") && matches!(mnemonic(1), Some("push" | "call"))
    }
}

/// Compiles `w` into `dir` and disassembles the traced function.
pub fn build(w: &Workload, dir: &Path) -> anyhow::Result<Built> {
    let src = dir.join(w.source.0);
    if !src.exists() {
        std::fs::write(&src, w.source.1).with_context(|| format!("writing {}", src.display()))?;
    }
    let path = dir.join(w.name);
    let mut gcc = Command::new("gcc");
    gcc.args(w.cflags).arg("-o").arg(&path).arg(&src);
    crate::status(gcc).context("building a workload (is gcc installed?)")?;
    let prologue = disassemble(&path, w.func)?;
    let starts = prologue
        .iter()
        .map(|i| i.split_whitespace().next().unwrap_or(""));
    let unexpected = (!starts.clone().zip(w.expect).all(|(got, want)| got == *want)
        || prologue.len() < w.expect.len())
    .then(|| {
        format!(
            "expected {} to start with {}, gcc made {}",
            w.func,
            w.expect.join("; "),
            starts.take(w.expect.len()).collect::<Vec<_>>().join("; ")
        )
    });
    Ok(Built {
        name: w.name,
        about: w.about,
        func: w.func,
        path,
        prologue,
        unexpected,
    })
}

/// The instructions of `func` in `binary`, as objdump prints them (Intel syntax, no bytes).
fn disassemble(binary: &Path, func: &str) -> anyhow::Result<Vec<String>> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "intel"])
        .arg(format!("--disassemble={func}"))
        .arg(binary)
        .output()
        .context("running objdump (binutils)")?;
    if !out.status.success() {
        bail!(
            "objdump failed on {}: {}",
            binary.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let header = format!("<{func}>:");
    let insns: Vec<String> = text
        .lines()
        .skip_while(|l| !l.contains(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(":\t").map(|(_, insn)| insn))
        .map(|insn| insn.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
    if insns.is_empty() {
        bail!("objdump shows no {func} in {}", binary.display());
    }
    Ok(insns)
}

/// Waits up to `within` for a started workload's `ready ...` line, and returns it.
pub fn wait_ready(target: &mut Proc, within: Duration) -> anyhow::Result<String> {
    target.wait_line("its ready line", Instant::now() + within, |s, l| {
        s == Stream::Stdout && l.starts_with("ready ")
    })
}

/// Lets a ready workload go (a byte on its stdin) and waits up to `within` for its result line
/// (`calls=...`), which it returns.
pub fn go(target: &mut Proc, within: Duration) -> anyhow::Result<String> {
    target.send(b"g")?;
    target.wait_line("its result line", Instant::now() + within, |s, l| {
        s == Stream::Stdout && l.starts_with("calls=")
    })
}

/// Lets a ready workload go with `sampler` attached (after [`super::SETTLE`], when there is
/// one) and waits for its result line; returns the line, the timed span's wall seconds, and
/// the sampler's CPU seconds over the span (0 without one).
pub fn go_sampled(target: &mut Proc, sampler: Option<&Proc>) -> anyhow::Result<(String, f64, f64)> {
    if sampler.is_some() {
        std::thread::sleep(super::SETTLE);
    }
    let cpu = || {
        sampler
            .map(|p| super::proc::cpu_seconds(p.pid()))
            .transpose()
    };
    let before = cpu()?;
    let started = Instant::now();
    let line = go(target, Duration::from_secs(600))?;
    let span = started.elapsed().as_secs_f64();
    let after = cpu()?;
    Ok((line, span, after.unwrap_or(0.0) - before.unwrap_or(0.0)))
}

/// Parses the workload's `ready addr=0x...` line.
pub fn parse_ready(line: &str) -> anyhow::Result<u64> {
    let hex = line
        .strip_prefix("ready addr=0x")
        .with_context(|| format!("unexpected workload line {line:?}"))?;
    u64::from_str_radix(hex.trim(), 16).with_context(|| format!("bad address in {line:?}"))
}

/// Parses `calls=N ns_per_call=X`.
pub fn parse_result(line: &str) -> anyhow::Result<(u64, f64)> {
    let mut calls = None;
    let mut ns = None;
    for field in line.split_whitespace() {
        match field.split_once('=') {
            Some(("calls", v)) => calls = v.parse().ok(),
            Some(("ns_per_call", v)) => ns = v.parse().ok(),
            _ => {}
        }
    }
    match (calls, ns) {
        (Some(c), Some(n)) => Ok((c, n)),
        _ => bail!("unexpected workload result line {line:?}"),
    }
}

/// The number after `name=` in a workload's result line, e.g. `cpu_ns_per_call`.
pub fn field(line: &str, name: &str) -> anyhow::Result<f64> {
    line.split_whitespace()
        .find_map(|f| f.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
        .with_context(|| format!("no {name} in the workload's line {line:?}"))
}

/// The first bytes of the code at `addr` in process `pid`, as the process sees them: a uprobe
/// shows there as an `int3` (0xcc) once the kernel has installed it.
pub fn read_code(pid: i32, addr: u64) -> anyhow::Result<[u8; 16]> {
    let mem = std::fs::File::open(format!("/proc/{pid}/mem"))
        .with_context(|| format!("opening /proc/{pid}/mem"))?;
    let mut buf = [0u8; 16];
    mem.read_exact_at(&mut buf, addr)
        .with_context(|| format!("reading /proc/{pid}/mem at {addr:#x}"))?;
    Ok(buf)
}
