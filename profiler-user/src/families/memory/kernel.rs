//! The `memory` family's kernel side: attach the allocator probes and the `mmap`/`munmap`
//! tracepoints, and read the maps.

use std::collections::HashMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::HashMap as BpfHashMap,
    programs::{TracePoint, trace_point::TracePointLink},
};
use profiler_common::memory::{
    AllocInfo, MAX_ALLOC_FUNCTIONS, MMAP_SLOT, MUNMAP_SLOT, MemStack, SiteStats, cookie, maps,
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
        let probes: usize = (self.entries.iter().chain(&self.returns).chain(&self.frees))
            .map(MultiLink::len)
            .sum();
        probes + self.tracepoints.len()
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
#[derive(Debug, Default)]
pub(crate) struct RawMemory {
    pub sites: Vec<(u64, SiteStats)>,
    /// Site -> user stack (return address first).
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Site -> timestamp of its oldest outstanding block.
    pub oldest: HashMap<u64, u64>,
    /// Outstanding blocks in `MEM_ALLOCS`.
    pub outstanding: u64,
    /// Calls per function id, then `mmap` and `munmap`.
    pub calls: Vec<u64>,
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
    }
    let allocs: BpfHashMap<_, u64, AllocInfo> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::MEM_ALLOCS)?)?;
    for (_, info) in allocs.iter().filter_map(Result::ok) {
        raw.outstanding += 1;
        let oldest = raw.oldest.entry(info.site).or_insert(info.timestamp_ns);
        *oldest = (*oldest).min(info.timestamp_ns);
    }
    raw.calls = read_calls(ebpf, (0..functions as u32).chain([MMAP_SLOT, MUNMAP_SLOT]))?;
    Ok(raw)
}

/// Calls counted in `MEM_CALLS` (summed over the CPUs) for each of `slots`.
pub(crate) fn read_calls(
    ebpf: &Ebpf,
    slots: impl Iterator<Item = u32>,
) -> anyhow::Result<Vec<u64>> {
    bpf::per_cpu_sums(ebpf, maps::MEM_CALLS, slots)
}
