//! The cpu family's profile files, for tools other than the profiler: folded stacks (`.folded`),
//! a flame graph (`.svg`), pprof (`.pb.gz`) and speedscope (`.speedscope.json`). The format
//! follows from the path's name ([`Format::from_path`]); every file is written to a fresh file
//! with mode 0600 and renamed over its path ([`crate::outfile`]).
//!
//! A leaf like the rest of the report model: the cpu family builds a [`Profile`] (stacks already
//! symbolized and counted) and the writers read it; none of them looks anywhere else.
//!
//! Names the formats share:
//! - a frame whose function is unknown (`??`) is named after its module in brackets
//!   (`[libc.so.6]`), as `stackcollapse-perf` does, except in pprof, whose locations without
//!   lines are its own way of saying "not symbolized";
//! - a thread is `name-tid` (`worker-1235`), as `perf script | stackcollapse-perf --tid` names
//!   it without the pid: threads that share a name (a pool's workers) stay apart. pprof has the
//!   two as labels instead (`thread`, `tid`).

mod flamegraph;
mod folded;
mod pprof;
mod speedscope;

#[cfg(test)]
mod tests;

use std::{
    borrow::Cow,
    io::{BufWriter, Write},
    path::Path,
};

use anyhow::{Context as _, bail};

use crate::outfile::Replacement;
use crate::report::cpu::{FoldedStack, MAX_STACKS};

/// The folded stacks for the `cpu` section: most samples first, at most [`MAX_STACKS`]; and the
/// samples of those left out.
pub(crate) fn folded_stacks(profile: &Profile) -> (Vec<FoldedStack>, u64) {
    let mut stacks: Vec<FoldedStack> = folded::stacks(profile)
        .into_iter()
        .map(|(line, samples)| FoldedStack {
            frames: line.split(';').map(str::to_string).collect(),
            samples,
        })
        .collect();
    stacks.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.frames.cmp(&b.frames))
    });
    let omitted = stacks.iter().skip(MAX_STACKS).map(|s| s.samples).sum();
    stacks.truncate(MAX_STACKS);
    (stacks, omitted)
}

/// What the cpu family sampled, symbolized: the input of every writer.
#[derive(Debug, Clone)]
pub(crate) struct Profile {
    /// The target as titles name it, e.g. `myapp (pid 1234)`.
    pub target: String,
    /// Samples per second, per thread on a CPU.
    pub frequency_hz: u64,
    /// Seconds sampled.
    pub duration_s: f64,
    /// Unix time when sampling started, nanoseconds.
    pub start_unix_ns: u64,
    /// One entry per distinct (thread, stack); a stack may repeat across threads.
    pub samples: Vec<ProfileSample>,
}

/// A stack a thread was sampled in, and how many times.
#[derive(Debug, Clone)]
pub(crate) struct ProfileSample {
    pub tid: u32,
    /// The thread's name (`comm`) when it was sampled.
    pub thread: String,
    /// Innermost first; a function inlined at an address comes before the one it was inlined
    /// into, at the same address.
    pub frames: Vec<ProfileFrame>,
    pub count: u64,
}

/// One frame of a symbolized stack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ProfileFrame {
    /// Demangled function name, or `??` when unknown.
    pub function: String,
    /// File name of the object the address is in (`libc.so.6`), or `[kernel]`.
    pub module: String,
    /// Source file and line, when the object has line information.
    pub file: Option<String>,
    pub line: Option<u32>,
    /// Address in the target (the kernel's, for a kernel frame).
    pub address: u64,
    /// Whether this function was inlined into the next frame's, at the same address.
    pub inlined: bool,
    /// Whether the address is in the kernel.
    pub kernel: bool,
    /// Whether it is a Python frame (its `address` is the instruction's).
    pub python: bool,
}

impl Profile {
    /// Sampling period, nanoseconds: what one sample stands for.
    pub(crate) fn period_ns(&self) -> u64 {
        1_000_000_000 / self.frequency_hz.max(1)
    }

    /// The title the formats give it: the target and the frequency.
    fn title(&self) -> String {
        format!("CPU: {}, {} Hz", self.target, self.frequency_hz)
    }

    /// Samples with a count, the only ones written.
    fn counted(&self) -> impl Iterator<Item = &ProfileSample> {
        self.samples.iter().filter(|s| s.count > 0)
    }

