//! What the Rust victims built by cargo (`src/bin/victim_rust.rs`, `victim_threads_rust.rs`) share:
//! their side of the harness's handshake. (`victim_mem_rust.rs` is compiled alone by rustc, with
//! its own copy.)

use std::io::{Read, Write};

/// Waits for one byte on stdin (the harness's "go"); end of file releases the victim as well.
pub fn wait_byte() {
    let mut byte = [0u8; 1];
    let _ = std::io::stdin().read(&mut byte);
}

/// Prints `line` and flushes it at once, so the harness sees it while the victim runs on.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").expect("stdout");
    out.flush().expect("stdout");
}
