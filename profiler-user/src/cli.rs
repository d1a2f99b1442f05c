//! Command-line definitions (raw flags). `main` turns them into a checked session plan.

use std::{path::PathBuf, time::Duration};

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
    /// Attach to a running process with the live view: `attach --live`.
    ///
    /// A full-screen view redrawn every second from the same data as the report: a panel per
    /// family that runs (functions: calls, calls/s, average, p99, sortable; errors by pattern
    /// and the latest, in severity colours; memory; threads, with deadlocks in red at the top;
    /// cpu's hottest functions; gpu), and the overhead panel (the estimated slowdown, what the
    /// budget detached). Keys, shown in the footer: Tab or the arrows switch panels, 1-7 jump
    /// to one, s sorts the function table, the up and down arrows scroll, p pauses, q ends
    /// profiling as Ctrl-C does (the report is written, the summary printed). When stdout is
    /// not a terminal it is `attach`: the summary at the end.
    Top(AttachArgs),
    /// Start a command and profile it from its first instruction.
    ///
    /// Exits with the command's exit status when the command exits while profiled, as `time`
    /// and `strace` do: its exit code, or 128 + N when signal N ended it (137 for SIGKILL, 139
    /// for SIGSEGV). When profiling ends first (`--duration`, Ctrl-C) it exits 0; after
    /// `--duration` the command runs on. When the profiler itself fails it exits 1 with an `error:` line, whatever the
    /// command did.
    ///
    /// While profiled, the command's main thread is traced (ptrace), to stop it after each exec
    /// it makes (so that a wrapper's real program is probed before it runs) and at its exit
    /// (for the last reads of its memory); its signals pass on at once. Another tracer cannot
    /// attach to that thread meanwhile.
    Run(RunArgs),
    /// Start the bundled demo workload, profile it, print a summary and write the JSON and HTML
    /// reports.
    Demo(DemoArgs),
    /// Print a saved JSON report's text summary again, or render the report as one
    /// self-contained HTML page.
    ///
    /// The report is one `--json` wrote, on this machine or another. Without `--html`, the text
    /// summary the run printed at its end is printed to stdout, made from the JSON alone (the
    /// same text, for a report of this version); `--text` prints it with `--html` too. The
    /// summary needs a report of this profiler's major schema version; the page renders one of
    /// another with a warning.
    ///
    /// The page has the tabs Debug (the run, warnings, families, an event log), Performance
    /// (the traced functions, sortable, each with its duration histogram, callers and stacks;
    /// the CPU flame graph), Errors (incidents by pattern, with solutions, and a timeline),
    /// System (CPU and resident set over time, the machine, what profiling cost), and one per
    /// family section in the report (Memory, Threads, CPU, Python). Its CSS and script are
    /// inline: it fetches nothing, and opens from disk in any browser.
    Report(ReportArgs),
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
        #[arg(long, default_value = "3", value_parser = parse_seconds, allow_negative_numbers = true)]
        seconds: Duration,
    },
}

