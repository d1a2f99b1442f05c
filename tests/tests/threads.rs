//! The threads family (`--level threading`) on real processes: lock-order cycles, live deadlocks
//! in `run` and `attach` mode, contention on a pthread mutex and on a Rust futex mutex, the
//! on-CPU/off-CPU split and its blocked reasons, condition-variable waits that are not
//! contention, and on-CPU time against the kernel's own count. The victims are
//! `tests/victims/threads_*.c` and `src/bin/victim_threads_rust.rs`; the last tests check the
//! victims themselves, without the profiler, so that a failure above is the profiler's.

use std::{collections::BTreeSet, process::Command, time::Instant};

use profiler_tests::{
    Outcome, Profiler, Report, TempDir, Victim, attach,
    live::{attach_live, next_snapshot, snapshot_showing},
    names, require_root, run_reported, schedstat_on_cpu, victims,
};

const RUST: &str = env!("CARGO_BIN_EXE_victim_threads_rust");

/// `profiler run --level threading --json <dir>/report.json ARGS... -- CMD...` to the command's
/// exit (see [`run_reported`]).
fn run(dir: &TempDir, args: &[&str], cmd: &[&str]) -> (Outcome, Report) {
    let mut all = vec!["--level", "threading"];
    all.extend_from_slice(args);
    run_reported(dir, &all, cmd, &[])
}

