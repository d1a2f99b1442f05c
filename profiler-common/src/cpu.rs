//! The `cpu` family: sampling the target's threads at a fixed frequency (a software cpu-clock
//! perf event on each of its threads, inherited by the threads they start), with user stacks unwound in the kernel from unwind tables the user
//! side compiles out of each object's `.eh_frame` (and `.debug_frame`), and kernel stacks.
//!
//! # The unwind tables
//! Every object mapped executable into the target gets a table of [`UnwindRow`]s, sorted by
//! `pc`: from a row's `pc` up to the next row's, the row says how to find the frame's canonical
//! frame address (CFA, the caller's stack pointer) and where the caller's `rbp` was saved. The
//! return address is always at CFA - 8 (x86-64). All tables sit in one array, `UNWIND_ROWS`, an
//! object's rows one run in it; a table ends with a [`cfa::NONE`] row at the end of its last
//! function, and every gap between two functions starts with one.
//!
//! The target's executable mappings are [`Mapping`]s in `CPU_MAPPINGS`, sorted by `start`, in
//! two halves of [`MAPPINGS_MAX`] entries: the user side writes the half not in use, then flips
//! [`MappingsHeader::active`], so that a sample never sees a half-written list.
//!
//! # The walk
//! Frame 0 is the thread's user program counter (its user registers, saved at the interrupt or
//! the syscall); each further frame is a return address, looked up one byte back (inside the call
//! instruction, so that a call at a function's very end finds its own function's row). Where no
//! table covers a pc (JIT code, anonymous memory, a gap) or a row's rule is one the walk does not
//! evaluate, the walk falls back to the frame pointer for that frame, and counts it.

use crate::threads::{STACK_HASH_SEED, stack_hash_step};

/// Most user frames one sample keeps (the walk's bound).
pub const CPU_STACK_DEPTH: usize = 128;

/// Most kernel frames one sample keeps.
pub const KERNEL_STACK_DEPTH: usize = 64;

/// Mapping slots in each half of `CPU_MAPPINGS`.
pub const MAPPINGS_MAX: u32 = 1024;

/// Rows `UNWIND_ROWS` has room for beyond the tables loaded at the start: libraries loaded later
/// (dlopen) are appended there.
pub const UNWIND_ROWS_SPARE: u32 = 1 << 19;

/// Most rows `UNWIND_ROWS` is ever sized for (128 MiB of kernel memory).
pub const UNWIND_ROWS_MAX: u32 = 1 << 24;

/// Steps of the binary search for a row: enough for 2^24 rows.
pub const ROW_SEARCH_STEPS: u32 = 24;

/// Steps of the binary search for a mapping: enough for [`MAPPINGS_MAX`] entries.
pub const MAPPING_SEARCH_STEPS: u32 = 11;

/// Map capacities.
pub const CPU_STACKS_MAX: u32 = 1 << 14;
pub const CPU_SAMPLES_MAX: u32 = 1 << 15;
pub const CPU_THREADS_MAX: u32 = 1 << 13;

/// How a row finds the CFA ([`UnwindRow::cfa`]).
pub mod cfa {
    /// CFA = rsp + `cfa_offset`.
    pub const RSP: u8 = 0;
    /// CFA = rbp + `cfa_offset`.
    pub const RBP: u8 = 1;
    /// A PLT stub's expression: CFA = rsp + `cfa_offset`, plus 8 when `(rip & 15) >=` the
    /// row's `rbp` field (its threshold: 10 or 11 in the linkers' stubs; `rbp` is unchanged in
    /// a stub, so the field is free).
    pub const PLT: u8 = 2;
    /// A signal trampoline (`__restore_rt`): the interrupted code's registers are in the
    /// `ucontext` at rsp ([`SIGFRAME_RIP`], [`SIGFRAME_RSP`], [`SIGFRAME_RBP`]).
    pub const SIGNAL: u8 = 3;
    /// The outermost frame (the return address is undefined: `_start`, a thread's first
    /// frame): the stack is complete.
    pub const END: u8 = 4;
    /// No unwind information covers this pc (a gap between functions, past the last one).
    pub const NONE: u8 = 5;
    /// A rule the walk does not evaluate (a DWARF expression other than the PLT's, a CFA
    /// register other than rsp and rbp, a return address not at CFA - 8).
    pub const UNSUPPORTED: u8 = 6;
}

/// `rbp` rule of a row ([`UnwindRow::rbp`]): the caller's rbp is the current one.
pub const RBP_UNCHANGED: i8 = 0;
/// `rbp` rule of a row: the caller's rbp cannot be recovered (a rule the walk does not
/// evaluate); it is taken as 0, and a later frame that needs it falls back or fails.
pub const RBP_LOST: i8 = i8::MIN;

/// Offsets in the signal frame of x86-64 Linux, from the stack pointer at `__restore_rt` (the
/// handler's `ret` popped `pretcode`, so rsp points at `struct ucontext`; `uc_mcontext` is at 40,
/// and in it `rbp` is the 11th register, `rsp` the 16th, `rip` the 17th).
pub const SIGFRAME_RBP: u64 = 40 + 8 * 10;
pub const SIGFRAME_RSP: u64 = 40 + 8 * 15;
pub const SIGFRAME_RIP: u64 = 40 + 8 * 16;

