//! The live view's layout, drawn with ratatui's test backend at 80×24, and its keys.

use std::collections::HashMap;

use ratatui::{
    Terminal,
    backend::TestBackend,
    buffer::Buffer,
    crossterm::event::{KeyCode, KeyEvent, KeyModifiers},
    style::Color,
};

use super::{
    Live,
    snapshot::Snapshots,
    view::{self, Model, Panel, SortKey, ViewState},
};
use crate::{
    level::{FamilyId, Level},
    report::{
        FamilyStatus, FunctionProfile, Report, SystemSection,
        errors::{ErrorsSection, Severity},
        functions::Percentiles,
        threads::{Deadlocks, PotentialDeadlock, ThreadsSection},
    },
};

fn function(name: &str, calls: u64, total: f64, p99: f64) -> FunctionProfile {
    FunctionProfile {
        function_name: name.into(),
        total_calls: calls,
        total_time: total,
        average_time: total / calls as f64,
        percentiles: Percentiles {
            p99,
            ..Percentiles::default()
        },
        ..FunctionProfile::default()
    }
}

fn status(name: &'static str, status: &'static str) -> FamilyStatus {
    FamilyStatus {
        name: name.into(),
        status: status.into(),
        probes: 3,
        note: None,
    }
}

fn report() -> Report {
    let mut r = Report::default();
    r.target.pid = 4242;
    r.target.exe = "/usr/bin/model-server".into();
    r.profiler.debug_level = Level::Full;
    r.profiler.duration = 12.4;
    r.families = vec![
        status("process", "attached"),
        status("functions", "attached"),
        status("errors", "attached"),
        status("memory", "not_selected"),
        status("threads", "attached"),
        status("cpu", "idle"),
        status("gpu", "not_available"),
    ];
    r.functions = vec![
        function("server::handle_request", 500, 2.0, 0.009),
        function("server::load_model", 1, 0.05, 0.05),
    ];
    r.system = Some(SystemSection {
        current_cpu: 41.0,
        peak_cpu: 97.0,
        current_rss: 3 << 20,
        peak_rss: 5 << 20,
        ..SystemSection::default()
    });
    r.overhead.estimated_slowdown_percent = 2.4;
    r.errors = Some(
        serde_json::from_value::<ErrorsSection>(serde_json::json!({
            "total": 3, "exact": true, "events": [{
                "id": 1, "caused_by": null, "led_to": [], "error_type": "OutOfMemoryError",
                "category": "memory", "severity": "critical", "pattern": "CUDA_OUT_OF_MEMORY",
                "description": null, "message": "CUDA out of memory. Tried to allocate 2.00 GiB",
                "solutions": [], "prevention": [], "timestamp": 0.5, "tid": 7, "pid": 4242,
                "command": [], "source": "output", "context": {}
            }],
            "dropped": 0,
            "patterns": [
                {"id": "CONNECTION_REFUSED", "category": "network", "severity": "high",
                 "count": 2, "occurrences": 2, "exact": true, "first_seen": 0.1,
                 "last_seen": 0.2, "trend": "stable"},
                {"id": "CUDA_OUT_OF_MEMORY", "category": "memory", "severity": "critical",
                 "count": 1, "occurrences": 1, "exact": true, "first_seen": 0.5,
                 "last_seen": 0.5, "trend": "stable"}
            ],
            "by_category": {}, "by_severity": {}, "by_source": {}, "benign": [],
            "benign_signals": [], "syscall_failures": []
        }))
        .expect("an errors section"),
    );
    r.threads = Some(ThreadsSection {
        deadlocks: Deadlocks {
            potential: vec![PotentialDeadlock {
                locks: vec!["METRICS_LOCK".into(), "LOG_LOCK".into()],
                edges: Vec::new(),
            }],
            live: Vec::new(),
        },
        ..ThreadsSection::default()
    });
    r
}

