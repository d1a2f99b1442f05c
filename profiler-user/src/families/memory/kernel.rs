//! The `memory` family's kernel side: attach the allocator probes and the `mmap`/`munmap`
//! tracepoints, and read the maps.

use std::collections::{HashMap, HashSet};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::HashMap as BpfHashMap,
    programs::{TracePoint, trace_point::TracePointLink},
};
use profiler_common::memory::{
    AllocInfo, FAULT_SLOT, MAX_ALLOC_FUNCTIONS, MMAP_SLOT, MUNMAP_SLOT, MemStack,
    STACK_FIRST_IS_PC, STACK_RAW_WORDS, SiteStats, TEXT_RANGES_MAX, TextRanges, cookie, maps,
    programs,
};

use super::allocator::{self, AllocFn, Allocator};
use crate::bpf::{
    self,
    multi::{self, MultiLink, MultiProgram},
};

const ENTRY: &str = programs::MEM_ENTRY;
const RETURN: &str = programs::MEM_RETURN;
/// The tracepoints: (program, category, name), in attach order (exit before entry, as with the
/// uprobes: a call seen half is then only a return without an entry).
const TRACEPOINTS: [(&str, &str, &str); 3] = [
    (programs::MEM_MMAP_EXIT, "syscalls", "sys_exit_mmap"),
    (programs::MEM_MMAP_ENTER, "syscalls", "sys_enter_mmap"),
    (programs::MEM_MUNMAP, "syscalls", "sys_enter_munmap"),
];

/// The family's links, owned here so that they can be taken down in order. The allocator probes
/// are multi-uprobe links, one per allocator file and group: a link goes with one grace period of
/// the kernel's, where each perf-event uprobe took one.
#[derive(Default)]
pub(crate) struct Links {
    /// Entry probes of the functions that return a block.
    entries: Vec<MultiLink>,
    returns: Vec<MultiLink>,
    /// Entry probes of the functions that release one.
    frees: Vec<MultiLink>,
    tracepoints: Vec<TracePointLink>,
    /// The programs the links run (kept while they do).
    programs: Vec<MultiProgram>,
}

impl Links {
    pub(crate) fn count(&self) -> usize {
        self.allocator_probes() + self.tracepoints.len()
    }

    /// The allocator functions' probes (entries and returns).
    pub(crate) fn allocator_probes(&self) -> usize {
        (self.entries.iter().chain(&self.returns).chain(&self.frees))
            .map(MultiLink::len)
            .sum()
    }

    /// Detaches everything: the allocating functions' probes first (a return whose entry is gone
    /// records nothing), and the frees after them, so that no block is recorded after its
    /// release went unseen (while the allocator keeps running, as when the overhead budget
    /// detaches the family or `attach` ends).
    pub(crate) fn detach(mut self) {
        drop(std::mem::take(&mut self.entries));
        drop(std::mem::take(&mut self.returns));
        drop(std::mem::take(&mut self.frees));
        bpf::release_in_parallel(std::mem::take(&mut self.tracepoints));
    }
}

/// Attaches the allocator probes (return probes first, see the functions family) and the
/// tracepoints, for process `pid` only. Among the entry probes the frees come first: a block
/// recorded while `free` was not yet probed could be released unseen and its address handed
/// out again (`Links::detach` takes them down last, for the same reason).
pub(crate) fn attach(ebpf: &mut Ebpf, allocators: &[Allocator], pid: u32) -> anyhow::Result<Links> {
    anyhow::ensure!(pid != 0, "invalid pid 0");
    let [entry, ret] = multi::load(ebpf, [ENTRY, RETURN])?;
    let mut links = Links::default();
    // Function ids follow `functions`. One link per allocator file and group, in attach order.
    let all: Vec<_> = functions(allocators).enumerate().collect();
    // Return probes of the allocating functions, entry probes of the releasing ones, entry
    // probes of the allocating ones.
    for group in 0..3 {
        let (program, returns) = if group == 0 {
            (&ret, true)
        } else {
            (&entry, false)
        };
        let wanted = |f: &AllocFn| f.class.returns_block() != (group == 1);
        for allocator in allocators {
            let chosen: Vec<_> = all
                .iter()
                .filter(|(_, (a, f))| std::ptr::eq(*a, allocator) && wanted(f))
                .collect();
            if chosen.is_empty() {
                continue;
            }
            let offsets: Vec<u64> = chosen.iter().map(|(_, (_, f))| f.probe_offset).collect();
            let cookies: Vec<u64> = (chosen.iter())
                .map(|(id, (_, f))| cookie(*id as u32, f.class))
                .collect();
            let path = &allocator.module.open_path;
            let link = program
                .attach(path, &offsets, &cookies, returns, pid)
                .with_context(|| {
                    let names: Vec<&str> =
                        chosen.iter().map(|(_, (_, f))| f.name.as_str()).collect();
                    format!(
                        "failed to attach to {} in {}",
                        names.join(", "),
                        allocator.module.file_name()
                    )
                })?;
            match group {
                0 => links.returns.push(link),
                1 => links.frees.push(link),
                _ => links.entries.push(link),
            }
        }
    }
    links.programs = vec![entry, ret];
    for (program, category, name) in TRACEPOINTS {
        let tp: &mut TracePoint = bpf::program(ebpf, program)?;
        tp.load()
            .with_context(|| format!("failed to load {program}"))?;
        let id = tp
            .attach(category, name)
            .with_context(|| format!("failed to attach to the {category}/{name} tracepoint"))?;
        links.tracepoints.push(tp.take_link(id)?);
    }
    Ok(links)
}

