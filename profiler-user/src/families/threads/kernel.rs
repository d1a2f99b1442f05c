//! The `threads` family's kernel side: find libc's lock functions, attach the scheduler
//! tracepoints, the futex tracepoints and the lock probes, and read the maps.

use std::collections::HashMap;

use anyhow::Context as _;
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap},
    programs::{BtfTracePoint, TracePoint, tp_btf::BtfTracePointLink, trace_point::TracePointLink},
};
use blazesym::inspect::{Inspector, source::Elf};
use profiler_common::{
    memory::{self, AllocInfo, MemStack},
    threads::{
        BlockKey, EXEC_RANGES_MAX, Edge, EdgeKey, HolderKey, LockOp, LockStats, LockWaitKey,
        StackTrace, THREAD_SLOTS, Tally, ThreadStats, hit, maps, programs,
    },
};

use super::analyze::Harvest;
use crate::{
    bpf::{
        self,
        multi::{self, MultiLink, MultiProgram},
    },
    placement::{self, Placement},
    symbols::go,
    tracee::Module,
};

/// One probed lock function.
#[derive(Debug, Clone)]
pub(crate) struct LockFn {
    pub name: &'static str,
    pub op: LockOp,
    /// File offset of the probe.
    pub probe_offset: u64,
    pub placement: Placement,
}

/// The lock functions of the libc the target maps.
#[derive(Debug, Clone)]
pub(crate) struct LockLib {
    pub module: Module,
    pub functions: Vec<LockFn>,
}

/// Finds `pthread_mutex_lock` and the other lock functions in the first module that defines
/// them (the executable first: a static binary has its own), or says why there are none.
pub(crate) fn find_lock_functions(modules: &[Module]) -> Result<LockLib, String> {
    let inspector = Inspector::new();
    for module in modules {
        let mut src = Elf::new(&module.open_path);
        src.debug_syms = false;
        let src = src.into();
        let names: Vec<&str> = LockOp::FUNCTIONS
            .iter()
            .flat_map(|(_, names)| names.iter().copied())
            .collect();
        let Ok(found) = inspector.lookup(&src, &names) else {
            continue;
        };
        let ops = LockOp::FUNCTIONS
            .iter()
            .flat_map(|(op, names)| names.iter().map(move |n| (*op, *n)));
        let placed =
            placement::place_symbols(&module.open_path, found, |_| placement::Role::FirstArgument);
        let functions: Vec<LockFn> = (ops.zip(placed))
            .filter_map(|((op, name), p)| {
                let p = p?;
                Some(LockFn {
                    name,
                    op,
                    probe_offset: p.probe_offset,
                    placement: p.placement,
                })
            })
            .collect();
        let has = |op: LockOp| functions.iter().any(|f| f.op == op);
        if !(has(LockOp::MutexLock) && has(LockOp::MutexUnlock)) {
            continue;
        }
        if go::is_go(&module.open_path) {
            return Err(format!(
                "the lock functions are in {}, which is Go code: no return probes there",
                module.file_name()
            ));
        }
        return Ok(LockLib {
            module: module.clone(),
            functions,
        });
    }
    Err(
        "no module of the target defines pthread_mutex_lock: pthread locks are not probed \
         (futex waits are still seen)"
            .into(),
    )
}

/// The family's links.
#[derive(Default)]
pub(crate) struct Links {
    btf: Vec<BtfTracePointLink>,
    tracepoints: Vec<TracePointLink>,
    /// Unlock entries, lock returns, lock entries: taken down in that order's reverse.
    uprobes: Vec<MultiLink>,
    programs: Vec<MultiProgram>,
}

impl Links {
    pub(crate) fn count(&self) -> usize {
        self.btf.len()
            + self.tracepoints.len()
            + self.uprobes.iter().map(MultiLink::len).sum::<usize>()
    }

    /// Takes everything down: the lock entries first (a return whose entry is gone records
    /// nothing), the unlocks last.
    pub(crate) fn detach(mut self) {
        while let Some(link) = self.uprobes.pop() {
            drop(link);
        }
        bpf::release_in_parallel(std::mem::take(&mut self.tracepoints));
        bpf::release_in_parallel(std::mem::take(&mut self.btf));
        drop(self.programs);
    }
}

/// The scheduler programs: (program, BTF tracepoint).
const SCHED: [(&str, &str); 3] = [
    (programs::SCHED_WAKEUP, "sched_waking"),
    (programs::SCHED_WAKEUP_NEW, "sched_wakeup_new"),
    (programs::SCHED_SWITCH, "sched_switch"),
];

