//! profiler: an eBPF-based profiler and debugger for running Linux processes.
//!
//! The flow: `cli` flags -> `session` (finds or starts the target, attaches the `probes` the
//! `level` selects, runs `collect`) -> `analyze` (pure, one module per family) -> `report`.

pub mod analyze;
pub mod calibrate;
pub mod cli;
pub mod collect;
pub mod demo;
pub mod error;
pub mod families;
pub mod level;
pub mod overhead;
pub mod placement;
pub mod probes;
pub mod report;
pub mod session;
pub mod symbols;
pub mod tracee;
