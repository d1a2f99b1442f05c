//! The cpu family on real processes: stacks of code built without frame pointers unwound in the
//! kernel from the objects' `.eh_frame` tables, complete to the thread's start, with each
//! function's share of the samples what the victim measured it spending (`tests/tests/cpu.rs`
//! checks the victims themselves), across a shared library, a library loaded after the attach,
//! a signal handler, Rust and the Python interpreter; and the files `--output` writes, read back
//! by real consumers.

use std::{collections::BTreeMap, path::Path, process::Command};

use profiler_tests::{
    Outcome, Report, TempDir, Victim, attach, profile, require_python, require_root, run_reported,
    victims,
};

/// Samples a second on each CPU: 2 s of a victim give about 2000, so a 70% share is measured to
/// about a point (one standard deviation); odd, so the sampling does not march in step with the
/// victims' 10 ms cycles.
const FREQUENCY: &str = "997";

/// How long each victim runs, ms.
const RUN_MS: &str = "2000";

/// Points a function's sampled share may be off the share the victim measured.
const SHARE_POINTS: f64 = 5.0;

/// One line of folded stacks: the thread (`name-tid`) and the frames, outermost first.
struct Folded {
    thread: String,
    frames: Vec<String>,
    count: u64,
}

fn read_folded(path: &Path) -> Vec<Folded> {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("no folded stacks at {}: {e}", path.display()));
    text.lines()
        .map(|line| {
            let (stack, count) = line
                .rsplit_once(' ')
                .unwrap_or_else(|| panic!("no count in the folded line {line:?}"));
            let mut frames: Vec<String> = stack.split(';').map(str::to_string).collect();
            let thread = frames.remove(0);
            Folded {
                thread,
                frames,
                count: count
                    .parse()
                    .unwrap_or_else(|_| panic!("bad count in {line:?}")),
            }
        })
        .collect()
}

/// A victim's samples, from its folded stacks.
struct Samples(Vec<Folded>);

impl Samples {
    /// The samples of the threads whose name starts with `thread`.
    fn of(&self, thread: &str) -> Vec<&Folded> {
        self.0
            .iter()
            .filter(|f| f.thread.starts_with(&format!("{thread}-")))
            .collect()
    }

    /// Percent of `thread`'s samples with `function` on the stack.
    fn share(&self, thread: &str, function: &str) -> f64 {
        let of = self.of(thread);
        let all: u64 = of.iter().map(|f| f.count).sum();
        let with: u64 = of
            .iter()
            .filter(|f| f.frames.iter().any(|x| x == function))
            .map(|f| f.count)
            .sum();
        100.0 * with as f64 / all.max(1) as f64
    }

    /// Panics unless every complete stack of `thread` (one that starts at a start routine) with
    /// the last function of `path` on it holds the whole of `path` in a row, caller first. (A
    /// stack taken in the first milliseconds after the exec, before the objects' tables are in
    /// place, is not complete, and the report counts it.)
    fn assert_always_through(&self, thread: &str, path: &[&str]) {
        let leaf = path.last().expect("a path");
        let complete = |f: &&Folded| {
            f.frames
                .first()
                .is_some_and(|x| ["clone3", "_start", "__clone3"].contains(&x.as_str()))
        };
        let with_leaf: Vec<&Folded> = self
            .of(thread)
            .into_iter()
            .filter(complete)
            .filter(|f| f.frames.iter().any(|x| x == leaf))
            .collect();
        assert!(!with_leaf.is_empty(), "no {leaf}\n{}", self.context());
        for f in with_leaf {
            assert!(
                f.frames.windows(path.len()).any(|w| w == path),
                "{} not under {path:?}: {}\n{}",
                leaf,
                f.frames.join(";"),
                self.context()
            );
        }
    }

