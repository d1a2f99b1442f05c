//! The `threads` section (threads, locks, waits, deadlocks), looked at through accessors that
//! panic with context, as the rest of the report is. Field names are those of
//! `profiler-user/src/report/threads.rs`.

use std::collections::BTreeSet;

use serde_json::Value;

use super::{Node, Report};

impl Report {
    /// The `threads` section; panics when the report has none.
    pub fn threads(&self) -> Threads<'_> {
        Threads(Node::new(self.at("/threads"), "the threads section"))
    }
}

/// A hex address of the report (`0x55d0...`) as a number, so two spellings compare equal.
pub fn address(hex: &str) -> u64 {
    u64::from_str_radix(hex.trim_start_matches("0x"), 16)
        .unwrap_or_else(|_| panic!("{hex:?} is not a hex address"))
}

/// The function names of a stack (`[{function, module, offset, ...}]`), innermost first.
pub fn functions(stack: &Value) -> Vec<&str> {
    stack
        .as_array()
        .unwrap_or_else(|| panic!("a stack is an array, not {stack}"))
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("??"))
        .collect()
}

/// Whether a frame of `stack` is `function`.
pub fn names(stack: &Value, function: &str) -> bool {
    functions(stack).contains(&function)
}

/// The `threads` section.
#[derive(Debug, Clone, Copy)]
pub struct Threads<'a>(Node<'a>);

impl<'a> Threads<'a> {
    /// The whole section, for failure messages.
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    pub fn deadlock_after(&self) -> f64 {
        self.0.f64("/deadlock_after")
    }

    pub fn lock_probes_attached(&self) -> bool {
        self.0.bool("/lock_probes/attached")
    }

    pub fn threads(&self) -> Vec<ThreadStat<'a>> {
        self.0
            .list("/threads", "thread")
            .into_iter()
            .map(ThreadStat)
            .collect()
    }

    /// The thread `tid`; panics with the threads there are when it is missing.
    pub fn thread(&self, tid: u32) -> ThreadStat<'a> {
        let all = self.threads();
        all.iter()
            .copied()
            .find(|t| t.tid() == tid)
            .unwrap_or_else(|| panic!("no thread {tid}; there are {}", describe(&all)))
    }

    /// The one thread called `name`; panics unless there is exactly one.
    pub fn thread_named(&self, name: &str) -> ThreadStat<'a> {
        let all = self.threads();
        let found: Vec<_> = all.iter().copied().filter(|t| t.name() == name).collect();
        let [thread] = found[..] else {
            panic!(
                "{} threads named {name:?}; there are {}",
                found.len(),
                describe(&all)
            );
        };
        thread
    }

    pub fn locks(&self) -> Vec<Lock<'a>> {
        self.0
            .list("/locks", "lock")
            .into_iter()
            .map(Lock)
            .collect()
    }

    /// The lock that is the static `symbol` (its `symbol` is `symbol` or `symbol+OFFSET`).
    pub fn lock_named(&self, symbol: &str) -> Lock<'a> {
        let all = self.locks();
        all.iter()
            .copied()
            .find(|l| l.is_symbol(symbol))
            .unwrap_or_else(|| {
                let symbols: Vec<_> = all.iter().map(|l| (l.address(), l.symbol())).collect();
                panic!("no lock {symbol:?}; the locks are {symbols:?}")
            })
    }

    /// The lock at `address`, if the report lists it.
    pub fn lock_at(&self, address: u64) -> Option<Lock<'a>> {
        self.locks().into_iter().find(|l| l.address() == address)
    }

    /// `waits[]`: futex waits that are not contention.
    fn waits(&self) -> Vec<Node<'a>> {
        self.0.list("/waits", "wait site")
    }

    /// The time waited at the wait sites of `kind` (`condvar`, `park`), seconds.
    pub fn wait_time_of(&self, kind: &str) -> f64 {
        self.waits()
            .into_iter()
            .filter(|w| w.str("/kind") == kind)
            .map(|w| w.f64("/wait_time"))
            .sum()
    }

    /// The wait sites of `kind` (`condvar`, `park`): (address, waits, stack).
    pub fn wait_sites(&self, kind: &str) -> Vec<(u64, u64, &'a Value)> {
        self.waits()
            .into_iter()
            .filter(|w| w.str("/kind") == kind)
            .map(|w| {
                (
                    address(w.str("/address")),
                    w.u64("/waits"),
                    w.field("/stack"),
                )
            })
            .collect()
    }

    /// `deadlocks.potential[]`: (the cycle's lock addresses, its edges).
    pub fn potential(&self) -> Vec<(BTreeSet<u64>, Vec<Edge<'a>>)> {
        self.0
            .list("/deadlocks/potential", "potential deadlock")
            .into_iter()
            .map(|p| {
                let locks = p
                    .list("/locks", "lock address")
                    .iter()
                    .map(|a| address(a.str("")))
                    .collect();
                let edges = p.list("/edges", "edge").into_iter().map(Edge).collect();
                (locks, edges)
            })
            .collect()
    }

    /// `deadlocks.live[]`.
    pub fn live(&self) -> Vec<LiveDeadlock<'a>> {
        self.0
            .list("/deadlocks/live", "live deadlock")
            .into_iter()
            .map(LiveDeadlock)
            .collect()
    }
}