/// The futex tracepoints, exits before entries (a wait seen half is then only an exit without
/// its entry, which records nothing).
const FUTEX: [(&str, &str); 4] = [
    (programs::FUTEX_EXIT, "sys_exit_futex"),
    (programs::FUTEX_WAITV_EXIT, "sys_exit_futex_waitv"),
    (programs::FUTEX_ENTER, "sys_enter_futex"),
    (programs::FUTEX_WAITV_ENTER, "sys_enter_futex_waitv"),
];

/// Attaches the scheduler and futex tracepoints, then (when `locks` is given) the lock probes
/// for process `pid`: unlocks first, so that no lock taken while probed is released unseen,
/// then the lock functions' returns, then their entries.
pub(crate) fn attach(ebpf: &mut Ebpf, locks: Option<&LockLib>, pid: u32) -> anyhow::Result<Links> {
    let mut links = Links::default();
    let btf = aya::Btf::from_sys_fs().context("the threads family needs the kernel's BTF")?;
    for (program, tracepoint) in SCHED {
        let p: &mut BtfTracePoint = bpf::program(ebpf, program)?;
        p.load(tracepoint, &btf)
            .with_context(|| format!("failed to load {program}"))?;
        let id = p
            .attach()
            .with_context(|| format!("failed to attach to tp_btf/{tracepoint}"))?;
        links.btf.push(p.take_link(id)?);
    }
    for (program, tracepoint) in FUTEX {
        let tp: &mut TracePoint = bpf::program(ebpf, program)?;
        tp.load()
            .with_context(|| format!("failed to load {program}"))?;
        let id = tp
            .attach("syscalls", tracepoint)
            .with_context(|| format!("failed to attach to syscalls/{tracepoint}"))?;
        links.tracepoints.push(tp.take_link(id)?);
    }
    let Some(lib) = locks else {
        return Ok(links);
    };
    let [entry, ret] = multi::load(ebpf, [programs::LOCK_ENTER, programs::LOCK_RETURN])?;
    let path = &lib.module.open_path;
    let group = |wanted: &dyn Fn(LockOp) -> bool| -> (Vec<u64>, Vec<u64>) {
        lib.functions
            .iter()
            .filter(|f| wanted(f.op))
            .map(|f| (f.probe_offset, f.op as u64))
            .unzip()
    };
    let (unlock_offsets, unlock_cookies) = group(&|op| op.is_unlock());
    let (lock_offsets, lock_cookies) = group(&|op| !op.is_unlock());
    let (return_offsets, return_cookies) = group(&|op| op.returns());
    let file = lib.module.file_name();
    let mut attach_one = |program: &MultiProgram, offsets: &[u64], cookies: &[u64], returns| {
        if offsets.is_empty() {
            return Ok(());
        }
        let link = program
            .attach(path, offsets, cookies, returns, pid)
            .with_context(|| format!("failed to attach the lock probes in {file}"))?;
        links.uprobes.push(link);
        anyhow::Ok(())
    };
    attach_one(&entry, &unlock_offsets, &unlock_cookies, false)?;
    attach_one(&ret, &return_offsets, &return_cookies, true)?;
    attach_one(&entry, &lock_offsets, &lock_cookies, false)?;
    links.programs = vec![entry, ret];
    Ok(links)
}

/// Writes the target's executable ranges for the kernel's stack scan (see
/// `profiler_common::threads::maps::EXEC_RANGES`): adjacent ranges merged, the largest kept when
/// there are more than the map holds. `ranges` are the target's executable mappings.
pub(crate) fn write_exec_ranges(ebpf: &mut Ebpf, ranges: &[(u64, u64)]) -> anyhow::Result<()> {
    let mut ranges = ranges.to_vec();
    ranges.sort_unstable();
    let mut merged: Vec<(u64, u64)> = Vec::new();
    for (start, end) in ranges {
        match merged.last_mut() {
            Some(last) if start <= last.1 => last.1 = last.1.max(end),
            _ => merged.push((start, end)),
        }
    }
    merged.sort_by_key(|(s, e)| std::cmp::Reverse(e - s));
    merged.truncate(EXEC_RANGES_MAX as usize);
    merged.sort_unstable();
    let mut array: Array<_, [u64; 2]> = Array::try_from(bpf::map_mut(ebpf, maps::EXEC_RANGES)?)?;
    for i in 0..EXEC_RANGES_MAX {
        let value = merged.get(i as usize).map_or([0, 0], |&(s, e)| [s, e]);
        array.set(i, value, 0)?;
    }
    Ok(())
}

