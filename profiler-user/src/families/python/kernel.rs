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
    PyConfig, PyFrame, PySiteStats, PyStack, RaiseKey, count, display, maps, programs,
};

use super::interp::InterpreterFile;
use crate::bpf;

/// A probe to attach: its program, its file offset, its cookie, and the function it is in.
type Point = (&'static str, u64, u64, &'static str);

/// The exception probes (once an interpreter is known). Two probes: aya's own uprobe links (a
/// perf event each) suffice, and its loader gives the kernel the BTF that the walk's `bpf_loop`
/// callback needs.
#[derive(Default)]
pub(crate) struct Probes {
    loaded: bool,
    links: Vec<UProbeLink>,
    /// pymalloc's probes (with the memory family).
    alloc_links: Vec<UProbeLink>,
}

impl Probes {
    /// Loads the programs.
    pub(crate) fn load(ebpf: &mut Ebpf) -> anyhow::Result<Self> {
        for name in [
            programs::RAISE,
            programs::UNCAUGHT,
            programs::ALLOC,
            programs::ALLOC_RETURN,
            programs::FREE,
        ] {
            let program: &mut UProbe = bpf::program(ebpf, name)?;
            program
                .load()
                .with_context(|| format!("the kernel refused {name}"))?;
        }
        Ok(Self {
            loaded: true,
            ..Self::default()
        })
    }

    /// Probes the interpreter's `_PyErr_SetObject`, `PyErr_Display` and `_PyErr_Display` in
    /// process `pid`; returns how many probes it attached.
    pub(crate) fn attach(
        &mut self,
        ebpf: &mut Ebpf,
        interp: &InterpreterFile,
        pid: u32,
    ) -> anyhow::Result<usize> {
        let points: Vec<Point> = [
            (programs::RAISE, &interp.raise, 0),
            (programs::UNCAUGHT, &interp.display, display::PUBLIC),
            (
                programs::UNCAUGHT,
                &interp.display_internal,
                display::INTERNAL,
            ),
        ]
        .into_iter()
        .filter_map(|(program, p, cookie)| {
            p.as_ref().map(|p| (program, p.file_offset, cookie, p.name))
        })
        .collect();
        let links = self.attach_points(ebpf, interp, pid, &points)?;
        self.links.extend(links);
        Ok(self.links.len())
    }

    /// Probes pymalloc's allocating functions (entry and return) and `PyObject_Free` in
    /// process `pid`; returns how many probes it attached.
    pub(crate) fn attach_allocs(
        &mut self,
        ebpf: &mut Ebpf,
        interp: &InterpreterFile,
        pid: u32,
    ) -> anyhow::Result<usize> {
        let mut points: Vec<Point> = Vec::new();
        // The free first, then the return probes (a return whose entry went unseen records
        // nothing), then the entries; taken down the other way round.
        if let Some(f) = &interp.free {
            points.push((programs::FREE, f.file_offset, 0, f.name));
        }
        for a in &interp.allocators {
            points.push((programs::ALLOC_RETURN, a.start, 0, a.entry.name));
        }
        for a in &interp.allocators {
            points.push((programs::ALLOC, a.entry.file_offset, a.cookie, a.entry.name));
        }
        let links = self.attach_points(ebpf, interp, pid, &points)?;
        self.alloc_links.extend(links);
        Ok(self.alloc_links.len())
    }

    /// Attaches each (program, file offset, cookie, function) of `points` in the interpreter's
    /// file, for process `pid` only.
    fn attach_points(
        &self,
        ebpf: &mut Ebpf,
        interp: &InterpreterFile,
        pid: u32,
        points: &[Point],
    ) -> anyhow::Result<Vec<UProbeLink>> {
        if !self.loaded {
            return Ok(Vec::new());
        }
        let scope = UProbeScope::OneProcess(NonZeroU32::new(pid).context("pid 0")?);
        let mut links = Vec::with_capacity(points.len());
        for &(program, offset, cookie, function) in points {
            let program: &mut UProbe = bpf::program(ebpf, program)?;
            let point = UProbeAttachPoint {
                location: UProbeAttachLocation::AbsoluteOffset(offset),
                cookie: Some(cookie),
            };
            let id = program
                .attach(point, &interp.open_path, scope)
                .with_context(|| format!("cannot probe {function} in {}", interp.path.display()))?;
            links.push(program.take_link(id)?);
        }
        Ok(links)
    }

    pub(crate) fn attached(&self) -> usize {
        self.links.len() + self.alloc_links.len()
    }

    /// Takes the exception probes down (the programs stay loaded).
    pub(crate) fn detach(&mut self) {
        bpf::release_in_parallel(std::mem::take(&mut self.links));
    }

    /// Takes pymalloc's probes down: the allocating functions' first, the free last (a block
    /// recorded while the frees are not seen would stay outstanding).
    pub(crate) fn detach_allocs(&mut self) {
        for link in std::mem::take(&mut self.alloc_links).into_iter().rev() {
            drop(link);
        }
    }
}

/// Writes the walk's configuration (enabling it).
pub(crate) fn write_config(ebpf: &mut Ebpf, config: PyConfig) -> anyhow::Result<()> {
    let mut array: Array<_, PyConfig> = Array::try_from(bpf::map_mut(ebpf, maps::PY_CONFIG)?)?;
    array.set(0, config, 0)?;
    Ok(())
}

/// Makes `PY_THREADS` hold `now` (thread key -> thread state), given that it holds `before`.
pub(crate) fn sync_threads(
    ebpf: &mut Ebpf,
    before: &HashMap<u64, u64>,
    now: &HashMap<u64, u64>,
) -> anyhow::Result<()> {
    let mut map: BpfHashMap<_, u64, u64> =
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

/// The allocation sites: blocks outstanding and allocated per Python stack.
pub(crate) fn read_alloc_sites(ebpf: &Ebpf) -> anyhow::Result<Vec<(u64, PySiteStats)>> {
    let sites: BpfHashMap<_, u64, PySiteStats> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::PY_ALLOC_SITES)?)?;
    Ok(sites.iter().filter_map(Result::ok).collect())
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
