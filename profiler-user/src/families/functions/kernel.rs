//! The `functions` family on the user side: attach the entry and return probes, and read what the
//! kernel aggregated.

use std::{collections::HashMap, path::PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, PerCpuArray, StackTraceMap},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLinkId, UProbeScope},
    },
};
use profiler_common::functions::{
    CallerKey, FuncStats, MAX_DEPTH, ShadowStack, StackKey, THREAD_SLOT_WORDS, ThreadFunc,
    ThreadKey, ThreadStats, maps, programs,
};

use super::analyze::FuncTotals;
use crate::bpf;

/// Where one function's probes go: the file and the offset in it. The function id is the index
/// in the list handed to [`attach`].
#[derive(Debug, Clone)]
pub(crate) struct Site {
    pub path: PathBuf,
    pub file_offset: u64,
    /// Whether the return probe is attached too (the calibration times entries alone).
    pub with_return: bool,
}

const ENTRY: &str = programs::FN_ENTRY;
const RETURN: &str = programs::FN_RETURN;

/// A probe that could not be attached, with the function it was for.
#[derive(Debug)]
pub(crate) struct AttachFailure {
    pub index: usize,
    pub error: anyhow::Error,
}

/// The links of one site, so it can be detached on its own.
#[derive(Debug, Default)]
pub(crate) struct SiteLinks {
    entry: Option<UProbeLinkId>,
    ret: Option<UProbeLinkId>,
}

/// Attaches an entry and a return probe to every site, for process `pid` only. Returns each
/// site's links; stops at the first failure.
pub(crate) fn attach(
    ebpf: &mut Ebpf,
    sites: &[Site],
    pid: u32,
) -> Result<Vec<SiteLinks>, AttachFailure> {
    let scope = std::num::NonZeroU32::new(pid)
        .map(UProbeScope::OneProcess)
        .ok_or_else(|| AttachFailure {
            index: 0,
            error: anyhow::anyhow!("invalid pid 0"),
        })?;
    let mut links: Vec<SiteLinks> = sites.iter().map(|_| SiteLinks::default()).collect();
    // Return probes first (and, in `detach`, entry probes first): in the window between the two,
    // a call can then only return without an entry (counted as unmatched, harmless). The other
    // order pushes frames whose return is never seen; at the same stack slot they cannot be
    // told from tail calls, so they would stay and later returns would pair with them.
    for name in [RETURN, ENTRY] {
        let program: &mut UProbe =
            bpf::program(ebpf, name).map_err(|error| AttachFailure { index: 0, error })?;
        program
            .load()
            .with_context(|| format!("failed to load {name}"))
            .map_err(|error| AttachFailure { index: 0, error })?;
        for (index, site) in sites.iter().enumerate() {
            if name == RETURN && !site.with_return {
                continue;
            }
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(site.file_offset),
                cookie: Some(index as u64),
            };
            let link = program
                .attach(point, &site.path, scope)
                .map_err(|e| AttachFailure {
                    index,
                    error: anyhow::Error::new(e),
                })?;
            if name == RETURN {
                links[index].ret = Some(link);
            } else {
                links[index].entry = Some(link);
            }
        }
    }
    Ok(links)
}

/// Tells the kernel programs where the target's uretprobe trampoline is (its `[uprobes]`
/// mapping, made by the kernel at the first return probe): a call at a stack slot still held by
/// a frame is a tail call if the slot holds the trampoline, a slot reused after a longjmp if not.
/// Returns whether the address is known.
pub(crate) fn publish_trampoline(ebpf: &mut Ebpf, pid: i32) -> bool {
    let Some(start) = crate::tracee::special_mapping(pid, "[uprobes]") else {
        return false;
    };
    let Some(map) = ebpf.map_mut(maps::TRAMPOLINE) else {
        return false;
    };
    let Ok(mut array) = aya::maps::Array::<_, u64>::try_from(map) else {
        return false;
    };
    array.set(0, start, 0).is_ok()
}

