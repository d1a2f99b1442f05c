//! The memory family on real processes: exact outstanding bytes and blocks per allocation site
//! for every allocator entry point, across threads, in a Rust program, on attach to a process
//! that already holds memory, the reachability verdict (definitely lost, indirectly lost,
//! reachable) in `run` and `attach` mode with growth as its second opinion, a scan interrupted
//! by the profiler's death, a target another tracer holds, targets whose allocator cannot be
//! probed, and what the calls of each traced function allocate and free.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use profiler_tests::{
    FuncMemory, Report, TempDir, Victim, attach, attach_through_done,
    live::{attach_live, next_snapshot},
    process::{Outcome, Profiler, profile},
    require_root, run_reported, skip, victims,
};
use serde_json::Value;

#[path = "memory/reach.rs"]
mod reach;
#[path = "memory/targets.rs"]
mod targets;

/// `tests/victims/mem_victim.c`, built by build.rs.
const VICTIM: &str = env!("VICTIM_MEM_VICTIM");
const VICTIM_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/victims/mem_victim.c");
const RUST_SOURCE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src/bin/victim_mem_rust.rs");

/// The memory level with every block tracked.
const EXACT: [&str; 4] = ["--level", "memory", "--memory", "exact"];

/// `profiler run --level memory --memory exact --json <dir>/report.json -- CMD...` (see
/// [`run_reported`]); its report.
fn run(dir: &TempDir, cmd: &[&str]) -> Report {
    run_with(dir, cmd, &[])
}

/// As [`run`], with `env` added to the profiler's environment.
fn run_with(dir: &TempDir, cmd: &[&str], env: &[(&str, &str)]) -> Report {
    run_reported(dir, &EXACT, cmd, env).1
}

/// The `memory` section, looked at through accessors that panic with context.
struct Memory<'a>(&'a Value);

impl<'a> Memory<'a> {
    fn of(report: &'a Report) -> Self {
        Self(report.at("/memory"))
    }

    fn at(&self, pointer: &str) -> &'a Value {
        self.0
            .pointer(pointer)
            .unwrap_or_else(|| panic!("the memory section has no {pointer}:\n{:#}", self.0))
    }

    fn u64(&self, pointer: &str) -> u64 {
        let v = self.at(pointer);
        v.as_u64()
            .unwrap_or_else(|| panic!("{pointer} is not a count: {v}"))
    }

    fn list(&self, pointer: &str) -> &'a Vec<Value> {
        self.at(pointer)
            .as_array()
            .unwrap_or_else(|| panic!("{pointer} is not an array"))
    }

    /// The leak sites charged to `function`.
    fn leak_sites(&self, function: &str) -> Vec<&'a Value> {
        self.list("/memory_leak_detection/sites")
            .iter()
            .filter(|s| s["function"] == function)
            .collect()
    }

    /// The one leak site charged to `function`.
    fn leak_site(&self, function: &str) -> &'a Value {
        let sites = self.leak_sites(function);
        let [site] = sites[..] else {
            panic!(
                "expected one leak site of {function}, found {}:\n{:#}",
                sites.len(),
                self.at("/memory_leak_detection")
            );
        };
        site
    }

    /// The per-function totals of `function`.
    fn function(&self, function: &str) -> Totals {
        let entry = self
            .list("/allocations/by_function")
            .iter()
            .find(|f| f["function"] == function)
            .unwrap_or_else(|| {
                panic!(
                    "no allocations charged to {function}:\n{:#}",
                    self.at("/allocations/by_function")
                )
            });
        Totals::of(entry)
    }

    /// The sites whose allocator call is in `function`, as totals.
    fn sites_in(&self, function: &str) -> Vec<Totals> {
        self.list("/allocations/top_sites")
            .iter()
            .filter(|s| s["stack"][0]["function"] == function)
            .map(Totals::of)
            .collect()
    }

    fn allocator_calls(&self, name: &str) -> u64 {
        self.list("/allocator/functions")
            .iter()
            .find(|f| f["name"] == name)
            .and_then(|f| f["calls"].as_u64())
            .unwrap_or_else(|| panic!("no {name} in {:#}", self.at("/allocator")))
    }
}

