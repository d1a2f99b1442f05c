//! The collection loop: drain the ring buffer, sample /proc, and decide when profiling ends
//! (Ctrl-C, SIGTERM, `--duration`, or the target exiting).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{MapData, RingBuf},
};
use profiler_common::event::{EventHeader, maps};
use tokio::{
    io::unix::AsyncFd,
    signal::unix::{SignalKind, signal},
    time::{MissedTickBehavior, interval, sleep_until},
};

use crate::{
    bpf,
    family::{Family, Flow, TickContext},
    overhead::Governor,
    stop,
    symbols::symbolize::MappingSnapshot,
    top::Live,
    tracee::{
        self, Sample,
        hold::{ExitHold, State},
        sample,
        spawn::try_wait,
    },
};

/// How often /proc is sampled once the target has settled.
pub(crate) const SAMPLE_INTERVAL: Duration = Duration::from_millis(200);
/// Early on, the target's mappings change fast (the loader maps its libraries): look often. The
/// families' fast ticks (`Family::on_fast_tick`) come this often for the whole run.
const FAST_INTERVAL: Duration = Duration::from_millis(20);
const EARLY_PERIOD: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndReason {
    Duration,
    Interrupted,
    TargetExited,
    Error,
}

impl EndReason {
    pub(crate) fn name(self) -> &'static str {
        match self {
            EndReason::Duration => "duration",
            EndReason::Interrupted => "interrupted",
            EndReason::TargetExited => "target_exited",
            EndReason::Error => "error",
        }
    }
}

/// What the loop gathered.
#[derive(Debug, Default)]
pub(crate) struct Collected {
    pub end_reason: Option<EndReason>,
    pub exited: bool,
    /// `wait(2)` status of the target, when it exited and the status is known.
    pub exit_status: Option<i32>,
    pub samples: Vec<Sample>,
    /// The target's total CPU time at its exit, seconds (from wait4, `run` mode).
    pub final_cpu_time: Option<f64>,
    /// When profiling ended (before the probes were taken down).
    pub ended: Option<Instant>,
}

impl Collected {
    /// CPU time the target used while profiled, seconds.
    pub(crate) fn target_cpu_time(&self) -> f64 {
        let first = self.samples.first().map_or(0.0, |s| s.cpu_time);
        self.final_cpu_time
            .or_else(|| self.samples.last().map(|s| s.cpu_time))
            .map_or(0.0, |end| end - first)
            .max(0.0)
    }
}

/// What the loop watches.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Watch {
    pub pid: i32,
    /// The target is our child (`run`): reap it for its exact status.
    pub child: bool,
    pub start: Instant,
    /// `--duration`.
    pub duration: Option<Duration>,
}

