//! Installs what the eBPF build needs, idempotently, and fast when everything is there:
//! - the nightly toolchain with its `rust-src` component (for `-Z build-std=core`);
//! - bpf-linker, built from crates.io against the LLVM that the nightly toolchain ships
//!   (`lib/libLLVM.so.<version>-rust-*-nightly` exports the LLVM C API and the BPF target).
//!
//! And, for `cargo xtask test` only, what the tests use (jemalloc, tcmalloc, a static C library,
//! python3, setpriv, protoc, node, chromium, tmux), from Debian packages: see [`ensure_test_needs`].

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

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

/// Where the integration tests look for something they use.
enum Look {
    /// A shared or static library in the system library folders (memory tests' `system_library`).
    Library(&'static str),
    /// Any of these programs, on PATH or in /usr/bin or /usr/local/bin (the errors tests'
    /// python3 lookup).
    Program(&'static [&'static str]),
    /// A file at this path.
    File(&'static str),
}

impl Look {
    fn found(&self) -> bool {
        match self {
            Look::Library(name) => [
                "/lib/x86_64-linux-gnu",
                "/usr/lib/x86_64-linux-gnu",
                "/usr/lib64",
            ]
            .iter()
            .any(|dir| Path::new(dir).join(name).exists()),
            Look::File(path) => Path::new(path).exists(),
            Look::Program(names) => {
                let path = std::env::var_os("PATH").unwrap_or_default();
                let dirs: Vec<PathBuf> = std::env::split_paths(&path)
                    .chain(["/usr/bin".into(), "/usr/local/bin".into()])
                    .collect();
                names
                    .iter()
                    .any(|name| dirs.iter().any(|dir| dir.join(name).is_file()))
            }
        }
    }
}

/// Something the tests use beyond the build: without it the integration tests fail under
/// `PROFILER_TESTS_STRICT=1` (they would skip otherwise), and the unit tests that read the
/// profile files with it (python3, protoc) fail always.
struct TestNeed {
    /// What it is, and which tests use it.
    what: &'static str,
    look: Look,
    /// The Debian package that provides it.
    package: &'static str,
}

const TEST_NEEDS: [TestNeed; 10] = [
    TestNeed {
        what: "jemalloc (memory tests, preloaded)",
        look: Look::Library("libjemalloc.so.2"),
        package: "libjemalloc2",
    },
    TestNeed {
        what: "tcmalloc (memory tests, preloaded)",
        look: Look::Library("libtcmalloc_minimal.so.4"),
        package: "libtcmalloc-minimal4",
    },
    TestNeed {
        what: "a static C library (memory tests, gcc -static)",
        look: Look::Library("libc.a"),
        package: "libc6-dev",
    },
    TestNeed {
        what: "python3 (errors tests' scripts; the cpu profile tests read the SVG and speedscope files)",
        look: Look::Program(&["python3"]),
        package: "python3",
    },
    TestNeed {
        what: "setpriv or runuser (bad_input's not_root)",
        look: Look::Program(&["setpriv", "runuser"]),
        package: "util-linux",
    },
    TestNeed {
        what: "protoc (the cpu profile tests decode the pprof file with it)",
        look: Look::Program(&["protoc"]),
        package: "protobuf-compiler",
    },
    TestNeed {
        what: "node (the cpu family's test of JIT code, which has no unwind table)",
        look: Look::Program(&["node"]),
        package: "nodejs",
    },
    TestNeed {
        what: "CPython 3.11's internal headers (the python family's offsets are checked against \
               them)",
        look: Look::File("/usr/include/python3.11/internal/pycore_frame.h"),
        package: "python3.11-dev",
    },
    TestNeed {
        what: "chromium (the html test opens the HTML report in it, headless)",
        look: Look::File("/usr/bin/chromium"),
        package: "chromium",
    },
    TestNeed {
        what: "tmux (the live view's test drives `profiler top` in a tmux pane)",
        look: Look::Program(&["tmux"]),
        package: "tmux",
    },
];

/// Installs, with apt-get, the Debian packages of what the integration tests use and this machine
/// lacks, so that a strict test run fails only for what no package gives (root, uprobes, BTF).
/// Looks before it installs: quick, and a no-op when everything is there.
pub(crate) fn ensure_test_needs() -> anyhow::Result<()> {
    let missing: Vec<&TestNeed> = TEST_NEEDS.iter().filter(|n| !n.look.found()).collect();
    if missing.is_empty() {
        return Ok(());
    }
    let packages: Vec<&str> = missing.iter().map(|n| n.package).collect();
    let wanted = missing
        .iter()
        .map(|n| format!("{} from {}", n.what, n.package))
        .collect::<Vec<_>>()
        .join(", ");
    if output(Command::new("apt-get").arg("--version")).is_err() {
        bail!(
            "the integration tests need {wanted}, and there is no apt-get here to install them: \
             install them by hand"
        );
    }
    // A fresh image may have no package lists: read them once when apt knows nothing of one.
    let unknown = packages
        .iter()
        .any(|p| !apt_has_candidate(p).unwrap_or(false));
    if unknown {
        eprintln!("xtask: apt-get update (the package lists lack some of {packages:?})");
        crate::status(apt_get(&["update"]))
            .context("failed to read the package lists the test packages come from")?;
    }
    eprintln!("xtask: installing what the integration tests need: {wanted}");
    let mut install = vec!["install", "-y", "--no-install-recommends"];
    install.extend_from_slice(&packages);
    crate::status(apt_get(&install)).with_context(|| {
        format!("failed to install {packages:?}, which the integration tests need")
    })?;
    let still: Vec<&str> = missing
        .iter()
        .filter(|n| !n.look.found())
        .map(|n| n.what)
        .collect();
    if !still.is_empty() {
        bail!("installed {packages:?}, and the tests would still lack: {still:?}");
    }
    Ok(())
}

fn apt_get(args: &[&str]) -> Command {
    let mut cmd = Command::new("apt-get");
    cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
    cmd
}

/// Whether apt can install `package` (its policy names a candidate version).
fn apt_has_candidate(package: &str) -> anyhow::Result<bool> {
    let policy = output(Command::new("apt-cache").args(["policy", package]))?;
    Ok(policy
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Candidate:"))
        .any(|v| v.trim() != "(none)"))
}
