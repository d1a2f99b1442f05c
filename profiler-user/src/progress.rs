//! A progress line on stderr for the work before profiling starts and after it ends (calibrating
//! the cost model, reading the target's objects and building their unwind tables, loading and
//! attaching the kernel programs, symbolizing and writing the report): on a terminal, a spinner
//! that names the step in progress and is cleared when the step is done; nothing at all when
//! stderr is not a terminal (a harness, a pipe, a file) or with `--quiet`, so that what those
//! read stays exactly as it was.

use std::{io::IsTerminal as _, time::Duration};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The steps' spinner; hidden where it would not be seen.
pub(crate) struct Progress(ProgressBar);

impl Progress {
    pub(crate) fn new(quiet: bool) -> Self {
        if quiet || !std::io::stderr().is_terminal() {
            return Self(ProgressBar::hidden());
        }
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        let style = ProgressStyle::with_template("{spinner} profiler: {msg} ({elapsed})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(120));
        Self(bar)
    }

    /// The step now in progress.
    pub(crate) fn step(&self, what: impl Into<String>) {
        self.0.set_message(what.into());
    }

    /// Clears the line (before a line of the profiler's own is printed).
    pub(crate) fn clear(&self) {
        self.0.finish_and_clear();
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
