//! Installs what the eBPF build needs, idempotently, and fast when everything is there:
//! - the nightly toolchain with its `rust-src` component (for `-Z build-std=core`);
//! - bpf-linker, built from crates.io against the LLVM that the nightly toolchain ships
//!   (`lib/libLLVM.so.<version>-rust-*-nightly` exports the LLVM C API and the BPF target).

use std::{fs, path::PathBuf, process::Command};

use anyhow::{Context as _, bail};

/// bpf-linker's LLVM feature must match the nightly toolchain's LLVM major version.
const BPF_LINKER_VERSION: &str = "0.13.0";

pub fn ensure() -> anyhow::Result<()> {
    ensure_nightly()?;
    ensure_rust_src()?;
    ensure_bpf_linker()
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .with_context(|| format!("failed to run {shown}"))?;
    if !out.status.success() {
        bail!(
            "{shown} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ensure_nightly() -> anyhow::Result<()> {
    let toolchains = output(Command::new("rustup").args(["toolchain", "list"]))?;
    if toolchains.lines().any(|l| l.starts_with("nightly")) {
        return Ok(());
    }
    eprintln!("xtask: installing the nightly toolchain");
    crate::status({
        let mut c = Command::new("rustup");
        c.args(["toolchain", "install", "nightly", "--profile", "minimal"]);
        c
    })
}

fn nightly_sysroot() -> anyhow::Result<PathBuf> {
    let sysroot =
        output(Command::new("rustup").args(["run", "nightly", "rustc", "--print", "sysroot"]))?;
    Ok(PathBuf::from(sysroot.trim()))
}

fn ensure_rust_src() -> anyhow::Result<()> {
    if nightly_sysroot()?
        .join("lib/rustlib/src/rust/library/core")
        .is_dir()
    {
        return Ok(());
    }
    eprintln!("xtask: adding rust-src to the nightly toolchain");
    crate::status({
        let mut c = Command::new("rustup");
        c.args(["component", "add", "rust-src", "--toolchain", "nightly"]);
        c
    })
}

fn cargo_home() -> PathBuf {
    std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cargo")
        })
}

/// The nightly toolchain's LLVM shared library and its major version.
fn nightly_llvm() -> anyhow::Result<(PathBuf, String)> {
    let lib = nightly_sysroot()?.join("lib");
    for entry in fs::read_dir(&lib).with_context(|| format!("failed to read {}", lib.display()))? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if let Some(rest) = name.strip_prefix("libLLVM.so.") {
            let major = rest.split('.').next().unwrap_or_default().to_string();
            return Ok((lib.join(&name), major));
        }
    }
    bail!(
        "the nightly toolchain ships no libLLVM.so.* in {}",
        lib.display()
    )
}

fn bpf_linker_works() -> bool {
    Command::new("bpf-linker")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn ensure_bpf_linker() -> anyhow::Result<()> {
    if bpf_linker_works() {
        return Ok(());
    }
    let (llvm, major) = nightly_llvm()?;
    // A folder whose lib/ holds the library under both names the build looks for; bpf-linker
    // gets an rpath to it, so it must outlive this build: keep it beside cargo's own files.
    let prefix = cargo_home().join("bpf-linker-llvm");
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib)?;
    let file_name = llvm.file_name().context("bad LLVM path")?.to_owned();
    for name in [std::ffi::OsString::from("libLLVM.so"), file_name] {
        let link = lib.join(name);
        let _ = fs::remove_file(&link);
        std::os::unix::fs::symlink(&llvm, &link)
            .with_context(|| format!("failed to link {}", link.display()))?;
    }
    eprintln!(
        "xtask: building bpf-linker {BPF_LINKER_VERSION} against the nightly LLVM {major} (about a minute)"
    );
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "install",
        "bpf-linker",
        "--locked",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        &format!("llvm-{major}"),
    ])
    .env("LLVM_PREFIX", &prefix)
    // Build it outside this workspace so its config (the bpf linker wrapper) does not apply.
    .current_dir(std::env::temp_dir());
    crate::status(cmd)?;
    if !bpf_linker_works() {
        bail!(
            "bpf-linker was installed but does not run; is {} on PATH?",
            cargo_home().join("bin").display()
        );
    }
    Ok(())
}
