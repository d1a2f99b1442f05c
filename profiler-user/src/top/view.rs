//! The live view's screen, drawn from a snapshot `Report` (pure: the layout is tested with
//! ratatui's test backend). One panel per family that runs, then the overhead panel; a header
//! with the run and the target's CPU, memory and estimated slowdown; a footer with the keys.

use std::collections::HashMap;

use ratatui::{
    Frame,
    layout::{Constraint, Layout, Rect},
    style::{Color, Modifier, Style, Stylize as _},
    text::{Line, Span},
    widgets::{Block, Borders, Cell, Paragraph, Row, Table, Tabs, Wrap},
};

use crate::{
    level::FamilyId,
    report::{
        Report,
        errors::Severity,
        text::{Highlight, highlight, human_bytes, human_time},
    },
};

/// The panels, in the order of the tabs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Panel {
    Functions,
    Errors,
    Memory,
    Threads,
    Cpu,
    Gpu,
    Overhead,
}

impl Panel {
    pub(crate) fn title(self) -> &'static str {
        match self {
            Panel::Functions => "Functions",
            Panel::Errors => "Errors",
            Panel::Memory => "Memory",
            Panel::Threads => "Threads",
            Panel::Cpu => "CPU",
            Panel::Gpu => "GPU",
            Panel::Overhead => "Overhead",
        }
    }

    fn family(self) -> Option<FamilyId> {
        match self {
            Panel::Functions => Some(FamilyId::Functions),
            Panel::Errors => Some(FamilyId::Errors),
            Panel::Memory => Some(FamilyId::Memory),
            Panel::Threads => Some(FamilyId::Threads),
            Panel::Cpu => Some(FamilyId::Cpu),
            Panel::Gpu => Some(FamilyId::Gpu),
            Panel::Overhead => None,
        }
    }
}

/// The panels of a run: one per family the level selected that has something to show (the
/// functions family only with `--func`; gpu shows what NVML and the CUDA probes see, or why
/// the family cannot run),
/// then the overhead panel.
pub(crate) fn panels(report: &Report) -> Vec<Panel> {
    let shown = |id: FamilyId| {
        report.families.iter().any(|f| {
            f.name == id.name()
                && match id {
                    FamilyId::Gpu => f.status != "not_selected",
                    _ => f.status == "attached",
                }
        })
    };
    [
        Panel::Functions,
        Panel::Errors,
        Panel::Memory,
        Panel::Threads,
        Panel::Cpu,
        Panel::Gpu,
    ]
    .into_iter()
    .filter(|p| p.family().is_some_and(shown))
    .chain([Panel::Overhead])
    .collect()
}

/// The function table's sort column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) enum SortKey {
    #[default]
    Total,
    Calls,
    Rate,
    Average,
    P99,
    Name,
}

impl SortKey {
    pub(crate) fn next(self) -> Self {
        match self {
            SortKey::Total => SortKey::Calls,
            SortKey::Calls => SortKey::Rate,
            SortKey::Rate => SortKey::Average,
            SortKey::Average => SortKey::P99,
            SortKey::P99 => SortKey::Name,
            SortKey::Name => SortKey::Total,
        }
    }

    fn label(self) -> &'static str {
        match self {
            SortKey::Total => "total",
            SortKey::Calls => "calls",
            SortKey::Rate => "calls/s",
            SortKey::Average => "average",
            SortKey::P99 => "p99",
            SortKey::Name => "name",
        }
    }
}

/// What the keys have set.
#[derive(Debug, Clone, Default)]
pub(crate) struct ViewState {
    /// Index into `panels`.
    pub panel: usize,
    pub sort: SortKey,
    /// First line (or row) shown of the current panel.
    pub scroll: u16,
    pub paused: bool,
}

/// One screen's worth of data: the snapshot and what is derived between snapshots.
#[derive(Debug, Clone)]
pub(crate) struct Model {
    pub report: Report,
    /// Calls per second of each traced function over the last refresh.
    pub rates: HashMap<String, f64>,
    /// Each family's block of the text summary, from the same snapshot.
    pub blocks: HashMap<FamilyId, String>,
    /// The profiler's own messages (stderr) while the view is up, latest last.
    pub messages: Vec<String>,
}