    /// The heaviest stacks, for failure messages.
    fn context(&self) -> String {
        let mut lines: Vec<&Folded> = self.0.iter().collect();
        lines.sort_by_key(|f| std::cmp::Reverse(f.count));
        lines
            .iter()
            .take(12)
            .map(|f| format!("{} {} {}", f.thread, f.frames.join(";"), f.count))
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// Runs `cmd` under `--level profiling` at [`FREQUENCY`], with folded stacks written; returns
/// what the victim printed, the report and the samples.
fn sample(dir: &TempDir, cmd: &[&str]) -> (Outcome, Report, Samples) {
    sample_with(dir, &[], cmd)
}

/// As [`sample`], with the profiler's options `extra` added.
fn sample_with(dir: &TempDir, extra: &[&str], cmd: &[&str]) -> (Outcome, Report, Samples) {
    let folded = dir.path().join("stacks.folded");
    let folded_arg = folded.to_str().expect("utf-8 path");
    let mut args = vec![
        "--level",
        "profiling",
        "--frequency",
        FREQUENCY,
        "--output",
        folded_arg,
    ];
    args.extend_from_slice(extra);
    let (outcome, report) = run_reported(dir, &args, cmd, &[]);
    (outcome, report, Samples(read_folded(&folded)))
}

/// The victim's own split: the percent of its two leaves' CPU time spent in the hot one.
fn measured(outcome: &Outcome, hot: &str, cold: &str) -> f64 {
    let seconds = |label: &str| -> f64 {
        outcome
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label}_seconds ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label}_seconds line:\n{}", outcome.stdout))
    };
    let (hot, cold) = (seconds(hot), seconds(cold));
    100.0 * hot / (hot + cold)
}

/// Panics unless the worker's samples split between `hot` and `cold` as the victim measured,
/// within [`SHARE_POINTS`], and nearly every stack is complete.
fn assert_split(report: &Report, samples: &Samples, want: f64, hot: &str, cold: &str) {
    let cpu = report.cpu();
    let context = format!("{}\n{}", samples.context(), cpu.context());
    let (got_hot, got_cold) = (samples.share("worker", hot), samples.share("worker", cold));
    assert!(
        (got_hot - want).abs() <= SHARE_POINTS,
        "{hot}: {got_hot:.1}% sampled, {want:.1}% measured\n{context}"
    );
    assert!(
        (got_cold - (100.0 - want)).abs() <= SHARE_POINTS,
        "{cold}: {got_cold:.1}% sampled, {:.1}% measured\n{context}",
        100.0 - want
    );
    assert!(
        cpu.thread_samples("worker") >= 1000,
        "too few samples\n{context}"
    );
    assert!(cpu.complete_percent() >= 95.0, "{context}");
    assert!(cpu.frames("by_table") > 0, "{context}");
}

/// Runs a 70/30 victim (`cmd`) and checks its split: the leaves `hot` and `cold` against the
/// victim's `<hot_label>_seconds` and `<cold_label>_seconds` (see [`assert_split`]).
fn split_run(
    cmd: &[&str],
    (hot_label, cold_label): (&str, &str),
    (hot, cold): (&str, &str),
) -> (TempDir, Report, Samples) {
    let dir = TempDir::new();
    let (outcome, report, samples) = sample(&dir, cmd);
    let want = measured(&outcome, hot_label, cold_label);
    assert_split(&report, &samples, want, hot, cold);
    (dir, report, samples)
}

/// The 70/30 victim through a six-deep chain, built without frame pointers (plain, with CET's
/// `endbr64` at every function, and not position-independent) and with them: the same shares,
/// and the hot leaf's samples all through level1..level5, the cold one's through level2.
#[test]
fn shares_match_what_the_victim_spent_with_and_without_frame_pointers() {
    require_root!();
    for build in [
        victims::CPU_SPLIT,
        victims::CPU_SPLIT_CET,
        victims::CPU_SPLIT_NOPIE,
        victims::CPU_SPLIT_FP,
    ] {
        let (_dir, _, samples) = split_run(
            &[build, RUN_MS],
            ("deep", "shallow"),
            ("hot_deep", "hot_shallow"),
        );
        let deep = ["level1", "level2", "level3", "level4", "level5", "hot_deep"];
        samples.assert_always_through("worker", &deep);
        samples.assert_always_through("worker", &["run", "level1", "level2", "hot_shallow"]);
        let context = samples.context();
        // The worker's stacks start at its thread's first frame.
        assert!(
            samples.share("worker", "start_thread") >= 95.0,
            "{build}\n{context}"
        );
    }
}

