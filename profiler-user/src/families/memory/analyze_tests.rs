use super::*;
use crate::family_testing::frame;

const OPTS: LeakOptions = LeakOptions {
    min_growth: 1.0,
    warmup: 0.25,
    scan_max_pause_ms: 500,
    check_every: None,
};

/// Points every 0.2 s over `duration` of `f(t)`, ending at `duration`.
fn series(duration: f64, f: impl Fn(f64) -> u64) -> Vec<(f64, u64)> {
    let n = (duration / 0.2).round() as usize;
    (1..=n).map(|i| i as f64 * 0.2).map(|t| (t, f(t))).collect()
}

fn site(allocs: u64, bytes: u64, frees: u64, freed: u64, frames: Vec<Frame>) -> SiteInput {
    SiteInput {
        totals: SiteStats {
            allocs,
            alloc_bytes: bytes,
            frees,
            free_bytes: freed,
            untracked: 0,
            untracked_bytes: 0,
        },
        frames,
        oldest_ns: Some(1_000_000_000),
        series: Vec::new(),
        verdicts: None,
    }
}

#[test]
fn slope_of_a_line_and_of_degenerate_input() {
    let line = (0..10).map(|i| (i as f64, 3.0 * i as f64 + 7.0));
    assert!((slope(line) - 3.0).abs() < 1e-9);
    assert_eq!(slope([(1.0, 5.0)].into_iter()), 0.0);
    assert_eq!(slope([(1.0, 5.0), (1.0, 9.0)].into_iter()), 0.0);
}

#[test]
fn steady_growth_is_a_leak() {
    let s = series(2.0, |t| (t * 1000.0) as u64 * 64);
    let (growth, verdict) = judge(&s, 2.0, &OPTS);
    assert_eq!(verdict, Trend::Growing);
    assert!((growth - 64_000.0).abs() < 1000.0, "{growth}");
}

#[test]
fn growth_then_flat_is_retained() {
    // A cache filled in the first 0.3 s, then untouched.
    let s = series(2.0, |t| if t < 0.3 { 50_000 } else { 100_000 });
    assert_eq!(judge(&s, 2.0, &OPTS).1, Trend::Flat);
    // Filled at once before the first tick.
    let s = series(2.0, |_| 100_000);
    let (growth, verdict) = judge(&s, 2.0, &OPTS);
    assert_eq!((growth, verdict), (0.0, Trend::Flat));
}

#[test]
fn a_step_in_the_middle_that_stays_flat_is_retained() {
    let s = series(4.0, |t| if t < 2.0 { 0 } else { 80_000 });
    assert_eq!(judge(&s, 4.0, &OPTS).1, Trend::Flat);
}

#[test]
fn growth_that_stops_before_the_tail_is_retained() {
    let s = series(4.0, |t| (t.min(2.5) * 10_000.0) as u64);
    assert_eq!(judge(&s, 4.0, &OPTS).1, Trend::Flat);
}

#[test]
fn slow_growth_under_the_threshold_is_retained() {
    let s = series(2.0, |t| 1000 + (t * 10.0) as u64);
    let opts = LeakOptions {
        min_growth: 100.0,
        ..OPTS
    };
    assert_eq!(judge(&s, 2.0, &opts).1, Trend::Flat);
    // The same series with a lower threshold would be called a leak only if most of it came
    // late: here the 1000 bytes came first.
    let opts = LeakOptions {
        min_growth: 1.0,
        ..OPTS
    };
    assert_eq!(judge(&s, 2.0, &opts).1, Trend::Flat);
}

#[test]
fn bursty_leak_with_frees_is_a_leak() {
    // Up 10 KB every 0.4 s, down 3 KB in between: a net rise to the end.
    let s = series(4.0, |t| {
        let k = (t / 0.4) as u64;
        (k + 1) * 10_000 - if (t / 0.2) as u64 % 2 == 1 { 3_000 } else { 0 }
    });
    assert_eq!(judge(&s, 4.0, &OPTS).1, Trend::Growing);
}