/// The severity colours of the text summary, the live view and the HTML report's dark theme
/// (page.css), as xterm-256 colours.
pub(crate) fn severity_color(severity: Severity) -> Color {
    Color::Indexed(severity.ansi256())
}

const DIM: Color = Color::DarkGray;
const ACCENT: Color = Color::Indexed(75);

/// Draws the whole screen.
pub(crate) fn draw(frame: &mut Frame<'_>, model: &Model, state: &ViewState) {
    let panels = panels(&model.report);
    let current = panels[state.panel.min(panels.len() - 1)];
    let deadlock = deadlock_line(&model.report);
    let [head, banner, tabs, body, message, foot] = Layout::vertical([
        Constraint::Length(2),
        Constraint::Length(u16::from(deadlock.is_some())),
        Constraint::Length(1),
        Constraint::Min(3),
        Constraint::Length(u16::from(!model.messages.is_empty())),
        Constraint::Length(1),
    ])
    .areas(frame.area());
    frame.render_widget(Paragraph::new(header(&model.report, state)), head);
    if let Some((line, severity)) = deadlock {
        frame.render_widget(
            Paragraph::new(line).style(
                Style::new()
                    .fg(Color::Black)
                    .bg(severity_color(severity))
                    .bold(),
            ),
            banner,
        );
    }
    let titles: Vec<Line> = panels
        .iter()
        .enumerate()
        .map(|(i, p)| Line::from(format!("{} {}", i + 1, p.title())))
        .collect();
    frame.render_widget(
        Tabs::new(titles)
            .select(state.panel.min(panels.len() - 1))
            .highlight_style(Style::new().fg(ACCENT).bold().reversed())
            .divider("│"),
        tabs,
    );
    let block = Block::new()
        .borders(Borders::TOP)
        .border_style(Style::new().fg(DIM));
    let inner = block.inner(body);
    frame.render_widget(block, body);
    match current {
        Panel::Functions => functions(frame, inner, model, state),
        Panel::Errors => errors(frame, inner, model, state),
        Panel::Overhead => overhead(frame, inner, &model.report, state),
        Panel::Gpu => {
            let text = model.blocks.get(&FamilyId::Gpu).map_or("", String::as_str);
            let why = model
                .report
                .families
                .iter()
                .find(|f| f.name == "gpu" && f.status == "not_available")
                .map(|f| f.note.as_deref().unwrap_or("no reason given"));
            let text = match why {
                Some(why) => format!("The gpu family is not available: {why}"),
                None if text.trim().is_empty() => "nothing yet".into(),
                None => text.to_string(),
            };
            text_panel(frame, inner, &text, state);
        }
        other => {
            let id = other.family().expect("a family panel");
            let text = model.blocks.get(&id).map_or("", String::as_str);
            let text = if text.trim().is_empty() {
                "nothing yet"
            } else {
                text
            };
            text_panel(frame, inner, text, state);
        }
    }
    if let Some(last) = model.messages.last() {
        frame.render_widget(
            Paragraph::new(last.as_str()).style(Style::new().fg(Color::Yellow)),
            message,
        );
    }
    frame.render_widget(Paragraph::new(footer(current, panels.len(), state)), foot);
}

