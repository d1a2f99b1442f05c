//! The `cpu` family: samples of the target's threads, their user stacks unwound in the kernel
//! from unwind tables compiled here.

// Until the family's probes and harvest (their own change) use them.
#[allow(dead_code)]
pub(crate) mod cache;
#[allow(dead_code)]
pub(crate) mod tables;
#[cfg(test)]
mod testing;
#[allow(dead_code)]
pub(crate) mod walk;
