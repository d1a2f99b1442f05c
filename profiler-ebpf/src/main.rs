//! Kernel programs of the profiler. One probe family per module; every program checks that the
//! current task belongs to the target before it does anything else.
#![no_std]
#![no_main]
// Atomic read-modify-write on map values (the bpf target's core has no CAS atomics).
#![feature(core_intrinsics)]
#![expect(internal_features, reason = "atomic intrinsics, see above")]

mod common;
mod cpu;
mod errors;
mod functions;
mod gpu;
mod interrupted;
mod memory;
mod process;
mod python;
mod threads;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // SAFETY: the verifier proves that eBPF programs cannot panic; this is never reached.
    unsafe { core::hint::unreachable_unchecked() }
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
