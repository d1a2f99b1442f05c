//! Incidents: one failure and what it causes, counted once.
//!
//! A failed `openat` of a model file, the traceback of the `FileNotFoundError` it raises, and
//! the `exit(1)` the script ends in are three error events and one incident. Its first event
//! is the root cause; the others are its context: each names the root in `caused_by`, and the
//! root lists them in `led_to`. Events are grouped as they come, in time order (all of one
//! process, the target):
//!
//! 1. An error printed on stdout or stderr (a traceback, an exception, a panic, an error log
//!    record) is caused by a failed syscall (an error, not a benign failure) that came before
//!    it, at most [`CAUSE_WINDOW_NS`] before, and whose path or address the printed error names
//!    (its path is the same, or its text contains the call's); failing that, by one on the same
//!    thread whose errno it names (`[Errno 2]`, `(os error 2)`, `ENOENT`, `No such file or
//!    directory`, ...). The latest such failure is taken.
//! 2. A non-zero exit or a fatal signal ends the incident of the latest uncaught error before
//!    it, at most [`END_WINDOW_NS`] before, on any thread: a Python traceback or fatal error, a
//!    Rust or Go panic, an uncaught C++ or Java exception, a runtime abort (`double free`), a
//!    fatal log record. (An exit by a fatal signal already seen is no event of its own, and an
//!    OOM kill is a root: it explains the SIGKILL.)
//! 3. Anything else is the root of an incident of its own.
//!
//! An incident counts once: under its root's category, at the highest severity of its events,
//! and once for each pattern among its events.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::report::errors::{Severity, Source};

/// How long after a failed syscall a printed error may still be its consequence.
pub(crate) const CAUSE_WINDOW_NS: u64 = 2_000_000_000;
/// How long after an uncaught error the process may take to end (an interpreter's teardown).
pub(crate) const END_WINDOW_NS: u64 = 5_000_000_000;
/// Events remembered at most (the most recent), whatever the windows.
const MAX_MEMBERS: usize = 4096;
/// Shortest path looked for inside a printed error's text (shorter ones match too much).
const MIN_PATH_IN_TEXT: usize = 4;

/// What the grouping needs of an error event.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Occurrence<'a> {
    /// The event's id in the report.
    pub id: u64,
    pub source: Source,
    pub tid: u32,
    pub timestamp_ns: u64,
    /// The path or address it names.
    pub path: Option<&'a str>,
    pub errno: Option<i32>,
    /// What a printed error says (its message and exception lines), searched for paths.
    pub text: &'a str,
    /// An uncaught error: what a process ends with (see rule 2).
    pub uncaught: bool,
    /// A non-zero exit or a fatal signal.
    pub ending: bool,
    pub pattern: Option<&'a str>,
    pub severity: Severity,
}

/// An event that joined an incident.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Joined {
    /// The id of the incident's root event.
    pub root: u64,
    /// Whether the event's pattern is new to the incident.
    pub new_pattern: bool,
    /// The incident's severity, before and after the event, when the event raised it.
    pub raised: Option<(Severity, Severity)>,
}

/// A recent event, as a possible cause.
#[derive(Debug, Clone)]
struct Member {
    root: u64,
    source: Source,
    tid: u32,
    timestamp_ns: u64,
    path: Option<String>,
    errno: Option<i32>,
    uncaught: bool,
}

/// What an open incident has so far.
#[derive(Debug, Clone)]
struct State {
    severity: Severity,
    patterns: Vec<String>,
}

/// Groups error events into incidents as they come.
#[derive(Debug, Default)]
pub(crate) struct Incidents {
    members: VecDeque<Member>,
    states: HashMap<u64, State>,
}

impl Incidents {
    /// Groups `o`: the incident it joins, or None when it is the root of a new one.
    pub(crate) fn group(&mut self, o: &Occurrence) -> Option<Joined> {
        let joined = self.cause(o).map(|root| {
            let state = self.states.entry(root).or_insert_with(|| State {
                severity: o.severity,
                patterns: Vec::new(),
            });
            let new_pattern = o
                .pattern
                .is_some_and(|p| !state.patterns.iter().any(|q| q == p));
            if new_pattern {
                state.patterns.extend(o.pattern.map(String::from));
            }
            let raised = (o.severity > state.severity).then_some((state.severity, o.severity));
            state.severity = state.severity.max(o.severity);
            Joined {
                root,
                new_pattern,
                raised,
            }
        });
        let root = joined.as_ref().map_or(o.id, |j| j.root);
        if joined.is_none() {
            self.states.insert(
                o.id,
                State {
                    severity: o.severity,
                    patterns: o.pattern.map(String::from).into_iter().collect(),
                },
            );
        }
        self.members.push_back(Member {
            root,
            source: o.source,
            tid: o.tid,
            timestamp_ns: o.timestamp_ns,
            path: o.path.map(String::from),
            errno: o.errno,
            uncaught: o.uncaught,
        });
        self.prune(o.timestamp_ns);
        joined
    }

    /// The root of the incident `o` belongs to, by the rules of the module.
    fn cause(&self, o: &Occurrence) -> Option<u64> {
        let before = |m: &&Member, window: u64| {
            m.timestamp_ns <= o.timestamp_ns && o.timestamp_ns - m.timestamp_ns <= window
        };
        if o.ending {
            return self
                .members
                .iter()
                .rev()
                .find(|m| m.uncaught && before(m, END_WINDOW_NS))
                .map(|m| m.root);
        }
        if o.source != Source::Output {
            return None;
        }
        let failures = || {
            self.members
                .iter()
                .rev()
                .filter(|m| m.source == Source::Syscall && before(m, CAUSE_WINDOW_NS))
        };
        let names_path = |m: &Member| {
            m.path.as_deref().is_some_and(|p| {
                o.path == Some(p) || (p.len() >= MIN_PATH_IN_TEXT && o.text.contains(p))
            })
        };
        let names_errno = |m: &Member| m.tid == o.tid && o.errno.is_some() && m.errno == o.errno;
        failures()
            .find(|m| names_path(m))
            .or_else(|| failures().find(|m| names_errno(m)))
            .map(|m| m.root)
    }

    /// Forgets what no later event can join.
    fn prune(&mut self, now_ns: u64) {
        let old = |t: u64| t.saturating_add(END_WINDOW_NS) < now_ns;
        while self
            .members
            .front()
            .is_some_and(|m| old(m.timestamp_ns) || self.members.len() > MAX_MEMBERS)
        {
            self.members.pop_front();
        }
        // An incident none of whose events is remembered can be joined no more.
        if self.states.len() > 2 * self.members.len() + 64 {
            let live: HashSet<u64> = self.members.iter().map(|m| m.root).collect();
            self.states.retain(|root, _| live.contains(root));
        }
    }
}

#[cfg(test)]
#[path = "incident_tests.rs"]
mod tests;
