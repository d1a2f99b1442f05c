//! Command-line definitions (raw flags). `main` turns them into a checked session plan.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use profiler_common::functions::{TIME_EVERY_DEFAULT, TIME_EVERY_MAX};

use crate::level::{FamilyId, Level};

/// An eBPF profiler and debugger for running Linux processes: exact per-function profiles, what
/// the process costs and what profiling it costs, without changing the process.
#[derive(Debug, Parser)]
#[command(name = "profiler", version, about, long_about = None)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Attach to a running process.
    Attach(AttachArgs),
    /// Start a command and profile it from its first instruction.
    Run(RunArgs),
    /// Start the bundled demo workload, profile it, print a summary and write a JSON report.
    Demo(DemoArgs),
    /// List the debug levels and the probe families each one attaches.
    Levels,
    /// List the error patterns (built in, and from a pattern file).
    Patterns {
        /// A pattern file to check and list with the built-in ones (see docs/patterns.md).
        #[arg(long, value_name = "FILE")]
        patterns: Option<PathBuf>,
    },
    /// The probe-cost calibration workload (started by the profiler itself).
    #[command(hide = true)]
    CalibrateWorkload {
        /// Where to write the timings.
        out: PathBuf,
    },
    /// The demo workload itself (started by `profiler demo`).
    #[command(hide = true)]
    DemoWorkload {
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Process id of the target.
    pub pid: i32,
    #[command(flatten)]
    pub common: CommonArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RunArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// The command to start, and its arguments.
    #[arg(last = true, required = true, value_name = "CMD")]
    pub command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to write the JSON report.
    #[arg(long, value_name = "PATH", default_value = "profiler-demo.json")]
    pub json: PathBuf,
    /// How long the demo workload runs, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 3.0)]
    pub duration: f64,
    /// Debug level (see `profiler levels`).
    #[arg(long, value_enum, default_value_t = Level::Detailed)]
    pub level: Level,
}

/// Options shared by `attach` and `run`.
#[derive(Debug, Args, Clone)]
pub(crate) struct CommonArgs {
    /// Functions to trace exactly (repeatable). `GLOB` matches functions of the main executable;
    /// `LIB:GLOB` matches in a mapped shared library named by file-name prefix (`libc:malloc`,
    /// `libsqlite3:sqlite3_*`) or by path. Demangled Rust and C++ names match
    /// (`'myapp::server::*'`). A matched function the kernel will not probe is skipped, with the
    /// reason, and the others are traced (see `skipped_functions` in the report).
    #[arg(long = "func", value_name = "SPEC")]
    pub funcs: Vec<String>,
    /// Stop after this many seconds (default: until Ctrl-C or the target exits).
    #[arg(long, value_name = "SECS")]
    pub duration: Option<f64>,
    /// Write the JSON report to this path (mode 0600; a file already there is replaced).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Debug level: which probe families are attached (see `profiler levels`).
    #[arg(long, value_enum, default_value_t = Level::Detailed)]
    pub level: Level,
    /// Leave a probe family out of the level (repeatable): errors, memory, cpu, threads, gpu
    /// (cpu, threads and gpu are not built yet).
    /// `--without errors` attaches no syscall tracepoint, which spares every syscall of the
    /// target (and, on kernels where uretprobes return through a syscall, every traced call)
    /// the kernel's syscall-tracing path.
    #[arg(long, value_name = "FAMILY", value_parser = parse_without)]
    pub without: Vec<FamilyId>,
    /// Overhead budget: when the estimated slowdown of the target goes over PERCENT, the hottest
    /// probes are detached (what they counted is kept): a traced function's, or the memory
    /// family's allocator probes, all at once. 0 turns it off. Default: 10 for `attach`, off
    /// for `run`.
    #[arg(long, value_name = "PERCENT")]
    pub max_overhead: Option<f64>,
    /// Time one call in N of each traced function on each thread, once the thread has made 1024
    /// of them (every call before that is timed). Counts, call sites and stacks still see every
    /// call; times and percentiles of hot functions become estimates from the timed calls,
    /// which keeps the per-call cost near that of counting alone. 1 times every call. A power
    /// of two up to 65536.
    #[arg(long, value_name = "N", default_value_t = TIME_EVERY_DEFAULT, value_parser = parse_time_every)]
    pub time_every: u32,
    /// Most functions one run may trace; a `--func` that matches more is an error.
    #[arg(long, value_name = "N", default_value_t = 1000)]
    pub max_funcs: usize,
    /// Follow only the target process, not the processes it starts (by default its children,
    /// their children and so on are followed: those it has when `attach` starts, and those it
    /// forks while profiled; the errors family sees their failures, and the report lists them
    /// in `processes`; the memory and functions families cover the target alone).
    #[arg(long)]
    pub no_children: bool,
    /// An error-pattern file that extends the built-in database (see docs/patterns.md).
    #[arg(long, value_name = "FILE")]
    pub patterns: Option<PathBuf>,
    /// Memory family: a site whose outstanding bytes grow slower than this (bytes per second)
    /// is not called a leak.
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 1.0)]
    pub leak_min_growth: f64,
    /// Memory family: the share of the run (0 to 0.5) at its start treated as warm-up, and at
    /// its end in which a leaking site must still be growing. A site that grew only in the
    /// warm-up, or stopped growing before the end, is reported as retained, not leaked.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.25)]
    pub leak_warmup: f64,
    /// Print nothing but errors (the report is still written).
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--without`: a family the level may do without.
fn parse_without(s: &str) -> Result<FamilyId, String> {
    let optional = || {
        FamilyId::ALL
            .iter()
            .filter(|f| f.optional())
            .map(|f| f.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match FamilyId::from_name(s) {
        Some(f) if f.optional() => Ok(f),
        Some(f) => Err(format!(
            "the {f} family cannot be left out (one of: {})",
            optional()
        )),
        None => Err(format!("no family {s:?} (one of: {})", optional())),
    }
}

/// `--time-every`: a power of two from 1 to `TIME_EVERY_MAX`.
fn parse_time_every(s: &str) -> Result<u32, String> {
    let n: u32 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a whole number"))?;
    if n == 0 || !n.is_power_of_two() || n > TIME_EVERY_MAX {
        return Err(format!(
            "{n} is not a power of two from 1 to {TIME_EVERY_MAX} (1 times every call)"
        ));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_every_is_a_power_of_two_in_range() {
        assert_eq!(parse_time_every("1"), Ok(1));
        assert_eq!(parse_time_every("16"), Ok(16));
        assert_eq!(parse_time_every("65536"), Ok(65536));
        for bad in ["0", "3", "131072", "x", "-1"] {
            assert!(parse_time_every(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn without_takes_only_the_optional_families() {
        assert_eq!(parse_without("errors"), Ok(FamilyId::Errors));
        assert_eq!(parse_without("memory"), Ok(FamilyId::Memory));
        for bad in ["process", "system", "functions", "nope", ""] {
            assert!(parse_without(bad).is_err(), "{bad}");
        }
    }
}
