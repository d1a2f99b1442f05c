//! Builds the kernel programs (profiler-ebpf) for the bpf target and puts the object in OUT_DIR,
//! where `probes` embeds it. The object is always built from source; none is committed.

use anyhow::anyhow;
use aya_build::{Package, Toolchain};

fn main() -> anyhow::Result<()> {
    let has_linker = std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| dir.join("bpf-linker").is_file())
    });
    if !has_linker {
        return Err(anyhow!(
            "bpf-linker is not installed: run `cargo xtask setup` first (it installs the eBPF toolchain)"
        ));
    }
    let root_dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../profiler-ebpf");
    aya_build::build_ebpf(
        [Package {
            name: "profiler-ebpf",
            root_dir,
            ..Default::default()
        }],
        Toolchain::Nightly,
    )
}
