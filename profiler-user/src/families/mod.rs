//! The family registry: the one place that creates the families a selection asks for. Each
//! family is a folder here named as its kernel module (`profiler-ebpf/src/<name>.rs`) and its
//! shared types (`profiler-common/src/<name>.rs`), and implements [`Family`].

pub(crate) mod cpu;
pub(crate) mod errors;
pub(crate) mod functions;
pub(crate) mod gpu;
pub(crate) mod memory;
pub(crate) mod process;
pub(crate) mod python;
pub(crate) mod threads;

use std::path::PathBuf;

use crate::{
    family::Family,
    level::{self, FamilyId, Level},
    report::{FamilyStatus, Report, text},
};

/// Family options from the command line.
#[derive(Debug, Clone, Default)]
pub(crate) struct Options {
    /// `--func`: the functions traced exactly.
    pub funcs: Vec<String>,
    /// `--max-funcs`.
    pub max_funcs: usize,
    /// `--time-every`.
    pub time_every: u32,
    /// Extra error-pattern file (`--patterns`).
    pub patterns: Option<PathBuf>,
    /// `--no-children`: follow the target process only, not the processes it starts.
    pub no_children: bool,
    /// Thresholds of the memory family's leak verdict (`--leak-*`).
    pub leak: memory::analyze::LeakOptions,
    /// The memory family tracks every block (`--memory exact`, the default at `--level full`),
    /// not only where resident memory grows.
    pub memory_exact: bool,
    /// `--min-block` and `--deadlock-after`.
    pub threads: threads::Options,
    /// `--frequency` and `--output`.
    pub cpu: cpu::Options,
}

/// The order the families are built, attach, and print their blocks of the summary in.
const ORDER: [FamilyId; 9] = [
    FamilyId::Process,
    FamilyId::Functions,
    FamilyId::Python,
    FamilyId::Errors,
    FamilyId::System,
    FamilyId::Memory,
    FamilyId::Gpu,
    FamilyId::Threads,
    FamilyId::Cpu,
];

/// The families of `selected` that this build has, in [`ORDER`]. The functions family is
/// always there: `--func` adds it at any level, and without `--func` it is idle. Fails on a bad
/// option (a malformed `--func` or pattern file) before anything starts.
pub(crate) fn build(
    selected: &[FamilyId],
    options: &Options,
) -> anyhow::Result<Vec<Box<dyn Family>>> {
    let mut families: Vec<Box<dyn Family>> = Vec::new();
    // What the python family learns of the interpreter, for the families that splice Python
    // frames into their stacks.
    let python = selected
        .contains(&FamilyId::Python)
        .then(python::SharedHandle::default);
    // Whether the memory family attached its allocator probes: the traced functions then have
    // their calls' memory.
    let allocator_probes = memory::AllocatorProbes::default();
    // The failed CUDA calls the gpu family hands to the errors family.
    let cuda_failures = selected
        .contains(&FamilyId::Gpu)
        .then(gpu::errors::ErrorsFeed::default);
    for id in ORDER {
        if !selected.contains(&id) && id != FamilyId::Functions {
            continue;
        }
        families.push(match id {
            FamilyId::Process => Box::new(process::Process::new(!options.no_children)),
            FamilyId::System => Box::new(process::System),
            FamilyId::Functions => Box::new(functions::Functions::new(
                &options.funcs,
                options.max_funcs,
                options.time_every,
                allocator_probes.clone(),
            )?),
            FamilyId::Errors => Box::new(errors::Errors::new(
                errors::analyze::load_patterns(options.patterns.as_deref())?,
                python.clone(),
                cuda_failures.clone(),
            )),
            FamilyId::Memory => Box::new(memory::Memory::new(
                options.leak,
                options.memory_exact,
                allocator_probes.clone(),
            )),
            FamilyId::Threads => Box::new(threads::Threads::new(options.threads, python.clone())),
            FamilyId::Cpu => Box::new(cpu::Cpu::new(options.cpu.clone(), python.clone())),
            FamilyId::Python => Box::new(python::Python::new(
                python.clone().unwrap_or_default(),
                // pymalloc's probes are per call, as the allocator's are: `--memory exact`.
                selected.contains(&FamilyId::Memory) && options.memory_exact,
            )),
            FamilyId::Gpu => Box::new(gpu::Gpu::new(
                cuda_failures.clone(),
                std::time::Duration::from_millis(options.leak.scan_max_pause_ms),
            )),
        });
    }
    Ok(families)
}