/// Allocations, bytes, frees, freed bytes, outstanding blocks and bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Totals {
    allocations: u64,
    allocated_bytes: u64,
    frees: u64,
    freed_bytes: u64,
    outstanding: u64,
    outstanding_bytes: u64,
}

impl Totals {
    fn of(v: &Value) -> Self {
        let n = |k: &str| {
            v[k].as_u64()
                .unwrap_or_else(|| panic!("{k} is not a count in {v:#}"))
        };
        Self {
            allocations: n("allocations"),
            allocated_bytes: n("allocated_bytes"),
            frees: n("frees"),
            freed_bytes: n("freed_bytes"),
            outstanding: n("outstanding"),
            outstanding_bytes: n("outstanding_bytes"),
        }
    }

    /// `n` blocks of `size` bytes, `freed` of them released.
    fn blocks(n: u64, size: u64, freed: u64) -> Self {
        Self {
            allocations: n,
            allocated_bytes: n * size,
            frees: freed,
            freed_bytes: freed * size,
            outstanding: n - freed,
            outstanding_bytes: (n - freed) * size,
        }
    }
}

/// (bytes, blocks) of a tally object.
fn tally(v: &Value) -> (u64, u64) {
    let n = |k: &str| {
        v[k].as_u64()
            .unwrap_or_else(|| panic!("{k} is not a count in {v:#}"))
    };
    (n("bytes"), n("count"))
}

/// The last scan of a report's memory section.
fn last_scan<'a>(memory: &Memory<'a>) -> &'a Value {
    memory
        .list("/memory_leak_detection/scans")
        .last()
        .unwrap_or_else(|| panic!("no scan: {:#}", memory.at("/memory_leak_detection")))
}

/// The `reach` scenario's verdicts, exact: 100 blocks of 48 bytes with no pointer to them, 200
/// of 64 kept in a global array, and a 50-node list of 32-byte nodes whose head was dropped.
fn assert_reach_verdicts(memory: &Memory<'_>) {
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "reachability", "{d:#}");
    assert_eq!(d["detected"], true);
    let dropped = memory.leak_site("drop_blocks");
    assert_eq!(dropped["verdict"], "definitely_lost", "{dropped:#}");
    assert_eq!(tally(&dropped["definitely_lost"]), (4800, 100));
    assert_eq!(tally(&dropped["reachable"]), (0, 0));
    let kept = memory.leak_site("keep_blocks");
    assert_eq!(kept["verdict"], "reachable", "{kept:#}");
    assert_eq!(tally(&kept["reachable"]), (12800, 200));
    assert_eq!(tally(&kept["definitely_lost"]), (0, 0));
    let list = memory.leak_site("build_list");
    assert_eq!(list["verdict"], "definitely_lost", "{list:#}");
    assert_eq!(tally(&list["definitely_lost"]), (32, 1));
    assert_eq!(tally(&list["indirectly_lost"]), (49 * 32, 49));
    // Nothing else in the process is lost.
    assert_eq!(tally(&d["definitely_lost"]), (4800 + 32, 101), "{d:#}");
    assert_eq!(tally(&d["indirectly_lost"]), (49 * 32, 49));
    assert_eq!(d["leaked_bytes"].as_u64(), Some(4800 + 32 + 49 * 32));
    let scan = last_scan(memory);
    assert_eq!(scan["complete"], true, "{scan:#}");
    assert!(scan["bytes_scanned"].as_u64().unwrap() > scan["root_bytes"].as_u64().unwrap());
    assert!(scan["blocks"].as_u64().unwrap() >= 350, "{scan:#}");
    assert!(scan["pause"].as_f64().unwrap() > 0.0, "{scan:#}");
}

fn frames(site: &Value) -> Vec<&str> {
    site["stack"]
        .as_array()
        .expect("stack is an array")
        .iter()
        .map(|f| f["function"].as_str().unwrap_or("?"))
        .collect()
}

