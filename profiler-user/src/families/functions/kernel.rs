//! The `functions` family on the user side: attach the entry and return probes, and read what the
//! kernel aggregated.

use std::{
    collections::HashMap,
    io,
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use aya::{
    Ebpf, Pod,
    maps::{Array, HashMap as BpfHashMap, PerCpuArray, StackTraceMap},
};
use profiler_common::functions::{
    CallerKey, FuncCpu, FuncMem, FuncStats, MAX_DEPTH, SITE_OFF, ShadowStack, StackKey,
    THREAD_SLOT_WORDS, ThreadFunc, ThreadKey, ThreadStats, cookie, maps, programs,
};

use super::analyze::FuncTotals;
use crate::bpf::{
    self,
    multi::{self, MultiLink, MultiProgram},
};

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

/// A site that could not be attached, with the kernel's error.
#[derive(Debug)]
pub(crate) struct AttachFailure {
    pub index: usize,
    pub error: anyhow::Error,
}

/// Every probe of the family: per file, multi-uprobe links for the entries and the returns of
/// its sites (one of each, more where the kernel refused a site, see [`bisect`]). Dropping a
/// link takes all its probes down with one RCU grace period, where a perf-event uprobe costs one
/// each, serialized by the kernel.
#[derive(Debug)]
pub(crate) struct Probes {
    programs: Programs,
    groups: Vec<Group>,
    /// The generation of the newest links (see `profiler_common::functions::cookie`).
    generation: u32,
}

/// The programs the links run, for process `pid`.
#[derive(Debug)]
struct Programs {
    entry: MultiProgram,
    ret: MultiProgram,
    pid: u32,
}

impl Programs {
    /// One link for the entry (or, with `ret`, the return) probes of the sites `chosen` of file
    /// `path`, with cookies of `generation`.
    fn link(
        &self,
        path: &Path,
        sites: &[Site],
        chosen: &[usize],
        ret: bool,
        generation: u32,
    ) -> io::Result<MultiLink> {
        let program = if ret { &self.ret } else { &self.entry };
        let offsets: Vec<u64> = chosen.iter().map(|&i| sites[i].file_offset).collect();
        let cookies: Vec<u64> = (chosen.iter())
            .map(|&i| cookie(i as u32, generation))
            .collect();
        program.attach(path, &offsets, &cookies, ret, self.pid)
    }
}

/// The probes of one file.
#[derive(Debug)]
struct Group {
    path: PathBuf,
    /// The sites probed (entry, and return where the site wants one), by index.
    sites: Vec<usize>,
    entries: Vec<MultiLink>,
    returns: Vec<MultiLink>,
}

/// What [`attach`] did: the probes, and the sites the kernel refused.
#[derive(Debug)]
pub(crate) struct Attached {
    pub probes: Probes,
    pub failures: Vec<AttachFailure>,
}

impl Attached {
    /// The probes, or the error of the first site that failed (all or nothing).
    pub(crate) fn all(mut self) -> anyhow::Result<Probes> {
        match self.failures.drain(..).next() {
            None => Ok(self.probes),
            Some(failure) => Err(failure.error),
        }
    }
}

/// Attaches an entry and a return probe to every site, for process `pid` only: one multi-uprobe
/// link per file and kind. A site the kernel refuses is left out (its failure says why) and the
/// others go on. Fails only when the programs cannot be loaded.
///
/// Return probes go first, and a site keeps no probe that counts unless both attached: a site
/// whose return probe failed gets no entry probe, and one whose entry probe failed is switched
/// off (`SITE_OFF`) so that its return probe counts nothing. In the window between the two passes
/// a call can then only return without an entry (counted as unmatched, harmless). The other order
/// pushes frames whose return is never seen; at the same stack slot they cannot be told from tail
/// calls, so they would stay and later returns would pair with them. (`detach` removes entry
/// probes first for the same reason.)
pub(crate) fn attach(ebpf: &mut Ebpf, sites: &[Site], pid: u32) -> anyhow::Result<Attached> {
    anyhow::ensure!(pid != 0, "invalid pid 0");
    let [entry, ret] = multi::load(ebpf, [ENTRY, RETURN])?;
    let mut probes = Probes {
        programs: Programs { entry, ret, pid },
        groups: Vec::new(),
        generation: 0,
    };
    let mut failures = Vec::new();
    let mut off = Vec::new();
    for (path, indexes) in by_file(sites) {
        let link = |ret: bool, chosen: &[usize]| probes.programs.link(&path, sites, chosen, ret, 0);
        let wants_return = |i: usize| sites[i].with_return;
        let done = attach_in_order(&indexes, wants_return, link);
        failures.extend(done.failures);
        off.extend(done.returns_only);
        probes.groups.push(Group {
            path,
            sites: done.probed,
            entries: done.entries,
            returns: done.returns,
        });
    }
    failures.sort_by_key(|f| f.index);
    set_generations(ebpf, off.iter().map(|&i| (i, SITE_OFF)))?;
    Ok(Attached { probes, failures })
}

/// The sites' indexes by file, files in the order of their first site.
fn by_file(sites: &[Site]) -> Vec<(PathBuf, Vec<usize>)> {
    let mut groups: Vec<(PathBuf, Vec<usize>)> = Vec::new();
    for (i, site) in sites.iter().enumerate() {
        match groups.iter_mut().find(|(path, _)| *path == site.path) {
            Some((_, indexes)) => indexes.push(i),
            None => groups.push((site.path.clone(), vec![i])),
        }
    }
    groups
}

/// What the two passes over one file did.
#[derive(Debug)]
struct InOrder<L> {
    entries: Vec<L>,
    returns: Vec<L>,
    /// The sites with every probe they want.
    probed: Vec<usize>,
    /// Sites whose return probe attached but whose entry probe did not: to be switched off.
    returns_only: Vec<usize>,
    failures: Vec<AttachFailure>,
}

/// The two passes of [`attach`] over one file, with any way of attaching: `link(ret, sites)`
/// makes one link for the return (`ret`) or entry probes of `sites`.
fn attach_in_order<L>(
    indexes: &[usize],
    wants_return: impl Fn(usize) -> bool,
    mut link: impl FnMut(bool, &[usize]) -> io::Result<L>,
) -> InOrder<L> {
    let returning: Vec<usize> = indexes
        .iter()
        .copied()
        .filter(|&i| wants_return(i))
        .collect();
    let (returns, refused) = bisect(&returning, &mut |chosen| link(true, chosen));
    let mut failures: Vec<AttachFailure> = refused
        .into_iter()
        .map(|(index, e)| AttachFailure {
            index,
            error: kernel_error(e, "return"),
        })
        .collect();
    let entering: Vec<usize> = indexes
        .iter()
        .copied()
        .filter(|i| !failures.iter().any(|f| f.index == *i))
        .collect();
    let (entries, refused) = bisect(&entering, &mut |chosen| link(false, chosen));
    let returns_only = refused
        .iter()
        .map(|(i, _)| *i)
        .filter(|&i| wants_return(i))
        .collect();
    let probed = entering
        .iter()
        .copied()
        .filter(|i| !refused.iter().any(|(r, _)| r == i))
        .collect();
    failures.extend(refused.into_iter().map(|(index, e)| AttachFailure {
        index,
        error: kernel_error(e, "entry"),
    }));
    InOrder {
        entries,
        returns,
        probed,
        returns_only,
        failures,
    }
}

/// Links `sites` with as few links as the kernel allows: all in one, or, when it refuses some
/// site (it says neither which nor why per site), each half in turn, down to the refused sites
/// themselves. Returns the links and each refused site with the kernel's error.
fn bisect<L>(
    sites: &[usize],
    link: &mut impl FnMut(&[usize]) -> io::Result<L>,
) -> (Vec<L>, Vec<(usize, io::Error)>) {
    if sites.is_empty() {
        return (Vec::new(), Vec::new());
    }
    match link(sites) {
        Ok(l) => (vec![l], Vec::new()),
        Err(e) if sites.len() == 1 => (Vec::new(), vec![(sites[0], e)]),
        Err(_) => {
            let (left, right) = sites.split_at(sites.len() / 2);
            let (mut links, mut refused) = bisect(left, link);
            let (more, also) = bisect(right, link);
            links.extend(more);
            refused.extend(also);
            (links, refused)
        }
    }
}

/// Writes `SITE_LINKS` for each (site, generation).
fn set_generations(
    ebpf: &mut Ebpf,
    values: impl Iterator<Item = (usize, u32)>,
) -> anyhow::Result<()> {
    let mut array: Array<_, u32> = Array::try_from(bpf::map_mut(ebpf, maps::SITE_LINKS)?)?;
    for (site, generation) in values {
        array.set(site as u32, generation, 0)?;
    }
    Ok(())
}

impl Probes {
    /// Probes attached.
    pub(crate) fn count(&self) -> usize {
        self.groups
            .iter()
            .flat_map(|g| g.entries.iter().chain(&g.returns))
            .map(MultiLink::len)
            .sum()
    }

    /// Takes site `site`'s probes away (the budget): it stops counting at once, and the other
    /// sites of its file move to new links without it (hits of the old and new links never both
    /// count: see `profiler_common::functions::cookie`). What it counted stays in the maps.
    pub(crate) fn detach_site(
        &mut self,
        ebpf: &mut Ebpf,
        sites: &[Site],
        site: usize,
    ) -> anyhow::Result<()> {
        set_generations(ebpf, std::iter::once((site, SITE_OFF)))?;
        let Some(group) = self.groups.iter_mut().find(|g| g.sites.contains(&site)) else {
            return Ok(());
        };
        let at = group
            .sites
            .iter()
            .position(|&s| s == site)
            .expect("found above");
        group.sites.remove(at);
        if group.sites.is_empty() {
            drop(std::mem::take(&mut group.entries));
            drop(std::mem::take(&mut group.returns));
            return Ok(());
        }
        self.generation += 1;
        let generation = self.generation;
        let link = |ret: bool, chosen: &[usize]| {
            (self.programs)
                .link(&group.path, sites, chosen, ret, generation)
                .with_context(|| format!("cannot move the probes of {}", group.path.display()))
        };
        let returning: Vec<usize> = (group.sites.iter().copied())
            .filter(|&s| sites[s].with_return)
            .collect();
        let returns = match returning.is_empty() {
            true => Vec::new(),
            false => vec![link(true, &returning)?],
        };
        let entries = vec![link(false, &group.sites)?];
        // The switch: from here each site's hits count on its new links only.
        set_generations(ebpf, group.sites.iter().map(|&s| (s, generation)))?;
        drop(std::mem::replace(&mut group.entries, entries));
        drop(std::mem::replace(&mut group.returns, returns));
        Ok(())
    }

    /// Takes every probe down: the entries of every file first (see [`attach`]), then the
    /// returns, one link (one grace period) at a time. The maps stay readable.
    pub(crate) fn detach(&mut self) {
        for group in &mut self.groups {
            drop(std::mem::take(&mut group.entries));
        }
        for group in &mut self.groups {
            drop(std::mem::take(&mut group.returns));
        }
    }
}

/// The kernel's error for a probe, saying which probe and what the errno means where the
/// system's message does not.
fn kernel_error(e: std::io::Error, which: &str) -> anyhow::Error {
    // ENOTSUPP (kernel-internal, no libc message): the kernel's instruction analysis refused
    // the instruction at the probe.
    const ENOTSUPP: i32 = 524;
    let meaning = match e.raw_os_error() {
        Some(ENOTSUPP) => " (ENOTSUPP: the kernel does not probe the instruction there)",
        _ => "",
    };
    anyhow::anyhow!("the kernel refused the {which} probe: {e}{meaning}")
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

/// Each function's value of the per-CPU array `map`, summed over the CPUs with `add`.
fn read_per_cpu<T: Pod + Default>(
    ebpf: &Ebpf,
    map: &str,
    functions: usize,
    add: fn(&mut T, &T),
) -> anyhow::Result<Vec<T>> {
    let array: PerCpuArray<_, T> = PerCpuArray::try_from(bpf::map(ebpf, map)?)?;
    (0..functions as u32)
        .map(|id| {
            let mut sum = T::default();
            for value in array.get(&id, 0)?.iter() {
                add(&mut sum, value);
            }
            Ok(sum)
        })
        .collect()
}

/// Each function's on-CPU split, summed over the CPUs.
fn read_cpu(ebpf: &Ebpf, functions: usize) -> anyhow::Result<Vec<FuncCpu>> {
    read_per_cpu(ebpf, maps::FUNC_CPU, functions, |sum, c| {
        sum.calls += c.calls;
        sum.total_ns += c.total_ns;
        sum.on_cpu_ns += c.on_cpu_ns;
        sum.share_ppm_sum += c.share_ppm_sum;
        sum.max_share_ppm = sum.max_share_ppm.max(c.max_share_ppm);
    })
}

/// Each function's memory over its returned calls, summed over the CPUs.
fn read_memory(ebpf: &Ebpf, functions: usize) -> anyhow::Result<Vec<FuncMem>> {
    read_per_cpu(ebpf, maps::FUNC_MEM, functions, |sum, m| {
        sum.allocs += m.allocs;
        sum.alloc_bytes += m.alloc_bytes;
        sum.frees += m.frees;
        sum.freed_bytes += m.freed_bytes;
        sum.peak_sum += m.peak_sum;
        sum.max_peak = sum.max_peak.max(m.max_peak);
    })
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
    /// The on-CPU split of the timed calls, by function id (summed over the CPUs; `calls` 0
    /// when the threads family did not run).
    pub cpu: Vec<FuncCpu>,
    /// The memory of the returned calls, by function id (summed over the CPUs; all zero when
    /// the memory family did not run).
    pub memory: Vec<FuncMem>,
}

/// Reads every map of the family: the shared maps plus every thread's own tables. `pid` is used
/// to tell live threads from exited ones.
pub(crate) fn read(ebpf: &Ebpf, functions: usize, pid: i32) -> anyhow::Result<RawFunctions> {
    let mut raw = RawFunctions {
        totals: read_totals(ebpf, functions)?,
        cpu: read_cpu(ebpf, functions)?,
        memory: read_memory(ebpf, functions)?,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn refused() -> io::Error {
        io::Error::from_raw_os_error(524)
    }

    /// One link for all when the kernel takes them; the refused sites alone left out otherwise.
    #[test]
    fn bisect_links_all_but_the_refused_sites() {
        let sites: Vec<usize> = (0..10).collect();
        let mut tries = 0;
        let (links, failed) = bisect(&sites, &mut |chosen: &[usize]| {
            tries += 1;
            match chosen.iter().any(|s| [3, 7].contains(s)) {
                true => Err(refused()),
                false => Ok(chosen.to_vec()),
            }
        });
        let mut linked = links.concat();
        linked.sort();
        assert_eq!(linked, [0, 1, 2, 4, 5, 6, 8, 9]);
        let failed: Vec<usize> = failed.iter().map(|(s, _)| *s).collect();
        assert_eq!(failed, [3, 7]);
        assert!(tries < 20, "{tries} tries");

        let (links, failed) = bisect(&sites, &mut |chosen: &[usize]| Ok(chosen.to_vec()));
        assert_eq!(links, std::slice::from_ref(&sites));
        assert!(failed.is_empty());
    }

    /// Return probes first; a site keeps both probes or neither that count; the others go on.
    #[test]
    fn a_failed_site_keeps_no_probe_that_counts_and_the_others_attach() {
        // 0 fine, 1 return refused, 2 entry refused, 3 without a return probe.
        let mut log = Vec::new();
        let done = attach_in_order(
            &[0, 1, 2, 3],
            |i| i != 3,
            |ret, chosen: &[usize]| {
                let kind = if ret { "return" } else { "entry" };
                log.push(format!("{kind} {chosen:?}"));
                match chosen.contains(&if ret { 1 } else { 2 }) {
                    true => Err(refused()),
                    false => Ok(chosen.to_vec()),
                }
            },
        );
        assert_eq!(done.probed, [0, 3]);
        assert_eq!(done.returns_only, [2]);
        assert_eq!(done.returns.concat(), [0, 2]);
        assert_eq!(done.entries.concat(), [0, 3]);
        let failed: Vec<_> = done.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, [1, 2]);
        assert_eq!(
            format!("{:#}", done.failures[0].error),
            "the kernel refused the return probe: Unknown error 524 (os error 524) (ENOTSUPP: \
             the kernel does not probe the instruction there)"
        );
        assert!(done.failures[1].error.to_string().contains("entry probe"));
        assert_eq!(log[0], "return [0, 1, 2]");
        assert!(log.iter().position(|l| l.starts_with("entry")) > Some(0));
    }
}
