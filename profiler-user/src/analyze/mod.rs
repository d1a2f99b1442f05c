//! Analyzers: one per probe family, each pure (plain data in, report section out), so every
//! number is unit-tested without a kernel.

pub mod errors;
pub mod functions;
pub mod memory;
pub mod system;
