//! The locks threads waited for, who held them, and the futex waits that were not contention.
//!
//! A futex-only lock (no probes: Rust std, parking_lot, a condition variable's word) is known
//! only by its address, so each of its waiting stacks is classified ([`classify_wait`]): the
//! waits of a condition variable or a parked thread go to `waits[]`, not to `locks[]`, and the
//! lock's totals lose their share (a lock left with no contention stacks leaves `locks[]`). A
//! pthread lock's waits are always contention: the probes saw them inside the lock call.

use std::collections::HashMap;

use profiler_common::threads::{HolderKey, LockKind, LockStats, LockWaitKey, Tally};

use super::{
    classify::{WaitClass, classify_wait, recognised},
    input::{Ctx, evidence_name, hex, secs},
    time::percentile_from_log2,
};
use crate::report::{
    Frame,
    threads::{Holder, LockEntry, WaitSite, WaitingStack},
};

/// Most holders listed per lock (each with a stack): enough to name the culprits without
/// making a many-thread lock's entry the report's bulk.
pub(crate) const MAX_HOLDERS: usize = 16;

/// The `locks` and `waits` of the section: locks most wait time first (ties by address), wait
/// sites most wait time first. Listed: every lock with a contended wait or a probed
/// acquisition.
pub(crate) fn locks_and_waits(cx: &mut Ctx<'_>) -> (Vec<LockEntry>, Vec<WaitSite>) {
    let h = cx.h;
    let mut waits_by_lock: HashMap<u64, Vec<(&LockWaitKey, &Tally)>> = HashMap::new();
    for (k, t) in &h.waits {
        waits_by_lock.entry(k.addr).or_default().push((k, t));
    }
    let mut ordered: Vec<&(u64, LockStats)> = h.locks.iter().collect();
    ordered.sort_by_key(|(addr, _)| *addr);
    let mut locks = Vec::new();
    let mut sites = Vec::new();
    for (addr, stats) in ordered {
        if stats.contended == 0 && stats.acquisitions == 0 {
            continue;
        }
        let kind = LockKind::from_u32(stats.kind);
        let mut waits = waits_by_lock.remove(addr).unwrap_or_default();
        waits.sort_by_key(|(k, t)| (std::cmp::Reverse(t.total_ns), k.stack));
        let mut contention = Vec::new();
        let mut not_contention = Tally::default();
        if kind != LockKind::Futex {
            // Sorted, and no classifying to do: the rest would not be shown.
            waits.truncate(cx.o.top_stacks);
        }
        let classified: Vec<(&LockWaitKey, &Tally, Vec<Frame>, WaitClass, bool)> = waits
            .into_iter()
            .map(|(k, t)| {
                let frames = cx.frames(k.stack);
                let (class, known) = match kind {
                    LockKind::Futex => (classify_wait(&frames), recognised(&frames)),
                    _ => (WaitClass::Lock, true),
                };
                (k, t, frames, class, known)
            })
            .collect();
        // A stack that names nothing (cut short) at a word whose other waits are condition or
        // park waits is one of them: the word is the condition variable's, not a lock's.
        let mut event_waits: HashMap<&'static str, u64> = HashMap::new();
        for (_, t, _, class, known) in &classified {
            if *known && *class != WaitClass::Lock {
                *event_waits.entry(class.name()).or_default() += t.count;
            }
        }
        let dominant = [WaitClass::Condvar, WaitClass::Park]
            .into_iter()
            .max_by_key(|c| event_waits.get(c.name()).copied().unwrap_or(0))
            .filter(|c| event_waits.get(c.name()).copied().unwrap_or(0) > 0);
        for (k, t, frames, class, known) in classified {
            let class = match dominant {
                Some(d) if !known => d,
                _ => class,
            };
            let _ = k;
            if class == WaitClass::Lock {
                contention.push((t, frames));
                continue;
            }
            not_contention.count += t.count;
            not_contention.total_ns += t.total_ns;
            sites.push(WaitSite {
                kind: class.name().into(),
                address: hex(*addr),
                waits: t.count,
                wait_time: secs(t.total_ns),
                stack: frames,
            });
        }
        // A futex whose every waiting stack is an event wait is no lock at all.
        if kind == LockKind::Futex && contention.is_empty() && not_contention.count > 0 {
            continue;
        }
        let entry = lock_entry(cx, *addr, kind, stats, &not_contention);
        locks.push(with_stacks(entry, contention, cx.o.top_stacks));
    }
    locks.sort_by(|a, b| {
        b.wait_time
            .total_cmp(&a.wait_time)
            .then_with(|| a.address.cmp(&b.address))
    });
    sites.sort_by(|a, b| {
        b.wait_time
            .total_cmp(&a.wait_time)
            .then_with(|| a.address.cmp(&b.address))
    });
    (locks, sites)
}

