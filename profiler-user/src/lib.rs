//! profiler: an eBPF-based profiler and debugger for running Linux processes.
//!
//! The flow: `cli` flags -> `session` (finds or starts the target, builds the `families` the
//! `level` selects, loads and attaches them through `bpf`, runs `collect`, harvests them) ->
//! each family's `report` section and summary block -> `report` renderers.

mod app;
pub(crate) mod bpf;
pub(crate) mod calibrate;
pub(crate) mod cli;
pub(crate) mod clock;
pub(crate) mod collect;
/// The demo workload's functions are the profiler's own subjects: public, so the compiler gives
/// them the ordinary ABI and prologues a user's program has (internal ones get leaner, rarer
/// prologues that the kernel single-steps).
pub mod demo;
pub(crate) mod error;
pub(crate) mod families;
pub(crate) mod family;
#[cfg(test)]
pub(crate) mod family_testing;
pub(crate) mod level;
pub(crate) mod linux;
pub(crate) mod outfile;
pub(crate) mod overhead;
pub(crate) mod placement;
pub(crate) mod progress;
pub(crate) mod report;
pub(crate) mod session;
pub(crate) mod stop;
pub(crate) mod symbols;
pub(crate) mod top;
pub(crate) mod tracee;

pub use app::main;
