//! Loss and anomaly counters, one slot each in the per-CPU `COUNTERS` array.
//!
//! Nothing the kernel side drops is silent: each place that can lose data bumps its slot here and
//! the report carries the totals.

/// Slots of the `COUNTERS` per-CPU array.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Counter {
    /// A call was not timed because the thread's shadow stack was full (recursion deeper than
    /// [`crate::functions::MAX_DEPTH`] traced frames).
    ShadowStackOverflow = 0,
    /// A traced call whose return was never seen (longjmp, exception or panic unwinding through
    /// it): dropped from the shadow stack without a duration.
    AbandonedCalls = 1,
    /// A return probe fired with no matching entry (the call began before attach).
    UnmatchedReturns = 2,
    /// The per-thread shadow-stack map was full: calls of a new thread were not timed.
    ThreadStackMapFull = 3,
    /// The per-thread statistics map was full: a thread's breakdown is incomplete.
    ThreadStatsMapFull = 4,
    /// The callers map was full: some callers are missing.
    CallerMapFull = 5,
    /// A sampled call stack could not be stored (stack map full or unreadable stack).
    StackSampleFailed = 6,
    /// The ring buffer was full: ordered events were lost.
    RingBufferFull = 7,
    /// The syscall-failure count map was full: some failures are not counted.
    FailureMapFull = 8,
    /// The outstanding-allocation map was full: a block was not tracked (its release cannot be
    /// seen; the site counts it as untracked).
    MemAllocMapFull = 9,
    /// The allocation-site map was full: some allocations are not attributed to a site.
    MemSiteMapFull = 10,
    /// An allocation site's user stack could not be read or stored (its site keeps the caller).
    MemStackFailed = 11,
    /// The per-thread pending-allocation map was full: an allocator call was not tracked.
    MemPendingMapFull = 12,
    /// A release of a block not allocated while attached (made before attach): ignored.
    MemUnknownFrees = 13,
    /// A block was returned at an address still recorded as outstanding: its release was not
    /// seen, so the old block is counted as freed.
    MemMissedFrees = 14,
    /// A `munmap` of the start of a tracked anonymous mapping that leaves the rest mapped.
    MemPartialUnmaps = 15,
    /// Bytes the target wrote to fd 1 or 2 that were not captured: the middle of a write longer
    /// than [`crate::errors::OUTPUT_KEEP`], the rest of a write when the ring buffer was full,
    /// bytes that could not be read. A byte count, where the others count events.
    OutputTruncatedBytes = 16,
    /// A target thread whose slot of the threads family's per-thread array another thread holds:
    /// its scheduling and locks are not accounted.
    ThreadSlotTaken = 17,
    /// A blocking, waiting or lock-taking stack could not be read or stored.
    ThreadStackFailed = 18,
    /// A threads-family map (block stacks, locks, waits, holders, edges) was full.
    ThreadMapFull = 19,
    /// A lock taken while a thread already held the most tracked locks (`HELD_MAX`): its hold
    /// time and lock-order edges are not seen.
    HeldLocksOverflow = 20,
    /// The growth attribution's site map was full: write faults at new sites are not counted.
    MemGrowthMapFull = 21,
    /// A target thread switched out again with no switch-in reported in between (the kernel
    /// ran it again without a `sched_switch` naming it as the next task): its time off the CPU
    /// was closed at its wake-up (or at the second switch-out), and a block counted.
    ThreadSwitchInUnseen = 22,
    /// The CUDA calls in progress map was full: a call's return is not recorded.
    GpuPendingMapFull = 23,
    /// A CUDA map (outstanding blocks, sites, call statistics) was full: a block or a call was
    /// not recorded.
    GpuMapFull = 24,
}

/// Map names in the eBPF object (see [`crate::names`]): profiler-ebpf names each map static
/// exactly so.
pub mod maps {
    /// The per-CPU array of [`super::Counter`] slots.
    pub const COUNTERS: &str = "COUNTERS";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[maps::COUNTERS];
/// Every program of the module (none).
pub const PROGRAMS: &[&str] = &[];

/// Number of counter slots.
pub const COUNTER_SLOTS: u32 = 25;

impl Counter {
    /// All counters, in slot order.
    pub const ALL: [Counter; COUNTER_SLOTS as usize] = [
        Counter::ShadowStackOverflow,
        Counter::AbandonedCalls,
        Counter::UnmatchedReturns,
        Counter::ThreadStackMapFull,
        Counter::ThreadStatsMapFull,
        Counter::CallerMapFull,
        Counter::StackSampleFailed,
        Counter::RingBufferFull,
        Counter::FailureMapFull,
        Counter::MemAllocMapFull,
        Counter::MemSiteMapFull,
        Counter::MemStackFailed,
        Counter::MemPendingMapFull,
        Counter::MemUnknownFrees,
        Counter::MemMissedFrees,
        Counter::MemPartialUnmaps,
        Counter::OutputTruncatedBytes,
        Counter::ThreadSlotTaken,
        Counter::ThreadStackFailed,
        Counter::ThreadMapFull,
        Counter::HeldLocksOverflow,
        Counter::MemGrowthMapFull,
        Counter::ThreadSwitchInUnseen,
        Counter::GpuPendingMapFull,
        Counter::GpuMapFull,
    ];

    /// The name used for this counter in the report.
    pub const fn name(self) -> &'static str {
        match self {
            Counter::ShadowStackOverflow => "shadow_stack_overflow",
            Counter::AbandonedCalls => "abandoned_calls",
            Counter::UnmatchedReturns => "unmatched_returns",
            Counter::ThreadStackMapFull => "thread_stack_map_full",
            Counter::ThreadStatsMapFull => "thread_stats_map_full",
            Counter::CallerMapFull => "caller_map_full",
            Counter::StackSampleFailed => "stack_sample_failed",
            Counter::RingBufferFull => "ring_buffer_full",
            Counter::FailureMapFull => "failure_map_full",
            Counter::MemAllocMapFull => "memory_alloc_map_full",
            Counter::MemSiteMapFull => "memory_site_map_full",
            Counter::MemStackFailed => "memory_stack_failed",
            Counter::MemPendingMapFull => "memory_pending_map_full",
            Counter::MemUnknownFrees => "memory_unknown_frees",
            Counter::MemMissedFrees => "memory_missed_frees",
            Counter::MemPartialUnmaps => "memory_partial_unmaps",
            Counter::OutputTruncatedBytes => "output_truncated_bytes",
            Counter::ThreadSlotTaken => "threads_slot_taken",
            Counter::ThreadStackFailed => "threads_stack_failed",
            Counter::ThreadMapFull => "threads_map_full",
            Counter::HeldLocksOverflow => "threads_held_locks_overflow",
            Counter::MemGrowthMapFull => "memory_growth_map_full",
            Counter::ThreadSwitchInUnseen => "threads_switch_in_unseen",
            Counter::GpuPendingMapFull => "gpu_pending_map_full",
            Counter::GpuMapFull => "gpu_map_full",
        }
    }

    /// What the counter counts, for messages: `byte(s)` or `event(s)`.
    pub const fn unit(self) -> &'static str {
        match self {
            Counter::OutputTruncatedBytes => "byte(s)",
            _ => "event(s)",
        }
    }

    /// Whether a non-zero value means data was lost (as opposed to an expected condition).
    pub const fn is_loss(self) -> bool {
        !matches!(
            self,
            Counter::AbandonedCalls
                | Counter::UnmatchedReturns
                | Counter::MemUnknownFrees
                | Counter::MemPartialUnmaps
                | Counter::ThreadSwitchInUnseen
        )
    }
}
