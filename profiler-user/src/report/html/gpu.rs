//! The GPU tab: the NVIDIA devices as NVML saw them (or why it could not run), the GPU memory
//! the target held, and what the CUDA probes saw: the libraries probed, the allocations and
//! their leak verdict by site, copies, kernel launches, synchronization waits and failed calls.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
};

use serde_json::Value;

use super::{
    at, badge, bytes, errors, esc, f64_at, facts, families::tally, list, none, stack, str_at, text,
    time, u64_at,
};

const MAX_FRAMES: usize = 12;
/// Rows shown per table (the JSON keeps at most 100 kernels and 50 of the other entries, but
/// every kind of failed call).
const MAX_ROWS: usize = 100;

pub(super) fn render(report: &Value, out: &mut String) {
    let g = at(report, "/gpu");
    devices(g, out);
    memory(g, out);
    out.push_str("<h2>CUDA</h2>");
    let cuda = at(g, "/cuda");
    if cuda.is_null() {
        none("The target mapped no CUDA library: no CUDA probes.", out);
        return;
    }
    for note in list(cuda, "/notes") {
        let _ = write!(out, "<p class=\"dim\">{}</p>", esc(&text(note)));
    }
    libraries(cuda, out);
    allocations(cuda, out);
    sites(cuda, out);
    copies(cuda, out);
    kernels(cuda, out);
    syncs(cuda, out);
    failures(report, cuda, out);
}

/// A number the device may not give, with its unit, or "—".
fn optional(v: &Value, unit: &str) -> String {
    let space = if unit == "%" { "" } else { " " };
    match v.as_f64() {
        Some(n) if v.is_u64() => format!("{n:.0}{space}{unit}"),
        Some(n) => format!("{n:.1}{space}{unit}"),
        None => "—".to_string(),
    }
}

/// "N more in the JSON report", when a table showed `MAX_ROWS` of `rows`.
fn more(rows: &[Value], out: &mut String) {
    if rows.len() > MAX_ROWS {
        let _ = write!(
            out,
            "<p class=\"dim\">{} more in the JSON report.</p>",
            rows.len() - MAX_ROWS
        );
    }
}

/// The host function charged, its stack expandable under it (a table cell's content).
fn charged(v: &Value, out: &mut String) {
    let frames = list(v, "/stack");
    if frames.is_empty() {
        out.push_str(&esc(str_at(v, "/function")));
        return;
    }
    let _ = write!(
        out,
        "<details><summary>{}</summary>",
        esc(str_at(v, "/function"))
    );
    stack(frames, MAX_FRAMES, out);
    out.push_str("</details>");
}

/// The devices NVML saw, or why it could not run.
fn devices(g: &Value, out: &mut String) {
    out.push_str("<h2>Devices</h2>");
    if let Some(why) = g.get("nvml_unavailable").and_then(Value::as_str) {
        let _ = write!(
            out,
            "<div class=\"card\"><p>NVML could not run: <b>{}</b></p>\
             <p class=\"dim\">No device figures; the GPU memory below is what the CUDA probes saw.</p></div>",
            esc(why)
        );
        return;
    }
    facts(
        &[
            ("driver", esc(str_at(g, "/driver_version"))),
            (
                "samples",
                esc(&format!(
                    "{} every {}",
                    u64_at(g, "/samples"),
                    time(f64_at(g, "/interval"))
                )),
            ),
        ],
        out,
    );
    let devices = list(g, "/devices");
    if devices.is_empty() {
        none("NVML found no device.", out);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>device</th><th>memory used (peak) of total</th>\
         <th>utilization (average / peak)</th><th>memory utilization</th><th>temperature</th>\
         <th>power</th><th>clocks (SM / memory)</th><th>target's memory (peak)</th>\
         <th>target's SM share</th></tr></thead><tbody>",
    );
    for d in devices.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{} {} <span class=\"dim\">{}</span></td><td class=\"num\">{} ({}) of {}</td>\
             <td class=\"num\">{:.1}% / {:.1}%</td><td class=\"num\">{:.1}%</td><td class=\"num\">{}</td>\
             <td class=\"num\">{}</td><td class=\"num\">{} / {}</td><td class=\"num\">{} ({})</td>\
             <td class=\"num\">{}</td></tr>",
            esc(&text(at(d, "/index"))),
            esc(str_at(d, "/name")),
            esc(str_at(d, "/uuid")),
            esc(&bytes(u64_at(d, "/memory_used"))),
            esc(&bytes(u64_at(d, "/memory_used_peak"))),
            esc(&bytes(u64_at(d, "/memory_total"))),
            f64_at(d, "/utilization_gpu_average"),
            f64_at(d, "/utilization_gpu_peak"),
            f64_at(d, "/utilization_memory_average"),
            esc(&optional(at(d, "/temperature_c"), "°C")),
            esc(&optional(at(d, "/power_watts"), "W")),
            esc(&optional(at(d, "/sm_clock_mhz"), "MHz")),
            esc(&optional(at(d, "/memory_clock_mhz"), "MHz")),
            esc(&bytes(u64_at(d, "/target_memory"))),
            esc(&bytes(u64_at(d, "/target_memory_peak"))),
            esc(&optional(at(d, "/target_sm_utilization"), "%")),
        );
    }
    out.push_str("</tbody></table>");
    more(devices, out);
    health(devices, out);
}