#[derive(Debug, Args)]
pub(crate) struct AttachArgs {
    /// Process id of the target.
    #[arg(value_parser = parse_pid, allow_negative_numbers = true)]
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
pub(crate) struct ReportArgs {
    /// The JSON report to read (written by `--json`).
    #[arg(value_name = "FILE.json")]
    pub report: PathBuf,
    /// Write the report as one HTML page here (mode 0600; a file or symlink already there is
    /// replaced, not followed), and print no summary unless `--text` is given.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Print the text summary (the default without `--html`).
    #[arg(long)]
    pub text: bool,
}

#[derive(Debug, Args)]
pub(crate) struct DemoArgs {
    /// Where to write the JSON report.
    #[arg(long, value_name = "PATH", default_value = "profiler-demo.json")]
    pub json: PathBuf,
    /// Where to write the HTML report (one self-contained page; open it in a browser).
    #[arg(long, value_name = "PATH", default_value = "profiler-demo.html")]
    pub html: PathBuf,
    /// How long the demo workload runs, in seconds (more than 0, at most a year).
    #[arg(long, value_name = "SECS", default_value = "3", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub duration: Duration,
    /// Debug level (see `profiler levels`).
    #[arg(long, value_enum, default_value_t = Level::Full)]
    pub level: Level,
}

/// Options shared by `attach` and `run`.
#[derive(Debug, Args, Clone)]
pub(crate) struct CommonArgs {
    /// Functions to trace exactly (repeatable). `GLOB` matches functions of the main executable;
    /// `LIB:GLOB` matches in a mapped shared library named by file-name prefix (`libc:malloc`,
    /// `libsqlite3:sqlite3_*`) or by path, or in every mapped file a glob names by file name,
    /// by file name without `.so...`, or by path (`'libpython3*:_PyEval_EvalFrameDefault'`).
    /// Demangled Rust and C++ names match (`'myapp::server::*'`). A spec that matches nothing is
    /// an error naming the libraries where it would match (`did you mean libc:malloc?`), or else
    /// the closest names. A matched function the kernel will not probe, or one in Go code (a
    /// return probe crashes Go programs), is skipped, with the reason, and the others are traced
    /// (see `skipped_functions` in the report).
    #[arg(long = "func", value_name = "SPEC")]
    pub funcs: Vec<String>,
    /// Stop after this many seconds: more than 0, at most a year (default: until Ctrl-C or the
    /// target exits).
    #[arg(long, value_name = "SECS", value_parser = parse_seconds, allow_negative_numbers = true)]
    pub duration: Option<Duration>,
    /// Write the JSON report to this path (mode 0600; a file or symlink already there is
    /// replaced, not followed; another user's, in a sticky directory such as /tmp, only with
    /// CAP_FOWNER, which root has).
    #[arg(long, value_name = "PATH")]
    pub json: Option<PathBuf>,
    /// Also write the report as one self-contained HTML page to this path (mode 0600, replaced
    /// as the JSON is): tabs for the run, functions (with a flame graph when the cpu family
    /// sampled), errors, system and each family; nothing in it is fetched from the network.
    /// With or without `--json`; `profiler report FILE.json --html PATH` renders a saved report
    /// the same way.
    #[arg(long, value_name = "PATH")]
    pub html: Option<PathBuf>,
    /// Debug level: which probe families are attached (see `profiler levels`).
    #[arg(long, value_enum, default_value_t = Level::Detailed)]
    pub level: Level,
    /// Leave a probe family out of the level (repeatable): errors, python, memory, cpu,
    /// threads, gpu.
    /// `--without errors` attaches no syscall tracepoint, which spares every syscall of the
    /// target (and, on kernels where uretprobes return through a syscall, every traced call)
    /// the kernel's syscall-tracing path.
    #[arg(long, value_name = "FAMILY", value_parser = parse_without)]
    pub without: Vec<FamilyId>,
    /// Overhead budget: when the estimated slowdown of the target goes over PERCENT, the hottest
    /// probes are detached (what they counted is kept): a traced function's, the memory
    /// family's allocator probes all at once, or the gpu family's CUDA probes all at once. 0
    /// turns it off. Default: 10 for `attach`, off
    /// for `run`.
    #[arg(long, value_name = "PERCENT", value_parser = parse_percent, allow_negative_numbers = true)]
    pub max_overhead: Option<f64>,
    /// Time one call in N of each traced function on each thread, once the thread has made 1024
    /// of them (every call before that is timed). Counts, call sites and stacks still see every
    /// call; times and percentiles of hot functions become estimates from the timed calls,
    /// which keeps the per-call cost near that of counting alone. 1 times every call. A power
    /// of two up to 65536.
    #[arg(long, value_name = "N", default_value_t = TIME_EVERY_DEFAULT, value_parser = parse_time_every, allow_negative_numbers = true)]
    pub time_every: u32,
    /// Most functions one run may trace (1 or more); a `--func` that matches more is an error.
    #[arg(long, value_name = "N", default_value_t = 1000, value_parser = parse_max_funcs, allow_negative_numbers = true)]
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
    /// Memory family: `growth` counts the pages the target is given (its write faults) by the
    /// stack that touched them, a cost that does not grow with its rate of malloc calls; `exact`
    /// adds the allocator probes: every block tracked, per allocation site, and the leak scan
    /// (definitely lost, indirectly lost, reachable), at about a microsecond or more per
    /// allocator call. Default: `growth` at `--level memory`, `exact` at `--level full`.
    #[arg(long, value_enum, value_name = "MODE")]
    pub memory: Option<MemoryMode>,
    /// Memory family, growth verdict (the second opinion next to the leak scan's, and the verdict
    /// where no scan can run): a site whose outstanding bytes grow slower than this (bytes per
    /// second) is flat, not growing (0 or more).
    #[arg(long, value_name = "BYTES_PER_SEC", default_value_t = 1.0, value_parser = parse_growth, allow_negative_numbers = true)]
    pub leak_min_growth: f64,
    /// Memory family, growth verdict: the share of the run (0 to 0.5) at its start treated as
    /// warm-up, and at its end in which a growing site must still be growing. A site that grew
    /// only in the warm-up, or stopped growing before the end, is flat.
    #[arg(long, value_name = "FRACTION", default_value_t = 0.25, value_parser = parse_warmup, allow_negative_numbers = true)]
    pub leak_warmup: f64,
    /// Memory family: the longest the reachability scan may keep the target stopped
    /// (milliseconds, 1 to 60000). The scan stops every thread of the target (ptrace, never a
    /// signal), marks the outstanding blocks that a pointer in its registers, stacks or writable
    /// memory reaches, and lets it go; one that would take longer lets the target go at this
    /// limit, and the verdict falls back to growth, with a note.
    #[arg(long, value_name = "MS", default_value_t = 500, value_parser = parse_scan_pause, allow_negative_numbers = true)]
    pub leak_scan_max_pause: u64,
    /// Memory family: also scan for leaks every SECONDS while profiling (the verdict is the last
    /// scan's; by default the target is scanned once, at the end, or at its exit under `run`).
    #[arg(long, value_name = "SECONDS", value_parser = parse_check_every, allow_negative_numbers = true)]
    pub leak_check_every: Option<f64>,
    /// Threads family: a block shorter than this (milliseconds) is counted but its stack is not
    /// kept.
    #[arg(long, value_name = "MS", default_value_t = 1.0, value_parser = parse_min_block, allow_negative_numbers = true)]
    pub min_block: f64,
    /// Threads family: threads blocked in a cycle of lock waits for this long (seconds) are
    /// reported as a live deadlock, on stderr at once and in the report's `deadlocks.live`.
    #[arg(long, value_name = "SECONDS", default_value_t = 2.0, value_parser = parse_deadlock_after, allow_negative_numbers = true)]
    pub deadlock_after: f64,
    /// Threads family: do not probe libc's lock functions. Contention is then seen through the
    /// futex waits alone (kind `futex`, holders named by their wake-ups; no acquisitions, hold
    /// times or lock-order edges): for lock-heavy targets, where each lock call's probe costs
    /// about a microsecond.
    #[arg(long)]
    pub no_lock_probes: bool,
    /// CPU family: samples per second of each thread's CPU time (1 to 10000). Odd on purpose,
    /// so that the sampling does not march in step with the target's own periodic work.
    #[arg(long, value_name = "HZ", default_value_t = 99, value_parser = parse_frequency, allow_negative_numbers = true)]
    pub frequency: u64,
    /// CPU family: write the sampled stacks to this file (repeatable), in the format its name
    /// ends with: `.folded` (folded stacks, for flamegraph.pl and inferno), `.svg` (a flame
    /// graph), `.pb.gz` (pprof: go tool pprof, Pyroscope, Parca), `.speedscope.json`
    /// (speedscope). Written mode 0600, replacing what is there, as the JSON report.
    #[arg(long, value_name = "PATH", value_parser = parse_output)]
    pub output: Vec<PathBuf>,
    /// Print nothing but errors (the report is still written).
    #[arg(long, short)]
    pub quiet: bool,
    /// Show the live view while profiling (see `profiler top --help`), when stdout is a
    /// terminal; the summary is printed at the end either way. Under `run`, the command's own
    /// output shares the terminal: the view repaints over it every second.
    #[arg(long, conflicts_with = "quiet")]
    pub live: bool,
}

/// `--frequency`: 1 to 10000 Hz.
fn parse_frequency(s: &str) -> Result<u64, String> {
    match s.parse::<u64>() {
        Ok(n) if (1..=10_000).contains(&n) => Ok(n),
        _ => Err(format!("{s:?} is not a frequency from 1 to 10000 (Hz)")),
    }
}

/// `--output`: a path whose name ends with a format the cpu family writes.
fn parse_output(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    crate::report::profile::Format::from_path(&path).map_err(|e| e.to_string())?;
    Ok(path)
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
    s.parse()
        .ok()
        .filter(|n: &u32| n.is_power_of_two() && *n <= TIME_EVERY_MAX)
        .ok_or_else(|| {
            format!("must be a power of two from 1 to {TIME_EVERY_MAX} (1 times every call)")
        })
}

/// The longest `--duration`, seconds: a year.
const MAX_SECONDS: f64 = 365.0 * 24.0 * 3600.0;

/// `--duration`: a positive number of seconds (not 0 once in nanoseconds), at most a year.
fn parse_seconds(s: &str) -> Result<Duration, String> {
    number(s)
        .filter(|secs| *secs > 0.0 && *secs <= MAX_SECONDS)
        .and_then(|secs| Duration::try_from_secs_f64(secs).ok())
        .filter(|d| !d.is_zero())
        .ok_or_else(|| {
            format!("must be a positive number of seconds, at most {MAX_SECONDS} (a year)")
        })
}

/// `--max-overhead`: a percentage, 0 or more.
fn parse_percent(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|p| *p >= 0.0)
        .ok_or_else(|| "must be a number of percent, 0 or more (0 turns the budget off)".into())
}

