//! The python family on real interpreters: Python frames (function, file, line) spliced into the
//! cpu family's native stacks where they pass through the eval loop, with each function's share
//! what the victim measured; and every exception raised counted exactly at its line, caught or
//! not, in `run` and `attach` mode, on the system's python3 (Debian's 3.11, a static
//! executable) and the image's own builds of 3.10 to 3.13 (`libpython3.X.so`).

use std::path::Path;

use profiler_tests::{
    Outcome, Report, Site, TempDir, Victim, attach, attach_through_done, pyenv_python,
    require_python, require_root, run_reported, skip, victims,
};

/// Samples a second: 2 s give about 2000, a share to about a point.
const FREQUENCY: &str = "997";

/// Points a function's sampled share may be off what the victim measured.
const SHARE_POINTS: f64 = 5.0;

/// The KeyErrors the exception victim raises and catches.
const RAISES: u64 = 10_000;

/// The site of the victim's caught KeyErrors, and panics unless it is exactly one, with the
/// exact count, at the marked line.
fn keyerror_site(report: &Report) -> Site {
    let python = report.python();
    let sites = python.sites_of("KeyError", "lookup");
    assert_eq!(sites.len(), 1, "{}", python.context());
    let site = sites[0].clone();
    assert_eq!(site.raised, RAISES, "{}", python.context());
    assert_eq!(site.uncaught, 0, "{}", python.context());
    assert_eq!(
        site.line,
        Some(victims::line_of(victims::PY_RAISE, "# RAISES")),
        "{}",
        python.context()
    );
    assert!(
        site.file
            .as_deref()
            .is_some_and(|f| f.ends_with("py_raise.py")),
        "{site:?}"
    );
    assert_eq!(site.message.as_deref(), Some("missing"), "{site:?}");
    site
}

/// The errors section holds the same exact count, and an example of it, caught and low.
fn errors_agree(report: &Report, site: &Site) {
    let counts = report.python_exception_counts();
    let row = counts
        .iter()
        .find(|r| r.exception == "KeyError" && r.function == "lookup")
        .unwrap_or_else(|| panic!("no KeyError row in errors.python_exceptions: {counts:?}"));
    assert_eq!((row.raised, row.line), (site.raised, site.line));
    let by_source = report.at("/errors/by_source/python_exception").as_u64();
    assert!(by_source >= Some(RAISES), "{by_source:?}");
    let examples: Vec<_> = report
        .at("/errors/events")
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| {
            e["source"] == "python_exception"
                && e["error_type"] == "KeyError"
                && e["context"]["frames"][0]["function"] == "lookup"
        })
        .collect();
    assert!(!examples.is_empty(), "no python_exception example");
    for e in examples {
        assert_eq!(e["context"]["caught"], true, "{e:#}");
        assert_eq!(e["severity"], "low", "{e:#}");
        assert_eq!(e["message"], "KeyError: missing", "{e:#}");
    }
}

/// `profiler run --level LEVEL -- PYTHON SCRIPT ARGS...` to its end: what it printed, and its
/// report.
fn run_script(python: &Path, level: &str, script: &str, args: &[&str]) -> (Outcome, Report) {
    run_script_with(python, &["--level", level], script, args)
}

/// As [`run_script`], with the profiler's options `options`.
fn run_script_with(
    python: &Path,
    options: &[&str],
    script: &str,
    args: &[&str],
) -> (Outcome, Report) {
    let dir = TempDir::new();
    let mut cmd = vec![python.to_str().expect("utf-8 path"), script];
    cmd.extend_from_slice(args);
    run_reported(&dir, options, &cmd, &[])
}

/// Every allocation tracked: the memory level with the allocator's (and pymalloc's) probes.
const MEMORY_EXACT: [&str; 4] = ["--level", "memory", "--memory", "exact"];

fn run_raise(python: &Path) -> Report {
    let (outcome, report) = run_script(python, "basic", victims::PY_RAISE, &[&RAISES.to_string()]);
    assert_eq!(outcome.count_line("raised"), RAISES);
    report
}

/// The system's python3: 10,000 KeyErrors raised and caught at one line are counted exactly
/// there, with their message, and reach the errors family.
#[test]
fn caught_exceptions_are_counted_exactly_at_their_line() {
    require_root!();
    let python = require_python!();
    let report = run_raise(&python);
    let site = keyerror_site(&report);
    errors_agree(&report, &site);
    assert_eq!(report.python().uncaught(), 0);
}

