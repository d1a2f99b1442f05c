//! Measures what a probe hit costs on the running machine, for the overhead estimate in every
//! report: a short self-test on a private child process, with the profiler's own programs
//! attached to functions whose first instruction the kernel emulates (`push`) and one it must
//! single-step (`lea`), timed against an identical unprobed function.
//!
//! The result is cached per boot and kernel in /run, so it is measured once.

use std::{
    fs,
    path::{Path, PathBuf},
    time::Instant,
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

// Four functions with fixed prologues: the compiler decides nothing about them.
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
    ".popsection",
);

unsafe extern "C" {
    fn profiler_calib_reference();
    fn profiler_calib_emulated();
    fn profiler_calib_stepped();
    fn profiler_calib_returning();
}

/// Calls per timed batch, and batches per function (the fastest batch counts: noise only adds).
const BATCH: u32 = 200;
const ROUNDS: u32 = 5;

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
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            let start = Instant::now();
            for _ in 0..BATCH {
                // SAFETY: each function only touches rbp/rax and its own stack slot.
                unsafe { f() };
            }
            best = best.min(start.elapsed().as_nanos() as f64 / f64::from(BATCH));
        }
        lines.push_str(&format!("{name} {best}\n"));
    }
    outfile::write(out, lines).with_context(|| format!("failed to write {}", out.display()))
}

fn cache_path() -> PathBuf {
    PathBuf::from("/run/profiler-calibration")
}

/// What a cached result must match to be reused: this build, this boot, this kernel.
fn cache_key() -> String {
    format!(
        "{} {} {}",
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
                    "{key}\n{} {} {}\n",
                    model.emulated_entry_ns, model.single_stepped_entry_ns, model.return_ns
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
    let [emulated, stepped, ret] = v[..] else {
        return None;
    };
    Some(CostModel {
        emulated_entry_ns: emulated,
        single_stepped_entry_ns: stepped,
        return_ns: ret,
        source: "calibrated",
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
        .map_size(maps::FUNC_STATS, sites.len() as u32);
    let mut ebpf = bpf::load(child.pid as u32, &options)?;
    let links = match functions::attach(&mut ebpf, &sites, child.pid as u32).and_then(|a| a.all()) {
        Ok(links) => links,
        Err(e) => {
            child.abort();
            return Err(e);
        }
    };
    child.release()?;
    let status = child.wait();
    drop(links);
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
    Ok(CostModel {
        emulated_entry_ns: (emulated - reference).max(0.0),
        single_stepped_entry_ns: (stepped - reference).max(0.0),
        return_ns: (returning - emulated).max(0.0),
        source: "calibrated",
    })
}
