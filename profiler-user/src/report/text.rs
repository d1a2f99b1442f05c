//! The printed summary's head and foot (target, what profiling cost) and its units. Each
//! family writes its own block in between, from its section (`families::summary`).

use std::fmt::Write;

use super::Report;

/// Seconds as a short human duration ("1.23 ms").
pub(crate) fn human_time(secs: f64) -> String {
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
pub(crate) fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// The head of the printed summary: the profiler, the target and how it ended.
pub(crate) fn header(report: &Report) -> String {
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
    out
}

/// The foot of the printed summary: what profiling cost the target, and the warnings.
pub(crate) fn footer(report: &Report, out: &mut String) {
    let o = &report.overhead;
    let cost = if o.dominated {
        "probes took ≥ 90% of the target's CPU: it ran roughly 10× slower or more".to_string()
    } else {
        format!("{:.2}% slowdown", o.estimated_slowdown_percent)
    };
    let _ = writeln!(
        out,
        "\noverhead: {} probes, {} hits, ~{} added to the target ({cost}, {} cost model)",
        o.probes_attached,
        o.probe_hits,
        human_time(o.estimated_cost),
        o.cost_model.source,
    );
    for warning in &report.warnings {
        let _ = writeln!(out, "warning: {warning}");
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
