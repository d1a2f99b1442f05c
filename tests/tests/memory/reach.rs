//! The reachability verdict on real processes: the scan at the target's exit (`run`) and at the
//! end (`attach`), the live view's snapshots, every thread stopped, a full cache and a leak
//! that stopped growing, the pause limit, the profiler killed during a scan, and a target
//! another tracer holds.

use super::*;

#[test]
fn reachability_in_run_mode_scans_the_target_at_its_exit() {
    require_root!();
    let dir = TempDir::new();
    let report = run(&dir, &[VICTIM, "reach"]);
    let memory = Memory::of(&report);
    assert_reach_verdicts(&memory);
    let scan = last_scan(&memory);
    assert_eq!(scan["trigger"], "exit", "{scan:#}");
    assert_eq!(scan["threads"].as_u64(), Some(1));
}

/// `profiler attach --level memory --memory exact` on `victim` (see [`attach_through_done`]):
/// what it printed and its report, which ended on the interrupt.
fn attach_exact_through_done(dir: &TempDir, victim: &mut Victim) -> (Outcome, Report) {
    let json = dir.json();
    let args = [EXACT.as_slice(), &["--json", json.to_str().unwrap()]].concat();
    let outcome = attach_through_done(victim, &args);
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    (outcome, report)
}

/// `profiler attach --level memory --duration SECS` on `victim` (started with `Victim::ready`),
/// which runs its scenario meanwhile: the report. The victim must then finish its scenario and
/// exit.
fn attach_for(dir: &TempDir, victim: &mut Victim, secs: &str) -> Report {
    let json = dir.json();
    let args = [
        "--level",
        "memory",
        "--memory",
        "exact",
        "--duration",
        secs,
        "--json",
        json.to_str().unwrap(),
    ];
    let profiler = attach(victim, &args);
    victim.proceed();
    profiler.finish().expect_success();
    victim.expect_line("done");
    assert!(victim.release().success());
    Report::read(&json)
}

#[test]
fn reachability_in_attach_mode_scans_the_target_at_the_end() {
    require_root!();
    let dir = TempDir::new();
    let mut victim = Victim::ready(VICTIM, ["reach"]);
    let (outcome, report) = attach_exact_through_done(&dir, &mut victim);
    let memory = Memory::of(&report);
    assert_reach_verdicts(&memory);
    let scan = last_scan(&memory);
    assert_eq!(scan["trigger"], "end", "{scan:#}");
    assert!(
        outcome
            .stdout
            .contains("definitely lost 4.7 KiB in 101 block(s)"),
        "{}",
        outcome.stdout
    );
}

/// The live view while the target runs (`PROFILER_LIVE_SNAPSHOT`): a snapshot made while the
/// victim waits after 10 of its 25 rounds has exactly the 10 blocks of 48 bytes drop_blocks()
/// left outstanding at its site, and tidy()'s 400 blocks all freed; no scan was made for it (it
/// stops the target), so the verdict is by growth. The report at the end has all 25 rounds,
/// and the scan at the end finds the 25 blocks lost: the snapshots took nothing from the
/// family.
#[test]
fn a_live_snapshot_has_the_outstanding_bytes_so_far_and_the_report_the_whole_run() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::ready(VICTIM, ["pause", "10", "15", "48", "40"]);
    let args = [EXACT.as_slice(), &["--json", json.to_str().unwrap()]].concat();
    let profiler = attach_live(&victim, &args, &live);
    victim.proceed();
    victim.expect_line("half");

    let snapshot = next_snapshot(&live);
    assert_eq!(snapshot.end_reason(), "running");
    let memory = Memory::of(&snapshot);
    assert_eq!(memory.function("drop_blocks"), Totals::blocks(10, 48, 0));
    assert_eq!(memory.sites_in("drop_blocks"), [Totals::blocks(10, 48, 0)]);
    assert_eq!(memory.function("tidy"), Totals::blocks(400, 64, 400));
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "growth", "{d:#}");
    assert!(
        memory.list("/memory_leak_detection/scans").is_empty(),
        "{d:#}"
    );

    victim.proceed();
    victim.expect_line("done");
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "interrupted");
    let memory = Memory::of(&report);
    assert_eq!(memory.function("drop_blocks"), Totals::blocks(25, 48, 0));
    // Each batch from its own call in main(): a site each.
    let mut sites = memory.sites_in("drop_blocks");
    sites.sort_by_key(|t| t.allocations);
    assert_eq!(
        sites,
        [Totals::blocks(10, 48, 0), Totals::blocks(15, 48, 0)]
    );
    assert_eq!(memory.function("tidy"), Totals::blocks(1000, 64, 1000));
    let mut lost: Vec<(u64, u64)> = memory
        .leak_sites("drop_blocks")
        .iter()
        .map(|site| {
            assert_eq!(site["verdict"], "definitely_lost", "{site:#}");
            tally(&site["definitely_lost"])
        })
        .collect();
    lost.sort();
    assert_eq!(lost, [(10 * 48, 10), (15 * 48, 15)]);
    assert_eq!(
        tally(memory.at("/memory_leak_detection/definitely_lost")),
        (25 * 48, 25)
    );
    assert_eq!(last_scan(&memory)["trigger"], "end");
    assert_nothing_lost(&report);
}