fn describe(threads: &[ThreadStat<'_>]) -> String {
    let all: Vec<String> = threads
        .iter()
        .map(|t| format!("{} {:?}", t.tid(), t.name()))
        .collect();
    all.join(", ")
}

/// One entry of `threads.threads`.
#[derive(Debug, Clone, Copy)]
pub struct ThreadStat<'a>(Node<'a>);

impl<'a> ThreadStat<'a> {
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    pub fn tid(&self) -> u32 {
        u32::try_from(self.0.u64("/tid")).expect("a tid fits u32")
    }

    pub fn name(&self) -> &'a str {
        self.0.str("/name")
    }

    pub fn on_cpu_time(&self) -> f64 {
        self.0.f64("/on_cpu_time")
    }

    pub fn off_cpu_time(&self) -> f64 {
        self.0.f64("/off_cpu_time")
    }

    pub fn blocked_time(&self) -> f64 {
        self.0.f64("/blocked_time")
    }

    pub fn runnable_time(&self) -> f64 {
        self.0.f64("/runnable_time")
    }

    /// `voluntary_switches`: switches out in a waiting state, counted at the switch-out.
    pub fn voluntary_switches(&self) -> u64 {
        self.0.u64("/voluntary_switches")
    }

    /// `blocks`: the blocks counted when the thread ran again.
    pub fn blocks(&self) -> u64 {
        self.0.u64("/blocks")
    }

    /// Blocked time for `reason` (`lock`, `io`, `sleep`, `other`).
    pub fn blocked(&self, reason: &str) -> f64 {
        self.0.f64(&format!("/blocked/{reason}"))
    }

    /// `top_blocking_stacks[]` of `reason`: (count, total_time, stack).
    pub fn blocking_stacks(&self, reason: &str) -> Vec<(u64, f64, &'a Value)> {
        self.0
            .list("/top_blocking_stacks", "blocking stack")
            .into_iter()
            .filter(|s| s.str("/reason") == reason)
            .map(|s| (s.u64("/count"), s.f64("/total_time"), s.field("/stack")))
            .collect()
    }
}

/// One entry of `threads.locks`.
#[derive(Debug, Clone, Copy)]
pub struct Lock<'a>(Node<'a>);

impl<'a> Lock<'a> {
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    pub fn address(&self) -> u64 {
        address(self.0.str("/address"))
    }

    /// `pthread_mutex`, `rwlock` or `futex`.
    pub fn kind(&self) -> &'a str {
        self.0.str("/kind")
    }

    pub fn symbol(&self) -> Option<&'a str> {
        self.0.opt_str("/symbol")
    }

    /// Whether the lock is the static `name`: its symbol is `name` or `name+OFFSET`.
    pub fn is_symbol(&self, name: &str) -> bool {
        self.symbol()
            .is_some_and(|s| s == name || s.strip_prefix(name).is_some_and(|o| o.starts_with('+')))
    }

    /// Acquisitions through the probed functions; None (null) for a futex-only lock.
    pub fn acquisitions(&self) -> Option<u64> {
        self.0.field("/acquisitions").as_u64()
    }

    pub fn contended(&self) -> u64 {
        self.0.u64("/contended")
    }

    pub fn wait_time(&self) -> f64 {
        self.0.f64("/wait_time")
    }

    /// Time held; None (null) for a lock that is not probed.
    pub fn hold_time(&self) -> Option<f64> {
        self.0.field("/hold_time").as_f64()
    }

    pub fn holders(&self) -> Vec<Holder<'a>> {
        self.0
            .list("/holders", "holder")
            .into_iter()
            .map(Holder)
            .collect()
    }

    /// `top_waiting_stacks[]`: (count, stack).
    pub fn waiting_stacks(&self) -> Vec<(u64, &'a Value)> {
        self.0
            .list("/top_waiting_stacks", "waiting stack")
            .into_iter()
            .map(|s| (s.u64("/count"), s.field("/stack")))
            .collect()
    }
}