/// A function traced in the middle of the chain has its return address replaced on the stack by
/// its return probe's trampoline: the walk puts back the one its entry saw, and the stacks still
/// cross it to the thread's first frame.
#[test]
fn stacks_cross_a_traced_function_s_return_probe() {
    require_root!();
    let dir = TempDir::new();
    let (_, report, samples) =
        sample_with(&dir, &["--func", "level3"], &[victims::CPU_SPLIT, RUN_MS]);
    let calls = report.function("level3").total_calls();
    assert!(calls > 10, "level3 traced: {calls} calls");
    let deep = ["level1", "level2", "level3", "level4", "level5", "hot_deep"];
    samples.assert_always_through("worker", &deep);
    let context = format!("{}\n{}", samples.context(), report.cpu().context());
    assert!(samples.share("worker", "start_thread") >= 95.0, "{context}");
    assert!(report.cpu().complete_percent() >= 95.0, "{context}");
}

/// The hot leaf is two frames deep in a library built without frame pointers, and the cold one
/// is a callback from the library back into the executable: both cross the library.
#[test]
fn stacks_cross_a_library_without_frame_pointers() {
    require_root!();
    let (_dir, _, samples) = split_run(
        &[victims::CPU_LIB, RUN_MS],
        ("lib", "callback"),
        ("cpuhot_leaf", "exe_callback"),
    );
    let into = ["level2", "cpuhot_enter", "cpuhot_middle", "cpuhot_leaf"];
    samples.assert_always_through("worker", &into);
    samples.assert_always_through("worker", &["level2", "cpuhot_call_back", "exe_callback"]);
}

/// Attached to a victim that loads a library only after the profiler is running: the new
/// object's table is loaded when it is mapped, and its frames are unwound and named.
#[test]
fn a_library_loaded_after_the_attach_is_unwound() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let folded = dir.path().join("stacks.folded");
    let mut victim = Victim::ready(victims::CPU_DLOPEN, [RUN_MS]);
    let args = [
        "--level",
        "profiling",
        "--frequency",
        FREQUENCY,
        "--output",
        folded.to_str().expect("utf-8 path"),
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let profiler = attach(&victim, &args);
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", victim.pid())).unwrap();
    assert!(!maps.contains("libcpudl.so"), "loaded before the attach");
    victim.proceed();
    victim.expect_line("dlopened");
    let (dl, exe): (f64, f64) = (
        victim.value_of("dl_seconds").parse().expect("seconds"),
        victim.value_of("exe_seconds").parse().expect("seconds"),
    );
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    let samples = Samples(read_folded(&folded));
    assert_split(
        &report,
        &samples,
        100.0 * dl / (dl + exe),
        "cpudl_leaf",
        "exe_leaf",
    );
    samples.assert_always_through("worker", &["level2", "cpudl_enter", "cpudl_leaf"]);
}

/// The hot leaf runs in a signal handler: its stacks go through the signal frame (read from the
/// `ucontext` the kernel pushed) back into the interrupted function and on to the thread start.
#[test]
fn stacks_cross_a_signal_frame() {
    require_root!();
    let (_dir, report, samples) = split_run(
        &[victims::CPU_SIGNAL, RUN_MS],
        ("handler", "outside"),
        ("handler_leaf", "outside_leaf"),
    );
    let context = samples.context();
    // Interrupted in send_signal, called from level2; the handler's frames above the trampoline,
    // named though libc has no symbol for it.
    let path = [
        "level2",
        "send_signal",
        "__restore_rt",
        "on_signal",
        "handler_level",
        "handler_leaf",
    ];
    samples.assert_always_through("worker", &path);
    assert!(report.cpu().frames("signal_frames") > 0, "{context}");
}

