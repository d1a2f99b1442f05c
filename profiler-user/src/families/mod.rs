//! The family registry: the one place that creates the families a selection asks for. Each
//! family is a folder here named as its kernel module (`profiler-ebpf/src/<name>.rs`) and its
//! shared types (`profiler-common/src/<name>.rs`), and implements [`Family`].

pub(crate) mod cpu;
pub(crate) mod errors;
pub(crate) mod functions;
pub(crate) mod memory;
pub(crate) mod process;
pub(crate) mod python;
pub(crate) mod threads;

use std::path::PathBuf;

use crate::{
    family::Family,
    level::{self, FamilyId, Level},
    report::FamilyStatus,
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

/// The families of `selected` that this build has, in the order they attach and print their
/// summary blocks. The functions family is always there: `--func` adds it at any level, and
/// without `--func` it is idle. Fails on a bad option (a malformed `--func` or pattern file)
/// before anything starts.
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
    for id in [
        FamilyId::Process,
        FamilyId::Functions,
        FamilyId::Python,
        FamilyId::Errors,
        FamilyId::System,
        FamilyId::Memory,
        FamilyId::Threads,
        FamilyId::Cpu,
    ] {
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
            FamilyId::Gpu => continue,
        });
    }
    Ok(families)
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
                name: id.name(),
                status,
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

    /// A family that attaches nothing, idle or not.
    struct Stub(FamilyId, Option<&'static str>);

    impl Family for Stub {
        fn id(&self) -> FamilyId {
            self.0
        }
        fn idle(&self) -> Option<&'static str> {
            self.1
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

    fn status(all: &[FamilyStatus], name: &str) -> (&'static str, usize, Option<String>) {
        let s = all.iter().find(|s| s.name == name).expect(name);
        (s.status, s.probes, s.note.clone())
    }

    #[test]
    fn statuses_say_what_became_of_each_family() {
        let built: Vec<Box<dyn Family>> = vec![
            Box::new(Stub(FamilyId::Process, None)),
            Box::new(Stub(FamilyId::Functions, None)),
            Box::new(Stub(FamilyId::Errors, None)),
            Box::new(Stub(FamilyId::System, None)),
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
        let idle: Vec<Box<dyn Family>> = vec![Box::new(Stub(FamilyId::Functions, Some("no")))];
        let (all, warning) = statuses(Level::Full, &[FamilyId::Memory], &idle, &[]);
        assert_eq!(status(&all, "functions"), ("idle", 0, Some("no".into())));
        let left_out = Some("left out by --without".to_string());
        assert_eq!(status(&all, "memory"), ("not_selected", 0, left_out));
        let not_built = Some("not built yet".to_string());
        assert_eq!(status(&all, "gpu"), ("not_available", 0, not_built));
        let not_started = Some("profiling did not start: see the error".to_string());
        assert_eq!(status(&all, "process"), ("failed", 0, not_started));
        assert_eq!(
            warning.as_deref(),
            Some("level full selects families not built yet: gpu")
        );
    }
}
