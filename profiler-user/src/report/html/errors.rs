//! The Errors tab: the counts, a timeline of the error events, and the incidents grouped by
//! pattern, each with its severity, category, solutions, prevention and examples (frames,
//! context, stack).

use std::fmt::Write as _;

use serde_json::Value;

use super::{at, badge, esc, f64_at, list, none, stack, str_at, svg, text, time, u64_at};

/// Example events shown per pattern (the JSON has up to 1,000 in all).
const EXAMPLES: usize = 5;
const MAX_FRAMES: usize = 16;

/// A group of events: a pattern's, or an unclassified error type's.
struct Group<'a> {
    key: String,
    stat: Option<&'a Value>,
    events: Vec<&'a Value>,
}

/// The key an event is grouped under.
pub(super) fn key(e: &Value) -> String {
    match e.get("pattern").and_then(Value::as_str) {
        Some(p) => p.to_string(),
        None => format!("unclassified {}", str_at(e, "/error_type")),
    }
}

pub(super) fn render(report: &Value, out: &mut String) {
    let errors = at(report, "/errors");
    if errors.is_null() {
        none(
            "The errors family was not attached: no errors section.",
            out,
        );
        return;
    }
    let counts = |pointer: &str| -> String {
        at(errors, pointer)
            .as_object()
            .map(|m| {
                m.iter()
                    .filter(|(_, n)| n.as_u64() != Some(0))
                    .map(|(k, n)| format!("{k} {n}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    let _ = write!(
        out,
        "<h2>Errors</h2><p><b>{}</b> incident(s){} · by severity: {} · by category: {} · events by source: {}</p>",
        u64_at(errors, "/total"),
        if errors.get("exact") == Some(&Value::Bool(false)) {
            " (estimated)"
        } else {
            ""
        },
        esc(&counts("/by_severity")),
        esc(&counts("/by_category")),
        esc(&counts("/by_source"))
    );
    let events = list(errors, "/events");
    let mut groups: Vec<Group> = list(errors, "/patterns")
        .iter()
        .map(|p| Group {
            key: str_at(p, "/id").to_string(),
            stat: Some(p),
            events: Vec::new(),
        })
        .collect();
    for e in events {
        let k = key(e);
        match groups.iter_mut().find(|g| g.key == k) {
            Some(g) => g.events.push(e),
            None => groups.push(Group {
                key: k,
                stat: None,
                events: vec![e],
            }),
        }
    }
    if groups.is_empty() {
        none("No error seen.", out);
    } else {
        timeline(report, &groups, out);
    }
    if u64_at(errors, "/dropped") > 0 {
        let _ = write!(
            out,
            "<p class=\"dim\">{} older detailed event(s) were left out of the report's examples.</p>",
            u64_at(errors, "/dropped")
        );
    }
    for g in &groups {
        group(g, out);
    }
    failures(errors, out);
}

/// One dot per event, a row per group.
fn timeline(report: &Value, groups: &[Group], out: &mut String) {
    let rows: Vec<String> = groups.iter().map(|g| g.key.clone()).collect();
    let mut dots = Vec::new();
    for (row, g) in groups.iter().enumerate() {
        for e in &g.events {
            dots.push((
                f64_at(e, "/timestamp"),
                row,
                str_at(e, "/severity"),
                format!(
                    "{} at {}: {}",
                    str_at(e, "/error_type"),
                    time(f64_at(e, "/timestamp")),
                    str_at(e, "/message")
                ),
            ));
        }
    }
    out.push_str("<h3>Timeline</h3>");
    svg::timeline(
        "error events over the run",
        &rows,
        &dots,
        f64_at(report, "/profiler/duration"),
        out,
    );
}

fn group(g: &Group, out: &mut String) {
    let first = g.events.first().copied();
    let severity = g
        .stat
        .map(|s| str_at(s, "/severity"))
        .or(first.map(|e| str_at(e, "/severity")))
        .unwrap_or("");
    let category = g
        .stat
        .map(|s| str_at(s, "/category"))
        .or(first.map(|e| str_at(e, "/category")))
        .unwrap_or("");
    let _ = write!(
        out,
        "<div class=\"card sevborder-{}\"><h3>{} <code class=\"pattern\">{}</code> <span class=\"dim\">{}</span></h3>",
        esc(severity),
        badge(severity),
        esc(&g.key),
        esc(category)
    );
    if let Some(s) = g.stat {
        let _ = write!(
            out,
            "<p>{} incident(s), {} occurrence(s){} · first at {}, last at {} · trend {}</p>",
            u64_at(s, "/count"),
            u64_at(s, "/occurrences"),
            if s.get("exact") == Some(&Value::Bool(false)) {
                " (estimated)"
            } else {
                ""
            },
            esc(&time(f64_at(s, "/first_seen"))),
            esc(&time(f64_at(s, "/last_seen"))),
            esc(str_at(s, "/trend"))
        );
    }
    if let Some(e) = first {
        if let Some(d) = e.get("description").and_then(Value::as_str) {
            let _ = write!(out, "<p>{}</p>", esc(d));
        }
        advice("Solutions", list(e, "/solutions"), out);
        advice("Prevention", list(e, "/prevention"), out);
    } else {
        out.push_str("<p class=\"dim\">No detailed example in the report (counted only).</p>");
    }
    for e in g.events.iter().rev().take(EXAMPLES) {
        example(e, out);
    }
    if g.events.len() > EXAMPLES {
        let _ = write!(
            out,
            "<p class=\"dim\">{} more example(s) in the JSON report.</p>",
            g.events.len() - EXAMPLES
        );
    }
    out.push_str("</div>");
}

fn advice(title: &str, items: &[Value], out: &mut String) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "<h4>{title}</h4><ul>");
    for i in items {
        let _ = write!(out, "<li>{}</li>", esc(&text(i)));
    }
    out.push_str("</ul>");
}

/// One event: what it was, its context, frames and stack.
fn example(e: &Value, out: &mut String) {
    let _ = write!(
        out,
        "<details class=\"event\"><summary>{} <b>{}</b> at {} · pid {} tid {} · {}</summary>",
        badge(str_at(e, "/severity")),
        esc(str_at(e, "/error_type")),
        esc(&time(f64_at(e, "/timestamp"))),
        esc(&text(at(e, "/pid"))),
        esc(&text(at(e, "/tid"))),
        esc(str_at(e, "/message"))
    );
    let c = at(e, "/context");
    let mut rows = Vec::new();
    for field in [
        "syscall",
        "errno",
        "path",
        "arg",
        "flags",
        "signal",
        "signal_code",
        "fault_addr",
        "exception",
        "exit_code",
        "function",
        "kind",
        "location",
    ] {
        let v = at(c, &format!("/{field}"));
        if !v.is_null() {
            rows.push((field, esc(&text(v))));
        }
    }
    if let Some(cause) = e.get("caused_by").filter(|v| !v.is_null()) {
        rows.push(("caused by event", esc(&text(cause))));
    }
    super::facts(&rows, out);
    let lines = list(c, "/lines");
    if !lines.is_empty() {
        out.push_str("<h4>Printed</h4><pre class=\"printed\">");
        for l in lines.iter().take(40) {
            let _ = writeln!(out, "{}", esc(&text(l)));
        }
        out.push_str("</pre>");
    }
    let frames = list(c, "/frames");
    if !frames.is_empty() {
        out.push_str("<h4>Frames</h4><ol class=\"stack\">");
        for f in frames.iter().take(MAX_FRAMES) {
            let _ = write!(
                out,
                "<li>{} {}:{}</li>",
                esc(str_at(f, "/function")),
                esc(str_at(f, "/file")),
                esc(&text(at(f, "/line")))
            );
        }
        out.push_str("</ol>");
    }
    let user_stack = list(c, "/stack");
    if !user_stack.is_empty() {
        out.push_str("<h4>Stack</h4>");
        stack(user_stack, MAX_FRAMES, out);
    }
    let preceding = list(c, "/preceding");
    if !preceding.is_empty() {
        out.push_str("<h4>Just before</h4>");
        stack(preceding, MAX_FRAMES, out);
    }
    out.push_str("</details>");
}

/// The exact counts: every failed syscall kind, and Python exceptions.
fn failures(errors: &Value, out: &mut String) {
    let kinds = list(errors, "/syscall_failures");
    if !kinds.is_empty() {
        out.push_str("<h3>Failed syscalls (exact counts, benign included)</h3><table><thead><tr><th>syscall</th><th>errno</th><th>count</th></tr></thead><tbody>");
        for k in kinds {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(str_at(k, "/syscall")),
                esc(str_at(k, "/errno")),
                u64_at(k, "/count")
            );
        }
        out.push_str("</tbody></table>");
    }
    let raised = list(errors, "/python_exceptions");
    if !raised.is_empty() {
        out.push_str("<h3>Python exceptions raised</h3><table><thead><tr><th>exception</th><th>where</th><th>raised</th><th>uncaught</th><th>severity</th></tr></thead><tbody>");
        for r in raised {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{} {}:{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{}</td></tr>",
                esc(str_at(r, "/exception")),
                esc(str_at(r, "/function")),
                esc(str_at(r, "/file")),
                esc(&text(at(r, "/line"))),
                u64_at(r, "/raised"),
                u64_at(r, "/uncaught"),
                badge(str_at(r, "/severity"))
            );
        }
        out.push_str("</tbody></table>");
    }
}
