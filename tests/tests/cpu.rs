//! The cpu family's victims (`tests/victims/cpu_*.c` and their libraries,
//! `src/bin/victim_cpu_rust.rs`, `tests/victims/cpu_busy.py`), checked without the profiler, so
//! that a failure of the family's tests is the profiler's: each splits its worker's CPU time
//! 70/30 between two leaves as it says, the kernel counts the CPU time it says it spun, the
//! library it loads late appears in its mappings only then, and the builds without frame
//! pointers really have none. Then the family's live snapshots, taken while a victim runs.

use std::{
    process::Command,
    thread,
    time::{Duration, Instant},
};

use profiler_tests::{
    Report, TIMEOUT, TempDir, Victim,
    live::{attach_live, next_snapshot},
    require_python, require_root, schedstat_on_cpu, skip, victims,
};

/// How long each victim runs here, ms of wall time: 15 to 50 cycles of 10 ms of CPU time,
/// depending on how loaded the machine is (it runs at least one).
const RUN_MS: &str = "400";

/// One run of a cpu victim: what it printed, and what the kernel counted.
struct Split {
    cycles: f64,
    /// Seconds the 70% leaf measured itself spinning.
    hot: f64,
    /// Seconds the 30% leaf measured itself spinning.
    cold: f64,
    /// The worker's CPU time over its cycles (schedstat), seconds.
    on_cpu: f64,
}

impl Split {
    /// Runs `victim`, started with `--wait` and "ready", to its end: lets it go, reads its
    /// cycles and the `<hot>_seconds` and `<cold>_seconds` lines, and the worker's schedstat
    /// before the go and after "done", where it holds still. `during` looks at the victim while
    /// it waits after "done", alive.
    fn of(mut victim: Victim, hot: &str, cold: &str, during: impl FnOnce(&mut Victim)) -> Self {
        let tid: u32 = victim.value_of("worker_tid").parse().expect("a tid");
        let before = schedstat_on_cpu(victim.pid(), tid);
        victim.proceed();
        let mut number = |label: &str| -> f64 {
            let value = victim.value_of(label);
            value
                .parse()
                .unwrap_or_else(|_| panic!("{label} {value:?} is not a number"))
        };
        let cycles = number("cycles");
        let (hot, cold) = (
            number(&format!("{hot}_seconds")),
            number(&format!("{cold}_seconds")),
        );
        victim.expect_line("done");
        let on_cpu = schedstat_on_cpu(victim.pid(), tid) - before;
        during(&mut victim);
        assert!(victim.release().success());
        Self {
            cycles,
            hot,
            cold,
            on_cpu,
        }
    }

    /// Panics unless the split is what the victims promise: each leaf spun at least its 7 or
    /// 3 ms a cycle, 70% of the two leaves' time in the hot one, and the kernel counted the
    /// worker on the CPU for the leaves' time, and next to nothing more.
    fn check(&self, what: &str) {
        let Self {
            cycles,
            hot,
            cold,
            on_cpu,
        } = *self;
        let context = format!("{what}: {cycles} cycles, {hot} s hot, {cold} s cold");
        assert!(cycles >= 1.0, "{context}");
        // A spin ends at the first read of the clock past its time: some tens of microseconds.
        assert!(
            (0.007 * cycles..=0.0075 * cycles).contains(&hot),
            "{context}"
        );
        assert!(
            (0.003 * cycles..=0.0035 * cycles).contains(&cold),
            "{context}"
        );
        let share = hot / (hot + cold);
        assert!((0.68..=0.72).contains(&share), "{context}: {share} hot");
        let spun = hot + cold;
        assert!(
            (0.999 * spun..=1.1 * spun + 0.01).contains(&on_cpu),
            "{context}: {on_cpu} s on the CPU"
        );
    }
}

/// Whether objdump (binutils) runs here.
fn has_objdump() -> bool {
    Command::new("objdump").arg("--version").output().is_ok()
}