/// Each device's PCIe throughput, throttling, ECC and XID errors, where NVML gave them.
fn health(devices: &[Value], out: &mut String) {
    out.push_str(
        "<table><thead><tr><th>device</th><th>PCIe out / in (average)</th>\
         <th>throttled (reasons)</th><th>uncorrected ECC errors</th><th>XID errors</th>\
         </tr></thead><tbody>",
    );
    for d in devices.iter().take(MAX_ROWS) {
        let rate = |p: &str| match at(d, p).as_f64() {
            Some(b) => format!("{}/s", bytes(b as u64)),
            None => "—".to_string(),
        };
        let reasons: Vec<&str> = list(d, "/throttle_reasons")
            .iter()
            .filter_map(Value::as_str)
            .collect();
        let xids: Vec<String> = list(d, "/xid_errors")
            .iter()
            .map(|x| format!("{} at {}", text(at(x, "/xid")), time(f64_at(x, "/at"))))
            .collect();
        let _ = write!(
            out,
            "<tr><td>{}</td><td class=\"num\">{} / {}</td><td>{}{}</td><td class=\"num\">{}</td>\
             <td>{}</td></tr>",
            esc(&text(at(d, "/index"))),
            esc(&rate("/pcie_tx_average")),
            esc(&rate("/pcie_rx_average")),
            esc(&optional(at(d, "/throttled_share"), "%")),
            if reasons.is_empty() {
                String::new()
            } else {
                format!(" ({})", esc(&reasons.join(", ")))
            },
            esc(&match at(d, "/ecc_uncorrected_errors") {
                Value::Null => "—".to_string(),
                n => text(n),
            }),
            if xids.is_empty() {
                "none".to_string()
            } else {
                esc(&xids.join(", "))
            },
        );
    }
    out.push_str("</tbody></table>");
}

/// The GPU memory of the target and its followed children, and where the numbers come from.
fn memory(g: &Value, out: &mut String) {
    out.push_str("<h2>The target's GPU memory</h2>");
    let m = at(g, "/gpu_memory");
    let source = match str_at(m, "/source") {
        // Before 3.4 there was only NVML.
        "nvml" | "" => "NVML (the driver's per-process accounting)".to_string(),
        "cuda" => {
            "the CUDA probes (the device allocations outstanding; no NVML figures)".to_string()
        }
        other => other.to_string(),
    };
    facts(
        &[
            (
                "held",
                esc(&format!(
                    "{} at the end, {} peak, trend {}",
                    bytes(u64_at(m, "/allocated")),
                    bytes(u64_at(m, "/peak")),
                    str_at(m, "/trend")
                )),
            ),
            ("source", esc(&source)),
        ],
        out,
    );
}

/// The CUDA libraries probed and their functions.
fn libraries(cuda: &Value, out: &mut String) {
    out.push_str("<h3>Libraries probed</h3>");
    let libraries = list(cuda, "/libraries");
    if libraries.is_empty() {
        none("No CUDA library probed.", out);
    }
    for l in libraries {
        let functions = list(l, "/functions");
        let sum = |pointer: &str| -> u64 { functions.iter().map(|f| u64_at(f, pointer)).sum() };
        let probed_at = f64_at(l, "/probed_at");
        let when = if probed_at > 0.0 {
            format!("<b>mapped later</b>: probed at {}", esc(&time(probed_at)))
        } else {
            "probed at the start".to_string()
        };
        let _ = write!(
            out,
            "<details class=\"site\"><summary><b>{}</b> {} · {when} · {} function(s), {} call(s), {} failed</summary>",
            esc(str_at(l, "/module")),
            esc(str_at(l, "/api")),
            functions.len(),
            sum("/calls"),
            sum("/errors")
        );
        facts(&[("path", esc(str_at(l, "/path")))], out);
        out.push_str(
            "<table><thead><tr><th>function</th><th>calls</th><th>failed</th><th>probe hits</th>\
             <th>estimated cost</th><th>probe</th></tr></thead><tbody>",
        );
        for f in functions {
            let _ = write!(
                out,
                "<tr><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"num\">~{}</td><td>{} at +{}</td></tr>",
                esc(str_at(f, "/name")),
                u64_at(f, "/calls"),
                u64_at(f, "/errors"),
                u64_at(f, "/hits"),
                esc(&time(f64_at(f, "/estimated_cost"))),
                esc(str_at(f, "/probe_class")),
                u64_at(f, "/probe_offset")
            );
        }
        out.push_str("</tbody></table></details>");
    }
}

