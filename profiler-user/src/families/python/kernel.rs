//! The `python` family's kernel side: the walk's configuration, the thread-state map, the
//! exception probes, and the reads of the raise counts, stacks and counts.

use std::collections::HashMap;

use anyhow::Context as _;
use std::num::NonZeroU32;

use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap},
    programs::{
        UProbe,
        uprobe::{UProbeAttachLocation, UProbeAttachPoint, UProbeLink, UProbeScope},
    },
};
use profiler_common::python::{
    PyConfig, PyFrame, PyStack, RaiseKey, count, display, maps, programs,
};

use super::interp::InterpreterFile;
use crate::bpf;

/// The exception probes (once an interpreter is known). Two probes: aya's own uprobe links (a
/// perf event each) suffice, and its loader gives the kernel the BTF that the walk's `bpf_loop`
/// callback needs.
#[derive(Default)]
pub(crate) struct Probes {
    loaded: bool,
    links: Vec<UProbeLink>,
}

impl Probes {
    /// Loads the programs.
    pub(crate) fn load(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        for name in [programs::RAISE, programs::UNCAUGHT] {
            let program: &mut UProbe = bpf::program(ebpf, name)?;
            program
                .load()
                .with_context(|| format!("the kernel refused {name}"))?;
        }
        Ok(Self {
            loaded: true,
            links: Vec::new(),
        })
    }

    /// Probes the interpreter's `_PyErr_SetObject`, `PyErr_Display` and `_PyErr_Display` in
    /// process `pid`;
    /// returns how many probes it attached.
    pub(crate) fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        interp: &InterpreterFile,
        pid: u32,
    ) -> anyhow::Result<usize> {
        if !self.loaded {
            return Ok(0);
        }
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        for (name, probed, cookie) in [
            (programs::RAISE, &interp.raise, 0),
            (programs::UNCAUGHT, &interp.display, display::PUBLIC),
            (
                programs::UNCAUGHT,
                &interp.display_internal,
                display::INTERNAL,
            ),
        ] {
            let Some(p) = probed else { continue };
            let program: &mut UProbe = bpf::program(ebpf, name)?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(p.file_offset),
                cookie: Some(cookie),
            };
            let id = program
                .attach(point, &interp.open_path, scope)
                .with_context(|| format!("cannot probe {} in {}", p.name, interp.path.display()))?;
            self.links.push(program.take_link(id)?);
        }
        Ok(self.links.len())
    }

    pub(crate) fn attached(&self) -> usize {
        self.links.len()
    }

    /// Takes the probes down (the programs stay loaded).
    pub(crate) fn detach(&mut self) {
        bpf::release_in_parallel(std::mem::take(&mut self.links));
    }
}

/// Writes the walk's configuration (enabling it).
pub(crate) fn write_config(ebpf: &mut Ebpf, config: PyConfig) -> anyhow::Result<()> {
    let mut array: Array<_, PyConfig> = Array::try_from(bpf::map_mut(ebpf, maps::PY_CONFIG)?)?;
    array.set(0, config, 0)?;
    Ok(())
}

/// Makes `PY_THREADS` hold `now` (thread id -> thread state), given that it holds `before`.
pub(crate) fn sync_threads(
    ebpf: &mut Ebpf,
    before: &HashMap<u32, u64>,
    now: &HashMap<u32, u64>,
) -> anyhow::Result<()> {
    let mut map: BpfHashMap<_, u32, u64> =
        BpfHashMap::try_from(bpf::map_mut(ebpf, maps::PY_THREADS)?)?;
    for (tid, tstate) in now {
        if before.get(tid) != Some(tstate) {
            map.insert(tid, tstate, 0)?;
        }
    }
    for tid in before.keys() {
        if !now.contains_key(tid) {
            let _ = map.remove(tid);
        }
    }
    Ok(())
}

/// What the kernel gathered.
#[derive(Debug, Default)]
pub(crate) struct Harvest {
    /// Raise counts by key.
    pub raises: Vec<(RaiseKey, u64)>,
    /// `PY_COUNTS` summed over the CPUs.
    pub counts: [u64; count::SLOTS as usize],
}

/// Reads the raise counts and the counts.
pub(crate) fn read(ebpf: &Ebpf) -> anyhow::Result<Harvest> {
    let raises: BpfHashMap<_, RaiseKey, u64> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::PY_RAISES)?)?;
    Ok(Harvest {
        raises: raises.iter().filter_map(Result::ok).collect(),
        counts: read_counts(ebpf)?,
    })
}

/// The stacks of `PY_STACKS` whose hash `known` does not hold (their event was lost).
pub(crate) fn read_stacks(
    ebpf: &Ebpf,
    known: impl Fn(u64) -> bool,
) -> anyhow::Result<Vec<(u64, Vec<PyFrame>)>> {
    let stacks: BpfHashMap<_, u64, PyStack> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::PY_STACKS)?)?;
    Ok(stacks
        .keys()
        .filter_map(Result::ok)
        .filter(|h| !known(*h))
        .filter_map(|h| {
            let s = stacks.get(&h, 0).ok()?;
            Some((h, frames(&s)))
        })
        .collect())
}

/// The frames a stack holds.
pub(crate) fn frames(s: &PyStack) -> Vec<PyFrame> {
    s.frames[..(s.len as usize).min(s.frames.len())].to_vec()
}

pub(crate) fn read_counts(ebpf: &Ebpf) -> anyhow::Result<[u64; count::SLOTS as usize]> {
    let counts = bpf::per_cpu_sums(ebpf, maps::PY_COUNTS, 0..count::SLOTS)?;
    let mut out = [0; count::SLOTS as usize];
    out.copy_from_slice(&counts);
    Ok(out)
}
