//! The `process` family: the target as a whole. `process` watches its threads and its exit
//! (tracepoint `sched_process_exit`): the event that ends a session when the target exits.
//! `system` has no probes: it summarises the /proc samples the collection loop takes (CPU and
//! resident set) and the machine's facts (sysinfo).

pub(crate) mod analyze;
pub(crate) mod kernel;

use std::fmt::Write as _;

use aya::Ebpf;
use profiler_common::{event::EventKind, process::TASK_EXIT_CODE_OFFSET_GLOBAL};

use crate::{
    bpf::{LoadOptions, btf},
    family::{Family, Flow, ReportContext, TargetContext},
    level::FamilyId,
    report::{Machine, Report, text::human_bytes},
};
use kernel::Lifecycle;

/// Thread and process exits.
#[derive(Debug, Default)]
pub(crate) struct Process;

impl Family for Process {
    fn id(&self) -> FamilyId {
        FamilyId::Process
    }

    fn essential(&self) -> bool {
        true
    }

    fn load_options(&self, options: &mut LoadOptions) {
        // Where the kernel keeps a task's exit code, so that the exit status is read in the
        // kernel as the last thread exits (u32::MAX: unknown, no status).
        let offset = btf::kernel_member_offset("task_struct", "exit_code");
        options.global(TASK_EXIT_CODE_OFFSET_GLOBAL, offset);
    }

    fn attach(&mut self, ebpf: &mut Ebpf, _ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        kernel::attach(ebpf)
    }

    fn handles(&self, kind: u16) -> bool {
        kind == EventKind::Process as u16
    }

    fn on_event(&mut self, _kind: u16, bytes: &[u8]) -> Flow {
        match kernel::decode(bytes) {
            Some(Lifecycle::ProcessExit { status }) => Flow::TargetExited(status),
            _ => Flow::Continue,
        }
    }

    fn report(&mut self, _report: &mut Report, _ctx: &mut ReportContext<'_>) {
        // The exit status is the session's: it ends the run, and the report's `target` has it.
    }
}

/// The target's CPU and memory from /proc, and the machine's facts.
#[derive(Debug, Default)]
pub(crate) struct System;

impl Family for System {
    fn id(&self) -> FamilyId {
        FamilyId::System
    }

    fn attach(&mut self, _ebpf: &mut Ebpf, _ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        Ok(0)
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        report.system = analyze::summarize(ctx.samples, ctx.sample_interval, machine());
    }

    fn summary(&self, report: &Report, out: &mut String) {
        if let Some(system) = &report.system {
            let _ = writeln!(
                out,
                "\ncpu {:.1}% average, {:.1}% peak · rss {} peak",
                system.average_cpu,
                system.peak_cpu,
                human_bytes(system.peak_rss)
            );
        }
    }
}

/// The machine's CPUs, memory and kernel.
fn machine() -> Machine {
    use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System as Sys};
    let sys = Sys::new_with_specifics(
        RefreshKind::nothing()
            .with_cpu(CpuRefreshKind::nothing())
            .with_memory(MemoryRefreshKind::nothing().with_ram()),
    );
    Machine {
        cores: sys.cpus().len(),
        physical_cores: Sys::physical_core_count(),
        cpu_model: sys
            .cpus()
            .first()
            .map(|c| c.brand().trim().to_string())
            .unwrap_or_default(),
        memory: sys.total_memory(),
        kernel: Sys::kernel_version().unwrap_or_default(),
    }
}
