//! Folded stacks (`.folded`): one line per distinct stack, `thread;root;…;leaf count`, as
//! `stackcollapse-perf` writes them for `flamegraph.pl`, inferno and the viewers that read them.
//!
//! The first frame is the thread (`name-tid`); a kernel function is annotated `_[k]` as
//! `stackcollapse-perf --kernel` does; an inlined function is a frame of its own, plain. Lines are
//! sorted, and stacks that fold to the same line (two unknown addresses in one module) add up. A
//! `;` in a name would split its frame in two and a line break would split its line: they are
//! written as `:` and a space.

use std::{collections::BTreeMap, io::Write};

use super::{Profile, ProfileFrame};

/// The folded stack of each distinct stack (without its count), and its samples.
pub(super) fn stacks(profile: &Profile) -> BTreeMap<String, u64> {
    let mut stacks = BTreeMap::new();
    for sample in profile.counted() {
        let mut line = clean(&sample.thread_label());
        for frame in sample.frames.iter().rev() {
            line.push(';');
            line.push_str(&frame_name(frame));
        }
        *stacks.entry(line).or_insert(0) += sample.count;
    }
    stacks
}

/// Writes the folded stacks, one `stack count` line each.
pub(super) fn write(profile: &Profile, out: &mut impl Write) -> anyhow::Result<()> {
    for (stack, count) in stacks(profile) {
        writeln!(out, "{stack} {count}")?;
    }
    Ok(())
}

/// A frame as the folded format names it.
fn frame_name(frame: &ProfileFrame) -> String {
    let name = clean(&frame.name());
    if frame.kernel { name + "_[k]" } else { name }
}

/// `text` with what would break the format's structure replaced.
fn clean(text: &str) -> String {
    text.replace(';', ":").replace(['\n', '\r'], " ")
}