/// The printed summary of a run: the head, each family's block in [`ORDER`], the foot. Made
/// from the report alone, so that the session prints it and `profiler report FILE.json` prints
/// it again, the same. A family's block reads its own section, which only a family that was
/// built writes: a family left out has no section and no block (the functions family, always
/// built, always has its block).
pub(crate) fn summary(report: &Report) -> String {
    let mut out = text::header(report);
    for id in ORDER {
        summary_block(id, report, &mut out);
    }
    text::footer(report, &mut out);
    out
}

/// Family `id`'s block of the printed summary (and of the live view), from its section of
/// `report`: nothing when the report has none.
pub(crate) fn summary_block(id: FamilyId, report: &Report, out: &mut String) {
    match id {
        FamilyId::Functions => functions::summary_block(report, out),
        FamilyId::Python => python::summary_block(report, out),
        FamilyId::Errors => errors::summary_block(report, out),
        FamilyId::System => process::system_summary_block(report, out),
        FamilyId::Memory => memory::summary_block(report, out),
        FamilyId::Threads => threads::summary_block(report, out),
        FamilyId::Cpu => cpu::summary_block(report, out),
        // The process family's facts are in the head.
        FamilyId::Gpu => gpu::summary_block(report, out),
        FamilyId::Process => {}
    }
}

