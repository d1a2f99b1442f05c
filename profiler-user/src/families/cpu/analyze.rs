//! The `cpu` analyzer: sample counts by (thread, user stack, kernel stack) and the stacks, in;
//! symbolized samples, shares per function and thread, and the completeness of the stacks, out.
//! Pure: symbols come through [`Resolve`], so the tests use synthetic ones.

use std::collections::{HashMap, HashSet};

use profiler_common::cpu::{SampleKey, count, end};

use crate::{
    families::python::{code::Named, splice},
    report::{
        Frame,
        cpu::{CpuSection, FrameCounts, FunctionShare, ThreadCpu, UnwindFailures},
    },
};

/// Functions a thread's stack starts in: a stack that reaches one is complete, whatever ended
/// the walk past it.
const START_ROUTINES: [&str; 6] = [
    "_start",
    "start_thread",
    "clone3",
    "__clone3",
    "__clone",
    "__GI___clone3",
];

/// Functions listed in `top_self` and `top_total`.
pub(crate) const TOP: usize = 20;

/// What the analyzer asks of the outside world.
pub(crate) trait Resolve {
    /// The frames of a user stack (innermost first; frame 0 a program counter, the others return
    /// addresses), inlined functions expanded (innermost first).
    fn user_frames(&mut self, ips: &[u64]) -> Vec<Frame>;
    /// The frames of a kernel stack.
    fn kernel_frames(&mut self, ips: &[u64]) -> Vec<Frame>;
    /// The Python frames of Python stack `hash`, named, innermost first (none: not a Python
    /// thread, or no interpreter).
    fn python_frames(&mut self, _hash: u64) -> Vec<Named> {
        Vec::new()
    }
}

/// One frame of a symbolized sample.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SampleFrame {
    pub frame: Frame,
    /// Its address in the target (or the kernel).
    pub address: u64,
    pub kernel: bool,
}

/// The samples of one thread at one stack.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Stacked {
    pub tid: u32,
    pub thread: String,
    /// Innermost first: the kernel frames, then the user frames.
    pub frames: Vec<SampleFrame>,
    pub count: u64,
    /// Whether the user stack is complete (see [`CpuSection::complete_stacks_percent`]).
    pub complete: bool,
    /// How the kernel's walk ended (`profiler_common::cpu::end`).
    pub end: u32,
}

/// What the kernel gathered, as the analyzer takes it.
pub(crate) struct Input<'a> {
    pub samples: &'a [(SampleKey, u64)],
    pub stacks: &'a HashMap<u64, Vec<u64>>,
    pub thread_names: &'a HashMap<u32, String>,
    pub counts: &'a [u64; count::SLOTS as usize],
    pub frequency: u64,
}

/// The samples, symbolized, most first.
pub(crate) fn symbolize(input: &Input<'_>, resolve: &mut dyn Resolve) -> Vec<Stacked> {
    let mut user_cache: HashMap<u64, Vec<SampleFrame>> = HashMap::new();
    let mut kernel_cache: HashMap<u64, Vec<SampleFrame>> = HashMap::new();
    let mut out: Vec<Stacked> = Vec::with_capacity(input.samples.len());
    for (key, n) in input.samples {
        let kernel = frames_of(key.kernel, input.stacks, &mut kernel_cache, |ips| {
            with_addresses(resolve.kernel_frames(ips), ips, true)
        });
        let user = frames_of(key.user, input.stacks, &mut user_cache, |ips| {
            with_addresses(resolve.user_frames(ips), ips, false)
        });
        let complete = key.end() == end::OUTERMOST
            || user
                .last()
                .is_some_and(|f| START_ROUTINES.contains(&f.frame.function.as_str()));
        let python = if key.python == 0 {
            Vec::new()
        } else {
            resolve.python_frames(key.python)
        };
        let user = splice::splice(
            user,
            python,
            |f| !f.kernel && f.frame.function == splice::EVAL_FRAME,
            |n| SampleFrame {
                frame: n.frame,
                address: n.address,
                kernel: false,
            },
        );
        let mut frames = kernel;
        frames.extend(user);
        out.push(Stacked {
            tid: key.tid,
            thread: input
                .thread_names
                .get(&key.tid)
                .cloned()
                .unwrap_or_default(),
            frames,
            count: *n,
            complete,
            end: key.end(),
        });
    }
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.tid.cmp(&b.tid)));
    out
}

