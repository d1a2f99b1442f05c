// Empty on purpose: the programs live in the `profiler` binary target (src/main.rs). This library
// target exists so that profiler-user can list the crate under [build-dependencies], which makes
// cargo rebuild the eBPF object when it changes.
#![no_std]