fn model() -> Model {
    let mut blocks = HashMap::new();
    blocks.insert(
        FamilyId::Threads,
        "threads: 5 thread(s)\ncontended pthread_mutex METRICS_LOCK: 9 of 1343 wait(s)\n".into(),
    );
    Model {
        report: report(),
        rates: HashMap::from([
            ("server::handle_request".to_string(), 41.0),
            ("server::load_model".to_string(), 0.0),
        ]),
        blocks,
        messages: Vec::new(),
    }
}

fn render(model: &Model, state: &ViewState) -> Buffer {
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("a test terminal");
    terminal
        .draw(|frame| view::draw(frame, model, state))
        .expect("drawn");
    terminal.backend().buffer().clone()
}

fn lines(buffer: &Buffer) -> Vec<String> {
    let width = buffer.area.width as usize;
    buffer
        .content
        .chunks(width)
        .map(|row| row.iter().map(|c| c.symbol()).collect::<String>())
        .collect()
}

/// The row and column where `needle` starts on the screen.
fn find(buffer: &Buffer, needle: &str) -> Option<(usize, usize)> {
    lines(buffer)
        .iter()
        .enumerate()
        .find_map(|(y, l)| l.find(needle).map(|byte| (y, l[..byte].chars().count())))
}

#[test]
fn the_panels_are_the_families_that_run_then_overhead() {
    assert_eq!(
        view::panels(&report()),
        vec![
            Panel::Functions,
            Panel::Errors,
            Panel::Threads,
            Panel::Gpu,
            Panel::Overhead
        ]
    );
}

#[test]
fn an_80_by_24_screen_has_the_header_tabs_table_and_keys() {
    let screen = render(&model(), &ViewState::default());
    let text = lines(&screen);
    assert_eq!(text.len(), 24);
    assert!(
        text[0].contains("pid 4242 · model-server · level full · 12 s"),
        "{text:#?}"
    );
    assert!(
        text[1].contains("cpu 41% (peak 97%) · rss 3.0 MiB (peak 5.0 MiB)"),
        "{text:#?}"
    );
    assert!(text[1].contains("slowdown ~2.4%"), "{text:#?}");
    // The deadlock line, in the high severity's colour, above the tabs.
    let (y, _) = find(
        &screen,
        "potential deadlock (lock order): METRICS_LOCK -> LOG_LOCK",
    )
    .expect("the deadlock line");
    assert_eq!(y, 2);
    assert_eq!(screen[(0, 2)].bg, Color::Indexed(209));
    assert!(
        text[3].contains("1 Functions") && text[3].contains("5 Overhead"),
        "{text:#?}"
    );
    // The function table, by total time, units shown, numbers right-aligned.
    let (head, _) = find(&screen, "function").expect("the table's header");
    assert!(text[head].contains("calls/s") && text[head].contains("p99"));
    assert!(
        text[head + 1].starts_with("server::handle_request"),
        "{text:#?}"
    );
    assert!(text[head + 1].contains("500") && text[head + 1].contains("41"));
    assert!(text[head + 1].contains("4.00 ms") && text[head + 1].contains("9.00 ms"));
    assert!(
        text[head + 2].starts_with("server::load_model"),
        "{text:#?}"
    );
    let (_, calls_end) = find(&screen, "500").expect("500 calls");
    let (_, one_end) = find(&screen, "        1 ").map_or((0, 0), |(y, x)| (y, x + 8));
    assert_eq!(calls_end + 2, one_end, "calls right-aligned\n{text:#?}");
    // The keys.
    assert!(
        text[23].contains("q quit") && text[23].contains("1-5 jump"),
        "{text:#?}"
    );
    assert!(text[23].contains("s sort: total"));
}

#[test]
fn a_long_name_keeps_its_end() {
    assert_eq!(
        view::tail("server::handle_request", 30),
        "server::handle_request"
    );
    assert_eq!(
        view::tail("profiler_user::demo::handle_request", 24),
        "…demo::handle_request"
    );
    assert_eq!(
        view::tail("profiler_user::demo::handle_request", 24)
            .chars()
            .count(),
        21
    );
}