/// Runs until profiling ends; everything gathered is in `out` even on error.
pub(crate) async fn collect(
    ebpf: &mut Ebpf,
    watch: Watch,
    out: &mut Collected,
    maps: &mut MappingSnapshot,
    families: &mut [Box<dyn Family>],
    mut governor: Option<&mut Governor>,
    mut live: Option<&mut Live>,
) -> anyhow::Result<()> {
    let Watch {
        pid,
        child,
        start,
        duration,
    } = watch;
    let ring = RingBuf::try_from(ebpf.take_map(maps::EVENTS).context("EVENTS map missing")?)?;
    // SAFETY: the ring buffer owns its map fd, which stays open and the same for as long as the
    // AsyncFd (which owns the ring buffer) lives.
    let mut ring = unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) }
        .map_err(|e| anyhow::anyhow!("failed to poll the ring buffer: {e}"))?;
    // Listening from here on; a signal that came before (see `stop`) ends the window now.
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sigterm = signal(SignalKind::terminate())?;
    // The `run` command is held at its exit until the families have read what they need of
    // its memory, and after each exec until they are ready for the new program (see
    // `tracee::hold`); SIGCHLD says when it stops (or for a signal).
    let mut sigchld = signal(SignalKind::child())?;
    let mut hold = child.then(|| ExitHold::seize(pid));
    let deadline = duration.map(|d| tokio::time::Instant::from_std(start + d));
    let mut fast = interval(FAST_INTERVAL);
    fast.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut tick = interval(SAMPLE_INTERVAL);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    out.samples.extend(sample(pid, start));

    let reason = loop {
        if stop::requested() {
            break EndReason::Interrupted;
        }
        let mut child_changed = false;
        tokio::select! {
            _ = sigchld.recv(), if hold.is_some() => child_changed = true,
            _ = sigint.recv() => break EndReason::Interrupted,
            _ = sigterm.recv() => break EndReason::Interrupted,
            _ = async { sleep_until(deadline.expect("guarded")).await }, if deadline.is_some() => {
                break EndReason::Duration;
            }
            guard = ring.readable_mut() => {
                let mut guard = guard.context("failed to poll the ring buffer")?;
                let exited = drain(guard.get_inner_mut(), out, families);
                guard.clear_ready();
                if exited {
                    break EndReason::TargetExited;
                }
            }
            _ = fast.tick() => {
                // Only a command just started is still mapping its libraries.
                if child && start.elapsed() < EARLY_PERIOD {
                    maps.refresh(pid);
                }
                let ctx = TickContext { pid };
                for family in families.iter_mut() {
                    family.on_fast_tick(ebpf, &ctx);
                }
                if live.as_deref_mut().is_some_and(Live::poll) {
                    break EndReason::Interrupted;
                }
            }
            _ = tick.tick() => {
                maps.refresh(pid);
                let ctx = TickContext { pid };
                for family in families.iter_mut() {
                    family.on_tick(ebpf, &ctx);
                }
                if let Some(governor) = governor.as_deref_mut() {
                    governor.tick(ebpf, families);
                }
                out.samples.extend(sample(pid, start));
                if let Some(live) = live.as_deref_mut().filter(|l| l.due()) {
                    let detached = governor.as_deref().map_or(&[][..], Governor::detached);
                    live.refresh(ebpf, families, maps, &out.samples, detached);
                }
                if child {
                    child_changed = true;
                } else if !tracee::alive(pid) {
                    break EndReason::TargetExited;
                }
            }
        }
        if child_changed && let Some(hold) = hold.as_mut() {
            match hold.poll() {
                State::Running => {}
                State::Executed => {
                    // A new program, not run yet: what the families need of it is set now.
                    maps.refresh(pid);
                    let ctx = TickContext { pid };
                    for family in families.iter_mut() {
                        family.on_exec_stop(ebpf, &ctx);
                    }
                    hold.resume();
                }
                State::Exiting => {
                    // Its memory is whole until it is released: what is in the ring buffer
                    // first, then each family's last reads.
                    drain(ring.get_mut(), out, families);
                    let ctx = TickContext { pid };
                    for family in families.iter_mut() {
                        family.on_exit_stop(ebpf, &ctx);
                    }
                    hold.release();
                }
                State::Exited(status, cpu) => {
                    out.exit_status = Some(status);
                    out.final_cpu_time = Some(cpu);
                    break EndReason::TargetExited;
                }
            }
        }
    };
    // The terminal is the user's again before anything more is printed.
    if let Some(live) = live {
        live.close();
    }
    // A command that runs on after profiling is let go.
    if let Some(hold) = hold.as_mut() {
        hold.detach();
    }
    // The last look at a target that runs on, with every probe still counting.
    if reason != EndReason::TargetExited && tracee::alive(pid) {
        let ctx = TickContext { pid };
        for family in families.iter_mut() {
            family.before_stop(ebpf, &ctx);
        }
    }
    // The window ends here for every program at once, however many probes are attached.
    let ended = Instant::now();
    let stopped = bpf::stop(ebpf);
    // Events already in the ring buffer belong to the run.
    drain(ring.get_mut(), out, families);
    if reason == EndReason::TargetExited {
        out.exited = true;
        if child && out.final_cpu_time.is_none() {
            // The exit event came first: reap the child for its exact status and CPU time.
            if let Some((status, cpu)) = wait_child(pid).await {
                out.exit_status = Some(status);
                out.final_cpu_time = Some(cpu);
            }
        }
    } else {
        out.samples.extend(sample(pid, start));
    }
    out.end_reason = Some(reason);
    out.ended = Some(ended);
    stopped
}

/// Handles every record in the ring buffer; true once the target's last thread has exited.
fn drain(
    ring: &mut RingBuf<MapData>,
    out: &mut Collected,
    families: &mut [Box<dyn Family>],
) -> bool {
    let mut exited = false;
    while let Some(item) = ring.next() {
        let bytes: &[u8] = &item;
        if bytes.len() < size_of::<EventHeader>() {
            continue;
        }
        let kind = u16::from_ne_bytes([bytes[0], bytes[1]]);
        let Some(family) = families.iter_mut().find(|f| f.handles(kind)) else {
            continue;
        };
        if let Flow::TargetExited(status) = family.on_event(kind, bytes) {
            exited = true;
            out.exited = true;
            if out.exit_status.is_none() {
                out.exit_status = status;
            }
        }
    }
    exited
}

/// Reaps a child that is exiting: its status and CPU time (waits up to a second).
async fn wait_child(pid: i32) -> Option<(i32, f64)> {
    for _ in 0..100 {
        if let Some(done) = try_wait(pid) {
            return Some(done);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}
