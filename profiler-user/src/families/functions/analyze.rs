//! The `functions` analyzer: kernel aggregates of one function -> its profile.

use profiler_common::functions::{
    FuncMem, FuncStats, HIST_BUCKETS, ThreadFunc, ThreadStats, hist_bucket_bounds,
};

use crate::{
    report::functions::{
        CallStack, Caller, FunctionMemory, FunctionProfile, HistBucket, Percentiles, ProbeSite,
        ThreadBreakdown,
    },
    symbols::symbolize::Frame,
};

const NS: f64 = 1e-9;

/// One function's statistics summed over the CPUs (shared statistics) and the threads (their own
/// tables).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct FuncTotals {
    pub entries: u64,
    pub returns: u64,
    /// Timed calls: the times, the histogram and the moments are theirs.
    pub count: u64,
    /// Calls that returned without being timed (see `--time-every`).
    pub untimed: u64,
    pub total_ns: u64,
    pub sum_sq_ns2: u128,
    pub min_ns: Option<u64>,
    pub max_ns: u64,
    pub hist: Vec<u64>,
    /// Probe hits of the family within the timed calls (their own two each included).
    pub probe_hits: u64,
}

impl Default for FuncTotals {
    fn default() -> Self {
        Self {
            entries: 0,
            returns: 0,
            count: 0,
            untimed: 0,
            total_ns: 0,
            sum_sq_ns2: 0,
            min_ns: None,
            max_ns: 0,
            hist: vec![0; HIST_BUCKETS],
            probe_hits: 0,
        }
    }
}

impl FuncTotals {
    /// Sums the per-CPU values of one function's shared statistics.
    pub(crate) fn sum<'a>(per_cpu: impl IntoIterator<Item = &'a FuncStats>) -> Self {
        let mut t = Self::default();
        for s in per_cpu {
            t.add_timed(
                s.entries,
                s.count,
                s.total_ns,
                (s.sum_sq_hi, s.sum_sq_lo),
                s.min_ns_plus1,
                s.max_ns,
            );
            t.returns += s.untimed_returns;
            t.probe_hits += s.probe_hits;
            for (sum, v) in t.hist.iter_mut().zip(s.hist.iter()) {
                *sum += v;
            }
        }
        t
    }

    /// Adds one thread's own totals of the function (its durations are in the shared histogram
    /// already).
    pub(crate) fn add_thread(&mut self, f: &ThreadFunc) {
        self.add_timed(
            f.entries,
            f.count,
            f.total_ns,
            (f.sum_sq_hi, f.sum_sq_lo),
            f.min_ns_plus1,
            f.max_ns,
        );
        self.untimed += f.untimed;
        self.returns += f.untimed;
        self.probe_hits += f.probe_hits;
    }

    /// Calls that returned while profiled, timed or not: exact.
    pub(crate) fn calls(&self) -> u64 {
        self.count + self.untimed
    }

    /// Total time in the function, ns: exact when every call was timed, else the timed calls'
    /// mean times the calls.
    pub(crate) fn estimated_total_ns(&self) -> f64 {
        if self.untimed == 0 || self.count == 0 {
            return self.total_ns as f64;
        }
        self.total_ns as f64 / self.count as f64 * self.calls() as f64
    }

    /// The estimated cost, ns, of the probe hits within the timed calls (`costs` per hit).
    pub(crate) fn probe_ns_in_calls(&self, costs: ProbeCosts) -> f64 {
        let nested = self.probe_hits.saturating_sub(2 * self.count);
        self.count as f64 * costs.own_ns + nested as f64 * costs.nested_hit_ns
    }

    /// The timed calls' time less the cost of the probe hits within them, ns (at least 0).
    pub(crate) fn net_timed_ns(&self, costs: ProbeCosts) -> f64 {
        (self.total_ns as f64 - self.probe_ns_in_calls(costs)).max(0.0)
    }

    fn add_timed(
        &mut self,
        entries: u64,
        count: u64,
        total_ns: u64,
        (sq_hi, sq_lo): (u64, u64),
        min_ns_plus1: u64,
        max_ns: u64,
    ) {
        self.entries += entries;
        // Every timed call is one return hit.
        self.returns += count;
        self.count += count;
        self.total_ns += total_ns;
        self.sum_sq_ns2 += (u128::from(sq_hi) << 64) | u128::from(sq_lo);
        if min_ns_plus1 != 0 {
            let min = min_ns_plus1 - 1;
            self.min_ns = Some(self.min_ns.map_or(min, |m| m.min(min)));
        }
        self.max_ns = self.max_ns.max(max_ns);
    }

    /// Population standard deviation of the durations, ns.
    pub(crate) fn std_dev_ns(&self) -> f64 {
        if self.count == 0 {
            return 0.0;
        }
        // n·Σx² − (Σx)² exactly in 128 bits where it fits: in floating point the two terms cancel
        // and long, steady calls (seconds ± nanoseconds) would lose their spread entirely.
        let n = u128::from(self.count);
        let total = u128::from(self.total_ns);
        let n2 = (self.count as f64) * (self.count as f64);
        if let (Some(a), Some(b)) = (n.checked_mul(self.sum_sq_ns2), total.checked_mul(total)) {
            return (a.saturating_sub(b) as f64 / n2).sqrt();
        }
        let mean = self.total_ns as f64 / self.count as f64;
        (self.sum_sq_ns2 as f64 / self.count as f64 - mean * mean)
            .max(0.0)
            .sqrt()
    }

    /// The non-empty buckets of the histogram, in seconds.
    pub(crate) fn histogram(&self) -> Vec<HistBucket> {
        self.hist
            .iter()
            .enumerate()
            .filter(|(_, n)| **n > 0)
            .map(|(bucket, &count)| {
                let (low, high) = hist_bucket_bounds(bucket);
                HistBucket {
                    low: low as f64 * NS,
                    high: high as f64 * NS,
                    count,
                }
            })
            .collect()
    }

    /// The `q` quantile (0..=1) of the durations, ns: found in the histogram, interpolated inside
    /// its bucket, and kept within the exact minimum and maximum.
    pub(crate) fn quantile_ns(&self, q: f64) -> f64 {
        let total: u64 = self.hist.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = (q.clamp(0.0, 1.0) * total as f64).max(1.0);
        let mut seen = 0u64;
        let mut value = self.max_ns as f64;
        for (bucket, &n) in self.hist.iter().enumerate() {
            if n == 0 {
                continue;
            }
            if (seen + n) as f64 >= rank {
                let (low, high) = hist_bucket_bounds(bucket);
                let within = (rank - seen as f64) / n as f64;
                value = low as f64 + within * (high - low) as f64;
                break;
            }
            seen += n;
        }
        let min = self.min_ns.unwrap_or(0) as f64;
        value.clamp(min, (self.max_ns as f64).max(min))
    }
}

