//! The tabs of the optional families: Memory (the leak verdict and where memory grows),
//! Threads (on/off CPU per thread, locks, deadlock cycles), CPU (where the samples fell) and
//! Python (the interpreter, its exceptions and allocations).

use std::fmt::Write as _;

use serde_json::Value;

use super::{
    at, badge, bytes, esc, f64_at, facts, list, none, stack, str_at, svg, text, time, u64_at,
};

const MAX_FRAMES: usize = 12;
/// Rows shown per table (the JSON has them all).
const MAX_ROWS: usize = 50;

/// `bytes` and `count` of a tally object.
pub(super) fn tally(v: &Value) -> String {
    format!(
        "{} in {} block(s)",
        bytes(u64_at(v, "/bytes")),
        u64_at(v, "/count")
    )
}

pub(super) fn memory(report: &Value, out: &mut String) {
    let m = at(report, "/memory");
    let leaks = at(m, "/memory_leak_detection");
    let method = str_at(leaks, "/method");
    let verdict = if leaks.get("detected") == Some(&Value::Bool(true)) {
        "<span class=\"sev sev-high\">leak detected</span>"
    } else {
        "<span class=\"sev sev-low\">no leak detected</span>"
    };
    let _ = write!(
        out,
        "<h2>Leak verdict</h2><p class=\"verdict\">{verdict} <span class=\"dim\">(method: {})</span></p>",
        esc(method)
    );
    facts(
        &[
            (
                "definitely lost",
                esc(&tally(at(leaks, "/definitely_lost"))),
            ),
            (
                "indirectly lost",
                esc(&tally(at(leaks, "/indirectly_lost"))),
            ),
            ("reachable", esc(&tally(at(leaks, "/reachable")))),
            (
                "resident",
                esc(&format!(
                    "{} now, {} peak, trend {}",
                    bytes(u64_at(m, "/current_memory")),
                    bytes(u64_at(m, "/peak_memory")),
                    str_at(m, "/memory_trend")
                )),
            ),
            (
                "allocations",
                esc(&format!(
                    "{} ({}), freed {} ({}), outstanding {} ({})",
                    u64_at(m, "/allocations/allocations"),
                    bytes(u64_at(m, "/allocations/allocated_bytes")),
                    u64_at(m, "/allocations/frees"),
                    bytes(u64_at(m, "/allocations/freed_bytes")),
                    u64_at(m, "/allocations/outstanding"),
                    bytes(u64_at(m, "/allocations/outstanding_bytes"))
                )),
            ),
        ],
        out,
    );
    for note in list(leaks, "/notes") {
        let _ = write!(out, "<p class=\"dim\">{}</p>", esc(&text(note)));
    }
    out.push_str("<h3>Sites</h3>");
    let sites = list(leaks, "/sites");
    if sites.is_empty() {
        none("No outstanding allocation site.", out);
    }
    for s in sites.iter().take(MAX_ROWS) {
        let verdict = str_at(s, "/verdict");
        let severity = match verdict {
            "definitely_lost" | "growing" => "high",
            "indirectly_lost" => "medium",
            _ => "low",
        };
        let _ = write!(
            out,
            "<details class=\"site\"><summary>{} <b>{}</b> {} · {} outstanding in {} block(s) · trend {}</summary>",
            badge(severity),
            esc(&verdict.replace('_', " ")),
            esc(str_at(s, "/function")),
            esc(&bytes(u64_at(s, "/bytes"))),
            u64_at(s, "/count"),
            esc(str_at(s, "/trend"))
        );
        facts(
            &[
                ("definitely lost", esc(&tally(at(s, "/definitely_lost")))),
                ("indirectly lost", esc(&tally(at(s, "/indirectly_lost")))),
                ("reachable", esc(&tally(at(s, "/reachable")))),
                ("growth", esc(&format!("{:.1} B/s", f64_at(s, "/growth")))),
            ],
            out,
        );
        stack(list(s, "/stack"), MAX_FRAMES, out);
        out.push_str("</details>");
    }
    out.push_str("<h3>Growth sites (resident pages given, by stack)</h3>");
    let growth = list(m, "/growth_sites");
    if growth.is_empty() {
        none("No growth site.", out);
    }
    for g in growth.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<details class=\"site\"><summary><b>{}</b> · {} in {} page(s) · {:.1} B/s, {}</summary>",
            esc(str_at(g, "/function")),
            esc(&bytes(u64_at(g, "/bytes"))),
            u64_at(g, "/pages"),
            f64_at(g, "/growth"),
            esc(str_at(g, "/trend"))
        );
        stack(list(g, "/stack"), MAX_FRAMES, out);
        out.push_str("</details>");
    }
}

