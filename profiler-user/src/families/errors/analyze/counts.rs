//! Exact failure counts per kind, (syscall, errno), and what they are made of.
//!
//! The kernel counts every failed syscall of the target by kind (`FAILURES`), and details only
//! some: the first `DETAIL_BURST` of a kind, then at most one per `DETAIL_INTERVAL_NS`, and
//! never EAGAIN, EINTR or EINPROGRESS. So the detailed failures are examples, and the counts
//! come from here:
//!
//! - [`FailureSeries`]: the cumulative count of each kind, read from the kernel on every tick
//!   of the collection loop (about every 200 ms) and once more at the end: the exact total of
//!   each kind, and how it grew (so how many failed in the first half of the run).
//! - [`Observations`]: the class of each detailed failure of a kind (a benign pattern, or an
//!   error's pattern, category and severity), as the analyzer classified it.
//! - [`apportion`]: each kind's exact count over the classes of its failures. A kind whose
//!   detailed failures all share one class has its whole count in that class, exactly. One whose
//!   failures were all detailed (no more than the burst) is split exactly too. Otherwise the
//!   failures that were not detailed are split like the ones detailed after the burst (a sample
//!   in time): that split is an estimate, and says so (`exact`). A kind with no detailed failure
//!   at all is classified from (syscall, errno) alone.

use std::collections::{BTreeMap, HashMap};

use crate::report::errors::{Category, Severity};

/// (syscall name, errno).
pub(crate) type Kind = (String, i32);

/// Points kept per kind before the series is thinned (every other point dropped).
const MAX_POINTS: usize = 4096;

/// The cumulative failure count of each kind over the run.
#[derive(Debug, Clone, Default)]
pub(crate) struct FailureSeries {
    /// When every count was zero (the probes were attached), ns.
    start_ns: Option<u64>,
    /// When the counts were last read, ns.
    last_read_ns: Option<u64>,
    kinds: BTreeMap<Kind, Series>,
}

/// One kind's cumulative count: `(ns, count)` points where it changed, and the last time each
/// value was read, so that a count that stayed flat between two reads stays flat in between.
#[derive(Debug, Clone, Default)]
struct Series {
    points: Vec<(u64, u64)>,
    /// When the last point's count was last read.
    seen_ns: u64,
}

impl Series {
    fn push(&mut self, t_ns: u64, count: u64) {
        match self.points.last().copied() {
            None => self.points.push((t_ns, count)),
            Some((_, last)) if count <= last => {}
            Some((last_ns, last)) => {
                if self.seen_ns > last_ns {
                    self.points.push((self.seen_ns, last));
                }
                self.points.push((t_ns, count));
                if self.points.len() > MAX_POINTS {
                    self.thin();
                }
            }
        }
        self.seen_ns = self.seen_ns.max(t_ns);
    }

    /// Drops every other point, keeping the first and the last.
    fn thin(&mut self) {
        let last = self.points.len() - 1;
        let mut i = 0;
        self.points.retain(|_| {
            let keep = i % 2 == 0 || i == last;
            i += 1;
            keep
        });
    }

    /// The count at `t_ns`, linear between the points around it.
    fn at(&self, t_ns: u64) -> f64 {
        let Some(&(first_ns, _)) = self.points.first() else {
            return 0.0;
        };
        if t_ns < first_ns {
            return 0.0;
        }
        let after = self.points.partition_point(|&(t, _)| t <= t_ns);
        let (t0, c0) = self.points[after - 1];
        match self.points.get(after) {
            None => c0 as f64,
            Some(&(t1, c1)) => c0 as f64 + (c1 - c0) as f64 * (t_ns - t0) as f64 / (t1 - t0) as f64,
        }
    }

    fn total(&self) -> u64 {
        self.points.last().map_or(0, |p| p.1)
    }

    /// When the count was first read above zero, and when it was first read at its total.
    fn first_last(&self) -> Option<(u64, u64)> {
        let total = self.total();
        let first = self.points.iter().find(|p| p.1 > 0)?.0;
        let last = self.points.iter().find(|p| p.1 == total)?.0;
        Some((first, last))
    }
}

impl FailureSeries {
    /// The counts are all zero at `t_ns` (the probes were just attached).
    pub(crate) fn start(&mut self, t_ns: u64) {
        self.start_ns = Some(t_ns);
    }

