//! The memory family's block of the printed summary, made from the report alone (see
//! `families::summary`).

use std::fmt::Write as _;

use super::{ALLOCATOR_UNIT, analyze};
use crate::report::{
    MemorySection, Report,
    memory::Tally,
    text::{human_bytes, human_time},
};

/// The family's block of the printed summary (see `families::summary`). When the overhead
/// budget detached the allocator probes, the block says when: the budget's decision, as
/// `overhead.budget.detached` (and stderr at the time) give it.
pub(crate) fn summary_block(report: &Report, out: &mut String) {
    if let Some(memory) = &report.memory {
        let shed_at = report
            .overhead
            .budget
            .iter()
            .flat_map(|b| &b.detached)
            .find(|d| d.function == ALLOCATOR_UNIT)
            .map(|d| d.at);
        summary(out, memory, shed_at);
    }
}

/// Leak sites shown in the summary.
const SUMMARY_LEAKS: usize = 5;

/// The memory section in a few lines: allocator, resident set and trend, allocation totals,
/// and the biggest leak sites.
fn summary(out: &mut String, m: &MemorySection, shed_at: Option<f64>) {
    let allocator = match (&m.allocator, &m.no_allocator) {
        _ if m.mode != "exact" => "growth attribution".to_string(),
        (Some(a), _) => format!("{} ({})", a.name, a.module),
        (None, Some(_)) => "no allocator found".to_string(),
        (None, None) => "no allocator".to_string(),
    };
    let sign = if m.memory_trend_slope >= 0.0 {
        "+"
    } else {
        "-"
    };
    let _ = writeln!(
        out,
        "\nmemory: {allocator} · rss {} (peak {}) · {} ({sign}{}/s)",
        human_bytes(m.current_memory),
        human_bytes(m.peak_memory),
        m.memory_trend,
        human_bytes(m.memory_trend_slope.abs() as u64),
    );
    let g = &m.growth;
    let top = m.growth_sites.first().map_or(String::new(), |s| {
        format!(
            "; most at {} ({}, {})",
            s.function,
            human_bytes(s.bytes),
            s.trend
        )
    });
    let _ = writeln!(
        out,
        "growth: {} resident given in {} page(s) at {} site(s){top}",
        human_bytes(g.bytes),
        g.faults,
        g.sites,
    );
    if let Some(at) = g.detached_at {
        let _ = writeln!(
            out,
            "growth attribution detached at {at:.1} s by --max-overhead"
        );
    }
    if m.mode != "exact" {
        let _ = writeln!(
            out,
            "allocator not probed (--memory growth): --memory exact tracks every block and \
             scans for leaks"
        );
        return;
    }
    if let Some(at) = shed_at {
        let _ = writeln!(
            out,
            "allocator probes detached at {at:.1} s by --max-overhead (scanned then); growth \
             attribution continues"
        );
    }
    let a = &m.allocations;
    let _ = writeln!(
        out,
        "allocations {} ({}), freed {} ({}), outstanding {} ({}) at {} site(s)",
        a.allocations,
        human_bytes(a.allocated_bytes),
        a.frees,
        human_bytes(a.freed_bytes),
        a.outstanding,
        human_bytes(a.outstanding_bytes),
        a.sites,
    );
    let d = &m.memory_leak_detection;
    let tally = |t: Tally| format!("{} in {} block(s)", human_bytes(t.bytes), t.count);
    if d.method == "reachability" {
        let scan = d.scans.iter().rev().find(|s| s.complete);
        let how = scan.map_or(String::new(), |s| {
            format!(
                " (scan at {}: target stopped {}, {} read)",
                s.trigger,
                human_time(s.pause),
                human_bytes(s.bytes_scanned)
            )
        });
        let _ = writeln!(
            out,
            "leaks{how}: definitely lost {}, indirectly lost {}, reachable {}",
            tally(d.definitely_lost),
            tally(d.indirectly_lost),
            tally(d.reachable),
        );
        for site in d
            .sites
            .iter()
            .filter(|s| s.verdict != analyze::REACHABLE)
            .take(SUMMARY_LEAKS)
        {
            let mut lost = site.definitely_lost.unwrap_or_default();
            lost += site.indirectly_lost.unwrap_or_default();
            let _ = writeln!(
                out,
                "lost: {} from {} ({}, {})",
                tally(lost),
                site.function,
                site.verdict.replace('_', " "),
                site.trend,
            );
        }
    } else {
        let why = d.notes.first().map_or("", String::as_str);
        let _ = writeln!(out, "leak verdict by growth: {why}");
        for site in d
            .sites
            .iter()
            .filter(|s| s.verdict == "growing")
            .take(SUMMARY_LEAKS)
        {
            let _ = writeln!(
                out,
                "growing: {} in {} block(s) from {} (+{}/s, oldest {})",
                human_bytes(site.bytes),
                site.count,
                site.function,
                human_bytes(site.growth.max(0.0) as u64),
                human_time(site.oldest_age),
            );
        }
        if d.retained_count > 0 {
            let _ = writeln!(
                out,
                "flat (not growing): {} in {} block(s)",
                human_bytes(d.retained_bytes),
                d.retained_count,
            );
        }
    }
    if !d.detected {
        let _ = writeln!(out, "no leak detected");
    }
}