pub(super) fn threads(report: &Value, out: &mut String) {
    let t = at(report, "/threads");
    out.push_str(
        "<h2>Threads</h2><table><thead><tr><th>tid</th><th>name</th><th>on CPU</th><th>off CPU</th>\
         <th>blocked (lock / io / sleep / other)</th><th>runnable</th><th>switches (vol / invol)</th></tr></thead><tbody>",
    );
    for th in list(t, "/threads").iter().take(MAX_ROWS * 4) {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
             <td>{} ({} / {} / {} / {})</td><td class=\"num\">{}</td><td class=\"num\">{} / {}</td></tr>",
            esc(&text(at(th, "/tid"))),
            esc(str_at(th, "/name")),
            esc(&time(f64_at(th, "/on_cpu_time"))),
            esc(&time(f64_at(th, "/off_cpu_time"))),
            esc(&time(f64_at(th, "/blocked_time"))),
            esc(&time(f64_at(th, "/blocked/lock"))),
            esc(&time(f64_at(th, "/blocked/io"))),
            esc(&time(f64_at(th, "/blocked/sleep"))),
            esc(&time(f64_at(th, "/blocked/other"))),
            esc(&time(f64_at(th, "/runnable_time"))),
            u64_at(th, "/voluntary_switches"),
            u64_at(th, "/involuntary_switches")
        );
    }
    out.push_str("</tbody></table><h2>Locks</h2>");
    let locks = list(t, "/locks");
    if locks.is_empty() {
        none("No lock contention seen.", out);
    }
    for l in locks.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<details class=\"site\"><summary><b>{}</b> {} {} · {} contended, waited {} (max {})</summary>",
            esc(str_at(l, "/kind")),
            esc(str_at(l, "/address")),
            esc(str_at(l, "/symbol")),
            u64_at(l, "/contended"),
            esc(&time(f64_at(l, "/wait_time"))),
            esc(&time(f64_at(l, "/max_wait")))
        );
        for w in list(l, "/top_waiting_stacks").iter().take(3) {
            let _ = write!(
                out,
                "<p class=\"dim\">{} wait(s), {}:</p>",
                u64_at(w, "/count"),
                esc(&time(f64_at(w, "/total_time")))
            );
            stack(list(w, "/stack"), MAX_FRAMES, out);
        }
        out.push_str("</details>");
    }
    out.push_str("<h2>Deadlocks</h2>");
    let live = list(t, "/deadlocks/live");
    let potential = list(t, "/deadlocks/potential");
    if live.is_empty() && potential.is_empty() {
        none("No deadlock, live or potential.", out);
    }
    for d in live {
        let threads = list(d, "/threads");
        let labels: Vec<String> = threads
            .iter()
            .map(|th| format!("{} {}", text(at(th, "/tid")), str_at(th, "/name")))
            .collect();
        let _ = write!(
            out,
            "<div class=\"card sevborder-critical\"><h3>{} live deadlock at {} ({})</h3>",
            badge("critical"),
            esc(&time(f64_at(d, "/detected_at"))),
            esc(str_at(d, "/found_by"))
        );
        svg::cycle("threads waiting for each other", &labels, out);
        for th in threads {
            let _ = write!(
                out,
                "<p>{} ({}) waits for {} {} held by {} for {}</p>",
                esc(&text(at(th, "/tid"))),
                esc(str_at(th, "/name")),
                esc(str_at(th, "/lock_kind")),
                esc(str_at(th, "/waits_for")),
                esc(&text(at(th, "/held_by"))),
                esc(&time(f64_at(th, "/waiting_for")))
            );
            stack(list(th, "/blocked_stack"), MAX_FRAMES, out);
        }
        out.push_str("</div>");
    }
    for p in potential {
        let locks: Vec<String> = list(p, "/locks").iter().map(text).collect();
        let _ = write!(
            out,
            "<div class=\"card sevborder-high\"><h3>{} potential deadlock: lock order cycle</h3>",
            badge("high")
        );
        svg::cycle("locks taken in opposite orders", &locks, out);
        for e in list(p, "/edges") {
            let _ = write!(
                out,
                "<p>thread {} ({}) took {} then {} ({} time(s))</p>",
                esc(&text(at(e, "/tid"))),
                esc(str_at(e, "/thread")),
                esc(str_at(e, "/from")),
                esc(str_at(e, "/to")),
                u64_at(e, "/count")
            );
        }
        out.push_str("</div>");
    }
}

