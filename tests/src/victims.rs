//! The victims: the C programs build.rs builds from `victims/*.c`, and how a test builds a Rust
//! victim alone with rustc.

use std::{path::Path, process::Command};

/// `victim.c` at -O2 with `-fcf-protection=full`: functions start with `endbr64`.
pub const C: &str = env!("VICTIM_C");
/// `victim.c` at -O2 with `-fcf-protection=none`.
pub const C_NOCET: &str = env!("VICTIM_C_NOCET");
/// `victim.c` at -O0 with `-fcf-protection=full`: `endbr64; push rbp; mov rbp, rsp`.
pub const C_O0: &str = env!("VICTIM_C_O0");
/// The C victim marked as Go code (a `.go.buildinfo` section).
pub const C_GO: &str = env!("VICTIM_C_GO");
/// `victim_lib.c`, calling `lib_function` in `libvictim.so`.
pub const LIB: &str = env!("VICTIM_LIB");
/// `err_victim.c`: failed syscalls in known numbers (`steady`, `eagain`, `eintr`).
pub const ERR: &str = env!("VICTIM_ERR");
/// `threads_order.c`: lock_a then lock_b, and lock_b then lock_a, never at once.
pub const THREADS_ORDER: &str = env!("VICTIM_THREADS_ORDER");
/// `threads_deadlock.c`: two threads deadlocked on lock_a and lock_b, forever.
pub const THREADS_DEADLOCK: &str = env!("VICTIM_THREADS_DEADLOCK");
/// `threads_contend.c`: threads contending on one mutex, each holding it a known time.
pub const THREADS_CONTEND: &str = env!("VICTIM_THREADS_CONTEND");
/// `threads_sleeper.c`: one thread spinning and sleeping in turn (half on the CPU).
pub const THREADS_SLEEPER: &str = env!("VICTIM_THREADS_SLEEPER");
/// `threads_condvar.c`: two threads handing a turn over condition variables.
pub const THREADS_CONDVAR: &str = env!("VICTIM_THREADS_CONDVAR");
/// `threads_switch.c`: pairs of threads switching tens of thousands of times a second.
pub const THREADS_SWITCH: &str = env!("VICTIM_THREADS_SWITCH");

/// Compiles the Rust program `source` alone with rustc (`$RUSTC`, else `rustc` on PATH) and
/// `flags` into `exe`: a victim built with the flags a test needs rather than cargo's profile.
pub fn rustc(source: &str, exe: &Path, flags: &[&str]) {
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args(["--edition", "2024"])
        .args(flags)
        .arg("-o")
        .arg(exe)
        .arg(source)
        .status()
        .expect("run rustc");
    assert!(status.success(), "rustc failed on {source}");
}