/// `--leak-min-growth`: bytes per second, 0 or more.
fn parse_growth(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|g| *g >= 0.0)
        .ok_or_else(|| "must be a number of bytes per second, 0 or more".into())
}

/// `--leak-warmup`: a fraction of the run from 0 to 0.5.
fn parse_warmup(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|f| (0.0..=0.5).contains(f))
        .ok_or_else(|| "must be a fraction of the run from 0 to 0.5".into())
}

/// `--memory`: what the memory family tracks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum MemoryMode {
    /// Where resident memory grows, by stack: the target's write faults.
    Growth,
    /// Growth, and every allocation and release through the allocator's probes, with the leak
    /// scan.
    Exact,
}

/// `--leak-scan-max-pause`: milliseconds, 1 to 60000.
fn parse_scan_pause(s: &str) -> Result<u64, String> {
    s.parse()
        .ok()
        .filter(|ms| (1..=60_000).contains(ms))
        .ok_or_else(|| "must be a whole number of milliseconds from 1 to 60000".into())
}

/// `--leak-check-every`: seconds, 0.1 to a day.
fn parse_check_every(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|secs| (0.1..=86_400.0).contains(secs))
        .ok_or_else(|| "must be a number of seconds from 0.1 to 86400".into())
}

/// `--min-block`: milliseconds, 0 to an hour (kept in whole microseconds).
fn parse_min_block(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|ms| (0.0..=3_600_000.0).contains(ms))
        .ok_or_else(|| "must be a number of milliseconds from 0 to 3600000".into())
}