#[test]
fn too_few_points_or_nothing_outstanding_is_not_a_leak() {
    let s = [(0.2, 100), (0.4, 200), (0.6, 300)];
    assert_eq!(judge(&s, 0.6, &OPTS).1, Trend::Flat);
    let s = series(2.0, |t| if t < 1.9 { (t * 1e4) as u64 } else { 0 });
    assert_eq!(judge(&s, 2.0, &OPTS).1, Trend::Flat);
}

#[test]
fn series_thins_evenly_and_keeps_the_final_value() {
    let mut s = Series::default();
    for i in 0..10_000u64 {
        s.push(i as f64, i);
    }
    assert!(s.points().len() < MAX_POINTS, "{}", s.points().len());
    assert!(s.points().len() > MAX_POINTS / 4);
    let gaps: Vec<f64> = s.points().windows(2).map(|w| w[1].0 - w[0].0).collect();
    assert!(gaps.iter().all(|g| *g == gaps[0]), "uneven: {gaps:?}");
    s.finish(10_000.0, 42);
    assert_eq!(s.points().last(), Some(&(10_000.0, 42)));
    s.finish(10_000.0, 43);
    assert_eq!(s.points().last(), Some(&(10_000.0, 43)));
}

#[test]
fn trend_directions() {
    let at = |i: usize, rss: u64| ProcSample {
        at: i as f64 * 0.2,
        rss,
        vms: 0,
        hwm: 0,
    };
    let up: Vec<_> = (0..20)
        .map(|i| at(i, 10_000_000 + i as u64 * 1_000_000))
        .collect();
    let (dir, slope) = trend(&up);
    assert_eq!(dir, "increasing");
    assert!((slope - 5_000_000.0).abs() < 1.0, "{slope}");
    let flat: Vec<_> = (0..20)
        .map(|i| at(i, 10_000_000 + (i % 2) as u64 * 4096))
        .collect();
    assert_eq!(trend(&flat).0, "stable");
    let down: Vec<_> = (0..20)
        .map(|i| at(i, 50_000_000 - i as u64 * 1_000_000))
        .collect();
    assert_eq!(trend(&down).0, "decreasing");
    assert_eq!(trend(&up[..2]).0, "unknown");
}

#[test]
fn sites_are_summed_charged_and_judged() {
    let libc = "libc.so.6".to_string();
    let leaky = vec![frame("leak_blocks", "victim"), frame("main", "victim")];
    let tidy = vec![frame("churn", "victim"), frame("main", "victim")];
    let cxx = vec![
        frame("operator new(unsigned long)", "libstdc++.so.6"),
        frame("make_cache", "victim"),
    ];
    let mut leak = site(7, 7 * 48, 0, 0, leaky);
    leak.series = series(2.0, |t| ((t / 2.0) * 7.0) as u64 * 48);
    leak.series.last_mut().unwrap().1 = 7 * 48;
    let tidy = site(1000, 64_000, 1000, 64_000, tidy);
    let mut cache = site(1, 4096, 0, 0, cxx);
    cache.series = series(2.0, |_| 4096);
    let input = MemoryInput {
        allocators: vec![AllocatorInfo {
            name: "glibc".into(),
            module: libc.clone(),
            path: "/lib/libc.so.6".into(),
            functions: Vec::new(),
        }],
        allocator_libraries: vec![libc.clone()],
        sites: vec![leak, tidy, cache],
        duration: 2.0,
        end_ns: 3_000_000_000,
        unknown_frees: 5,
        options: OPTS,
        exact: true,
        ..Default::default()
    };
    let m = analyze(input);
    let a = &m.allocations;
    assert_eq!((a.allocations, a.frees, a.outstanding), (1008, 1000, 8));
    assert_eq!(a.outstanding_bytes, 7 * 48 + 4096);
    assert_eq!(a.unknown_frees, 5);
    assert_eq!(a.by_function[0].function, "churn");
    assert_eq!(a.by_function[1].function, "make_cache");
    let d = &m.memory_leak_detection;
    assert!(d.detected);
    assert_eq!(d.sites.len(), 2, "the tidy site holds nothing");
    assert_eq!(d.method, "growth");
    assert_eq!(d.sites[0].verdict, "growing");
    assert_eq!(d.sites[0].function, "leak_blocks");
    assert_eq!((d.sites[0].bytes, d.sites[0].count), (7 * 48, 7));
    assert!((d.sites[0].oldest_age - 2.0).abs() < 1e-9);
    assert_eq!(d.sites[1].verdict, "flat");
    assert_eq!(d.sites[1].function, "make_cache");
    assert_eq!((d.leaked_bytes, d.retained_bytes), (7 * 48, 4096));
    assert_eq!(m.allocator.as_ref().map(|a| &*a.name), Some("glibc"));
}

