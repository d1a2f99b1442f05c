//! The page's charts, as inline SVG: a line chart over time, a histogram, a timeline of events,
//! and a cycle of threads waiting for each other. Coordinates are written with one decimal.

use std::fmt::Write as _;

use super::esc;

const W: f64 = 720.0;
const H: f64 = 200.0;
/// Room for the axis labels.
const LEFT: f64 = 70.0;
const BOTTOM: f64 = 24.0;
const TOP: f64 = 10.0;

/// A line chart of `(x seconds, y)` points; `label` formats a y value with its unit.
pub(crate) fn line_chart(
    title: &str,
    points: &[(f64, f64)],
    label: &dyn Fn(f64) -> String,
    out: &mut String,
) {
    let x_max = points.iter().map(|p| p.0).fold(0.0, f64::max).max(1e-9);
    let y_max = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let x = |v: f64| LEFT + v / x_max * (W - LEFT - 10.0);
    let y = |v: f64| TOP + (1.0 - v / y_max) * (H - TOP - BOTTOM);
    open(title, out);
    axes(out);
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">0</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
        LEFT - 4.0,
        TOP + 10.0,
        esc(&label(y_max)),
        LEFT - 4.0,
        H - BOTTOM,
        W - 10.0,
        H - 6.0,
        esc(&super::time(x_max)),
    );
    if points.len() == 1 {
        let _ = write!(
            out,
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" class=\"line-dot\"/>",
            x(points[0].0),
            y(points[0].1)
        );
    }
    out.push_str("<polyline class=\"line\" points=\"");
    for (px, py) in points {
        let _ = write!(out, "{:.1},{:.1} ", x(*px), y(*py));
    }
    out.push_str("\"/></svg>");
}

/// A histogram: one bar per `(label, count)`, left to right.
pub(crate) fn histogram(title: &str, bars: &[(String, u64)], out: &mut String) {
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let n = bars.len().max(1) as f64;
    let width = (W - LEFT - 10.0) / n;
    open(title, out);
    axes(out);
    let _ = write!(
        out,
        "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{max} calls</text>",
        LEFT - 4.0,
        TOP + 10.0
    );
    for (i, (label, count)) in bars.iter().enumerate() {
        let h = *count as f64 / max * (H - TOP - BOTTOM);
        let x = LEFT + i as f64 * width;
        let _ = write!(
            out,
            "<rect class=\"bar\" x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\">\
             <title>{}: {count} calls</title></rect>",
            x + 1.0,
            H - BOTTOM - h,
            (width - 2.0).max(1.0),
            h,
            esc(label)
        );
    }
    if let (Some(first), Some(last)) = (bars.first(), bars.last()) {
        let _ = write!(
            out,
            "<text x=\"{LEFT:.1}\" y=\"{:.1}\" class=\"axis\">{}</text>\
             <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>",
            H - 6.0,
            esc(&first.0),
            W - 10.0,
            H - 6.0,
            esc(&last.0)
        );
    }
    out.push_str("</svg>");
}