/// The rest of the line `LABEL REST` of `stdout` (a victim's announcement).
fn value_of<'a>(stdout: &'a str, label: &str) -> &'a str {
    let prefix = format!("{label} ");
    stdout
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{label} ...` line in stdout:\n{stdout}"))
}

/// The thread ids of a `tids A B ...` line.
fn tids(list: &str) -> Vec<u32> {
    list.split_whitespace()
        .map(|t| t.parse().unwrap_or_else(|_| panic!("{t:?} is not a tid")))
        .collect()
}

/// The syscall thread `tid` is in now (`/proc/PID/task/TID/syscall`'s first field).
fn syscall_of(pid: u32, tid: u32) -> String {
    let path = format!("/proc/{pid}/task/{tid}/syscall");
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("failed to read {path}: {e}"));
    text.split_whitespace()
        .next()
        .unwrap_or_default()
        .to_string()
}

/// A process the test did not start but must end: the victim a `profiler run` leaves running
/// after `--duration`, killed when the test ends, however it ends.
struct Stray(u32);

impl Drop for Stray {
    fn drop(&mut self) {
        let pid = i32::try_from(self.0).expect("pid fits i32");
        // SAFETY: kill has no memory preconditions; a pid gone already only fails with ESRCH.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// The lock-order cycle of threads_order: one potential deadlock over lock_a and lock_b, each
/// edge taken five times (once a round) by its own thread, with both stacks; no live one, and
/// no contention (the threads never overlap).
#[test]
fn lock_order_cycle_is_a_potential_deadlock() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run(&dir, &[], &[victims::THREADS_ORDER, "5"]);
    assert_eq!(outcome.count_line("rounds"), 5);
    assert_order_cycle(&report, 5);
}

/// The live view while the target runs (`PROFILER_LIVE_SNAPSHOT`): a snapshot made while
/// threads_order waits after its first 3 rounds names the lock-order cycle over lock_a and
/// lock_b with each edge taken 3 times and each lock 6; the report at the end, after 4 more
/// rounds, has all 7: the snapshots took nothing from the family.
#[test]
fn a_live_snapshot_names_the_lock_order_cycle_so_far_and_the_report_the_whole_run() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::ready(victims::THREADS_ORDER, ["3", "10", "4"]);
    let args = ["--level", "threading", "--json", json.to_str().unwrap()];
    let profiler = attach_live(&victim, &args, &live);
    victim.proceed();
    victim.expect_line("done");

    let snapshot = next_snapshot(&live);
    assert_eq!(snapshot.end_reason(), "running");
    assert_order_cycle(&snapshot, 3);

    // The 4 more rounds, then the exit.
    assert!(victim.release().success());
    profiler.finish().expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "target_exited");
    assert_order_cycle(&report, 7);
}

/// What threads_order did in `rounds` rounds, as `report` says it: lock_a and lock_b each taken
/// twice a round, never contended, and one potential deadlock over them, each edge taken once a
/// round, first by its own thread, with both stacks; no live deadlock.
fn assert_order_cycle(report: &Report, rounds: u64) {
    let threads = report.threads();
    assert!(threads.lock_probes_attached(), "{:#}", threads.json());
    let (a, b) = (threads.lock_named("lock_a"), threads.lock_named("lock_b"));
    for lock in [a, b] {
        assert_eq!(lock.kind(), "pthread_mutex");
        // Each round, each thread takes each lock once.
        assert_eq!(lock.acquisitions(), Some(2 * rounds), "{:#}", lock.json());
        assert_eq!(lock.contended(), 0, "{:#}", lock.json());
    }

    let potential = threads.potential();
    let [(locks, edges)] = &potential[..] else {
        panic!("want one potential deadlock:\n{:#}", threads.json());
    };
    assert_eq!(*locks, BTreeSet::from([a.address(), b.address()]));
    assert_eq!(edges.len(), 2, "{:#}", threads.json());
    for (from, to, function, thread) in [
        (a, b, "take_a_then_b", "order-ab"),
        (b, a, "take_b_then_a", "order-ba"),
    ] {
        let edge = edges
            .iter()
            .find(|e| (e.from(), e.to()) == (from.address(), to.address()))
            .unwrap_or_else(|| panic!("no edge for {function}:\n{:#}", threads.json()));
        assert_eq!(edge.kinds(), ("pthread_mutex", "pthread_mutex"));
        assert_eq!(
            (edge.thread(), edge.count()),
            (thread, rounds),
            "{:#}",
            edge.json()
        );
        for stack in [edge.from_stack(), edge.to_stack()] {
            assert!(names(stack, function), "{:#}", edge.json());
        }
    }
    assert!(threads.live().is_empty(), "{:#}", threads.json());
}

/// What both live-deadlock tests assert of the one cycle: dl-ab (`tids[0]`) holds lock_a and
/// waits for lock_b, dl-ba the other way round, each blocked in its own take_*() function, the
/// owners read from the mutexes.
fn assert_the_deadlock(report: &Report, tids: &[u32], found_by: &str) -> f64 {
    let threads = report.threads();
    let live = threads.live();
    let [cycle] = &live[..] else {
        panic!("want one live deadlock:\n{:#}", threads.json());
    };
    assert_eq!(cycle.found_by(), found_by, "{:#}", cycle.json());
    let in_cycle = cycle.threads();
    assert_eq!(in_cycle.len(), 2, "{:#}", cycle.json());
    // The locks are named by their symbols: in attach mode no probe saw them taken, so they
    // are not in `locks`.
    for (tid, name, waits_for, holder, function) in [
        (tids[0], "dl-ab", "lock_b", tids[1], "take_a_then_b"),
        (tids[1], "dl-ba", "lock_a", tids[0], "take_b_then_a"),
    ] {
        let t = in_cycle
            .iter()
            .find(|t| t.tid() == tid)
            .unwrap_or_else(|| panic!("{name} ({tid}) is not in {:#}", cycle.json()));
        assert_eq!(t.name(), name);
        assert_eq!((t.waits_for_symbol(), t.held_by()), (waits_for, holder));
        assert_eq!(
            (t.lock_kind(), t.evidence()),
            ("pthread_mutex", "owner_field")
        );
        assert!(names(t.blocked_stack(), function), "{:#}", cycle.json());
        // A cycle is reported once all its threads have waited --deadlock-after.
        assert!(
            t.waiting_for() >= threads.deadlock_after(),
            "{:#}",
            cycle.json()
        );
    }
    cycle.detected_at()
}

/// `run` mode: the victim waits 500 ms, then deadlocks; with `--deadlock-after 1` the cycle is
/// found by the probes, said on stderr, and reported, and the run ends 0 on its duration.
#[test]
fn live_deadlock_is_found_in_run_mode() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut profiler = Profiler::start([
        "run",
        "--json",
        json.to_str().expect("utf-8 path"),
        "--level",
        "threading",
        "--deadlock-after",
        "1",
        "--duration",
        "6",
        "--",
        victims::THREADS_DEADLOCK,
        "500",
    ]);
    // The victim hangs for ever and runs on after --duration: killed when the test ends.
    let _victim = Stray(profiler.wait_ready());
    let outcome = profiler.finish();
    outcome.expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    assert!(
        outcome
            .stderr
            .lines()
            // Not the victim's name (`threads_deadlock`), should a line quote the command.
            .map(|l| l.replace("threads_deadlock", ""))
            .any(|l| l.to_ascii_lowercase().contains("deadlock")),
        "no line about the deadlock on stderr:\n{}",
        outcome.stderr
    );

    let detected_at =
        assert_the_deadlock(&report, &tids(value_of(&outcome.stdout, "tids")), "probes");
    // The victim is stuck 0.5 s into the window (its delay) plus thread start-up, at most 1 s
    // on a loaded machine; the cycle must be found within --deadlock-after (1 s) + 2 s of that,
    // and cannot be found before the threads have waited 1 s.
    assert!(
        (1.5..=4.0).contains(&detected_at),
        "detected at {detected_at} s"
    );
}

/// `attach` mode to a process already deadlocked: the cycle is built from /proc and the
/// mutexes' owner fields when profiling begins; where the locks were taken is not known.
#[test]
fn live_deadlock_is_found_on_attach() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::start(victims::THREADS_DEADLOCK, Vec::<&str>::new());
    let tids = tids(&victim.value_of("tids"));
    victim.expect_line("deadlocked");
    let args = ["--level", "threading", "--duration", "5", "--json"];
    let mut args = args.to_vec();
    args.push(json.to_str().expect("utf-8 path"));
    let outcome = attach(&victim, &args).finish();
    outcome.expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    let detected_at = assert_the_deadlock(&report, &tids, "attach");
    // Default --deadlock-after (2 s) plus 2 s to find it.
    assert!(detected_at <= 4.0, "detected at {detected_at} s");
    let live = report.threads().live();
    for t in live[0].threads() {
        assert!(
            t.acquired_stack().as_array().is_some_and(Vec::is_empty),
            "the locks were taken before profiling began: {:#}",
            live[0].json()
        );
    }
}

/// The live view on a process already deadlocked (`PROFILER_LIVE_SNAPSHOT`): the snapshots
/// show the cycle the watch found, from its own state, as the report will; the report at the
/// end has that one cycle, found when the snapshot showed it, not a second.
#[test]
fn a_live_snapshot_shows_the_live_deadlock_and_the_report_the_same_one() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::start(victims::THREADS_DEADLOCK, Vec::<&str>::new());
    let tids = tids(&victim.value_of("tids"));
    victim.expect_line("deadlocked");
    let args = [
        "--level",
        "threading",
        "--deadlock-after",
        "1",
        "--duration",
        "6",
        "--json",
        json.to_str().expect("utf-8 path"),
    ];
    let profiler = attach_live(&victim, &args, &live);
    let snapshot = snapshot_showing(&live, "the live deadlock", |r| {
        r.json
            .pointer("/threads/deadlocks/live")
            .and_then(|l| l.as_array())
            .is_some_and(|l| !l.is_empty())
    });
    assert_eq!(snapshot.end_reason(), "running");
    let seen_at = assert_the_deadlock(&snapshot, &tids, "attach");

    profiler.finish().expect_success();
    let report = Report::read(&json);
    assert_eq!(report.end_reason(), "duration");
    assert_eq!(assert_the_deadlock(&report, &tids, "attach"), seen_at);
}

/// A mutex on the heap has no symbol: with the memory family beside the threads family
/// (`--level full`), the lock is named by where it was allocated, make_lock().
#[test]
fn a_heap_lock_is_named_by_its_allocation_site() {
    require_root!();
    let dir = TempDir::new();
    let cmd = [victims::THREADS_CONTEND, "--heap", "4", "10", "1000"];
    let (outcome, report) = run_reported(&dir, &["--level", "full"], &cmd, &[]);
    assert_eq!(outcome.count_line("acquisitions"), 40);
    let threads = report.threads();
    let lock = threads
        .locks()
        .into_iter()
        .find(|l| l.acquisitions() == Some(40))
        .unwrap_or_else(|| panic!("no lock taken 40 times:\n{:#}", threads.json()));
    let context = format!("{:#}", lock.json());
    assert!(lock.json().get("symbol").is_none(), "{context}");
    assert!(
        names(&lock.json()["allocated_at"], "make_lock"),
        "{context}"
    );
}

/// `--no-lock-probes`: no uprobe on libc's lock functions, yet the contended mutex is seen
/// through its futex waits alone: a `futex` lock with no acquisitions or hold time, and holders
/// named by the wake-ups that released the waiters.
#[test]
fn without_lock_probes_contention_comes_from_the_futex_waits() {
    require_root!();
    let dir = TempDir::new();
    let cmd = [victims::THREADS_CONTEND, "4", "25", "2000"];
    let (outcome, report) = run(&dir, &["--no-lock-probes"], &cmd);
    assert_eq!(outcome.count_line("acquisitions"), 100);
    let threads = report.threads();
    assert!(!threads.lock_probes_attached(), "{:#}", threads.json());
    let lock = threads.lock_named("contended_lock");
    let context = format!("{:#}", lock.json());
    assert_eq!(lock.kind(), "futex", "{context}");
    assert_eq!(lock.acquisitions(), None, "{context}");
    assert!((1..=100).contains(&lock.contended()), "{context}");
    let holders = lock.holders();
    assert!(!holders.is_empty(), "{context}");
    for holder in &holders {
        assert_eq!(holder.evidence(), "waker", "{context}");
        assert!(holder.thread().starts_with("contend-"), "{context}");
    }
    assert!(threads.potential().is_empty(), "{:#}", threads.json());
}
/// Four threads, 25 acquisitions each, 2 ms held every time: every acquisition counted (only
/// pthread_mutex_lock takes the mutex), some of them contended, the time held, and the holders
/// read from the mutex's owner field with the stack where they took it.
#[test]
fn contention_counts_every_acquisition_and_names_the_holder() {
    require_root!();
    let dir = TempDir::new();
    let cmd = [victims::THREADS_CONTEND, "4", "25", "2000"];
    let (outcome, report) = run(&dir, &[], &cmd);
    assert_eq!(outcome.count_line("acquisitions"), 100);
    let meant = outcome.count_line("hold_us") as f64 / 1e6;
    // As the threads measured it: a holder preempted while it holds the lock holds it longer
    // (four spinning threads on two cores).
    let held = outcome.count_line("held_ns") as f64 / 1e9;
    assert!(held >= meant, "held {held} s, meant {meant} s");
    let threads = report.threads();
    let lock = threads.lock_named("contended_lock");
    let context = format!("{:#}", lock.json());
    assert_eq!(lock.kind(), "pthread_mutex", "{context}");
    assert_eq!(lock.acquisitions(), Some(100), "{context}");
    assert!((1..=100).contains(&lock.contended()), "{context}");
    assert!(lock.wait_time() > 0.0, "{context}");
    // The time held, from the lock's return probe to the unlock's entry probe: what the
    // threads measured from just after the one to just before the other, plus the few
    // microseconds of those probes per acquisition (2 ms for the 100), and less nothing.
    let hold = lock.hold_time().expect("a probed lock's hold time");
    assert!(
        (held..=1.05 * held + 0.002).contains(&hold),
        "held {hold} s, the threads measured {held} s\n{context}"
    );

    let holders = lock.holders();
    assert!(!holders.is_empty(), "{context}");
    let waits: u64 = holders.iter().map(|h| h.waits()).sum();
    assert!(waits <= lock.contended(), "{context}");
    for holder in &holders {
        assert_eq!(holder.evidence(), "owner_field", "{context}");
        assert!(holder.thread().starts_with("contend-"), "{context}");
        // Where it took the lock: hold_the_lock(), called by contender().
        let stack = holder.stack();
        assert!(
            names(stack, "hold_the_lock") && names(stack, "contender"),
            "{context}"
        );
    }
    let waiting = lock.waiting_stacks();
    assert!(
        waiting.iter().any(|(_, s)| names(s, "hold_the_lock")),
        "{context}"
    );
    let contenders = threads
        .threads()
        .iter()
        .filter(|t| t.name().starts_with("contend-"))
        .count();
    assert_eq!(contenders, 4, "{:#}", threads.json());
}

/// A Rust `std::sync::Mutex` is a bare futex word: no acquisitions or hold time (nothing probed
/// takes it), but its blocked waits are contention, and the thread whose unlock woke a waiter
/// is its holder.
#[test]
fn rust_mutex_contention_names_the_waker_as_holder() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run(&dir, &[], &[RUST, "4", "25", "2000"]);
    let workers = tids(value_of(&outcome.stdout, "tids"));
    assert_eq!(workers.len(), 4);
    let threads = report.threads();
    // The futex lock waited on longest is the one the workers contend on (the others, such as
    // the join of each thread, wait far less).
    let lock = threads
        .locks()
        .into_iter()
        .filter(|l| l.kind() == "futex")
        .max_by(|x, y| x.wait_time().total_cmp(&y.wait_time()))
        .unwrap_or_else(|| panic!("no futex lock:\n{:#}", threads.json()));
    let context = format!("{:#}", lock.json());
    if lock.symbol().is_some() {
        assert!(lock.symbol().unwrap().contains("LOCK"), "{context}");
    }
    assert!((1..=100).contains(&lock.contended()), "{context}");
    assert_eq!(
        (lock.acquisitions(), lock.hold_time()),
        (None, None),
        "{context}"
    );
    let holders = lock.holders();
    assert!(
        holders
            .iter()
            .any(|h| h.evidence() == "waker" && workers.contains(&h.tid())),
        "no waker among the workers {workers:?}\n{context}"
    );
}

/// Thread "sleeper": 10 ms of CPU time, then 10 ms in nanosleep, for 2 s: about half its time
/// on the CPU, its blocked time all "sleep", at one stack through sleeper_sleeps().
#[test]
fn sleeper_is_half_on_cpu_and_blocks_in_nanosleep() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run(&dir, &[], &[victims::THREADS_SLEEPER, "2000", "10", "10"]);
    let cycles = outcome.count_line("cycles");
    let sleeper = report.threads().thread_named("sleeper");
    let context = format!("{:#}", sleeper.json());
    let (on, off) = (sleeper.on_cpu_time(), sleeper.off_cpu_time());
    let (blocked, runnable) = (sleeper.blocked_time(), sleeper.runnable_time());
    // Off-CPU time is blocked plus runnable: to the microsecond, as both sum the same switches.
    assert!((off - blocked - runnable).abs() < 1e-3, "{context}");
    // The on-CPU share of the time it was not waiting for a CPU: 10 ms on, 10 ms asleep, so
    // 0.5; 0.35-0.65 leaves room for the sleeps' timer slack and the spin's own overhead. The
    // run-queue time is left out because it is the machine's load, not the victim's (with two
    // busy neighbours on two cores it was 0.55 s of this thread's 2 s).
    let share = on / (on + blocked);
    assert!((0.35..=0.65).contains(&share), "share {share}\n{context}");
    // The spin is on the thread's CPU clock: at least 10 ms a cycle, plus start and exit.
    let spun = cycles as f64 * 0.010;
    assert!(
        (0.95 * spun..=1.25 * spun + 0.01).contains(&on),
        "on CPU {on} s, spun {spun} s\n{context}"
    );
    // It blocks only in nanosleep(2): the bulk of its blocked time is "sleep" (90%: a wake-up
    // of thread start or exit may block briefly for another reason).
    assert!(sleeper.blocked("sleep") >= 0.9 * blocked, "{context}");
    assert!(
        (0.9 * spun..=1.3 * spun).contains(&sleeper.blocked("sleep")),
        "{context}"
    );
    let sleeps = sleeper.blocking_stacks("sleep");
    let (count, _, _) = sleeps
        .iter()
        .find(|(_, _, s)| names(s, "sleeper_sleeps"))
        .unwrap_or_else(|| panic!("no sleep stack through sleeper_sleeps\n{context}"));
    // Every nanosleep that blocked did so for 10 ms, longer than --min-block (1 ms), so each
    // one is tallied: at its stack, or (on a loaded machine, rarely) with an empty stack when
    // the kernel could not read it, which the report counts as lost (`threads_stack_failed`).
    // The victim counts the sleeps that blocked (its voluntary switches inside nanosleep): one
    // preempted between arming its timer and blocking, past the timer's expiry, never blocks.
    let slept = outcome.count_line("slept");
    let unstacked: u64 = sleeps
        .iter()
        .filter(|(_, _, s)| s.as_array().is_some_and(Vec::is_empty))
        .map(|(n, _, _)| n)
        .sum();
    // Every switch out inside nanosleep is counted (the thread's others, if a page fault
    // blocked it, come on top).
    assert!(
        sleeper.voluntary_switches() >= slept,
        "slept {slept}\n{context}"
    );
    // Each block is tallied, at its stack or unstacked: exactly what was counted.
    assert_eq!(*count + unstacked, sleeper.blocks(), "{context}");
    // Every block is counted when the thread runs again, even when the kernel runs it again
    // without a `sched_switch` naming it (seen under load: the next switch out closes the
    // block; `overhead.notes.threads_switch_in_unseen` counts them): one for each blocking
    // switch out, and one for each sleep that blocked.
    assert_eq!(
        sleeper.blocks(),
        sleeper.voluntary_switches(),
        "slept {slept}\n{context}"
    );
    assert_eq!(sleeper.blocks(), slept, "{context}");
    assert!(
        slept >= cycles * 9 / 10,
        "slept {slept} of {cycles}\n{context}"
    );
    assert!(unstacked <= cycles / 10, "{context}");
}

/// 20000 round trips over two condition variables: the threads wait a lot, but in
/// pthread_cond_wait(), which is not lock contention. The mutex itself is almost never contended
/// unprobed (measured with bpftrace: no FUTEX_WAIT on it in 2000 round trips, against 1900
/// blocked condvar waits); probed, its lock and unlock probes lengthen each critical section by
/// a few microseconds, and a hand-off then meets the other thread on it now and then: real
/// contention, but brief next to the waiting.
#[test]
fn condvar_ping_pong_is_waiting_not_contention() {
    require_root!();
    let dir = TempDir::new();
    // 20000: long enough (about 0.2 s) for the profiler to see the libraries mapped after the
    // exec; a process that ends within its first ~20 ms may leave its library frames unnamed.
    let (outcome, report) = run(&dir, &[], &[victims::THREADS_CONDVAR, "20000"]);
    assert_eq!(outcome.count_line("round_trips"), 20000);
    let threads = report.threads();
    let condvar_time = threads.wait_time_of("condvar");
    for lock in threads.locks() {
        assert!(!lock.is_symbol("cv_ping") && !lock.is_symbol("cv_pong"));
        // A quarter: the mutex's waits are the probes' few microseconds a hand-off, the
        // condition waits a whole hand-off each.
        assert!(
            lock.wait_time() <= 0.25 * condvar_time,
            "a condvar wait counted as contention ({condvar_time} s of condvar waits):\n{:#}",
            lock.json()
        );
    }
    let sites = threads.wait_sites("condvar");
    let waits: u64 = sites.iter().map(|(_, n, _)| n).sum();
    // One blocked wait per hand-off in practice (2 * 20000); a quarter of the round trips is a
    // floor no scheduling can go under while the other side is still being woken.
    assert!(waits >= 5000, "{waits} condvar waits\n{:#}", threads.json());
    assert!(
        sites
            .iter()
            .any(|(_, _, s)| names(s, "ping") || names(s, "pong")),
        "{:#}",
        threads.json()
    );
    for (address, _, _) in &sites {
        assert!(threads.lock_at(*address).is_none(), "a condvar is a lock");
    }
}

/// The report's on-CPU time of the sleeper thread against the kernel's count for it
/// (schedstat), read while the thread sits idle before and after the window.
#[test]
fn on_cpu_time_matches_schedstat() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(victims::THREADS_SLEEPER, ["1500", "10", "10"]);
    let tid: u32 = victim.value_of("sleeper_tid").parse().expect("a tid");
    let args = [
        "--level",
        "threading",
        "--json",
        json.to_str().expect("utf-8"),
    ];
    let profiler = attach(&victim, &args);
    let before = schedstat_on_cpu(victim.pid(), tid);
    victim.proceed();
    victim.expect_line("done");
    let after = schedstat_on_cpu(victim.pid(), tid);
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());

    let counted = after - before;
    let on = Report::read(&json).threads().thread(tid).on_cpu_time();
    // 10% + 5 ms: both sum the same switches, but the profiler's window and the two reads are
    // not the same instants, and the sem_post/sem_wait around the cycles run on either side.
    assert!(
        (on - counted).abs() <= 0.10 * counted + 0.005,
        "report {on} s on CPU, schedstat {counted} s"
    );
}

/// Beside the functions family, each traced function's time splits into on-CPU and off-CPU:
/// sleeper_spins() all on the CPU (10 ms of CPU time a call), sleeper_sleeps() all off it.
/// `--func` adds the functions family to the threading level.
#[test]
fn traced_functions_split_into_on_and_off_cpu() {
    require_root!();
    let dir = TempDir::new();
    let args = [
        "--level",
        "threading",
        "--func",
        "sleeper_spins",
        "--func",
        "sleeper_sleeps",
    ];
    let cmd = [victims::THREADS_SLEEPER, "1000", "10", "10"];
    let (outcome, report) = run_reported(&dir, &args, &cmd, &[]);
    let cycles = outcome.count_line("cycles");
    let split = |name: &str| {
        let f = report.function(name);
        assert_eq!(f.total_calls(), cycles);
        // The split's fields sit on the function's own entry.
        let s = &f.0;
        let n = |k: &str| {
            s[k].as_f64()
                .unwrap_or_else(|| panic!("{name}: no {k} in {s}"))
        };
        (n("on_cpu_time"), n("off_cpu_time"), n("average_cpu_peak"))
    };
    let spun = cycles as f64 * 0.010;
    let (on, _, _) = split("sleeper_spins");
    // Its spin is on the thread's CPU clock: exact but for the probes' few microseconds a call.
    assert!(
        (on - spun).abs() <= 0.10 * spun + 0.005,
        "{on} s, want {spun} s"
    );
    let (on, off, peak) = split("sleeper_sleeps");
    // 10 ms asleep a call; on the CPU only to enter and leave nanosleep.
    assert!(on < 0.05 * off, "sleeps: {on} s on, {off} s off");
    assert!((0.9 * spun..=1.3 * spun).contains(&off), "{off} s off");
    assert!(peak < 10.0, "sleeps use {peak}% of a core");
}

/// The deadlock victim without the profiler: both threads really sit in futex(2) (202), on
/// different words, once it says "deadlocked".
#[test]
fn deadlock_victim_blocks_both_threads_in_futex() {
    let mut victim = Victim::start(victims::THREADS_DEADLOCK, Vec::<&str>::new());
    let tids = tids(&victim.value_of("tids"));
    victim.expect_line("deadlocked");
    assert_eq!(tids.len(), 2);
    for tid in tids {
        assert_eq!(syscall_of(victim.pid(), tid), "202", "thread {tid}");
    }
}

/// The bench's load without the profiler: over 50,000 context switches a second on two cores.
#[test]
fn switch_victim_switches_fifty_thousand_times_a_second() {
    let out = Command::new(victims::THREADS_SWITCH)
        .args(["2", "1000"])
        .output()
        .expect("failed to run threads_switch");
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rate: f64 = value_of(&stdout, "switches_per_second")
        .parse()
        .expect("a rate");
    assert!(rate >= 50_000.0, "{rate} switches a second\n{stdout}");
}

/// The contention victim without the profiler: the mutex serializes its holds, so the threads
/// take at least the time held in all.
#[test]
fn contend_victim_holds_the_lock_as_long_as_it_says() {
    let start = Instant::now();
    let out = Command::new(victims::THREADS_CONTEND)
        .args(["4", "25", "2000"])
        .output()
        .expect("failed to run threads_contend");
    let elapsed = start.elapsed().as_secs_f64();
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let held: f64 = value_of(&stdout, "hold_us").parse::<f64>().expect("us") / 1e6;
    assert!(elapsed >= held, "{elapsed} s for {held} s held");
}

/// The sleeper without the profiler: its CPU time (schedstat) is its cycles' 10 ms spins.
#[test]
fn sleeper_victim_spins_what_it_says() {
    let mut victim = Victim::ready(victims::THREADS_SLEEPER, ["600", "10", "10"]);
    let tid: u32 = victim.value_of("sleeper_tid").parse().expect("a tid");
    let before = schedstat_on_cpu(victim.pid(), tid);
    victim.proceed();
    let cycles: f64 = victim.value_of("cycles").parse().expect("a count");
    let slept: f64 = victim.value_of("slept").parse().expect("a count");
    victim.expect_line("done");
    let on = schedstat_on_cpu(victim.pid(), tid) - before;
    assert!(victim.release().success());
    let spun = cycles * 0.010;
    assert!(
        (spun..=1.1 * spun + 0.005).contains(&on),
        "{on} s on CPU for {cycles} cycles"
    );
    // Unloaded, every sleep blocks once: the count the profiler's test checks its tallies with.
    assert!(
        (0.9 * cycles..=cycles).contains(&slept),
        "{slept} blocking sleeps in {cycles} cycles"
    );
}
