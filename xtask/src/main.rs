//! Project chores: `cargo xtask <command>`.

mod bench;
mod setup;

use std::process::{Command, ExitCode};

use anyhow::{Context as _, bail};
use clap::{Parser, Subcommand};

/// The switch that makes the integration tests fail, not skip, when this machine lacks what they
/// need (read by `profiler_tests::skip`, tests/src/lib.rs).
const TESTS_STRICT: &str = "PROFILER_TESTS_STRICT";

#[derive(Parser)]
#[command(name = "xtask", about = "Build, test, demo and benchmark the profiler")]
struct Cli {
    #[command(subcommand)]
    command: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install what building the kernel programs needs (nightly rust-src, bpf-linker), if missing.
    Setup {
        /// Also install what the integration tests use (Debian packages; root needed), as
        /// `cargo xtask test` does.
        #[arg(long)]
        tests: bool,
    },
    /// Set up, then build the eBPF object and check it with clippy.
    BuildEbpf,
    /// Set up, build in release mode, and profile the bundled demo workload.
    Demo {
        /// Where to write the JSON report.
        #[arg(long, default_value = "profiler-demo.json")]
        json: String,
    },
    /// Set up, install what the integration tests use, check formatting and lints, build, and run
    /// every test. Run as root: the integration tests run with PROFILER_TESTS_STRICT=1, so one
    /// that cannot run here fails instead of skipping.
    Test,
    /// Formatting and clippy (-D warnings) on the host crates and the eBPF crate.
    Lint,
    /// Measure the profiler against bpftrace on the same workloads (see BENCHMARKS.md).
    Bench(bench::BenchArgs),
}

fn main() -> ExitCode {
    match run(Cli::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> anyhow::Result<()> {
    match task {
        Task::Setup { tests } => {
            setup::ensure()?;
            if tests {
                setup::ensure_test_needs()?;
            }
            Ok(())
        }
        Task::BuildEbpf => {
            setup::ensure()?;
            cargo_nightly_ebpf(&["build", "--release"])?;
            cargo_nightly_ebpf(&["clippy", "--release", "--", "-D", "warnings"])
        }
        Task::Demo { json } => {
            setup::ensure()?;
            quiet_build(&["build", "--release", "-p", "profiler-user"])?;
            let profiler = workspace_root()?.join("target/release/profiler");
            let mut cmd = privileged(&profiler);
            cmd.args(["demo", "--json", &json]);
            status(cmd)
        }
        Task::Test => {
            if !is_root() {
                bail!(
                    "the integration tests load eBPF programs and run strictly (a test that \
                     cannot run fails): run this as root, e.g. sudo -E env PATH=\"$PATH\" cargo \
                     xtask test; `cargo test` as yourself lets them skip"
                );
            }
            setup::ensure()?;
            setup::ensure_test_needs()?;
            lint()?;
            // The integration tests run the profiler binary: build it first.
            cargo(&["build", "-p", "profiler-user"])?;
            // The eBPF crate builds only for the bpf target (lint() checks it there).
            let mut test = cargo_command(&[
                "test",
                "--workspace",
                "--exclude",
                "profiler-ebpf",
                "--",
                "--test-threads=1",
            ])?;
            test.env(TESTS_STRICT, "1");
            status(test)
        }
        Task::Lint => {
            setup::ensure()?;
            lint()
        }
        Task::Bench(args) => {
            setup::ensure()?;
            bench::run(&args)
        }
    }
}

fn lint() -> anyhow::Result<()> {
    cargo(&["fmt", "--all", "--", "--check"])?;
    // The eBPF crate builds only for the bpf target: checked below, on nightly.
    cargo(&[
        "clippy",
        "--workspace",
        "--exclude",
        "profiler-ebpf",
        "--all-targets",
        "--",
        "-D",
        "warnings",
    ])?;
    cargo_nightly_ebpf(&["clippy", "--release", "--", "-D", "warnings"])
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> anyhow::Result<std::path::PathBuf> {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(|p| p.to_path_buf())
        .context("xtask has no parent directory")
}

/// Runs cargo (the one that runs xtask) in the workspace root.
pub fn cargo(args: &[&str]) -> anyhow::Result<()> {
    status(cargo_command(args)?)
}

/// The command [`cargo`] runs, for a caller that adds to it.
fn cargo_command(args: &[&str]) -> anyhow::Result<Command> {
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(args).current_dir(workspace_root()?);
    Ok(cmd)
}

/// Runs a cargo build with its output held back: one progress line while it runs, and the
/// whole output only if it fails (the eBPF build reports each of its steps as a build-script
/// warning, some fifty lines that say nothing went wrong).
fn quiet_build(args: &[&str]) -> anyhow::Result<()> {
    use std::io::Write as _;
    let mut cmd = cargo_command(args)?;
    let shown = format!("{cmd:?}");
    eprint!("xtask: building the profiler (release; the first build takes a few minutes)... ");
    let _ = std::io::stderr().flush();
    let started = std::time::Instant::now();
    let out = cmd
        .stdin(std::process::Stdio::null())
        .output()
        .with_context(|| format!("failed to run {shown}"))?;
    if !out.status.success() {
        eprintln!("failed");
        std::io::stderr().write_all(&out.stdout)?;
        std::io::stderr().write_all(&out.stderr)?;
        bail!("{shown} failed ({})", out.status);
    }
    eprintln!("done in {:.0} s", started.elapsed().as_secs_f64());
    Ok(())
}

/// Runs a nightly cargo command on the eBPF crate, for the bpf target.
fn cargo_nightly_ebpf(args: &[&str]) -> anyhow::Result<()> {
    let mut cmd = Command::new("rustup");
    cmd.args(["run", "nightly", "cargo"])
        .args(&args[..1])
        .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"])
        .args(&args[1..])
        .current_dir(workspace_root()?.join("profiler-ebpf"))
        // The host toolchain's variables would otherwise leak into the nightly build.
        .env_remove("RUSTC")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .env_remove("CARGO");
    status(cmd)
}

/// A command run as root: directly when we are root, through sudo otherwise.
pub fn privileged(program: &std::path::Path) -> Command {
    if is_root() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("sudo");
        cmd.arg(program);
        cmd
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Runs a command, failing on a non-zero exit.
pub fn status(mut cmd: Command) -> anyhow::Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("failed to run {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}
