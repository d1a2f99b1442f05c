//! The `cpu` family's kernel side: the perf events, the unwind rows (written straight into the
//! memory-mapped `UNWIND_ROWS` array: a million rows cost a copy, not a million syscalls), the
//! mapping list, and the reads of the samples, stacks and counts.

use std::{
    collections::{BTreeSet, HashMap},
    os::fd::{AsFd as _, AsRawFd as _},
};

use anyhow::{Context as _, bail};
use aya::{
    Ebpf,
    maps::{Array, HashMap as BpfHashMap, Map},
    programs::{
        PerfEvent,
        perf_event::{PerfEventConfig, PerfEventLink, PerfEventScope, SamplePolicy, SoftwareEvent},
    },
};
use profiler_common::cpu::{
    CpuStack, MAPPINGS_MAX, Mapping, MappingsHeader, SampleKey, UnwindRow, count, maps, programs,
};

use crate::{bpf, tracee};

/// The perf events, one per thread of the target when they were opened (threads started since
/// have inherited copies, which go with them); dropped, they are detached.
pub(crate) struct Links {
    links: Vec<PerfEventLink>,
}

impl Links {
    pub(crate) fn detach(self) {
        bpf::release_in_parallel(self.links);
    }
}

/// Attempts at a set of events that covers every thread (see [`attach`]).
const ATTEMPTS: usize = 5;

/// Loads the sampling program and opens a software cpu-clock event at `frequency` Hz on each
/// thread of process `pid`, each running it, inherited by the threads (and processes) those
/// threads start. Returns the events and how many threads they were opened on.
///
/// Events on the target's threads, not on every CPU: an event on a CPU interrupts whatever runs
/// there, and on a virtual machine that interrupt is most of a sample's cost (16 µs here, see
/// BENCHMARKS.md), which every other process and idle CPU would pay. A thread started after its
/// starter's event was opened inherits it; one started during the opening by a thread not yet
/// covered would be missed, so the threads are listed again after, and the events opened anew
/// (at most [`ATTEMPTS`] times) until no thread came up meanwhile.
pub(crate) fn attach(ebpf: &mut Ebpf, pid: i32, frequency: u64) -> anyhow::Result<(Links, usize)> {
    let program: &mut PerfEvent = bpf::program(ebpf, programs::SAMPLE)?;
    program
        .load()
        .context("the kernel refused the sampling program")?;
    for attempt in 1..=ATTEMPTS {
        let threads: BTreeSet<i32> = tracee::task::thread_ids(pid).into_iter().collect();
        if threads.is_empty() {
            bail!("the target has no threads left to sample");
        }
        let mut links = Vec::with_capacity(threads.len());
        for &tid in &threads {
            let opened = program.attach(
                PerfEventConfig::Software(SoftwareEvent::CpuClock),
                PerfEventScope::OneProcess {
                    pid: tid as u32,
                    cpu: None,
                },
                SamplePolicy::Frequency(frequency),
                true,
            );
            match opened {
                Ok(id) => links.push(program.take_link(id)?),
                // The thread exited meanwhile.
                Err(_) if !tracee::thread_alive(pid, tid as u32) => {}
                Err(e) => {
                    return Err(e).with_context(|| {
                        format!("cannot open a cpu-clock perf event on thread {tid}")
                    });
                }
            }
        }
        let now: BTreeSet<i32> = tracee::task::thread_ids(pid).into_iter().collect();
        if now.is_subset(&threads) || attempt == ATTEMPTS {
            return Ok((Links { links }, threads.len()));
        }
        // A thread started meanwhile may have no event: drop these and open them all again.
        bpf::release_in_parallel(links);
    }
    unreachable!("the last attempt returns")
}

/// `UNWIND_ROWS`, mapped into this process: rows are appended to it as objects are loaded.
pub(crate) struct Rows {
    base: *mut UnwindRow,
    capacity: usize,
    used: usize,
}

// SAFETY: the mapping is owned by this value and only written through `&mut self`.
unsafe impl Send for Rows {}