fn header(report: &Report, state: &ViewState) -> Vec<Line<'static>> {
    let t = &report.target;
    let exe = t.exe.rsplit('/').next().unwrap_or(&t.exe).to_string();
    let mut first = vec![
        Span::styled("profiler ", Style::new().fg(ACCENT).bold()),
        Span::raw(format!(
            "pid {} · {exe} · level {} · {:.0} s",
            t.pid,
            report.profiler.debug_level.name(),
            report.profiler.duration
        )),
    ];
    if state.paused {
        first.push(Span::styled(
            "  PAUSED",
            Style::new().fg(Color::Black).bg(Color::Yellow),
        ));
    }
    let mut second = Vec::new();
    if let Some(s) = &report.system {
        second.push(Span::raw(format!(
            "cpu {:.0}% (peak {:.0}%) · rss {} (peak {}) · ",
            s.current_cpu,
            s.peak_cpu,
            human_bytes(s.current_rss),
            human_bytes(s.peak_rss)
        )));
    }
    let o = &report.overhead;
    let slowdown = if o.dominated {
        "≥ 10× slower".to_string()
    } else {
        format!("{:.1}%", o.estimated_slowdown_percent)
    };
    second.push(Span::raw("slowdown ~"));
    let over = o
        .budget
        .as_ref()
        .is_some_and(|b| o.estimated_slowdown_percent > b.max_percent);
    second.push(Span::styled(
        slowdown,
        if over {
            Style::new().fg(Color::Red).bold()
        } else {
            Style::new().bold()
        },
    ));
    if let Some(b) = &o.budget {
        second.push(Span::styled(
            format!(" (max {}%)", b.max_percent),
            Style::new().fg(DIM),
        ));
    }
    vec![Line::from(first), Line::from(second)]
}

