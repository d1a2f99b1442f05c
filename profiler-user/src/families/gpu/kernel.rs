//! The gpu family's kernel side: attach the CUDA probes (a library mapped later is probed when
//! it appears), and read the maps.

use std::collections::HashMap;

use anyhow::Context as _;
use aya::{Ebpf, maps::HashMap as BpfHashMap};
use profiler_common::{
    gpu::{GpuBlock, GpuKey, GpuStats, KernelName, MAX_CUDA_FUNCTIONS, cookie, maps, programs},
    memory::{MemStack, SiteStats, maps::MEM_STACKS},
};

use super::cuda::{CudaFn, CudaLib};
use crate::bpf::{
    self,
    multi::{self, MultiLink, MultiProgram},
};

/// The CUDA probes: the programs, loaded once, and a pair of links (returns, entries) per
/// library. Function ids run over the libraries in the order they were probed.
#[derive(Default)]
pub(crate) struct Probes {
    programs: Option<[MultiProgram; 2]>,
    entries: Vec<MultiLink>,
    returns: Vec<MultiLink>,
    /// The libraries probed, in order, and for each the time it was (ns, CLOCK_MONOTONIC).
    pub libs: Vec<(CudaLib, u64)>,
}

impl Probes {
    /// The probed functions in function-id order.
    pub(crate) fn functions(&self) -> impl Iterator<Item = &CudaFn> {
        self.libs.iter().flat_map(|(l, _)| &l.functions)
    }

    pub(crate) fn count(&self) -> usize {
        (self.entries.iter().chain(&self.returns))
            .map(MultiLink::len)
            .sum()
    }

    /// Probes `lib` in process `pid`: return probes first, so that no call is seen entering and
    /// never returning.
    pub(crate) fn attach(
        &mut self,
        ebpf: &Ebpf,
        mut lib: CudaLib,
        pid: u32,
        now_ns: u64,
    ) -> anyhow::Result<()> {
        anyhow::ensure!(pid != 0, "invalid pid 0");
        let first = self.functions().count();
        let room = (MAX_CUDA_FUNCTIONS as usize).saturating_sub(first);
        lib.functions.truncate(room);
        if lib.functions.is_empty() {
            return Ok(());
        }
        if self.programs.is_none() {
            self.programs = Some(multi::load(
                ebpf,
                [programs::GPU_ENTRY, programs::GPU_RETURN],
            )?);
        }
        let [entry, ret] = self.programs.as_ref().expect("just loaded");
        let offsets: Vec<u64> = lib.functions.iter().map(|f| f.probe_offset).collect();
        let cookies: Vec<u64> = (lib.functions.iter().enumerate())
            .map(|(i, f)| cookie((first + i) as u32, f.class))
            .collect();
        let path = &lib.module.open_path;
        let context = || {
            format!(
                "failed to attach the CUDA probes to {}",
                lib.module.file_name()
            )
        };
        let returns = ret
            .attach(path, &offsets, &cookies, true, pid)
            .with_context(context)?;
        let entries = entry
            .attach(path, &offsets, &cookies, false, pid)
            .with_context(context)?;
        self.returns.push(returns);
        self.entries.push(entries);
        self.libs.push((lib, now_ns));
        Ok(())
    }

    /// Takes every probe down: entries first (a return whose entry is gone records nothing).
    pub(crate) fn detach(&mut self) {
        drop(std::mem::take(&mut self.entries));
        drop(std::mem::take(&mut self.returns));
    }

    pub(crate) fn attached(&self) -> bool {
        !self.entries.is_empty()
    }
}

/// What the kernel side holds, before symbolization.
#[derive(Debug, Default, Clone)]
pub(crate) struct RawCuda {
    pub stats: Vec<(GpuKey, GpuStats)>,
    pub sites: Vec<(GpuKey, SiteStats)>,
    pub errors: Vec<(GpuKey, u64)>,
    /// Outstanding blocks: (address or handle, block).
    pub blocks: Vec<(u64, GpuBlock)>,
    /// Probe hits (entries) by function id.
    pub hits: Vec<u64>,
    /// `CUfunction` handle -> kernel name.
    pub kernel_names: HashMap<u64, String>,
    /// Site -> user stack (return address first), for the sites the maps name.
    pub stacks: HashMap<u64, Vec<u64>>,
}

fn entries<K: aya::Pod, V: aya::Pod>(ebpf: &Ebpf, name: &str) -> anyhow::Result<Vec<(K, V)>> {
    let map: BpfHashMap<_, K, V> = BpfHashMap::try_from(bpf::map(ebpf, name)?)?;
    Ok(map.iter().filter_map(Result::ok).collect())
}

/// Probe hits by function id, for `functions` functions.
pub(crate) fn read_hits(ebpf: &Ebpf, functions: usize) -> anyhow::Result<Vec<u64>> {
    bpf::per_cpu_sums(ebpf, maps::GPU_HITS, 0..functions as u32)
}

/// The allocation sites' totals now.
pub(crate) fn read_sites(ebpf: &Ebpf) -> anyhow::Result<Vec<(GpuKey, SiteStats)>> {
    entries(ebpf, maps::GPU_SITES)
}

/// The outstanding blocks now: (address or handle, block).
pub(crate) fn read_blocks(ebpf: &Ebpf) -> anyhow::Result<Vec<(u64, GpuBlock)>> {
    entries(ebpf, maps::GPU_ALLOCS)
}

/// Reads every map of the family, and the stacks of the sites they name and of `also`.
pub(crate) fn read(
    ebpf: &Ebpf,
    functions: usize,
    also: impl IntoIterator<Item = u64>,
) -> anyhow::Result<RawCuda> {
    let mut raw = RawCuda {
        stats: entries(ebpf, maps::GPU_STATS)?,
        sites: entries(ebpf, maps::GPU_SITES)?,
        errors: entries(ebpf, maps::GPU_ERRORS)?,
        blocks: read_blocks(ebpf)?,
        hits: read_hits(ebpf, functions)?,
        ..RawCuda::default()
    };
    let names: Vec<(u64, KernelName)> = entries(ebpf, maps::GPU_KERNEL_NAMES)?;
    raw.kernel_names = names
        .into_iter()
        .map(|(handle, n)| {
            let end = n.name.iter().position(|b| *b == 0).unwrap_or(n.name.len());
            (handle, String::from_utf8_lossy(&n.name[..end]).into_owned())
        })
        .collect();
    let wanted: std::collections::HashSet<u64> = (raw.stats.iter().map(|(k, _)| k.site))
        .chain(raw.sites.iter().map(|(k, _)| k.site))
        .chain(raw.errors.iter().map(|(k, _)| k.site))
        .chain(also)
        .collect();
    raw.stacks = read_stacks(ebpf, &wanted)?;
    Ok(raw)
}

/// The user stacks of `sites` (the memory family's `MEM_STACKS`, which the CUDA probes share).
fn read_stacks(
    ebpf: &Ebpf,
    sites: &std::collections::HashSet<u64>,
) -> anyhow::Result<HashMap<u64, Vec<u64>>> {
    let stacks: BpfHashMap<_, u64, MemStack> = BpfHashMap::try_from(bpf::map(ebpf, MEM_STACKS)?)?;
    let mut out = HashMap::new();
    for site in sites {
        if let Ok(stack) = stacks.get(site, 0) {
            out.insert(*site, stack.frames().collect());
        }
    }
    Ok(out)
}
