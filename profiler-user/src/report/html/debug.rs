//! The Debug tab: the run, its warnings, the families and what became of them, the processes,
//! and one log of what happened, in time order.

use std::fmt::Write as _;

use serde_json::Value;

use super::{at, badge, esc, f64_at, facts, list, none, str_at, text, time};

/// The most entries the event log shows.
pub(crate) const MAX_LOG: usize = 1000;

/// One line of the event log.
struct Entry {
    at: f64,
    severity: String,
    kind: &'static str,
    what: String,
}

pub(super) fn render(report: &Value, out: &mut String) {
    out.push_str("<h2>Run</h2>");
    let status = at(report, "/target/exit_status");
    let exit = if status.is_null() {
        "still running when profiling ended".to_string()
    } else if let Some(code) = status.get("code").and_then(Value::as_i64) {
        format!("exited with code {code}")
    } else {
        let core = if status.get("core_dumped") == Some(&Value::Bool(true)) {
            " (core dumped)"
        } else {
            ""
        };
        format!("killed by {}{core}", text(at(status, "/signal")))
    };
    let cmdline: Vec<String> = list(report, "/target/cmdline").iter().map(text).collect();
    facts(
        &[
            ("target", esc(str_at(report, "/target/exe"))),
            ("pid", esc(&text(at(report, "/target/pid")))),
            ("command line", esc(&cmdline.join(" "))),
            ("mode", esc(str_at(report, "/profiler/mode"))),
            ("level", esc(str_at(report, "/profiler/debug_level"))),
            ("duration", esc(&time(f64_at(report, "/profiler/duration")))),
            (
                "end reason",
                esc(&str_at(report, "/profiler/end_reason").replace('_', " ")),
            ),
            ("exit status", esc(&exit)),
            (
                "profiler",
                esc(&format!(
                    "{} (report schema {})",
                    str_at(report, "/profiler/version"),
                    str_at(report, "/schema_version")
                )),
            ),
        ],
        out,
    );

    out.push_str("<h2>Warnings</h2>");
    let warnings = list(report, "/warnings");
    if warnings.is_empty() {
        none("No warnings.", out);
    } else {
        out.push_str("<ul class=\"warnings\">");
        for w in warnings {
            let _ = write!(out, "<li>{}</li>", esc(&text(w)));
        }
        out.push_str("</ul>");
    }

    out.push_str(
        "<h2>Families</h2><table><thead><tr><th>family</th><th>status</th><th>probes</th>\
         <th>note</th></tr></thead><tbody>",
    );
    for f in list(report, "/families") {
        let status = str_at(f, "/status");
        let _ = write!(
            out,
            "<tr><td>{}</td><td><span class=\"status status-{}\">{}</span></td><td class=\"num\">{}</td><td>{}</td></tr>",
            esc(str_at(f, "/name")),
            esc(status),
            esc(&status.replace('_', " ")),
            esc(&text(at(f, "/probes"))),
            esc(str_at(f, "/note"))
        );
    }
    out.push_str("</tbody></table>");

    out.push_str(
        "<h2>Processes</h2><table><thead><tr><th>pid</th><th>parent</th><th>command</th>\
         <th>exit</th><th>followed</th></tr></thead><tbody>",
    );
    for p in list(report, "/processes") {
        let command: Vec<String> = list(p, "/command").iter().map(text).collect();
        let status = at(p, "/exit_status");
        let exit = match (
            status.get("code").and_then(Value::as_i64),
            status.get("signal"),
        ) {
            (Some(code), _) => format!("code {code}"),
            (None, Some(Value::String(signal))) => signal.clone(),
            _ => String::new(),
        };
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&text(at(p, "/pid"))),
            esc(&text(at(p, "/parent_pid"))),
            esc(&command.join(" ")),
            esc(&exit),
            esc(&text(at(p, "/followed")))
        );
    }
    out.push_str("</tbody></table>");

    log(report, out);
}

/// The event log: errors' events, budget detaches, live deadlocks, the processes started and
/// ended while profiled, and the target's end.
fn log(report: &Value, out: &mut String) {
    let mut entries: Vec<Entry> = Vec::new();
    for e in list(report, "/errors/events") {
        entries.push(Entry {
            at: f64_at(e, "/timestamp"),
            severity: str_at(e, "/severity").to_string(),
            kind: "error",
            what: format!(
                "{} (pid {}): {}",
                str_at(e, "/error_type"),
                text(at(e, "/pid")),
                str_at(e, "/message")
            ),
        });
    }
    for d in list(report, "/overhead/budget/detached") {
        entries.push(Entry {
            at: f64_at(d, "/at"),
            severity: String::new(),
            kind: "budget",
            what: format!(
                "detached {} (window slowdown {:.1}%)",
                str_at(d, "/function"),
                f64_at(d, "/window_slowdown_percent")
            ),
        });
    }
    for d in list(report, "/threads/deadlocks/live") {
        let threads: Vec<String> = list(d, "/threads")
            .iter()
            .map(|t| format!("{} ({})", text(at(t, "/tid")), str_at(t, "/name")))
            .collect();
        entries.push(Entry {
            at: f64_at(d, "/detected_at"),
            severity: "critical".into(),
            kind: "deadlock",
            what: format!("threads {} wait for each other", threads.join(", ")),
        });
    }
    for p in list(report, "/processes") {
        let pid = text(at(p, "/pid"));
        let command = list(p, "/command")
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" ");
        if let Some(forked) = at(p, "/forked_at").as_f64() {
            entries.push(Entry {
                at: forked,
                severity: String::new(),
                kind: "process",
                what: format!(
                    "pid {pid} started by {} ({command})",
                    text(at(p, "/parent_pid"))
                ),
            });
        }
        // The target's own end is the entry below.
        if let Some(exited) = at(p, "/exited_at").as_f64()
            && pid != text(at(report, "/target/pid"))
        {
            entries.push(Entry {
                at: exited,
                severity: String::new(),
                kind: "process",
                what: format!("pid {pid} exited ({command})"),
            });
        }
    }
    if str_at(report, "/profiler/end_reason") == "target_exited" {
        entries.push(Entry {
            at: f64_at(report, "/profiler/duration"),
            severity: String::new(),
            kind: "process",
            what: format!("target {} exited", text(at(report, "/target/pid"))),
        });
    }
    entries.sort_by(|a, b| a.at.total_cmp(&b.at));
    let _ = write!(
        out,
        "<h2>Event log</h2><p class=\"dim\">{} event(s) in time order{}.</p>",
        entries.len(),
        if entries.len() > MAX_LOG {
            format!(", the first {MAX_LOG} shown")
        } else {
            String::new()
        }
    );
    out.push_str(
        "<table class=\"log\"><thead><tr><th>at</th><th>kind</th><th>severity</th><th>what</th></tr></thead><tbody>",
    );
    for e in entries.iter().take(MAX_LOG) {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(&time(e.at)),
            e.kind,
            if e.severity.is_empty() {
                String::new()
            } else {
                badge(&e.severity)
            },
            esc(&e.what)
        );
    }
    out.push_str("</tbody></table>");
}
