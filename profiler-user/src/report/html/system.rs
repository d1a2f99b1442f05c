//! The System tab: the target's CPU and resident set over time, the machine, and what
//! profiling cost the target.

use serde_json::Value;

use super::{at, bytes, esc, f64_at, facts, list, none, str_at, svg, text, time, u64_at};

pub(super) fn render(report: &Value, out: &mut String) {
    let system = at(report, "/system");
    if system.is_null() {
        none("No /proc sample of the target: no system section.", out);
    } else {
        let points = list(system, "/timeline");
        out.push_str("<h2>CPU and memory over time</h2>");
        if points.is_empty() {
            none(
                "The report has no timeline (a report before schema 3.1): the figures below only.",
                out,
            );
        } else {
            let cpu: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (f64_at(p, "/at"), f64_at(p, "/cpu")))
                .collect();
            let rss: Vec<(f64, f64)> = points
                .iter()
                .map(|p| (f64_at(p, "/at"), u64_at(p, "/rss") as f64))
                .collect();
            out.push_str("<div class=\"cols\"><div><h4>CPU (percent of one core)</h4>");
            svg::line_chart("CPU use over time", &cpu, &|v| format!("{v:.0}%"), out);
            out.push_str("</div><div><h4>Resident set</h4>");
            svg::line_chart("resident set over time", &rss, &|v| bytes(v as u64), out);
            out.push_str("</div></div>");
        }
        facts(
            &[
                (
                    "CPU",
                    esc(&format!(
                        "{:.1}% now, {:.1}% peak, {:.1}% average (percent of one core)",
                        f64_at(system, "/current_cpu"),
                        f64_at(system, "/peak_cpu"),
                        f64_at(system, "/average_cpu")
                    )),
                ),
                (
                    "resident set",
                    esc(&format!(
                        "{} now, {} peak",
                        bytes(u64_at(system, "/current_rss")),
                        bytes(u64_at(system, "/peak_rss"))
                    )),
                ),
                (
                    "samples",
                    esc(&format!(
                        "{} every {}",
                        u64_at(system, "/samples"),
                        time(f64_at(system, "/interval"))
                    )),
                ),
            ],
            out,
        );
        out.push_str("<h2>Machine</h2>");
        let m = at(system, "/machine");
        facts(
            &[
                (
                    "cores",
                    esc(&format!(
                        "{} logical, {} physical",
                        u64_at(m, "/cores"),
                        match text(at(m, "/physical_cores")) {
                            s if s.is_empty() => "unknown".to_string(),
                            s => s,
                        }
                    )),
                ),
                ("CPU model", esc(str_at(m, "/cpu_model"))),
                ("memory", esc(&bytes(u64_at(m, "/memory")))),
                ("kernel", esc(str_at(m, "/kernel"))),
            ],
            out,
        );
    }
    overhead(report, out);
}

/// What profiling cost the target.
fn overhead(report: &Value, out: &mut String) {
    let o = at(report, "/overhead");
    out.push_str("<h2>What profiling cost</h2>");
    let slowdown = if o.get("dominated") == Some(&Value::Bool(true)) {
        "the probes took ≥ 90% of the target's CPU: it ran roughly 10× slower or more".to_string()
    } else {
        format!("{:.2}%", f64_at(o, "/estimated_slowdown_percent"))
    };
    let model = at(o, "/cost_model");
    let mut rows = vec![
        ("probes attached", esc(&text(at(o, "/probes_attached")))),
        ("probe hits", esc(&text(at(o, "/probe_hits")))),
        (
            "added to the target",
            esc(&format!(
                "~{} of its {} of CPU ({:.2}%)",
                time(f64_at(o, "/estimated_cost")),
                time(f64_at(o, "/target_cpu_time")),
                f64_at(o, "/probe_share_percent")
            )),
        ),
        ("estimated slowdown", esc(&slowdown)),
        (
            "cost model",
            esc(&format!(
                "{}: entry {} (emulated) or {} (single-stepped), return {}, in-call {}",
                str_at(model, "/source"),
                time(f64_at(model, "/emulated_entry_ns") * 1e-9),
                time(f64_at(model, "/single_stepped_entry_ns") * 1e-9),
                time(f64_at(model, "/return_ns") * 1e-9),
                time(f64_at(model, "/in_call_ns") * 1e-9)
            )),
        ),
    ];
    let budget = at(o, "/budget");
    if !budget.is_null() {
        rows.push((
            "budget",
            esc(&format!(
                "{}% slowdown; {} detach(es)",
                f64_at(budget, "/max_percent"),
                list(budget, "/detached").len()
            )),
        ));
    }
    for (label, pointer) in [("lost", "/lost"), ("notes", "/notes")] {
        if let Some(m) = at(o, pointer).as_object().filter(|m| !m.is_empty()) {
            let s: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            rows.push((label, esc(&s.join(", "))));
        }
    }
    facts(&rows, out);
}