/// The same on the image's builds of 3.10, 3.11, 3.12 and 3.13 (3.10 walks `PyFrameObject`s
/// and finds its threads by their `pthread_t`; 3.13 finds its offsets in `_Py_DebugOffsets`,
/// and its `_PyErr_SetObject` is split by the compiler).
#[test]
fn every_supported_version_counts_the_same() {
    require_root!();
    for minor in [10, 11, 12, 13] {
        let python = match pyenv_python(minor) {
            Ok(p) => p,
            Err(why) => skip!("{why}"),
        };
        let report = run_raise(&python);
        let py = report.python();
        // 3.10 keeps no `Py_Version`: its version is its file's name.
        let version = py.version();
        assert!(
            version == format!("3.{minor}") || version.starts_with(&format!("3.{minor}.")),
            "{}",
            py.context()
        );
        let expected = if minor >= 13 {
            "_Py_DebugOffsets"
        } else {
            "built-in table"
        };
        assert_eq!(py.offsets(), expected);
        keyerror_site(&report);
    }
}

/// An exception nothing catches: reported unhandled at the line that raised it, once, and the
/// errors family's example of it reads uncaught.
#[test]
fn an_unhandled_exception_is_marked_at_its_raise() {
    require_root!();
    let python = require_python!();
    let (_, report) = run_script(&python, "basic", victims::PY_RAISE, &["--uncaught", "10"]);
    let py = report.python();
    assert_eq!(py.uncaught(), 1, "{}", py.context());
    let sites = py.sites_of("ValueError", "fail");
    assert_eq!(sites.len(), 1, "{}", py.context());
    assert_eq!((sites[0].raised, sites[0].uncaught), (1, 1));
    assert_eq!(
        sites[0].line,
        Some(victims::line_of(victims::PY_RAISE, "# UNCAUGHT"))
    );
    assert_eq!(sites[0].message.as_deref(), Some("bad value 42"));
    let example = report
        .at("/errors/events")
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["source"] == "python_exception" && e["error_type"] == "ValueError")
        .cloned()
        .expect("a python_exception example of the ValueError");
    assert_eq!(example["context"]["caught"], false, "{example:#}");
    assert_ne!(example["severity"], "low", "{example:#}");
}

/// Attached to a running interpreter: the interpreter is found in the running process, and
/// every raise after the attach is counted.
#[test]
fn attach_counts_the_raises_after_it() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::start(
        python.to_str().expect("utf-8 path"),
        [victims::PY_RAISE, "--wait", &RAISES.to_string()],
    );
    victim.expect_line("ready");
    attach_through_done(
        &mut victim,
        &[
            "--level",
            "basic",
            "--json",
            json.to_str().expect("utf-8 path"),
        ],
    );
    let report = Report::read(&json);
    let site = keyerror_site(&report);
    errors_agree(&report, &site);
}

/// One line of folded stacks, outermost first.
fn folded(path: &Path) -> Vec<(Vec<String>, u64)> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|line| {
            let (stack, count) = line.rsplit_once(' ').expect("a count");
            let frames = stack.split(';').skip(1).map(str::to_string).collect();
            (frames, count.parse().expect("a count"))
        })
        .collect()
}

/// Samples of `stacks` with a frame of Python function `name` (`name (file:line)`).
fn with(stacks: &[(Vec<String>, u64)], name: &str) -> u64 {
    let prefix = format!("{name} (");
    stacks
        .iter()
        .filter(|(f, _)| f.iter().any(|x| x.starts_with(&prefix)))
        .map(|(_, n)| n)
        .sum()
}

/// Checks the split victim's samples: `hot` (three Python frames deep) and `cold` (two) share
/// the samples as the victim measured, and every stack with them reads, outermost first, the
/// native frames down to the eval loop, then `outer (py_split.py:N)` and the rest.
fn check_split(stdout: &str, stacks: &[(Vec<String>, u64)], report: &Report) {
    let seconds = |label: &str| -> f64 {
        stdout
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{label}_seconds ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {label}_seconds in {stdout}"))
    };
    let measured = 100.0 * seconds("hot") / (seconds("hot") + seconds("cold"));
    let (hot, cold) = (with(stacks, "hot"), with(stacks, "cold"));
    let sampled = 100.0 * hot as f64 / (hot + cold).max(1) as f64;
    let context = format!("{}\n{}", report.python().context(), report.cpu().context());
    assert!(hot + cold >= 500, "{hot} + {cold} samples\n{context}");
    assert!(
        (sampled - measured).abs() <= SHARE_POINTS,
        "hot: sampled {sampled:.1}%, measured {measured:.1}%\n{context}"
    );
    let mut checked = 0;
    for (frames, n) in stacks {
        let Some(leaf) = frames.iter().position(|f| f.starts_with("hot (")) else {
            continue;
        };
        let at = |name: &str| {
            frames
                .iter()
                .position(|f| f.starts_with(&format!("{name} (")))
        };
        let (outer, middle) = (at("outer"), at("middle"));
        assert!(
            outer < middle && middle < Some(leaf),
            "Python frames out of order: {frames:?}"
        );
        let outer = outer.expect("outer");
        assert!(
            frames[outer].contains("py_split.py:"),
            "no file and line: {}",
            frames[outer]
        );
        // The eval loop runs outer(): it is the native frame right outside the Python frames
        // of that call (3.11 runs main(), outer(), middle() and hot() in one eval frame).
        let eval = frames[..outer]
            .iter()
            .rposition(|f| !f.contains(".py:"))
            .expect("a native frame above the Python frames");
        assert_eq!(frames[eval], "_PyEval_EvalFrameDefault", "{frames:?}");
        assert!(
            frames[0] == "_start" || frames.iter().any(|f| f == "Py_BytesMain"),
            "the stack does not reach the program's start: {frames:?}"
        );
        checked += n;
    }
    assert!(checked >= hot / 2, "{checked} of {hot} stacks checked");
    // The report's shares name the Python functions with their file and line.
    let hot_row = report
        .at("/cpu/top_total")
        .as_array()
        .expect("top_total")
        .iter()
        .find(|r| r["function"] == "hot")
        .cloned()
        .unwrap_or_else(|| panic!("no hot in top_total\n{context}"));
    assert!(
        hot_row["file"]
            .as_str()
            .is_some_and(|f| f.ends_with("py_split.py")),
        "{hot_row:#}"
    );
    assert!(hot_row["line"].as_u64().is_some(), "{hot_row:#}");
}