/// Nothing the kernel side recorded was lost.
fn assert_nothing_lost(report: &Report) {
    let lost = report.at("/overhead/lost");
    let memory_losses: Vec<&String> = lost
        .as_object()
        .expect("lost is an object")
        .keys()
        .filter(|k| k.starts_with("memory_"))
        .collect();
    assert!(memory_losses.is_empty(), "lost: {lost}");
}

#[test]
fn leak_site_holds_exactly_what_one_function_leaked() {
    require_root!();
    let dir = TempDir::new();
    // 25 rounds 40 ms apart: leak_blocks() leaks one 48-byte block, tidy() 40 blocks it frees.
    let report = run(&dir, &[VICTIM, "leak", "25", "48", "40", "40"]);
    let memory = Memory::of(&report);
    assert_eq!(memory.at("/allocator/name"), "glibc");
    assert_eq!(memory.at("/allocator/module"), "libc.so.6");

    let leak = memory.leak_site("leak_blocks");
    assert_eq!(
        (leak["bytes"].as_u64(), leak["count"].as_u64()),
        (Some(25 * 48), Some(25))
    );
    assert_eq!(leak["allocations"].as_u64(), Some(25));
    // Every block is kept in a global array: reachable, though the site still grows.
    assert_eq!(leak["verdict"], "reachable", "{leak:#}");
    assert_eq!(leak["trend"], "growing", "{leak:#}");
    assert_eq!(tally(&leak["reachable"]), (25 * 48, 25));
    assert!(
        frames(leak).starts_with(&["leak_blocks", "main"]),
        "{leak:#}"
    );
    assert!(leak["growth"].as_f64().unwrap() > 0.0);
    assert!(leak["oldest_age"].as_f64().unwrap() > 0.5, "{leak:#}");
    assert_eq!(memory.function("leak_blocks"), Totals::blocks(25, 48, 0));

    // Everything tidy() allocates, free_all() releases: no leak site, all freed.
    assert_eq!(
        memory.function("tidy"),
        Totals::blocks(25 * 40, 64, 25 * 40)
    );
    for function in ["tidy", "free_all"] {
        assert!(
            memory.leak_sites(function).is_empty(),
            "{function} holds memory"
        );
    }
    assert_eq!(memory.at("/memory_leak_detection/method"), "reachability");
    assert_eq!(memory.at("/memory_leak_detection/detected"), false);
    assert_eq!(last_scan(&memory)["trigger"], "exit");
    assert!(memory.u64("/current_memory") > 0);
    assert!(memory.u64("/peak_memory") >= memory.u64("/current_memory"));
    assert_nothing_lost(&report);
}

#[test]
fn calloc_counts_n_times_size() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "calloc"]);
    let memory = Memory::of(&report);
    assert_eq!(memory.function("calloc_keep"), Totals::blocks(1, 1000, 0));
    assert_eq!(memory.function("calloc_free"), Totals::blocks(1, 7 * 13, 1));
    let kept = memory.leak_site("calloc_keep");
    assert_eq!(
        (kept["bytes"].as_u64(), kept["count"].as_u64()),
        (Some(1000), Some(1))
    );
    assert!(memory.allocator_calls("calloc") >= 2);
    assert_nothing_lost(&report);
}

#[test]
fn realloc_chain_grows_shrinks_moves_and_goes_to_zero() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "realloc"]);
    let memory = Memory::of(&report);
    // malloc(100) -> 1000 -> 50 -> 100000 -> 1 MiB (glibc maps it inside realloc: not counted
    // again), realloc(NULL, 300) -> realloc(q, 0): every step is its own site; only the last
    // block of the first chain is held.
    let mut sites = memory.sites_in("realloc_chain");
    sites.sort_by_key(|t| t.allocated_bytes);
    let want = [
        Totals::blocks(1, 50, 1),
        Totals::blocks(1, 100, 1),
        Totals::blocks(1, 300, 1),
        Totals::blocks(1, 1000, 1),
        Totals::blocks(1, 100_000, 1),
        Totals::blocks(1, 1 << 20, 0),
    ];
    assert_eq!(sites, want);
    let chain = memory.function("realloc_chain");
    assert_eq!((chain.allocations, chain.frees), (6, 5));
    assert_eq!(
        (chain.outstanding, chain.outstanding_bytes),
        (1, 1 << 20),
        "the mapping realloc made for itself is counted once"
    );
    let total = memory.u64("/allocations/outstanding_bytes");
    assert!(
        total < 2 << 20,
        "{total} bytes held: the 1 MiB block counted twice?"
    );
    // realloc(q, 0) frees q through free(): released once, not twice.
    assert_eq!(memory.u64("/allocations/unknown_frees"), 0);
    let held = memory.leak_site("realloc_chain");
    assert_eq!(
        (held["bytes"].as_u64(), held["count"].as_u64()),
        (Some(1 << 20), Some(1))
    );
    assert!(memory.allocator_calls("realloc") >= 5);
    assert_nothing_lost(&report);
}

