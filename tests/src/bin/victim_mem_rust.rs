//! The memory family's Rust victim, allocating through Rust's default allocator (the system
//! `malloc`): `victim_mem_rust [--wait] K S N` runs K rounds; each leaks one S-byte `Vec` from
//! `mem::leak` and creates and drops N small vectors in `mem::churn` (zeroed ones: `calloc`).
//! `--wait` works as in the C victims: "ready", a byte on stdin, the rounds, "done", one more
//! byte, exit.

use std::io::{Read, Write};

mod mem {
    use std::hint::black_box;

    #[inline(never)]
    pub fn leak(size: usize) {
        let v = black_box(vec![1u8; size]);
        std::mem::forget(v);
    }

    #[inline(never)]
    pub fn churn(n: usize) {
        for i in 0..n {
            let v = black_box(vec![0u8; 64 + i % 7]);
            drop(v);
        }
    }
}

fn wait_byte() {
    let mut byte = [0u8; 1];
    // End of file releases the victim as well as a byte does.
    let _ = std::io::stdin().read(&mut byte);
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}

fn main() {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let wait = args.first().is_some_and(|a| a == "--wait");
    if wait {
        args.remove(0);
    }
    let num = |i: usize| -> usize {
        args.get(i)
            .and_then(|a| a.parse().ok())
            .expect("usage: victim_mem_rust [--wait] K S N")
    };
    let (rounds, size, churn) = (num(0), num(1), num(2));
    if wait {
        say("ready");
        wait_byte();
    }
    for _ in 0..rounds {
        mem::leak(size);
        mem::churn(churn);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    if wait {
        say("done");
        wait_byte();
    }
}
