//! The victims: the C programs build.rs builds from `victims/*.c`, the Python script beside
//! them, and the Rust victim that rustc builds alone, at test time.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

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

// The cpu family's victims (`victims/cpu_common.h`), `[--wait] [MS]`: thread "worker" runs
// cycles (`run` -> `level1` -> `level2` and below) of 10 ms of its CPU time, 70% in a hot leaf
// and 30% in a cold one, each measured by the leaf itself, for MS ms of wall time (default 2000).
// Each prints "worker_tid N" first, then "cycles N", "<hot>_seconds S" and "<cold>_seconds S"
// when done. Built -O2 -g, without frame pointers but where named.

/// `cpu_split.c`: `hot_deep` (depth 6, counting `level1` as 1) 70%, `hot_shallow` (depth 3)
/// 30%, as "deep_seconds" and "shallow_seconds".
pub const CPU_SPLIT: &str = env!("VICTIM_CPU_SPLIT");
/// `cpu_split.c` with `-fcf-protection=full`: functions start with `endbr64`.
pub const CPU_SPLIT_CET: &str = env!("VICTIM_CPU_SPLIT_CET");
/// `cpu_split.c` built `-no-pie`: loaded at its link address.
pub const CPU_SPLIT_NOPIE: &str = env!("VICTIM_CPU_SPLIT_NOPIE");
/// `cpu_split.c` with frame pointers (`-fno-omit-frame-pointer`).
pub const CPU_SPLIT_FP: &str = env!("VICTIM_CPU_SPLIT_FP");
/// `cpu_lib.c`: `cpuhot_leaf`, three frames deep in [`LIBCPUHOT`], 70% ("lib_seconds"); its
/// own `exe_callback`, called back by the library, 30% ("callback_seconds").
pub const CPU_LIB: &str = env!("VICTIM_CPU_LIB");
/// `libcpuhot.so` (`libcpuhot.c`), the library [`CPU_LIB`] is linked to, found through its
/// rpath.
pub const LIBCPUHOT: &str = env!("VICTIM_LIBCPUHOT");
/// `cpu_dlopen.c` `[--wait] [MS [LIB]]`: loads [`LIBCPUDL`] (or LIB) once it runs, and prints
/// "dlopened"; `cpudl_leaf` in it 70% ("dl_seconds"), its own `exe_leaf` 30% ("exe_seconds").
pub const CPU_DLOPEN: &str = env!("VICTIM_CPU_DLOPEN");
/// `libcpudl.so` (`libcpudl.c`), next to [`CPU_DLOPEN`]: the library it loads unless told
/// another.
pub const LIBCPUDL: &str = env!("VICTIM_LIBCPUDL");
/// `cpu_signal.c`: a SIGUSR1 handler's `handler_leaf` 70% ("handler_seconds"), under the signal
/// frame and `__restore_rt`; `outside_leaf` 30% ("outside_seconds"); "signals N", one a cycle.
pub const CPU_SIGNAL: &str = env!("VICTIM_CPU_SIGNAL");

/// `victims/cpu_busy.py` `[--wait] [MS]`: Python's main thread busy in `outer` -> `inner` for
/// MS ms of wall time (default 2000); prints "cycles N" and "busy_seconds S" (its CPU time).
pub const CPU_PY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/victims/cpu_busy.py");

/// The python family's CPU victim: `hot` under `outer` -> `middle`, `cold` under `outer`.
pub const PY_SPLIT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/victims/py_split.py");

/// The python family's exception victim: a KeyError raised and caught N times at one line.
pub const PY_RAISE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/victims/py_raise.py");

/// The python family's allocation victim: a list of objects grown at one line.
pub const PY_GROW: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/victims/py_grow.py");

/// The line of `file` that holds `marker` (1-based), as the interpreter numbers it.
pub fn line_of(file: &str, marker: &str) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_else(|e| panic!("{file}: {e}"));
    text.lines()
        .position(|l| l.contains(marker))
        .unwrap_or_else(|| panic!("no {marker} in {file}")) as u64
        + 1
}

/// `src/bin/victim_cpu_rust.rs`, the cpu family's Rust victim, built by [`cpu_rust`].
pub const CPU_RUST_SOURCE: &str =
    concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/victim_cpu_rust.rs");

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

/// Builds `victim_cpu_rust` into `dir` without frame pointers, optimized, with debug
/// information (Rust's own library, prebuilt, has no frame pointers either), and returns its
/// path: `victim_cpu_rust [--wait] [MS]` splits its worker's CPU time 70/30 between
/// `victim_cpu_rust::Hot<T>::spin` ("deep_seconds") and `<victim_cpu_rust::Warm as
/// victim_cpu_rust::Spin>::spin` ("shallow_seconds").
pub fn cpu_rust(dir: &Path) -> PathBuf {
    let exe = dir.join("victim_cpu_rust");
    let flags = ["-C", "opt-level=2", "-C", "force-frame-pointers=no", "-g"];
    rustc(CPU_RUST_SOURCE, &exe, &flags);
    exe
}