/// Thread `tid`'s stats now, if it holds its slot.
pub(crate) fn read_thread(ebpf: &Ebpf, tid: u32) -> Option<ThreadStats> {
    let array: Array<_, ThreadStats> =
        Array::try_from(bpf::map(ebpf, maps::SCHED_THREADS).ok()?).ok()?;
    let slot = array.get(&(tid % THREAD_SLOTS), 0).ok()?;
    (slot.tid == u64::from(tid)).then_some(slot)
}

/// Every accounted thread's stats now (slots with an owner).
pub(crate) fn read_threads(ebpf: &Ebpf) -> anyhow::Result<Vec<ThreadStats>> {
    let array: Array<_, ThreadStats> = Array::try_from(bpf::map(ebpf, maps::SCHED_THREADS)?)?;
    Ok(array
        .iter()
        .filter_map(Result::ok)
        .filter(|t| t.tid != 0)
        .collect())
}

/// Every map of the family, read once at the end.
pub(crate) fn read(ebpf: &Ebpf, end_ktime_ns: u64) -> anyhow::Result<Harvest> {
    fn all<K: aya::Pod, V: aya::Pod>(ebpf: &Ebpf, name: &str) -> anyhow::Result<Vec<(K, V)>> {
        let map: BpfHashMap<_, K, V> = BpfHashMap::try_from(bpf::map(ebpf, name)?)?;
        Ok(map.iter().filter_map(Result::ok).collect())
    }
    let stacks: Vec<(u64, StackTrace)> = all(ebpf, maps::USER_STACKS)?;
    let stacks: HashMap<u64, Vec<u64>> = stacks
        .into_iter()
        .map(|(hash, s)| {
            let n = (s.len as usize).min(s.ips.len());
            (hash, s.ips[..n].to_vec())
        })
        .collect();
    let locks: Vec<(u64, LockStats)> = all(ebpf, maps::LOCK_STATS)?;
    let addrs: Vec<u64> = locks.iter().map(|(addr, _)| *addr).collect();
    Ok(Harvest {
        allocated: allocation_sites(ebpf, &addrs),
        threads: read_threads(ebpf)?,
        stacks,
        blocks: all::<BlockKey, Tally>(ebpf, maps::BLOCK_STACKS)?,
        locks,
        waits: all::<LockWaitKey, Tally>(ebpf, maps::LOCK_WAITS)?,
        holders: all::<HolderKey, Tally>(ebpf, maps::LOCK_HOLDERS)?,
        edges: all::<EdgeKey, Edge>(ebpf, maps::LOCK_EDGES)?,
        end_ktime_ns,
    })
}

/// Where each of `addrs` was allocated, when it lies in a block the memory family tracks (its
/// maps are in the same object, empty when it did not run): lock address -> the allocation's
/// stack (the allocator call's return address first, then the walked frames).
fn allocation_sites(ebpf: &Ebpf, addrs: &[u64]) -> HashMap<u64, Vec<u64>> {
    let mut found = HashMap::new();
    let Ok(allocs) = bpf::map(ebpf, memory::maps::MEM_ALLOCS)
        .and_then(|m| Ok(BpfHashMap::<_, u64, AllocInfo>::try_from(m)?))
    else {
        return found;
    };
    let mut blocks: Vec<(u64, AllocInfo)> = allocs.iter().filter_map(Result::ok).collect();
    if blocks.is_empty() {
        return found;
    }
    blocks.sort_unstable_by_key(|(start, _)| *start);
    let Ok(stacks) = bpf::map(ebpf, memory::maps::MEM_STACKS)
        .and_then(|m| Ok(BpfHashMap::<_, u64, MemStack>::try_from(m)?))
    else {
        return found;
    };
    for &addr in addrs {
        let i = blocks.partition_point(|(start, _)| *start <= addr);
        let Some((start, block)) = i.checked_sub(1).map(|i| &blocks[i]) else {
            continue;
        };
        if addr - start >= block.size.max(1) {
            continue;
        }
        if let Ok(stack) = stacks.get(&block.site, 0) {
            found.insert(addr, stack.frames().collect());
        }
    }
    found
}

/// The family's probe hits by [`hit`] slot, summed over the CPUs.
pub(crate) fn read_hits(ebpf: &Ebpf) -> anyhow::Result<[u64; hit::SLOTS as usize]> {
    let sums = bpf::per_cpu_sums(ebpf, maps::THREAD_HITS, 0..hit::SLOTS)?;
    let mut out = [0; hit::SLOTS as usize];
    out.copy_from_slice(&sums);
    Ok(out)
}
