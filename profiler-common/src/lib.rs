//! Types shared by the kernel programs (`profiler-ebpf`) and the user side (`profiler-user`).
//!
//! Every type that crosses the boundary is `#[repr(C)]`, `Copy`, made of fixed-width integers
//! with explicit padding, and has its size checked at compile time.
#![no_std]

#[cfg(test)]
extern crate std;

pub mod control;
pub mod counters;
pub mod cpu;
pub mod errno;
pub mod errors;
pub mod event;
pub mod functions;
pub mod gpu;
pub mod memory;
pub mod names;
pub mod process;
pub mod python;
pub mod signals;
pub mod syscalls;
pub mod threads;

/// Name of the global that holds the target's process id (tgid) in every program.
pub const TARGET_TGID_GLOBAL: &str = "TARGET_TGID";