/// Rust built without frame pointers: complete stacks, demangled names.
#[test]
fn rust_without_frame_pointers_is_unwound_and_demangled() {
    require_root!();
    let build = TempDir::new();
    let exe = victims::cpu_rust(build.path());
    let hot = "victim_cpu_rust::Hot<T>::spin";
    let cold = "<victim_cpu_rust::Warm as victim_cpu_rust::Spin>::spin";
    let (_dir, _, samples) = split_run(
        &[exe.to_str().expect("utf-8 path"), RUN_MS],
        ("deep", "shallow"),
        (hot, cold),
    );
    let chain = [
        "victim_cpu_rust::chain::level1",
        "victim_cpu_rust::chain::level2",
    ];
    samples.assert_always_through("worker", &chain);
    assert!(
        samples.share("worker", chain[1]) >= 95.0,
        "{}",
        samples.context()
    );
}

/// CPython (built without frame pointers here) running a busy loop: the stacks go through the
/// interpreter's `_PyEval_EvalFrameDefault` down to `main` (or `Py_BytesMain`, where `main`
/// tail-calls it) and `_start`.
#[test]
fn python_stacks_reach_the_interpreter_and_main() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let python = python.to_str().expect("utf-8 path");
    let (_, report, samples) = sample(&dir, &[python, victims::CPU_PY, RUN_MS]);
    let cpu = report.cpu();
    let context = format!("{}\n{}", samples.context(), cpu.context());
    let all: u64 = samples.0.iter().map(|f| f.count).sum();
    let share = |function: &str| -> f64 {
        let with: u64 = samples
            .0
            .iter()
            .filter(|f| f.frames.iter().any(|x| x == function))
            .map(|f| f.count)
            .sum();
        100.0 * with as f64 / all.max(1) as f64
    };
    assert!(share("_PyEval_EvalFrameDefault") >= 80.0, "{context}");
    // Debian's python3 `main` only jumps to Py_BytesMain (a tail call leaves no frame).
    assert!(
        share("main").max(share("Py_BytesMain")) >= 90.0,
        "{context}"
    );
    assert!(share("_start") >= 90.0, "{context}");
    assert!(cpu.complete_percent() >= 90.0, "{context}");
}

/// A program that lives in the kernel (`dd` copying one byte at a time): its samples' innermost
/// frames are kernel functions, under the syscall entry, above the user frames of `dd`.
#[test]
fn kernel_stacks_sit_above_the_user_stack() {
    require_root!();
    let dir = TempDir::new();
    let cmd = [
        "dd",
        "if=/dev/zero",
        "of=/dev/null",
        "bs=1",
        "count=3000000",
        "status=none",
    ];
    let (_, report, samples) = sample(&dir, &cmd);
    let cpu = report.cpu();
    let context = format!("{}\n{}", samples.context(), cpu.context());
    let all: u64 = samples.0.iter().map(|f| f.count).sum();
    let in_kernel: u64 = samples
        .0
        .iter()
        .filter(|f| f.frames.last().is_some_and(|x| x.ends_with("_[k]")))
        .map(|f| f.count)
        .sum();
    assert!(in_kernel * 2 >= all, "{context}");
    // A kernel frame is never below a user frame.
    for f in &samples.0 {
        let first_kernel = f.frames.iter().position(|x| x.ends_with("_[k]"));
        if let Some(k) = first_kernel {
            assert!(
                f.frames[k..].iter().all(|x| x.ends_with("_[k]")),
                "{context}"
            );
        }
    }
    let kernel_self = cpu.json()["top_self"]
        .as_array()
        .expect("top_self")
        .iter()
        .any(|f| f["module"] == "[kernel]");
    assert!(kernel_self, "{context}");
}

