//! Measures what a probe hit costs on the running machine, for the overhead estimate in every
//! report: a short self-test on a private child process, with the profiler's own programs
//! attached to functions whose first instruction the kernel emulates (`push`) and one it must
//! single-step (`lea`), timed against an identical unprobed function.
//!
//! What a hit costs the target is more than the probe's own run: the return goes through the
//! uretprobe trampoline and a syscall, and the code after a trap runs on caches and branch
//! predictors the kernel has disturbed. So each function is first called past the calls the probes
//! always time (the steady state is what a hot function gets), every figure is the median of
//! several batches of the thread's CPU time (not the fastest: the estimate is of typical calls),
//! and an entry-and-return pair is also timed between calls of a function that walks 32 KiB of
//! memory and a chain of nested calls, against the same loop unprobed: what that loop loses beyond
//! the pair's cost in a tight loop is the cold-cache cost, added half to each hit. The kernel's own
//! measurement of the probed calls gives the part of a call's own probes that its measured time
//! includes.
//!
//! The result is cached per boot and kernel in /run, so it is measured once.

use std::{
    fs,
    path::{Path, PathBuf},
};

use anyhow::{Context as _, bail};

use profiler_common::functions::{TIME_EVERY_DEFAULT, TIME_EVERY_MASK_GLOBAL, maps};

use crate::{
    bpf::{self, LoadOptions},
    families::functions::kernel::{self as functions, Site},
    outfile,
    report::CostModel,
    symbols,
    tracee::spawn::spawn_gated,
};

// Five functions with fixed prologues: the compiler decides nothing about them.
std::arch::global_asm!(
    ".pushsection .text.profiler_calibration,\"ax\",@progbits",
    ".globl profiler_calib_reference",
    ".type profiler_calib_reference,@function",
    "profiler_calib_reference:",
    "push rbp",
    "pop rbp",
    "ret",
    ".size profiler_calib_reference, .-profiler_calib_reference",
    ".globl profiler_calib_emulated",
    ".type profiler_calib_emulated,@function",
    "profiler_calib_emulated:",
    "push rbp",
    "pop rbp",
    "ret",
    ".size profiler_calib_emulated, .-profiler_calib_emulated",
    ".globl profiler_calib_stepped",
    ".type profiler_calib_stepped,@function",
    "profiler_calib_stepped:",
    "lea rax, [rdi + 1]",
    "ret",
    ".size profiler_calib_stepped, .-profiler_calib_stepped",
    ".globl profiler_calib_returning",
    ".type profiler_calib_returning,@function",
    "profiler_calib_returning:",
    "push rbp",
    "pop rbp",
    "ret",
    ".size profiler_calib_returning, .-profiler_calib_returning",
    ".globl profiler_calib_cold",
    ".type profiler_calib_cold,@function",
    "profiler_calib_cold:",
    "push rbp",
    "pop rbp",
    "ret",
    ".size profiler_calib_cold, .-profiler_calib_cold",
    ".popsection",
);

unsafe extern "C" {
    fn profiler_calib_reference();
    fn profiler_calib_emulated();
    fn profiler_calib_stepped();
    fn profiler_calib_returning();
    fn profiler_calib_cold();
}

/// Calls per timed batch, and batches per function (the median batch counts).
const BATCH: u32 = 200;
const ROUNDS: usize = 9;
/// Calls before the timed batches: past the calls of a function the probes always time.
const WARM_UP: u64 = profiler_common::functions::TIME_ALWAYS + 100;

/// Bumped whenever what the model holds or how it is measured changes: a cached result of
/// another version is measured again.
const MODEL_VERSION: u32 = 2;

/// The calling thread's CPU time, ns: what the probes cost is CPU time of the thread they
/// run in, and time the thread spends preempted is not (the machine may be busy).
fn thread_cpu_ns() -> f64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write to.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as f64 * 1e9 + ts.tv_nsec as f64
}

/// The median CPU ns per call of `BATCH` calls of `f`, over `ROUNDS` batches, after a warm-up.
fn time_calls(mut f: impl FnMut()) -> f64 {
    for _ in 0..WARM_UP {
        f();
    }
    let mut batches: Vec<f64> = (0..ROUNDS)
        .map(|_| {
            let start = thread_cpu_ns();
            for _ in 0..BATCH {
                f();
            }
            (thread_cpu_ns() - start) / f64::from(BATCH)
        })
        .collect();
    batches.sort_by(f64::total_cmp);
    batches[ROUNDS / 2]
}

/// Work of the kind a trap disturbs: 32 KiB of memory (one write per cache line) and a chain of
/// nested calls deeper than the return-stack predictor.
fn disturbed_work(buf: &mut [u64]) {
    for line in buf.chunks_mut(8) {
        line[0] = line[0].wrapping_add(1);
    }
    nested_calls(std::hint::black_box(24));
}

#[inline(never)]
fn nested_calls(depth: u32) -> u32 {
    if depth == 0 {
        0
    } else {
        std::hint::black_box(nested_calls(depth - 1)) + 1
    }
}