/// One row of an object's unwind table.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct UnwindRow {
    /// Where the row starts, as an offset from the object's table base ([`Mapping::base`]).
    pub pc: u32,
    /// The CFA's offset from its register, bytes.
    pub cfa_offset: u16,
    /// How the CFA is found ([`cfa`]).
    pub cfa: u8,
    /// Where the caller's rbp was saved, in 8-byte units from the CFA (usually -2: CFA - 16);
    /// [`RBP_UNCHANGED`], [`RBP_LOST`]; for [`cfa::PLT`] rows, the PLT threshold.
    pub rbp: i8,
}

const _: () = assert!(core::mem::size_of::<UnwindRow>() == 8);

/// One executable mapping of the target.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mapping {
    /// `[start, end)`: its addresses in the target.
    pub start: u64,
    pub end: u64,
    /// The address of the object's table base in the target: a pc's row offset is `pc - base`.
    pub base: u64,
    /// Its object's rows in `UNWIND_ROWS`: `rows` of them from `first_row` (0 rows: no table,
    /// the walk uses the frame pointer there).
    pub first_row: u32,
    pub rows: u32,
}

const _: () = assert!(core::mem::size_of::<Mapping>() == 32);

/// Entry 0 of `CPU_MAPPINGS_HEADER`: which half of `CPU_MAPPINGS` is in use, and how many
/// mappings each half holds.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct MappingsHeader {
    pub active: u32,
    pub count: [u32; 2],
    /// Samples that may still be sent whole ([`RawSample`]) when their pc is in no mapping of
    /// the list: the user side sets it after each exec it sees, when the new program's tables
    /// are not in place yet; each such sample takes one.
    pub raw_budget: u32,
}

/// Bytes of stack above the stack pointer a [`RawSample`] copies (the sizes tried, largest first:
/// a copy fails whole where the stack ends sooner).
pub const RAW_STACK_BYTES: usize = 8192;

/// [`MappingsHeader::raw_budget`] after an exec.
pub const RAW_BUDGET: u32 = 512;

/// A sample whose pc no mapping of the list held (a program just executed, its tables not in
/// place yet): its registers and a copy of its stack, unwound by the user side with the same
/// walk once the tables are loaded. Sent through the ring buffer in place of being counted.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct RawSample {
    pub header: crate::event::EventHeader,
    pub pc: u64,
    pub sp: u64,
    pub bp: u64,
    /// The kernel stack's hash in `CPU_STACKS` (0: none).
    pub kernel: u64,
    /// Bytes of `stack` copied, from `sp` up.
    pub len: u64,
    pub stack: [u8; RAW_STACK_BYTES],
}

const _: () = assert!(core::mem::size_of::<RawSample>() == 24 + 40 + RAW_STACK_BYTES);

const _: () = assert!(core::mem::size_of::<MappingsHeader>() == 16);

/// How a sample's user walk ended ([`SampleKey::end`]).
pub mod end {
    /// It reached the outermost frame ([`super::cfa::END`]): complete.
    pub const OUTERMOST: u32 = 0;
    /// A frame-pointer step found rbp 0 or a return address of 0 (a frame-pointer chain's end;
    /// complete when the user side finds a start routine there).
    pub const ZERO: u32 = 1;
    /// Cut at [`super::CPU_STACK_DEPTH`] frames.
    pub const DEPTH: u32 = 2;
    /// Reading the target's stack failed.
    pub const READ_FAILED: u32 = 3;
    /// No table covered a pc and the frame-pointer fallback failed there.
    pub const NO_TABLE: u32 = 4;
    /// A rule the walk does not evaluate, and the frame-pointer fallback failed there.
    pub const UNSUPPORTED: u32 = 5;
    /// The stack went the wrong way (a CFA not above the stack pointer): a broken frame.
    pub const BAD_FRAME: u32 = 6;
    /// The thread had no user registers (a kernel thread of the process, or none readable).
    pub const NO_USER: u32 = 7;
    pub const COUNT: usize = 8;
}

/// Flag bits of [`SampleKey::flags`].
pub mod flag {
    /// Some frame was unwound by the frame pointer because no table covered it.
    pub const FP_NO_TABLE: u32 = 1;
    /// Some frame was unwound by the frame pointer because its rule is not evaluated.
    pub const FP_UNSUPPORTED: u32 = 2;
    /// The walk crossed a signal frame.
    pub const SIGNAL: u32 = 4;
}

/// Key of `CPU_SAMPLES`: one thread at one pair of stacks, with how its user walk went. The
/// value is the number of samples.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct SampleKey {
    pub tid: u32,
    /// How the user walk ended ([`end`]) in the low byte, [`flag`] bits above it (<< 8).
    pub how: u32,
    /// The user stack's hash in `CPU_STACKS` (0: none).
    pub user: u64,
    /// The kernel stack's hash in `CPU_STACKS` (0: none, the sample was in user mode).
    pub kernel: u64,
    /// The Python stack's hash in `PY_STACKS` (0: none, not a Python thread).
    pub python: u64,
}