#[test]
fn a_scan_decides_the_verdict_and_growth_stays_a_second_opinion() {
    let tally = |count: u64, size: u64| Tally {
        bytes: count * size,
        count,
    };
    // A site that grew and still holds blocks nothing points to: lost, and growing.
    let mut lost = site(101, 101 * 48, 0, 0, vec![frame("drop_blocks", "victim")]);
    lost.series = series(2.0, |t| ((t / 2.0) * 101.0) as u64 * 48);
    lost.series.last_mut().unwrap().1 = 101 * 48;
    lost.verdicts = Some(SiteVerdicts {
        definitely_lost: tally(100, 48),
        reachable: tally(1, 48),
        ..Default::default()
    });
    // A list whose head was dropped: one definitely lost, the rest only through it.
    let mut list = site(50, 50 * 32, 0, 0, vec![frame("build_list", "victim")]);
    list.verdicts = Some(SiteVerdicts {
        definitely_lost: tally(1, 32),
        indirectly_lost: tally(49, 32),
        ..Default::default()
    });
    // A growing cache every block of which is reachable: no leak.
    let mut cache = site(200, 200 * 64, 0, 0, vec![frame("keep_blocks", "victim")]);
    cache.series = series(2.0, |t| ((t / 2.0) * 200.0) as u64 * 64);
    cache.series.last_mut().unwrap().1 = 200 * 64;
    cache.verdicts = Some(SiteVerdicts {
        reachable: tally(200, 64),
        ..Default::default()
    });
    // Every block freed after the scan: listed for what the scan found lost.
    let mut gone = site(3, 30, 3, 30, vec![frame("later_freed", "victim")]);
    gone.verdicts = Some(SiteVerdicts {
        definitely_lost: tally(3, 10),
        ..Default::default()
    });
    let m = analyze(MemoryInput {
        sites: vec![cache, list, lost, gone],
        duration: 2.0,
        end_ns: 3_000_000_000,
        options: OPTS,
        reach: true,
        exact: true,
        ..Default::default()
    });
    let d = &m.memory_leak_detection;
    assert_eq!(d.method, "reachability");
    assert!(d.detected);
    assert_eq!(
        d.definitely_lost,
        Tally {
            bytes: 100 * 48 + 32 + 30,
            count: 104
        }
    );
    assert_eq!(d.indirectly_lost, tally(49, 32));
    assert_eq!(
        d.reachable,
        Tally {
            bytes: 48 + 200 * 64,
            count: 201
        }
    );
    assert_eq!(d.leaked_bytes, 100 * 48 + 32 + 30 + 49 * 32);
    assert_eq!(d.retained_count, 201);
    let order: Vec<(&str, &str, &str)> = d
        .sites
        .iter()
        .map(|s| (s.function.as_str(), &*s.verdict, &*s.trend))
        .collect();
    assert_eq!(
        order,
        [
            ("drop_blocks", "definitely_lost", "growing"),
            ("build_list", "definitely_lost", "flat"),
            ("later_freed", "definitely_lost", "flat"),
            ("keep_blocks", "reachable", "growing"),
        ]
    );
    assert!(d.notes.is_empty(), "{:?}", d.notes);
}

