//! The `cpu` section: sampled stacks of the target's threads (the `cpu` family; docs/cpu.md).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// CPU sampling: where the target's threads spent their time on the CPU.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub(crate) struct CpuSection {
    /// Samples of the target's threads counted (each one tick of a thread's sampling clock,
    /// which runs while the thread does).
    pub samples: u64,
    /// Sampling frequency, Hz: samples per second of each thread's CPU time.
    pub frequency: u64,
    /// Percent of the samples whose user stack is complete: it reaches the outermost frame
    /// (the unwind tables mark it), `_start`, or a thread's start routine.
    pub complete_stacks_percent: f64,
    /// Samples whose user stack ended early, by why.
    pub unwind_failures: UnwindFailures,
    /// How the frames were unwound.
    pub frames: FrameCounts,
    /// The unwind tables loaded for the target's objects.
    pub tables: TablesInfo,
    /// Functions by samples in which they were the innermost frame ("self"), most first.
    pub top_self: Vec<FunctionShare>,
    /// Functions by samples in which they were anywhere on the stack ("total"), most first.
    pub top_total: Vec<FunctionShare>,
    /// The target's threads, by samples, most first.
    pub threads: Vec<ThreadCpu>,
    /// The process's CPU use from /proc, percent of one core: over the last interval, the
    /// highest interval, and the whole run.
    pub current_cpu: f64,
    pub peak_cpu: f64,
    pub average_cpu: f64,
    /// "increasing", "decreasing", "stable" or "unknown" (fewer than three intervals).
    pub cpu_trend: Cow<'static, str>,
    /// Logical CPUs of the machine.
    pub cpu_cores: usize,
    /// The files written from the samples (`--output`).
    pub outputs: Vec<OutputFile>,
    /// The sampled stacks, folded as in a `.folded` file (the thread first, then the outermost
    /// frame to the innermost), most samples first, at most [`MAX_STACKS`]: what the HTML
    /// report's flame graph draws. Added in 3.1, as `stacks_omitted_samples`: empty when a 3.0
    /// report is read.
    #[serde(default)]
    pub stacks: Vec<FoldedStack>,
    /// Samples of the stacks left out of `stacks` by that bound.
    #[serde(default)]
    pub stacks_omitted_samples: u64,
}

/// The most stacks the `cpu` section keeps.
pub(crate) const MAX_STACKS: usize = 5000;

/// One distinct folded stack and its samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FoldedStack {
    /// `name-tid` of the thread, then the frames, outermost first, named as in `.folded`.
    pub frames: Vec<String>,
    pub samples: u64,
}

/// Samples whose user walk ended before the stack's start, by why.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct UnwindFailures {
    /// No unwind table covered a pc, and the frame pointer did not lead on.
    pub no_table: u64,
    /// A rule the walk does not evaluate, and the frame pointer did not lead on.
    pub unsupported_rule: u64,
    /// Cut at the depth limit (128 frames).
    pub depth_cut: u64,
    /// Reading the target's stack failed.
    pub stack_read_failed: u64,
    /// A frame whose stack pointer went the wrong way.
    pub bad_frame: u64,
    /// A frame-pointer chain ended (rbp 0) somewhere other than a start routine.
    pub frame_pointer_end: u64,
    /// The thread's user registers could not be read.
    pub no_user_registers: u64,
    /// Samples lost: their stack, or the sample itself, found the kernel's map full.
    pub stack_map_full: u64,
    pub sample_map_full: u64,
    /// Kernel stacks that could not be taken.
    pub kernel_stack_failed: u64,
}

/// How many frames each way of unwinding produced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FrameCounts {
    /// By an unwind table's row.
    pub by_table: u64,
    /// By the frame pointer, where no table covered the code (JIT, anonymous memory).
    pub by_frame_pointer_no_table: u64,
    /// By the frame pointer, where the table's rule is one the walk does not evaluate.
    pub by_frame_pointer_unsupported: u64,
    /// Samples whose stack crossed a signal frame.
    pub signal_frames: u64,
    /// Samples taken before their program's tables were in the kernel's list (a program that
    /// had just executed): sent whole, with a copy of their stack, and unwound by the profiler
    /// with the same tables.
    pub copied_stacks: u64,
    /// Of those, the copies that could not be sent (ring buffer full, stack unreadable): those
    /// samples were unwound by frame pointer.
    pub copy_failed: u64,
}

/// The unwind tables.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct TablesInfo {
    /// Objects with a table loaded.
    pub objects: usize,
    /// Rows loaded, and the kernel array's capacity.
    pub rows: usize,
    pub capacity: usize,
    /// Objects whose table came from the on-disk cache, and those compiled in this run.
    pub from_cache: usize,
    pub compiled: usize,
    /// Seconds spent compiling tables.
    pub compile_time: f64,
    /// Executable objects without a table (no `.eh_frame`, unreadable, or no room), and why.
    pub without_table: Vec<String>,
}

/// One function's share of the samples.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct FunctionShare {
    pub function: String,
    /// File name of the module, or "[kernel]".
    pub module: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    pub samples: u64,
    /// Percent of all samples.
    pub percent: f64,
}

/// One thread's samples and CPU use.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct ThreadCpu {
    pub tid: u32,
    pub name: String,
    pub samples: u64,
    /// Percent of all samples.
    pub percent: f64,
    /// Its CPU use from /proc, percent of one core, as the process's fields (0 for a thread
    /// that exited before it was sampled twice).
    pub current_cpu: f64,
    pub peak_cpu: f64,
    pub average_cpu: f64,
    pub cpu_trend: Cow<'static, str>,
}

/// A file written from the samples.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct OutputFile {
    /// "folded", "svg", "pprof" or "speedscope".
    pub format: Cow<'static, str>,
    pub path: String,
}