#[test]
fn every_thread_is_stopped_for_a_scan_and_their_stacks_are_no_leak() {
    require_root!();
    let dir = TempDir::new();
    // Four threads contend for a mutex, each spinning 2 ms under it 500 times (about 4 s in
    // all): running or waiting on the futex when the scan stops them.
    let mut victim = Victim::ready(victims::THREADS_CONTEND, ["4", "500", "2000", "200"]);
    let report = attach_for(&dir, &mut victim, "1");
    let memory = Memory::of(&report);
    let scan = last_scan(&memory);
    assert_eq!(scan["trigger"], "end", "{scan:#}");
    assert_eq!(scan["complete"], true, "{scan:#}");
    assert_eq!(scan["threads"].as_u64(), Some(5), "{scan:#}");
    // The threads' stacks, mapped while profiled, are tracked blocks that their own stack
    // pointers and the C library's thread list reach.
    let d = memory.at("/memory_leak_detection");
    assert!(memory.u64("/allocations/mmap_calls") >= 4, "{d:#}");
    assert_eq!(d["detected"], false, "{d:#}");
    assert!(tally(&d["reachable"]).1 >= 4, "{d:#}");
}

#[test]
fn a_full_cache_attached_mid_run_is_no_leak() {
    require_root!();
    let dir = TempDir::new();
    // A 256-entry cache filled before the attach; while profiled, every 10 ms its oldest entry
    // is freed and a new one put in its slot: the tracked bytes grow the whole time (the
    // evicted blocks were never seen allocated), the cache's size does not.
    let mut victim = Victim::ready(VICTIM, ["lru", "4000"]);
    let report = attach_for(&dir, &mut victim, "2");
    let memory = Memory::of(&report);
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "reachability", "{d:#}");
    assert_eq!(d["detected"], false, "{d:#}");
    assert_eq!(tally(&d["definitely_lost"]), (0, 0));
    assert_eq!(tally(&d["indirectly_lost"]), (0, 0));
    let cache = memory.leak_site("lru_replace");
    assert_eq!(cache["verdict"], "reachable", "{cache:#}");
    // Growth alone would have called it a leak.
    assert_eq!(cache["trend"], "growing", "{cache:#}");
    let (bytes, count) = tally(&cache["reachable"]);
    assert!((100..=256).contains(&count), "{cache:#}");
    assert_eq!(bytes, count * 100);
    assert!(memory.u64("/allocations/unknown_frees") >= count);
}

#[test]
fn a_leak_that_stopped_growing_is_still_lost() {
    require_root!();
    let dir = TempDir::new();
    // 20 blocks of 48 bytes dropped over 0.4 s, then 1.5 s of nothing before the exit; a scan
    // every half second besides the one at the exit.
    let args = [
        "--level",
        "memory",
        "--memory",
        "exact",
        "--leak-check-every",
        "0.5",
    ];
    let cmd = [VICTIM, "drop", "20", "48", "20", "1500"];
    let report = run_reported(&dir, &args, &cmd, &[]).1;
    let memory = Memory::of(&report);
    let scans = memory.list("/memory_leak_detection/scans");
    let triggers: Vec<&str> = scans
        .iter()
        .map(|s| s["trigger"].as_str().unwrap())
        .collect();
    assert!(
        triggers.len() >= 3
            && triggers[..triggers.len() - 1]
                .iter()
                .all(|t| *t == "interval"),
        "{triggers:?}"
    );
    assert_eq!(triggers.last(), Some(&"exit"));
    // Every interval scan found what had been dropped so far, lost, and nothing else.
    for s in scans {
        let (bytes, count) = tally(&s["definitely_lost"]);
        assert_eq!(bytes, count * 48, "{s:#}");
        assert!(count <= 20, "{s:#}");
    }
    let site = memory.leak_site("drop_blocks");
    assert_eq!(site["verdict"], "definitely_lost", "{site:#}");
    assert_eq!(tally(&site["definitely_lost"]), (960, 20));
    assert_eq!(site["trend"], "flat", "{site:#}");
    assert_eq!(memory.at("/memory_leak_detection/detected"), true);
}

