//! One profiling session, orchestration only: resolve the target -> build the families the
//! level selects -> load and attach them all -> collect -> stop the kernel programs -> harvest
//! them all -> report; the probes are taken down (`Teardown`) once the report is written.
//!
//! Whatever happens once the target is known, a report is built from what was collected: the
//! state below is kept as the session goes, so an error late in the run loses nothing.

use std::{
    collections::BTreeMap,
    io::IsTerminal as _,
    path::PathBuf,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use aya::Ebpf;
use profiler_common::counters::Counter;

use crate::{
    bpf::{self, LoadOptions},
    calibrate,
    clock::monotonic_ns,
    collect::{self, Collected, EndReason},
    error::ProfilerError,
    families::{
        self,
        errors::analyze::sanitize::{sanitize, sanitize_argv},
    },
    family::{Family, ReportContext, TargetContext},
    level::{self, FamilyId, Level},
    overhead::{self, Governor},
    progress::Progress,
    report::{self, CostModel, Detached, ExitStatus, ProfilerInfo, Report, TargetSection},
    stop,
    symbols::symbolize::{AddrSymbolizer, MappingSnapshot},
    top::{self, Live, Screen, snapshot::Snapshots},
    tracee::{self, Mode, TargetInfo, spawn::Gated},
};

/// A checked request for one session.
#[derive(Debug, Clone)]
pub(crate) struct Plan {
    pub mode: Mode,
    pub level: Level,
    /// `--without`: families the level selects that are left out.
    pub without: Vec<FamilyId>,
    pub duration: Option<Duration>,
    pub json: Option<PathBuf>,
    /// `--html`: where the HTML report goes.
    pub html: Option<PathBuf>,
    /// Print nothing but errors.
    pub quiet: bool,
    /// `profiler top`, `--live`: the full-screen live view while profiling, when stdout is a
    /// terminal.
    pub live: bool,
    pub families: families::Options,
    /// `--max-overhead`: the estimated slowdown (percent) above which the dearest probes are
    /// detached; None for no budget.
    pub max_overhead: Option<f64>,
}

/// How a session ended: its report (when the target was known), the printed summary (when
/// profiling started), the error that ended it, if one did, the `wait(2)` status of a command
/// `run` started that exited while profiled, and the probes still to take down.
pub(crate) struct Outcome {
    pub report: Option<Report>,
    pub summary: Option<String>,
    pub result: anyhow::Result<()>,
    pub exit_status: Option<i32>,
    pub teardown: Teardown,
}

/// The probes of an ended session: stopped in the kernel (they count nothing more) but still
/// attached, so that the report is written first, whatever the number of probes.
pub(crate) struct Teardown {
    ebpf: Option<Ebpf>,
    families: Vec<Box<dyn Family>>,
}

impl Teardown {
    /// Takes every probe down; the target runs at full speed again once this returns.
    pub(crate) fn finish(mut self) {
        if let Some(ebpf) = self.ebpf.as_ref() {
            bpf::print_run_stats(ebpf);
        }
        if let Some(ebpf) = self.ebpf.as_mut() {
            for family in &mut self.families {
                family.detach(ebpf);
            }
        }
        // The programs, their remaining links and the maps.
        drop(self.ebpf.take());
    }
}

/// Everything known so far.
struct Session<'p> {
    plan: &'p Plan,
    target: Option<TargetInfo>,
    gated: Option<Gated>,
    /// The families built for the level, and the probes each attached (None: not attached).
    families: Vec<Box<dyn Family>>,
    attached: Vec<Option<usize>>,
    ebpf: Option<Ebpf>,
    cost_model: CostModel,
    /// When profiling started, and CLOCK_MONOTONIC then (ns).
    started: Option<(Instant, SystemTime)>,
    start_ktime_ns: u64,
    collected: Collected,
    maps: MappingSnapshot,
    counters: BTreeMap<Counter, u64>,
    detached: Vec<Detached>,
    warnings: Vec<String>,
}

