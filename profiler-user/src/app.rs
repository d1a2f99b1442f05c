//! The commands: flags in, a checked session plan, a session, and its outcome out (the summary
//! printed, the report written, one error line).

use std::{
    io::{IsTerminal as _, Write},
    process::ExitCode,
};

use clap::{Parser, error::ErrorKind};
use profiler_common::functions::TIME_EVERY_DEFAULT;

use crate::{
    calibrate,
    cli::{Cli, Command, CommonArgs, MemoryMode},
    demo,
    families::{self, errors::analyze as errors, memory::analyze::LeakOptions},
    level::{self, Level},
    linux,
    report::{self, html, json},
    session::{self, Outcome, Plan},
    stop,
    tracee::Mode,
};

/// `--max-overhead` for `attach` when none is given, percent: a production process should not
/// notice the profiler.
const DEFAULT_ATTACH_BUDGET: f64 = 10.0;

/// The `profiler` command.
pub fn main() -> ExitCode {
    let cli = parse();
    match cli.command {
        Command::Report(args) => match render(&args.report, &args.html) {
            Ok(()) => {
                eprintln!("report written to {}", args.html.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        Command::Levels => {
            print(&level::describe());
            ExitCode::SUCCESS
        }
        Command::Patterns { patterns } => match errors::load_patterns(patterns.as_deref()) {
            Ok(db) => {
                print(&errors::format_table(&db.list()));
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e.to_string()),
        },
        Command::CalibrateWorkload { out } => match calibrate::workload(&out) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&format!("{e:#}")),
        },
        Command::DemoWorkload { seconds } => {
            demo::workload(seconds.as_secs_f64());
            ExitCode::SUCCESS
        }
        Command::Attach(args) => {
            let mut plan = plan(Mode::Attach(args.pid), &args.common);
            plan.max_overhead = Some(args.common.max_overhead.unwrap_or(DEFAULT_ATTACH_BUDGET));
            profile(plan, args.common.quiet)
        }
        Command::Top(args) => {
            let mut plan = plan(Mode::Attach(args.pid), &args.common);
            plan.max_overhead = Some(args.common.max_overhead.unwrap_or(DEFAULT_ATTACH_BUDGET));
            plan.live = true;
            profile(plan, args.common.quiet)
        }
        Command::Run(args) => profile(
            plan(Mode::Run(args.command), &args.common),
            args.common.quiet,
        ),
        Command::Demo(args) => {
            let exe = match std::env::current_exe() {
                Ok(exe) => exe.display().to_string(),
                Err(e) => return fail(&format!("cannot find the profiler's own executable: {e}")),
            };
            let plan = Plan {
                mode: Mode::Run(vec![
                    exe,
                    "demo-workload".into(),
                    "--seconds".into(),
                    args.duration.as_secs_f64().to_string(),
                ]),
                level: args.level,
                without: Vec::new(),
                duration: None,
                json: Some(args.json),
                html: Some(args.html),
                quiet: false,
                live: false,
                families: families::Options {
                    funcs: demo::DEMO_FUNCS.iter().map(|s| s.to_string()).collect(),
                    max_funcs: 1000,
                    time_every: TIME_EVERY_DEFAULT,
                    memory_exact: args.level == Level::Full,
                    ..Default::default()
                },
                max_overhead: None,
            };
            profile(plan, false)
        }
    }
}

/// The command line. A value the flag's checks refuse (`--duration inf`) is one `error:` line
/// saying why; other mistakes are shown as clap shows them (with the usage, or the values a flag
/// takes).
fn parse() -> Cli {
    Cli::try_parse().unwrap_or_else(|e| {
        if e.kind() == ErrorKind::ValueValidation
            && let Some(line) = e.render().to_string().lines().next()
        {
            eprintln!("{line}");
            std::process::exit(e.exit_code());
        }
        e.exit()
    })
}

fn plan(mode: Mode, common: &CommonArgs) -> Plan {
    Plan {
        mode,
        level: common.level,
        without: common.without.clone(),
        duration: common.duration,
        json: common.json.clone(),
        html: common.html.clone(),
        quiet: common.quiet,
        live: common.live,
        families: families::Options {
            funcs: common.funcs.clone(),
            max_funcs: common.max_funcs,
            time_every: common.time_every,
            patterns: common.patterns.clone(),
            no_children: common.no_children,
            leak: LeakOptions {
                min_growth: common.leak_min_growth,
                warmup: common.leak_warmup,
                scan_max_pause_ms: common.leak_scan_max_pause,
                check_every: common.leak_check_every,
            },
            memory_exact: match common.memory {
                Some(mode) => mode == MemoryMode::Exact,
                None => common.level == Level::Full,
            },
            threads: families::threads::Options {
                min_block_us: (common.min_block * 1_000.0).round() as u32,
                deadlock_after: common.deadlock_after,
                lock_probes: !common.no_lock_probes,
            },
            cpu: families::cpu::Options {
                frequency: common.frequency,
                outputs: common.output.clone(),
            },
        },
        max_overhead: common.max_overhead,
    }
}

/// Runs one session; prints the summary, writes the report, and turns an error into one line.
fn profile(plan: Plan, quiet: bool) -> ExitCode {
    if let Err(e) = stop::install() {
        return fail(&format!("cannot handle Ctrl-C: {e}"));
    }
    if plan.live
        && let Err(e) = stop::install_terminal()
    {
        return fail(&format!("cannot handle the terminal's signals: {e}"));
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(&format!("failed to start the runtime: {e}")),
    };
    let Outcome {
        report,
        summary,
        result,
        teardown,
        exit_status,
    } = runtime.block_on(session::run(&plan));
    let mut code = ExitCode::SUCCESS;
    if let Some(summary) = summary.filter(|_| !quiet) {
        // Colour on a terminal, unless NO_COLOR (no-color.org) is set.
        if std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none() {
            print(&report::text::colorize(&summary));
        } else {
            print(&summary);
        }
    }
    if let (Some(report), Some(path)) = (&report, &plan.json) {
        match json::write(report, path) {
            Ok(()) if !quiet => eprintln!("report written to {}", path.display()),
            Ok(()) => {}
            Err(e) => {
                eprintln!("error: cannot write the report to {}: {e}", path.display());
                code = ExitCode::FAILURE;
            }
        }
    }
    if let (Some(report), Some(path)) = (&report, &plan.html) {
        let written = serde_json::to_value(report)
            .map_err(std::io::Error::other)
            .and_then(|value| html::write(&value, path));
        match written {
            Ok(()) if !quiet => eprintln!("HTML report written to {}", path.display()),
            Ok(()) => {}
            Err(e) => {
                eprintln!(
                    "error: cannot write the HTML report to {}: {e}",
                    path.display()
                );
                code = ExitCode::FAILURE;
            }
        }
    }
    if let Err(e) = result {
        code = fail(&format!("{e:#}"));
    }
    // A command `run` started that exited: its status, as `time` and `strace` give it, so that
    // scripts see it fail. The profiler's own failure (1, above) wins over it.
    let code = match exit_status.and_then(linux::shell_status) {
        Some(status) if code == ExitCode::SUCCESS => ExitCode::from(status),
        _ => code,
    };
    // The report is on disk and every line printed: a Ctrl-C from here on exits at once.
    stop::tearing_down();
    teardown.finish();
    code
}

/// `profiler report FILE --html PATH`: the saved report, read and rendered; why not, in one
/// line.
fn render(input: &std::path::Path, output: &std::path::Path) -> Result<(), String> {
    let text = std::fs::read_to_string(input)
        .map_err(|e| format!("cannot read the report {}: {e}", input.display()))?;
    let value: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not a JSON report: {e}", input.display()))?;
    let version = value
        .get("schema_version")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| {
            format!(
                "{} is JSON but not a profiler report (it has no schema_version)",
                input.display()
            )
        })?;
    let major = |v: &str| v.split('.').next().unwrap_or("").to_string();
    if major(version) != major(report::SCHEMA_VERSION) {
        eprintln!(
            "warning: {} has schema {version}, this profiler writes {}: what the page shows may              be incomplete",
            input.display(),
            report::SCHEMA_VERSION
        );
    }
    html::write(&value, output)
        .map_err(|e| format!("cannot write the HTML report to {}: {e}", output.display()))
}

fn fail(message: &str) -> ExitCode {
    eprintln!("error: {message}");
    ExitCode::FAILURE
}

/// Prints to stdout; a closed pipe (`profiler ... | head`) is not an error.
fn print(s: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(s.as_bytes());
    let _ = out.flush();
}
