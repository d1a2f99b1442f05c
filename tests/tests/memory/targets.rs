//! Targets whose allocator is found elsewhere or not at all: a full block map, a statically
//! linked C library, an allocator in Go code, no C library, jemalloc and tcmalloc preloaded
//! (in `run` and found in the mappings on `attach`); and the leak verdict's thresholds.

use super::*;

#[test]
fn full_block_map_is_reported_and_the_report_still_written() {
    require_root!();
    let dir = TempDir::new();
    // Room for 100 outstanding blocks; the victim leaks 300.
    let env = [("PROFILER_MEMORY_MAX_BLOCKS", "100")];
    let report = run_with(&dir, &[VICTIM, "leak", "300", "16", "0", "1"], &env);
    let memory = Memory::of(&report);
    let lost = report
        .at("/overhead/lost/memory_alloc_map_full")
        .as_u64()
        .unwrap();
    assert!(lost >= 200, "lost {lost}");
    assert_eq!(memory.u64("/allocations/untracked"), lost);
    let leak = memory.function("leak_blocks");
    assert_eq!(leak.allocations, 300, "every allocation is still counted");
    assert!(leak.outstanding <= 100);
    let warnings = report.at("/warnings").to_string();
    assert!(
        warnings.contains("outstanding-allocation map was full (100 blocks)"),
        "{warnings}"
    );
}

/// Compiles `source` with `gcc FLAGS` into `output`; false when this machine cannot (no static
/// C library, say).
fn gcc(source: &Path, output: &Path, flags: &[&str]) -> bool {
    Command::new("gcc")
        .args(flags)
        .arg("-o")
        .arg(output)
        .arg(source)
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn statically_linked_glibc_is_found_in_the_executable() {
    require_root!();
    let dir = TempDir::new();
    let exe = dir.path().join("mem_victim_static");
    let flags = ["-static", "-O1", "-fno-omit-frame-pointer", "-pthread"];
    if !gcc(Path::new(VICTIM_SOURCE), &exe, &flags) {
        skip!("a static C library (gcc -static failed)");
    }
    let report = run(
        &dir,
        &[exe.to_str().unwrap(), "leak", "10", "48", "5", "20"],
    );
    let memory = Memory::of(&report);
    assert_eq!(memory.at("/allocator/name"), "glibc");
    assert_eq!(memory.at("/allocator/module"), "mem_victim_static");
    let leak = memory.leak_site("leak_blocks");
    assert_eq!(
        (leak["bytes"].as_u64(), leak["count"].as_u64()),
        (Some(480), Some(10))
    );
    assert_eq!(memory.function("tidy"), Totals::blocks(50, 64, 50));
}

/// An allocator in Go code (a file with Go's build-information section) gets no return probe,
/// which would crash a Go program: the memory section says why it has no allocator.
#[test]
fn an_allocator_in_go_code_gets_no_return_probe() {
    require_root!();
    let dir = TempDir::new();
    let marker = dir.path().join("go_buildinfo.c");
    std::fs::write(
        &marker,
        "__attribute__((used, section(\".go.buildinfo\"))) static const char info[32] = \
         \"\\xff Go buildinf:\";\n",
    )
    .unwrap();
    let exe = dir.path().join("mem_victim_go");
    let flags = ["-static", "-O1", "-pthread", marker.to_str().unwrap()];
    if !gcc(Path::new(VICTIM_SOURCE), &exe, &flags) {
        skip!("a static C library (gcc -static failed)");
    }
    let report = run(&dir, &[exe.to_str().unwrap(), "calloc"]);
    let memory = Memory::of(&report);
    assert!(memory.at("/allocator").is_null());
    let why = memory.at("/no_allocator").as_str().unwrap();
    assert!(
        why.contains("mem_victim_go, which is Go code") && why.contains("no return probe"),
        "{why}"
    );
}

#[test]
fn no_allocator_is_explained_and_the_report_still_written() {
    require_root!();
    let dir = TempDir::new();
    // No C library at all: sleep 300 ms and exit with raw system calls.
    let source = dir.path().join("nolibc.c");
    std::fs::write(
        &source,
        "struct ts { long s, ns; };\n\
         void _start(void) {\n\
           struct ts t = {0, 300000000};\n\
           long r;\n\
           __asm__ volatile(\"syscall\" : \"=a\"(r) : \"a\"(35), \"D\"(&t), \"S\"(0) \
             : \"rcx\", \"r11\", \"memory\");\n\
           __asm__ volatile(\"syscall\" :: \"a\"(60), \"D\"(0) : \"rcx\", \"r11\");\n\
           for (;;) {}\n\
         }\n",
    )
    .unwrap();
    let exe = dir.path().join("nolibc");
    assert!(
        gcc(&source, &exe, &["-static", "-nostdlib", "-O1"]),
        "gcc failed"
    );
    let report = run(&dir, &[exe.to_str().unwrap()]);
    let memory = Memory::of(&report);
    assert!(memory.at("/allocator").is_null());
    let why = memory.at("/no_allocator").as_str().unwrap();
    assert!(
        why.contains("none of malloc") && why.contains("nolibc"),
        "{why}"
    );
    let warnings = report.at("/warnings").to_string();
    assert!(warnings.contains("no allocator found"), "{warnings}");

    // Statically linked and stripped: nothing to find by name.
    let stripped = dir.path().join("stripped");
    if gcc(
        Path::new(VICTIM_SOURCE),
        &stripped,
        &["-static", "-s", "-O1"],
    ) {
        let report = run(&dir, &[stripped.to_str().unwrap(), "calloc"]);
        let why = Memory::of(&report).at("/no_allocator").to_string();
        assert!(why.contains("statically linked and stripped"), "{why}");
    } else {
        profiler_tests::skip("a static C library, for the stripped case (gcc -static failed)");
    }
}

#[test]
fn leak_verdict_thresholds_are_options() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    // The same leak as above, judged against a growth threshold it cannot reach.
    let all = [
        "run",
        "--level",
        "memory",
        "--memory",
        "exact",
        "--leak-min-growth",
        "1000000",
        "--json",
        json.to_str().unwrap(),
        "--",
        VICTIM,
        "leak",
        "25",
        "48",
        "40",
        "40",
    ];
    profile(all).expect_success();
    let report = Report::read(&json);
    let memory = Memory::of(&report);
    let leak = memory.leak_site("leak_blocks");
    assert_eq!(leak["trend"], "flat", "{leak:#}");
    assert_eq!(memory.at("/memory_leak_detection/detected"), false);
    assert_eq!(
        memory.at("/memory_leak_detection/thresholds/min_growth"),
        1_000_000.0
    );
}