/// The line at the top of every panel once a deadlock is seen: a live one in the critical
/// colour, a lock-order cycle in the high one (as the summary and the HTML report have them).
fn deadlock_line(report: &Report) -> Option<(String, Severity)> {
    let d = &report.threads.as_ref()?.deadlocks;
    if let Some(live) = d.live.first() {
        return Some((
            format!(
                " DEADLOCK: threads {} blocked in a cycle of lock waits",
                live.threads
                    .iter()
                    .map(|t| t.tid.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Severity::Critical,
        ));
    }
    let p = d.potential.first()?;
    Some((
        format!(" potential deadlock (lock order): {}", p.locks.join(" -> ")),
        Severity::High,
    ))
}

fn footer(panel: Panel, panels: usize, state: &ViewState) -> Line<'static> {
    let key = |k: &str| Span::styled(k.to_string(), Style::new().fg(Color::Black).bg(ACCENT));
    let mut spans = vec![
        key("q"),
        Span::raw(" quit "),
        key("Tab"),
        Span::raw(" panel "),
        key(&format!("1-{panels}")),
        Span::raw(" jump "),
        key("↑↓"),
        Span::raw(" scroll "),
        key("p"),
        Span::raw(if state.paused { " resume " } else { " pause " }),
    ];
    if panel == Panel::Functions {
        spans.push(key("s"));
        spans.push(Span::raw(format!(" sort: {} ", state.sort.label())));
    }
    Line::from(spans)
}

fn sorted_functions(model: &Model, sort: SortKey) -> Vec<&crate::report::FunctionProfile> {
    let mut rows: Vec<_> = model.report.functions.iter().collect();
    let rate = |f: &crate::report::FunctionProfile| {
        model.rates.get(&f.function_name).copied().unwrap_or(0.0)
    };
    let desc = |a: f64, b: f64| b.total_cmp(&a);
    match sort {
        SortKey::Total => rows.sort_by(|a, b| desc(a.total_time, b.total_time)),
        SortKey::Calls => rows.sort_by_key(|f| std::cmp::Reverse(f.total_calls)),
        SortKey::Rate => rows.sort_by(|a, b| desc(rate(a), rate(b))),
        SortKey::Average => rows.sort_by(|a, b| desc(a.average_time, b.average_time)),
        SortKey::P99 => rows.sort_by(|a, b| desc(a.percentiles.p99, b.percentiles.p99)),
        SortKey::Name => rows.sort_by(|a, b| a.function_name.cmp(&b.function_name)),
    }
    rows
}

fn functions(frame: &mut Frame<'_>, area: Rect, model: &Model, state: &ViewState) {
    if model.report.functions.is_empty() {
        return text_panel(frame, area, "no traced function has been called yet", state);
    }
    let on_cpu_known = model.report.functions.iter().any(|f| f.cpu.is_some());
    let mut header = vec!["function", "calls", "calls/s", "average", "p99", "total"];
    if on_cpu_known {
        header.push("on-CPU");
    }
    let header = Row::new(header.into_iter().enumerate().map(|(i, h)| {
        let mut cell = Cell::from(if i == 0 {
            Line::from(h)
        } else {
            Line::from(h).right_aligned()
        });
        if ["", "calls", "calls/s", "average", "p99", "total"]
            .get(i)
            .is_some_and(|l| *l == state.sort.label())
            || (i == 0 && state.sort == SortKey::Name)
        {
            cell = cell.style(Style::new().fg(ACCENT).add_modifier(Modifier::UNDERLINED));
        }
        cell
    }))
    .style(Style::new().bold());
    let right = |s: String| Cell::from(Line::from(s).right_aligned());
    // The other columns' widths and the gaps between all of them.
    let fixed: u16 = if on_cpu_known {
        9 + 8 + 10 + 10 + 10 + 6 + 6
    } else {
        9 + 8 + 10 + 10 + 10 + 5
    };
    let name_width = usize::from(area.width.saturating_sub(fixed).max(20));
    let rows = sorted_functions(model, state.sort)
        .into_iter()
        .skip(state.scroll as usize)
        .map(|f| {
            let mut cells = vec![
                Cell::from(tail(&f.function_name, name_width)),
                right(f.total_calls.to_string()),
                right(format!(
                    "{:.0}",
                    model.rates.get(&f.function_name).copied().unwrap_or(0.0)
                )),
                right(human_time(f.average_time)),
                right(human_time(f.percentiles.p99)),
                right(human_time(f.total_time)),
            ];
            if on_cpu_known {
                cells.push(right(f.cpu.as_ref().map_or(String::new(), |c| {
                    let all = c.on_cpu_time + c.off_cpu_time;
                    if all > 0.0 {
                        format!("{:.0}%", 100.0 * c.on_cpu_time / all)
                    } else {
                        String::new()
                    }
                })));
            }
            Row::new(cells)
        });
    let mut widths = vec![
        Constraint::Fill(1),
        Constraint::Length(9),
        Constraint::Length(8),
        Constraint::Length(10),
        Constraint::Length(10),
        Constraint::Length(10),
    ];
    if on_cpu_known {
        widths.push(Constraint::Length(6));
    }
    frame.render_widget(Table::new(rows, widths).header(header), area);
}

/// `name` in `width` columns: whole, or its end after an ellipsis, from a `::` where one is in
/// reach (the end of a qualified name is the part that tells functions apart).
pub(crate) fn tail(name: &str, width: usize) -> String {
    let chars = name.chars().count();
    if chars <= width || width < 2 {
        return name.to_string();
    }
    let end: String = name.chars().skip(chars - (width - 1)).collect();
    // From the first `::` of what fits, if two segments are still left after it.
    let end = match end.find("::") {
        Some(at) if end[at + 2..].contains("::") => &end[at + 2..],
        _ => &end,
    };
    format!("…{end}")
}

fn errors(frame: &mut Frame<'_>, area: Rect, model: &Model, state: &ViewState) {
    let Some(e) = &model.report.errors else {
        return text_panel(frame, area, "nothing yet", state);
    };
    if e.patterns.is_empty() && e.events.is_empty() {
        return text_panel(frame, area, "no error so far", state);
    }
    let [by_pattern, latest] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(area);
    let sev = |s: Severity| {
        Cell::from(Span::styled(
            s.as_str().to_string(),
            Style::new().fg(severity_color(s)).bold(),
        ))
    };
    let mut patterns: Vec<_> = e.patterns.iter().collect();
    patterns.sort_by(|a, b| b.severity.cmp(&a.severity).then(b.count.cmp(&a.count)));
    let rows = patterns.into_iter().skip(state.scroll as usize).map(|p| {
        Row::new(vec![
            sev(p.severity),
            Cell::from(p.id.clone()),
            Cell::from(Line::from(p.occurrences.to_string()).right_aligned()),
            Cell::from(Line::from(format!("{:.1} s", p.last_seen)).right_aligned()),
        ])
    });
    frame.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(9),
                Constraint::Min(20),
                Constraint::Length(9),
                Constraint::Length(9),
            ],
        )
        .header(
            Row::new([
                Cell::from("severity"),
                Cell::from("pattern"),
                Cell::from(Line::from("count").right_aligned()),
                Cell::from(Line::from("last").right_aligned()),
            ])
            .style(Style::new().bold()),
        )
        .block(Block::new().title(format!(" by pattern ({} errors) ", e.total))),
        by_pattern,
    );
    let mut events: Vec<_> = e.events.iter().collect();
    events.sort_by(|a, b| b.timestamp.total_cmp(&a.timestamp));
    let lines: Vec<Line> = events
        .into_iter()
        .take(latest.height as usize)
        .map(|ev| {
            Line::from(vec![
                Span::styled(format!("{:>8.2} s ", ev.timestamp), Style::new().fg(DIM)),
                Span::styled(
                    format!("{:<8} ", ev.severity.as_str()),
                    Style::new().fg(severity_color(ev.severity)),
                ),
                Span::raw(format!(
                    "{}: {}",
                    ev.pattern.as_deref().unwrap_or(&ev.error_type),
                    ev.message
                )),
            ])
        })
        .collect();
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::new()
                .borders(Borders::TOP)
                .border_style(Style::new().fg(DIM))
                .title(" latest "),
        ),
        latest,
    );
}