pub(super) fn cpu(report: &Value, out: &mut String) {
    let c = at(report, "/cpu");
    let _ = write!(
        out,
        "<h2>CPU samples</h2><p>{} sample(s) at {} Hz ({} of CPU) · {:.1}% of stacks complete · \
         process CPU {:.1}% average, {:.1}% peak (percent of one core), trend {}</p>\
         <p class=\"dim\">The flame graph is on the Performance tab.</p>",
        u64_at(c, "/samples"),
        u64_at(c, "/frequency"),
        esc(&time(
            u64_at(c, "/samples") as f64 / u64_at(c, "/frequency").max(1) as f64
        )),
        f64_at(c, "/complete_stacks_percent"),
        f64_at(c, "/average_cpu"),
        f64_at(c, "/peak_cpu"),
        esc(str_at(c, "/cpu_trend"))
    );
    for (title, pointer) in [
        ("Self (innermost frame)", "/top_self"),
        ("Total (anywhere on the stack)", "/top_total"),
    ] {
        let _ = write!(
            out,
            "<h3>{title}</h3><table><thead><tr><th>function</th><th>module</th><th>samples</th><th>share</th></tr></thead><tbody>"
        );
        for f in list(c, pointer) {
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td></tr>",
                esc(str_at(f, "/function")),
                esc(str_at(f, "/module")),
                u64_at(f, "/samples"),
                f64_at(f, "/percent")
            );
        }
        out.push_str("</tbody></table>");
    }
    out.push_str("<h3>Threads</h3><table><thead><tr><th>tid</th><th>name</th><th>samples</th><th>share</th><th>CPU average</th></tr></thead><tbody>");
    for t in list(c, "/threads").iter().take(MAX_ROWS * 4) {
        let _ = write!(
            out,
            "<tr><td class=\"num\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{:.1}%</td><td class=\"num\">{:.1}%</td></tr>",
            esc(&text(at(t, "/tid"))),
            esc(str_at(t, "/name")),
            u64_at(t, "/samples"),
            f64_at(t, "/percent"),
            f64_at(t, "/average_cpu")
        );
    }
    out.push_str("</tbody></table>");
}

pub(super) fn python(report: &Value, out: &mut String) {
    let p = at(report, "/python");
    let interp = at(p, "/interpreter");
    out.push_str("<h2>Python</h2>");
    if interp.is_null() {
        none(
            &format!(
                "No CPython interpreter in the target{}.",
                match str_at(p, "/unsupported") {
                    "" => String::new(),
                    why => format!(": {why}"),
                }
            ),
            out,
        );
        return;
    }
    facts(
        &[
            (
                "interpreter",
                esc(&format!(
                    "{} {}",
                    str_at(interp, "/path"),
                    str_at(interp, "/version")
                )),
            ),
            ("threads", esc(&text(at(p, "/threads")))),
            (
                "walks",
                esc(&format!(
                    "{} stack(s), {} frame(s)",
                    u64_at(p, "/walks/stacks"),
                    u64_at(p, "/walks/frames")
                )),
            ),
            (
                "exceptions",
                esc(&format!(
                    "{} raised, {} uncaught",
                    u64_at(p, "/exceptions/raised"),
                    u64_at(p, "/exceptions/uncaught")
                )),
            ),
        ],
        out,
    );
    out.push_str("<h3>Raise sites</h3><table><thead><tr><th>exception</th><th>where</th><th>raised</th><th>caught</th><th>uncaught</th></tr></thead><tbody>");
    for s in list(p, "/exceptions/sites").iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} {}:{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(str_at(s, "/exception")),
            esc(str_at(s, "/function")),
            esc(str_at(s, "/file")),
            esc(&text(at(s, "/line"))),
            u64_at(s, "/raised"),
            u64_at(s, "/caught"),
            u64_at(s, "/uncaught")
        );
    }
    out.push_str("</tbody></table>");
    let sites = list(p, "/allocations/sites");
    if !sites.is_empty() {
        out.push_str("<h3>Python allocation sites</h3><table><thead><tr><th>function</th><th>where</th><th>outstanding</th><th>peak</th><th>allocated</th></tr></thead><tbody>");
        for s in sites.iter().take(MAX_ROWS) {
            let signed = |p: &str| at(s, p).as_i64().unwrap_or(0).max(0) as u64;
            let _ = write!(
                out,
                "<tr><td>{}</td><td>{}:{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
                esc(str_at(s, "/function")),
                esc(str_at(s, "/file")),
                esc(&text(at(s, "/line"))),
                esc(&bytes(signed("/outstanding_bytes"))),
                esc(&bytes(signed("/peak_bytes"))),
                esc(&bytes(u64_at(s, "/allocated_bytes")))
            );
        }
        out.push_str("</tbody></table>");
    }
}