#[test]
fn sorting_by_p99_puts_load_model_first() {
    let state = ViewState {
        sort: SortKey::Name,
        ..ViewState::default()
    };
    let screen = render(&model(), &state);
    let (head, _) = find(&screen, "function").expect("header");
    assert!(lines(&screen)[head + 1].starts_with("server::handle_request"));
    let state = ViewState {
        sort: SortKey::P99,
        ..ViewState::default()
    };
    let (load, _) = find(&render(&model(), &state), "server::load_model").expect("row");
    assert_eq!(load, head + 1, "the 50 ms p99 first");
}

#[test]
fn the_errors_panel_colours_each_severity_as_the_html_does() {
    let state = ViewState {
        panel: 1,
        ..ViewState::default()
    };
    let screen = render(&model(), &state);
    let text = lines(&screen);
    // Most severe first.
    let (critical, x) = find(&screen, "critical").expect("a critical pattern");
    assert!(text[critical].contains("CUDA_OUT_OF_MEMORY"), "{text:#?}");
    assert_eq!(screen[(x as u16, critical as u16)].fg, Color::Indexed(204));
    let (high, hx) = find(&screen, "high").expect("a high pattern");
    assert!(high > critical && text[high].contains("CONNECTION_REFUSED"));
    assert_eq!(screen[(hx as u16, high as u16)].fg, Color::Indexed(209));
    assert_eq!(
        view::severity_color(Severity::Critical),
        Color::Indexed(204)
    );
    // The latest incident, with its message.
    assert!(
        text.iter()
            .any(|l| l.contains("CUDA_OUT_OF_MEMORY: CUDA out of memory")),
        "{text:#?}"
    );
}

#[test]
fn a_family_panel_shows_its_summary_block_and_gpu_says_why_it_cannot_run() {
    let state = ViewState {
        panel: 2,
        ..ViewState::default()
    };
    let text = lines(&render(&model(), &state));
    assert!(
        text.iter()
            .any(|l| l.contains("contended pthread_mutex METRICS_LOCK")),
        "{text:#?}"
    );
    let state = ViewState {
        panel: 3,
        ..ViewState::default()
    };
    let text = lines(&render(&model(), &state));
    assert!(
        text.iter()
            .any(|l| l.contains("The gpu family is not available")),
        "{text:#?}"
    );
}

#[test]
fn the_keys_switch_panels_sort_pause_and_quit() {
    let snapshots = Snapshots::new(
        report(),
        crate::report::CostModel::default(),
        Vec::new(),
        (std::time::Instant::now(), 0),
        0.2,
        None,
    );
    let mut live = Live::new(snapshots, None, false);
    live.model = Some(model());
    let key = |code| KeyEvent::new(code, KeyModifiers::NONE);
    assert_eq!(live.apply(key(KeyCode::Tab)), Some(false));
    assert_eq!(live.state.panel, 1);
    assert_eq!(live.apply(key(KeyCode::Char('5'))), Some(false));
    assert_eq!(live.state.panel, 4);
    live.apply(key(KeyCode::Tab));
    assert_eq!(live.state.panel, 0, "wraps around");
    live.apply(key(KeyCode::Left));
    assert_eq!(live.state.panel, 4);
    assert_eq!(live.apply(key(KeyCode::Char('9'))), Some(false));
    assert_eq!(live.state.panel, 4, "no ninth panel");
    live.apply(key(KeyCode::Char('s')));
    assert_eq!(live.state.sort, SortKey::Calls);
    live.apply(key(KeyCode::Char('p')));
    assert!(live.state.paused && !live.due());
    live.apply(key(KeyCode::Char('p')));
    assert!(!live.state.paused && live.due());
    assert_eq!(live.apply(key(KeyCode::Char('x'))), None);
    assert_eq!(live.apply(key(KeyCode::Char('q'))), Some(true));
    assert_eq!(
        live.apply(KeyEvent::new(KeyCode::Char('c'), KeyModifiers::CONTROL)),
        Some(true)
    );
}
