//! `profiler report FILE.json` on a real run: the text summary it prints from the JSON alone is
//! the one the run printed; with `--html` it writes the page, and `--text` prints the summary
//! too. Files that are not reports of this version end in one `error:` line.

use profiler_tests::{TempDir, process::profile, require_root, run_reported};

/// `tests/victims/mem_victim.c`, built by build.rs: traced functions, leaks, a spin and a
/// failed open of its model, with every family but python at `--level full`; it prints nothing
/// on stdout, so the profiler's stdout is its summary alone.
const VICTIM: &str = env!("VICTIM_MEM_VICTIM");

#[test]
fn the_summary_prints_again_from_the_json_alone() {
    require_root!();
    let dir = TempDir::new();
    let mut args = vec!["--level", "full"];
    for f in ["drop_blocks", "tidy", "free_all", "load_model", "burn"] {
        args.extend(["--func", f]);
    }
    let (run, _) = run_reported(&dir, &args, &[VICTIM, "report", "20"], &[]);
    let printed = &run.stdout;
    // The summary, every family's block in it, and nothing else.
    assert!(printed.starts_with("profiler "), "{printed}");
    for block in [
        "\nfunction ",
        "\nerrors: ",
        "\nmemory: ",
        "\nthreads: ",
        "\ncpu: ",
    ] {
        assert!(printed.contains(block), "no {block:?} in:\n{printed}");
    }
    assert!(printed.contains("\noverhead: "), "{printed}");

    let json = dir.json();
    let json = json.to_str().expect("utf-8 path");
    let again = profile(["report", json]);
    again.expect_success();
    assert_eq!(
        again.stdout, *printed,
        "profiler report prints another summary"
    );
    assert_eq!(again.stderr, "", "nothing but the summary");

    // With --html the page alone, and the summary too with --text.
    let page = dir.path().join("page.html");
    let page = page.to_str().expect("utf-8 path");
    let html = profile(["report", json, "--html", page]);
    html.expect_success();
    assert_eq!(html.stdout, "");
    assert_eq!(html.stderr, format!("report written to {page}\n"));
    let first_page = std::fs::read(page).expect("the page");
    std::fs::remove_file(page).expect("remove the page");
    let both = profile(["report", json, "--html", page, "--text"]);
    both.expect_success();
    assert_eq!(both.stdout, *printed);
    assert_eq!(both.stderr, format!("report written to {page}\n"));
    assert_eq!(std::fs::read(page).expect("the page"), first_page);
}

#[test]
fn the_summary_refuses_what_is_not_a_report_of_this_version_in_one_line() {
    let dir = TempDir::new();
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path
    };
    let cases = [
        (dir.path().join("missing.json"), "cannot read the report"),
        (
            write("garbled.json", "{\"schema_version\": "),
            "is not a JSON report",
        ),
        (
            write("deep.json", &"[".repeat(100_000)),
            "is not a JSON report",
        ),
        (write("other.json", "[1, 2]"), "not a profiler report"),
        (
            write("old.json", "{\"schema_version\": \"2.4\", \"target\": {}}"),
            "has schema 2.4, and this profiler reads schema 3.x only",
        ),
        (
            write(
                "partial.json",
                "{\"schema_version\": \"3.1\", \"profiler\": {}}",
            ),
            "is not a profiler report this version can read: missing field",
        ),
        (
            write(
                "mistyped.json",
                "{\"schema_version\": \"3.1\", \"profiler\": {\"version\": 1}}",
            ),
            "is not a profiler report this version can read: invalid type",
        ),
    ];
    for (input, says) in &cases {
        let input = input.to_str().expect("utf-8 path");
        for args in [vec!["report", input], vec!["report", input, "--text"]] {
            let outcome = profile(&args);
            let line = outcome.expect_error();
            assert!(line.contains(says), "{args:?}: {line}");
            assert!(line.contains(input), "{args:?} names the file: {line}");
            assert_eq!(outcome.status.code(), Some(1), "{args:?}");
            assert_eq!(outcome.stdout, "", "{args:?}");
        }
    }
    // The summary is refused before the page is written.
    let page = dir.path().join("page.html");
    let old = cases[4].0.to_str().expect("utf-8 path");
    let page_arg = page.to_str().expect("utf-8 path");
    let line = profile(["report", old, "--html", page_arg, "--text"])
        .expect_error()
        .to_string();
    assert!(line.contains("has schema 2.4"), "{line}");
    assert!(!page.exists(), "no page written when the summary cannot be");
}