/// Each family of the table and what became of it, for the report's `families`: `built` are
/// the families [`build`] made, `attached` the probes each attached (None: it did not; empty:
/// the session ended before attaching). Also
/// returns a warning when the level selects families not built yet.
pub(crate) fn statuses(
    level: Level,
    without: &[FamilyId],
    built: &[Box<dyn Family>],
    attached: &[Option<usize>],
) -> (Vec<FamilyStatus>, Option<String>) {
    let selected = level::selected(level, without);
    let mut unavailable = Vec::new();
    let statuses = FamilyId::ALL
        .iter()
        .map(|&id| {
            let built = built
                .iter()
                .enumerate()
                .find(|(_, f)| f.id() == id)
                .map(|(i, f)| (f, attached.get(i).copied().flatten()));
            let added = built.is_some_and(|(f, _)| f.idle().is_none());
            let (status, probes, note) = if !selected.contains(&id) && !added {
                let left_out = without.contains(&id) && level.families().contains(&id);
                let note = left_out.then(|| "left out by --without".into());
                ("not_selected", 0, note)
            } else if !id.available() {
                unavailable.push(id.name());
                ("not_available", 0, Some("not built yet".to_string()))
            } else {
                match built {
                    Some((f, _)) if f.unavailable().is_some() => {
                        ("not_available", 0, f.unavailable())
                    }
                    Some((f, _)) if f.idle().is_some() => ("idle", 0, f.idle().map(Into::into)),
                    Some((f, Some(n))) => ("attached", n, f.note()),
                    // The session ended before it attached anything.
                    _ if attached.is_empty() => (
                        "failed",
                        0,
                        Some("profiling did not start: see the error".into()),
                    ),
                    _ => ("failed", 0, Some("could not attach: see warnings".into())),
                }
            };
            let note = match note {
                None if added && !selected.contains(&id) => Some("added by --func".into()),
                other => other,
            };
            FamilyStatus {
                name: id.name().into(),
                status: status.into(),
                probes,
                note,
            }
        })
        .collect();
    let warning = (!unavailable.is_empty()).then(|| {
        format!(
            "level {} selects families not built yet: {}",
            level.name(),
            unavailable.join(", ")
        )
    });
    (statuses, warning)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{family::ReportContext, report::Report};

    /// A family that attaches nothing: (its id, why it is idle, why it cannot run here).
    struct Stub(FamilyId, Option<&'static str>, Option<&'static str>);

    impl Family for Stub {
        fn id(&self) -> FamilyId {
            self.0
        }
        fn idle(&self) -> Option<&'static str> {
            self.1
        }
        fn unavailable(&self) -> Option<String> {
            self.2.map(String::from)
        }
        fn attach(
            &mut self,
            _: &mut aya::Ebpf,
            _: &crate::family::TargetContext<'_>,
        ) -> anyhow::Result<usize> {
            Ok(0)
        }
        fn report(&mut self, _: &mut Report, _: &mut ReportContext<'_>) {}
    }

    fn status<'a>(all: &'a [FamilyStatus], name: &str) -> (&'a str, usize, Option<String>) {
        let s = all.iter().find(|s| s.name == name).expect(name);
        (&s.status, s.probes, s.note.clone())
    }

    #[test]
    fn the_summary_is_made_from_the_report_alone_in_the_families_order() {
        let report = crate::report::tests::sample();
        let out = summary(&report);
        // The same text from the report read back from its JSON.
        let json = serde_json::to_string_pretty(&report).expect("a report serializes");
        let read: Report = serde_json::from_str(&json).expect("the report reads back");
        assert_eq!(summary(&read), out);
        // The head, each family's block in the order they are built, the foot.
        let heads = [
            "profiler 0.1.0 · pid 7 · /usr/bin/serve · level full · 0.95 s (target exited)\n",
            "\nfunction ",
            "\npython: CPython 3.11.7",
            "\nerrors: 2 (1 high)\n",
            "\ncpu 16.5% average, 25.2% peak · rss 1.5 MiB peak\n",
            "\nmemory: glibc (libc.so.6)",
            "\nthreads: 1 thread(s)",
            "\ncpu: 19 sample(s) at 99 Hz",
            "\noverhead: 70 probes, 886 hits",
        ];
        let at: Vec<usize> = heads
            .iter()
            .map(|h| out.find(h).unwrap_or_else(|| panic!("no {h:?} in:\n{out}")))
            .collect();
        assert!(at.is_sorted(), "{at:?} out of order:\n{out}");
        assert!(out.ends_with("\nwarning: level full selects families not built yet: gpu\n"));
        // When the budget detached the allocator probes: its time, from the report's budget.
        let shed = "\nallocator probes detached at 0.8 s by --max-overhead (scanned then); growth \
                    attribution continues\n";
        assert!(out.contains(shed), "{out}");
        let mut unbudgeted = report;
        unbudgeted.overhead.budget = None;
        assert!(!summary(&unbudgeted).contains("allocator probes detached"));
    }

    #[test]
    fn a_family_without_its_section_has_no_block() {
        let full = crate::report::tests::sample();
        let bare = Report {
            system: None,
            errors: None,
            cpu: None,
            memory: None,
            threads: None,
            python: None,
            gpu: None,
            ..full.clone()
        };
        // The functions family's block alone: it is always built.
        let mut expected = text::header(&bare);
        functions::summary_block(&bare, &mut expected);
        text::footer(&bare, &mut expected);
        assert_eq!(summary(&bare), expected);
        assert_ne!(summary(&full), expected);
    }

    #[test]
    fn statuses_say_what_became_of_each_family() {
        let built: Vec<Box<dyn Family>> = vec![
            Box::new(Stub(FamilyId::Process, None, None)),
            Box::new(Stub(FamilyId::Functions, None, None)),
            Box::new(Stub(FamilyId::Errors, None, None)),
            Box::new(Stub(FamilyId::System, None, None)),
        ];
        // Basic level, --func given, errors failed to attach.
        let (all, warning) = statuses(
            Level::Basic,
            &[],
            &built,
            &[Some(1), Some(4), None, Some(0)],
        );
        assert_eq!(all.len(), FamilyId::ALL.len());
        assert_eq!(status(&all, "process"), ("attached", 1, None));
        let added = Some("added by --func".to_string());
        assert_eq!(status(&all, "functions"), ("attached", 4, added));
        assert_eq!(status(&all, "errors").0, "failed");
        assert_eq!(status(&all, "memory"), ("not_selected", 0, None));
        assert!(warning.is_none());

        // Full level without --func, memory left out; the session ended before attaching.
        let idle: Vec<Box<dyn Family>> =
            vec![Box::new(Stub(FamilyId::Functions, Some("no"), None))];
        let (all, warning) = statuses(Level::Full, &[FamilyId::Memory], &idle, &[]);
        assert_eq!(status(&all, "functions"), ("idle", 0, Some("no".into())));
        let left_out = Some("left out by --without".to_string());
        assert_eq!(status(&all, "memory"), ("not_selected", 0, left_out));
        let not_started = Some("profiling did not start: see the error".to_string());
        assert_eq!(status(&all, "process"), ("failed", 0, not_started));
        assert!(warning.is_none(), "every family is built");

        // A family built but not able to run here (the gpu family without a driver).
        let no_driver = Stub(
            FamilyId::Gpu,
            None,
            Some("no NVIDIA driver on this machine"),
        );
        let built: Vec<Box<dyn Family>> = vec![Box::new(no_driver)];
        let (all, _) = statuses(Level::Full, &[], &built, &[Some(0)]);
        let why = Some("no NVIDIA driver on this machine".to_string());
        assert_eq!(status(&all, "gpu"), ("not_available", 0, why));
    }
}
