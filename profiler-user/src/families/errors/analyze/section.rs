//! The `errors` section built from classified events and the kernel's exact counts:
//! aggregation, and the text summary.
//!
//! Every count is of incidents (see `incident`): a failed syscall that is an error is one
//! (failures are counted from the kernel's exact count of their kind, see `counts`); any other
//! error event is one unless it is the consequence of another. `trend` compares how many
//! incidents of a pattern came in the first and in the second half of the run: with `a` and
//! `b`, `(b + 1) / (a + 1)` above 1.5 is `increasing`, below 2/3 `decreasing`, otherwise
//! `stable`; one incident is `single`. For failed syscalls `a` comes from the count the kernel
//! had at the middle of the run (read every tick), not from the detailed failures' times.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use super::{
    counts::{Class, ClassCount},
    incident::Joined,
};
use crate::{
    linux,
    report::errors::{
        BenignCount, Category, ErrorEvent, ErrorsSection, FailureCount, PatternStat,
        PythonExceptionCount, Severity, SignalCount, Source, Trend,
    },
};

/// Sets `syscall_failures` from the kernel's counts: (syscall, errno) -> count.
pub(crate) fn set_failure_counts(
    section: &mut ErrorsSection,
    counts: &BTreeMap<(String, i32), u64>,
) {
    let mut rows: Vec<FailureCount> = counts
        .iter()
        .map(|((syscall, errno), count)| FailureCount {
            syscall: syscall.clone(),
            errno: linux::errno_display(*errno),
            count: *count,
        })
        .collect();
    rows.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then_with(|| a.syscall.cmp(&b.syscall))
    });
    section.syscall_failures = rows;
}

/// Sets `python_exceptions` from the python family's exact counts, and their source's count.
/// Caught exceptions are handled by the program and unhandled ones are the incidents of the
/// tracebacks printed for them: neither adds incidents.
pub(crate) fn set_python_counts(section: &mut ErrorsSection, mut rows: Vec<PythonExceptionCount>) {
    rows.sort_by(|a, b| {
        (b.uncaught > 0)
            .cmp(&(a.uncaught > 0))
            .then_with(|| b.raised.cmp(&a.raised))
            .then_with(|| a.exception.cmp(&b.exception))
            .then_with(|| a.line.cmp(&b.line))
    });
    let raised: u64 = rows.iter().map(|r| r.raised).sum();
    if raised > 0 {
        section
            .by_source
            .insert(Source::PythonException.as_str().into(), raised);
    }
    section.python_exceptions = rows;
}

/// Incident times kept per pattern before halving the sample.
const MAX_TIMES: usize = 4096;

/// What is known of a pattern from events other than failed syscalls.
#[derive(Debug, Clone)]
struct PatternAcc {
    category: Category,
    severity: Severity,
    /// Incidents with an event of the pattern, and events of it.
    incidents: u64,
    occurrences: u64,
    first: f64,
    last: f64,
    /// A sample of the incidents' times: every `stride`-th.
    times: Vec<f64>,
    stride: u64,
}

impl PatternAcc {
    fn new(category: Category, severity: Severity, t: f64) -> Self {
        Self {
            category,
            severity,
            incidents: 0,
            occurrences: 0,
            first: t,
            last: t,
            times: Vec::new(),
            stride: 1,
        }
    }

    fn seen(&mut self, t: f64) {
        self.occurrences += 1;
        self.first = self.first.min(t);
        self.last = self.last.max(t);
    }

    fn incident(&mut self, t: f64) {
        if self.incidents.is_multiple_of(self.stride) {
            self.times.push(t);
            if self.times.len() >= MAX_TIMES {
                self.times = self.times.iter().copied().step_by(2).collect();
                self.stride *= 2;
            }
        }
        self.incidents += 1;
    }

    /// Incidents in the first and the second half (`mid` seconds), from the sample.
    fn halves(&self, mid: f64) -> (f64, f64) {
        let first = self.times.iter().filter(|t| **t < mid).count();
        let second = self.times.len() - first;
        let scale = self.incidents as f64 / self.times.len().max(1) as f64;
        (first as f64 * scale, second as f64 * scale)
    }
}

