//! The `process` family: the target as a whole. `process` watches its threads and its exit
//! (tracepoint `sched_process_exit`): the event that ends a session when the target exits; and,
//! unless `--no-children`, the processes it starts (`sched_process_fork`, `sched_process_exec`),
//! which the kernel side adds to the map of followed processes the errors family filters on.
//! A child's exit is recorded, and does not end the session.
//! `system` has no probes: it summarises the /proc samples the collection loop takes (CPU and
//! resident set) and the machine's facts (sysinfo).

pub(crate) mod analyze;
pub(crate) mod kernel;

use std::fmt::Write as _;

use aya::Ebpf;
use profiler_common::{
    event::EventKind,
    process::{
        FOLLOW_CHILDREN_GLOBAL, TASK_EXIT_CODE_OFFSET_GLOBAL, TASK_PID_OFFSET_GLOBAL,
        TASK_TGID_OFFSET_GLOBAL,
    },
};

use crate::{
    bpf::{LoadOptions, btf},
    families::errors::analyze::sanitize::sanitize_argv,
    family::{Family, Flow, ReportContext, TargetContext},
    level::FamilyId,
    report::{ExitStatus, Machine, ProcessEntry, Report, text::human_bytes},
    tracee,
};
use kernel::Lifecycle;

/// The target's process tree: the target first, then each child it forked while profiled.
#[derive(Debug, Default)]
pub(crate) struct Process {
    /// Whether children are followed (not `--no-children`).
    follow_children: bool,
    target: u32,
    seen: Vec<Seen>,
}

/// One process seen, as recorded (sanitized when reported).
#[derive(Debug, Clone)]
struct Seen {
    pid: u32,
    parent_pid: Option<u32>,
    command: Vec<String>,
    exit_status: Option<i32>,
    followed: bool,
    /// When it was forked and when it exited while profiled (CLOCK_MONOTONIC, ns).
    forked_ns: Option<u64>,
    exited_ns: Option<u64>,
}

impl Process {
    pub(crate) fn new(follow_children: bool) -> Self {
        Self {
            follow_children,
            ..Self::default()
        }
    }

    /// What a record says; the session ends only when the target's last thread exits.
    fn apply(&mut self, event: Lifecycle) -> Flow {
        match event {
            Lifecycle::ProcessExit { pid, status } if pid == self.target => {
                return Flow::TargetExited(status);
            }
            Lifecycle::ProcessExit { pid, status } => {
                if let Some(p) = self.seen.iter_mut().rev().find(|p| p.pid == pid) {
                    p.exit_status = status;
                }
            }
            Lifecycle::Fork {
                parent,
                child,
                comm,
                followed,
            } => {
                // A fork without exec runs its parent's command line; an exec later replaces it.
                let mut command = tracee::cmdline(child as i32);
                if command.is_empty() {
                    command = self
                        .seen
                        .iter()
                        .rev()
                        .find(|p| p.pid == parent)
                        .map(|p| p.command.clone())
                        .filter(|c| !c.is_empty())
                        .unwrap_or_else(|| vec![comm]);
                }
                self.seen.push(Seen {
                    pid: child,
                    parent_pid: Some(parent),
                    command,
                    exit_status: None,
                    followed,
                    forked_ns: None,
                    exited_ns: None,
                });
            }
            Lifecycle::Exec { pid, comm } => {
                let mut command = tracee::cmdline(pid as i32);
                if command.is_empty() {
                    command = vec![comm];
                }
                if let Some(p) = self.seen.iter_mut().rev().find(|p| p.pid == pid) {
                    p.command = command;
                }
            }
            Lifecycle::ThreadExit { .. } => {}
        }
        Flow::Continue
    }
}

impl Family for Process {
    fn id(&self) -> FamilyId {
        FamilyId::Process
    }

    fn essential(&self) -> bool {
        true
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        self.target = ctx.pid as u32;
        self.seen = vec![Seen {
            pid: self.target,
            parent_pid: tracee::parent_pid(ctx.pid),
            command: tracee::cmdline(ctx.pid),
            exit_status: None,
            followed: true,
            forked_ns: None,
            exited_ns: None,
        }];
        Ok(())
    }