const _: () = assert!(core::mem::size_of::<SampleKey>() == 32);

impl SampleKey {
    pub const fn end(&self) -> u32 {
        self.how & 0xff
    }
    pub const fn flags(&self) -> u32 {
        self.how >> 8
    }
}

/// A stack (value of `CPU_STACKS`, keyed by its hash, [`crate::threads::stack_hash`] of its
/// frames): user stacks innermost first, frame 0 a program counter and the rest return
/// addresses; kernel stacks as `bpf_get_stack` gives them.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CpuStack {
    pub len: u64,
    pub ips: [u64; CPU_STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<CpuStack>() == 8 + 8 * CPU_STACK_DEPTH);

/// The hash of a stack, as both sides compute it.
pub fn cpu_stack_hash(ips: &[u64]) -> u64 {
    let mut h = STACK_HASH_SEED;
    for &ip in ips {
        h = stack_hash_step(h, ip);
    }
    if h == 0 { 1 } else { h }
}

/// Slots of the per-CPU `CPU_COUNTS` array.
pub mod count {
    /// Samples of the target's threads taken.
    pub const SAMPLES: u32 = 0;
    /// Frames unwound by a table row.
    pub const FRAMES_TABLE: u32 = 1;
    /// Frames unwound by the frame pointer because no table covered the pc.
    pub const FP_NO_TABLE: u32 = 2;
    /// Frames unwound by the frame pointer because the row's rule is not evaluated.
    pub const FP_UNSUPPORTED: u32 = 3;
    /// Samples whose stack could not be stored (`CPU_STACKS` full).
    pub const STACK_MAP_FULL: u32 = 4;
    /// Samples not counted (`CPU_SAMPLES` full).
    pub const SAMPLE_MAP_FULL: u32 = 5;
    /// Kernel stacks `bpf_get_stack` could not take.
    pub const KERNEL_STACK_FAILED: u32 = 6;
    /// Signal frames crossed.
    pub const SIGNAL_FRAMES: u32 = 7;
    /// Samples of other processes: the target's children, which inherit its threads' events
    /// across fork (a cost, not a loss).
    pub const OTHER: u32 = 8;
    /// Samples sent whole ([`super::RawSample`]) to be unwound in user space.
    pub const RAW_SENT: u32 = 9;
    /// Samples that would have been sent whole, but the ring buffer was full or the stack could
    /// not be read (they are counted as usual, unwound by frame pointer).
    pub const RAW_FAILED: u32 = 10;
    /// Slots of the array.
    pub const SLOTS: u32 = 11;
}

/// Globals of the kernel programs, set by the loader.
pub mod globals {
    /// 1 when kernel stacks are taken as well.
    pub const KERNEL_STACKS: &str = "CPU_KERNEL_STACKS";
}

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// [`super::UnwindRow`]s of every object, by index.
    pub const UNWIND_ROWS: &str = "UNWIND_ROWS";
    /// [`super::Mapping`]s, two halves (see the module's documentation).
    pub const CPU_MAPPINGS: &str = "CPU_MAPPINGS";
    /// [`super::MappingsHeader`] at index 0.
    pub const CPU_MAPPINGS_HEADER: &str = "CPU_MAPPINGS_HEADER";
    /// Sample counts by [`super::SampleKey`].
    pub const CPU_SAMPLES: &str = "CPU_SAMPLES";
    /// [`super::CpuStack`] by hash.
    pub const CPU_STACKS: &str = "CPU_STACKS";
    /// Thread names (`comm`, 16 bytes) by tid, written at each sample.
    pub const CPU_THREADS: &str = "CPU_THREADS";
    /// Per-CPU counts by [`super::count`].
    pub const CPU_COUNTS: &str = "CPU_COUNTS";
    /// Per-CPU scratch of the walk (kernel side only).
    pub const CPU_SCRATCH: &str = "CPU_SCRATCH";
}

/// Program names in the eBPF object.
pub mod programs {
    /// The perf event program (software cpu-clock, one event per CPU).
    pub const SAMPLE: &str = "cpu_sample";
}

pub const MAPS: &[&str] = &[
    maps::UNWIND_ROWS,
    maps::CPU_MAPPINGS,
    maps::CPU_MAPPINGS_HEADER,
    maps::CPU_SAMPLES,
    maps::CPU_STACKS,
    maps::CPU_THREADS,
    maps::CPU_COUNTS,
    maps::CPU_SCRATCH,
];

pub const PROGRAMS: &[&str] = &[programs::SAMPLE];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for UnwindRow {}
    // SAFETY: as above.
    unsafe impl aya::Pod for Mapping {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MappingsHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SampleKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CpuStack {}
    // SAFETY: as above.
    unsafe impl aya::Pod for RawSample {}
}
