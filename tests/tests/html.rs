//! The HTML report on a real run: `profiler run --html` on a victim that traces functions,
//! leaks, spins and fails to open its model, then the page opened in headless Chromium, whose
//! self-test (`#selftest`) opens every tab and writes what each shows into the page; and
//! `profiler report` on that JSON, and on files that are not reports.
//!
//! Screenshots of each tab are kept under `target/html-report/` (not committed) for a person to
//! look at.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use profiler_tests::{TempDir, process::profile, require_root, run_reported, skip};

/// `tests/victims/mem_victim.c`, built by build.rs.
const VICTIM: &str = env!("VICTIM_MEM_VICTIM");

/// The tabs of a report at `--level full`: the four always there, then one per family section.
const TABS: [&str; 8] = [
    "debug",
    "performance",
    "errors",
    "system",
    "memory",
    "threads",
    "cpu",
    "python",
];

/// Where the tests look for Chromium (Debian's `chromium`, which `cargo xtask test` installs).
const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium, headless, with a fresh profile directory under `dir`, and the flags that keep it
/// from reaching the network on its own (this machine refuses its connections).
fn chromium(dir: &Path, name: &str) -> Command {
    let profile = dir.join(format!("chromium-{name}"));
    let mut cmd = Command::new(CHROMIUM);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--enable-logging=stderr",
        "--v=0",
        "--virtual-time-budget=5000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()));
    cmd
}

/// The page's DOM after its script ran with `#hash`, and what Chromium logged.
fn dump_dom(dir: &Path, page: &Path, hash: &str) -> (String, String) {
    let out = chromium(dir, hash)
        .arg("--dump-dom")
        .arg(format!("file://{}#{hash}", page.display()))
        .output()
        .unwrap_or_else(|e| panic!("failed to run {CHROMIUM}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "chromium failed: {stderr}");
    (stdout, stderr)
}

/// The text of `<pre id="selftest">` in a dumped DOM, unescaped.
fn selftest(dom: &str) -> String {
    let start = dom
        .find("<pre id=\"selftest\"")
        .unwrap_or_else(|| panic!("no selftest block in the page:\n{dom}"));
    let body = &dom[start..];
    let body = &body[body.find('>').expect("the tag's end") + 1..];
    let body = &body[..body.find("</pre>").expect("the block's end")];
    body.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// What the self-test wrote for one tab: from its `TAB id` line to the next.
fn tab<'a>(text: &'a str, id: &str) -> &'a str {
    let head = format!("TAB {id} ");
    let start = text
        .find(&head)
        .unwrap_or_else(|| panic!("no tab {id} in the self-test:\n{text}"));
    let rest = &text[start + head.len()..];
    let end = ["\nTAB ", "\nERRORS "]
        .iter()
        .filter_map(|m| rest.find(m))
        .min()
        .unwrap_or(rest.len());
    &text[start..start + head.len() + end]
}

/// Where the screenshots are kept: `target/html-report/`.
fn artifacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/html-report");
    std::fs::create_dir_all(&dir)
        .unwrap_or_else(|e| panic!("failed to create {}: {e}", dir.display()));
    dir
}