    fn load_options(&self, options: &mut LoadOptions) {
        let offset = btf::kernel_member_offset("task_struct", "exit_code");
        options.global(TASK_EXIT_CODE_OFFSET_GLOBAL, offset);
        options.global(
            TASK_PID_OFFSET_GLOBAL,
            btf::kernel_member_offset("task_struct", "pid"),
        );
        options.global(
            TASK_TGID_OFFSET_GLOBAL,
            btf::kernel_member_offset("task_struct", "tgid"),
        );
        options.global(FOLLOW_CHILDREN_GLOBAL, u32::from(self.follow_children));
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        let attached = kernel::attach(ebpf)?;
        if self.follow_children && !ctx.run_mode {
            // Children that exist already (a server's workers, a pool's processes) are followed
            // from now on; the fork program, attached first, sees those forked from here.
            for (child, parent) in tracee::descendants(ctx.pid) {
                let followed = kernel::follow(ebpf, child).is_ok();
                self.seen.push(Seen {
                    pid: child,
                    parent_pid: Some(parent),
                    command: tracee::cmdline(child as i32),
                    exit_status: None,
                    followed,
                    forked_ns: None,
                    exited_ns: None,
                });
            }
        }
        Ok(attached)
    }

    fn note(&self) -> Option<String> {
        Some(if self.follow_children {
            "follows the target's child processes: those it has when profiling starts, and those it \
             forks while profiled (see `processes`)"
                .into()
        } else {
            "the target process only (--no-children)".into()
        })
    }

    fn handles(&self, kind: u16) -> bool {
        kind == EventKind::Process as u16
    }

    fn on_event(&mut self, _kind: u16, bytes: &[u8]) -> Flow {
        let Some(event) = kernel::decode(bytes) else {
            return Flow::Continue;
        };
        let at = kernel::timestamp_ns(bytes);
        let when = match &event {
            Lifecycle::Fork { child, .. } => Some((*child, true)),
            Lifecycle::ProcessExit { pid, .. } => Some((*pid, false)),
            _ => None,
        };
        let flow = self.apply(event);
        if let Some((pid, forked)) = when
            && let Some(p) = self.seen.iter_mut().rev().find(|p| p.pid == pid)
        {
            *if forked {
                &mut p.forked_ns
            } else {
                &mut p.exited_ns
            } = Some(at);
        }
        flow
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        report.processes = self
            .seen
            .iter()
            .map(|p| {
                let target = p.pid == self.target;
                ProcessEntry {
                    pid: p.pid,
                    parent_pid: p.parent_pid,
                    command: if target {
                        report.target.cmdline.clone()
                    } else {
                        sanitize_argv(&p.command)
                    },
                    exit_status: if target {
                        ctx.exit_status
                    } else {
                        p.exit_status
                    }
                    .map(ExitStatus::from_wait_status),
                    followed: p.followed,
                    forked_at: p.forked_ns.map(|ns| seconds_since(ns, ctx.start_ktime_ns)),
                    exited_at: p.exited_ns.map(|ns| seconds_since(ns, ctx.start_ktime_ns)),
                }
            })
            .collect();
    }

    /// The tree seen so far: `report` reads the family and changes nothing.
    fn live(&mut self, _ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        self.report(report, ctx);
    }
}

#[cfg(test)]
mod tests;

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

    /// The /proc samples so far: `report` keeps no state.
    fn live(&mut self, _ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        self.report(report, ctx);
    }
}

/// The system family's block of the printed summary (see `families::summary`).
pub(crate) fn system_summary_block(report: &Report, out: &mut String) {
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

/// Seconds from `start_ns` to `ns` (CLOCK_MONOTONIC); 0 for a time before it.
fn seconds_since(ns: u64, start_ns: u64) -> f64 {
    ns.saturating_sub(start_ns) as f64 * 1e-9
}

/// The machine's CPUs, memory and kernel.
pub(crate) fn machine() -> Machine {
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
        gpus: Vec::new(),
    }
}
