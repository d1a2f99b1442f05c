//! Secrets in what the profiler writes and prints, against real processes: the target's command
//! line reaches neither the report nor the profiler's output with its secrets, and the report
//! file is replaced with mode 0600 whatever was at its path before.

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use profiler_tests::{Report, TempDir, require_root, run_reported};
use serde_json::json;

/// The target: a program that ignores its arguments and prints nothing, so that whatever the
/// profiler's output holds is the profiler's own.
const TRUE: &str = "/bin/true";

/// `profiler run --level basic -- CMD...`; what the profiler printed (stdout and stderr), the
/// report file's text, and the report.
fn run(dir: &TempDir, cmd: &[&str]) -> (String, String, Report) {
    let (out, report) = run_reported(dir, &["--level", "basic"], cmd, &[]);
    let printed = format!("{}{}", out.stdout, out.stderr);
    let text = std::fs::read_to_string(dir.json()).expect("the report");
    (printed, text, report)
}

/// Fails unless no part of `secrets` is in the report text or in what the profiler printed.
fn assert_nowhere(secrets: &[&str], text: &str, printed: &str) {
    for secret in secrets {
        assert!(!text.contains(secret), "{secret} in the report:\n{text}");
        assert!(
            !printed.contains(secret),
            "{secret} in the profiler's output:\n{printed}"
        );
    }
}

#[test]
fn an_api_key_in_argv_reaches_neither_the_report_nor_the_output() {
    require_root!();
    let dir = TempDir::new();
    let key = "sk-live-4f9a8b7c6d5e4f3a2b1c0d9e";
    let (printed, text, report) = run(&dir, &[TRUE, "--api-key", key, "--port", "8080"]);
    assert_nowhere(&[key, "4f9a8b7c6d5e4f3a2b1c0d9e"], &text, &printed);
    assert_eq!(
        report.at("/target/cmdline"),
        &json!([TRUE, "--api-key", "[REDACTED]", "--port", "8080"])
    );
}

#[test]
fn a_url_password_in_argv_reaches_neither_the_report_nor_the_output() {
    require_root!();
    let dir = TempDir::new();
    let url = "postgres://u:pw@h/db";
    let (printed, text, report) = run(&dir, &[TRUE, "--db", url]);
    assert_nowhere(&[url, ":pw@"], &text, &printed);
    assert_eq!(
        report.at("/target/cmdline"),
        &json!([TRUE, "--db", "postgres://u:[REDACTED]@h/db"])
    );
}

#[test]
fn an_existing_0644_report_is_replaced_by_a_0600_one() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    std::fs::write(&json, "a stale report\n").unwrap();
    std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o644)).unwrap();
    let stale_inode = std::fs::metadata(&json).unwrap().ino();
    let (_, text, report) = run(&dir, &[TRUE]);
    assert!(!text.contains("a stale report"), "{text}");
    assert_eq!(report.at("/target/cmdline"), &json!([TRUE]));
    let meta = std::fs::metadata(&json).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "report mode");
    assert_ne!(meta.ino(), stale_inode, "the stale file was reused");
    // Nothing left beside it (the file written before the rename is gone).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json"]);
}
