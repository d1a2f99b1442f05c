//! The `memory` family's kernel side: attach the allocator probes and the `mmap`/`munmap`
//! tracepoints, and read the maps.

use std::collections::HashMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, PerCpuArray},
    programs::{
        TracePoint, UProbe,
        trace_point::TracePointLink,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
    },
};
use profiler_common::memory::{
    AllocInfo, MAX_ALLOC_FUNCTIONS, MMAP_SLOT, MUNMAP_SLOT, MemStack, SiteStats, cookie, maps,
    programs,
};

use super::allocator::{self, Allocator};
use crate::bpf;

const ENTRY: &str = programs::MEM_ENTRY;
const RETURN: &str = programs::MEM_RETURN;
/// The tracepoints: (program, category, name), in attach order (exit before entry, as with the
/// uprobes: a call seen half is then only a return without an entry).
const TRACEPOINTS: [(&str, &str, &str); 3] = [
    (programs::MEM_MMAP_EXIT, "syscalls", "sys_exit_mmap"),
    (programs::MEM_MMAP_ENTER, "syscalls", "sys_enter_mmap"),
    (programs::MEM_MUNMAP, "syscalls", "sys_enter_munmap"),
];

/// The family's links, owned here so that they can be detached all at once (the kernel waits
/// for a grace period on each uprobe it removes: one after the other, that is seconds).
#[derive(Default)]
pub(crate) struct Links {
    /// Entry probes of the functions that return a block.
    entries: Vec<UProbeLink>,
    returns: Vec<UProbeLink>,
    /// Entry probes of the functions that release one.
    frees: Vec<UProbeLink>,
    tracepoints: Vec<TracePointLink>,
}

impl Links {
    pub(crate) fn count(&self) -> usize {
        self.entries.len() + self.returns.len() + self.frees.len() + self.tracepoints.len()
    }

    /// Detaches everything, each group in parallel: the allocating functions' probes first
    /// (a return whose entry is gone records nothing), and the frees after them, so that no
    /// block is recorded after its release went unseen (while the allocator keeps running, as
    /// when the overhead budget detaches the family or `attach` ends).
    pub(crate) fn detach(mut self) {
        self.entries.append(&mut self.returns);
        bpf::release_in_parallel(self.entries);
        bpf::release_in_parallel(self.frees);
        bpf::release_in_parallel(self.tracepoints);
    }
}

/// Attaches the allocator probes (return probes first, see the functions family) and the
/// tracepoints, for process `pid` only. Among the entry probes the frees come first: a block
/// recorded while `free` was not yet probed could be released unseen and its address handed
/// out again (`Links::detach` takes them down last, for the same reason).
pub(crate) fn attach(ebpf: &mut Ebpf, allocators: &[Allocator], pid: u32) -> anyhow::Result<Links> {
    let scope = std::num::NonZeroU32::new(pid)
        .map(UProbeScope::OneProcess)
        .context("invalid pid 0")?;
    let mut links = Links::default();
    // Function ids follow `functions`; the frees are attached first.
    let mut ordered: Vec<_> = functions(allocators).enumerate().collect();
    ordered.sort_by_key(|(_, (_, f))| f.class.returns_block());
    for name in [RETURN, ENTRY] {
        let program: &mut UProbe = bpf::program(ebpf, name)?;
        program
            .load()
            .with_context(|| format!("failed to load {name}"))?;
        for &(id, (allocator, function)) in &ordered {
            if name == RETURN && !function.class.returns_block() {
                continue;
            }
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(function.probe_offset),
                cookie: Some(cookie(id as u32, function.class)),
            };
            let id = program
                .attach(point, &allocator.module.open_path, scope)
                .with_context(|| {
                    format!(
                        "failed to attach to {} in {}",
                        function.name,
                        allocator.module.file_name()
                    )
                })?;
            let link = program.take_link(id)?;
            if name == RETURN {
                links.returns.push(link);
            } else if function.class.returns_block() {
                links.entries.push(link);
            } else {
                links.frees.push(link);
            }
        }
    }
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
        raw.stacks.insert(site, frames(&stack));
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
    let calls: PerCpuArray<_, u64> = PerCpuArray::try_from(bpf::map(ebpf, maps::MEM_CALLS)?)?;
    Ok(slots
        .map(|slot| calls.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0))
        .collect())
}

/// The addresses of a site's stack, innermost first: the return address, then the frames walked
/// from the caller's frame pointer.
pub(crate) fn frames(stack: &MemStack) -> Vec<u64> {
    let walked = &stack.ips[..(stack.len as usize).min(stack.ips.len())];
    let mut ips = Vec::with_capacity(walked.len() + 1);
    if stack.ret_addr != 0 && walked.first() != Some(&stack.ret_addr) {
        ips.push(stack.ret_addr);
    }
    ips.extend(walked.iter().copied().filter(|ip| *ip != 0));
    ips
}
