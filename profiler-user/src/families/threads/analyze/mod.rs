//! The `threads` analyzer: the maps as read at the end ([`Harvest`]) -> the `threads` section.
//!
//! Pure: symbols, /proc names and lock statics come through [`Resolve`], so every stage is
//! tested on synthetic maps. The stages:
//! - [`time`]: each thread's on-CPU, blocked and runnable time (closing the intervals still
//!   running at the end), run-queue percentiles, top blocking stacks;
//! - [`locks`]: the locks waited for and their holders; futex waits that are condition
//!   variables or parking ([`classify`]) are listed apart, as waits;
//! - [`deadlock`]: cycles in the lock-order graph (potential deadlocks) and, each tick, in the
//!   wait-for graph (live ones, which the family builds into [`LiveDeadlock`]s).

pub(crate) mod classify;
pub(crate) mod deadlock;
pub(crate) mod input;
pub(crate) mod locks;
pub(crate) mod time;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_deadlock;

pub(crate) use deadlock::{Waiter, wait_for_cycles};
pub(crate) use input::{Harvest, Options, Resolve};

use crate::report::threads::{Deadlocks, LiveDeadlock, LockProbes, ThreadsSection};
use input::{Ctx, secs};

/// The `threads` section of `h`. `live` (the wait-for cycles the family found while profiling)
/// is passed through; `lock_probes` is left for the family to fill, as only it knows what it
/// attached.
pub(crate) fn section(
    h: &Harvest,
    r: &mut dyn Resolve,
    o: &Options,
    live: Vec<LiveDeadlock>,
) -> ThreadsSection {
    let mut cx = Ctx::new(h, r, o);
    let threads = time::thread_entries(&mut cx);
    let (locks, waits) = locks::locks_and_waits(&mut cx);
    let potential = deadlock::potential_deadlocks(&mut cx);
    ThreadsSection {
        min_block: secs(o.min_block_ns),
        deadlock_after: secs(o.deadlock_after_ns),
        lock_probes: LockProbes::default(),
        threads,
        locks,
        waits,
        deadlocks: Deadlocks { potential, live },
    }
}