/// Probes attached in `links`.
pub(crate) fn probe_count(links: &[SiteLinks]) -> usize {
    links
        .iter()
        .map(|l| usize::from(l.entry.is_some()) + usize::from(l.ret.is_some()))
        .sum()
}

/// Detaches one site's probes (entry first, see `attach`); what they counted stays in the maps.
pub(crate) fn detach_site(ebpf: &mut Ebpf, links: &mut SiteLinks) -> anyhow::Result<()> {
    if let Some(link) = links.entry.take() {
        bpf::program::<UProbe>(ebpf, ENTRY)?.detach(link)?;
    }
    if let Some(link) = links.ret.take() {
        bpf::program::<UProbe>(ebpf, RETURN)?.detach(link)?;
    }
    Ok(())
}

/// Entry and return hits so far, per function id.
pub(crate) fn read_hits(ebpf: &Ebpf, functions: usize) -> anyhow::Result<Vec<(u64, u64)>> {
    Ok(read_totals(ebpf, functions)?
        .iter()
        .map(|t| (t.entries, t.returns))
        .collect())
}

/// Each function's statistics: the shared ones summed over the CPUs, plus every thread's own.
fn read_totals(ebpf: &Ebpf, functions: usize) -> anyhow::Result<Vec<FuncTotals>> {
    let stats: PerCpuArray<_, FuncStats> =
        PerCpuArray::try_from(bpf::map(ebpf, maps::FUNC_STATS)?)?;
    let mut totals = (0..functions as u32)
        .map(|id| Ok(FuncTotals::sum(stats.get(&id, 0)?.iter())))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for (_, value) in thread_values(ebpf)? {
        for own in &value.funcs {
            if let Some(t) = own_func(own).and_then(|f| totals.get_mut(f as usize)) {
                t.add_thread(own);
            }
        }
    }
    Ok(totals)
}

/// Every thread's own value, with its thread id: the taken slots of `THREAD_VALUES`, then the
/// threads in `THREAD_STACKS`.
fn thread_values(ebpf: &Ebpf) -> anyhow::Result<Vec<(u32, ShadowStack)>> {
    let mut values = Vec::new();
    let taken: Array<_, [u64; THREAD_SLOT_WORDS]> =
        Array::try_from(bpf::map(ebpf, maps::THREAD_VALUES_TAKEN)?)?;
    let slots: Array<_, ShadowStack> = Array::try_from(bpf::map(ebpf, maps::THREAD_VALUES)?)?;
    for (word, bits) in taken.get(&0, 0)?.iter().enumerate() {
        for bit in (0..64).filter(|b| bits & (1 << b) != 0) {
            let value = slots.get(&((word * 64 + bit) as u32), 0)?;
            values.push((value.tid as u32, value));
        }
    }
    let others: BpfHashMap<_, u32, ShadowStack> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::THREAD_STACKS)?)?;
    for entry in others.iter() {
        values.push(entry?);
    }
    Ok(values)
}

/// The function id of a thread's table slot, unless the slot is free.
fn own_func(own: &ThreadFunc) -> Option<u32> {
    own.func_plus1.checked_sub(1)
}

/// Detaches every function probe, entries first (see `attach`), many at a time; the maps stay
/// readable.
pub(crate) fn detach(ebpf: &mut Ebpf, links: &mut [SiteLinks]) {
    for name in [ENTRY, RETURN] {
        let Ok(program) = bpf::program::<UProbe>(ebpf, name) else {
            continue;
        };
        let taken: Vec<_> = links
            .iter_mut()
            .filter_map(|l| {
                if name == ENTRY {
                    l.entry.take()
                } else {
                    l.ret.take()
                }
            })
            .filter_map(|id| program.take_link(id).ok())
            .collect();
        bpf::release_in_parallel(taken);
        let _ = program.unload();
    }
}