/// The frames of stack `hash` (none for 0, or a stack the map lost), symbolized once.
fn frames_of(
    hash: u64,
    stacks: &HashMap<u64, Vec<u64>>,
    cache: &mut HashMap<u64, Vec<SampleFrame>>,
    mut resolve: impl FnMut(&[u64]) -> Vec<SampleFrame>,
) -> Vec<SampleFrame> {
    if hash == 0 {
        return Vec::new();
    }
    if let Some(f) = cache.get(&hash) {
        return f.clone();
    }
    let frames = stacks
        .get(&hash)
        .map(|ips| resolve(ips))
        .unwrap_or_default();
    cache.insert(hash, frames.clone());
    frames
}

/// Pairs the frames with the addresses they came from. With inlined frames there are more
/// frames than addresses: an inlined frame shares its address with the frame it is inlined in
/// (the resolver gives them innermost first, each address's group ending with the function
/// that holds the code, whose `offset` names the address).
fn with_addresses(frames: Vec<Frame>, ips: &[u64], kernel: bool) -> Vec<SampleFrame> {
    let mut out = Vec::with_capacity(frames.len());
    let mut i = 0;
    for frame in frames {
        let address = ips.get(i).copied().unwrap_or(0);
        let ends_group = frame.offset != INLINED;
        out.push(SampleFrame {
            frame,
            address,
            kernel,
        });
        if ends_group {
            i += 1;
        }
    }
    out
}

pub(crate) use crate::symbols::symbolize::INLINED;

/// The section's sample-derived fields (the /proc fields and the tables are the family's).
pub(crate) fn section(stacked: &[Stacked], input: &Input<'_>) -> CpuSection {
    let total: u64 = stacked.iter().map(|s| s.count).sum();
    let percent = |n: u64| share(n, total);
    let complete: u64 = stacked.iter().filter(|s| s.complete).map(|s| s.count).sum();
    let mut failures = UnwindFailures::default();
    for s in stacked.iter().filter(|s| !s.complete) {
        let slot = match s.end {
            end::NO_TABLE => &mut failures.no_table,
            end::UNSUPPORTED => &mut failures.unsupported_rule,
            end::DEPTH => &mut failures.depth_cut,
            end::READ_FAILED => &mut failures.stack_read_failed,
            end::BAD_FRAME => &mut failures.bad_frame,
            end::ZERO => &mut failures.frame_pointer_end,
            _ => &mut failures.no_user_registers,
        };
        *slot += s.count;
    }
    let c = input.counts;
    failures.stack_map_full = c[count::STACK_MAP_FULL as usize];
    failures.sample_map_full = c[count::SAMPLE_MAP_FULL as usize];
    failures.kernel_stack_failed = c[count::KERNEL_STACK_FAILED as usize];
    let frames = FrameCounts {
        by_table: c[count::FRAMES_TABLE as usize],
        by_frame_pointer_no_table: c[count::FP_NO_TABLE as usize],
        by_frame_pointer_unsupported: c[count::FP_UNSUPPORTED as usize],
        signal_frames: c[count::SIGNAL_FRAMES as usize],
        copied_stacks: c[count::RAW_SENT as usize],
        copy_failed: c[count::RAW_FAILED as usize],
    };
    CpuSection {
        samples: total,
        frequency: input.frequency,
        complete_stacks_percent: percent(complete),
        unwind_failures: failures,
        frames,
        top_self: top(stacked, total, true),
        top_total: top(stacked, total, false),
        threads: threads(stacked, total),
        ..CpuSection::default()
    }
}