/// `lib` in the system library directories (where `cargo xtask test` checks for it too), or why
/// it cannot be used.
fn system_library(lib: &str) -> Result<String, String> {
    [
        "/lib/x86_64-linux-gnu",
        "/usr/lib/x86_64-linux-gnu",
        "/usr/lib64",
    ]
    .iter()
    .map(|d| Path::new(d).join(lib))
    .find(|p| p.exists())
    .map(|p| p.display().to_string())
    .ok_or_else(|| format!("{lib} (not installed)"))
}

#[test]
fn preloaded_jemalloc_and_tcmalloc_replace_glibc() {
    require_root!();
    for (lib, name) in [
        ("libjemalloc.so.2", "jemalloc"),
        ("libtcmalloc_minimal.so.4", "tcmalloc"),
    ] {
        let path = match system_library(lib) {
            Ok(path) => path,
            Err(why) => {
                // The other allocator may still be there: only this one is left out.
                profiler_tests::skip(why);
                continue;
            }
        };
        let dir = TempDir::new();
        // `run`: the preload is in the environment the target inherits.
        let env = [("LD_PRELOAD", path.as_str())];
        let report = run_with(&dir, &[VICTIM, "leak", "20", "48", "40", "40"], &env);
        let memory = Memory::of(&report);
        assert_eq!(memory.at("/allocator/name"), name);
        assert_eq!(memory.at("/allocator/module"), lib);
        let leak = memory.leak_site("leak_blocks");
        assert_eq!(
            (leak["bytes"].as_u64(), leak["count"].as_u64()),
            (Some(960), Some(20))
        );
        assert_eq!(memory.function("tidy"), Totals::blocks(800, 64, 800));
        assert!(memory.allocator_calls("malloc") >= 820);
        assert_nothing_lost(&report);
    }
}

#[test]
fn attach_finds_a_preloaded_allocator_in_the_mappings() {
    require_root!();
    let path = match system_library("libjemalloc.so.2") {
        Ok(path) => path,
        Err(why) => skip!("{why}"),
    };
    let dir = TempDir::new();
    let json = dir.json();
    // env(1) execs the victim in its own process: the pid stays the same.
    let preload = format!("LD_PRELOAD={path}");
    let args = [
        preload.as_str(),
        VICTIM,
        "--wait",
        "hold",
        "100",
        "10",
        "48",
    ];
    let mut victim = Victim::start("env", args);
    victim.expect_line("ready");
    let profiler = attach(
        &victim,
        &[EXACT.as_slice(), &["--json", json.to_str().unwrap()]].concat(),
    );
    victim.proceed();
    victim.expect_line("done");
    assert!(victim.release().success());
    profiler.finish().expect_success();
    let report = Report::read(&json);
    let memory = Memory::of(&report);
    assert_eq!(memory.at("/allocator/name"), "jemalloc");
    assert_eq!(memory.u64("/allocations/unknown_frees"), 100);
    assert_eq!(memory.function("leak_blocks"), Totals::blocks(10, 48, 0));
}
