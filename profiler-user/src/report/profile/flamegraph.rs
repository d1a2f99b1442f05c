//! The flame graph (`.svg`), drawn by inferno from the folded stacks: one tower per thread,
//! titled with the target and the sampling frequency. Colors follow from the function names, so
//! a function keeps its color from one graph to the next.

use std::io::Write;

use anyhow::bail;
use inferno::flamegraph::{self, Options};

use super::{Profile, folded};

/// Writes the SVG; a profile without samples has no graph to draw, and is an error.
pub(super) fn write(profile: &Profile, out: &mut impl Write) -> anyhow::Result<()> {
    let lines: Vec<String> = folded::stacks(profile)
        .into_iter()
        .map(|(stack, count)| format!("{stack} {count}"))
        .collect();
    if lines.is_empty() {
        bail!("no samples: the target's threads were never seen on a CPU, no flame graph to draw");
    }
    // Options is non-exhaustive: set field by field.
    let mut options = Options::default();
    options.title = profile.title();
    options.subtitle = Some(format!(
        "{} samples over {:.1} s",
        profile.total(),
        profile.duration_s
    ));
    options.count_name = "samples".into();
    options.hash = true;
    flamegraph::from_lines(&mut options, lines.iter().map(String::as_str), out)?;
    Ok(())
}