/// Attaches the growth attribution: the target's write faults, from the
/// `exceptions/page_fault_user` tracepoint.
pub(crate) fn attach_growth(ebpf: &mut Ebpf) -> anyhow::Result<TracePointLink> {
    let tp: &mut TracePoint = bpf::program(ebpf, programs::MEM_PAGE_FAULT)?;
    tp.load()
        .with_context(|| format!("failed to load {}", programs::MEM_PAGE_FAULT))?;
    let id = tp
        .attach("exceptions", "page_fault_user")
        .context("failed to attach to the exceptions/page_fault_user tracepoint")?;
    Ok(tp.take_link(id)?)
}

/// The target's executable ranges from its /proc maps text, sorted and merged, at most
/// [`TEXT_RANGES_MAX`] (the closest ones merged further: a word in the gap between two of them is
/// then taken for code, which only adds a frame that symbolizes to nothing).
pub(crate) fn text_ranges(maps: &str) -> Vec<[u64; 2]> {
    let mut ranges: Vec<[u64; 2]> = crate::tracee::parse_regions(maps)
        .into_iter()
        .filter(|r| r.executable && r.path != "[vsyscall]")
        .map(|r| [r.start, r.end])
        .collect();
    ranges.sort_unstable();
    let mut merged: Vec<[u64; 2]> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match merged.last_mut() {
            Some(last) if r[0] <= last[1] => last[1] = last[1].max(r[1]),
            _ => merged.push(r),
        }
    }
    while merged.len() > TEXT_RANGES_MAX {
        let i = (1..merged.len())
            .min_by_key(|&i| merged[i][0] - merged[i - 1][1])
            .expect("more than one range");
        merged[i - 1][1] = merged[i][1];
        merged.remove(i);
    }
    merged
}

/// Writes the executable ranges the kernel's stack scan checks words against.
pub(crate) fn write_text(ebpf: &mut Ebpf, ranges: &[[u64; 2]]) -> anyhow::Result<()> {
    let mut text = TextRanges {
        count: ranges.len().min(TEXT_RANGES_MAX) as u32,
        _pad: 0,
        ranges: [[0; 2]; TEXT_RANGES_MAX],
    };
    for (slot, r) in text.ranges.iter_mut().zip(ranges) {
        *slot = *r;
    }
    let mut map: aya::maps::Array<_, TextRanges> =
        aya::maps::Array::try_from(bpf::map_mut(ebpf, maps::MEM_TEXT)?)?;
    map.set(0, text, 0)?;
    Ok(())
}

/// Write faults by site now.
pub(crate) fn read_growth(ebpf: &Ebpf) -> anyhow::Result<Vec<(u64, u64)>> {
    let growth: BpfHashMap<_, u64, u64> = BpfHashMap::try_from(bpf::map(ebpf, maps::MEM_GROWTH)?)?;
    Ok(growth.iter().filter_map(Result::ok).collect())
}

/// The target's write faults so far (the growth attribution's hits).
pub(crate) fn read_faults(ebpf: &Ebpf) -> u64 {
    read_calls(ebpf, [FAULT_SLOT].into_iter())
        .ok()
        .and_then(|v| v.first().copied())
        .unwrap_or(0)
}

/// The probed functions in function-id order, with their allocator.
pub(crate) fn functions(
    allocators: &[Allocator],
) -> impl Iterator<Item = (&Allocator, &allocator::AllocFn)> {
    allocators
        .iter()
        .flat_map(|a| a.functions.iter().map(move |f| (a, f)))
        .take(MAX_ALLOC_FUNCTIONS as usize)
}