/// The allocation totals and the leak verdict.
fn allocations(cuda: &Value, out: &mut String) {
    let a = at(cuda, "/allocations");
    let method = str_at(a, "/method");
    let scanned = method == "reachability";
    let verdict = if !scanned {
        "<span class=\"sev sev-none\">not scanned</span>"
    } else if a.get("detected") == Some(&Value::Bool(true)) {
        "<span class=\"sev sev-high\">leak detected</span>"
    } else {
        "<span class=\"sev sev-low\">no leak detected</span>"
    };
    let _ = write!(
        out,
        "<h3>Allocations and leak verdict</h3><p class=\"verdict\">{verdict} <span class=\"dim\">(method: {})</span></p>",
        esc(method)
    );
    let by_space: Vec<String> = at(a, "/outstanding_by_space")
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(space, t)| format!("{space} {}", tally(t)))
                .collect()
        })
        .unwrap_or_default();
    let mut rows = vec![
        ("allocated", esc(&tally(at(a, "/allocated")))),
        ("freed", esc(&tally(at(a, "/freed")))),
        (
            "outstanding",
            esc(&if by_space.is_empty() {
                tally(at(a, "/outstanding"))
            } else {
                format!("{} ({})", tally(at(a, "/outstanding")), by_space.join(", "))
            }),
        ),
    ];
    if scanned {
        rows.extend([
            ("definitely lost", esc(&tally(at(a, "/definitely_lost")))),
            ("indirectly lost", esc(&tally(at(a, "/indirectly_lost")))),
            ("reachable", esc(&tally(at(a, "/reachable")))),
        ]);
    }
    if let Some(why) = a.get("scan_reason").and_then(Value::as_str) {
        rows.push(("no scan", esc(why)));
    }
    facts(&rows, out);
}

/// The allocation sites, each with its verdict and stack.
fn sites(cuda: &Value, out: &mut String) {
    out.push_str("<h3>Allocation sites</h3>");
    let sites = list(cuda, "/sites");
    if sites.is_empty() {
        none("No CUDA allocation site.", out);
    }
    for s in sites.iter().take(MAX_ROWS) {
        let verdict = str_at(s, "/verdict");
        // The memory tab's colours.
        let severity = match verdict {
            "definitely_lost" => "high",
            "indirectly_lost" => "medium",
            _ => "low",
        };
        let _ = write!(
            out,
            "<details class=\"site\"><summary>{} <b>{}</b> {} · {} ({}) · {} outstanding · oldest {}</summary>",
            badge(severity),
            esc(&verdict.replace('_', " ")),
            esc(str_at(s, "/function")),
            esc(str_at(s, "/call")),
            esc(str_at(s, "/space")),
            esc(&tally(at(s, "/outstanding"))),
            esc(&time(f64_at(s, "/oldest_age")))
        );
        facts(
            &[
                ("allocated", esc(&tally(at(s, "/allocated")))),
                ("freed", esc(&tally(at(s, "/freed")))),
                ("outstanding", esc(&tally(at(s, "/outstanding")))),
            ],
            out,
        );
        stack(list(s, "/stack"), MAX_FRAMES, out);
        out.push_str("</details>");
    }
    more(sites, out);
}

fn copies(cuda: &Value, out: &mut String) {
    out.push_str("<h3>Copies</h3>");
    let copies = list(cuda, "/copies");
    if copies.is_empty() {
        none("No CUDA copy.", out);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>call</th><th>direction</th><th>where</th><th>calls</th>\
         <th>failed</th><th>bytes</th><th>host time in the calls</th></tr></thead><tbody>",
    );
    for c in copies.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{}</td><td>",
            esc(str_at(c, "/call")),
            esc(&str_at(c, "/direction").replace('_', " "))
        );
        charged(c, out);
        let _ = write!(
            out,
            "</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            u64_at(c, "/calls"),
            u64_at(c, "/errors"),
            esc(&bytes(u64_at(c, "/bytes"))),
            esc(&time(f64_at(c, "/seconds")))
        );
    }
    out.push_str("</tbody></table>");
    more(copies, out);
}