    /// The cumulative counts read at `t_ns`; a kind not in `counts` has not failed yet.
    pub(crate) fn record(&mut self, t_ns: u64, counts: &BTreeMap<Kind, u64>) {
        let zero_at = self.last_read_ns.or(self.start_ns);
        for (kind, &count) in counts {
            let series = self.kinds.entry(kind.clone()).or_insert_with(|| {
                let mut s = Series::default();
                if let Some(t) = zero_at.filter(|t| *t < t_ns) {
                    s.push(t, 0);
                }
                s
            });
            series.push(t_ns, count);
        }
        self.last_read_ns = Some(t_ns);
    }

    /// The exact total of each kind.
    pub(crate) fn totals(&self) -> BTreeMap<Kind, u64> {
        self.kinds
            .iter()
            .map(|(k, s)| (k.clone(), s.total()))
            .collect()
    }

    fn get(&self, kind: &Kind) -> Option<&Series> {
        self.kinds.get(kind)
    }
}

/// What one failure was classified as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Class {
    /// An expected failure: the id of the benign pattern it matched.
    Benign(String),
    /// An error: the pattern it matched (None: the fallback rules classified it), and its
    /// category and severity.
    Error {
        pattern: Option<String>,
        category: Category,
        severity: Severity,
    },
}

/// The classes of the detailed failures of each kind, in the order they came.
#[derive(Debug, Clone, Default)]
pub(crate) struct Observations {
    classes: Vec<Class>,
    index: HashMap<Class, u32>,
    /// Per kind: `(ns, class index)` of each detailed failure.
    kinds: BTreeMap<Kind, Vec<(u64, u32)>>,
}

impl Observations {
    /// A detailed failure of `syscall` with `errno` at `t_ns`, classified as `class`.
    pub(crate) fn observe(&mut self, syscall: &str, errno: i32, t_ns: u64, class: Class) {
        let next = self.classes.len() as u32;
        let i = *self.index.entry(class.clone()).or_insert(next);
        if i == next {
            self.classes.push(class);
        }
        self.kinds
            .entry((syscall.to_string(), errno))
            .or_default()
            .push((t_ns, i));
    }
}

/// The failures of one kind in one class.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ClassCount {
    pub kind: Kind,
    pub class: Class,
    pub count: u64,
    /// How many of them came before the middle of the run (estimated for the failures that
    /// were not detailed, from how the kind's count grew).
    pub first_half: f64,
    /// When the first and the last of them were seen, ns: detailed failures' times, or for a
    /// kind never detailed the reads that first saw it and first saw its total.
    pub first_ns: u64,
    pub last_ns: u64,
    /// Whether `count` is exact: false when the failures of the kind that were not detailed
    /// were split over several classes.
    pub exact: bool,
}

/// Every kind's exact count (`series`, or the detailed failures alone for a kind it lacks) over
/// the classes of its failures. The first `burst` detailed failures of a kind are the kernel's
/// burst; the ones after it sample the rest. `mid_ns` is the middle of the run; `classify`
/// classifies a kind that was never detailed from (syscall, errno) alone.
pub(crate) fn apportion(
    obs: &Observations,
    series: &FailureSeries,
    burst: usize,
    mid_ns: u64,
    mut classify: impl FnMut(&str, i32) -> Class,
) -> Vec<ClassCount> {
    let mut kinds: Vec<&Kind> = obs.kinds.keys().chain(series.kinds.keys()).collect();
    kinds.sort();
    kinds.dedup();
    let mut out = Vec::new();
    for kind in kinds {
        let events = obs.kinds.get(kind).map_or(&[][..], Vec::as_slice);
        let counted = series.get(kind);
        if events.is_empty() {
            let Some(s) = counted.filter(|s| s.total() > 0) else {
                continue;
            };
            let (first_ns, last_ns) = s.first_last().unwrap_or_default();
            out.push(ClassCount {
                kind: kind.clone(),
                class: classify(&kind.0, kind.1),
                count: s.total(),
                first_half: s.at(mid_ns).min(s.total() as f64),
                first_ns,
                last_ns,
                exact: true,
            });
            continue;
        }
        out.extend(split_kind(
            kind,
            events,
            counted,
            burst,
            mid_ns,
            &obs.classes,
        ));
    }
    out
}

