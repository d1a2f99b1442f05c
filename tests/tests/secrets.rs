//! Secrets in what the profiler writes and prints, against real processes: the target's command
//! line reaches neither the report nor the profiler's output with its secrets, and the report
//! file is replaced with mode 0600 whatever was at its path before.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt, chown, lchown, symlink},
    path::{Path, PathBuf},
    process::Command,
};

use profiler_tests::{
    Profiler, Report, TempDir, process::profile, require_root, run_reported, skip,
};
use serde_json::json;

/// The target: a program that ignores its arguments and prints nothing, so that whatever the
/// profiler's output holds is the profiler's own.
const TRUE: &str = "/bin/true";

/// Another user: nobody.
const NOBODY: u32 = 65534;

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
fn an_existing_0644_report_of_another_user_is_replaced_by_a_0600_one() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    std::fs::write(&json, "a stale report\n").unwrap();
    std::fs::set_permissions(&json, std::fs::Permissions::from_mode(0o644)).unwrap();
    chown(&json, Some(NOBODY), Some(NOBODY)).unwrap();
    let stale_inode = std::fs::metadata(&json).unwrap().ino();
    let (_, text, report) = run(&dir, &[TRUE]);
    assert!(!text.contains("a stale report"), "{text}");
    assert_eq!(report.at("/target/cmdline"), &json!([TRUE]));
    let meta = std::fs::metadata(&json).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600, "report mode");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the report's owner");
    assert_ne!(meta.ino(), stale_inode, "the stale file was reused");
    // Nothing left beside it (the file written before the rename is gone).
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["report.json"]);
}

/// What an attacker sets up in a world-writable sticky directory they own: a symlink at the
/// report's path pointing to a root-owned file. Returns the directory, the report's path and
/// the root-owned file (mode 0644, "untouched").
fn planted_symlink(dir: &TempDir) -> (PathBuf, PathBuf, PathBuf) {
    let sticky = dir.path().join("sticky");
    fs::create_dir(&sticky).unwrap();
    chown(&sticky, Some(NOBODY), Some(NOBODY)).unwrap();
    fs::set_permissions(&sticky, fs::Permissions::from_mode(0o1777)).unwrap();
    let victim = dir.path().join("root-owned");
    fs::write(&victim, "untouched\n").unwrap();
    fs::set_permissions(&victim, fs::Permissions::from_mode(0o644)).unwrap();
    let json = sticky.join("report.json");
    symlink(&victim, &json).unwrap();
    lchown(&json, Some(NOBODY), Some(NOBODY)).unwrap();
    (sticky, json, victim)
}

/// Fails unless the root-owned file is as [`planted_symlink`] made it.
fn assert_untouched(victim: &Path) {
    assert_eq!(fs::read_to_string(victim).unwrap(), "untouched\n");
    let meta = fs::metadata(victim).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o644);
    assert_eq!(meta.uid(), 0);
}

/// The names in `dir`, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn a_symlink_planted_in_a_sticky_directory_is_replaced_not_followed() {
    require_root!();
    let dir = TempDir::new();
    let (sticky, json, victim) = planted_symlink(&dir);
    let args = [
        "run",
        "-q",
        "--level",
        "basic",
        "--json",
        json.to_str().unwrap(),
    ];
    profile(args.iter().chain(&["--", TRUE])).expect_code(0);
    assert_untouched(&victim);
    let meta = fs::symlink_metadata(&json).unwrap();
    assert!(meta.is_file(), "{} is not a regular file", json.display());
    assert_eq!(meta.permissions().mode() & 0o7777, 0o600, "report mode");
    assert_eq!((meta.uid(), meta.gid()), (0, 0), "the report's owner");
    assert_eq!(Report::read(&json).at("/target/cmdline"), &json!([TRUE]));
    assert_eq!(names(&sticky), ["report.json"]);
}

/// Without `CAP_FOWNER` (a profiler given only `CAP_BPF` and `CAP_PERFMON`, or root without
/// it), the sticky bit forbids replacing another user's entry: one line says so before the
/// command starts, and nothing is written.
#[test]
fn a_symlink_in_a_sticky_directory_that_cannot_be_replaced_is_one_error() {
    require_root!();
    if !Path::new("/usr/bin/setpriv").is_file() && !Path::new("/bin/setpriv").is_file() {
        skip!("setpriv, to run the profiler without CAP_FOWNER");
    }
    let dir = TempDir::new();
    let (sticky, json, victim) = planted_symlink(&dir);
    let marker = dir.path().join("ran");
    let mut cmd = Command::new("setpriv");
    cmd.args(["--bounding-set", "-fowner", "--"])
        .arg(profiler_tests::profiler_bin())
        .args(["run", "--level", "basic", "--json"])
        .arg(&json)
        .args(["--", "/usr/bin/touch"])
        .arg(&marker);
    let outcome = Profiler::spawn(cmd).finish();
    let line = outcome.expect_error();
    let expected = format!(
        "error: cannot write the report to {}: another user's file is there, in a sticky \
         directory (such as /tmp) that is not the profiler's, and only its owner may replace \
         it: choose another path",
        json.display()
    );
    assert_eq!(line, expected);
    assert!(!marker.exists(), "the command ran");
    assert_untouched(&victim);
    assert!(fs::symlink_metadata(&json).unwrap().is_symlink());
    assert_eq!(names(&sticky), ["report.json"]);
}
