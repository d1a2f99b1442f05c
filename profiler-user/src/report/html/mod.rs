//! The HTML report: one self-contained page (its CSS and JS inline, nothing fetched) rendered
//! from the JSON report as a [`Value`], so that `--html` on a live run and `profiler report
//! FILE.json` on a saved one take the same path. Written mode 0600, as the JSON.
//!
//! Every string from the report passes [`esc`] before it is written (it can hold what the
//! target printed); charts are SVG drawn here ([`svg`]); the page's script only switches tabs,
//! sorts the functions table, expands rows and draws the flame graph from `cpu.stacks`.

mod debug;
mod errors;
mod families;
mod gpu;
mod performance;
mod svg;
mod system;

use std::{
    fmt::Write as _,
    io::{BufWriter, Write as _},
    path::Path,
};

use serde_json::Value;

use super::text::{human_bytes, human_time};
use crate::outfile::Replacement;

const CSS: &str = include_str!("page.css");
const JS: &str = include_str!("page.js");

/// One tab of the page: its id (the URL hash that opens it) and its title.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tab {
    pub id: &'static str,
    pub title: &'static str,
}

/// The tabs a report gets: the four always there, then one per family section present.
pub(crate) fn tabs(report: &Value) -> Vec<Tab> {
    let mut tabs = vec![
        Tab {
            id: "debug",
            title: "Debug",
        },
        Tab {
            id: "performance",
            title: "Performance",
        },
        Tab {
            id: "errors",
            title: "Errors",
        },
        Tab {
            id: "system",
            title: "System",
        },
    ];
    let optional = [
        ("memory", "Memory"),
        ("threads", "Threads"),
        ("cpu", "CPU"),
        ("python", "Python"),
        ("gpu", "GPU"),
    ];
    for (id, title) in optional {
        if report.get(id).is_some_and(|v| !v.is_null()) {
            tabs.push(Tab { id, title });
        }
    }
    tabs
}

/// The page for `report`.
pub(crate) fn render(report: &Value) -> String {
    let mut out = String::with_capacity(64 * 1024);
    let target = str_at(report, "/target/exe");
    let _ = write!(
        out,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'; img-src data:\">\
         <title>profiler report: {}</title><style>{CSS}</style></head><body>\n",
        esc(target)
    );
    let _ = write!(
        out,
        "<header><h1>profiler report</h1><p class=\"sub\">{} · pid {} · level {} · {} · schema {}</p><nav>",
        esc(target),
        num_at(report, "/target/pid"),
        esc(str_at(report, "/profiler/debug_level")),
        esc(&human_time(f64_at(report, "/profiler/duration"))),
        esc(str_at(report, "/schema_version")),
    );
    let tabs = tabs(report);
    for tab in &tabs {
        let _ = write!(
            out,
            "<button class=\"tab\" data-tab=\"{}\">{}</button>",
            tab.id, tab.title
        );
    }
    out.push_str("</nav></header>\n<main>\n");
    for tab in &tabs {
        let _ = write!(out, "<section class=\"panel\" id=\"tab-{}\">", tab.id);
        match tab.id {
            "debug" => debug::render(report, &mut out),
            "performance" => performance::render(report, &mut out),
            "errors" => errors::render(report, &mut out),
            "system" => system::render(report, &mut out),
            "memory" => families::memory(report, &mut out),
            "threads" => families::threads(report, &mut out),
            "cpu" => families::cpu(report, &mut out),
            "python" => families::python(report, &mut out),
            "gpu" => gpu::render(report, &mut out),
            _ => {}
        }
        out.push_str("</section>\n");
    }
    out.push_str("</main><pre id=\"selftest\" hidden></pre>\n");
    let _ = writeln!(out, "<script>{JS}</script></body></html>");
    out
}

/// Writes the page for `report` to `path` (a fresh file, mode 0600, renamed over the path).
pub(crate) fn write(report: &Value, path: &Path) -> std::io::Result<()> {
    let page = render(report);
    let mut file = Replacement::create(path)?;
    let mut out = BufWriter::new(&mut file);
    out.write_all(page.as_bytes())?;
    out.flush()?;
    drop(out);
    file.commit()
}