#[test]
fn posix_memalign_aligned_alloc_memalign_and_valloc() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "aligned"]);
    let memory = Memory::of(&report);
    // posix_memalign(64, 1000), aligned_alloc(256, 512), memalign(128, 300), valloc(100) kept;
    // posix_memalign(3, 100) fails with EINVAL and allocates nothing.
    let kept = memory.function("aligned_keep");
    assert_eq!(
        (kept.allocations, kept.allocated_bytes, kept.frees),
        (4, 1000 + 512 + 300 + 100, 0)
    );
    let mut sizes: Vec<u64> = memory
        .sites_in("aligned_keep")
        .iter()
        .map(|t| t.outstanding_bytes)
        .collect();
    sizes.sort_unstable();
    assert_eq!(sizes, [100, 300, 512, 1000]);
    assert_eq!(memory.function("aligned_free"), Totals::blocks(1, 2000, 1));
    assert!(memory.allocator_calls("posix_memalign") >= 3);
    assert_nothing_lost(&report);
}

#[test]
fn blocks_allocated_in_one_thread_and_freed_in_another() {
    require_root!();
    let dir = TempDir::new();
    // Two threads allocate 500 blocks of 40 bytes each at once and keep one more each; the main
    // thread frees the 1000.
    let report = run(&dir, &[VICTIM, "threads", "2", "500", "40"]);
    let memory = Memory::of(&report);
    assert_eq!(memory.function("produce"), Totals::blocks(1000, 40, 1000));
    assert!(memory.leak_sites("produce").is_empty());
    assert_eq!(memory.function("produce_keep"), Totals::blocks(2, 40, 0));
    let kept = memory.leak_site("produce_keep");
    assert_eq!(
        (kept["bytes"].as_u64(), kept["count"].as_u64()),
        (Some(80), Some(2))
    );
    assert_nothing_lost(&report);
}

#[test]
fn anonymous_mappings_are_tracked() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "mmap"]);
    let memory = Memory::of(&report);
    assert_eq!(memory.function("map_keep"), Totals::blocks(1, 3 * 4096, 0));
    assert_eq!(memory.function("map_drop"), Totals::blocks(1, 2 * 4096, 1));
    // 4 pages mapped, the first unmapped: 3 still held.
    let trim = memory.function("map_trim");
    assert_eq!(
        (trim.allocations, trim.outstanding, trim.outstanding_bytes),
        (1, 1, 3 * 4096)
    );
    assert_eq!(
        report.at("/overhead/notes/memory_partial_unmaps").as_u64(),
        Some(1)
    );
    assert!(memory.u64("/allocations/mmap_calls") >= 3);
}

