//! The Performance tab: the traced functions (a table sorted by clicking a column; a row
//! expands to its duration histogram, callers and stacks), the functions not traced, and the
//! CPU flame graph drawn by the page's script from `cpu.stacks`.

use std::{collections::HashMap, fmt::Write as _};

use serde_json::{Value, json};

use super::{
    at, bytes, esc, f64_at, facts, list, none, script_json, stack, str_at, svg, time, u64_at,
};

/// Callers and stacks shown per function (the JSON has them all).
const MAX_CALLERS: usize = 10;
const MAX_STACKS: usize = 3;
const MAX_FRAMES: usize = 12;
/// Functions whose row expands (the longest total time first, as the JSON lists them): past
/// them a page of a thousand traced functions would weigh megabytes of stacks.
pub(crate) const DETAILED: usize = 200;

pub(super) fn render(report: &Value, out: &mut String) {
    functions(report, out);
    skipped(report, out);
    if !at(report, "/cpu").is_null() {
        flame(report, out);
    }
}

fn functions(report: &Value, out: &mut String) {
    let functions = list(report, "/functions");
    let _ = write!(out, "<h2>Functions</h2>");
    if functions.is_empty() {
        none(
            "No function traced (trace some with --func; see `profiler run --help`).",
            out,
        );
        return;
    }
    out.push_str(
        "<p class=\"dim\">Click a column to sort, a row to see its durations, callers and stacks. \
         Times are inclusive (callees included).</p><table class=\"sortable\" id=\"functions\"><thead><tr>",
    );
    let columns = [
        ("function", "text"),
        ("module", "text"),
        ("calls", "num"),
        ("total", "num"),
        ("average", "num"),
        ("p50", "num"),
        ("p90", "num"),
        ("p99", "num"),
        ("max", "num"),
    ];
    for (i, (name, kind)) in columns.iter().enumerate() {
        let _ = write!(
            out,
            "<th data-col=\"{i}\" data-kind=\"{kind}\" class=\"sort {kind}\">{name}</th>"
        );
    }
    out.push_str("</tr></thead>");
    for (i, f) in functions.iter().enumerate() {
        let name = str_at(f, "/function_name");
        let secs = |p: &str| {
            let v = f64_at(f, p);
            format!("<td class=\"num\" data-v=\"{v}\">{}</td>", esc(&time(v)))
        };
        let calls = u64_at(f, "/total_calls");
        let _ = write!(
            out,
            "<tbody class=\"fn\"><tr class=\"row\"><td data-v=\"{0}\" class=\"name\">{0}</td><td data-v=\"{1}\">{1}</td>\
             <td class=\"num\" data-v=\"{calls}\">{calls}</td>{2}{3}{4}{5}{6}{7}</tr>",
            esc(name),
            esc(str_at(f, "/module")),
            secs("/total_time"),
            secs("/average_time"),
            secs("/percentiles/p50"),
            secs("/percentiles/p90"),
            secs("/percentiles/p99"),
            secs("/max_time"),
        );
        out.push_str("<tr class=\"detail\" hidden><td colspan=\"9\">");
        if i < DETAILED {
            detail(f, out);
        } else {
            let _ = write!(
                out,
                "<p class=\"dim\">Details (histogram, callers, stacks) are shown for the {DETAILED} \
                 functions of longest total time; this one's are in the JSON report.</p>"
            );
        }
        out.push_str("</td></tr></tbody>");
    }
    out.push_str("</table>");
}

