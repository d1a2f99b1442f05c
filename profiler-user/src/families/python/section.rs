//! The section and the summary block: the exceptions per site, the allocation sites, and what
//! the errors family takes.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
};

use profiler_common::python::{RaiseKey, count};

use super::{
    ALLOC_NOTE, ErrorsFeed, Line, MAX_ALLOC_SITES, NO_PYTHON_FRAME, Python, PythonRaise, Record,
    Shared, interp,
};
use crate::report::{
    Frame, errors,
    python::{AllocSite, AllocationStats, ProbeSite, PythonSection, RaiseSite},
};

/// The frames of Python stack `stack` (shims left out), and its innermost line: the site.
fn line_of(shared: &Shared, stack: u64) -> (Vec<Frame>, Line) {
    let frames: Vec<Frame> = shared
        .frames(stack)
        .into_iter()
        .filter(|f| !f.shim)
        .map(|f| f.frame)
        .collect();
    let top = frames.first();
    let line = (
        top.map_or(NO_PYTHON_FRAME.into(), |f| f.function.clone()),
        top.and_then(|f| f.file.clone()),
        top.and_then(|f| f.line),
    );
    (frames, line)
}

/// The raises, each unhandled report folded into the raise it reports (the thread's last of
/// that key before it), which then reads unhandled; a report whose raise is not kept stays.
pub(super) fn merge_uncaught(mut records: Vec<Record>) -> Vec<Record> {
    records.sort_by_key(|r| r.timestamp_ns);
    let mut out: Vec<Record> = Vec::with_capacity(records.len());
    for r in records {
        if r.uncaught
            && let Some(raise) = out.iter_mut().rev().find(|o| {
                o.tid == r.tid && o.key == r.key && !o.uncaught && o.timestamp_ns <= r.timestamp_ns
            })
        {
            raise.uncaught = true;
            continue;
        }
        out.push(r);
    }
    out
}

impl Python {
    /// Hands the exceptions to the errors family: every site's exact count, and the detailed
    /// raises with their Python frames.
    pub(super) fn feed_errors(&mut self, sites: &[RaiseSite]) {
        let mut shared = self.shared.lock().expect("python state");
        let mut raises: Vec<PythonRaise> = merge_uncaught(std::mem::take(&mut self.records))
            .into_iter()
            .map(|r| PythonRaise {
                tid: r.tid,
                timestamp_ns: r.timestamp_ns,
                exception: self
                    .type_names
                    .get(&r.key.exc_type)
                    .cloned()
                    .unwrap_or_else(|| "?".into()),
                message: r.message,
                frames: shared
                    .frames(r.key.stack)
                    .into_iter()
                    .filter(|f| !f.shim)
                    .map(|f| errors::Frame {
                        file: f.frame.file.unwrap_or_default(),
                        line: f.frame.line,
                        function: Some(f.frame.function),
                        code: None,
                    })
                    .collect(),
                uncaught: r.uncaught,
            })
            .collect();
        raises.sort_by_key(|r| r.timestamp_ns);
        // One example per site (type and raising line), and every unhandled one.
        let mut seen = HashSet::new();
        raises.retain(|r| {
            let top = r
                .frames
                .first()
                .map(|f| (f.file.clone(), f.line, f.function.clone()));
            r.uncaught || seen.insert((r.exception.clone(), top))
        });
        shared.feed = Some(ErrorsFeed {
            raises,
            sites: sites
                .iter()
                .map(|s| (s.clone(), s.message.clone()))
                .collect(),
        });
    }