#[test]
fn a_real_run_renders_every_tab_in_a_browser() {
    require_root!();
    if !Path::new(CHROMIUM).is_file() {
        skip!("chromium ({CHROMIUM} is missing: apt-get install chromium)");
    }
    let dir = TempDir::new();
    let page = dir.path().join("report.html");
    let page_arg = page.to_str().expect("utf-8 path");
    let funcs = ["drop_blocks", "tidy", "free_all", "load_model", "burn"];
    let mut args = vec!["--level", "full", "--html", page_arg];
    for f in &funcs {
        args.extend(["--func", f]);
    }
    let (_, report) = run_reported(&dir, &args, &[VICTIM, "report", "20"], &[]);
    assert_eq!(
        report.run_status(),
        Some(1),
        "the victim fails to load its model"
    );

    let html = std::fs::read_to_string(&page).expect("the HTML report");
    let mode = std::fs::metadata(&page).expect("its metadata");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o777,
        0o600,
        "mode 0600, as the JSON"
    );
    for needle in ["http://", "https://", "src=\"", "href=\"", "url("] {
        assert!(
            !html.contains(needle),
            "the page has {needle}: it must fetch nothing"
        );
    }

    let (dom, log) = dump_dom(dir.path(), &page, "selftest");
    let text = selftest(&dom);
    assert!(
        text.contains("SELFTEST DONE"),
        "the self-test did not end:\n{text}"
    );
    assert!(
        text.contains("ERRORS 0"),
        "the page's script failed:\n{text}"
    );
    for line in log.lines().filter(|l| l.contains("CONSOLE")) {
        assert!(
            !line.contains("Uncaught") && !line.contains("Error"),
            "a console error: {line}"
        );
    }

    for id in TABS {
        assert!(
            tab(&text, id).contains("visible=true"),
            "tab {id} is not shown"
        );
    }
    let debug = tab(&text, "debug");
    assert!(debug.contains("exited with code 1"), "{debug}");
    assert!(
        debug.contains("Event log") && debug.contains("ENOENT"),
        "{debug}"
    );
    let perf = tab(&text, "performance");
    for f in &funcs {
        assert!(perf.contains(f), "no {f} in the functions table:\n{perf}");
    }
    assert!(
        perf.contains(" µs") || perf.contains(" ms"),
        "times with units: {perf}"
    );
    assert!(
        text.contains("FLAME rects="),
        "no flame graph drawn:\n{text}"
    );
    assert!(
        !text.contains("FLAME rects=0"),
        "an empty flame graph:\n{text}"
    );
    assert!(
        !perf.contains("svgs=0"),
        "no histogram or flame graph SVG:\n{perf}"
    );
    let errors = tab(&text, "errors");
    assert!(errors.contains("MODEL_NOT_FOUND"), "{errors}");
    assert!(errors.contains("Solutions"), "{errors}");
    assert!(errors.contains("svgs=1"), "no timeline:\n{errors}");
    let system = tab(&text, "system");
    assert!(
        system.contains("svgs=2"),
        "no CPU and RSS charts:\n{system}"
    );
    assert!(system.contains("What profiling cost"), "{system}");
    let memory = tab(&text, "memory");
    assert!(memory.contains("leak detected"), "{memory}");
    assert!(
        memory.contains("definitely lost") && memory.contains("drop_blocks"),
        "{memory}"
    );
    assert!(tab(&text, "threads").contains("mem_victim"), "{text}");

    let kept = artifacts();
    for id in TABS {
        let shot = kept.join(format!("{id}.png"));
        let out = chromium(dir.path(), &format!("shot-{id}"))
            .arg(format!("--screenshot={}", shot.display()))
            .arg("--window-size=1280,900")
            .arg(format!("file://{}#{id}", page.display()))
            .output()
            .expect("chromium runs");
        assert!(
            out.status.success() && shot.is_file(),
            "no screenshot of {id}"
        );
    }

    // The saved JSON renders through `profiler report` into the same page.
    let again = dir.path().join("again.html");
    let json = dir.json();
    profile([
        "report",
        json.to_str().expect("utf-8 path"),
        "--html",
        again.to_str().expect("utf-8 path"),
    ])
    .expect_success();
    let again = std::fs::read_to_string(&again).expect("the rendered report");
    // The sort keys are the raw numbers, which a float may not read back to the last bit.
    let (a, b) = (without_sort_keys(&html), without_sort_keys(&again));
    if let Some(at) = a.bytes().zip(b.bytes()).position(|(x, y)| x != y) {
        let near = |s: &str| s[at.saturating_sub(200)..(at + 200).min(s.len())].to_string();
        panic!(
            "profiler report renders another page than --html wrote, at byte {at}:\n{}\n---\n{}",
            near(&a),
            near(&b)
        );
    }
    assert_eq!(
        a.len(),
        b.len(),
        "profiler report renders what --html wrote"
    );
}

/// The page without its `data-v="..."` attributes.
fn without_sort_keys(page: &str) -> String {
    let mut out = String::with_capacity(page.len());
    let mut rest = page;
    while let Some(start) = rest.find(" data-v=\"") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 9..];
        rest = &after[after.find('"').map_or(after.len(), |e| e + 1)..];
    }
    out.push_str(rest);
    out
}

#[test]
fn report_refuses_what_is_not_a_report_in_one_line() {
    let dir = TempDir::new();
    let out = dir.path().join("out.html");
    let out_arg = out.to_str().expect("utf-8 path");
    let missing = dir.path().join("missing.json");
    let garbled = dir.path().join("garbled.json");
    std::fs::write(&garbled, "{\"schema_version\": ").expect("write");
    let other = dir.path().join("other.json");
    std::fs::write(&other, "[1, 2]").expect("write");
    for (input, says) in [
        (&missing, "cannot read the report"),
        (&garbled, "is not a JSON report"),
        (&other, "not a profiler report"),
    ] {
        let outcome = profile(["report", input.to_str().expect("utf-8"), "--html", out_arg]);
        let line = outcome.expect_error();
        assert!(line.contains(says), "{line}");
    }
    assert!(!out.exists(), "no page written for a bad report");
}

/// The GPU tab on a real run of the gpu family's victim (the stub CUDA libraries): it renders
/// without a script error, with the allocation sites and their verdicts, the kernels, and the
/// failed calls with their group on the Errors tab.
#[test]
fn the_gpu_tab_renders_in_a_browser() {
    require_root!();
    if !Path::new(CHROMIUM).is_file() {
        skip!("chromium ({CHROMIUM} is missing: apt-get install chromium)");
    }
    let dir = TempDir::new();
    let page = dir.path().join("report.html");
    let args = [
        "--level",
        "memory",
        "--html",
        page.to_str().expect("utf-8 path"),
    ];
    run_reported(&dir, &args, &[env!("VICTIM_GPU")], &[]);
    let (dom, _) = dump_dom(dir.path(), &page, "selftest");
    let text = selftest(&dom);
    assert!(text.contains("SELFTEST DONE"), "{text}");
    assert!(
        text.contains("ERRORS 0"),
        "the page's script failed:\n{text}"
    );
    let gpu = tab(&text, "gpu");
    assert!(
        gpu.contains("visible=true"),
        "tab gpu is not shown:\n{text}"
    );
    for needle in [
        "libcudart.so.12",
        "libcuda.so.1",
        "mapped later",
        "leak_buffers",
        "definitely lost",
        "keep_buffers",
        "vector_add",
        "matmul_kernel",
        "cudaErrorMemoryAllocation",
        "CUDA_OUT_OF_MEMORY",
    ] {
        assert!(gpu.contains(needle), "no {needle} in the GPU tab:\n{gpu}");
    }
}