fn kernels(cuda: &Value, out: &mut String) {
    out.push_str("<h3>Kernel launches</h3>");
    let kernels = list(cuda, "/kernels");
    if kernels.is_empty() {
        none("No kernel launched.", out);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>kernel</th><th>call</th><th>launches</th><th>failed</th>\
         <th>host time in the launches (not GPU time)</th></tr></thead><tbody>",
    );
    for k in kernels.iter().take(MAX_ROWS) {
        let _ = write!(
            out,
            "<tr><td class=\"name\">{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            esc(str_at(k, "/name")),
            esc(str_at(k, "/call")),
            u64_at(k, "/launches"),
            u64_at(k, "/errors"),
            esc(&time(f64_at(k, "/seconds")))
        );
    }
    out.push_str("</tbody></table>");
    more(kernels, out);
}

fn syncs(cuda: &Value, out: &mut String) {
    out.push_str("<h3>Synchronization waits</h3>");
    let syncs = list(cuda, "/syncs");
    if syncs.is_empty() {
        none("No synchronization wait.", out);
        return;
    }
    out.push_str(
        "<table><thead><tr><th>call</th><th>where</th><th>calls</th>\
         <th>host waited for the GPU</th></tr></thead><tbody>",
    );
    for s in syncs.iter().take(MAX_ROWS) {
        let _ = write!(out, "<tr><td>{}</td><td>", esc(str_at(s, "/call")));
        charged(s, out);
        let _ = write!(
            out,
            "</td><td class=\"num\">{}</td><td class=\"num\">{}</td></tr>",
            u64_at(s, "/calls"),
            esc(&time(f64_at(s, "/seconds")))
        );
    }
    out.push_str("</tbody></table>");
    more(syncs, out);
}

/// The failed calls, each with the pattern the Errors tab shows its events under.
fn failures(report: &Value, cuda: &Value, out: &mut String) {
    out.push_str("<h3>Failed calls</h3>");
    let failures = list(cuda, "/errors");
    if failures.is_empty() {
        none("No CUDA call failed.", out);
        return;
    }
    // The Errors tab's groups of the CUDA events, by (call, error): an event's message is
    // `call(args) = error (code)`.
    let mut groups: BTreeMap<(&str, &str), BTreeSet<String>> = BTreeMap::new();
    let events = list(report, "/errors/events");
    for f in failures {
        let (call, error) = (str_at(f, "/call"), str_at(f, "/error"));
        let (head, result) = (format!("{call}("), format!(") = {error} ("));
        let keys = groups.entry((call, error)).or_default();
        for e in events.iter().filter(|e| str_at(e, "/source") == "cuda") {
            let message = str_at(e, "/message");
            if message.starts_with(&head) && message.contains(&result) {
                keys.insert(errors::key(e));
            }
        }
    }
    if at(report, "/errors").is_null() {
        none(
            "The errors family was not attached: these calls are not on the Errors tab.",
            out,
        );
    } else {
        none(
            "Each failed call is also an error event (source cuda) on the Errors tab, \
             classified with the others: the last column names its group there.",
            out,
        );
    }
    out.push_str(
        "<table><thead><tr><th>call</th><th>error</th><th>count</th><th>where</th>\
         <th>on the Errors tab</th></tr></thead><tbody>",
    );
    for f in failures.iter().take(MAX_ROWS) {
        let (call, error) = (str_at(f, "/call"), str_at(f, "/error"));
        let _ = write!(
            out,
            "<tr><td>{}</td><td>{} ({})</td><td class=\"num\">{}</td><td>",
            esc(call),
            esc(error),
            esc(&text(at(f, "/code"))),
            u64_at(f, "/count")
        );
        charged(f, out);
        out.push_str("</td><td>");
        match groups.get(&(call, error)).filter(|k| !k.is_empty()) {
            Some(keys) => {
                for (i, k) in keys.iter().enumerate() {
                    let sep = if i > 0 { ", " } else { "" };
                    let _ = write!(out, "{sep}<code class=\"pattern\">{}</code>", esc(k));
                }
            }
            None => out.push_str("<span class=\"dim\">—</span>"),
        }
        out.push_str("</td></tr>");
    }
    out.push_str("</tbody></table>");
    more(failures, out);
}
