//! The human summary printed at the end: target, top functions, what profiling cost.

use std::fmt::Write;

use super::Report;

/// Seconds as a short human duration ("1.23 ms").
pub fn human_time(secs: f64) -> String {
    let (value, unit) = if secs >= 1.0 {
        (secs, "s")
    } else if secs >= 1e-3 {
        (secs * 1e3, "ms")
    } else if secs >= 1e-6 {
        (secs * 1e6, "µs")
    } else {
        (secs * 1e9, "ns")
    };
    format!("{value:.2} {unit}")
}

/// Bytes as a short human size.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The summary, at most `top` functions.
pub fn render(report: &Report, top: usize) -> String {
    let mut out = String::new();
    let t = &report.target;
    let _ = writeln!(
        out,
        "profiler {} · pid {} · {} · level {} · {:.2} s ({})",
        report.profiler.version,
        t.pid,
        t.exe,
        report.profiler.debug_level.name(),
        report.profiler.duration,
        report.profiler.end_reason.replace('_', " "),
    );
    if let Some(status) = &t.exit_status {
        let how = match (&status.code, &status.signal) {
            (Some(code), _) => format!("exited with code {code}"),
            (None, Some(signal)) => format!(
                "killed by {signal}{}",
                if status.core_dumped {
                    " (core dumped)"
                } else {
                    ""
                }
            ),
            _ => "exited".to_string(),
        };
        let _ = writeln!(out, "target {how}");
    }
    if report.functions.is_empty() {
        let _ = writeln!(out, "\nno functions traced (use --func GLOB)");
    } else {
        let name_width = report
            .functions
            .iter()
            .take(top)
            .map(|f| f.function_name.chars().count().min(48))
            .max()
            .unwrap_or(8)
            .max(8);
        let _ = writeln!(
            out,
            "\n{:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
            "function", "calls", "total", "average", "p50", "p99", "max"
        );
        for f in report.functions.iter().take(top) {
            let name: String = if f.function_name.chars().count() > 48 {
                f.function_name.chars().take(47).chain(['…']).collect()
            } else {
                f.function_name.clone()
            };
            let _ = writeln!(
                out,
                "{name:<name_width$}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}  {:>10}",
                f.total_calls,
                estimated(f, human_time(f.total_time)),
                human_time(f.average_time),
                human_time(f.percentiles.p50),
                human_time(f.percentiles.p99),
                human_time(f.max_time),
            );
            if f.in_flight > 0 {
                let _ = writeln!(
                    out,
                    "{:name_width$}  ({} call(s) still running at the end)",
                    "", f.in_flight
                );
            }
        }
        if report
            .functions
            .iter()
            .take(top)
            .any(|f| f.timed_calls < f.total_calls)
        {
            let _ = writeln!(
                out,
                "~ times from a sample of the calls (each thread's first 1024 of a function, then \
                 one in --time-every); calls are exact"
            );
        }
        if report.functions.len() > top {
            let _ = writeln!(
                out,
                "… and {} more in the JSON report",
                report.functions.len() - top
            );
        }
    }
    if let Some(errors) = &report.errors {
        out.push('\n');
        for line in crate::analyze::errors::summary_lines(errors) {
            let _ = writeln!(out, "{line}");
        }
    }
    if let Some(system) = &report.system {
        let _ = writeln!(
            out,
            "\ncpu {:.1}% average, {:.1}% peak · rss {} peak",
            system.average_cpu,
            system.peak_cpu,
            human_bytes(system.peak_rss)
        );
    }
    if let Some(memory) = &report.memory {
        render_memory(&mut out, memory);
    }
    let o = &report.overhead;
    let _ = writeln!(
        out,
        "\noverhead: {} probes, {} hits, ~{} added to the target ({:.2}% slowdown, {} cost model)",
        o.probes_attached,
        o.probe_hits,
        human_time(o.estimated_cost),
        o.estimated_slowdown_percent,
        o.cost_model.source,
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
    }
    out
}

/// Leak sites shown in the summary.
const SUMMARY_LEAKS: usize = 5;

/// The memory section in a few lines: allocator, resident set and trend, allocation totals,
/// and the biggest leak sites.
fn render_memory(out: &mut String, m: &super::MemorySection) {
    let allocator = match (&m.allocator, &m.no_allocator) {
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
    for site in d
        .sites
        .iter()
        .filter(|s| s.verdict == "leak")
        .take(SUMMARY_LEAKS)
    {
        let _ = writeln!(
            out,
            "leak: {} in {} block(s) from {} (+{}/s, oldest {})",
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
            "retained (not growing): {} in {} block(s)",
            human_bytes(d.retained_bytes),
            d.retained_count,
        );
    }
    if !d.detected {
        let _ = writeln!(out, "no leak detected");
    }
}

/// `total`, marked `~` when the function's times come from a sample of its calls.
fn estimated(f: &crate::report::FunctionProfile, total: String) -> String {
    if f.timed_calls < f.total_calls {
        format!("~{total}")
    } else {
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_units() {
        assert_eq!(human_time(1.5), "1.50 s");
        assert_eq!(human_time(0.0025), "2.50 ms");
        assert_eq!(human_time(3e-6), "3.00 µs");
        assert_eq!(human_time(4e-9), "4.00 ns");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
