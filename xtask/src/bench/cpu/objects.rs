//! The profiler's memory on a target that maps many objects, as large programs do: the
//! workload (`xtask/bench/dlopen.c`) loads [`OBJECTS`] small shared objects generated here, each
//! another build (so another unwind table, compiled or read from the cache), and then calls
//! into every one in turn, so that the samples land in all of them. It runs untraced and under
//! the profiler at 99 Hz, interleaved; the profiler's peak RSS is the figure of interest, its
//! CPU time and the target's slowdown are shown too.

use std::{fmt::Write as _, path::Path, process::Command};

use anyhow::Context as _;

use super::{
    BASELINE, Env, OBJECTS, PROFILER_99, Sample, Sampler, Stacks, Traced, measure, median, mib,
};

/// Units of work: one call of every object's function each (~0.6 ms a unit here).
const UNITS: u64 = 5000;

/// Iterations of each object's loop per call.
const SPIN: u32 = 2000;

const DLOPEN_C: &str = include_str!("../../../bench/dlopen.c");

/// Builds the objects and the workload, measures it `runs` times untraced and under the
/// profiler (interleaved), prints the table, and returns the profiler's largest peak RSS.
pub(super) fn bench(env: &Env, runs: u32) -> anyhow::Result<Option<u64>> {
    let libs = env.dir.join("objects");
    build_objects(&libs)?;
    let exe = super::build(env.dir, "dlopen", DLOPEN_C, &["-ldl"])?;

    println!(
        "cpu objects workload: {OBJECTS} shared objects loaded with dlopen, {UNITS} units (a \
         call into every object each), on one CPU; profiler: attach --level profiling \
         --max-overhead 0 (99 Hz)"
    );
    let configs = [(BASELINE, None), (PROFILER_99, Some(Sampler::Profiler(99)))];
    let mut samples: Vec<Vec<Sample>> = configs.iter().map(|_| Vec::new()).collect();
    for round in 0..runs as usize {
        for k in 0..configs.len() {
            let i = (k + round) % configs.len();
            let (label, sampler) = configs[i];
            let mut cmd = Command::new(&exe);
            cmd.arg(&libs)
                .args([OBJECTS.to_string(), UNITS.to_string()]);
            let files = env.dir.join(format!("objects-{label}-{round}"));
            let sample = measure(cmd, UNITS, sampler, env, &files)
                .with_context(|| format!("measuring the objects workload under {label}"))?;
            println!(
                "[{}/{runs}] objects {label:<11} {}",
                round + 1,
                sample.line()
            );
            samples[i].push(sample);
        }
    }
    println!();
    let (text, rss) = report(&samples, runs);
    print!("{text}");
    Ok(rss)
}

/// Writes and compiles `libobj0.so` .. in `dir`, a few gcc at a time: each defines
/// `obj_spin` with other constants, so each is another build (its own build-id).
fn build_objects(dir: &Path) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let jobs = std::thread::available_parallelism().map_or(1, |n| n.get());
    let indexes: Vec<usize> = (0..OBJECTS).collect();
    for chunk in indexes.chunks(jobs * 2) {
        let mut children = Vec::new();
        for k in chunk {
            let src = dir.join(format!("obj{k}.c"));
            let text = format!(
                "#include <stdint.h>\n\
                 uint64_t obj_spin(uint64_t x)\n{{\n    \
                 for (int i = 0; i < {SPIN}; i++) {{\n        \
                 x = x * {}ULL + {k}ULL;\n        \
                 x ^= x >> 29;\n        \
                 __asm__ volatile(\"\" : \"+r\"(x));\n    }}\n    \
                 return x;\n}}\n",
                6364136223846793005u64.wrapping_add(2 * *k as u64)
            );
            std::fs::write(&src, text).with_context(|| format!("writing {}", src.display()))?;
            let child = Command::new("gcc")
                .args(["-O2", "-fPIC", "-shared", "-fomit-frame-pointer", "-o"])
                .arg(dir.join(format!("libobj{k}.so")))
                .arg(&src)
                .spawn()
                .context("running gcc")?;
            children.push(child);
        }
        for mut child in children {
            let status = child.wait().context("waiting for gcc")?;
            if !status.success() {
                anyhow::bail!("gcc failed building an object of the objects workload ({status})");
            }
        }
    }
    Ok(())
}

fn report(samples: &[Vec<Sample>], runs: u32) -> (String, Option<u64>) {
    let mut s = String::new();
    let traced: Vec<&Traced> = samples[1]
        .iter()
        .filter_map(|x| x.traced.as_ref())
        .collect();
    let rss = traced.iter().map(|t| t.ended.max_rss).max();
    let (Some(rss), Some(last)) = (rss, traced.last()) else {
        return (s, None);
    };
    let med = |f: fn(&Traced) -> f64| median(traced.iter().map(|x| f(x)).collect()).unwrap_or(0.0);
    let pooled = Stacks::pool(traced.iter().map(|t| &t.stacks));
    let slowdown = super::report::slowdown(samples, 1).0;
    let _ = writeln!(
        s,
        "cpu objects: the profiler on a target with {OBJECTS} objects loaded (median of {runs})"
    );
    let _ = writeln!(
        s,
        "  peak RSS {} (the largest of the runs; median {}); CPU {:.2}% of one core during \
         the run, {:.2} s in all; slowdown {} (sampling program {}); {:.0} samples a run, \
         {:.1}% complete",
        mib(rss),
        mib(med(|x| x.ended.max_rss as f64) as u64),
        med(Traced::core_percent),
        med(|x| x.ended.cpu),
        slowdown.map_or("-".into(), |p| format!("{p:+.2}%")),
        super::report::program_percent(&samples[1]).map_or("-".into(), |p| format!("{p:.2}%")),
        med(|x| x.stacks.samples as f64),
        pooled.percent(pooled.complete)
    );
    let _ = writeln!(s, "  {}", last.seen);
    s.push_str(&super::report::harness_floor(traced.iter().copied()));
    (s, Some(rss))
}
