//! Where each thread's time went: on CPU, blocked (by reason), runnable, with the intervals
//! still running at the end closed, the run-queue percentiles, and its top blocking stacks.

use profiler_common::threads::{BLOCK_REASONS, BlockReason, ThreadStats, off_kind};

use super::input::{Ctx, secs};
use crate::report::threads::{BlockedBreakdown, BlockingStack, ThreadEntry};

/// A thread's times, ns, including the intervals still running at `end`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Times {
    pub on_cpu: u64,
    pub blocked: [u64; BLOCK_REASONS],
    pub runnable: u64,
}

impl Times {
    pub(crate) fn blocked_total(&self) -> u64 {
        self.blocked.iter().sum()
    }

    pub(crate) fn off_cpu(&self) -> u64 {
        self.blocked_total() + self.runnable
    }
}

/// The thread's accounted times plus the interval it is in at `end`, which the kernel only
/// adds at the thread's next switch or wake-up. The kernel accounts a block when the wake-up
/// comes (so a woken thread's block is already in `blocked_ns`) and the runnable time when the
/// thread runs again, so at the end:
/// - on CPU (`oncpu_since != 0`): `end - oncpu_since` more on CPU;
/// - blocked and not woken yet: `end - offcpu_since` more blocked, for its current reason;
/// - blocked and woken (`woken_at != 0`): `end - woken_at` more runnable;
/// - preempted (runnable): `end - offcpu_since` more runnable;
/// - exited or never switched out: nothing.
pub(crate) fn times(t: &ThreadStats, end: u64) -> Times {
    let mut times = Times {
        on_cpu: t.on_cpu_ns,
        blocked: t.blocked_ns,
        runnable: t.runnable_ns,
    };
    if t.off_kind == off_kind::DEAD {
        return times;
    }
    if t.oncpu_since != 0 {
        times.on_cpu += end.saturating_sub(t.oncpu_since);
        return times;
    }
    match t.off_kind {
        off_kind::BLOCKED if t.woken_at == 0 => {
            let reason = BlockReason::from_u32(t.reason) as usize;
            times.blocked[reason] += end.saturating_sub(t.offcpu_since);
        }
        // The kernel adds both parts of a block when the thread runs again.
        off_kind::BLOCKED => {
            let reason = BlockReason::from_u32(t.reason) as usize;
            let woke = t.woken_at.clamp(t.offcpu_since, end.max(t.offcpu_since));
            times.blocked[reason] += woke - t.offcpu_since;
            times.runnable += end.saturating_sub(woke);
        }
        off_kind::RUNNABLE => times.runnable += end.saturating_sub(t.offcpu_since),
        _ => {}
    }
    times
}

/// The `p` quantile (0..=1) of a [`log2_bucket`](profiler_common::threads::log2_bucket)
/// histogram, seconds: the upper bound of the bucket it falls in (bucket `b` holds
/// `[2^(b-1), 2^b)` ns, so the answer is within a factor of 2 above the truth); 0 when empty.
pub(crate) fn percentile_from_log2(hist: &[u32], p: f64) -> f64 {
    let total: u64 = hist.iter().map(|&c| u64::from(c)).sum();
    if total == 0 {
        return 0.0;
    }
    // The rank of the sample that is the quantile, 1-based.
    let rank = ((p.clamp(0.0, 1.0) * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0u64;
    for (b, &c) in hist.iter().enumerate() {
        seen += u64::from(c);
        if seen >= rank {
            return if b == 0 { 0.0 } else { secs(1u64 << b.min(63)) };
        }
    }
    unreachable!("the rank is at most the total")
}

/// One entry per thread of the harvest, most on+off-CPU time first (ties by tid).
pub(crate) fn thread_entries(cx: &mut Ctx<'_>) -> Vec<ThreadEntry> {
    let h = cx.h;
    let mut rows: Vec<(u64, ThreadEntry)> = h
        .threads
        .iter()
        .filter(|t| t.tid != 0)
        .map(|t| {
            let tm = times(t, h.end_ktime_ns);
            (tm.on_cpu + tm.off_cpu(), thread_entry(cx, t, &tm))
        })
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.tid.cmp(&b.1.tid)));
    rows.into_iter().map(|(_, e)| e).collect()
}

fn thread_entry(cx: &mut Ctx<'_>, t: &ThreadStats, tm: &Times) -> ThreadEntry {
    let tid = t.tid as u32;
    let at = |reason: BlockReason| secs(tm.blocked[reason as usize]);
    ThreadEntry {
        tid,
        name: cx.name(tid),
        exited: t.off_kind == off_kind::DEAD || cx.r.exited(tid),
        on_cpu_time: secs(tm.on_cpu),
        off_cpu_time: secs(tm.off_cpu()),
        blocked_time: secs(tm.blocked_total()),
        blocked: BlockedBreakdown {
            lock: at(BlockReason::Lock),
            io: at(BlockReason::Io),
            sleep: at(BlockReason::Sleep),
            other: at(BlockReason::Other),
        },
        runnable_time: secs(tm.runnable),
        runq_latency_p50: percentile_from_log2(&t.runq_hist, 0.5),
        runq_latency_p99: percentile_from_log2(&t.runq_hist, 0.99),
        voluntary_switches: t.voluntary,
        involuntary_switches: t.involuntary,
        migrations: t.migrations,
        blocks: t.blocks.iter().sum(),
        short_blocks: t.short_blocks,
        top_blocking_stacks: blocking_stacks(cx, tid),
    }
}

/// The thread's blocks by stack, most blocked time first, at most `top_stacks`.
fn blocking_stacks(cx: &mut Ctx<'_>, tid: u32) -> Vec<BlockingStack> {
    let h = cx.h;
    let mut mine: Vec<_> = h.blocks.iter().filter(|(k, _)| k.tid == tid).collect();
    mine.sort_by(|a, b| {
        (b.1.total_ns, a.0.reason, a.0.stack, a.0.python).cmp(&(
            a.1.total_ns,
            b.0.reason,
            b.0.stack,
            b.0.python,
        ))
    });
    mine.truncate(cx.o.top_stacks);
    mine.into_iter()
        .map(|(k, t)| BlockingStack {
            reason: BlockReason::from_u32(k.reason).name().into(),
            count: t.count,
            total_time: secs(t.total_ns),
            max_time: secs(t.max_ns),
            stack: cx.frames_with_python(k.stack, k.python),
        })
        .collect()
}