#[test]
fn rust_default_allocator_goes_through_malloc() {
    require_root!();
    let dir = TempDir::new();
    // Built here with frame pointers, so that the allocation stacks walk through Rust frames.
    let exe = dir.path().join("victim_mem_rust");
    let flags = ["-C", "force-frame-pointers=yes", "-C", "opt-level=1"];
    victims::rustc(RUST_SOURCE, &exe, &flags);
    // 30 rounds: leak one 4093-byte Vec, create and drop 10 zeroed ones (calloc).
    let report = run(&dir, &[exe.to_str().unwrap(), "30", "4093", "10"]);
    let memory = Memory::of(&report);
    let leak = memory.leak_site("victim_mem_rust::mem::leak");
    assert_eq!(
        (leak["bytes"].as_u64(), leak["count"].as_u64()),
        (Some(30 * 4093), Some(30))
    );
    assert!(frames(leak).contains(&"victim_mem_rust::main"), "{leak:#}");
    assert_eq!(
        memory.function("victim_mem_rust::mem::leak"),
        Totals::blocks(30, 4093, 0)
    );
    let churn = memory.function("victim_mem_rust::mem::churn");
    assert_eq!(
        (churn.allocations, churn.frees, churn.outstanding),
        (300, 300, 0)
    );
    assert!(memory.allocator_calls("calloc") >= 300);
    assert_nothing_lost(&report);
}

#[test]
fn attach_to_a_process_that_already_holds_memory() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    // hold() allocates 500 blocks before "ready"; after the handshake release_held() frees
    // them and leak_blocks() leaks 20 blocks of 48 bytes; then the victim exits while profiled.
    let mut victim = Victim::ready(VICTIM, ["hold", "500", "20", "48"]);
    let funcs = ["--func", "release_held", "--func", "leak_blocks"];
    let mut args = EXACT.to_vec();
    args.extend(["--json", json.to_str().unwrap()]);
    args.extend(funcs);
    let profiler = attach(&victim, &args);
    victim.proceed();
    victim.expect_line("done");
    assert!(victim.release().success());
    profiler.finish().expect_success();

    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited");
    let memory = Memory::of(&report);
    assert_eq!(
        memory.u64("/allocations/unknown_frees"),
        500,
        "the frees of blocks from before attach are counted apart"
    );
    assert_eq!(memory.u64("/allocations/frees"), 0, "and never subtracted");
    let leak = memory.leak_site("leak_blocks");
    assert_eq!(
        (leak["bytes"].as_u64(), leak["count"].as_u64()),
        (Some(960), Some(20))
    );
    assert_eq!(memory.function("leak_blocks"), Totals::blocks(20, 48, 0));
    assert_nothing_lost(&report);

    // Per traced call: a free of a block the probes never saw counts, with no bytes.
    let release = report.function("release_held");
    assert_eq!(release.total_calls(), 1);
    assert_eq!(release.memory(), Some(per_call(0, 0, 500, 0, 0.0, 0)));
    let leak = report.function("leak_blocks");
    assert_eq!(leak.memory(), Some(per_call(20, 960, 0, 0, 960.0, 960)));
}

#[test]
fn growth_is_the_second_opinion_next_to_reachability() {
    require_root!();
    let dir = TempDir::new();
    // cache_fill() keeps 100 blocks of 1000 bytes at once, then for 2 s leak_grow() keeps 512
    // bytes about every 20 ms: a growing site and a flat one, every block of both reachable.
    let report = run(&dir, &[VICTIM, "growth", "2000"]);
    let memory = Memory::of(&report);
    let cache = memory.leak_site("cache_fill");
    assert_eq!(cache["trend"], "flat", "{cache:#}");
    assert_eq!(cache["verdict"], "reachable", "{cache:#}");
    assert_eq!(
        (cache["bytes"].as_u64(), cache["count"].as_u64()),
        (Some(100_000), Some(100))
    );
    let grow = memory.leak_site("leak_grow");
    assert_eq!(grow["trend"], "growing", "{grow:#}");
    assert_eq!(grow["verdict"], "reachable", "{grow:#}");
    let count = grow["count"].as_u64().unwrap();
    assert_eq!(grow["allocations"].as_u64(), Some(count));
    assert_eq!(grow["bytes"].as_u64(), Some(count * 512));
    assert_eq!(tally(&grow["reachable"]), (count * 512, count));
    assert!(count > 40, "{grow:#}");
    let growth = grow["growth"].as_f64().unwrap();
    assert!(
        (8_000.0..40_000.0).contains(&growth),
        "512 bytes per ~21 ms is ~24 KB/s, not {growth}"
    );
    assert!(memory.leak_sites("tidy").is_empty());
    let detection = memory.at("/memory_leak_detection");
    assert_eq!(detection["detected"], false);
    assert_eq!(detection["leaked_bytes"].as_u64(), Some(0));
    assert!(detection["retained_bytes"].as_u64().unwrap() >= 100_000 + count * 512);
}