/// Every `--output` format, from one real run, read by a real consumer: the folded stacks by
/// their format's rules, the SVG by an XML parser, pprof by `protoc --decode` with the profile
/// schema, speedscope by a JSON parser; each holds every sample of the report.
#[test]
fn outputs_are_read_back_by_their_consumers() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let out = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let paths = [
        out("s.folded"),
        out("s.svg"),
        out("s.pb.gz"),
        out("s.speedscope.json"),
    ];
    let mut args = vec!["--level", "profiling", "--frequency", FREQUENCY];
    for p in &paths {
        args.extend(["--output", p.as_str()]);
    }
    let (_, report) = run_reported(&dir, &args, &[victims::CPU_SPLIT, "1000"], &[]);
    let cpu = report.cpu();
    let samples = cpu.samples();
    let outputs: BTreeMap<String, String> = cpu.outputs().into_iter().collect();
    assert_eq!(outputs.len(), 4, "{}", cpu.context());
    let folded: u64 = read_folded(Path::new(&paths[0]))
        .iter()
        .map(|f| f.count)
        .sum();
    assert_eq!(folded, samples);
    // SVG: the root frame's title holds every sample.
    let svg = Command::new(&python)
        .args([
            "-c",
            "import sys, xml.etree.ElementTree as E\n\
             t = E.parse(sys.argv[1])\n\
             ns = '{http://www.w3.org/2000/svg}'\n\
             titles = [e.text for e in t.iter(ns + 'title')]\n\
             print([x for x in titles if x.startswith('all ')][0])",
            &paths[1],
        ])
        .output()
        .expect("python3 runs");
    // inferno writes counts with thousands separators.
    let svg_out = String::from_utf8_lossy(&svg.stdout).replace(',', "");
    assert!(
        svg.status.success(),
        "{}",
        String::from_utf8_lossy(&svg.stderr)
    );
    assert!(
        svg_out.starts_with(&format!("all ({samples} samples")),
        "{svg_out}"
    );
    // pprof: decoded with the schema; the samples' first values add up to the report's.
    let proto = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../profiler-user/src/report/profile/profile.proto"
    );
    let gz = std::fs::read(&paths[2]).expect("pprof written");
    let raw = Command::new("gzip")
        .args(["-dc", &paths[2]])
        .output()
        .expect("gzip runs");
    assert!(raw.status.success() && !gz.is_empty());
    let proto_dir = Path::new(proto).parent().unwrap();
    let mut protoc = Command::new("protoc")
        .args([
            "--decode=perftools.profiles.Profile",
            &format!("--proto_path={}", proto_dir.display()),
            "profile.proto",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("protoc runs (package protobuf-compiler)");
    std::io::Write::write_all(&mut protoc.stdin.take().unwrap(), &raw.stdout).unwrap();
    let decoded = protoc.wait_with_output().expect("protoc ends");
    assert!(decoded.status.success());
    let text = String::from_utf8_lossy(&decoded.stdout);
    let mut in_sample = false;
    let mut first_values = 0;
    for line in text.lines() {
        let line = line.trim();
        if line == "sample {" {
            in_sample = true;
        } else if in_sample && let Some(v) = line.strip_prefix("value: ") {
            first_values += v.parse::<u64>().expect("a value");
            in_sample = false;
        }
    }
    assert_eq!(first_values, samples, "{text}");
    assert!(text.contains("string_table: \"\""), "{text}");
    assert!(text.contains("\"hot_deep\""), "{text}");
    // speedscope: the weights of the sampled profiles add up to the report's samples.
    let check = Command::new(&python)
        .args([
            "-c",
            "import json, sys\n\
             d = json.load(open(sys.argv[1]))\n\
             assert d['$schema'].endswith('file-format-schema.json')\n\
             n = len(d['shared']['frames'])\n\
             total = 0\n\
             for p in d['profiles']:\n\
             \x20   assert p['type'] == 'sampled' and len(p['samples']) == len(p['weights'])\n\
             \x20   assert all(0 <= i < n for s in p['samples'] for i in s)\n\
             \x20   total += sum(p['weights'])\n\
             print(total)",
            &paths[3],
        ])
        .output()
        .expect("python3 runs");
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&check.stdout).trim(),
        samples.to_string()
    );
}

/// A frequency out of range, and an output file of no known format, are user errors.
#[test]
fn bad_frequency_and_output_are_refused() {
    for args in [
        ["--frequency", "0"],
        ["--frequency", "20000"],
        ["--output", "stacks.txt"],
    ] {
        let mut all = vec!["run", "--level", "profiling"];
        all.extend(args);
        all.extend(["--", "true"]);
        let outcome = profile(all);
        let line = outcome.expect_error();
        assert!(
            line.contains("frequency") || line.contains("stacks.txt"),
            "{line}"
        );
    }
}