impl Rows {
    /// Maps the loaded object's `UNWIND_ROWS` (an `BPF_F_MMAPABLE` array of `capacity` rows).
    pub(crate) fn map(ebpf: &mut Ebpf, capacity: usize) -> anyhow::Result<Self> {
        let Map::Array(data) = bpf::map_mut(ebpf, maps::UNWIND_ROWS)? else {
            bail!("map {} is not an array", maps::UNWIND_ROWS);
        };
        let fd = data.fd().as_fd().as_raw_fd();
        let bytes = capacity * size_of::<UnwindRow>();
        // SAFETY: maps `bytes` of a BPF array created with BPF_F_MMAPABLE and at least that
        // size; the kernel checks both and fails the call otherwise.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                bytes.max(1),
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            bail!(
                "cannot map the unwind rows: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self {
            base: ptr.cast(),
            capacity,
            used: 0,
        })
    }

    /// Appends `rows`; returns the index of the first, or None when they do not fit.
    pub(crate) fn append(&mut self, rows: &[UnwindRow]) -> Option<u32> {
        if rows.is_empty() || self.capacity - self.used < rows.len() {
            return None;
        }
        let first = self.used;
        // SAFETY: `first + rows.len() <= capacity`: inside the mapping, which no one else in
        // this process writes; the kernel reads rows only once a mapping points at them.
        unsafe {
            std::ptr::copy_nonoverlapping(rows.as_ptr(), self.base.add(first), rows.len());
        }
        self.used += rows.len();
        Some(first as u32)
    }

    pub(crate) fn used(&self) -> usize {
        self.used
    }

    /// The rows written so far.
    pub(crate) fn written(&self) -> &[UnwindRow] {
        // SAFETY: the first `used` rows of the mapping, written by `append`; the kernel never
        // writes them.
        unsafe { std::slice::from_raw_parts(self.base, self.used) }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.capacity
    }
}

impl Drop for Rows {
    fn drop(&mut self) {
        // SAFETY: the mapping made in `map`, of that size, unmapped once.
        unsafe {
            libc::munmap(
                self.base.cast(),
                (self.capacity * size_of::<UnwindRow>()).max(1),
            )
        };
    }
}

/// Writes `mappings` (sorted by start, at most [`MAPPINGS_MAX`]) into the half of
/// `CPU_MAPPINGS` not in use, then makes it the one in use, with `raw_budget` (None: the budget
/// left as it is).
pub(crate) fn write_mappings(
    ebpf: &mut Ebpf,
    mappings: &[Mapping],
    raw_budget: Option<u32>,
) -> anyhow::Result<()> {
    let n = mappings.len().min(MAPPINGS_MAX as usize);
    let header = {
        let headers: Array<_, MappingsHeader> =
            Array::try_from(bpf::map(ebpf, maps::CPU_MAPPINGS_HEADER)?)?;
        headers.get(&0, 0)?
    };
    let next = (header.active & 1) ^ 1;
    {
        let mut array: Array<_, Mapping> =
            Array::try_from(bpf::map_mut(ebpf, maps::CPU_MAPPINGS)?)?;
        for (i, m) in mappings.iter().take(n).enumerate() {
            array.set(next * MAPPINGS_MAX + i as u32, *m, 0)?;
        }
    }
    let mut count = header.count;
    count[next as usize] = n as u32;
    let mut headers: Array<_, MappingsHeader> =
        Array::try_from(bpf::map_mut(ebpf, maps::CPU_MAPPINGS_HEADER)?)?;
    headers.set(
        0,
        MappingsHeader {
            active: next,
            count,
            raw_budget: raw_budget.unwrap_or(header.raw_budget),
        },
        0,
    )?;
    Ok(())
}

/// What the kernel gathered.
#[derive(Debug, Default)]
pub(crate) struct Harvest {
    /// Sample counts by key.
    pub samples: Vec<(SampleKey, u64)>,
    /// Stacks by hash: user stacks innermost first, kernel stacks as taken.
    pub stacks: HashMap<u64, Vec<u64>>,
    /// Thread names by tid (the last a sample saw).
    pub threads: HashMap<u32, String>,
    /// `CPU_COUNTS`, summed over the CPUs, by [`count`] slot.
    pub counts: [u64; count::SLOTS as usize],
}

/// Reads the samples, stacks, thread names and counts.
pub(crate) fn read(ebpf: &Ebpf) -> anyhow::Result<Harvest> {
    let mut h = Harvest::default();
    let samples: BpfHashMap<_, SampleKey, u64> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::CPU_SAMPLES)?)?;
    h.samples = samples.iter().filter_map(Result::ok).collect();
    let stacks: BpfHashMap<_, u64, CpuStack> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::CPU_STACKS)?)?;
    for (hash, stack) in stacks.iter().filter_map(Result::ok) {
        let len = (stack.len as usize).min(stack.ips.len());
        h.stacks.insert(hash, stack.ips[..len].to_vec());
    }
    let threads: BpfHashMap<_, u32, [u8; 16]> =
        BpfHashMap::try_from(bpf::map(ebpf, maps::CPU_THREADS)?)?;
    for (tid, comm) in threads.iter().filter_map(Result::ok) {
        let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
        h.threads
            .insert(tid, String::from_utf8_lossy(&comm[..end]).into_owned());
    }
    h.counts = read_counts(ebpf)?;
    Ok(h)
}

/// Samples taken so far (for the overhead estimate while profiling).
pub(crate) fn read_counts(ebpf: &Ebpf) -> anyhow::Result<[u64; count::SLOTS as usize]> {
    let counts = bpf::per_cpu_sums(ebpf, maps::CPU_COUNTS, 0..count::SLOTS)?;
    let mut out = [0; count::SLOTS as usize];
    out.copy_from_slice(&counts);
    Ok(out)
}