/// What is known of a traced function before any call.
#[derive(Debug, Clone)]
pub(crate) struct FunctionMeta {
    pub name: String,
    pub module: String,
    pub address: u64,
    pub site: ProbeSite,
}

/// Everything the kernel gathered about one function, symbolized.
#[derive(Debug, Clone, Default)]
pub(crate) struct FunctionData {
    pub totals: FuncTotals,
    pub threads: Vec<(u32, ThreadStats)>,
    pub callers: Vec<(Frame, u64)>,
    pub stacks: Vec<(Vec<Frame>, u64)>,
    pub in_flight: u64,
    /// The kernel's memory sums over the returned calls, when the memory family's allocator
    /// probes ran.
    pub memory: Option<FuncMem>,
}

/// A function's memory over its `calls` returned calls, from the kernel's sums (each call's
/// allocations, releases and peak, folded in at its return).
pub(crate) fn function_memory(calls: u64, m: &FuncMem) -> FunctionMemory {
    let per_call = |v: f64| if calls > 0 { v / calls as f64 } else { 0.0 };
    let net = i128::from(m.alloc_bytes) - i128::from(m.freed_bytes);
    FunctionMemory {
        allocations: m.allocs,
        allocated_bytes: m.alloc_bytes,
        frees: m.frees,
        freed_bytes: m.freed_bytes,
        net_bytes_per_call: per_call(net as f64),
        average_memory_peak: per_call(m.peak_sum as f64),
        max_memory_peak: m.max_peak,
    }
}