#[test]
fn without_a_scan_the_growth_verdict_is_labelled() {
    let mut s = site(7, 7 * 48, 0, 0, vec![frame("leak_blocks", "victim")]);
    s.series = series(2.0, |t| ((t / 2.0) * 7.0) as u64 * 48);
    s.series.last_mut().unwrap().1 = 7 * 48;
    let m = analyze(MemoryInput {
        sites: vec![s],
        duration: 2.0,
        options: OPTS,
        no_scan: Some("ptrace refused".into()),
        exact: true,
        ..Default::default()
    });
    let d = &m.memory_leak_detection;
    assert_eq!(d.method, "growth");
    assert!(d.detected);
    assert_eq!(d.sites[0].verdict, "growing");
    assert_eq!(d.sites[0].definitely_lost, None);
    assert_eq!(d.definitely_lost, Tally::default());
    assert!(d.notes[0].contains("ptrace refused"), "{:?}", d.notes);
}

#[test]
fn growth_sites_are_charged_judged_and_thinned() {
    let mut heap = GrowthInput {
        pages: 300,
        frames: vec![frame("memset", "libc.so.6"), frame("fill_cache", "victim")],
        series: series(2.0, |t| (t * 150.0) as u64 * PAGE_SIZE),
    };
    heap.series.last_mut().unwrap().1 = 300 * PAGE_SIZE;
    let stack = GrowthInput {
        pages: 2,
        frames: vec![frame("deep", "victim")],
        series: series(2.0, |_| 2 * PAGE_SIZE),
    };
    let m = analyze(MemoryInput {
        allocator_libraries: vec!["libc.so.6".into()],
        growth: vec![stack, heap],
        faults: 302,
        duration: 2.0,
        growth_duration: 2.0,
        options: OPTS,
        ..Default::default()
    });
    assert_eq!(m.mode, "growth");
    assert_eq!(m.growth.faults, 302);
    assert_eq!(m.growth.bytes, 302 * PAGE_SIZE);
    assert_eq!(m.growth.sites, 2);
    let top = &m.growth_sites[0];
    assert_eq!(
        top.function, "fill_cache",
        "memset is libc's: its caller is charged"
    );
    assert_eq!((top.pages, top.bytes), (300, 300 * PAGE_SIZE));
    assert_eq!(top.trend, "growing");
    assert!(top.series.len() <= GROWTH_POINTS + 1);
    assert_eq!(top.series.last().map(|p| p.1), Some(300 * PAGE_SIZE));
    assert_eq!(m.growth_sites[1].trend, "flat");
    let d = &m.memory_leak_detection;
    assert_eq!(d.method, "growth");
    assert!(d.detected, "a growing site");
    assert!(d.notes[0].contains("--memory exact"), "{:?}", d.notes);
}

#[test]
fn frees_of_unknown_blocks_never_go_negative() {
    let mut s = site(2, 100, 5, 900, vec![]);
    s.totals.untracked = 1;
    assert_eq!((s.outstanding(), s.outstanding_bytes()), (0, 0));
}

#[test]
fn charged_frame_skips_allocator_modules_and_wrappers() {
    let frames = vec![
        frame("__rdl_alloc", "victim"),
        frame("alloc::raw_vec::finish_grow", "victim"),
        frame("victim_mem_rust::leak", "victim"),
    ];
    let got = charged_frame(&frames, &["libc.so.6".into()]).unwrap();
    assert_eq!(got.function, "victim_mem_rust::leak");
    // A walk that ran into nothing: the named frame after it is charged.
    let frames = vec![
        frame(
            "<u8 as alloc::vec::spec_from_elem::SpecFromElem>::from_elem",
            "victim",
        ),
        frame("victim::cache", "victim"),
    ];
    assert_eq!(
        charged_frame(&frames, &[]).map(|f| f.function.as_str()),
        Some("victim::cache")
    );
    let frames = vec![frame("??", "??"), frame("leak_blocks", "static")];
    let got = charged_frame(&frames, &[]).unwrap();
    assert_eq!(got.function, "leak_blocks");
    let frames = vec![frame("??", "stripped")];
    assert_eq!(charged_frame(&frames, &[]).unwrap().module, "stripped");
    let frames = vec![frame("xmalloc", "libc.so.6"), frame("app", "app")];
    assert_eq!(
        charged_frame(&frames, &["libc.so.6".into()])
            .unwrap()
            .function,
        "app"
    );
    assert!(charged_frame(&[], &[]).is_none());
}
