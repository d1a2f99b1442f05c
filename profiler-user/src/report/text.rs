//! The printed summary's head and foot (target, what profiling cost) and its units. Each
//! family writes its own block in between (`Family::summary`).

use std::{fmt::Write, ops::Range};

use super::{Report, errors::Severity};

/// What a line of the summary shows in colour, in the severity colours the live view and the
/// HTML report use (`Severity::ansi256`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Highlight {
    /// An error's severity tag (`[critical]`), at these bytes of the line.
    Tag(Severity, Range<usize>),
    /// The whole line: a live deadlock (critical) or a lock-order cycle (high), as the HTML
    /// report's deadlock cards.
    Line(Severity),
}

/// The colour of one line of the summary, if it has one.
pub(crate) fn highlight(line: &str) -> Option<Highlight> {
    let trimmed = line.trim_start();
    if trimmed.starts_with("LIVE DEADLOCK") {
        return Some(Highlight::Line(Severity::Critical));
    }
    if trimmed.starts_with("potential deadlock") {
        return Some(Highlight::Line(Severity::High));
    }
    let start = line.len() - trimmed.len();
    [
        Severity::Critical,
        Severity::High,
        Severity::Medium,
        Severity::Low,
    ]
    .into_iter()
    .find(|s| trimmed.starts_with(&format!("[{}] ", s.as_str())))
    .map(|s| Highlight::Tag(s, start..start + s.as_str().len() + 2))
}

/// The summary with its severities in colour, for a terminal (xterm-256 escapes).
pub(crate) fn colorize(summary: &str) -> String {
    let mut out = String::with_capacity(summary.len() + 256);
    for line in summary.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(body) => (body, "\n"),
            None => (line, ""),
        };
        let paint = |s: Severity, text: &str| format!("\x1b[38;5;{}m{text}\x1b[0m", s.ansi256());
        match highlight(body) {
            Some(Highlight::Line(s)) => out.push_str(&paint(s, body)),
            Some(Highlight::Tag(s, range)) => {
                out.push_str(&body[..range.start]);
                out.push_str(&paint(s, &body[range.clone()]));
                out.push_str(&body[range.end..]);
            }
            None => out.push_str(body),
        }
        out.push_str(newline);
    }
    out
}

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

    #[test]
    fn severities_and_deadlocks_are_coloured_as_in_the_view_and_the_page() {
        let summary = "errors: 2 (1 critical, 1 high)\n  [critical] CUDA_OUT_OF_MEMORY x1 (memory)\n  \
                       [high] CONNECTION_REFUSED x1\npotential deadlock (lock order): A -> B\n\
                       LIVE DEADLOCK (found at 2.0 s): 7 -> 8\nthe end";
        let out = colorize(summary);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], "errors: 2 (1 critical, 1 high)");
        assert_eq!(
            lines[1],
            "  \x1b[38;5;204m[critical]\x1b[0m CUDA_OUT_OF_MEMORY x1 (memory)"
        );
        assert_eq!(
            lines[2],
            "  \x1b[38;5;209m[high]\x1b[0m CONNECTION_REFUSED x1"
        );
        assert_eq!(
            lines[3],
            "\x1b[38;5;209mpotential deadlock (lock order): A -> B\x1b[0m"
        );
        assert!(lines[4].starts_with("\x1b[38;5;204mLIVE DEADLOCK"));
        assert_eq!(lines[5], "the end");
        assert!(!out.ends_with('\n'));
        // Nothing else changes: without the escapes it is the summary.
        let plain = out
            .replace("\x1b[0m", "")
            .replace("\x1b[38;5;204m", "")
            .replace("\x1b[38;5;209m", "");
        assert_eq!(plain, summary);
        assert_eq!(
            highlight("[low] x"),
            Some(Highlight::Tag(Severity::Low, 0..5))
        );
        assert_eq!(highlight("a [high] in the middle"), None);
    }
}
