//! profiler: an eBPF-based profiler and debugger for running Linux processes.
//!
//! The flow: `cli` flags -> `session` (finds or starts the target, builds the `families` the
//! `level` selects, loads and attaches them through `bpf`, runs `collect`, harvests them) ->
//! each family's `report` section and summary block -> `report` renderers.

pub mod bpf;
pub mod calibrate;
pub mod cli;
pub mod clock;
pub mod collect;
pub mod demo;
pub mod error;
pub mod families;
pub mod family;
pub mod level;
pub mod linux;
pub mod overhead;
pub mod placement;
pub mod report;
pub mod session;
pub mod symbols;
pub mod tracee;
