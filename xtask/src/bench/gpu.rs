//! The gpu family's benchmark: what the CUDA allocation probes cost a program per call, with
//! `profiler attach --level memory` (and with the memory family, then the errors family, left
//! out), next to bpftrace doing the same outstanding-allocation tracking, in the same rounds.
//!
//! There is no GPU here: the workload is the gpu family's test victim (`gpu_victim loop N`: N
//! rounds of `cudaMalloc(&p, 256); cudaFree(p)` from `hot_alloc()`) on the stub runtime of the
//! tests (`libcudart.so.12`, a fake device heap behind a mutex). A call into the stub takes a
//! few ns, so what is measured is the probes' cost per call, not a real CUDA call's.

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
    tracer::{Expect, Outcome, Tools, Tracer},
    wait_for_probe, workload,
};

/// The name `--only` selects this benchmark by.
pub const NAME: &str = "gpu";

/// The gpu family's test victim, and the stub CUDA runtime it links.
const GPU_VICTIM_C: &str = include_str!("../../../tests/victims/gpu_victim.c");
const LIBCUDART_C: &str = include_str!("../../../tests/victims/cuda/libcudart_stub.c");

/// `--level memory --without memory`: no page-fault tracepoint.
const NO_MEMORY: &str = "no-memory";
/// `--level memory --without memory --without errors`: the CUDA probes alone (no syscall
/// tracepoint either), which is what the bpftrace script does.
const GPU_ONLY: &str = "gpu-only";

/// The columns, the untraced baseline first.
const LABELS: [&str; 5] = [BASELINE, PROFILER, NO_MEMORY, GPU_ONLY, BPFTRACE];

/// The probed functions the harness waits for and reports the placement of.
const FUNCS: [&str; 2] = ["cudaMalloc", "cudaFree"];

/// The table's row name.
const ROW: &str = "cuda_alloc";

/// bpftrace's outstanding-allocation tracking on `lib`: the out-parameter and the size at
/// cudaMalloc's entry by thread, the block read through the out-parameter at its return (when
/// it succeeded), deleted at cudaFree; a uretprobe on cudaFree too, as the profiler probes the
/// return of every function. The counts are checked against the loop's.
fn bpftrace_script(lib: &Path) -> String {
    let lib = lib.display();
    format!(
        "uprobe:{lib}:cudaMalloc {{ @ptr[tid] = arg0; @size[tid] = arg1; }} \
         uretprobe:{lib}:cudaMalloc /@ptr[tid]/ {{ \
         if (retval == 0) {{ @blocks[*uptr((uint64 *)@ptr[tid])] = @size[tid]; }} \
         @malloc = count(); delete(@ptr[tid]); delete(@size[tid]); }} \
         uprobe:{lib}:cudaFree {{ delete(@blocks[arg0]); @free = count(); }} \
         uretprobe:{lib}:cudaFree {{ @freed = count(); }}"
    )
}

fn tracer(label: &str, lib: &Path) -> Option<Tracer> {
    let profiler = |extra: &[&str]| Tracer::Profiler {
        // The overhead guard would detach the CUDA probes part-way: keep it off, as in the
        // other scenarios.
        args: ["--level", "memory", "--max-overhead", "0"]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect(),
    };
    match label {
        PROFILER => Some(profiler(&[])),
        NO_MEMORY => Some(profiler(&["--without", "memory"])),
        GPU_ONLY => Some(profiler(&["--without", "memory", "--without", "errors"])),
        BPFTRACE => Some(Tracer::Bpftrace {
            script: bpftrace_script(lib),
        }),
        _ => None,
    }
}

