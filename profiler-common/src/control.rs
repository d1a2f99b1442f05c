//! The switch that ends the profiling window in the kernel.
//!
//! Every program reads [`STOPPED`] first and returns at once when the user side has set it: at
//! the end of the window (`--duration`, Ctrl-C, SIGTERM, the target's exit) counting stops in
//! every program at the same instant, whatever the number of probes still attached, and the
//! report covers exactly the window while the probes are taken down afterwards.

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// A one-slot array of `u32` flags, indexed by the constants of this module.
    pub const CONTROL: &str = "CONTROL";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[maps::CONTROL];
/// Every program of the module (none).
pub const PROGRAMS: &[&str] = &[];

/// Slots of `CONTROL`.
pub const CONTROL_SLOTS: u32 = 1;
/// Slot of `CONTROL`: non-zero once the window has ended.
pub const STOPPED: u32 = 0;