pub(crate) async fn run(plan: &Plan) -> Outcome {
    let mut session = Session {
        plan,
        target: None,
        gated: None,
        families: Vec::new(),
        attached: Vec::new(),
        ebpf: None,
        cost_model: overhead::default_model(),
        started: None,
        start_ktime_ns: 0,
        collected: Collected::default(),
        maps: MappingSnapshot::default(),
        counters: BTreeMap::new(),
        detached: Vec::new(),
        warnings: Vec::new(),
    };
    let result = session.profile().await;
    if let Some(gated) = session.gated.take() {
        gated.abort();
    }
    // The collection loop stops the programs the instant the window ends; when it never got to
    // its end (an error), they are stopped here.
    if session.collected.ended.is_none()
        && let Some(ebpf) = session.ebpf.as_mut()
        && let Err(e) = bpf::stop(ebpf)
    {
        session.warnings.push(format!("{e:#}"));
    }
    if result.is_err() && session.collected.end_reason.is_none() {
        session.collected.end_reason = Some(if stop::requested() {
            EndReason::Interrupted
        } else {
            EndReason::Error
        });
    }
    let progress = Progress::new(plan.quiet || session.started.is_none());
    progress.step("reading the kernel's maps");
    session.harvest();
    progress.step("symbolizing the stacks and building the report");
    let report = session.target.is_some().then(|| session.report());
    progress.clear();
    // Before profiling started there is nothing to summarise: the error line says it all.
    let summary = report
        .as_ref()
        .filter(|_| session.started.is_some())
        .map(families::summary);
    let collected = &session.collected;
    let exit_status = collected
        .exit_status
        .filter(|_| collected.exited && matches!(plan.mode, Mode::Run(_)));
    Outcome {
        report,
        summary,
        result,
        exit_status,
        teardown: Teardown {
            ebpf: session.ebpf.take(),
            families: std::mem::take(&mut session.families),
        },
    }
}

/// Ends the start-up when Ctrl-C or SIGTERM came during it.
fn interrupted() -> Result<(), ProfilerError> {
    if stop::requested() {
        return Err(ProfilerError::Interrupted);
    }
    Ok(())
}

