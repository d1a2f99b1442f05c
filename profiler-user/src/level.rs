//! The debug levels and the one table that says which probe families each level attaches.

use std::fmt;

use clap::ValueEnum;
use serde::{Deserialize, Serialize};

/// How much the profiler looks at, and so how much it costs the target.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Level {
    /// Process lifecycle, errors (a CPython target's raised exceptions too) and /proc
    /// sampling: cheap enough for production.
    Basic,
    /// Basic, plus exact tracing of the `--func` functions.
    #[default]
    Detailed,
    /// Detailed, plus CPU sampling with whole stacks (unwound in the kernel, no frame pointers
    /// needed) and per-thread CPU.
    Profiling,
    /// Basic, plus where resident memory grows, by stack (the target's write faults: a cost
    /// that does not grow with its malloc rate); `--memory exact` adds every allocation
    /// through the allocator's probes and the leak scan.
    Memory,
    /// Basic, plus scheduling per thread, lock contention with the holder, and deadlocks
    /// (lock order, and live cycles of waits).
    Threading,
    /// Every family, the memory family exact (the gpu family reads NVML and probes the CUDA
    /// libraries the target maps).
    Full,
}

/// A probe family: one kernel module, one analyzer, one report section.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum FamilyId {
    /// Thread and process exits, exit status (tracepoint sched_process_exit).
    Process,
    /// Process CPU and memory sampled from /proc (no probes).
    System,
    /// Exact per-function counts and times (uprobe/uretprobe on `--func`).
    Functions,
    /// Failed syscalls, fatal signals and printed errors, classified against the pattern database.
    Errors,
    /// CPU sampling with stacks unwound in the kernel (perf event).
    Cpu,
    /// Resident growth by stack (page-fault tracepoint); with `--memory exact`, allocations and
    /// leaks (uprobes on the allocator, mmap/munmap, the reachability scan).
    Memory,
    /// Scheduling, locks and deadlocks (sched tp_btf, futex tracepoints, pthread uprobes).
    Threads,
    /// GPU statistics (NVML), and the CUDA runtime and driver calls (uprobes on the libraries).
    Gpu,
    /// CPython: Python frames in the stacks, and exceptions raised (uprobes on the interpreter).
    Python,
}

impl FamilyId {
    pub(crate) const ALL: [FamilyId; 9] = [
        FamilyId::Process,
        FamilyId::System,
        FamilyId::Functions,
        FamilyId::Errors,
        FamilyId::Python,
        FamilyId::Cpu,
        FamilyId::Memory,
        FamilyId::Threads,
        FamilyId::Gpu,
    ];

    /// Whether this build of the profiler implements the family.
    pub(crate) const fn available(self) -> bool {
        matches!(
            self,
            FamilyId::Process
                | FamilyId::System
                | FamilyId::Functions
                | FamilyId::Errors
                | FamilyId::Memory
                | FamilyId::Threads
                | FamilyId::Cpu
                | FamilyId::Gpu
                | FamilyId::Python
        )
    }

    /// Whether `--without` may leave the family out. `process` tells the session when the
    /// target ends, `system` costs the target nothing, and `functions` is what `--func` asks for.
    pub(crate) const fn optional(self) -> bool {
        matches!(
            self,
            FamilyId::Errors
                | FamilyId::Cpu
                | FamilyId::Memory
                | FamilyId::Threads
                | FamilyId::Gpu
                | FamilyId::Python
        )
    }

    /// The family called `name`.
    pub(crate) fn from_name(name: &str) -> Option<FamilyId> {
        FamilyId::ALL.into_iter().find(|f| f.name() == name)
    }

    pub(crate) const fn name(self) -> &'static str {
        match self {
            FamilyId::Process => "process",
            FamilyId::System => "system",
            FamilyId::Functions => "functions",
            FamilyId::Errors => "errors",
            FamilyId::Cpu => "cpu",
            FamilyId::Memory => "memory",
            FamilyId::Threads => "threads",
            FamilyId::Gpu => "gpu",
            FamilyId::Python => "python",
        }
    }
}

impl fmt::Display for FamilyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The families a level selects, less those left out with `--without`.
pub(crate) fn selected(level: Level, without: &[FamilyId]) -> Vec<FamilyId> {
    level
        .families()
        .iter()
        .copied()
        .filter(|f| !without.contains(f))
        .collect()
}

impl Level {
    /// The level table: the families each level selects.
    pub(crate) const fn families(self) -> &'static [FamilyId] {
        use FamilyId::*;
        match self {
            Level::Basic => &[Process, System, Errors, Python],
            Level::Detailed => &[Process, System, Errors, Python, Functions],
            Level::Profiling => &[Process, System, Errors, Python, Functions, Cpu],
            Level::Memory => &[Process, System, Errors, Python, Memory, Gpu],
            Level::Threading => &[Process, System, Errors, Python, Threads],
            Level::Full => &[
                Process, System, Errors, Python, Functions, Cpu, Memory, Threads, Gpu,
            ],
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Level::Basic => "basic",
            Level::Detailed => "detailed",
            Level::Profiling => "profiling",
            Level::Memory => "memory",
            Level::Threading => "threading",
            Level::Full => "full",
        }
    }

    pub(crate) const ALL: [Level; 6] = [
        Level::Basic,
        Level::Detailed,
        Level::Profiling,
        Level::Memory,
        Level::Threading,
        Level::Full,
    ];
}

/// The `profiler levels` table.
pub(crate) fn describe() -> String {
    let mut out = String::from("level      families (* = not built yet: attaches nothing)\n");
    for level in Level::ALL {
        let families: Vec<String> = level
            .families()
            .iter()
            .map(|f| {
                if f.available() {
                    f.name().to_string()
                } else {
                    format!("{}*", f.name())
                }
            })
            .collect();
        out.push_str(&format!("{:<10} {}\n", level.name(), families.join(", ")));
    }
    out.push_str(
        "\n`--func` adds the functions family at any level; `--without FAMILY` leaves one out.\n",
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_level_has_process_and_full_has_every_family() {
        for level in Level::ALL {
            assert!(level.families().contains(&FamilyId::Process), "{level:?}");
        }
        for family in FamilyId::ALL {
            assert!(Level::Full.families().contains(&family), "{family}");
            assert_eq!(FamilyId::from_name(family.name()), Some(family));
        }
    }

    #[test]
    fn without_leaves_out_only_the_named_families() {
        let detailed = selected(Level::Detailed, &[FamilyId::Errors]);
        assert_eq!(
            detailed,
            [
                FamilyId::Process,
                FamilyId::System,
                FamilyId::Python,
                FamilyId::Functions
            ]
        );
        assert_eq!(selected(Level::Basic, &[]), Level::Basic.families());
        // Leaving out a family the level does not select changes nothing.
        assert_eq!(
            selected(Level::Basic, &[FamilyId::Memory]),
            Level::Basic.families()
        );
    }
}