    /// The allocation sites: blocks per Python line, most outstanding first.
    pub(super) fn alloc_section(&mut self) -> Option<AllocationStats> {
        if !self.allocations {
            return None;
        }
        let raw = self.alloc_sites.take().unwrap_or_default();
        let mut by: HashMap<Line, (AllocSite, i64)> = HashMap::new();
        let shared = self.shared.lock().expect("python state");
        for (stack, st) in raw {
            let (frames, id) = line_of(&shared, stack);
            let (site, largest) = by.entry(id.clone()).or_insert_with(|| {
                (
                    AllocSite {
                        function: id.0.clone(),
                        file: id.1.clone(),
                        line: id.2,
                        ..AllocSite::default()
                    },
                    i64::MIN,
                )
            });
            site.outstanding_bytes += st.live_bytes;
            site.peak_bytes += st.peak_bytes;
            site.outstanding_blocks += st.live_blocks;
            site.allocated_bytes += st.allocated_bytes;
            site.allocations += st.allocations;
            if st.live_bytes > *largest {
                *largest = st.live_bytes;
                site.stack = frames;
            }
        }
        drop(shared);
        let mut sites: Vec<AllocSite> = by.into_values().map(|(s, _)| s).collect();
        sites.sort_by(|a, b| {
            b.peak_bytes
                .cmp(&a.peak_bytes)
                .then_with(|| b.outstanding_bytes.cmp(&a.outstanding_bytes))
                .then_with(|| b.allocated_bytes.cmp(&a.allocated_bytes))
        });
        let outstanding_bytes = sites.iter().map(|s| s.outstanding_bytes).sum();
        let dropped = sites.len().saturating_sub(MAX_ALLOC_SITES);
        sites.truncate(MAX_ALLOC_SITES);
        let c = &self.counts;
        let probes = self.probed_file.as_ref().map_or(Vec::new(), |f| {
            f.allocators
                .iter()
                .map(|a| &a.entry)
                .chain(&f.free)
                .map(probe_site)
                .collect()
        });
        let (allocations, free_calls) = (c[count::ALLOCS as usize], c[count::FREE_CALLS as usize]);
        let frees = c[count::FREES as usize];
        // A build that inlines pymalloc: the probes see few of the calls on one side, or (in
        // `run` mode, where every block is tracked from the start) frees of blocks they never
        // saw allocated.
        let (most, least) = (allocations.max(free_calls), allocations.min(free_calls));
        let unseen = free_calls.saturating_sub(frees);
        let lopsided = most >= 1000 && least * 4 < most;
        let blind = self.run_mode && unseen > 1000.max(free_calls / 4);
        let partial = (lopsided || blind).then(|| {
            format!(
                "the probes saw {allocations} allocations and {free_calls} frees, {unseen} of \
                 blocks they never saw allocated: this build inlines pymalloc into its hot \
                 paths (LTO), so they see part of both, and outstanding bytes are not the \
                 process's"
            )
        });
        Some(AllocationStats {
            probes,
            partial,
            allocations,
            frees,
            free_calls,
            untracked: c[count::LIVE_FULL as usize],
            unattributed: c[count::SITE_MAP_FULL as usize],
            outstanding_bytes,
            sites,
            sites_dropped: dropped,
            detached: self.allocs_detached,
            note: ALLOC_NOTE.into(),
        })
    }

    /// The sites: raise counts by (type, innermost frame).
    pub(super) fn sites(&mut self, raises: &[(RaiseKey, u64)]) -> Vec<RaiseSite> {
        let mut by: HashMap<(String, String, Option<String>, Option<u32>), RaiseSite> =
            HashMap::new();
        let mut keys: Vec<&(RaiseKey, u64)> = raises.iter().collect();
        keys.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.stack.cmp(&b.0.stack)));
        for &(key, n) in keys {
            let exception = self.type_name(key.exc_type);
            let (frames, line) = line_of(&self.shared.lock().expect("python state"), key.stack);
            let id = (exception.clone(), line.0, line.1, line.2);
            let detail = self.details.get(&key);
            let site = by.entry(id.clone()).or_insert_with(|| RaiseSite {
                exception,
                function: id.1.clone(),
                file: id.2.clone(),
                line: id.3,
                stack: frames.clone(),
                ..RaiseSite::default()
            });
            site.raised += n;
            if let Some(d) = detail {
                site.uncaught += d.uncaught.min(n);
                if site.message.is_none() {
                    site.message = d.message.clone();
                }
            }
        }
        let mut sites: Vec<RaiseSite> = by.into_values().collect();
        for s in &mut sites {
            s.caught = s.raised - s.uncaught;
        }
        // The unhandled first (they end programs and threads), then the most raised.
        sites.sort_by(|a, b| {
            (b.uncaught > 0)
                .cmp(&(a.uncaught > 0))
                .then_with(|| b.raised.cmp(&a.raised))
                .then_with(|| a.exception.cmp(&b.exception))
                .then_with(|| a.line.cmp(&b.line))
        });
        sites
    }
}