/// Accumulates events into the section; failed syscalls are counted at the end, from the
/// kernel's counts (see [`Aggregator::section`]).
#[derive(Debug, Clone)]
pub(crate) struct Aggregator {
    max_events: usize,
    events: VecDeque<ErrorEvent>,
    dropped: u64,
    /// Incidents rooted in other events than failed syscalls.
    total: u64,
    patterns: HashMap<String, PatternAcc>,
    /// Incidents by category and severity so far: signed, as an event that raises the severity
    /// of an incident rooted in a failed syscall takes one from a count that comes at the end.
    by_category: BTreeMap<String, i64>,
    by_severity: BTreeMap<String, i64>,
    by_source: BTreeMap<String, u64>,
    benign_signals: HashMap<i32, u64>,
}

impl Aggregator {
    pub(crate) fn new(max_events: usize) -> Self {
        Self {
            max_events,
            events: VecDeque::new(),
            dropped: 0,
            total: 0,
            patterns: HashMap::new(),
            by_category: BTreeMap::new(),
            by_severity: BTreeMap::new(),
            by_source: BTreeMap::new(),
            benign_signals: HashMap::new(),
        }
    }

    /// An error event, with the incident it joined (None: it is a root). A failed syscall is
    /// only kept as an example: its kind's count comes at the end.
    pub(crate) fn add(&mut self, mut event: ErrorEvent, joined: Option<&Joined>) {
        event.caused_by = joined.map(|j| j.root);
        // Failed syscalls and raised exceptions are counted exactly from the kernel's counts.
        if event.source != Source::Syscall && event.source != Source::PythonException {
            self.count(&event, joined);
        }
        if let Some(j) = joined
            && let Some(root) = self.events.iter_mut().rev().find(|e| e.id == j.root)
        {
            root.led_to.push(event.id);
        }
        self.events.push_back(event);
        if self.events.len() > self.max_events {
            self.events.pop_front();
            self.dropped += 1;
        }
    }

    fn count(&mut self, event: &ErrorEvent, joined: Option<&Joined>) {
        *self
            .by_source
            .entry(event.source.as_str().into())
            .or_default() += 1;
        let t = event.timestamp;
        let acc = event.pattern.as_ref().map(|id| {
            let acc = self
                .patterns
                .entry(id.clone())
                .or_insert_with(|| PatternAcc::new(event.category, event.severity, t));
            acc.seen(t);
            acc
        });
        match joined {
            None => {
                self.total += 1;
                *self
                    .by_category
                    .entry(event.category.as_str().into())
                    .or_default() += 1;
                *self
                    .by_severity
                    .entry(event.severity.as_str().into())
                    .or_default() += 1;
                if let Some(acc) = acc {
                    acc.incident(t);
                }
            }
            Some(j) => {
                if let Some(acc) = acc
                    && j.new_pattern
                {
                    acc.incident(t);
                }
                if let Some((from, to)) = j.raised {
                    *self.by_severity.entry(from.as_str().into()).or_default() -= 1;
                    *self.by_severity.entry(to.as_str().into()).or_default() += 1;
                }
            }
        }
    }

    pub(crate) fn add_benign_signal(&mut self, signo: i32) {
        *self.benign_signals.entry(signo).or_default() += 1;
    }

