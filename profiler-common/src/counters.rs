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
}

/// Number of counter slots.
pub const COUNTER_SLOTS: u32 = 9;

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
        }
    }

    /// Whether a non-zero value means data was lost (as opposed to an expected condition).
    pub const fn is_loss(self) -> bool {
        !matches!(self, Counter::AbandonedCalls | Counter::UnmatchedReturns)
    }
}