    /// All samples counted.
    fn total(&self) -> u64 {
        self.counted().map(|s| s.count).sum()
    }
}

impl ProfileSample {
    /// The thread as every format names it: `name-tid`.
    fn thread_label(&self) -> String {
        format!("{}-{}", self.thread, self.tid)
    }
}

impl ProfileFrame {
    /// Whether the function is known.
    fn symbolized(&self) -> bool {
        !self.function.is_empty() && self.function != "??"
    }

    /// The frame's name: its function, or its module in brackets when the function is unknown;
    /// a Python frame's with its file and line, as py-spy names them (`forward (model.py:42)`).
    fn name(&self) -> Cow<'_, str> {
        if self.python
            && self.symbolized()
            && let Some(file) = &self.file
        {
            let base = file.rsplit('/').next().unwrap_or(file);
            return Cow::Owned(match self.line {
                Some(line) => format!("{} ({base}:{line})", self.function),
                None => format!("{} ({base})", self.function),
            });
        }
        if self.symbolized() {
            Cow::Borrowed(&self.function)
        } else if self.module.starts_with('[') && self.module.ends_with(']') {
            Cow::Borrowed(&self.module)
        } else {
            Cow::Owned(format!("[{}]", self.module))
        }
    }
}

/// The formats the profile is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    Folded,
    FlameGraph,
    Pprof,
    Speedscope,
}

impl Format {
    /// Every format with the ending of the file name that selects it, in the order errors list
    /// them.
    const ENDINGS: [(&'static str, Format); 4] = [
        (".folded", Format::Folded),
        (".svg", Format::FlameGraph),
        (".pb.gz", Format::Pprof),
        (".speedscope.json", Format::Speedscope),
    ];

    /// The format a path's name ends in; anything else is refused with the endings known. A
    /// plain `.json` is refused too: that is the report (`--json`), not a profile.
    pub(crate) fn from_path(path: &Path) -> anyhow::Result<Self> {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().to_ascii_lowercase())
            .unwrap_or_default();
        if let Some((_, format)) = Self::ENDINGS
            .iter()
            .find(|(ending, _)| name.len() > ending.len() && name.ends_with(ending))
        {
            return Ok(*format);
        }
        let known = Self::ENDINGS
            .iter()
            .map(|(ending, format)| format!("{ending} ({})", format.describe()))
            .collect::<Vec<_>>()
            .join(", ");
        let hint = if name.ends_with(".json") {
            "; a plain .json file is the report (--json), a speedscope profile ends in \
             .speedscope.json"
        } else {
            ""
        };
        bail!(
            "{}: the profile's format follows from the file name, which must end in one of: \
             {known}{hint}",
            path.display()
        )
    }

    /// What the format is, in words.
    /// Its short name, as the report's `cpu.outputs[].format` says it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Format::Folded => "folded",
            Format::FlameGraph => "svg",
            Format::Pprof => "pprof",
            Format::Speedscope => "speedscope",
        }
    }

    pub(crate) fn describe(self) -> &'static str {
        match self {
            Format::Folded => "folded stacks",
            Format::FlameGraph => "flame graph SVG",
            Format::Pprof => "pprof, gzipped protobuf",
            Format::Speedscope => "speedscope JSON",
        }
    }
}

/// Writes `profile` to `path` in the format its name selects ([`Format::from_path`]), in place
/// of whatever was there (mode 0600, renamed over the path once complete); returns the format.
pub(crate) fn write_output(path: &Path, profile: &Profile) -> anyhow::Result<Format> {
    let format = Format::from_path(path)?;
    let context = || {
        format!(
            "failed to write the {} {}",
            format.describe(),
            path.display()
        )
    };
    let mut file = Replacement::create(path).with_context(context)?;
    let mut out = BufWriter::new(&mut file);
    match format {
        Format::Folded => folded::write(profile, &mut out),
        Format::FlameGraph => flamegraph::write(profile, &mut out),
        Format::Pprof => pprof::write(profile, &mut out),
        Format::Speedscope => speedscope::write(profile, &mut out),
    }
    .with_context(context)?;
    out.flush().with_context(context)?;
    drop(out);
    file.commit().with_context(context)?;
    Ok(format)
}