/// A timeline: one dot per `(seconds, row, severity, tooltip)`, rows named by `rows`, over a
/// run of `duration` seconds.
pub(crate) fn timeline(
    title: &str,
    rows: &[String],
    dots: &[(f64, usize, &str, String)],
    duration: f64,
    out: &mut String,
) {
    let duration = dots.iter().map(|d| d.0).fold(duration, f64::max).max(1e-9);
    let row_h = 22.0;
    let height = TOP + rows.len().max(1) as f64 * row_h + BOTTOM;
    let left = 160.0;
    let x = |t: f64| left + t / duration * (W - left - 10.0);
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {height:.0}\" role=\"img\"><title>{}</title>",
        esc(title)
    );
    for (i, row) in rows.iter().enumerate() {
        let y = TOP + i as f64 * row_h + row_h / 2.0;
        let _ = write!(
            out,
            "<text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text>\
             <line class=\"grid\" x1=\"{left}\" x2=\"{:.1}\" y1=\"{y:.1}\" y2=\"{y:.1}\"/>",
            left - 6.0,
            y + 4.0,
            esc(row),
            W - 10.0
        );
    }
    for (t, row, severity, tip) in dots {
        let y = TOP + *row as f64 * row_h + row_h / 2.0;
        let _ = write!(
            out,
            "<circle class=\"dot sevfill-{}\" cx=\"{:.1}\" cy=\"{y:.1}\" r=\"5\"><title>{}</title></circle>",
            esc(severity),
            x(*t),
            esc(tip)
        );
    }
    let _ = write!(
        out,
        "<text x=\"{left:.1}\" y=\"{:.1}\" class=\"axis\">0 s</text>\
         <text x=\"{:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"end\">{}</text></svg>",
        height - 6.0,
        W - 10.0,
        height - 6.0,
        esc(&super::time(duration))
    );
}

/// A cycle of waits: nodes on a circle, an arrow from each to the next (`labels[i]` waits for
/// `labels[i + 1]`, the last for the first).
pub(crate) fn cycle(title: &str, labels: &[String], out: &mut String) {
    let (cx, cy, r) = (200.0, 130.0, 90.0);
    let n = labels.len().max(1) as f64;
    let pos = |i: usize| {
        let a = std::f64::consts::TAU * i as f64 / n - std::f64::consts::FRAC_PI_2;
        (cx + r * a.cos(), cy + r * a.sin())
    };
    let _ = write!(
        out,
        "<svg class=\"chart graph\" viewBox=\"0 0 400 260\" role=\"img\"><title>{}</title>\
         <defs><marker id=\"arrow\" viewBox=\"0 0 10 10\" refX=\"10\" refY=\"5\" markerWidth=\"8\" \
         markerHeight=\"8\" orient=\"auto\"><path d=\"M0,0 L10,5 L0,10 z\" class=\"arrowhead\"/></marker></defs>",
        esc(title)
    );
    for i in 0..labels.len() {
        let (x1, y1) = pos(i);
        let (x2, y2) = pos((i + 1) % labels.len());
        // Stop short of the next node's circle.
        let (dx, dy) = (x2 - x1, y2 - y1);
        let len = (dx * dx + dy * dy).sqrt().max(1e-9);
        let k = 18.0 / len;
        let _ = write!(
            out,
            "<line class=\"edge\" x1=\"{:.1}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\" marker-end=\"url(#arrow)\"/>",
            x1 + dx * k,
            y1 + dy * k,
            x2 - dx * k,
            y2 - dy * k
        );
    }
    for (i, label) in labels.iter().enumerate() {
        let (x, y) = pos(i);
        let _ = write!(
            out,
            "<circle class=\"node\" cx=\"{x:.1}\" cy=\"{y:.1}\" r=\"16\"/>\
             <text x=\"{x:.1}\" y=\"{:.1}\" class=\"axis\" text-anchor=\"middle\">{}</text>",
            y + 32.0,
            esc(label)
        );
    }
    out.push_str("</svg>");
}

fn open(title: &str, out: &mut String) {
    let _ = write!(
        out,
        "<svg class=\"chart\" viewBox=\"0 0 {W} {H}\" role=\"img\"><title>{}</title>",
        esc(title)
    );
}

fn axes(out: &mut String) {
    let _ = write!(
        out,
        "<line class=\"axisline\" x1=\"{LEFT}\" y1=\"{TOP}\" x2=\"{LEFT}\" y2=\"{:.1}\"/>\
         <line class=\"axisline\" x1=\"{LEFT}\" y1=\"{:.1}\" x2=\"{:.1}\" y2=\"{:.1}\"/>",
        H - BOTTOM,
        H - BOTTOM,
        W - 10.0,
        H - BOTTOM
    );
}