#[test]
fn a_scan_that_reaches_its_pause_limit_lets_go_and_says_so() {
    require_root!();
    let dir = TempDir::new();
    // The scan is held 50 ms before it marks (a test hook): past a 1 ms limit.
    let args = [EXACT.as_slice(), &["--leak-scan-max-pause", "1"]].concat();
    let env = [("PROFILER_TEST_SCAN_HOLD_MS", "50")];
    let (outcome, report) = run_reported(&dir, &args, &[VICTIM, "reach"], &env);
    let memory = Memory::of(&report);
    let scan = last_scan(&memory);
    assert_eq!(scan["complete"], false, "{scan:#}");
    let reason = scan["reason"].as_str().unwrap();
    assert!(reason.contains("--leak-scan-max-pause (1 ms)"), "{reason}");
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "growth", "{d:#}");
    assert!(d["notes"][0].as_str().unwrap().contains(reason), "{d:#}");
    assert!(
        outcome.stderr.contains("no leak scan"),
        "{}",
        outcome.stderr
    );
}

/// The state letter of every thread of `pid` (`t` is a tracing stop).
fn thread_states(pid: u32) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the victim is alive") {
        let tid = entry.unwrap().file_name();
        let status =
            std::fs::read_to_string(format!("/proc/{pid}/task/{}/status", tid.to_string_lossy()))
                .unwrap_or_default();
        let state = status
            .lines()
            .find_map(|l| l.strip_prefix("State:"))
            .unwrap_or("")
            .trim()
            .to_string();
        out.push(state);
    }
    out
}

#[test]
fn a_target_stopped_for_a_scan_runs_on_when_the_profiler_is_killed() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(VICTIM, ["lru", "3000"]);
    let pid = victim.pid().to_string();
    let mut cmd = Profiler::command([
        "attach",
        "--max-overhead",
        "0",
        "--level",
        "memory",
        "--memory",
        "exact",
        "--duration",
        "1",
        "--json",
        json.to_str().unwrap(),
        &pid,
    ]);
    // The scan holds the target stopped for a minute, unless the profiler dies first.
    cmd.env("PROFILER_TEST_SCAN_HOLD_MS", "60000");
    let mut profiler = Profiler::spawn(cmd);
    profiler.wait_ready();
    victim.proceed();
    profiler.expect_stderr("leak scan: target");
    let held = thread_states(victim.pid());
    assert!(
        held.iter().all(|s| s.starts_with('t')),
        "stopped for the scan: {held:?}"
    );
    profiler.kill();
    // Let go by the kernel: it runs its 3 s of cache churn to the end.
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut states = thread_states(victim.pid());
    while states.iter().any(|s| s.starts_with('t')) && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
        states = thread_states(victim.pid());
    }
    assert!(
        states
            .iter()
            .all(|s| !s.starts_with('t') && !s.starts_with('T')),
        "{states:?}"
    );
    victim.expect_line("done");
    assert!(victim.release().success());
}

#[test]
fn a_target_another_tracer_holds_gets_the_growth_verdict_labelled() {
    require_root!();
    let dir = TempDir::new();
    let mut victim = Victim::ready(VICTIM, ["reach"]);
    // This test's thread traces the victim (seized: it keeps running), as a debugger would.
    // SAFETY: a seize of the test's own child; no memory is passed.
    let seized = unsafe {
        libc::ptrace(
            libc::PTRACE_SEIZE,
            victim.pid() as libc::pid_t,
            std::ptr::null_mut::<libc::c_void>(),
            std::ptr::null_mut::<libc::c_void>(),
        )
    };
    assert_eq!(seized, 0, "{}", std::io::Error::last_os_error());
    let (outcome, report) = attach_exact_through_done(&dir, &mut victim);
    let memory = Memory::of(&report);
    let d = memory.at("/memory_leak_detection");
    assert_eq!(d["method"], "growth", "{d:#}");
    let scan = last_scan(&memory);
    assert_eq!(scan["complete"], false, "{scan:#}");
    let me = std::process::id().to_string();
    let reason = scan["reason"].as_str().unwrap();
    assert!(
        reason.contains("already traced by pid") && reason.contains(&me),
        "{reason}"
    );
    let note = d["notes"][0].as_str().unwrap();
    assert!(
        note.contains(reason) && note.contains("the verdict is by growth"),
        "{note}"
    );
    assert!(
        outcome.stdout.contains("leak verdict by growth"),
        "{}",
        outcome.stdout
    );
    // The sites are still listed, with the growth verdict only.
    let dropped = memory.leak_site("drop_blocks");
    assert!(dropped.get("definitely_lost").is_none(), "{dropped:#}");
    assert_eq!(dropped["verdict"], dropped["trend"]);
}