fn overhead(frame: &mut Frame<'_>, area: Rect, report: &Report, state: &ViewState) {
    let o = &report.overhead;
    let mut lines = vec![
        Line::from(format!(
            "estimated slowdown {:.2}% · probes {} · cost so far {} of the target's {} of CPU",
            o.estimated_slowdown_percent,
            o.probes_attached,
            human_time(o.estimated_cost),
            human_time(o.target_cpu_time)
        )),
        Line::from(Span::styled(
            format!("cost model: {}", o.cost_model.source),
            Style::new().fg(DIM),
        )),
    ];
    match &o.budget {
        Some(b) if b.detached.is_empty() => lines.push(Line::from(format!(
            "budget --max-overhead {}%: nothing detached",
            b.max_percent
        ))),
        Some(b) => {
            lines.push(Line::from(format!(
                "budget --max-overhead {}%: detached",
                b.max_percent
            )));
            for d in &b.detached {
                lines.push(Line::from(Span::styled(
                    format!(
                        "  {} after {:.1} s (window slowdown {:.1}%)",
                        d.function, d.at, d.window_slowdown_percent
                    ),
                    Style::new().fg(Color::Yellow),
                )));
            }
        }
        None => lines.push(Line::from("no budget (--max-overhead)")),
    }
    lines.push(Line::from(""));
    for f in &report.families {
        let color = match &*f.status {
            "attached" => Color::Green,
            "failed" => Color::Red,
            _ => DIM,
        };
        lines.push(Line::from(vec![
            Span::styled(format!("{:<10}", f.name), Style::new().bold()),
            Span::styled(format!("{:<14}", f.status), Style::new().fg(color)),
            Span::raw(format!("{:>5} probes", f.probes)),
        ]));
    }
    frame.render_widget(
        Paragraph::new(lines)
            .wrap(Wrap { trim: false })
            .scroll((state.scroll, 0)),
        area,
    );
}

/// A family's text block, with its severities and deadlocks in colour, as the printed summary
/// has them on a terminal.
fn text_panel(frame: &mut Frame<'_>, area: Rect, text: &str, state: &ViewState) {
    let lines: Vec<Line> = text
        .trim_matches('\n')
        .lines()
        .map(|l| match highlight(l) {
            Some(Highlight::Line(s)) => Line::from(Span::styled(
                l.to_string(),
                Style::new().fg(severity_color(s)).bold(),
            )),
            Some(Highlight::Tag(s, range)) => Line::from(vec![
                Span::raw(l[..range.start].to_string()),
                Span::styled(
                    l[range.clone()].to_string(),
                    Style::new().fg(severity_color(s)).bold(),
                ),
                Span::raw(l[range.end..].to_string()),
            ]),
            None => Line::from(l.to_string()),
        })
        .collect();
    frame.render_widget(Paragraph::new(lines).scroll((state.scroll, 0)), area);
}