/// What a function's probes add to the measured time of its calls, ns per hit.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub(crate) struct ProbeCosts {
    /// The call's own entry and return together: the part of their cost within its time.
    pub own_ns: f64,
    /// Each other hit within the call (entries and returns of the traced calls it made).
    pub nested_hit_ns: f64,
}

/// A function's probe cost is said to dominate its measured time from this share on: its raw
/// times are then mostly the probes'.
pub(crate) const PROBE_DOMINATED_SHARE: f64 = 0.5;

/// Most callers and call stacks kept per function in the report.
pub(crate) const MAX_CALLERS: usize = 20;

/// Builds a function's profile. `cost_ns` is the estimated cost of its probes; `costs` what
/// each probe hit within a call adds to its measured time.
pub(crate) fn profile(
    meta: &FunctionMeta,
    data: FunctionData,
    cost_ns: f64,
    costs: ProbeCosts,
) -> FunctionProfile {
    let t = &data.totals;
    let per_call = |ns: f64| {
        if t.count > 0 {
            ns / t.count as f64
        } else {
            0.0
        }
    };
    let average = per_call(t.total_ns as f64);
    let net_timed = t.net_timed_ns(costs);
    let probe_share = if t.total_ns > 0 {
        (1.0 - net_timed / t.total_ns as f64).clamp(0.0, 1.0)
    } else {
        0.0
    };
    // Scaled to every call as the raw total is.
    let scale = if t.count > 0 {
        t.calls() as f64 / t.count as f64
    } else {
        0.0
    };

    let mut threads: Vec<ThreadBreakdown> = data
        .threads
        .iter()
        .map(|(tid, s)| ThreadBreakdown {
            tid: *tid,
            calls: s.count,
            total_time: s.total_ns as f64 * NS,
        })
        .collect();
    threads.sort_by(|a, b| b.calls.cmp(&a.calls).then(a.tid.cmp(&b.tid)));

    // The same call site can appear under several return addresses only if the module was
    // mapped twice; merge by frame.
    let mut callers: Vec<Caller> = Vec::new();
    for (frame, calls) in data.callers {
        match callers.iter_mut().find(|c| c.frame == frame) {
            Some(c) => c.calls += calls,
            None => callers.push(Caller { frame, calls }),
        }
    }
    callers.sort_by(|a, b| {
        b.calls
            .cmp(&a.calls)
            .then(a.frame.function.cmp(&b.frame.function))
    });
    callers.truncate(MAX_CALLERS);

    let mut call_stacks: Vec<CallStack> = Vec::new();
    for (frames, samples) in data.stacks {
        match call_stacks.iter_mut().find(|s| s.frames == frames) {
            Some(s) => s.samples += samples,
            None => call_stacks.push(CallStack { frames, samples }),
        }
    }
    call_stacks.sort_by_key(|s| std::cmp::Reverse(s.samples));
    call_stacks.truncate(MAX_CALLERS);

    let mut site = meta.site.clone();
    site.hits = t.entries + t.returns;
    site.estimated_cost = cost_ns * NS;

    FunctionProfile {
        function_name: meta.name.clone(),
        module: meta.module.clone(),
        address: format!("{:#x}", meta.address),
        total_calls: t.calls(),
        timed_calls: t.count,
        total_time: t.estimated_total_ns() * NS,
        average_time: average * NS,
        min_time: t.min_ns.unwrap_or(0) as f64 * NS,
        max_time: t.max_ns as f64 * NS,
        std_dev_time: t.std_dev_ns() * NS,
        net_total_time: net_timed * scale * NS,
        net_average_time: per_call(net_timed) * NS,
        probe_share_percent: 100.0 * probe_share,
        probe_dominated: probe_share >= PROBE_DOMINATED_SHARE,
        probe_hits_within: t.probe_hits,
        percentiles: Percentiles {
            p50: t.quantile_ns(0.50) * NS,
            p90: t.quantile_ns(0.90) * NS,
            p99: t.quantile_ns(0.99) * NS,
        },
        histogram: t.histogram(),
        in_flight: data.in_flight,
        abandoned: t.entries.saturating_sub(t.calls() + data.in_flight),
        threads,
        callers,
        call_stacks,
        probe: site,
        cpu: None,
        memory: data.memory.map(|m| function_memory(t.calls(), &m)),
    }
}

