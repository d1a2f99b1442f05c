//! The family registry: the one place that creates the families a selection asks for. Each
//! family is a folder here named as its kernel module (`profiler-ebpf/src/<name>.rs`) and its
//! shared types (`profiler-common/src/<name>.rs`), and implements [`Family`].

pub(crate) mod errors;
pub(crate) mod functions;
pub(crate) mod memory;
pub(crate) mod process;

use std::path::PathBuf;

use crate::{family::Family, level::FamilyId};

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
