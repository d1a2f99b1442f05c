//! The gpu family (NVML) on this machine: with no NVIDIA driver it is `not_available` with the
//! reason, attaches nothing and leaves no section; the rest of the run is unchanged. With a
//! driver (a GPU machine), it is attached and lists each device NVML sees.

use profiler_tests::{TempDir, require_root, run_reported};

/// Whether the loader can find NVML's library here (a driver is installed).
fn have_nvml() -> bool {
    std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libnvidia-ml.so.1"))
}

#[test]
fn the_memory_level_says_whether_the_gpu_family_can_run_here() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run_reported(&dir, &["--level", "memory"], &["/bin/sleep", "1.5"], &[]);
    let gpu = report.family("gpu");
    // No family of any level is unbuilt any more.
    assert!(
        !outcome.stderr.contains("not built yet"),
        "{}",
        outcome.stderr
    );
    if have_nvml() {
        assert_eq!(gpu.status(), "attached", "{gpu}");
        let devices = report.at("/gpu/devices").as_array().expect("devices");
        assert!(!devices.is_empty(), "{}", report.at("/gpu"));
        assert!(report.at("/gpu/samples").as_u64() >= Some(1));
    } else {
        assert_eq!(gpu.status(), "not_available", "{gpu}");
        assert_eq!(
            gpu.note(),
            Some("no NVIDIA driver on this machine (libnvidia-ml.so.1 could not be loaded)"),
            "{gpu}"
        );
        assert!(
            report.at("").get("gpu").is_none(),
            "no gpu section without NVML"
        );
        assert!(
            !outcome.stdout.contains("\ngpu:"),
            "no gpu block in the summary:\n{}",
            outcome.stdout
        );
    }
    // The memory family ran as before.
    assert_eq!(report.family("memory").status(), "attached");
}