/// Every site's totals now.
pub(crate) fn read_sites(ebpf: &Ebpf) -> anyhow::Result<Vec<(u64, SiteStats)>> {
    let sites: BpfHashMap<_, u64, SiteStats> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::MEM_SITES)?)?;
    Ok(sites.iter().filter_map(Result::ok).collect())
}

/// What the kernel side holds at the end, before symbolization.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawMemory {
    pub sites: Vec<(u64, SiteStats)>,
    /// Site -> user stack (return address first).
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Sites whose first address is an instruction that faulted, not a return address.
    pub pc_first: HashSet<u64>,
    /// Sites whose other addresses are the raw top words of the stack (see `STACK_RAW_WORDS`).
    pub raw_words: HashSet<u64>,
    /// Site -> timestamp of its oldest outstanding block.
    pub oldest: HashMap<u64, u64>,
    /// Outstanding blocks in `MEM_ALLOCS`.
    pub outstanding: u64,
    /// Calls per function id, then `mmap` and `munmap`.
    pub calls: Vec<u64>,
    /// Write faults by site (stacks in `stacks`), and in all.
    pub growth: Vec<(u64, u64)>,
    pub faults: u64,
}

/// Reads every map of the family.
pub(crate) fn read(ebpf: &Ebpf, functions: usize) -> anyhow::Result<RawMemory> {
    let mut raw = RawMemory {
        sites: read_sites(ebpf)?,
        ..Default::default()
    };
    let stacks: BpfHashMap<_, u64, MemStack> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::MEM_STACKS)?)?;
    for (site, stack) in stacks.iter().filter_map(Result::ok) {
        raw.stacks.insert(site, stack.frames().collect());
        if stack.flags & STACK_FIRST_IS_PC != 0 {
            raw.pc_first.insert(site);
        }
        if stack.flags & STACK_RAW_WORDS != 0 {
            raw.raw_words.insert(site);
        }
    }
    let allocs: BpfHashMap<_, u64, AllocInfo> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::MEM_ALLOCS)?)?;
    for (_, info) in allocs.iter().filter_map(Result::ok) {
        raw.outstanding += 1;
        let oldest = raw.oldest.entry(info.site).or_insert(info.timestamp_ns);
        *oldest = (*oldest).min(info.timestamp_ns);
    }
    raw.calls = read_calls(ebpf, (0..functions as u32).chain([MMAP_SLOT, MUNMAP_SLOT]))?;
    raw.growth = read_growth(ebpf)?;
    raw.faults = read_faults(ebpf);
    Ok(raw)
}

/// Calls counted in `MEM_CALLS` (summed over the CPUs) for each of `slots`.
pub(crate) fn read_calls(
    ebpf: &Ebpf,
    slots: impl Iterator<Item = u32>,
) -> anyhow::Result<Vec<u64>> {
    bpf::per_cpu_sums(ebpf, maps::MEM_CALLS, slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_ranges_are_the_executable_mappings_merged() {
        let maps = "\
555555554000-555555555000 r--p 00000000 fe:01 12 /usr/bin/victim
555555555000-555555556000 r-xp 00001000 fe:01 12 /usr/bin/victim
555555556000-555555557000 r-xp 00002000 fe:01 12 /usr/bin/victim
7f0000000000-7f0000100000 r-xp 00028000 fe:01 77 /usr/lib/libc.so.6
7f0000100000-7f0000200000 rw-p 00000000 00:00 0
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";
        assert_eq!(
            text_ranges(maps),
            [
                [0x5555_5555_5000, 0x5555_5555_7000],
                [0x7f00_0000_0000, 0x7f00_0010_0000]
            ]
        );
    }

    #[test]
    fn too_many_ranges_merge_across_their_smallest_gaps() {
        let maps: String = (0..TEXT_RANGES_MAX as u64 + 3)
            .map(|i| {
                // Every fourth gap is one page; the others ten.
                let start = 0x10_0000 + i * 0xb000 - (i / 4) * 0x9000;
                format!(
                    "{start:x}-{:x} r-xp 00000000 fe:01 1 /lib/x{i}.so\n",
                    start + 0x1000
                )
            })
            .collect();
        let got = text_ranges(&maps);
        assert_eq!(got.len(), TEXT_RANGES_MAX);
        assert!(got.windows(2).all(|w| w[0][1] < w[1][0]));
        assert_eq!(got[0][0], 0x10_0000);
    }
}
