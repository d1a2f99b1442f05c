//! speedscope (`.speedscope.json`), in speedscope's own file format
//! (<https://www.speedscope.app/file-format-schema.json>): the frames, shared, and one `sampled`
//! profile per thread, the busiest first (the one speedscope opens).
//!
//! A frame is a (name, file) pair: the source file when known, the module otherwise (`[kernel]`
//! for a kernel function), so the frame says where it is either way. Lines are left out: two
//! samples in one function at different lines are one frame. Each distinct stack of a thread is
//! one sample, root first, weighed by its sample count (unit `none`); stacks are sorted by name so
//! that the time-order view draws them merged, as a flame graph.

use std::{collections::HashMap, io::Write};

use serde::Serialize;

use super::{Profile, ProfileFrame};

/// The file's `$schema`, which speedscope recognizes the format by.
const SCHEMA: &str = "https://www.speedscope.app/file-format-schema.json";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct File {
    #[serde(rename = "$schema")]
    schema: &'static str,
    shared: Shared,
    profiles: Vec<SampledProfile>,
    name: String,
    active_profile_index: usize,
    exporter: &'static str,
}

#[derive(Serialize)]
struct Shared {
    frames: Vec<Frame>,
}

#[derive(Serialize, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct Frame {
    name: String,
    file: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SampledProfile {
    r#type: &'static str,
    name: String,
    unit: &'static str,
    start_value: u64,
    end_value: u64,
    /// Indexes into the shared frames, root first.
    samples: Vec<Vec<usize>>,
    weights: Vec<u64>,
}

/// Writes the JSON.
pub(super) fn write(profile: &Profile, out: &mut impl Write) -> anyhow::Result<()> {
    serde_json::to_writer(&mut *out, &file(profile))?;
    out.write_all(b"\n")?;
    Ok(())
}

/// The profile in speedscope's format.
fn file(profile: &Profile) -> File {
    let mut frames = Frames::default();
    // Each thread's stacks (as frame indexes, root first) and their samples.
    let mut threads: HashMap<String, HashMap<Vec<usize>, u64>> = HashMap::new();
    for sample in profile.counted() {
        let stack = sample
            .frames
            .iter()
            .rev()
            .map(|f| frames.index(f))
            .collect();
        *threads
            .entry(sample.thread_label())
            .or_default()
            .entry(stack)
            .or_insert(0) += sample.count;
    }
    let mut profiles: Vec<SampledProfile> = threads
        .into_iter()
        .map(|(thread, stacks)| {
            let mut stacks: Vec<(Vec<usize>, u64)> = stacks.into_iter().collect();
            stacks.sort_by(|(a, _), (b, _)| frames.stack(a).cmp(frames.stack(b)));
            let (samples, weights): (Vec<_>, Vec<_>) = stacks.into_iter().unzip();
            SampledProfile {
                r#type: "sampled",
                name: thread,
                unit: "none",
                start_value: 0,
                end_value: weights.iter().sum(),
                samples,
                weights,
            }
        })
        .collect();
    profiles.sort_by(|a, b| b.end_value.cmp(&a.end_value).then(a.name.cmp(&b.name)));
    File {
        schema: SCHEMA,
        shared: Shared {
            frames: frames.frames,
        },
        profiles,
        name: profile.title(),
        active_profile_index: 0,
        exporter: concat!("profiler@", env!("CARGO_PKG_VERSION")),
    }
}

/// The shared frames, each once, by index.
#[derive(Default)]
struct Frames {
    frames: Vec<Frame>,
    indexes: HashMap<Frame, usize>,
}

impl Frames {
    fn index(&mut self, frame: &ProfileFrame) -> usize {
        let frame = Frame {
            name: frame.name().into_owned(),
            file: frame.file.clone().unwrap_or_else(|| frame.module.clone()),
        };
        if let Some(&index) = self.indexes.get(&frame) {
            return index;
        }
        let index = self.frames.len();
        self.frames.push(frame.clone());
        self.indexes.insert(frame, index);
        index
    }

    /// A stack's frames, in its order.
    fn stack<'a>(&'a self, stack: &'a [usize]) -> impl Iterator<Item = &'a Frame> {
        stack.iter().map(|&i| &self.frames[i])
    }
}