/// The profiler's arguments for sampling at [`FREQUENCY`], the stacks folded into `out` (and
/// the report written to `json`).
fn sampling(out: &Path, json: Option<&Path>) -> Vec<String> {
    let mut args: Vec<String> = ["--level", "profiling", "--frequency", FREQUENCY, "--output"]
        .map(String::from)
        .into();
    args.push(out.display().to_string());
    if let Some(json) = json {
        args.extend(["--json".into(), json.display().to_string()]);
    }
    args
}

/// `run`: a CPU split between two Python functions at different depths, with the Python frames
/// under the native frames that called the interpreter.
#[test]
fn python_functions_share_the_samples_as_measured() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let out = dir.path().join("stacks.folded");
    let args = sampling(&out, None);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let python = python.to_str().expect("utf-8 path");
    let (outcome, report) = run_reported(&dir, &args, &[python, victims::PY_SPLIT, "2000"], &[]);
    check_split(&outcome.stdout, &folded(&out), &report);
    assert!(report.python().threads() >= 1);
}

/// `attach`: the same split, from a process running before the profiler started.
#[test]
fn attach_splices_python_frames_too() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let json = dir.json();
    let out = dir.path().join("stacks.folded");
    let mut victim = Victim::start(
        python.to_str().expect("utf-8 path"),
        [victims::PY_SPLIT, "--wait", "2000"],
    );
    victim.expect_line("ready");
    let args = sampling(&out, Some(&json));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let profiler = attach(&victim, &args);
    victim.proceed();
    let hot = victim.value_of("hot_seconds");
    let cold = victim.value_of("cold_seconds");
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    let stdout = format!("hot_seconds {hot}\ncold_seconds {cold}\n");
    check_split(&stdout, &folded(&out), &report);
}

/// Objects kept by the growing list.
const GROWN: u64 = 40_000;

/// With the memory family, pymalloc's blocks are charged to Python lines: the line that grows a
/// list of objects is the top growth site (ahead of the line that makes and drops lists, and of
/// the imports), with an item's bytes for each it kept, all freed at the program's end. On the
/// image's builds of 3.11 and 3.12, which call `PyObject_Malloc` and `PyObject_Free`.
#[test]
fn a_growing_list_is_the_top_growth_site() {
    require_root!();
    for minor in [11, 12] {
        let python = match pyenv_python(minor) {
            Ok(p) => p,
            Err(why) => skip!("{why}"),
        };
        let (outcome, report) = run_script_with(
            &python,
            &MEMORY_EXACT,
            victims::PY_GROW,
            &[&GROWN.to_string()],
        );
        assert_eq!(outcome.count_line("kept"), GROWN);
        let allocations = report.at("/python/allocations");
        let context = format!("{allocations:#}");
        assert!(allocations["partial"].is_null(), "{context}");
        let sites = allocations["sites"].as_array().expect("sites");
        let top = &sites[0];
        assert_eq!(top["function"], "grow", "{context}");
        assert_eq!(
            top["line"].as_u64(),
            Some(victims::line_of(victims::PY_GROW, "# GROWS")),
            "{context}"
        );
        // An item: its bytes and its tuple (which may come from the interpreter's free list
        // of tuples, no allocation then), at least 250 bytes.
        assert!(top["allocations"].as_u64() >= Some(GROWN), "{context}");
        assert!(
            top["peak_bytes"].as_i64() >= Some(250 * GROWN as i64),
            "{context}"
        );
        // What it kept, the program's end freed: every block of the site was seen freed.
        assert_eq!(top["outstanding_bytes"], 0, "{context}");
    }
}