/// Per class of one kind's detailed failures.
#[derive(Debug, Clone, Copy, Default)]
struct Tally {
    detailed: u64,
    detailed_first_half: u64,
    sampled: u64,
    sampled_first_half: u64,
    first_ns: u64,
    last_ns: u64,
}

/// One kind with detailed failures `events`, over their classes.
fn split_kind(
    kind: &Kind,
    events: &[(u64, u32)],
    counted: Option<&Series>,
    burst: usize,
    mid_ns: u64,
    classes: &[Class],
) -> Vec<ClassCount> {
    let n = events.len() as u64;
    let total = counted.map_or(0, Series::total).max(n);
    let undetailed = total - n;
    // The failures after the burst were detailed at a bounded rate: a sample in time of those
    // that were not. Without any, the burst itself is the sample.
    let sample_from = if events.len() > burst { burst } else { 0 };
    let mut order: Vec<u32> = Vec::new();
    let mut tallies: HashMap<u32, Tally> = HashMap::new();
    for (i, &(t, c)) in events.iter().enumerate() {
        let tally = tallies.entry(c).or_insert_with(|| {
            order.push(c);
            Tally {
                first_ns: t,
                last_ns: t,
                ..Tally::default()
            }
        });
        tally.detailed += 1;
        tally.first_ns = tally.first_ns.min(t);
        tally.last_ns = tally.last_ns.max(t);
        let early = t < mid_ns;
        tally.detailed_first_half += u64::from(early);
        if i >= sample_from {
            tally.sampled += 1;
            tally.sampled_first_half += u64::from(early);
        }
    }
    let weights: Vec<u64> = order.iter().map(|c| tallies[c].sampled).collect();
    let shares = split(undetailed, &weights);
    // How many of the failures not detailed came in the first half: the count at the middle
    // (from the reads) less the detailed ones before it.
    let detailed_early: u64 = tallies.values().map(|t| t.detailed_first_half).sum();
    let undetailed_early = match counted {
        Some(s) => (s.at(mid_ns) - detailed_early as f64).clamp(0.0, undetailed as f64),
        None => 0.0,
    };
    let sampled_early: u64 = tallies.values().map(|t| t.sampled_first_half).sum();
    let sampled: u64 = weights.iter().sum();
    // Exact unless the failures not detailed went to several classes.
    let mixed = undetailed > 0 && weights.iter().filter(|w| **w > 0).count() > 1;
    order
        .iter()
        .zip(shares)
        .map(|(c, share)| {
            let t = tallies[c];
            // The undetailed early failures split like the sample's early ones.
            let early_share = if sampled_early > 0 {
                t.sampled_first_half as f64 / sampled_early as f64
            } else {
                t.sampled as f64 / sampled.max(1) as f64
            };
            let count = t.detailed + share;
            let first_half =
                (t.detailed_first_half as f64 + undetailed_early * early_share).min(count as f64);
            ClassCount {
                kind: kind.clone(),
                class: classes[*c as usize].clone(),
                count,
                first_half,
                first_ns: t.first_ns,
                last_ns: t.last_ns,
                exact: !mixed,
            }
        })
        .collect()
}

/// `n` split in proportion to `weights`, in whole numbers that add up to `n` (largest
/// remainder; ties go to the earlier weight). All to the first when every weight is zero.
fn split(n: u64, weights: &[u64]) -> Vec<u64> {
    let sum: u64 = weights.iter().sum();
    if sum == 0 {
        let mut out = vec![0; weights.len()];
        if let Some(first) = out.first_mut() {
            *first = n;
        }
        return out;
    }
    let exact: Vec<(u64, u128)> = weights
        .iter()
        .map(|&w| {
            let p = u128::from(n) * u128::from(w);
            ((p / u128::from(sum)) as u64, p % u128::from(sum))
        })
        .collect();
    let mut out: Vec<u64> = exact.iter().map(|e| e.0).collect();
    let left = n - out.iter().sum::<u64>();
    let mut by_remainder: Vec<usize> = (0..weights.len()).collect();
    by_remainder.sort_by(|&a, &b| exact[b].1.cmp(&exact[a].1).then(a.cmp(&b)));
    for &i in by_remainder.iter().take(left as usize) {
        out[i] += 1;
    }
    out
}

#[cfg(test)]
#[path = "counts_tests.rs"]
mod tests;
