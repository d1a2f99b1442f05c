//! Compiles the C victims in `victims/` with the system C compiler into OUT_DIR and hands their
//! paths to the tests as `VICTIM_<NAME>` environment variables (blazesym's `dev/build.rs` does
//! the same for its test programs): no victim binary is ever committed.

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

/// What distributions build with: every function starts with `endbr64`.
const CET: &str = "-fcf-protection=full";

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let src = Path::new("victims");
    println!("cargo:rerun-if-changed=victims");
    println!("cargo:rerun-if-env-changed=CC");

    let victim = src.join("victim.c");
    // The three builds of one source put the entry probe on `endbr64`'s successor (CET),
    // on the symbol address (no CET), and on an unoptimized prologue.
    build("C", &victim, &out.join("victim"), &["-O2", CET, "-pthread"]);
    let no_cet = ["-O2", "-fcf-protection=none", "-pthread"];
    build("C_NOCET", &victim, &out.join("victim_nocet"), &no_cet);
    build(
        "C_O0",
        &victim,
        &out.join("victim_o0"),
        &["-O0", CET, "-pthread"],
    );

    // The same, marked as Go code (its build-information section): never given return probes.
    build(
        "C_GO",
        &victim,
        &out.join("victim_go"),
        &["-O2", CET, "-pthread", "-DGO_BUILDINFO"],
    );

    // A shared library, found at run time through the executable's rpath.
    let lib = out.join("libvictim.so");
    compile(
        &src.join("libvictim.c"),
        &lib,
        &["-O2", CET, "-shared", "-fPIC"],
    );
    let link = [
        "-O2".to_string(),
        CET.to_string(),
        lib.display().to_string(),
        format!("-Wl,-rpath,{}", out.display()),
    ];
    let link: Vec<&str> = link.iter().map(String::as_str).collect();
    build(
        "LIB",
        &src.join("victim_lib.c"),
        &out.join("victim_lib"),
        &link,
    );

    // The errors family's victim: fails in exactly known ways, and says how many times.
    build(
        "ERR",
        &src.join("err_victim.c"),
        &out.join("err_victim"),
        &["-O2", "-pthread"],
    );

    // The memory family's victims, `victims/mem_*.c` as `VICTIM_MEM_<NAME>`: with frame
    // pointers, so that their allocation stacks walk.
    let mem = ["-O1", "-fno-omit-frame-pointer", "-pthread"];
    build_family(src, &out, "mem", &mem);

    // The threads family's victims, `victims/threads_*.c` as `VICTIM_THREADS_<NAME>`: with
    // frame pointers, so that blocked and lock stacks walk, and debug information, so that the
    // report can name their static locks and lines.
    let threads = ["-O1", "-fno-omit-frame-pointer", "-pthread", "-g"];
    build_family(src, &out, "threads", &threads);

    cpu(src, &out);
    cuda(src, &out);
}

/// The gpu family's stand-ins for NVIDIA's CUDA libraries, `victims/cuda/libcudart_stub.c` and
/// `victims/cuda/libcuda_stub.c`, built into `cuda/` as `libcudart.so.12` and `libcuda.so.1`
/// under the real libraries' sonames (exported as `VICTIM_LIBCUDART`, `VICTIM_LIBCUDA`, and
/// their directory as `VICTIM_CUDA_DIR`), and their victim, `victims/gpu_victim.c` as
/// `VICTIM_GPU`: linked to the runtime, found at run time through its rpath, and loading the
/// driver from `cuda/` beside itself with dlopen(3). With frame pointers, so that the stacks of
/// the probed calls walk.
fn cuda(src: &Path, out: &Path) {
    let dir = out.join("cuda");
    std::fs::create_dir_all(&dir).expect("OUT_DIR is writable");
    let library = ["-O2", CET, "-fno-omit-frame-pointer", "-shared", "-fPIC"];
    let cudart = dir.join("libcudart.so.12");
    let soname = ["-Wl,-soname,libcudart.so.12"];
    let flags = [&library[..], &soname].concat();
    let stub = src.join("cuda").join("libcudart_stub.c");
    build("LIBCUDART", &stub, &cudart, &flags);
    let soname = ["-Wl,-soname,libcuda.so.1"];
    let flags = [&library[..], &soname].concat();
    let stub = src.join("cuda").join("libcuda_stub.c");
    build("LIBCUDA", &stub, &dir.join("libcuda.so.1"), &flags);
    println!("cargo:rustc-env=VICTIM_CUDA_DIR={}", dir.display());

    // The victims: with frame pointers and debug information, and dlopen.
    let victim = [
        "-O1",
        "-g",
        "-fno-omit-frame-pointer",
        CET,
        "-pthread",
        "-ldl",
    ];
    let cudart = cudart.to_str().expect("OUT_DIR is UTF-8");
    let rpath = format!("-Wl,-rpath,{}", dir.display());
    let flags = [&victim[..], &[cudart, &rpath]].concat();
    build(
        "GPU",
        &src.join("gpu_victim.c"),
        &out.join("gpu_victim"),
        &flags,
    );
    // The same with the runtime linked into the executable (as nvcc links `cudart_static` by
    // default): no libcudart to find, the executable defines `cudaMalloc` itself.
    let stub = src.join("cuda").join("libcudart_stub.c");
    let stub = stub.to_str().expect("the sources' path is UTF-8");
    let flags = [&victim[..], &[stub]].concat();
    build(
        "GPU_STATIC",
        &src.join("gpu_victim.c"),
        &out.join("gpu_victim_static"),
        &flags,
    );
}