/// `objdump -d ARGS PATH`: its disassembly.
fn disassemble(path: &str, args: &[&str]) -> String {
    let out = Command::new("objdump")
        .args(["-d", "--no-show-raw-insn"])
        .args(args)
        .arg(path)
        .output()
        .expect("run objdump");
    assert!(out.status.success(), "objdump -d {path} failed");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The instructions of `function` in `disassembly`, each with its operands, single-spaced
/// (`mov %rsp,%rbp`).
fn instructions(disassembly: &str, function: &str) -> Vec<String> {
    let label = format!("<{function}>:");
    let mut lines = disassembly.lines().skip_while(|l| !l.ends_with(&label));
    assert!(lines.next().is_some(), "no {function} in the disassembly");
    lines
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split('\t').nth(1))
        .map(|insn| insn.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

/// What makes %rbp a frame pointer: it is set to the stack pointer.
const SET_FRAME_POINTER: &str = "mov %rsp,%rbp";

/// Panics unless no function of `functions` in `path` (disassembled with `objdump -d ARGS`)
/// sets %rbp to its stack pointer: they keep no frame pointer.
fn assert_no_frame_pointer(path: &str, objdump_args: &[&str], functions: &[&str]) {
    let disassembly = disassemble(path, objdump_args);
    for function in functions {
        let code = instructions(&disassembly, function);
        assert!(
            !code.iter().any(|i| i == SET_FRAME_POINTER),
            "{function} in {path} sets a frame pointer: {code:?}"
        );
    }
}

/// The levels of `cpu_split.c`, and the function each worker cycle starts in.
const SPLIT_LEVELS: [&str; 6] = ["run", "level1", "level2", "level3", "level4", "level5"];

/// cpu_split, all four builds: 70% of the worker's CPU time in hot_deep, 30% in hot_shallow.
#[test]
fn split_victims_split_what_they_say() {
    for build in [
        victims::CPU_SPLIT,
        victims::CPU_SPLIT_CET,
        victims::CPU_SPLIT_NOPIE,
        victims::CPU_SPLIT_FP,
    ] {
        let victim = Victim::ready(build, [RUN_MS]);
        Split::of(victim, "deep", "shallow", |_| ()).check(build);
    }
}

/// The builds of cpu_split without frame pointers keep none in their levels (each moves %rsp
/// by 8, and no more), so only `.eh_frame` walks them; the one with them sets one in each.
#[test]
fn split_victims_keep_frame_pointers_only_where_built_with_them() {
    if !has_objdump() {
        skip!("objdump (binutils) is not installed");
    }
    for build in [
        victims::CPU_SPLIT,
        victims::CPU_SPLIT_CET,
        victims::CPU_SPLIT_NOPIE,
    ] {
        assert_no_frame_pointer(build, &[], &SPLIT_LEVELS);
    }
    let disassembly = disassemble(victims::CPU_SPLIT_FP, &[]);
    for level in SPLIT_LEVELS {
        let code = instructions(&disassembly, level);
        let prologue: Vec<&str> = code
            .iter()
            .map(String::as_str)
            .filter(|i| *i != "endbr64")
            .take(2)
            .collect();
        assert_eq!(
            prologue,
            ["push %rbp", SET_FRAME_POINTER],
            "{level}: {code:?}"
        );
    }
}

/// The other C victims and their libraries keep no frame pointers on their stacks' way.
#[test]
fn cpu_victims_without_frame_pointers_keep_none() {
    if !has_objdump() {
        skip!("objdump (binutils) is not installed");
    }
    let checks: [(&str, &[&str]); 5] = [
        (victims::CPU_LIB, &["run", "level1", "level2"]),
        (
            victims::LIBCPUHOT,
            &["cpuhot_enter", "cpuhot_middle", "cpuhot_call_back"],
        ),
        (victims::CPU_DLOPEN, &["run", "level1", "level2"]),
        (victims::LIBCPUDL, &["cpudl_enter"]),
        (
            victims::CPU_SIGNAL,
            &[
                "run",
                "level1",
                "level2",
                "send_signal",
                "on_signal",
                "handler_level",
            ],
        ),
    ];
    for (path, functions) in checks {
        assert_no_frame_pointer(path, &[], functions);
    }
}

/// The lines of `/proc/PID/maps` that map `path`.
fn mappings_of(pid: u32, path: &str) -> usize {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("the victim's maps");
    maps.lines().filter(|l| l.ends_with(path)).count()
}

/// cpu_lib: 70% in cpuhot_leaf inside libcpuhot.so, which it maps, 30% in exe_callback.
#[test]
fn lib_victim_splits_between_its_library_and_itself() {
    let victim = Victim::ready(victims::CPU_LIB, [RUN_MS]);
    Split::of(victim, "lib", "callback", |v| {
        assert!(mappings_of(v.pid(), victims::LIBCPUHOT) > 0);
    })
    .check("cpu_lib");
}

/// cpu_dlopen: libcpudl.so is not mapped until the go, is after "dlopened"; 70% in its
/// cpudl_leaf, 30% in the executable's exe_leaf.
#[test]
fn dlopen_victim_loads_its_library_once_it_runs() {
    let victim = Victim::ready(victims::CPU_DLOPEN, [RUN_MS]);
    assert_eq!(mappings_of(victim.pid(), victims::LIBCPUDL), 0);
    let split = Split::of(victim, "dl", "exe", |v| {
        assert!(v.has_printed("dlopened"));
        assert!(mappings_of(v.pid(), victims::LIBCPUDL) > 0);
    });
    split.check("cpu_dlopen");
}

/// cpu_signal: one SIGUSR1 a cycle; 70% in the handler's handler_leaf, 30% outside it.
#[test]
fn signal_victim_spins_in_its_handler_as_it_says() {
    let victim = Victim::ready(victims::CPU_SIGNAL, [RUN_MS]);
    let mut signals = 0.0;
    let split = Split::of(victim, "handler", "outside", |v| {
        signals = v.value_of("signals").parse().expect("a count");
    });
    assert_eq!(signals, split.cycles);
    split.check("cpu_signal");
}

/// victim_cpu_rust, built by rustc without frame pointers: 70% in `Hot<u32>::spin`, 30% in
/// `<Warm as Spin>::spin`; both leaves and the levels demangle to their names (in objdump's
/// demangler, as rustc-demangle's), and the levels keep no frame pointer.
#[test]
fn rust_victim_splits_what_it_says_under_its_names() {
    let dir = TempDir::new();
    let exe = victims::cpu_rust(dir.path());
    let exe = exe.to_str().expect("utf-8 path");
    Split::of(Victim::ready(exe, [RUN_MS]), "deep", "shallow", |_| ()).check(exe);
    if !has_objdump() {
        skip!("objdump (binutils) is not installed");
    }
    let levels = SPLIT_LEVELS.map(|l| format!("victim_cpu_rust::chain::{l}"));
    let levels: Vec<&str> = levels.iter().map(String::as_str).collect();
    assert_no_frame_pointer(exe, &["-C"], &levels);
    let disassembly = disassemble(exe, &["-C"]);
    for leaf in [
        "victim_cpu_rust::Hot<T>::spin",
        "<victim_cpu_rust::Warm as victim_cpu_rust::Spin>::spin",
    ] {
        assert!(!instructions(&disassembly, leaf).is_empty(), "{leaf}");
    }
}

/// cpu_busy.py runs its cycles between the handshake's lines, on the CPU.
#[test]
fn python_victim_runs_busy() {
    let py = require_python!();
    let py = py.to_str().expect("utf-8 path");
    let mut victim = Victim::start(py, [victims::CPU_PY, "--wait", "200"]);
    victim.expect_line("ready");
    victim.proceed();
    let cycles: u64 = victim.value_of("cycles").parse().expect("a count");
    let busy: f64 = victim.value_of("busy_seconds").parse().expect("seconds");
    victim.expect_line("done");
    assert!(victim.release().success());
    assert!(cycles >= 1 && busy > 0.0, "{cycles} cycles, {busy} s");
}

/// A live snapshot taken while cpu_split's worker spins already names its hot leaf, `hot_deep`
/// (70% of the worker's time, `hot_shallow` 30%; the spin inlined in both is what runs, so the
/// leaves are hot with their callees), on its whole stack, and writes no `--output` file; the
/// final report, with the file, has at least its samples.
#[test]
fn a_live_snapshot_names_the_hot_function_mid_run() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let folded = dir.path().join("stacks.folded");
    // Long enough for the snapshots below on a loaded machine.
    let mut victim = Victim::ready(victims::CPU_SPLIT, ["8000"]);
    let tid: u32 = victim.value_of("worker_tid").parse().expect("a tid");
    let args = [
        "--level",
        "profiling",
        "--frequency",
        "997",
        "--output",
        folded.to_str().expect("utf-8 path"),
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let profiler = attach_live(&victim, &args, &live);
    victim.proceed();
    // Enough of the worker's samples that its 70/30 split shows (about 0.2 s of its time).
    let deadline = Instant::now() + TIMEOUT;
    let snapshot = loop {
        let snapshot = next_snapshot(&live);
        let samples = snapshot.cpu().thread_samples("worker");
        if samples >= 200 {
            break snapshot;
        }
        assert!(
            Instant::now() < deadline,
            "the worker has {samples} samples in the snapshots after {} s",
            TIMEOUT.as_secs()
        );
    };
    // The worker still spins: the snapshot was taken mid-run.
    let spun = schedstat_on_cpu(victim.pid(), tid);
    thread::sleep(Duration::from_millis(100));
    assert!(
        schedstat_on_cpu(victim.pid(), tid) > spun,
        "the worker's cycles were over before the snapshot"
    );
    let cpu = snapshot.cpu();
    let context = cpu.context();
    let (deep, shallow) = (
        cpu.total_samples("hot_deep"),
        cpu.total_samples("hot_shallow"),
    );
    assert!(deep > shallow && shallow > 0, "{context}");
    assert!(cpu.total_samples("level5") >= deep, "{context}");
    let stacks = cpu.json()["stacks"].as_array().expect("stacks");
    let through = ["level4", "level5", "hot_deep"];
    let named = stacks.iter().any(|s| {
        let frames: Vec<&str> = (s["frames"].as_array().expect("frames").iter())
            .filter_map(|f| f.as_str())
            .collect();
        frames.windows(through.len()).any(|w| w == through)
    });
    assert!(
        named,
        "no stack through {through:?}\n{:#}",
        cpu.json()["stacks"]
    );
    assert!(cpu.outputs().is_empty(), "{context}");
    assert!(!folded.exists(), "a snapshot wrote {}", folded.display());

    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    let last = report.cpu();
    let context = format!("snapshot:\n{context}\nfinal:\n{}", last.context());
    assert!(last.samples() >= cpu.samples(), "{context}");
    assert!(last.total_samples("hot_deep") >= deep, "{context}");
    assert!(folded.exists(), "{context}");
    assert_eq!(last.outputs().len(), 1, "{context}");
}