/// The built workload.
struct Built {
    victim: PathBuf,
    /// The stub runtime, as the victim maps it.
    lib: PathBuf,
    /// `FUNCS`' offsets in the library (the symbol values; its first segment loads at 0) and
    /// their first instructions.
    funcs: Vec<(&'static str, u64, Vec<String>)>,
}

/// Where the profiler put a CUDA function's entry probe (`probe_offset`, `probe_class`).
type Placement = (u64, String);

/// Builds the workload, measures the loop under every configuration `runs` times (interleaved),
/// and prints the table.
pub fn bench(tools: &Tools, dir: &Path, runs: u32, rounds: u64) -> anyhow::Result<()> {
    let built = build(dir)?;
    let skipped: Vec<Option<String>> = LABELS
        .iter()
        .map(|l| tracer(l, &built.lib).and_then(|t| t.available(tools).err().map(str::to_string)))
        .collect();
    let mut samples: Vec<Vec<f64>> = LABELS.iter().map(|_| Vec::new()).collect();
    let mut costs: Vec<Vec<Outcome>> = LABELS.iter().map(|_| Vec::new()).collect();
    let mut placements: Vec<Vec<Placement>> = Vec::new();
    for round in 0..runs as usize {
        for k in 0..LABELS.len() {
            let i = (k + round) % LABELS.len();
            if skipped[i].is_some() {
                continue;
            }
            let label = LABELS[i];
            let json = dir.join(format!("gpu-{label}-{round}.json"));
            let (ns, outcome, placed) =
                run_loop(&built, tracer(label, &built.lib), tools, &json, rounds)
                    .with_context(|| format!("measuring the CUDA loop under {label}"))?;
            super::progress((round, runs), ROW, label, ns, outcome.as_ref());
            samples[i].push(ns);
            costs[i].extend(outcome);
            placements.extend(placed);
        }
    }
    println!();
    print!(
        "{}",
        report(
            &built,
            &samples,
            &skipped,
            &costs,
            &placements,
            runs,
            rounds
        )
    );
    Ok(())
}

/// Writes the stub runtime's and the victim's sources into `dir` and builds them as the tests'
/// build script does (tests/build.rs, `cuda()`): the runtime as `dir/cuda/libcudart.so.12`, the
/// victim linked to it by full path, with an rpath to its directory.
fn build(dir: &Path) -> anyhow::Result<Built> {
    let cuda = dir.join("cuda");
    std::fs::create_dir_all(&cuda).with_context(|| format!("creating {}", cuda.display()))?;
    let src = cuda.join("libcudart_stub.c");
    std::fs::write(&src, LIBCUDART_C).with_context(|| format!("writing {}", src.display()))?;
    let lib = cuda.join("libcudart.so.12");
    let mut gcc = Command::new("gcc");
    gcc.args([
        "-O2",
        "-fcf-protection=full",
        "-fno-omit-frame-pointer",
        "-shared",
        "-fPIC",
        "-Wl,-soname,libcudart.so.12",
        "-o",
    ])
    .arg(&lib)
    .arg(&src);
    crate::status(gcc).context("building the stub CUDA runtime (is gcc installed?)")?;

    let src = dir.join("gpu_victim.c");
    std::fs::write(&src, GPU_VICTIM_C).with_context(|| format!("writing {}", src.display()))?;
    let victim = dir.join("gpu_victim");
    let mut gcc = Command::new("gcc");
    gcc.args([
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        "-fcf-protection=full",
        "-pthread",
        "-o",
    ])
    .arg(&victim)
    .arg(&src)
    .arg(&lib)
    .arg(format!("-Wl,-rpath,{}", cuda.display()))
    .arg("-ldl");
    crate::status(gcc).context("building the gpu victim")?;

    let funcs = FUNCS
        .iter()
        .map(|f| {
            let (offset, prologue) = disassemble(&lib, f)?;
            Ok((*f, offset, prologue))
        })
        .collect::<anyhow::Result<_>>()?;
    Ok(Built { victim, lib, funcs })
}

/// The offset of `func` in `lib` and its first instructions (objdump, Intel syntax).
fn disassemble(lib: &Path, func: &str) -> anyhow::Result<(u64, Vec<String>)> {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn", "-M", "intel"])
        .arg(format!("--disassemble={func}"))
        .arg(lib)
        .output()
        .context("running objdump (binutils)")?;
    if !out.status.success() {
        bail!(
            "objdump failed on {}: {}",
            lib.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let header = format!(" <{func}>:");
    let offset = text
        .lines()
        .find_map(|l| l.strip_suffix(&header))
        .and_then(|a| u64::from_str_radix(a.trim(), 16).ok())
        .with_context(|| format!("objdump shows no {func} in {}", lib.display()))?;
    let insns = text
        .lines()
        .skip_while(|l| !l.ends_with(&header))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_once(":\t").map(|(_, insn)| insn))
        .map(|insn| insn.split_whitespace().collect::<Vec<_>>().join(" "))
        .take(3)
        .collect();
    Ok((offset, insns))
}

/// One measurement: ns per CUDA call (the loop's wall time over its 2 × `rounds` calls), the
/// tracer's outcome, and the profiler's probe placements.
fn run_loop(
    built: &Built,
    tracer: Option<Tracer>,
    tools: &Tools,
    json: &Path,
    rounds: u64,
) -> anyhow::Result<(f64, Option<Outcome>, Option<Vec<Placement>>)> {
    let mut cmd = Command::new(&built.victim);
    cmd.args(["--wait", "loop", &rounds.to_string()]);
    let mut target = Proc::spawn("gpu_victim", cmd, true)?;
    target.wait_line(
        "its ready line",
        Instant::now() + Duration::from_secs(10),
        |s, l| s == Stream::Stdout && l == "ready",
    )?;
    let pid = target.pid();
    let traced = match &tracer {
        None => None,
        Some(t) => {
            let addrs = addresses(pid, built)?;
            let before = addrs
                .iter()
                .map(|a| workload::read_code(pid, *a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let mut proc = t.start(tools, pid, json, None)?;
            for (addr, before) in addrs.iter().zip(&before) {
                wait_for_probe(pid, *addr, before, &mut proc)?;
            }
            std::thread::sleep(super::SETTLE);
            Some((t, proc))
        }
    };

    // The victim does not time its loop: this times it from the byte that starts it to its
    // `loop_done` line (a pipe's and a reader thread's wake-up more, a few µs over seconds).
    // bpftrace single-steps both entries: ~40 µs a round on a VM; allow five times that.
    let budget = Duration::from_secs(60) + Duration::from_micros(rounds.saturating_mul(200));
    let began = Instant::now();
    target.send(b"g")?;
    target.wait_line("its loop_done line", Instant::now() + budget, |s, l| {
        s == Stream::Stdout && l == "loop_done"
    })?;
    let ns = began.elapsed().as_nanos() as f64 / (2 * rounds) as f64;
    target.wait_line(
        "its done line",
        Instant::now() + Duration::from_secs(10),
        |s, l| s == Stream::Stdout && l == "done",
    )?;
    target.send(b"x")?;
    target.exit_cleanly()?;

    let (outcome, placed) = match traced {
        None => (None, None),
        Some((t, proc)) => match t {
            Tracer::Profiler { .. } => {
                let outcome = t.finish(proc, json, &[])?;
                (Some(outcome), Some(check_cuda(json, built, rounds)?))
            }
            Tracer::Bpftrace { .. } => {
                let expect = ["malloc", "free", "freed"].map(|name| Expect {
                    name: name.to_string(),
                    count: rounds,
                });
                (Some(t.finish(proc, json, &expect)?), None)
            }
        },
    };
    Ok((ns, outcome, placed))
}

/// Where `FUNCS` are in process `pid`: the library's load address (its mapping at file offset
/// 0) plus their offsets. Checked against the library file's bytes.
fn addresses(pid: i32, built: &Built) -> anyhow::Result<Vec<u64>> {
    let maps_path = format!("/proc/{pid}/maps");
    let maps =
        std::fs::read_to_string(&maps_path).with_context(|| format!("reading {maps_path}"))?;
    let lib = std::fs::canonicalize(&built.lib)
        .with_context(|| format!("resolving {}", built.lib.display()))?;
    let base = maps
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.len() >= 6 && Path::new(f[5]) == lib && u64::from_str_radix(f[2], 16) == Ok(0))
                .then(|| u64::from_str_radix(f[0].split('-').next()?, 16).ok())?
        })
        .with_context(|| format!("pid {pid} does not map {}", lib.display()))?;
    let file = std::fs::read(&lib).with_context(|| format!("reading {}", lib.display()))?;
    built
        .funcs
        .iter()
        .map(|(name, offset, _)| {
            let addr = base + offset;
            let code = workload::read_code(pid, addr)?;
            let on_disk = file.get(*offset as usize..*offset as usize + code.len());
            if on_disk != Some(&code[..]) {
                bail!(
                    "the code at {addr:#x} in pid {pid} is not {name}'s ({} maps its text \
                     elsewhere)",
                    lib.display()
                );
            }
            Ok(addr)
        })
        .collect()
}

/// The profiler must have counted every call of the loop, tracked every block, and lost
/// nothing; returns its placement of `FUNCS`' entry probes.
fn check_cuda(json: &Path, built: &Built, rounds: u64) -> anyhow::Result<Vec<Placement>> {
    let text = std::fs::read_to_string(json)
        .with_context(|| format!("reading the profiler report {}", json.display()))?;
    let report: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", json.display()))?;
    let cuda = &report["gpu"]["cuda"];
    let lib = &cuda["libraries"][0];
    let lib_path = std::fs::canonicalize(&built.lib).unwrap_or_else(|_| built.lib.clone());
    if lib["path"].as_str().map(Path::new) != Some(lib_path.as_path()) {
        bail!(
            "the profiler report's first CUDA library is {}, not {}",
            lib["path"],
            lib_path.display()
        );
    }
    let mut placed = Vec::new();
    for name in FUNCS {
        let f = lib["functions"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .with_context(|| format!("the profiler report has no CUDA function {name}"))?;
        let got = (f["calls"].as_u64(), f["errors"].as_u64());
        if got != (Some(rounds), Some(0)) {
            bail!(
                "the profiler counted {got:?} calls and errors of {name}, expected {rounds} calls \
                 and no error"
            );
        }
        placed.push((
            f["probe_offset"].as_u64().unwrap_or(0),
            f["probe_class"].as_str().unwrap_or("?").to_string(),
        ));
    }
    let a = &cuda["allocations"];
    let got = (
        a["allocated"]["count"].as_u64(),
        a["freed"]["count"].as_u64(),
        a["outstanding"]["count"].as_u64(),
    );
    if got != (Some(rounds), Some(rounds), Some(0)) {
        bail!(
            "the profiler counted {got:?} blocks allocated, freed and outstanding, expected \
             {rounds}, {rounds} and 0"
        );
    }
    let lost = &report["overhead"]["lost"];
    if lost.as_object().is_some_and(|l| !l.is_empty()) {
        bail!("the profiler lost data: {lost}");
    }
    Ok(placed)
}

fn report(
    built: &Built,
    samples: &[Vec<f64>],
    skipped: &[Option<String>],
    costs: &[Vec<Outcome>],
    placements: &[Vec<Placement>],
    runs: u32,
    rounds: u64,
) -> String {
    let mut s = String::new();
    let index = |l: &str| LABELS.iter().position(|x| *x == l);
    let med = |l: &str| median(samples[index(l)?].clone());
    let slow = |l: &str| Some(med(l)? - med(BASELINE)?);
    let _ = writeln!(
        s,
        "CUDA allocation probes on the stub libcudart.so.12 (no GPU): slowdown per call, one \
         cudaMalloc or cudaFree (median of {runs} runs of {rounds} cudaMalloc+cudaFree rounds)"
    );
    let _ = writeln!(
        s,
        "profiler: --level memory; no-memory: --without memory (no page-fault tracepoint); \
         gpu-only: --without memory --without errors (no syscall tracepoint either, as the \
         bpftrace script)"
    );
    let _ = writeln!(
        s,
        "{:<12}{:>10}{:>13}{:>13}{:>13}{:>13}{:>11}{:>11}{:>11}",
        "workload",
        "baseline",
        PROFILER,
        NO_MEMORY,
        GPU_ONLY,
        BPFTRACE,
        "p/bpft",
        "nm/bpft",
        "g/bpft"
    );
    let cell = |l: &str| match (slow(l), index(l)) {
        (Some(ns), _) => format!("+{}", duration(ns)),
        (None, Some(i)) if skipped[i].is_some() => "unavailable".into(),
        _ => "-".into(),
    };
    let ratio = |l: &str| match (slow(l), slow(BPFTRACE)) {
        (Some(p), Some(b)) if b > 0.0 => format!("{:.2}×", p / b),
        _ => "-".into(),
    };
    let _ = writeln!(
        s,
        "{:<12}{:>10}{:>13}{:>13}{:>13}{:>13}{:>11}{:>11}{:>11}",
        ROW,
        med(BASELINE).map_or("-".into(), duration),
        cell(PROFILER),
        cell(NO_MEMORY),
        cell(GPU_ONLY),
        cell(BPFTRACE),
        ratio(PROFILER),
        ratio(NO_MEMORY),
        ratio(GPU_ONLY)
    );
    for why in skipped.iter().flatten() {
        let _ = writeln!(s, "{why}");
    }
    let spread = |l: &str| {
        let v = &samples[index(l)?];
        let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(format!("{l} {:.0} ({lo:.0}..{hi:.0})", median(v.clone())?))
    };
    let _ = writeln!(
        s,
        "per-call time, ns: median (min..max): {}",
        LABELS
            .iter()
            .filter_map(|l| spread(l))
            .collect::<Vec<_>>()
            .join("; ")
    );
    let _ = writeln!(
        s,
        "exact: every profiler run counted all {rounds} calls of cudaMalloc and of cudaFree \
         (gpu.cuda.libraries[0].functions[].calls), {rounds} blocks allocated and freed, nothing \
         lost; bpftrace's @malloc, @free and @freed were {rounds} in every run"
    );
    for (j, (name, _, prologue)) in built.funcs.iter().enumerate() {
        let first = placements.first().map(|p| &p[j]);
        let placed = match first {
            Some((offset, class)) => format!(
                "the profiler's entry probe at +{offset} ({class}){}",
                if placements.iter().all(|p| Some(&p[j]) == first) {
                    ""
                } else {
                    " [differs between runs]"
                }
            ),
            None => "no profiler run".into(),
        };
        let _ = writeln!(
            s,
            "probes: {name} = {}; {placed}; bpftrace's at +0",
            prologue.join("; ")
        );
    }
    for l in [PROFILER, NO_MEMORY, GPU_ONLY, BPFTRACE] {
        let Some(i) = index(l) else { continue };
        if let (Some(cpu), Some(rss)) = (
            median(costs[i].iter().map(|o| o.cost.cpu).collect()),
            costs[i].iter().map(|o| o.cost.max_rss).max(),
        ) {
            let _ = writeln!(s, "{l} per run: cpu {cpu:.2} s, peak rss {}", mib(rss));
        }
    }
    s
}