/// What a function's row expands to.
fn detail(f: &Value, out: &mut String) {
    let mut rows = vec![
        ("address", esc(str_at(f, "/address"))),
        (
            "timed calls",
            esc(&format!(
                "{} of {}",
                u64_at(f, "/timed_calls"),
                u64_at(f, "/total_calls")
            )),
        ),
        ("min", esc(&time(f64_at(f, "/min_time")))),
        ("std dev", esc(&time(f64_at(f, "/std_dev_time")))),
        (
            "net average",
            esc(&format!(
                "{} ({:.1}% of the measured time is probe cost)",
                time(f64_at(f, "/net_average_time")),
                f64_at(f, "/probe_share_percent")
            )),
        ),
        (
            "probe",
            esc(&format!(
                "{} on `{}` at +{}, {} hits, ~{}",
                str_at(f, "/probe/class"),
                str_at(f, "/probe/instruction"),
                u64_at(f, "/probe/offset"),
                u64_at(f, "/probe/hits"),
                time(f64_at(f, "/probe/estimated_cost"))
            )),
        ),
    ];
    if let Some(m) = f.get("memory").filter(|m| !m.is_null()) {
        rows.push((
            "memory",
            esc(&format!(
                "{} allocations ({}), {} frees ({}), {:+.1} B net per call",
                u64_at(m, "/allocations"),
                bytes(u64_at(m, "/allocated_bytes")),
                u64_at(m, "/frees"),
                bytes(u64_at(m, "/freed_bytes")),
                f64_at(m, "/net_bytes_per_call")
            )),
        ));
    }
    out.push_str("<div class=\"cols\"><div>");
    facts(&rows, out);
    out.push_str("</div><div>");
    let bars: Vec<(String, u64)> = list(f, "/histogram")
        .iter()
        .map(|b| {
            (
                format!("{}–{}", time(f64_at(b, "/low")), time(f64_at(b, "/high"))),
                u64_at(b, "/count"),
            )
        })
        .collect();
    if bars.is_empty() {
        none("No timed call: no duration histogram.", out);
    } else {
        svg::histogram("durations of the timed calls", &bars, out);
    }
    out.push_str("</div></div>");
    let callers = list(f, "/callers");
    if !callers.is_empty() {
        out.push_str(
            "<h4>Callers</h4><table><thead><tr><th>caller</th><th>calls</th></tr></thead><tbody>",
        );
        for c in callers.iter().take(MAX_CALLERS) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td></tr>",
                esc(&super::frame(c)),
                u64_at(c, "/calls")
            );
        }
        out.push_str("</tbody></table>");
    }
    let stacks = list(f, "/call_stacks");
    if !stacks.is_empty() {
        out.push_str("<h4>Call stacks (sampled)</h4>");
        for s in stacks.iter().take(MAX_STACKS) {
            let _ = write!(
                out,
                "<p class=\"dim\">{} sampled call(s):</p>",
                u64_at(s, "/samples")
            );
            stack(list(s, "/frames"), MAX_FRAMES, out);
        }
    }
}

fn skipped(report: &Value, out: &mut String) {
    let skipped = list(report, "/skipped_functions");
    if skipped.is_empty() {
        return;
    }
    out.push_str("<h2>Not traced</h2><table><thead><tr><th>function</th><th>module</th><th>why</th></tr></thead><tbody>");
    for s in skipped {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            esc(str_at(s, "/function_name")),
            esc(str_at(s, "/module")),
            esc(str_at(s, "/reason"))
        );
    }
    out.push_str("</tbody></table>");
}

/// The flame graph's frame: a search box, the SVG the script draws, and its data.
fn flame(report: &Value, out: &mut String) {
    let stacks = list(report, "/cpu/stacks");
    let _ = write!(
        out,
        "<h2>CPU flame graph</h2><p class=\"dim\">{} sample(s) at {} Hz{}. Click a frame to \
         zoom in, a grey bar above it to zoom out; a search marks the frames whose name holds it.</p>",
        u64_at(report, "/cpu/samples"),
        u64_at(report, "/cpu/frequency"),
        match u64_at(report, "/cpu/stacks_omitted_samples") {
            0 => String::new(),
            n => format!(" ({n} in stacks left out of the report)"),
        }
    );
    if stacks.is_empty() {
        none("No sampled stack: no flame graph.", out);
        return;
    }
    // Names once, stacks as indices: a deep profile repeats its frames in every stack.
    let mut names: Vec<&str> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    let mut rows = Vec::with_capacity(stacks.len());
    for s in stacks {
        let frames: Vec<usize> = list(s, "/frames")
            .iter()
            .map(|f| {
                let name = f.as_str().unwrap_or("??");
                *index.entry(name).or_insert_with(|| {
                    names.push(name);
                    names.len() - 1
                })
            })
            .collect();
        rows.push(json!([frames, u64_at(s, "/samples")]));
    }
    let data = json!({ "names": names, "stacks": rows });
    let _ = write!(
        out,
        "<div class=\"flame-bar\"><input type=\"search\" id=\"flame-search\" placeholder=\"search functions\">\
         <span id=\"flame-match\" class=\"dim\"></span></div>\
         <svg id=\"flame\" class=\"flame\" role=\"img\"><title>CPU flame graph</title></svg>\
         <div id=\"flame-info\" class=\"dim\">&nbsp;</div>\
         <script type=\"application/json\" id=\"flame-data\">{}</script>",
        script_json(&data)
    );
}