/// `text` safe in HTML text and in a quoted attribute.
pub(crate) fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// JSON for a `<script type="application/json">` block: `<` written as `\u003c`, so that no
/// text in it can close the block.
pub(crate) fn script_json(value: &Value) -> String {
    value.to_string().replace('<', "\\u003c")
}

/// The value at a JSON pointer, or null.
pub(crate) fn at<'a>(v: &'a Value, pointer: &str) -> &'a Value {
    v.pointer(pointer).unwrap_or(&Value::Null)
}

/// The string at a pointer, or "".
pub(crate) fn str_at<'a>(v: &'a Value, pointer: &str) -> &'a str {
    at(v, pointer).as_str().unwrap_or("")
}

/// The number at a pointer, or 0.
pub(crate) fn f64_at(v: &Value, pointer: &str) -> f64 {
    at(v, pointer).as_f64().unwrap_or(0.0)
}

/// The whole number at a pointer, or 0.
pub(crate) fn u64_at(v: &Value, pointer: &str) -> u64 {
    at(v, pointer).as_u64().unwrap_or(0)
}

/// The array at a pointer, or an empty one.
pub(crate) fn list<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    at(v, pointer).as_array().map_or(&[], Vec::as_slice)
}

/// A value as short text: a string as is, null as "", anything else as JSON.
pub(crate) fn text(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The value at a pointer as short text.
fn num_at(v: &Value, pointer: &str) -> String {
    text(at(v, pointer))
}

/// Seconds, in the unit that fits.
pub(crate) fn time(secs: f64) -> String {
    human_time(secs)
}

/// Bytes, in the unit that fits.
pub(crate) fn bytes(n: u64) -> String {
    human_bytes(n)
}

/// A severity as a coloured badge (the same colours everywhere).
pub(crate) fn badge(severity: &str) -> String {
    let class = match severity {
        "critical" | "high" | "medium" | "low" => severity,
        _ => "none",
    };
    format!("<span class=\"sev sev-{class}\">{}</span>", esc(severity))
}

/// A symbolized frame (`function (module+offset) file:line`).
pub(crate) fn frame(f: &Value) -> String {
    let mut s = format!(
        "{} ({}+{})",
        str_at(f, "/function"),
        str_at(f, "/module"),
        str_at(f, "/offset")
    );
    if let Some(file) = f.get("file").and_then(Value::as_str) {
        let _ = write!(s, " {file}");
        if let Some(line) = f.get("line").and_then(Value::as_u64) {
            let _ = write!(s, ":{line}");
        }
    }
    s
}

/// A stack of frames as an escaped `<ol>`, at most `max` frames.
pub(crate) fn stack(frames: &[Value], max: usize, out: &mut String) {
    if frames.is_empty() {
        return;
    }
    out.push_str("<ol class=\"stack\">");
    for f in frames.iter().take(max) {
        let line = match f {
            Value::String(s) => s.clone(),
            _ => frame(f),
        };
        let _ = write!(out, "<li>{}</li>", esc(&line));
    }
    if frames.len() > max {
        let _ = write!(out, "<li class=\"dim\">… {} more</li>", frames.len() - max);
    }
    out.push_str("</ol>");
}

/// A two-column table of facts (label, already-escaped HTML).
pub(crate) fn facts(rows: &[(&str, String)], out: &mut String) {
    out.push_str("<table class=\"facts\">");
    for (label, value) in rows {
        let _ = write!(out, "<tr><th>{}</th><td>{value}</td></tr>", esc(label));
    }
    out.push_str("</table>");
}

/// A paragraph saying that a part of the report is empty.
pub(crate) fn none(what: &str, out: &mut String) {
    let _ = write!(out, "<p class=\"dim\">{}</p>", esc(what));
}

#[cfg(test)]
mod tests;