/// The functions with the most samples: as the innermost frame (`leaf`), or anywhere on the
/// stack (a function counted once per sample however often it recurs).
fn top(stacked: &[Stacked], total: u64, leaf: bool) -> Vec<FunctionShare> {
    let mut by: HashMap<(&str, &str), (u64, &Frame)> = HashMap::new();
    for s in stacked {
        let mut seen = HashSet::new();
        let frames: Box<dyn Iterator<Item = &SampleFrame>> = if leaf {
            Box::new(s.frames.first().into_iter())
        } else {
            Box::new(s.frames.iter())
        };
        for f in frames {
            let key = (f.frame.function.as_str(), f.frame.module.as_str());
            if seen.insert(key) {
                by.entry(key).or_insert((0, &f.frame)).0 += s.count;
            }
        }
    }
    let mut out: Vec<FunctionShare> = by
        .into_values()
        .map(|(n, f)| FunctionShare {
            function: f.function.clone(),
            module: f.module.clone(),
            file: f.file.clone(),
            line: f.line,
            samples: n,
            percent: share(n, total),
        })
        .collect();
    out.sort_by(|a, b| {
        b.samples
            .cmp(&a.samples)
            .then_with(|| a.function.cmp(&b.function))
    });
    out.truncate(TOP);
    out
}

/// Samples per thread, most first (the /proc fields are filled in by the family).
fn threads(stacked: &[Stacked], total: u64) -> Vec<ThreadCpu> {
    let mut by: HashMap<u32, (u64, &str)> = HashMap::new();
    for s in stacked {
        by.entry(s.tid).or_insert((0, &s.thread)).0 += s.count;
    }
    let mut out: Vec<ThreadCpu> = by
        .into_iter()
        .map(|(tid, (n, name))| ThreadCpu {
            tid,
            name: name.to_string(),
            samples: n,
            percent: share(n, total),
            current_cpu: 0.0,
            peak_cpu: 0.0,
            average_cpu: 0.0,
            cpu_trend: "unknown".into(),
        })
        .collect();
    out.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.tid.cmp(&b.tid)));
    out
}

/// `n` of `total` samples, percent (0 of none).
fn share(n: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        100.0 * n as f64 / total as f64
    }
}

/// CPU use from cumulative CPU-time points `(seconds since start, CPU seconds)`: percent of one
/// core over the last interval, the highest interval, the whole span, and the trend.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Usage {
    pub current: f64,
    pub peak: f64,
    pub average: f64,
    pub trend: &'static str,
}

/// See [`Usage`].
pub(crate) fn usage(points: &[(f64, f64)]) -> Usage {
    let rates: Vec<(f64, f64)> = points
        .windows(2)
        .filter(|w| w[1].0 > w[0].0)
        .map(|w| (w[1].0, 100.0 * (w[1].1 - w[0].1) / (w[1].0 - w[0].0)))
        .collect();
    let (Some(first), Some(last)) = (points.first(), points.last()) else {
        return Usage {
            current: 0.0,
            peak: 0.0,
            average: 0.0,
            trend: "unknown",
        };
    };
    let span = last.0 - first.0;
    Usage {
        current: rates.last().map_or(0.0, |r| r.1),
        peak: rates.iter().map(|r| r.1).fold(0.0, f64::max),
        average: if span > 0.0 {
            100.0 * (last.1 - first.1) / span
        } else {
            0.0
        },
        trend: trend(&rates),
    }
}

/// The direction of the CPU rate: the mean of the last third of the intervals against the
/// first third's; a change under 10 points of one core (or 20% of the mean) is "stable".
fn trend(rates: &[(f64, f64)]) -> &'static str {
    if rates.len() < 3 {
        return "unknown";
    }
    let third = rates.len() / 3;
    let mean = |r: &[(f64, f64)]| r.iter().map(|x| x.1).sum::<f64>() / r.len().max(1) as f64;
    let (early, late) = (mean(&rates[..third]), mean(&rates[rates.len() - third..]));
    let band = (0.2 * mean(rates)).max(10.0);
    if late - early > band {
        "increasing"
    } else if early - late > band {
        "decreasing"
    } else {
        "stable"
    }
}

#[cfg(test)]
#[path = "analyze_tests.rs"]
mod tests;