impl Session<'_> {
    async fn profile(&mut self) -> anyhow::Result<()> {
        bpf::check_privileges()?;
        for path in self.plan.json.iter().chain(&self.plan.html) {
            report::json::check_writable(path).map_err(|reason| ProfilerError::ReportPath {
                path: path.clone(),
                reason,
            })?;
        }
        // Built before anything starts: a bad option (a malformed pattern file) stops here.
        let selected = level::selected(self.plan.level, &self.plan.without);
        self.families = families::build(&selected, &self.plan.families)?;
        let traces = |f: &dyn Family| f.id() == FamilyId::Functions && f.idle().is_none();
        bpf::check_kernel(self.families.iter().any(|f| traces(f.as_ref())))?;
        let progress = Progress::new(self.plan.quiet);
        if self.families.iter().any(|f| f.priced()) {
            progress.step("calibrating the probes' cost on this machine");
            self.cost_model = calibrate::cost_model(&mut self.warnings);
        }

        interrupted()?;
        let found = tracee::find(&self.plan.mode)?;
        let (pid, modules) = (found.info.pid, found.modules);
        self.target = Some(found.info);
        self.gated = found.gated;
        let ctx = TargetContext {
            pid,
            run_mode: self.gated.is_some(),
            modules: &modules,
        };
        let mut options = LoadOptions::default();
        for family in &mut self.families {
            progress.step(format!(
                "preparing the {} family (reading the target's objects)",
                family.id()
            ));
            family.prepare(&ctx)?;
            family.load_options(&mut options);
        }
        interrupted()?;
        progress.step("loading the kernel programs");
        let ebpf = self.ebpf.insert(bpf::load(pid as u32, &options)?);
        self.attached = vec![None; self.families.len()];
        for (family, attached) in self.families.iter_mut().zip(&mut self.attached) {
            interrupted()?;
            progress.step(format!("attaching the {} family", family.id()));
            match family.attach(ebpf, &ctx) {
                Ok(n) => *attached = Some(n),
                Err(_) if self.gated.is_none() && !tracee::alive(pid) => {
                    return Err(ProfilerError::TargetExited(pid).into());
                }
                Err(e) if family.essential() => return Err(e),
                Err(e) => self.warnings.push(format!(
                    "the {} family could not attach: {e:#}",
                    family.id()
                )),
            }
        }
        interrupted()?;
        if let Some(gated) = self.gated.as_mut() {
            gated.release()?;
        }
        self.gated = None;
        let start = Instant::now();
        self.started = Some((start, SystemTime::now()));
        self.start_ktime_ns = monotonic_ns();
        self.maps.refresh(pid);
        progress.clear();
        if !self.plan.quiet {
            // Harnesses wait for this line before they start measuring.
            let functions: usize = self.families.iter().map(|f| f.traced_names().len()).sum();
            let probes: usize = self.attached.iter().flatten().sum();
            eprintln!(
                "profiler: profiling pid {pid} ({functions} functions, {probes} probes); Ctrl-C \
                 to stop"
            );
        }

        let mut governor = self.plan.max_overhead.and_then(|max| {
            Governor::new(
                max,
                &mut self.families,
                ebpf,
                &self.cost_model,
                pid,
                self.plan.quiet,
            )
        });
        let mut live = self.live_view(start);
        let watch = collect::Watch {
            pid,
            child: matches!(self.plan.mode, Mode::Run(_)),
            start,
            duration: self.plan.duration,
        };
        let ebpf = self.ebpf.as_mut().expect("loaded above");
        let result = collect::collect(
            ebpf,
            watch,
            &mut self.collected,
            &mut self.maps,
            &mut self.families,
            governor.as_mut(),
            live.as_mut(),
        )
        .await;
        drop(live);
        self.detached = governor.map(Governor::into_detached).unwrap_or_default();
        result
    }

    /// The live view, when asked for and stdout is a terminal (else the plain summary at the
    /// end is all), or the tests' snapshot file (`top::snapshot::SNAPSHOT_ENV`).
    fn live_view(&mut self, start: Instant) -> Option<Live> {
        let dump = std::env::var_os(top::snapshot::SNAPSHOT_ENV).is_some();
        let terminal = self.plan.live && !self.plan.quiet && std::io::stdout().is_terminal();
        if !terminal && !dump {
            return None;
        }
        let (families, _) = families::statuses(
            self.plan.level,
            &self.plan.without,
            &self.families,
            &self.attached,
        );
        let overhead = overhead::section(
            &self.families,
            &self.cost_model,
            self.attached.iter().flatten().sum(),
            0.0,
            None,
            &BTreeMap::new(),
            &mut Vec::new(),
        );
        let head = self.head(0.0, "running", families, overhead);
        let traced_names = self
            .families
            .iter()
            .flat_map(|f| f.traced_names())
            .collect();
        let snapshots = Snapshots::new(
            head,
            self.cost_model.clone(),
            traced_names,
            (start, self.start_ktime_ns),
            collect::SAMPLE_INTERVAL.as_secs_f64(),
            self.plan.max_overhead,
        );
        let screen = if terminal {
            match Screen::open() {
                Ok(screen) => Some(screen),
                Err(e) => {
                    eprintln!("profiler: no live view ({e}); the summary follows at the end");
                    None
                }
            }
        } else {
            None
        };
        if screen.is_none() && !dump {
            return None;
        }
        Some(Live::new(
            snapshots,
            screen,
            matches!(self.plan.mode, Mode::Run(_)),
        ))
    }

    /// Reads what the stopped probes gathered (once; never fails the session).
    fn harvest(&mut self) {
        let Some(ebpf) = self.ebpf.as_mut() else {
            return;
        };
        for family in &mut self.families {
            family.harvest(ebpf, &mut self.warnings);
        }
        match bpf::read_counters(ebpf) {
            Ok(c) => self.counters = c,
            Err(e) => self
                .warnings
                .push(format!("could not read the loss counters: {e:#}")),
        }
    }

    fn report(&mut self) -> Report {
        let duration = match (self.started, self.collected.ended) {
            (Some((start, _)), Some(end)) => end.duration_since(start).as_secs_f64(),
            (Some((start, _)), None) => start.elapsed().as_secs_f64(),
            _ => 0.0,
        };
        let model = self.cost_model.clone();
        let (families, unbuilt) = families::statuses(
            self.plan.level,
            &self.plan.without,
            &self.families,
            &self.attached,
        );
        self.warnings.extend(unbuilt);
        let budget = self
            .plan
            .max_overhead
            .map(|max_percent| report::BudgetSection {
                max_percent,
                detached: std::mem::take(&mut self.detached),
            });
        let overhead = overhead::section(
            &self.families,
            &model,
            self.attached.iter().flatten().sum(),
            self.collected.target_cpu_time(),
            budget,
            &self.counters,
            &mut self.warnings,
        );
        let end_reason = self.collected.end_reason.unwrap_or(EndReason::Error);
        if end_reason == EndReason::TargetExited
            && let Some(asked) = self.plan.duration
            && duration < asked.as_secs_f64()
        {
            self.warnings.push(format!(
                "the target exited after {duration:.2} s, before --duration ({:.2} s) was up",
                asked.as_secs_f64()
            ));
        }
        let mut report = self.head(duration, end_reason.name(), families, overhead);
        let traced_names: Vec<String> = self
            .families
            .iter()
            .flat_map(|f| f.traced_names())
            .collect();
        let mut symbolizer = AddrSymbolizer::new();
        let mut ctx = ReportContext {
            symbolizer: &mut symbolizer,
            maps: &self.maps,
            start_ktime_ns: self.start_ktime_ns,
            end_ktime_ns: self.start_ktime_ns + (duration * 1e9) as u64,
            duration,
            traced_names: &traced_names,
            cost_model: &model,
            exit_status: self.collected.exit_status,
            samples: &self.collected.samples,
            sample_interval: collect::SAMPLE_INTERVAL.as_secs_f64(),
        };
        for family in &mut self.families {
            family.report(&mut report, &mut ctx);
        }
        // What a Python program put in its exceptions' messages can hold secrets, as what it
        // prints can: the same sanitizer (the errors family's events pass through it already).
        if let Some(p) = &mut report.python {
            for site in &mut p.exceptions.sites {
                site.message = site.message.as_deref().map(sanitize);
            }
        }
        report.warnings.append(&mut self.warnings);
        report
    }

    /// The report before the families write their sections: what the final report and each
    /// live snapshot say of the run, the target and the families.
    fn head(
        &self,
        duration: f64,
        end_reason: &str,
        families: Vec<report::FamilyStatus>,
        overhead: report::Overhead,
    ) -> Report {
        let target = self.target.clone().expect("a report needs a target");
        let started_at = self.started.map_or(0.0, |(_, t)| {
            t.duration_since(UNIX_EPOCH)
                .unwrap_or_default()
                .as_secs_f64()
        });
        Report {
            schema_version: report::SCHEMA_VERSION.into(),
            profiler: ProfilerInfo {
                version: env!("CARGO_PKG_VERSION").into(),
                debug_level: self.plan.level,
                mode: match self.plan.mode {
                    Mode::Attach(_) => "attach",
                    Mode::Run(_) => "run",
                }
                .into(),
                duration,
                started_at,
                end_reason: end_reason.into(),
            },
            target: TargetSection {
                pid: target.pid,
                exe: sanitize(&target.exe.display().to_string()),
                cmdline: sanitize_argv(&target.cmdline),
                exited: self.collected.exited,
                exit_status: self.collected.exit_status.map(ExitStatus::from_wait_status),
            },
            processes: Vec::new(),
            families,
            functions: Vec::new(),
            skipped_functions: Vec::new(),
            overhead,
            system: None,
            memory: None,
            threads: None,
            cpu: None,
            python: None,
            gpu: None,
            errors: None,
            warnings: Vec::new(),
        }
    }
}