/// One entry of a lock's `holders`.
#[derive(Debug, Clone, Copy)]
pub struct Holder<'a>(Node<'a>);

impl<'a> Holder<'a> {
    pub fn tid(&self) -> u32 {
        u32::try_from(self.0.u64("/tid")).expect("a tid fits u32")
    }

    pub fn thread(&self) -> &'a str {
        self.0.str("/thread")
    }

    /// `owner_field` or `waker`.
    pub fn evidence(&self) -> &'a str {
        self.0.str("/evidence")
    }

    pub fn waits(&self) -> u64 {
        self.0.u64("/waits")
    }

    pub fn stack(&self) -> &'a Value {
        self.0.field("/stack")
    }
}

/// One edge of a potential deadlock: held `from`, then took `to`.
#[derive(Debug, Clone, Copy)]
pub struct Edge<'a>(Node<'a>);

impl<'a> Edge<'a> {
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    pub fn from(&self) -> u64 {
        address(self.0.str("/from"))
    }

    pub fn to(&self) -> u64 {
        address(self.0.str("/to"))
    }

    /// (`from_kind`, `to_kind`).
    pub fn kinds(&self) -> (&'a str, &'a str) {
        (self.0.str("/from_kind"), self.0.str("/to_kind"))
    }

    pub fn thread(&self) -> &'a str {
        self.0.str("/thread")
    }

    pub fn count(&self) -> u64 {
        self.0.u64("/count")
    }

    pub fn from_stack(&self) -> &'a Value {
        self.0.field("/from_stack")
    }

    pub fn to_stack(&self) -> &'a Value {
        self.0.field("/to_stack")
    }
}

/// One entry of `deadlocks.live`.
#[derive(Debug, Clone, Copy)]
pub struct LiveDeadlock<'a>(Node<'a>);

impl<'a> LiveDeadlock<'a> {
    pub fn json(&self) -> &'a Value {
        self.0.json
    }

    pub fn detected_at(&self) -> f64 {
        self.0.f64("/detected_at")
    }

    /// `attach` or `probes`.
    pub fn found_by(&self) -> &'a str {
        self.0.str("/found_by")
    }

    pub fn threads(&self) -> Vec<DeadlockedThread<'a>> {
        self.0
            .list("/threads", "deadlocked thread")
            .into_iter()
            .map(DeadlockedThread)
            .collect()
    }
}

/// One thread of a live deadlock.
#[derive(Debug, Clone, Copy)]
pub struct DeadlockedThread<'a>(Node<'a>);

impl<'a> DeadlockedThread<'a> {
    pub fn tid(&self) -> u32 {
        u32::try_from(self.0.u64("/tid")).expect("a tid fits u32")
    }

    pub fn name(&self) -> &'a str {
        self.0.str("/name")
    }

    pub fn waits_for(&self) -> u64 {
        address(self.0.str("/waits_for"))
    }

    /// The static the awaited lock is, when it is one.
    pub fn waits_for_symbol(&self) -> &'a str {
        self.0.str("/waits_for_symbol")
    }

    pub fn lock_kind(&self) -> &'a str {
        self.0.str("/lock_kind")
    }

    pub fn held_by(&self) -> u32 {
        u32::try_from(self.0.u64("/held_by")).expect("a tid fits u32")
    }

    pub fn evidence(&self) -> &'a str {
        self.0.str("/evidence")
    }

    pub fn waiting_for(&self) -> f64 {
        self.0.f64("/waiting_for")
    }

    pub fn blocked_stack(&self) -> &'a Value {
        self.0.field("/blocked_stack")
    }

    pub fn acquired_stack(&self) -> &'a Value {
        self.0.field("/acquired_stack")
    }
}
