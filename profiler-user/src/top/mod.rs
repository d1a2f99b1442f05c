//! The live view: `profiler top <PID>`, or `--live` on `attach` and `run`. About once a second
//! the collection loop asks each family for its section of the run so far (`Family::live`, the
//! same reads and analysis as the final report) and the view draws that snapshot: one panel per
//! family, the keys in the footer. `q` ends profiling as Ctrl-C does: the report is then
//! written and the summary printed, after the terminal is restored.

mod screen;
pub(crate) mod snapshot;
pub(crate) mod view;

use std::{
    collections::HashMap,
    time::{Duration, Instant},
};

use aya::Ebpf;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use crate::{
    families,
    family::Family,
    report::{Detached, Report},
    symbols::symbolize::MappingSnapshot,
    tracee::Sample,
};
pub(crate) use screen::Screen;
use snapshot::Snapshots;
use view::{Model, ViewState};

/// Set by the tests: the view panics on its second refresh (the terminal must be restored).
const PANIC_ENV: &str = "PROFILER_TEST_LIVE_PANIC";

/// How often the view is redrawn from a new snapshot.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// What the collection loop drives while the view (or the tests' snapshot file) is on.
pub(crate) struct Live {
    snapshots: Snapshots,
    /// None: no terminal, the snapshots go to the tests' file only.
    screen: Option<Screen>,
    state: ViewState,
    model: Option<Model>,
    /// The previous snapshot's call counts, and when it was taken, for the rates.
    calls: (Instant, HashMap<String, u64>),
    next: Instant,
    /// `run`: the command writes to the same terminal; each refresh repaints every cell.
    repaint: bool,
}

impl Live {
    pub(crate) fn new(snapshots: Snapshots, screen: Option<Screen>, repaint: bool) -> Self {
        Self {
            snapshots,
            screen,
            state: ViewState::default(),
            model: None,
            calls: (Instant::now(), HashMap::new()),
            next: Instant::now(),
            repaint,
        }
    }

    /// Whether a new snapshot is due (the view is not paused, a second has passed).
    pub(crate) fn due(&self) -> bool {
        !self.state.paused && Instant::now() >= self.next
    }

    /// Takes a snapshot of the run so far and draws it.
    pub(crate) fn refresh(
        &mut self,
        ebpf: &mut Ebpf,
        families: &mut [Box<dyn Family>],
        maps: &MappingSnapshot,
        samples: &[Sample],
        detached: &[Detached],
    ) {
        self.next = Instant::now() + REFRESH;
        let report = self.snapshots.take(ebpf, families, maps, samples, detached);
        if self.screen.is_none() {
            return;
        }
        // A test hook: the terminal must come back from a panic too.
        if std::env::var_os(PANIC_ENV).is_some() && self.model.is_some() {
            panic!("{PANIC_ENV} is set: the live view panics on its second refresh");
        }
        let mut blocks = HashMap::new();
        for family in families.iter() {
            let mut out = String::new();
            families::summary_block(family.id(), &report, &mut out);
            blocks.insert(family.id(), out);
        }
        let rates = self.rates(&report);
        let messages = self
            .screen
            .as_ref()
            .map(Screen::messages)
            .unwrap_or_default();
        self.model = Some(Model {
            report,
            rates,
            blocks,
            messages,
        });
        if self.repaint
            && let Some(screen) = self.screen.as_mut()
        {
            screen.repaint();
        }
        self.draw();
    }

    /// Calls per second of each function since the last snapshot.
    fn rates(&mut self, report: &Report) -> HashMap<String, f64> {
        let now = Instant::now();
        let elapsed = now.duration_since(self.calls.0).as_secs_f64().max(1e-3);
        let current: HashMap<String, u64> = report
            .functions
            .iter()
            .map(|f| (f.function_name.clone(), f.total_calls))
            .collect();
        let rates = current
            .iter()
            .map(|(name, &n)| {
                let before = self.calls.1.get(name).copied().unwrap_or(0);
                (name.clone(), n.saturating_sub(before) as f64 / elapsed)
            })
            .collect();
        self.calls = (now, current);
        rates
    }

    fn draw(&mut self) {
        let (Some(screen), Some(model)) = (self.screen.as_mut(), self.model.as_ref()) else {
            return;
        };
        let state = &self.state;
        screen.draw(|frame| view::draw(frame, model, state));
    }

    /// Reads the keys; true when the user asked to end profiling.
    pub(crate) fn poll(&mut self) -> bool {
        let Some(screen) = self.screen.as_mut() else {
            return false;
        };
        let (keys, resized, gone) = screen.keys();
        let mut quit = gone;
        let mut changed = resized;
        for key in keys {
            match self.apply(key) {
                Some(true) => quit = true,
                Some(false) => changed = true,
                None => {}
            }
        }
        if changed {
            self.draw();
        }
        quit
    }

    /// One key: Some(true) to quit, Some(false) when the screen changes.
    fn apply(&mut self, key: KeyEvent) -> Option<bool> {
        let panels = self
            .model
            .as_ref()
            .map_or(1, |m| view::panels(&m.report).len());
        let s = &mut self.state;
        match key.code {
            KeyCode::Char('q') | KeyCode::Char('Q') => return Some(true),
            KeyCode::Char('c') if key.modifiers.contains(KeyModifiers::CONTROL) => {
                return Some(true);
            }
            KeyCode::Tab | KeyCode::Right | KeyCode::Char('l') => {
                s.panel = (s.panel + 1) % panels;
                s.scroll = 0;
            }
            KeyCode::BackTab | KeyCode::Left | KeyCode::Char('h') => {
                s.panel = (s.panel + panels - 1) % panels;
                s.scroll = 0;
            }
            KeyCode::Char(c @ '1'..='9') => {
                let i = c as usize - '1' as usize;
                if i < panels {
                    s.panel = i;
                    s.scroll = 0;
                }
            }
            KeyCode::Char('s') => s.sort = s.sort.next(),
            KeyCode::Char('p') | KeyCode::Char(' ') => {
                s.paused = !s.paused;
                self.next = Instant::now();
            }
            KeyCode::Down | KeyCode::Char('j') => s.scroll = s.scroll.saturating_add(1),
            KeyCode::Up | KeyCode::Char('k') => s.scroll = s.scroll.saturating_sub(1),
            KeyCode::PageDown => s.scroll = s.scroll.saturating_add(10),
            KeyCode::PageUp => s.scroll = s.scroll.saturating_sub(10),
            KeyCode::Home => s.scroll = 0,
            _ => return None,
        }
        Some(false)
    }

    /// Gives the terminal back (and prints what the profiler said meanwhile).
    pub(crate) fn close(&mut self) {
        self.screen = None;
    }
}

#[cfg(test)]
mod tests;