/// The child's side (`profiler calibrate-workload OUT`): time each function, write ns per call.
pub(crate) fn workload(out: &Path) -> anyhow::Result<()> {
    let fns: [(&str, unsafe extern "C" fn()); 4] = [
        ("reference", profiler_calib_reference),
        ("emulated", profiler_calib_emulated),
        ("stepped", profiler_calib_stepped),
        ("returning", profiler_calib_returning),
    ];
    let mut lines = String::new();
    for (name, f) in fns {
        // SAFETY: each function only touches rbp/rax and its own stack slot.
        let ns = time_calls(|| unsafe { f() });
        lines.push_str(&format!("{name} {ns}\n"));
    }
    let mut buf = vec![0u64; 32 * 1024 / 8];
    for (name, f) in [
        (
            "work_reference",
            profiler_calib_reference as unsafe extern "C" fn(),
        ),
        ("work_cold", profiler_calib_cold),
    ] {
        let ns = time_calls(|| {
            disturbed_work(&mut buf);
            // SAFETY: as above.
            unsafe { f() };
        });
        lines.push_str(&format!("{name} {ns}\n"));
    }
    outfile::write(out, lines).with_context(|| format!("failed to write {}", out.display()))
}

fn cache_path() -> PathBuf {
    PathBuf::from("/run/profiler-calibration")
}

/// What a cached result must match to be reused: this build, this boot, this kernel.
fn cache_key() -> String {
    format!(
        "{} {MODEL_VERSION} {} {}",
        env!("CARGO_PKG_VERSION"),
        sysinfo::System::boot_time(),
        sysinfo::System::kernel_version().unwrap_or_default()
    )
}

/// The calibrated cost model (cached per boot), or the defaults with a warning.
pub(crate) fn cost_model(warnings: &mut Vec<String>) -> CostModel {
    let key = cache_key();
    if let Ok(cached) = fs::read_to_string(cache_path())
        && let Some((cached_key, values)) = cached.split_once('\n')
        && cached_key == key
        && let Some(model) = parse_model(values)
    {
        return model;
    }
    match measure() {
        Ok(model) => {
            let _ = outfile::write(
                &cache_path(),
                format!(
                    "{key}\n{} {} {} {}\n",
                    model.emulated_entry_ns,
                    model.single_stepped_entry_ns,
                    model.return_ns,
                    model.in_call_ns
                ),
            );
            model
        }
        Err(e) => {
            warnings.push(format!(
                "probe cost calibration failed ({e:#}); default costs used"
            ));
            crate::overhead::default_model()
        }
    }
}

fn parse_model(values: &str) -> Option<CostModel> {
    let v: Vec<f64> = values
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    let [emulated, stepped, ret, in_call] = v[..] else {
        return None;
    };
    Some(CostModel {
        emulated_entry_ns: emulated,
        single_stepped_entry_ns: stepped,
        return_ns: ret,
        in_call_ns: in_call,
        source: "calibrated".into(),
    })
}

fn measure() -> anyhow::Result<CostModel> {
    let exe = std::env::current_exe().context("no executable path")?;
    let syms = symbols::functions(&exe)?;
    let offset = |name: &str| {
        syms.iter()
            .find(|s| s.raw == name)
            .map(|s| s.file_offset)
            .with_context(|| format!("{name} not found in {}", exe.display()))
    };
    let site = |name, with_return| -> anyhow::Result<Site> {
        Ok(Site {
            path: exe.clone(),
            file_offset: offset(name)?,
            with_return,
        })
    };
    let sites = [
        site("profiler_calib_emulated", false)?,
        site("profiler_calib_stepped", false)?,
        site("profiler_calib_returning", true)?,
        site("profiler_calib_cold", true)?,
    ];
    let out = std::env::temp_dir().join(format!("profiler-calibration-{}", std::process::id()));
    let args = [
        "profiler".to_string(),
        "calibrate-workload".into(),
        out.display().to_string(),
    ];
    let mut child = spawn_gated(&exe, &args)?;
    // Timed as a run times by default: the estimate is of what the probes cost a hot function.
    let mut options = LoadOptions::default();
    options
        .global(TIME_EVERY_MASK_GLOBAL, TIME_EVERY_DEFAULT - 1)
        .map_size(maps::FUNC_STATS, sites.len() as u32)
        .map_size(maps::SITE_LINKS, sites.len() as u32);
    let mut ebpf = bpf::load(child.pid as u32, &options)?;
    let probes = match functions::attach(&mut ebpf, &sites, child.pid as u32).and_then(|a| a.all())
    {
        Ok(probes) => probes,
        Err(e) => {
            child.abort();
            return Err(e);
        }
    };
    child.release()?;
    let status = child.wait();
    let timed = functions::read(&ebpf, sites.len(), child.pid);
    drop(probes);
    drop(ebpf);
    let text = fs::read_to_string(&out);
    let _ = fs::remove_file(&out);
    if status != Some(0) {
        bail!("the calibration workload failed (status {status:?})");
    }
    let text = text?;
    let value = |name: &str| -> anyhow::Result<f64> {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
            .with_context(|| format!("no {name} timing"))
    };
    let reference = value("reference ")?;
    let emulated = value("emulated ")?;
    let stepped = value("stepped ")?;
    let returning = value("returning ")?;
    let work_reference = value("work_reference ")?;
    let work_cold = value("work_cold ")?;
    // What a pair costs between calls of real work, beyond its cost in a tight loop: per hit.
    let pair = returning - reference;
    let cold = ((work_cold - work_reference) - pair).max(0.0) / 2.0;
    // The kernel's timing of the pair's calls between the work: the median call, less the
    // function's own time.
    let in_call = timed?
        .totals
        .get(3)
        .map(|t| t.quantile_ns(0.5))
        .context("no timed calls of the calibration's probed function")?;
    Ok(CostModel {
        emulated_entry_ns: (emulated - reference).max(0.0) + cold,
        single_stepped_entry_ns: (stepped - reference).max(0.0) + cold,
        return_ns: (returning - emulated).max(0.0) + cold,
        in_call_ns: (in_call - reference).max(0.0),
        source: "calibrated".into(),
    })
}