/// Debian's python3.11 is built with LTO: pymalloc is inlined into its hot paths, and the
/// probes see part of the allocations and frees. The section says so rather than report
/// overstated outstanding bytes as they are.
#[test]
fn a_build_that_inlines_pymalloc_is_said_to_be_partial() {
    require_root!();
    let python = require_python!();
    let (_, report) = run_script_with(
        &python,
        &MEMORY_EXACT,
        victims::PY_GROW,
        &[&GROWN.to_string()],
    );
    let partial = report.at("/python/allocations/partial");
    assert!(
        partial
            .as_str()
            .is_some_and(|p| p.contains("inlines pymalloc")),
        "{partial}"
    );
}

/// A failed open in a Python function: the errors family's event of the failed `openat` carries
/// the Python stack it was made from, with the function and the line of the `open`.
#[test]
fn a_failed_syscall_names_the_python_line_that_made_it() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let script = dir.path().join("load.py");
    let missing = dir.path().join("weights/model.bin");
    // The sleep lets the profiler read the interpreter's list of threads (it reads it every
    // 20 ms; a thread's Python frames are walked from then on).
    std::fs::write(
        &script,
        format!(
            "import time\n\
             def load_weights(path):\n\
             \x20   with open(path, 'rb') as f:  # OPEN\n\
             \x20       return f.read()\n\
             time.sleep(0.3)\n\
             try:\n\
             \x20   load_weights({:?})\n\
             except FileNotFoundError:\n\
             \x20   pass\n",
            missing.display().to_string()
        ),
    )
    .expect("the script");
    let python = python.to_str().expect("utf-8 path");
    let (_, report) = run_reported(
        &dir,
        &["--level", "basic"],
        &[python, script.to_str().expect("utf-8 path")],
        &[],
    );
    let path = missing.display().to_string();
    let event = report
        .at("/errors/events")
        .as_array()
        .expect("events")
        .iter()
        .find(|e| e["source"] == "syscall" && e["context"]["path"] == path.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no failed open of {path}: {:#}", report.at("/errors")));
    let frames = &event["context"]["frames"];
    assert_eq!(frames[0]["function"], "load_weights", "{event:#}");
    assert_eq!(frames[0]["line"], 3, "{event:#}");
    assert_eq!(frames[1]["function"], "<module>", "{event:#}");
}

/// A Python thread that sleeps in a Python function: with the threads family, its blocking stack
/// holds that function at the line of the sleep, inside the native frames of the sleep.
#[test]
fn a_blocking_stack_names_the_python_line_that_blocked() {
    require_root!();
    let python = require_python!();
    let dir = TempDir::new();
    let script = dir.path().join("nap.py");
    std::fs::write(
        &script,
        "import threading, time\n\
         def nap():\n\
         \x20   for _ in range(30):\n\
         \x20       time.sleep(0.02)  # NAP\n\
         time.sleep(0.1)\n\
         t = threading.Thread(target=nap)\n\
         t.start()\n\
         t.join()\n",
    )
    .expect("the script");
    let python = python.to_str().expect("utf-8 path");
    let (_, report) = run_reported(
        &dir,
        &["--level", "threading"],
        &[python, script.to_str().expect("utf-8 path")],
        &[],
    );
    let threads = report.at("/threads/threads").as_array().expect("threads");
    let stacks: Vec<&serde_json::Value> = threads
        .iter()
        .flat_map(|t| t["top_blocking_stacks"].as_array().into_iter().flatten())
        .collect();
    let nap = stacks
        .iter()
        .find(|b| {
            b["stack"]
                .as_array()
                .is_some_and(|f| f.iter().any(|x| x["function"] == "nap"))
        })
        .unwrap_or_else(|| panic!("no blocking stack in nap: {:#}", report.at("/threads")));
    assert_eq!(nap["reason"], "sleep", "{nap:#}");
    assert!(nap["count"].as_u64() >= Some(20), "{nap:#}");
    let frames = nap["stack"].as_array().expect("frames");
    let at = frames
        .iter()
        .position(|f| f["function"] == "nap")
        .expect("nap");
    assert_eq!(frames[at]["line"], 4, "{nap:#}");
    // Inside the native frames of the sleep, and above the eval loop that ran it.
    assert!(at > 0, "{nap:#}");
    assert!(
        frames[at..]
            .iter()
            .any(|f| f["function"] == "_PyEval_EvalFrameDefault"),
        "{nap:#}"
    );
}
