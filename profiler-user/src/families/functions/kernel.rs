//! The `functions` family on the user side: attach the entry and return probes, and read what the
//! kernel aggregated.

use std::{collections::HashMap, os::fd::AsFd as _, path::PathBuf};

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, PerCpuArray, StackTraceMap},
    programs::UProbe,
};
use profiler_common::functions::{
    CallerKey, FuncStats, MAX_DEPTH, ShadowStack, StackKey, THREAD_SLOT_WORDS, ThreadFunc,
    ThreadKey, ThreadStats, maps, programs,
};

use super::analyze::FuncTotals;
use crate::bpf::{
    self,
    uprobe::{self, ProbePoint, UprobeLink, UprobePmu},
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

/// The probes of one site, so it can be detached on its own (dropping a link detaches it).
#[derive(Debug)]
pub(crate) struct SiteLinks<L = UprobeLink> {
    entry: Option<L>,
    ret: Option<L>,
}

impl<L> Default for SiteLinks<L> {
    fn default() -> Self {
        Self {
            entry: None,
            ret: None,
        }
    }
}

/// What [`attach`] did: every site's links (none for a failed site), and the failed sites.
#[derive(Debug)]
pub(crate) struct Attached<L = UprobeLink> {
    pub links: Vec<SiteLinks<L>>,
    pub failures: Vec<AttachFailure>,
}

impl<L> Attached<L> {
    /// Every site's links, or the error of the first site that failed (all or nothing).
    pub(crate) fn all(mut self) -> anyhow::Result<Vec<SiteLinks<L>>> {
        match self.failures.drain(..).next() {
            None => Ok(self.links),
            Some(failure) => Err(failure.error),
        }
    }
}

/// Attaches an entry and a return probe to every site, for process `pid` only, many at once. A
/// site the kernel refuses is left out (its failure says why) and the others go on. Fails only
/// when the programs cannot be loaded.
///
/// Return probes go first, and a site keeps no probe unless both attached: a site whose return
/// probe failed gets no entry probe, and one whose entry probe failed has its return probe
/// detached again. In the window between the two passes a call can then only return without an
/// entry (counted as unmatched, harmless). The other order pushes frames whose return is never
/// seen; at the same stack slot they cannot be told from tail calls, so they would stay and
/// later returns would pair with them. (`detach` removes entry probes first for the same reason.)
pub(crate) fn attach(ebpf: &mut Ebpf, sites: &[Site], pid: u32) -> anyhow::Result<Attached> {
    anyhow::ensure!(pid != 0, "invalid pid 0");
    let pmu = UprobePmu::read().context("cannot read the kernel's uprobe PMU")?;
    let mut program_fds = Vec::new();
    for name in [RETURN, ENTRY] {
        let program: &mut UProbe = bpf::program(ebpf, name)?;
        program
            .load()
            .with_context(|| format!("failed to load {name}"))?;
        // A copy of the fd: the threads below share it while `ebpf` stays borrowed here.
        program_fds.push(program.fd()?.as_fd().try_clone_to_owned()?);
    }
    let point = |index: usize, ret: bool| ProbePoint {
        path: &sites[index].path,
        offset: sites[index].file_offset,
        pid,
        ret,
        cookie: index as u64,
    };
    Ok(attach_in_order(sites, |ret, indexes| {
        let points: Vec<_> = indexes.iter().map(|&i| point(i, ret)).collect();
        let program = &program_fds[if ret { 0 } else { 1 }];
        uprobe::attach_all(pmu, program.as_fd(), &points)
    }))
}

/// The two passes of [`attach`] over any way of attaching: `attach_pass(ret, indexes)` attaches
/// the return (`ret`) or entry probes of the sites `indexes`, one result per site, in order.
fn attach_in_order<L: Send>(
    sites: &[Site],
    mut attach_pass: impl FnMut(bool, &[usize]) -> Vec<std::io::Result<L>>,
) -> Attached<L> {
    let mut links: Vec<SiteLinks<L>> = sites.iter().map(|_| SiteLinks::default()).collect();
    let mut errors: Vec<Option<anyhow::Error>> = sites.iter().map(|_| None).collect();
    let returning: Vec<usize> = (0..sites.len()).filter(|&i| sites[i].with_return).collect();
    for (&i, result) in returning.iter().zip(attach_pass(true, &returning)) {
        match result {
            Ok(link) => links[i].ret = Some(link),
            Err(e) => errors[i] = Some(kernel_error(e, "return")),
        }
    }
    let entering: Vec<usize> = (0..sites.len()).filter(|&i| errors[i].is_none()).collect();
    let mut undone = Vec::new();
    for (&i, result) in entering.iter().zip(attach_pass(false, &entering)) {
        match result {
            Ok(link) => links[i].entry = Some(link),
            Err(e) => {
                errors[i] = Some(kernel_error(e, "entry"));
                undone.extend(links[i].ret.take());
            }
        }
    }
    bpf::release_in_parallel(undone);
    let failures = errors
        .into_iter()
        .enumerate()
        .filter_map(|(index, error)| {
            Some(AttachFailure {
                index,
                error: error?,
            })
        })
        .collect();
    Attached { links, failures }
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

/// Probes attached in `links`.
pub(crate) fn probe_count(links: &[SiteLinks]) -> usize {
    links
        .iter()
        .map(|l| usize::from(l.entry.is_some()) + usize::from(l.ret.is_some()))
        .sum()
}

/// Detaches one site's probes (entry first, see `attach`); what they counted stays in the maps.
pub(crate) fn detach_site(links: &mut SiteLinks) {
    drop(links.entry.take());
    drop(links.ret.take());
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

/// Detaches every function probe, entries first (see `attach`); the maps stay readable.
///
/// One at a time: the kernel unregisters each uprobe under one global mutex (`event_mutex`),
/// waiting there for RCU grace periods (about 0.1 s each on a busy machine), so detaching from
/// several threads gains nothing and only queues more waiters ahead of every other process
/// that attaches or detaches a uprobe meanwhile.
pub(crate) fn detach(links: &mut [SiteLinks]) {
    for site in links.iter_mut() {
        drop(site.entry.take());
    }
    for site in links.iter_mut() {
        drop(site.ret.take());
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    /// A fake probe that logs its detach.
    #[derive(Debug)]
    struct Fake(&'static str, usize, Arc<Mutex<Vec<String>>>);

    impl Drop for Fake {
        fn drop(&mut self) {
            self.2
                .lock()
                .unwrap()
                .push(format!("detach {} {}", self.0, self.1));
        }
    }

    /// Return probes first; a site keeps both probes or neither; the others go on.
    #[test]
    fn a_failed_site_keeps_no_probe_and_the_others_attach() {
        let site = |with_return| Site {
            path: "/lib/x.so".into(),
            file_offset: 0,
            with_return,
        };
        // 0 fine, 1 return refused, 2 entry refused, 3 without a return probe.
        let sites = [site(true), site(true), site(true), site(false)];
        let log = Arc::new(Mutex::new(Vec::new()));
        let attached = attach_in_order(&sites, |ret, indexes| {
            let kind = if ret { "return" } else { "entry" };
            log.lock().unwrap().push(format!("{kind} {indexes:?}"));
            let refused = if ret { 1 } else { 2 };
            let result = |&i: &usize| match i == refused {
                true => Err(std::io::Error::from_raw_os_error(524)),
                false => Ok(Fake(kind, i, log.clone())),
            };
            indexes.iter().map(result).collect()
        });
        let has = |l: &SiteLinks<Fake>| (l.entry.is_some(), l.ret.is_some());
        let got: Vec<_> = attached.links.iter().map(has).collect();
        assert_eq!(
            got,
            [(true, true), (false, false), (false, false), (true, false)]
        );
        let failed: Vec<_> = attached.failures.iter().map(|f| f.index).collect();
        assert_eq!(failed, [1, 2]);
        assert_eq!(
            format!("{:#}", attached.failures[0].error),
            "the kernel refused the return probe: Unknown error 524 (os error 524) (ENOTSUPP: \
             the kernel does not probe the instruction there)"
        );
        assert!(
            attached.failures[1]
                .error
                .to_string()
                .contains("entry probe")
        );
        assert_eq!(
            *log.lock().unwrap(),
            ["return [0, 1, 2]", "entry [0, 2, 3]", "detach return 2"]
        );
        assert!(attached.all().is_err());
    }
}
