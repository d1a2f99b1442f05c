//! The `threads` analyzer: the maps as read at the end -> the `threads` section.
//!
//! - [`classify`]: whether a futex wait is lock contention, a condition variable or parking.

pub(crate) mod classify;