/// The report's view of a probe.
pub(super) fn probe_site(p: &interp::Probed) -> ProbeSite {
    ProbeSite {
        function: p.name.into(),
        instruction: p.instruction.clone(),
        cost_class: if p.emulated {
            "emulated"
        } else {
            "single_stepped"
        }
        .into(),
    }
}

/// Sites shown in the printed summary.
const SUMMARY_SITES: usize = 5;

pub(super) fn summary(out: &mut String, p: &PythonSection) {
    let Some(i) = &p.interpreter else {
        if let Some(why) = &p.unsupported {
            let _ = writeln!(out, "python: {why}");
        }
        return;
    };
    let _ = writeln!(
        out,
        "python: CPython {} ({}), {} thread(s), {} Python stack(s) walked",
        i.version, i.path, p.threads, p.walks.stacks
    );
    let e = &p.exceptions;
    let _ = writeln!(
        out,
        "python exceptions: {} raised, {} unhandled{}",
        e.raised,
        e.uncaught,
        if e.detached {
            " (probes detached by the overhead budget: counts stop there)"
        } else {
            ""
        }
    );
    let at = |file: &Option<String>, line: Option<u32>| match (file, line) {
        (Some(f), Some(l)) => format!(" ({}:{l})", short(f)),
        (Some(f), None) => format!(" ({})", short(f)),
        _ => String::new(),
    };
    for s in own_first(&e.sites, |s| &s.file).take(SUMMARY_SITES) {
        let at = at(&s.file, s.line);
        let message = s.message.as_ref().map_or(String::new(), |m| {
            format!(": {}", m.chars().take(60).collect::<String>())
        });
        let _ = writeln!(
            out,
            "  {:>8}  {} in {}{at}{message}",
            s.raised, s.exception, s.function
        );
    }
    if let Some(a) = &p.allocations {
        alloc_summary(out, a, at);
    }
}

/// The allocation sites' lines of the summary.
fn alloc_summary(
    out: &mut String,
    a: &AllocationStats,
    at: impl Fn(&Option<String>, Option<u32>) -> String,
) {
    let _ = writeln!(
        out,
        "python allocations (pymalloc): {} blocks, {} freed{}",
        a.allocations,
        a.frees,
        if a.detached {
            " (probes detached by the overhead budget: counts stop there)"
        } else {
            ""
        }
    );
    if let Some(p) = &a.partial {
        let _ = writeln!(out, "  partial: {p}");
    }
    for s in own_first(&a.sites, |s| &s.file).take(SUMMARY_SITES) {
        let _ = writeln!(
            out,
            "  {:>10} peak, {:>10} at the end  {}{}",
            human_bytes(s.peak_bytes),
            human_bytes(s.outstanding_bytes),
            s.function,
            at(&s.file, s.line)
        );
    }
}

/// The program's own sites before the import system's (`<frozen importlib._bootstrap>`, whose
/// exceptions and allocations every start-up has), each in their order.
fn own_first<T>(sites: &[T], file: impl Fn(&T) -> &Option<String>) -> impl Iterator<Item = &T> {
    let frozen = move |s: &&T| file(s).as_deref().is_some_and(|f| f.starts_with("<frozen"));
    let mut ordered: Vec<&T> = sites.iter().collect();
    ordered.sort_by_key(|s| frozen(s));
    ordered.into_iter()
}

/// Bytes in KiB or MiB.
fn human_bytes(n: i64) -> String {
    let v = n as f64;
    if v.abs() >= 1024.0 * 1024.0 {
        format!("{:.1} MiB", v / (1024.0 * 1024.0))
    } else if v.abs() >= 1024.0 {
        format!("{:.1} KiB", v / 1024.0)
    } else {
        format!("{n} B")
    }
}

fn short(path: &str) -> String {
    std::path::Path::new(path)
        .file_name()
        .map_or(path.into(), |n| n.to_string_lossy().into_owned())
}
