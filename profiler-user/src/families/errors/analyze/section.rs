//! The `errors` section built from classified events: aggregation, exact failure counts, and
//! the text summary.
//!
//! `trend` compares how often a pattern occurred in the first and the second half of the run:
//! with `a` and `b` occurrences, `(b + 1) / (a + 1)` above 1.5 is `increasing`, below 2/3
//! `decreasing`, otherwise `stable`; one occurrence is `single`.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::{
    linux,
    report::errors::{
        BenignCount, Category, ErrorEvent, ErrorsSection, FailureCount, PatternStat, Severity,
        SignalCount, Trend,
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

/// Occurrence times kept per pattern before halving the sample.
const MAX_TIMES: usize = 4096;

#[derive(Debug, Clone)]
struct PatternAcc {
    category: Category,
    severity: Severity,
    count: u64,
    first: f64,
    last: f64,
    /// A sample of occurrence times: every `stride`-th occurrence.
    times: Vec<f64>,
    stride: u64,
}

/// Accumulates events into the section.
#[derive(Debug, Clone)]
pub(crate) struct Aggregator {
    max_events: usize,
    events: VecDeque<ErrorEvent>,
    total: u64,
    dropped: u64,
    patterns: HashMap<String, PatternAcc>,
    by_category: BTreeMap<String, u64>,
    by_severity: BTreeMap<String, u64>,
    benign: HashMap<(String, i32), u64>,
    benign_signals: HashMap<i32, u64>,
}

impl Aggregator {
    pub(crate) fn new(max_events: usize) -> Self {
        Self {
            max_events,
            events: VecDeque::new(),
            total: 0,
            dropped: 0,
            patterns: HashMap::new(),
            by_category: BTreeMap::new(),
            by_severity: BTreeMap::new(),
            benign: HashMap::new(),
            benign_signals: HashMap::new(),
        }
    }

    pub(crate) fn add(&mut self, event: ErrorEvent) {
        self.total += 1;
        *self
            .by_category
            .entry(event.category.as_str().into())
            .or_default() += 1;
        *self
            .by_severity
            .entry(event.severity.as_str().into())
            .or_default() += 1;
        if let Some(id) = &event.pattern {
            let t = event.timestamp;
            let acc = self
                .patterns
                .entry(id.clone())
                .or_insert_with(|| PatternAcc {
                    category: event.category,
                    severity: event.severity,
                    count: 0,
                    first: t,
                    last: t,
                    times: Vec::new(),
                    stride: 1,
                });
            if acc.count.is_multiple_of(acc.stride) {
                acc.times.push(t);
                if acc.times.len() >= MAX_TIMES {
                    acc.times = acc.times.iter().copied().step_by(2).collect();
                    acc.stride *= 2;
                }
            }
            acc.count += 1;
            acc.first = acc.first.min(t);
            acc.last = acc.last.max(t);
        }
        self.events.push_back(event);
        if self.events.len() > self.max_events {
            self.events.pop_front();
            self.dropped += 1;
        }
    }

    pub(crate) fn add_benign(&mut self, syscall: &str, errno: i32) {
        *self.benign.entry((syscall.to_string(), errno)).or_default() += 1;
    }

    pub(crate) fn add_benign_signal(&mut self, signo: i32) {
        *self.benign_signals.entry(signo).or_default() += 1;
    }

    /// The section for a run that lasted `run_s` seconds.
    pub(crate) fn section(&self, run_s: f64) -> ErrorsSection {
        let mut events: Vec<ErrorEvent> = self.events.iter().cloned().collect();
        events.sort_by(|a, b| a.timestamp.total_cmp(&b.timestamp));
        let mut patterns: Vec<PatternStat> = self
            .patterns
            .iter()
            .map(|(id, a)| PatternStat {
                id: id.clone(),
                category: a.category,
                severity: a.severity,
                count: a.count,
                first_seen: a.first,
                last_seen: a.last,
                trend: trend(&a.times, a.count, run_s),
            })
            .collect();
        patterns.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.id.cmp(&b.id)));
        let mut benign: Vec<BenignCount> = self
            .benign
            .iter()
            .map(|((syscall, errno), count)| BenignCount {
                syscall: syscall.clone(),
                errno: linux::errno_display(*errno),
                count: *count,
            })
            .collect();
        benign.sort_by(|a, b| {
            b.count
                .cmp(&a.count)
                .then_with(|| (&a.syscall, &a.errno).cmp(&(&b.syscall, &b.errno)))
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
        ErrorsSection {
            total: self.total,
            events,
            dropped: self.dropped,
            patterns,
            by_category: self.by_category.clone(),
            by_severity: self.by_severity.clone(),
            benign,
            benign_signals,
            syscall_failures: Vec::new(),
        }
    }
}

/// The trend of a pattern from a sample of its occurrence times over a run of `run_s` seconds.
pub(crate) fn trend(times: &[f64], count: u64, run_s: f64) -> Trend {
    if count <= 1 {
        return Trend::Single;
    }
    if run_s <= 0.0 {
        return Trend::Stable;
    }
    let mid = run_s / 2.0;
    let first = times.iter().filter(|t| **t < mid).count() as f64;
    let second = times.len() as f64 - first;
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
/// with its latest message and first suggested fix. Benign failures are not shown.
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
    for e in &section.events {
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
mod tests {
    use super::*;
    use crate::report::errors::{ErrorContext, Source};

    fn event(pattern: Option<&str>, severity: Severity, t: f64) -> ErrorEvent {
        ErrorEvent {
            error_type: "E".into(),
            category: Category::System,
            severity,
            pattern: pattern.map(String::from),
            description: None,
            message: format!("message at {t}"),
            solutions: vec!["do this".into()],
            prevention: vec![],
            timestamp: t,
            tid: 1,
            source: Source::Syscall,
            context: ErrorContext::default(),
        }
    }

    #[test]
    fn trends() {
        assert_eq!(trend(&[1.0], 1, 10.0), Trend::Single);
        assert_eq!(trend(&[1.0, 9.0], 2, 10.0), Trend::Stable);
        assert_eq!(trend(&[6.0, 8.0, 9.0], 3, 10.0), Trend::Increasing);
        assert_eq!(trend(&[1.0, 2.0, 3.0], 3, 10.0), Trend::Decreasing);
        assert_eq!(trend(&[0.0, 0.0], 2, 0.0), Trend::Stable);
    }

    #[test]
    fn bounded_events_and_counts() {
        let mut agg = Aggregator::new(3);
        for i in 0..5 {
            agg.add(event(Some("P"), Severity::High, i as f64));
        }
        agg.add(event(None, Severity::Low, 5.0));
        agg.add_benign("read", 11);
        agg.add_benign("read", 11);
        agg.add_benign_signal(11);
        let s = agg.section(10.0);
        assert_eq!((s.total, s.dropped, s.events.len()), (6, 3, 3));
        assert_eq!(s.events[0].timestamp, 3.0);
        assert_eq!(s.patterns.len(), 1);
        let p = &s.patterns[0];
        assert_eq!(
            (p.count, p.first_seen, p.last_seen, p.trend),
            (5, 0.0, 4.0, Trend::Decreasing)
        );
        assert_eq!(s.by_severity["high"], 5);
        assert_eq!(s.by_category["system"], 6);
        assert_eq!(
            s.benign,
            vec![BenignCount {
                syscall: "read".into(),
                errno: "EAGAIN".into(),
                count: 2
            }]
        );
        assert_eq!(s.benign_signals[0].signal, "SIGSEGV");
    }

    #[test]
    fn occurrence_sample_is_bounded() {
        let mut agg = Aggregator::new(1);
        for i in 0..20_000 {
            agg.add(event(Some("P"), Severity::Low, f64::from(i) / 1000.0));
        }
        let acc = &agg.patterns["P"];
        assert!(acc.times.len() < MAX_TIMES);
        assert_eq!(agg.section(20.0).patterns[0].trend, Trend::Stable);
    }

    #[test]
    fn summary_is_most_severe_first_and_hides_benign() {
        let mut agg = Aggregator::new(100);
        agg.add(event(Some("LOW_ONE"), Severity::Low, 1.0));
        agg.add(event(Some("LOW_ONE"), Severity::Low, 2.0));
        agg.add(event(Some("BAD"), Severity::Critical, 3.0));
        agg.add_benign("read", 11);
        let s = agg.section(4.0);
        let lines = summary_lines(&s);
        assert_eq!(lines[0], "errors: 3 (1 critical, 2 low)");
        assert!(
            lines[1].starts_with("  [critical] BAD x1 (system) at 3.000s: message at 3"),
            "{}",
            lines[1]
        );
        assert_eq!(lines[2], "      fix: do this");
        assert!(lines[3].starts_with("  [low] LOW_ONE x2"));
        assert!(!lines.join("\n").contains("EAGAIN"));
        assert_eq!(summary_lines(&ErrorsSection::default()), ["errors: none"]);
    }
}