/// The growth site charged to `function`.
fn growth_site<'a>(memory: &Memory<'a>, function: &str) -> &'a Value {
    let sites: Vec<&Value> = memory
        .list("/growth_sites")
        .iter()
        .filter(|s| s["function"] == function)
        .collect();
    let [site] = sites[..] else {
        panic!(
            "expected one growth site of {function}, found {}:\n{:#}",
            sites.len(),
            memory.at("/growth_sites")
        );
    };
    site
}

#[test]
fn a_growing_heap_is_found_with_its_stack_at_the_default_memory_level() {
    require_root!();
    let dir = TempDir::new();
    // cache_fill() keeps 100 blocks of 1000 bytes at once, then for 2 s leak_grow() keeps 512
    // bytes about every 20 ms; no allocator probe is attached.
    let (outcome, report) = run_reported(
        &dir,
        &["--level", "memory"],
        &[VICTIM, "growth", "2000"],
        &[],
    );
    let memory = Memory::of(&report);
    assert_eq!(memory.at("/mode"), "growth");
    assert_eq!(memory.u64("/allocations/allocations"), 0);
    assert!(memory.list("/allocators").is_empty());
    // The pages glibc's malloc first touched (writing its chunk headers, with no frame pointer)
    // are charged through the stack scan to the function that called it.
    let cache = growth_site(&memory, "cache_fill");
    let pages = cache["pages"].as_u64().unwrap();
    assert!(
        (24..=26).contains(&pages),
        "100 blocks of 1000 bytes: {cache:#}"
    );
    assert_eq!(cache["bytes"].as_u64(), Some(pages * 4096));
    assert_eq!(cache["trend"], "flat", "{cache:#}");
    assert!(frames(cache).contains(&"main"), "{cache:#}");
    let grow = growth_site(&memory, "leak_grow");
    assert_eq!(grow["trend"], "growing", "{grow:#}");
    assert!(grow["growth"].as_f64().unwrap() > 4_000.0, "{grow:#}");
    let stack = frames(grow);
    let at = stack.iter().position(|f| *f == "leak_grow").unwrap();
    assert!(stack[at..].contains(&"main"), "{grow:#}");
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "growth");
    assert_eq!(d["detected"], true, "a growing site: {d:#}");
    assert!(d["notes"][0].as_str().unwrap().contains("--memory exact"));
    assert!(memory.u64("/growth/faults") >= pages);
    // No allocator probe: none of its hits is priced.
    assert!(
        outcome
            .stdout
            .contains("allocator not probed (--memory growth)"),
        "{}",
        outcome.stdout
    );
    assert!(
        outcome
            .stdout
            .contains("\nmemory: growth attribution · rss"),
        "{}",
        outcome.stdout
    );
}

#[test]
fn with_exact_tracking_pages_touched_inside_malloc_go_to_the_allocation_site() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "growth", "1000"]);
    let memory = Memory::of(&report);
    assert_eq!(memory.at("/mode"), "exact");
    let cache = growth_site(&memory, "cache_fill");
    let pages = cache["pages"].as_u64().unwrap();
    assert!((24..=26).contains(&pages), "{cache:#}");
    // The allocation site's own stack: the allocator's caller first.
    assert_eq!(frames(cache)[..2], ["cache_fill", "main"], "{cache:#}");
}

/// A traced function's `memory`: `allocations` blocks of `allocated_bytes` in all, `frees`
/// blocks of `freed_bytes`, `net_bytes_per_call`, and a peak of `peak` bytes in every call
/// (`average_memory_peak`) and at most (`max_memory_peak`).
fn per_call(
    allocations: u64,
    allocated_bytes: u64,
    frees: u64,
    freed_bytes: u64,
    net_bytes_per_call: f64,
    peak: u64,
) -> FuncMemory {
    FuncMemory {
        allocations,
        allocated_bytes,
        frees,
        freed_bytes,
        net_bytes_per_call,
        average_memory_peak: peak as f64,
        max_memory_peak: peak,
    }
}