    /// The section for a run that lasted `run_s` seconds from `start_ns`, with the failed
    /// syscalls of every kind over their classes (`failures`, see `counts::apportion`).
    pub(crate) fn section(
        &self,
        run_s: f64,
        start_ns: u64,
        failures: &[ClassCount],
    ) -> ErrorsSection {
        let mut events: Vec<ErrorEvent> = self.events.iter().cloned().collect();
        events.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let mut total = self.total;
        let mut by_category = self.by_category.clone();
        let mut by_severity = self.by_severity.clone();
        let mut by_source = self.by_source.clone();
        // The four sources every target has are always there; raised Python exceptions and
        // failed CUDA calls only when there were any.
        for source in Source::ALL
            .into_iter()
            .filter(|s| !matches!(s, Source::PythonException | Source::Cuda))
        {
            by_source.entry(source.as_str().into()).or_default();
        }
        let mut benign: BTreeMap<(&str, i32, &str), u64> = BTreeMap::new();
        let mut syscall_patterns: BTreeMap<&str, SyscallAcc> = BTreeMap::new();
        let seconds = |ns: u64| ns.saturating_sub(start_ns) as f64 / 1e9;
        for c in failures {
            let (pattern, category, severity) = match &c.class {
                Class::Benign(pattern) => {
                    *benign.entry((&c.kind.0, c.kind.1, pattern)).or_default() += c.count;
                    continue;
                }
                Class::Error {
                    pattern,
                    category,
                    severity,
                } => (pattern, *category, *severity),
            };
            total += c.count;
            *by_category.entry(category.as_str().into()).or_default() += c.count as i64;
            *by_severity.entry(severity.as_str().into()).or_default() += c.count as i64;
            *by_source
                .entry(Source::Syscall.as_str().into())
                .or_default() += c.count;
            if let Some(id) = pattern {
                let acc = syscall_patterns.entry(id).or_insert_with(|| SyscallAcc {
                    category,
                    severity,
                    count: 0,
                    first_half: 0.0,
                    first: f64::INFINITY,
                    last: f64::NEG_INFINITY,
                    exact: true,
                });
                acc.count += c.count;
                acc.first_half += c.first_half;
                acc.first = acc.first.min(seconds(c.first_ns));
                acc.last = acc.last.max(seconds(c.last_ns));
                acc.exact &= c.exact;
            }
        }
        let mid = run_s / 2.0;
        let ids: BTreeSet<&str> = self
            .patterns
            .keys()
            .map(String::as_str)
            .chain(syscall_patterns.keys().copied())
            .collect();
        let mut patterns: Vec<PatternStat> = ids
            .into_iter()
            .map(|id| {
                let other = self.patterns.get(id);
                let sys = syscall_patterns.get(id);
                let (a, b) = other.map_or((0.0, 0.0), |o| o.halves(mid));
                let (sys_a, sys_b) = sys.map_or((0.0, 0.0), |s| {
                    (s.first_half, s.count as f64 - s.first_half)
                });
                let count = other.map_or(0, |o| o.incidents) + sys.map_or(0, |s| s.count);
                let (category, severity) = match (sys, other) {
                    (Some(s), _) => (s.category, s.severity),
                    (None, Some(o)) => (o.category, o.severity),
                    (None, None) => unreachable!("the id comes from one of them"),
                };
                PatternStat {
                    id: id.to_string(),
                    category,
                    severity,
                    count,
                    occurrences: other.map_or(0, |o| o.occurrences) + sys.map_or(0, |s| s.count),
                    exact: sys.is_none_or(|s| s.exact),
                    first_seen: f64::min(
                        other.map_or(f64::INFINITY, |o| o.first),
                        sys.map_or(f64::INFINITY, |s| s.first),
                    ),
                    last_seen: f64::max(
                        other.map_or(f64::NEG_INFINITY, |o| o.last),
                        sys.map_or(f64::NEG_INFINITY, |s| s.last),
                    ),
                    trend: trend(a + sys_a, b + sys_b, count, run_s),
                }
            })
            .collect();
        patterns.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
        let mut benign: Vec<BenignCount> = benign
            .into_iter()
            .map(|((syscall, errno, pattern), count)| BenignCount {
                syscall: syscall.to_string(),
                errno: linux::errno_display(errno),
                pattern: pattern.to_string(),
                count,
            })
            .collect();
        benign.sort_by(|a, b| {
            b.count.cmp(&a.count).then_with(|| {
                (&a.syscall, &a.errno, &a.pattern).cmp(&(&b.syscall, &b.errno, &b.pattern))
            })
        });
        let mut benign_signals: Vec<SignalCount> = self
            .benign_signals
            .iter()
            .map(|(signo, count)| SignalCount {
                signal: linux::signal_name(*signo),
                count: *count,
            })
            .collect();
        benign_signals.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.signal.cmp(&b.signal)));
        let counts = |m: BTreeMap<String, i64>| {
            m.into_iter()
                .filter(|(_, n)| *n > 0)
                .map(|(k, n)| (k, n as u64))
                .collect()
        };
        ErrorsSection {
            total,
            exact: failures.iter().all(|c| c.exact),
            events,
            dropped: self.dropped,
            patterns,
            by_category: counts(by_category),
            by_severity: counts(by_severity),
            by_source,
            benign,
            benign_signals,
            syscall_failures: Vec::new(),
            python_exceptions: Vec::new(),
        }
    }
}

