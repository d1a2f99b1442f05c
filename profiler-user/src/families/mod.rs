//! The family registry: the one place that creates the families a selection asks for. Each
//! family is a folder here named as its kernel module (`profiler-ebpf/src/<name>.rs`) and its
//! shared types (`profiler-common/src/<name>.rs`), and implements [`Family`].

pub(crate) mod errors;
pub(crate) mod functions;
pub(crate) mod memory;
pub(crate) mod process;

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
    /// Thresholds of the memory family's leak verdict (`--leak-*`).
    pub leak: memory::analyze::LeakOptions,
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
    for id in [
        FamilyId::Process,
        FamilyId::Functions,
        FamilyId::Errors,
        FamilyId::System,
        FamilyId::Memory,
    ] {
        if !selected.contains(&id) && id != FamilyId::Functions {
            continue;
        }
        families.push(match id {
            FamilyId::Process => Box::new(process::Process),
            FamilyId::System => Box::new(process::System),
            FamilyId::Functions => Box::new(functions::Functions::new(
                &options.funcs,
                options.max_funcs,
                options.time_every,
            )?),
            FamilyId::Errors => Box::new(errors::Errors::new(errors::analyze::load_patterns(
                options.patterns.as_deref(),
            )?)),
            FamilyId::Memory => Box::new(memory::Memory::new(options.leak)),
            FamilyId::Cpu | FamilyId::Threads | FamilyId::Gpu => continue,
        });
    }
    Ok(families)
}

/// Each family of the table and what became of it, for the report's `families`: `built` are
/// the families [`build`] made, `attached` the probes each attached (None: it did not). Also
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
            let built = built.iter().zip(attached).find(|(f, _)| f.id() == id);
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
                    Some((f, Some(n))) => ("attached", *n, f.note()),
                    _ => ("failed", 0, Some("could not attach: see warnings".into())),
                }
            };
            let note = match note {
                None if !selected.contains(&id) => Some("added by --func".into()),
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