/// The lock's totals, less the waits that were not contention.
fn lock_entry(
    cx: &mut Ctx<'_>,
    addr: u64,
    kind: LockKind,
    stats: &LockStats,
    not_contention: &Tally,
) -> LockEntry {
    let probed = kind != LockKind::Futex;
    LockEntry {
        address: hex(addr),
        kind: kind.name().into(),
        symbol: cx.r.lock_symbol(addr),
        allocated_at: match cx.h.allocated.get(&addr) {
            Some(ips) if !ips.is_empty() => cx.r.frames(ips),
            _ => Vec::new(),
        },
        acquisitions: probed.then_some(stats.acquisitions),
        contended: stats.contended.saturating_sub(not_contention.count),
        eagain: u64::from(stats.eagain),
        wait_time: secs(stats.wait_ns.saturating_sub(not_contention.total_ns)),
        max_wait: secs(stats.wait_max_ns),
        p99_wait: percentile_from_log2(&stats.wait_hist, 0.99),
        hold_time: probed.then(|| secs(stats.hold_ns)),
        max_hold: probed.then(|| secs(stats.hold_max_ns)),
        holders: holders(cx, addr),
        top_waiting_stacks: Vec::new(),
    }
}

/// Adds the contention stacks (sorted, most wait time first) to `entry`, at most `top`.
fn with_stacks(
    mut entry: LockEntry,
    contention: Vec<(&Tally, Vec<Frame>)>,
    top: usize,
) -> LockEntry {
    entry.top_waiting_stacks = contention
        .into_iter()
        .take(top)
        .map(|(t, stack)| WaitingStack {
            count: t.count,
            total_time: secs(t.total_ns),
            max_time: secs(t.max_ns),
            stack,
        })
        .collect();
    entry
}

/// Who held `addr` while others waited, most wait time caused first (ties by tid), at most
/// [`MAX_HOLDERS`].
fn holders(cx: &mut Ctx<'_>, addr: u64) -> Vec<Holder> {
    let h = cx.h;
    let mut mine: Vec<(HolderKey, Tally)> = h
        .holders
        .iter()
        .filter(|(k, _)| k.addr == addr)
        .copied()
        .collect();
    mine.sort_by_key(|(k, t)| (std::cmp::Reverse(t.total_ns), k.holder, k.evidence, k.stack));
    // A wait whose holder's stack was not known (the holder had not returned from its lock call
    // yet, or only its wake-up named it) joins the same thread's main entry with a stack.
    let mut merged: Vec<(HolderKey, Tally)> = Vec::new();
    let known = |k: &HolderKey| k.stack != 0 && h.stacks.contains_key(&k.stack);
    for (k, t) in mine.iter().filter(|(k, _)| known(k)) {
        merged.push((*k, *t));
    }
    for (k, t) in mine.iter().filter(|(k, _)| !known(k)) {
        match merged.iter_mut().find(|(m, _)| m.holder == k.holder) {
            Some((_, into)) => {
                into.count += t.count;
                into.total_ns += t.total_ns;
                into.max_ns = into.max_ns.max(t.max_ns);
            }
            None => merged.push((*k, *t)),
        }
    }
    merged.sort_by_key(|(k, t)| (std::cmp::Reverse(t.total_ns), k.holder, k.evidence, k.stack));
    merged.truncate(MAX_HOLDERS);
    merged
        .iter()
        .map(|(k, t)| Holder {
            tid: k.holder,
            thread: cx.name(k.holder),
            evidence: evidence_name(k.evidence).into(),
            waits: t.count,
            wait_time: secs(t.total_ns),
            stack: cx.frames(k.stack),
        })
        .collect()
}
