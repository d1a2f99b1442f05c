//! The Rust victim: `victim_rust [--wait] N` calls `work::compute` exactly N times (and through
//! it `work::step` N times), for tests of demangled-name matching. `--wait` works as in the C
//! victims: "ready", a byte on stdin, the calls, "done", one more byte, exit.

use profiler_tests::victim::{say, wait_byte};

mod work {
    use std::hint::black_box;

    #[inline(never)]
    pub fn compute(x: u64) -> u64 {
        black_box(step(black_box(x)).wrapping_mul(3))
    }

    #[inline(never)]
    pub fn step(x: u64) -> u64 {
        black_box(x.rotate_left(7) ^ 0x9e37_79b9)
    }
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.first().is_some_and(|a| a == "--wait");
    if wait {
        args.remove(0);
    }
    let n: u64 = args
        .first()
        .and_then(|a| a.parse().ok())
        .expect("usage: victim_rust [--wait] N");
    if wait {
        say("ready");
        wait_byte();
    }
    let mut acc = 0u64;
    for i in 0..n {
        acc = acc.wrapping_add(work::compute(i));
    }
    std::hint::black_box(acc);
    if wait {
        say("done");
        wait_byte();
    }
}