/// What the kernel side gathered, by function id, before symbolization.
#[derive(Debug, Default)]
pub(crate) struct RawFunctions {
    pub totals: Vec<FuncTotals>,
    /// Per function id: (tid, that thread's calls and their time, estimated where sampled).
    pub threads: HashMap<u32, Vec<(u32, ThreadStats)>>,
    /// (function id, return address, calls that returned there).
    pub callers: Vec<(u32, u64, u64)>,
    /// (function id, user stack from the return address outwards, samples).
    pub stacks: Vec<(u32, Vec<u64>, u64)>,
    /// Calls on the shadow stacks of live threads, by function id.
    pub in_flight: HashMap<u32, u64>,
}

/// Reads every map of the family: the shared maps plus every thread's own tables. `pid` is used
/// to tell live threads from exited ones.
pub(crate) fn read(ebpf: &Ebpf, functions: usize, pid: i32) -> anyhow::Result<RawFunctions> {
    let mut raw = RawFunctions {
        totals: read_totals(ebpf, functions)?,
        ..Default::default()
    };

    // (function, tid) -> totals, and (function, return address) -> calls: a pair can be both in
    // a thread's table and in the shared map (a reused thread id), so they are merged.
    let mut threads: HashMap<(u32, u32), ThreadStats> = HashMap::new();
    let mut callers: HashMap<(u32, u64), u64> = HashMap::new();
    let shared: BpfHashMap<_, ThreadKey, ThreadStats> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::THREAD_STATS)?)?;
    for entry in shared.iter() {
        let (key, value) = entry?;
        let t = threads.entry((key.func, key.tid)).or_default();
        t.count += value.count;
        t.total_ns += value.total_ns;
    }
    let shared: BpfHashMap<_, CallerKey, u64> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::CALLERS)?)?;
    for entry in shared.iter() {
        let (key, calls) = entry?;
        *callers.entry((key.func, key.ret_addr)).or_default() += calls;
    }

    for (tid, value) in thread_values(ebpf)? {
        for own in &value.funcs {
            if let Some(func) = own_func(own).filter(|_| own.count + own.untimed > 0) {
                // Every call of the thread, and its time: scaled up from the timed calls when
                // some were not.
                let t = threads.entry((func, tid)).or_default();
                let calls = own.count + own.untimed;
                t.count += calls;
                t.total_ns += if own.count == 0 {
                    0
                } else {
                    (u128::from(own.total_ns) * u128::from(calls) / u128::from(own.count)) as u64
                };
            }
        }
        for site in &value.callers {
            if let Some(func) = site.func_plus1.checked_sub(1) {
                *callers.entry((func, site.ret_addr)).or_default() += site.calls;
            }
        }
        let alive = crate::tracee::thread_alive(pid, tid);
        if alive {
            for frame in &value.frames[..(value.depth as usize).min(MAX_DEPTH)] {
                *raw.in_flight.entry(frame.func).or_default() += 1;
            }
        }
    }
    for ((func, tid), stats) in threads {
        raw.threads.entry(func).or_default().push((tid, stats));
    }
    raw.callers = callers
        .into_iter()
        .map(|((func, ret_addr), calls)| (func, ret_addr, calls))
        .collect();

    let stack_counts: BpfHashMap<_, StackKey, u64> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::STACK_COUNTS)?)?;
    let stacks = StackTraceMap::try_from(bpf::map(ebpf, maps::STACKS)?)?;
    for entry in stack_counts.iter() {
        let (key, samples) = entry?;
        // Sampled as the call returned: the walk starts at the return address (see StackKey).
        // If the walk was lost, the return address is still known.
        let walked: Vec<u64> = stacks
            .get(&key.stack_id, 0)
            .map(|t| t.frames().iter().map(|f| f.ip).collect())
            .unwrap_or_default();
        let mut ips = Vec::with_capacity(walked.len() + 1);
        if walked.first() != Some(&key.ret_addr) {
            ips.push(key.ret_addr);
        }
        ips.extend(walked);
        raw.stacks.push((key.func, ips, samples));
    }
    Ok(raw)
}