/// The cpu family's victims, `victims/cpu_*.c` (see `victims/cpu_common.h`), and their
/// libraries: with debug information, and without frame pointers but in the one build named for
/// them, so that their stacks walk only from `.eh_frame`.
fn cpu(src: &Path, out: &Path) {
    let no_fp = "-fomit-frame-pointer";
    let library = ["-O2", "-g", no_fp, "-shared", "-fPIC"];
    let hot = out.join("libcpuhot.so");
    build("LIBCPUHOT", &src.join("libcpuhot.c"), &hot, &library);
    let dl = out.join("libcpudl.so");
    build("LIBCPUDL", &src.join("libcpudl.c"), &dl, &library);
    let hot = hot.to_str().expect("OUT_DIR is UTF-8");
    let rpath = format!("-Wl,-rpath,{}", out.display());

    // Each into `<name>` in lower case, built with `-O2 -g -pthread` and these.
    let executables: [(&str, &str, &[&str]); 7] = [
        ("CPU_SPLIT", "cpu_split.c", &[no_fp]),
        ("CPU_SPLIT_CET", "cpu_split.c", &[no_fp, CET]),
        // Position-dependent: loaded at its link address, not at a base chosen at run time.
        ("CPU_SPLIT_NOPIE", "cpu_split.c", &[no_fp, "-no-pie"]),
        ("CPU_SPLIT_FP", "cpu_split.c", &["-fno-omit-frame-pointer"]),
        // Linked to libcpuhot.so, found at run time through the executable's rpath.
        ("CPU_LIB", "cpu_lib.c", &[no_fp, hot, &rpath]),
        // Loads libcpudl.so, from its own directory, with dlopen(3) once it runs.
        ("CPU_DLOPEN", "cpu_dlopen.c", &[no_fp, "-ldl"]),
        ("CPU_SIGNAL", "cpu_signal.c", &[no_fp]),
    ];
    for (name, source, extra) in executables {
        let flags = [&["-O2", "-g", "-pthread"], extra].concat();
        let output = out.join(name.to_ascii_lowercase());
        build(name, &src.join(source), &output, &flags);
    }
}

/// Compiles every `victims/<prefix>_<name>.c` with `flags` into `<prefix>_<name>`, exported as
/// `VICTIM_<PREFIX>_<NAME>`: a new victim of a family needs no line here.
fn build_family(src: &Path, out: &Path, prefix: &str, flags: &[&str]) {
    let lead = format!("{prefix}_");
    for entry in std::fs::read_dir(src).expect("victims/ is readable") {
        let path = entry.expect("victims/ is readable").path();
        let stem = path
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or_default();
        if let Some(name) = stem.strip_prefix(&lead)
            && path.extension().is_some_and(|e| e == "c")
        {
            let var = format!("{}_{}", prefix, name).to_ascii_uppercase();
            build(&var, &path, &out.join(stem), flags);
        }
    }
}

/// Compiles one victim (or a victim's library) and exports its path as `VICTIM_<name>`.
fn build(name: &str, source: &Path, output: &Path, flags: &[&str]) {
    compile(source, output, flags);
    println!("cargo:rustc-env=VICTIM_{name}={}", output.display());
}

fn compile(source: &Path, output: &Path, flags: &[&str]) {
    let cc = env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let status = Command::new(&cc)
        .args(["-Wall", "-Wextra", "-o"])
        .arg(output)
        .arg(source)
        // After the source, so a library named here resolves its references.
        .args(flags)
        .status()
        .unwrap_or_else(|e| panic!("failed to run the C compiler `{cc}`: {e}"));
    assert!(
        status.success(),
        "failed to compile {} with `{cc}` ({status})",
        source.display()
    );
}