/// What is known of a pattern from failed syscalls.
#[derive(Debug, Clone, Copy)]
struct SyscallAcc {
    category: Category,
    severity: Severity,
    count: u64,
    first_half: f64,
    first: f64,
    last: f64,
    exact: bool,
}

/// The trend of a pattern from its incidents in the first and the second half of a run of
/// `run_s` seconds, `count` in all.
pub(crate) fn trend(first: f64, second: f64, count: u64, run_s: f64) -> Trend {
    if count <= 1 {
        return Trend::Single;
    }
    if run_s <= 0.0 {
        return Trend::Stable;
    }
    let ratio = (second + 1.0) / (first + 1.0);
    if ratio > 1.5 {
        Trend::Increasing
    } else if ratio < 2.0 / 3.0 {
        Trend::Decreasing
    } else {
        Trend::Stable
    }
}

/// The text summary: one line of totals, then the kinds of errors, most severe first, each
/// with its latest message, first suggested fix, and what that one led to. Only incidents'
/// roots are listed (their consequences under them); benign failures are not shown.
pub(crate) fn summary_lines(section: &ErrorsSection) -> Vec<String> {
    if section.total == 0 {
        return vec!["errors: none".to_string()];
    }
    let order = [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ];
    let counts: Vec<String> = order
        .iter()
        .filter_map(|s| {
            section
                .by_severity
                .get(s.as_str())
                .map(|n| format!("{n} {}", s.as_str()))
        })
        .collect();
    let mut head = format!("errors: {} ({})", section.total, counts.join(", "));
    if section.dropped > 0 {
        head.push_str(&format!(", {} oldest not kept", section.dropped));
    }
    struct Group<'a> {
        severity: Severity,
        count: u64,
        latest: &'a ErrorEvent,
    }
    let mut groups: Vec<(String, Group)> = Vec::new();
    // Raised exceptions are examples, counted exactly in `python_exceptions` (and printed by the
    // python family's block), not incidents.
    let roots = section
        .events
        .iter()
        .filter(|e| e.caused_by.is_none() && e.source != Source::PythonException);
    for e in roots {
        let key = e.pattern.clone().unwrap_or_else(|| e.error_type.clone());
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, g)) => {
                g.count += 1;
                g.severity = g.severity.max(e.severity);
                g.latest = e;
            }
            None => groups.push((
                key,
                Group {
                    severity: e.severity,
                    count: 1,
                    latest: e,
                },
            )),
        }
    }
    for (key, g) in &mut groups {
        if let Some(p) = section.patterns.iter().find(|p| p.id == *key) {
            g.count = p.count;
        }
    }
    groups.sort_by(|a, b| {
        b.1.severity
            .cmp(&a.1.severity)
            .then(b.1.count.cmp(&a.1.count))
    });
    let mut lines = vec![head];
    const SHOWN: usize = 10;
    for (key, g) in groups.iter().take(SHOWN) {
        let e = g.latest;
        let mut message = e.message.lines().next().unwrap_or("").to_string();
        if message.chars().count() > 120 {
            message = message.chars().take(117).collect::<String>() + "...";
        }
        lines.push(format!(
            "  [{}] {key} x{} ({}) at {:.3}s: {message}",
            g.severity.as_str(),
            g.count,
            e.category.as_str(),
            e.timestamp
        ));
        if let Some(fix) = e.solutions.first() {
            lines.push(format!("      fix: {fix}"));
        }
        let led_to: Vec<&str> = e
            .led_to
            .iter()
            .filter_map(|id| section.events.iter().find(|x| x.id == *id))
            .map(|x| x.error_type.as_str())
            .collect();
        if !led_to.is_empty() {
            lines.push(format!("      led to: {}", led_to.join(", ")));
        }
    }
    if groups.len() > SHOWN {
        lines.push(format!(
            "  ... and {} more kinds of errors",
            groups.len() - SHOWN
        ));
    }
    lines
}

#[cfg(test)]
#[path = "section_tests.rs"]
mod tests;