/// The `fn` scenario's functions, as `--func` arguments.
const FN_FUNCS: [&str; 8] = [
    "--func",
    "mem_fn_outer",
    "--func",
    "mem_fn_inner",
    "--func",
    "mem_fn_grow",
    "--func",
    "mem_fn_drop",
];

#[test]
fn traced_functions_get_the_memory_their_calls_allocated_and_freed() {
    require_root!();
    let dir = TempDir::new();
    let mut args = EXACT.to_vec();
    args.extend(FN_FUNCS);
    let report = run_reported(&dir, &args, &[VICTIM, "fn", "50"], &[]).1;
    for name in ["mem_fn_outer", "mem_fn_inner", "mem_fn_grow", "mem_fn_drop"] {
        let f = report.function(name);
        assert_eq!((f.total_calls(), f.in_flight()), (50, 0), "{name}");
    }
    let memory = |name: &str| {
        report
            .function(name)
            .memory()
            .unwrap_or_else(|| panic!("{name} has no memory: {:#}", report.function(name).0))
    };
    // inner: 3 × 1000 allocated, the first freed: +2000 a call, 3000 at its peak.
    assert_eq!(
        memory("mem_fn_inner"),
        per_call(150, 150_000, 50, 50_000, 2000.0, 3000)
    );
    // outer: inner's too (its callee), and the block inner returned, freed: +1000 a call.
    assert_eq!(
        memory("mem_fn_outer"),
        per_call(150, 150_000, 100, 100_000, 1000.0, 3000)
    );
    // A realloc is a release of the old block, then an allocation of the new one; the malloc
    // and free glibc's realloc makes inside count once, as the realloc.
    assert_eq!(
        memory("mem_fn_grow"),
        per_call(100, 50 * 5100, 100, 50 * 5100, 0.0, 5000)
    );
    // Each call frees a block allocated in another: negative net, no peak.
    assert_eq!(
        memory("mem_fn_drop"),
        per_call(0, 0, 50, 50_000, -1000.0, 0)
    );

    let m = Memory::of(&report);
    assert_eq!(
        m.function("mem_fn_inner"),
        Totals::blocks(150, 1000, 150),
        "the memory section is the memory family's, as without --func"
    );
    assert_nothing_lost(&report);
}

#[test]
fn without_func_the_memory_section_is_unchanged_and_without_memory_no_function_has_any() {
    require_root!();
    let dir = TempDir::new();
    let cmd = [VICTIM, "fn", "20"];
    let plain = run(&dir, &cmd);
    assert!(plain.functions().is_empty());
    let mut args = EXACT.to_vec();
    args.extend(FN_FUNCS);
    let traced = run_reported(&dir, &args, &cmd, &[]).1;
    let (plain, traced) = (Memory::of(&plain), Memory::of(&traced));
    for pointer in ["/allocations/allocations", "/allocations/allocated_bytes"] {
        assert_eq!(plain.u64(pointer), traced.u64(pointer), "{pointer}");
    }
    for pointer in ["/allocations/frees", "/allocations/freed_bytes"] {
        assert_eq!(plain.u64(pointer), traced.u64(pointer), "{pointer}");
    }
    for function in ["mem_fn_inner", "mem_fn_grow"] {
        assert_eq!(
            plain.function(function),
            traced.function(function),
            "{function}"
        );
    }

    // The functions family alone, or with the memory family's growth attribution only: no
    // allocator probes, no memory per function.
    let mut growth = vec!["--level", "memory"];
    growth.extend(FN_FUNCS);
    for args in [FN_FUNCS.as_slice(), &growth] {
        let report = run_reported(&dir, args, &cmd, &[]).1;
        let outer = report.function("mem_fn_outer");
        assert_eq!(outer.total_calls(), 20);
        assert_eq!(outer.memory(), None, "{args:?}: {:#}", outer.0);
    }
}