/// `--deadlock-after`: seconds, more than 0 and at most a day.
fn parse_deadlock_after(s: &str) -> Result<f64, String> {
    number(s)
        .filter(|secs| *secs > 0.0 && *secs <= 86_400.0)
        .ok_or_else(|| "must be a positive number of seconds, at most 86400".into())
}

/// `--max-funcs`: a whole number, 1 or more.
fn parse_max_funcs(s: &str) -> Result<usize, String> {
    s.parse()
        .ok()
        .filter(|n| *n >= 1)
        .ok_or_else(|| "must be a whole number, 1 or more".into())
}

/// A process id: a whole number, 1 or more.
fn parse_pid(s: &str) -> Result<i32, String> {
    s.parse()
        .ok()
        .filter(|pid| *pid >= 1)
        .ok_or_else(|| "must be a process id (a whole number, 1 or more)".into())
}

/// A finite number (not `inf` or `nan`).
fn number(s: &str) -> Option<f64> {
    s.parse::<f64>().ok().filter(|n| n.is_finite())
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
    fn durations_are_positive_finite_and_at_most_a_year() {
        assert_eq!(parse_seconds("1"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_seconds("0.5"), Ok(Duration::from_millis(500)));
        assert_eq!(
            parse_seconds("31536000"),
            Ok(Duration::from_secs(31_536_000))
        );
        for bad in [
            "0", "-1", "-0", "nan", "inf", "-inf", "1e30", "31536001", "1e-10", "", "x", "1s",
        ] {
            let err = parse_seconds(bad).unwrap_err();
            assert!(err.contains("positive number of seconds"), "{bad}: {err}");
        }
    }

    #[test]
    fn numbers_are_finite_and_in_range() {
        assert_eq!(parse_percent("0"), Ok(0.0));
        assert_eq!(parse_percent("12.5"), Ok(12.5));
        assert_eq!(parse_growth("0"), Ok(0.0));
        assert_eq!(parse_warmup("0.5"), Ok(0.5));
        assert_eq!(parse_warmup("0"), Ok(0.0));
        assert_eq!(parse_max_funcs("1"), Ok(1));
        assert_eq!(parse_pid("1"), Ok(1));
        for bad in ["-1", "nan", "inf", "1e400", "x", ""] {
            assert!(parse_percent(bad).is_err(), "{bad}");
            assert!(parse_growth(bad).is_err(), "{bad}");
            assert!(parse_warmup(bad).is_err(), "{bad}");
        }
        assert!(parse_warmup("0.51").is_err());
        for bad in ["0", "-1", "1.5", "x", "99999999999999999999999"] {
            assert!(parse_max_funcs(bad).is_err(), "{bad}");
            assert!(parse_pid(bad).is_err(), "{bad}");
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
