//! The threads family's Rust victim: contention on a `std::sync::Mutex`, a bare futex word with
//! no owner field, so a holder can only be known as the thread whose unlock woke the waiter.
//!
//! `victim_threads_rust [--wait] [THREADS [ITERS [HOLD_US]]]` (defaults 4, 25, 2000) starts
//! THREADS threads named `rust-worker-N`, one after the other (no barrier: its own mutex would be
//! a second contended futex); each runs
//! `contend::worker`, which calls `contend::hold_the_lock` ITERS times: it locks `LOCK`, spins
//! HOLD_US microseconds of wall time holding it, and unlocks it, then spins 200 us outside it.
//! It prints "acquisitions N" (THREADS * ITERS) and "hold_us N" (THREADS * ITERS * HOLD_US)
//! first, and "tids T..." (the workers' thread ids, space-separated) once they are done.
//! `--wait` works as in the C victims: "ready", a byte on stdin, the threads, "done", one more
//! byte, exit.

use std::{thread, time::Duration};

use profiler_tests::victim::{say, wait_byte};

mod contend {
    use std::{
        hint::black_box,
        sync::Mutex,
        time::{Duration, Instant},
    };

    /// The one contended lock: a static, so it has a symbol.
    pub static LOCK: Mutex<u64> = Mutex::new(0);

    /// Spins on the CPU until `time` of wall time has passed.
    fn spin(time: Duration) {
        let start = Instant::now();
        while start.elapsed() < time {
            black_box(());
        }
    }

    #[inline(never)]
    pub fn hold_the_lock(hold: Duration) {
        let mut guard = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        spin(hold);
        *guard += 1;
        drop(black_box(guard));
    }

    /// One worker thread's life: `iters` acquisitions; returns its thread id.
    #[inline(never)]
    pub fn worker(iters: u64, hold: Duration) -> i32 {
        for _ in 0..iters {
            hold_the_lock(hold);
            spin(Duration::from_micros(200));
        }
        // SAFETY: gettid has no preconditions.
        unsafe { libc::gettid() }
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.first().is_some_and(|a| a == "--wait");
    if wait {
        args.remove(0);
    }
    let num = |i: usize, default: u64| -> u64 {
        args.get(i).map_or(default, |a| {
            a.parse()
                .expect("usage: victim_threads_rust [--wait] [THREADS [ITERS [HOLD_US]]]")
        })
    };
    let (threads, iters, hold_us) = (num(0, 4), num(1, 25), num(2, 2000));
    say(&format!("acquisitions {}", threads * iters));
    say(&format!("hold_us {}", threads * iters * hold_us));
    if wait {
        say("ready");
        wait_byte();
    }
    let hold = Duration::from_micros(hold_us);
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            thread::Builder::new()
                .name(format!("rust-worker-{i}"))
                .spawn(move || contend::worker(iters, hold))
                .expect("failed to spawn a worker")
        })
        .collect();
    let tids: Vec<String> = workers
        .into_iter()
        .map(|w| w.join().expect("a worker panicked").to_string())
        .collect();
    say(&format!("tids {}", tids.join(" ")));
    if wait {
        say("done");
        wait_byte();
    }
}
