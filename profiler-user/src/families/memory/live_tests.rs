//! The live view of the memory family: the maps read as at the end, into copies of the series,
//! analyzed as the report is, so that the report at the end is the one a run without the live
//! view would give.

use super::*;
use crate::family_testing::TestReporting;

/// CLOCK_MONOTONIC when the (pretend) probes were attached, ns.
const START: u64 = 1_000_000_000_000;
const S: u64 = 1_000_000_000;
/// The sites: one that leaks 48-byte blocks, one whose 64-byte blocks are all freed.
const LEAK: u64 = 0x1111;
const TIDY: u64 = 0x2222;

/// The maps as a unit test makes them.
#[derive(Default)]
struct FakeMaps {
    raw: RawMemory,
}

impl Maps for FakeMaps {
    fn read(&self, _functions: usize) -> anyhow::Result<RawMemory> {
        Ok(self.raw.clone())
    }

    fn read_growth(&self) -> anyhow::Result<Vec<(u64, u64)>> {
        Ok(self.raw.growth.clone())
    }

    fn read_faults(&self) -> u64 {
        self.raw.faults
    }

    fn read_counters(&self) -> anyhow::Result<BTreeMap<Counter, u64>> {
        Ok(BTreeMap::from([(Counter::MemUnknownFrees, 3)]))
    }
}

/// `n` blocks of `size` bytes, `freed` of them released.
fn blocks(n: u64, size: u64, freed: u64) -> SiteStats {
    SiteStats {
        allocs: n,
        alloc_bytes: n * size,
        frees: freed,
        free_bytes: freed * size,
        ..SiteStats::default()
    }
}

/// The maps after `rounds` rounds of one leaked 48-byte block and 40 freed 64-byte ones, and
/// `rounds` new resident pages at the leak's site.
fn maps(rounds: u64) -> FakeMaps {
    FakeMaps {
        raw: RawMemory {
            sites: vec![
                (LEAK, blocks(rounds, 48, 0)),
                (TIDY, blocks(rounds * 40, 64, rounds * 40)),
            ],
            growth: vec![(LEAK, rounds)],
            faults: rounds,
            calls: vec![0, 0],
            ..RawMemory::default()
        },
    }
}

/// The family after ticks at 1 s, 2 s ... `to` s, a round a second.
fn family(to: u64) -> Memory {
    let mut m = Memory::new(LeakOptions::default(), true, AllocatorProbes::default());
    m.started_ns = START;
    tick(&mut m, 1, to);
    m
}

/// The ticks at `from` s ... `to` s, as `on_tick` records them.
fn tick(m: &mut Memory, from: u64, to: u64) {
    for t in from..=to {
        let raw = maps(t).raw;
        record(&mut m.series, &site_bytes(&raw.sites), START + t * S, false);
        let growth = growth_bytes(&raw.growth);
        record(&mut m.growth_series, &growth, START + t * S, false);
    }
}

fn json(section: &MemorySection) -> serde_json::Value {
    serde_json::to_value(section).expect("a section serializes")
}

/// A live snapshot has the outstanding bytes read then, the growth verdict (no scan is made
/// for it) and the growth sites; made twice it is the same, and the family's series and maps
/// are as they were.
#[test]
fn a_live_snapshot_has_the_outstanding_bytes_so_far_and_takes_nothing() {
    let mut r = TestReporting::new();
    let m = family(4);
    let (series, growth) = (m.series.clone(), m.growth_series.clone());
    let now = START + 5 * S;
    let live = m
        .live_section(&maps(5), now, &mut r.ctx(START, now))
        .expect("a snapshot");
    let a = &live.allocations;
    assert_eq!(
        (a.allocations, a.outstanding, a.outstanding_bytes, a.sites),
        (5 + 200, 5, 5 * 48, 2)
    );
    assert_eq!(a.unknown_frees, 3);
    let d = &live.memory_leak_detection;
    assert_eq!(d.method, "growth");
    assert!(d.notes.iter().any(|n| n.contains("no scan yet")), "{d:?}");
    assert_eq!(live.growth.bytes, 5 * PAGE_SIZE);
    assert_eq!(live.growth_sites.len(), 1);
    let again = m
        .live_section(&maps(5), now, &mut r.ctx(START, now))
        .expect("a snapshot");
    assert_eq!(json(&again), json(&live));
    assert_eq!((m.series, m.growth_series), (series, growth));
    assert!(m.raw.is_none());
}

/// With snapshots made along the way, the report at the end is exactly that of a run without
/// them.
#[test]
fn the_report_after_live_snapshots_is_the_whole_run() {
    let mut r = TestReporting::new();
    let mut watched = family(4);
    let mut unwatched = family(4);
    for t in [5, 7] {
        let now = START + t * S;
        let live = watched
            .live_section(&maps(t), now, &mut r.ctx(START, now))
            .expect("a snapshot");
        assert_eq!(live.allocations.outstanding_bytes, t * 48);
    }
    let end = START + 10 * S;
    let mut sections = Vec::new();
    for m in [&mut watched, &mut unwatched] {
        tick(m, 5, 9);
        m.finish(&maps(10), end).expect("the maps read");
        sections.push(json(&m.final_section(&mut r.ctx(START, end))));
    }
    assert_eq!(sections[0], sections[1]);
    assert_eq!(sections[0]["allocations"]["outstanding_bytes"], 10 * 48);
}
