//! The cpu family's Rust victim, built by `victims::cpu_rust` with rustc alone (`-C
//! opt-level=2 -C force-frame-pointers=no -g`): one thread's CPU time split 70/30 between a
//! generic type's method six calls deep and a trait method three calls deep, none with a frame
//! pointer.
//!
//! `victim_cpu_rust [--wait] [MS]` starts thread "worker", which repeats `chain::run` until MS ms
//! (default 2000) of wall time have passed, at least once:
//!
//! ```text
//! chain::run -> chain::level1 -> chain::level2 -> <Warm as Spin>::spin               3 ms
//!                                chain::level2 -> chain::level3 -> chain::level4
//!                                    -> chain::level5 -> Hot<u32>::spin              7 ms
//! ```
//!
//! each leaf spinning that much of the thread's CPU time (its CPU clock) in its own frame: 70% of
//! the worker's CPU time in `Hot::<u32>::spin`, which demangles as
//! `victim_cpu_rust::Hot<T>::spin` (rustc's default mangling names no type arguments), 30% in
//! `<victim_cpu_rust::Warm as victim_cpu_rust::Spin>::spin`.
//!
//! It prints "worker_tid N" first, and "cycles N", "deep_seconds S" and "shallow_seconds S" (the
//! CPU seconds each leaf measured itself spinning) when it is done. `--wait` works as in the C
//! victims (`victims/cpu_common.h`): "ready", a byte on stdin, the cycles, "done", one more byte,
//! exit; the worker stays alive, idle, until then.

use std::{
    hint::black_box,
    sync::mpsc::channel,
    time::{Duration, Instant},
};

// The harness library's handshake, by path: rustc alone has no crate to link it from.
#[path = "../victim.rs"]
mod victim;

use victim::{say, wait_byte};

const DEEP_US: u64 = 7000;
const SHALLOW_US: u64 = 3000;

/// Iterations of a spin's inner loop between two reads of the thread's CPU clock: tens of
/// microseconds, so that the clock's system call is about a percent of the spin.
const SPIN_CHUNK: u32 = 50_000;

#[repr(C)]
struct Timespec {
    sec: i64,
    nsec: i64,
}

const CLOCK_THREAD_CPUTIME_ID: i32 = 3;

unsafe extern "C" {
    fn clock_gettime(clock: i32, ts: *mut Timespec) -> i32;
    fn gettid() -> i32;
}

/// The calling thread's CPU time, nanoseconds.
#[inline(always)]
fn thread_cpu_ns() -> u64 {
    let mut ts = Timespec { sec: 0, nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant the kernel knows.
    unsafe { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.sec as u64 * 1_000_000_000 + ts.nsec as u64
}

/// Spins until `us` microseconds of the thread's CPU time have passed, in its caller's frame
/// (always inlined), feeding `seed` through the loop; returns the nanoseconds it measured.
#[inline(always)]
fn spin_here<T: Copy>(us: u64, seed: T) -> u64 {
    let start = thread_cpu_ns();
    let mut now = start;
    while now - start < us * 1000 {
        for _ in 0..SPIN_CHUNK {
            black_box(seed);
        }
        now = thread_cpu_ns();
    }
    now - start
}

/// The deep leaf: a generic type's method.
pub struct Hot<T>(pub T);

impl<T: Copy> Hot<T> {
    #[inline(never)]
    pub fn spin(&self, us: u64) -> u64 {
        spin_here(us, self.0)
    }
}

/// The shallow leaf: a trait's method.
pub trait Spin {
    fn spin(&self, us: u64) -> u64;
}

pub struct Warm;

impl Spin for Warm {
    #[inline(never)]
    fn spin(&self, us: u64) -> u64 {
        // A seed of another type than Hot's, so that the two leaves' code differs and LLVM
        // does not merge them into one function.
        spin_here(us, 0u8)
    }
}

/// The call chain. Every call's result goes through `black_box`, so no call is a tail call and
/// every caller keeps its frame.
mod chain {
    use std::hint::black_box;

    use super::{DEEP_US, Hot, SHALLOW_US, Spin, Warm};

    /// CPU nanoseconds the two leaves measured.
    #[derive(Clone, Copy, Default)]
    pub struct Split {
        pub deep: u64,
        pub shallow: u64,
    }

    #[inline(never)]
    pub fn level5() -> u64 {
        black_box(Hot(7u32).spin(DEEP_US))
    }

    #[inline(never)]
    pub fn level4() -> u64 {
        black_box(level5())
    }

    #[inline(never)]
    pub fn level3() -> u64 {
        black_box(level4())
    }

    #[inline(never)]
    pub fn level2() -> Split {
        let shallow = black_box(Warm.spin(SHALLOW_US));
        let deep = black_box(level3());
        Split { deep, shallow }
    }

    #[inline(never)]
    pub fn level1() -> Split {
        black_box(level2())
    }

    /// One cycle.
    #[inline(never)]
    pub fn run() -> Split {
        black_box(level1())
    }
}

/// The worker: sends its tid, waits for `go`, runs its cycles for `run_for`, sends its split and
/// cycles, and waits for `leave` (closed: it leaves).
fn worker(
    tid: std::sync::mpsc::Sender<i32>,
    go: std::sync::mpsc::Receiver<()>,
    run_for: Duration,
    done: std::sync::mpsc::Sender<(chain::Split, u64)>,
    leave: std::sync::mpsc::Receiver<()>,
) {
    // SAFETY: gettid has no preconditions.
    tid.send(unsafe { gettid() }).expect("main waits");
    let _ = go.recv();
    let end = Instant::now() + run_for;
    let (mut total, mut cycles) = (chain::Split::default(), 0u64);
    loop {
        let split = chain::run();
        total.deep += split.deep;
        total.shallow += split.shallow;
        cycles += 1;
        if Instant::now() >= end {
            break;
        }
    }
    done.send((total, cycles)).expect("main waits");
    let _ = leave.recv();
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.first().is_some_and(|a| a == "--wait");
    if wait {
        args.remove(0);
    }
    let ms: u64 = args.first().map_or(2000, |a| {
        a.parse().expect("usage: victim_cpu_rust [--wait] [MS]")
    });
    let (tid_tx, tid_rx) = channel();
    let (go_tx, go_rx) = channel();
    let (done_tx, done_rx) = channel();
    let (leave_tx, leave_rx) = channel();
    let run_for = Duration::from_millis(ms);
    let thread = std::thread::Builder::new()
        .name("worker".into())
        .spawn(move || worker(tid_tx, go_rx, run_for, done_tx, leave_rx))
        .expect("spawn the worker");
    say(&format!(
        "worker_tid {}",
        tid_rx.recv().expect("the worker's tid")
    ));
    if wait {
        say("ready");
        wait_byte();
    }
    go_tx.send(()).expect("the worker waits");
    let (split, cycles) = done_rx.recv().expect("the worker's split");
    say(&format!("cycles {cycles}"));
    say(&format!("deep_seconds {:.6}", split.deep as f64 / 1e9));
    say(&format!(
        "shallow_seconds {:.6}",
        split.shallow as f64 / 1e9
    ));
    if wait {
        say("done");
        wait_byte();
    }
    drop(leave_tx);
    thread.join().expect("the worker");
}