/// JIT code (V8's, in node) has no unwind table: its frames are unwound by frame pointer, which
/// V8 keeps, and counted as such; the stacks still reach node's own frames and `_start`. The
/// samples node takes in its JIT code before it has a list, sent whole, stop at the budget.
#[test]
fn jit_code_is_unwound_by_frame_pointer_and_counted() {
    require_root!();
    if Command::new("node").arg("--version").output().is_err() {
        profiler_tests::skip!("no node (package nodejs)");
    }
    let dir = TempDir::new();
    let script = "function f() { let s = 0; for (let i = 0; i < 1e6; i++) s += i % 7; return s }\n\
                  const t = Date.now(); while (Date.now() - t < 2000) f()";
    let (_, report, samples) = sample(&dir, &["node", "-e", script]);
    let cpu = report.cpu();
    let context = format!("{}\n{}", samples.context(), cpu.context());
    assert!(cpu.frames("by_frame_pointer_no_table") > 0, "{context}");
    assert!(cpu.complete_percent() >= 90.0, "{context}");
    // JIT code is in no list: it spends the budget of samples sent whole, 512 for the window
    // of `run`'s exec, and 512 more armed once the exec is seen (for a later one).
    assert!(cpu.frames("copied_stacks") <= 2 * 512, "{context}");
}

/// The unwind tables are kept by build-id: a second run of the same program compiles none.
#[test]
fn a_second_run_reads_the_tables_from_the_cache() {
    require_root!();
    let dir = TempDir::new();
    let cache = dir.path().join("cache");
    let cache = cache.to_str().expect("utf-8 path");
    let run = |json: &str| {
        let json = dir.path().join(json);
        let args = [
            "run",
            "--level",
            "profiling",
            "--json",
            json.to_str().expect("utf-8 path"),
            "--",
            victims::CPU_LIB,
            "200",
        ];
        let mut command = profiler_tests::Profiler::command(args);
        command.env("PROFILER_CACHE_DIR", cache);
        profiler_tests::Profiler::spawn(command)
            .finish()
            .expect_success();
        Report::read(&json)
    };
    let first = run("first.json");
    let second = run("second.json");
    let (c1, c2) = (first.cpu(), second.cpu());
    let context = format!("{}\n{}", c1.context(), c2.context());
    // The executable, libcpuhot, libc, the loader and the vDSO at least.
    assert!(c1.tables("compiled") >= 4, "{context}");
    assert_eq!(c1.tables("from_cache"), 0, "{context}");
    assert_eq!(c2.tables("compiled"), 0, "{context}");
    assert_eq!(c2.tables("from_cache"), c1.tables("compiled"), "{context}");
    // Each object's rows once.
    assert_eq!(c1.tables("objects"), c1.tables("compiled"), "{context}");
    assert_eq!(c2.tables("rows"), c1.tables("rows"), "{context}");
}

/// Attached to a single-threaded process that then starts a thread: the new thread inherits its
/// starter's sampling event, and its samples are in the report.
#[test]
fn a_thread_started_after_the_attach_is_sampled() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let json = dir.json();
    let script = "import sys, threading, time\n\
                  def busy():\n\
                  \x20   end = time.time() + 1.5\n\
                  \x20   while time.time() < end:\n\
                  \x20       sum(range(1000))\n\
                  print('ready', flush=True)\n\
                  sys.stdin.readline()\n\
                  t = threading.Thread(target=busy)\n\
                  t.start()\n\
                  print('tid', t.native_id, flush=True)\n\
                  t.join()\n\
                  print('done', flush=True)\n\
                  sys.stdin.readline()\n";
    let mut victim = Victim::start(python.to_str().expect("utf-8 path"), ["-c", script]);
    victim.expect_line("ready");
    let args = [
        "--level",
        "profiling",
        "--frequency",
        FREQUENCY,
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let profiler = attach(&victim, &args);
    victim.proceed();
    let tid: u64 = victim.value_of("tid").parse().expect("a tid");
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    let cpu = report.cpu();
    let late: u64 = cpu
        .threads()
        .iter()
        .filter(|(t, _, _)| *t == tid)
        .map(|(_, _, n)| n)
        .sum();
    // 1.5 s of CPU at 997 Hz; a loaded machine may give it less of the CPU.
    assert!(
        late >= 500,
        "{late} samples of thread {tid}\n{}",
        cpu.context()
    );
}