/// Function `name` at `address` of module `m`, its probe on an emulated `push rbp`.
#[cfg(test)]
pub(crate) fn meta_of(name: &str, address: u64) -> FunctionMeta {
    FunctionMeta {
        name: name.into(),
        module: "m".into(),
        address,
        site: ProbeSite {
            offset: 0,
            instruction: "push rbp".into(),
            class: "emulated".into(),
            reason: String::new(),
            hits: 0,
            estimated_cost: 0.0,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use profiler_common::functions::hist_bucket;

    /// What the kernel side does for one call of a thread without room for the function in its
    /// own table, on one CPU's value.
    fn record(s: &mut FuncStats, ns: u64) {
        s.entries += 1;
        s.count += 1;
        s.total_ns += ns;
        let sq = u128::from(ns) * u128::from(ns);
        let sum = ((u128::from(s.sum_sq_hi) << 64) | u128::from(s.sum_sq_lo)) + sq;
        s.sum_sq_lo = sum as u64;
        s.sum_sq_hi = (sum >> 64) as u64;
        if s.min_ns_plus1 == 0 || ns + 1 < s.min_ns_plus1 {
            s.min_ns_plus1 = ns + 1;
        }
        s.max_ns = s.max_ns.max(ns);
        s.hist[hist_bucket(ns)] += 1;
    }

    /// Calls that freed more than they allocated: a negative net per call; the peaks are per
    /// call, and a call that touched no memory adds 0 to the average.
    #[test]
    fn memory_per_call_divides_by_every_returned_call() {
        let sums = FuncMem {
            allocs: 6,
            alloc_bytes: 600,
            frees: 8,
            freed_bytes: 1000,
            peak_sum: 450,
            max_peak: 300,
        };
        let m = function_memory(3, &sums);
        assert_eq!(
            m,
            FunctionMemory {
                allocations: 6,
                allocated_bytes: 600,
                frees: 8,
                freed_bytes: 1000,
                net_bytes_per_call: -400.0 / 3.0,
                average_memory_peak: 150.0,
                max_memory_peak: 300,
            }
        );
        let none = function_memory(0, &FuncMem::default());
        assert_eq!(none, FunctionMemory::default());
        // Sums past f64's exact integers still give the exact difference.
        let big = FuncMem {
            alloc_bytes: (1 << 60) + 3,
            freed_bytes: 1 << 60,
            ..FuncMem::default()
        };
        assert_eq!(function_memory(1, &big).net_bytes_per_call, 3.0);
    }

    fn zero() -> FuncStats {
        // SAFETY: FuncStats is plain old data; all zeroes is a valid value.
        unsafe { std::mem::zeroed() }
    }

    #[test]
    fn sums_cpus_and_computes_moments() {
        let (mut a, mut b) = (zero(), zero());
        for ns in [100, 200, 300] {
            record(&mut a, ns);
        }
        record(&mut b, 400);
        let t = FuncTotals::sum([&a, &b]);
        assert_eq!(t.count, 4);
        assert_eq!(t.total_ns, 1000);
        assert_eq!(t.min_ns, Some(100));
        assert_eq!(t.max_ns, 400);
        // Population standard deviation of 100, 200, 300, 400.
        assert!((t.std_dev_ns() - 111.803_398_874_989_5).abs() < 1e-6);
    }

    /// What the kernel side does for one call of a thread that has the function in its own table.
    fn record_own(f: &mut ThreadFunc, shared: &mut FuncStats, ns: u64) {
        f.entries += 1;
        f.count += 1;
        f.total_ns += ns;
        let sq = u128::from(ns) * u128::from(ns);
        let sum = ((u128::from(f.sum_sq_hi) << 64) | u128::from(f.sum_sq_lo)) + sq;
        f.sum_sq_lo = sum as u64;
        f.sum_sq_hi = (sum >> 64) as u64;
        if f.min_ns_plus1 == 0 || ns + 1 < f.min_ns_plus1 {
            f.min_ns_plus1 = ns + 1;
        }
        f.max_ns = f.max_ns.max(ns);
        shared.hist[hist_bucket(ns)] += 1;
    }

    #[test]
    fn threads_own_totals_add_to_the_shared_ones() {
        let (mut cpu0, mut cpu1) = (zero(), zero());
        let (mut t1, mut t2) = (ThreadFunc::default(), ThreadFunc::default());
        record_own(&mut t1, &mut cpu0, 100);
        record_own(&mut t1, &mut cpu1, 200);
        record_own(&mut t2, &mut cpu0, 300);
        record(&mut cpu1, 400); // a thread without room for the function
        t2.entries += 1; // a call still running
        cpu0.untimed_returns += 2;
        let mut t = FuncTotals::sum([&cpu0, &cpu1]);
        t.add_thread(&t1);
        t.add_thread(&t2);
        assert_eq!(t.count, 4);
        assert_eq!(t.entries, 5);
        assert_eq!(t.returns, 6);
        assert_eq!(t.total_ns, 1000);
        assert_eq!(t.min_ns, Some(100));
        assert_eq!(t.max_ns, 400);
        assert_eq!(t.hist.iter().sum::<u64>(), 4);
        assert!((t.std_dev_ns() - 111.803_398_874_989_5).abs() < 1e-6);
    }

    /// A function `f` of module `m` at `address`, probed on its first instruction.
    #[test]
    fn untimed_calls_count_and_scale_the_total() {
        let mut shared = zero();
        let mut t1 = ThreadFunc::default();
        record_own(&mut t1, &mut shared, 100);
        record_own(&mut t1, &mut shared, 300);
        // Six more calls that returned without being timed.
        t1.entries += 6;
        t1.untimed += 6;
        let mut t = FuncTotals::sum([&shared]);
        t.add_thread(&t1);
        assert_eq!((t.calls(), t.count, t.returns), (8, 2, 8));
        // Mean of the timed calls (200 ns) times every call.
        assert_eq!(t.estimated_total_ns(), 1600.0);
        let meta = meta_of("f", 0);
        let data = FunctionData {
            totals: t,
            ..Default::default()
        };
        let p = profile(&meta, data, 0.0, ProbeCosts::default());
        assert_eq!((p.total_calls, p.timed_calls, p.abandoned), (8, 2, 0));
        assert!((p.total_time - 1.6e-6).abs() < 1e-15);
        assert!((p.average_time - 2e-7).abs() < 1e-15);
    }

    /// What the probes add to a call's time comes out of the net times: its own pair, and each
    /// nested hit; the raw times stay.
    #[test]
    fn net_times_take_out_the_probes_within_the_calls() {
        let mut shared = zero();
        let mut t1 = ThreadFunc::default();
        // Two timed calls of 10 µs, each with 40 nested hits besides its own two.
        record_own(&mut t1, &mut shared, 10_000);
        record_own(&mut t1, &mut shared, 10_000);
        t1.probe_hits = 2 * 42;
        // Two more calls, not timed: the net total scales as the raw one does.
        t1.entries += 2;
        t1.untimed += 2;
        let mut t = FuncTotals::sum([&shared]);
        t.add_thread(&t1);
        let costs = ProbeCosts {
            own_ns: 1_000.0,
            nested_hit_ns: 100.0,
        };
        // Per call: 1 µs own + 40 × 100 ns nested = 5 µs of the 10.
        assert_eq!(t.probe_ns_in_calls(costs), 10_000.0);
        let p = profile(&meta_of("f", 0), data_of(t.clone()), 0.0, costs);
        assert!((p.average_time - 10e-6).abs() < 1e-15);
        assert!((p.net_average_time - 5e-6).abs() < 1e-15);
        assert!((p.total_time - 40e-6).abs() < 1e-15);
        assert!((p.net_total_time - 20e-6).abs() < 1e-15);
        assert!((p.probe_share_percent - 50.0).abs() < 1e-9);
        assert!(p.probe_dominated, "half the time is the probes'");

        // Dearer probes than the time measured: net 0, not negative; dominated.
        let dear = ProbeCosts {
            own_ns: 20_000.0,
            nested_hit_ns: 0.0,
        };
        let p = profile(&meta_of("f", 0), data_of(t.clone()), 0.0, dear);
        assert_eq!((p.net_total_time, p.net_average_time), (0.0, 0.0));
        assert_eq!(p.probe_share_percent, 100.0);

        // A long call with only its own probes: net is raw less a sliver, not dominated.
        let mut long = zero();
        record(&mut long, 1_000_000);
        long.probe_hits = 2;
        let p = profile(
            &meta_of("f", 0),
            data_of(FuncTotals::sum([&long])),
            0.0,
            costs,
        );
        assert!((p.net_average_time - 999e-6).abs() < 1e-12);
        assert!(!p.probe_dominated);
        assert!((p.probe_share_percent - 0.1).abs() < 1e-9);
    }

    fn data_of(totals: FuncTotals) -> FunctionData {
        FunctionData {
            totals,
            ..Default::default()
        }
    }

    #[test]
    fn sum_of_squares_carries_into_the_high_word() {
        let mut s = zero();
        // Two calls of ~5 s: each square is ~2.5e19 ns², past 2^64.
        record(&mut s, 5_000_000_000);
        record(&mut s, 5_000_000_002);
        let t = FuncTotals::sum([&s]);
        assert!(t.sum_sq_ns2 > u128::from(u64::MAX));
        assert!((t.std_dev_ns() - 1.0).abs() < 1e-3, "{}", t.std_dev_ns());
    }

    #[test]
    fn quantiles_are_within_a_bucket_and_clamped() {
        let mut s = zero();
        for i in 1..=1000u64 {
            record(&mut s, i * 1000); // 1 µs .. 1 ms, uniform
        }
        let t = FuncTotals::sum([&s]);
        for (q, exact) in [(0.5, 500_000.0), (0.9, 900_000.0), (0.99, 990_000.0)] {
            let got = t.quantile_ns(q);
            assert!((got - exact).abs() / exact < 0.07, "q{q}: {got} vs {exact}");
        }
        assert_eq!(t.quantile_ns(1.0), 1_000_000.0);
        assert!(t.quantile_ns(0.0) >= 1000.0);
    }

    #[test]
    fn constant_durations_have_exact_quantiles() {
        let mut s = zero();
        for _ in 0..10 {
            record(&mut s, 12_345);
        }
        let t = FuncTotals::sum([&s]);
        assert_eq!(t.quantile_ns(0.5), 12_345.0);
        assert_eq!(t.std_dev_ns(), 0.0);
    }

    #[test]
    fn histogram_buckets_cover_their_values() {
        for ns in [0, 1, 7, 8, 9, 15, 16, 100, 1023, 1024, 123_456_789, 1 << 46] {
            let (low, high) = hist_bucket_bounds(hist_bucket(ns));
            assert!(low <= ns && ns < high, "{ns} not in [{low}, {high})");
            assert!(
                (high - low) as f64 <= (ns as f64 / 8.0).max(1.0),
                "{ns}: bucket too wide"
            );
        }
        assert_eq!(hist_bucket(u64::MAX), HIST_BUCKETS - 1);
    }

    #[test]
    fn the_reported_histogram_is_the_non_empty_buckets_in_seconds() {
        let mut s = zero();
        record(&mut s, 1000);
        record(&mut s, 1000);
        record(&mut s, 5);
        let h = FuncTotals::sum([&s]).histogram();
        let counts: Vec<u64> = h.iter().map(|b| b.count).collect();
        assert_eq!(counts, [1, 2]);
        assert!(h[1].low <= 1e-6 && 1e-6 < h[1].high, "{h:?}");
    }

    #[test]
    fn profile_reports_in_flight_and_abandoned_apart() {
        let mut s = zero();
        record(&mut s, 1000);
        s.entries += 3; // three more calls began: one still running, two never returned
        let meta = meta_of("f", 0x1000);
        let data = FunctionData {
            totals: FuncTotals::sum([&s]),
            in_flight: 1,
            threads: vec![(
                7,
                ThreadStats {
                    count: 1,
                    total_ns: 1000,
                },
            )],
            ..Default::default()
        };
        let p = profile(&meta, data, 5000.0, ProbeCosts::default());
        assert_eq!(p.total_calls, 1);
        assert_eq!(p.in_flight, 1);
        assert_eq!(p.abandoned, 2);
        assert_eq!(p.probe.hits, 5);
        assert_eq!(p.threads[0].tid, 7);
        assert!((p.probe.estimated_cost - 5e-6).abs() < 1e-12);
    }
}
