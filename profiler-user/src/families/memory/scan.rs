//! A reachability scan of the live target: stop it, read the outstanding blocks the kernel
//! tracks, mark from its registers, stacks and writable memory (see [`super::reach`]), let it go,
//! and tally each site's blocks by verdict.
//!
//! The target is stopped for the whole of the marking, so that no block moves or is freed
//! under it; `--leak-scan-max-pause` bounds that, and a scan that reaches it lets the target go
//! and says so. Nothing is copied out of the target beyond one megabyte at a time.

use std::{
    collections::HashMap,
    os::fd::{AsFd as _, AsRawFd as _},
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{HashMap as BpfHashMap, Map},
};
use profiler_common::memory::{AllocInfo, maps};

use super::reach::{Block, Class, Marker, Memory, Range};
use crate::{
    bpf,
    report::memory::Tally,
    tracee::{
        self,
        freeze::{FreezeError, Frozen},
    },
};

/// What made a scan run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Trigger {
    /// The end of profiling, the target still running.
    End,
    /// The target's exit (`run`), its memory still whole.
    Exit,
    /// The overhead budget detaching the allocator probes.
    Budget,
    /// `--leak-check-every`.
    Interval,
}

impl Trigger {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Trigger::End => "end",
            Trigger::Exit => "exit",
            Trigger::Budget => "budget",
            Trigger::Interval => "interval",
        }
    }
}

/// One site's outstanding blocks by verdict.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct SiteVerdicts {
    pub definitely_lost: Tally,
    pub indirectly_lost: Tally,
    pub reachable: Tally,
}

impl std::ops::AddAssign for SiteVerdicts {
    fn add_assign(&mut self, o: Self) {
        self.definitely_lost += o.definitely_lost;
        self.indirectly_lost += o.indirectly_lost;
        self.reachable += o.reachable;
    }
}

/// What one scan found and cost.
#[derive(Debug, Clone)]
pub(crate) struct Scan {
    pub trigger: Trigger,
    /// When it started, CLOCK_MONOTONIC ns.
    pub at_ns: u64,
    /// How long the target was stopped, seconds.
    pub pause: f64,
    /// The whole scan, seconds.
    pub duration: f64,
    /// Bytes of the target's memory read, and of those, roots.
    pub bytes_scanned: u64,
    pub root_bytes: u64,
    pub regions: usize,
    pub threads: usize,
    /// Outstanding blocks judged.
    pub blocks: u64,
    /// The verdicts by site; `None` when the scan could not run or finish (see `reason`), and
    /// once a later scan's verdicts replace them.
    pub sites: Option<HashMap<u64, SiteVerdicts>>,
    /// The verdicts over every site.
    pub totals: SiteVerdicts,
    /// Whether it ran to the end.
    pub complete: bool,
    /// Why there is no verdict.
    pub reason: Option<String>,
}

/// How the target is held for a scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    /// Running: stop every thread, and let them go after.
    Stop,
    /// Already stopped at its exit by the profiler (`run`): its one thread is read as it is.
    AtExit,
}

/// Environment variable (tests only) that holds the target stopped this many milliseconds
/// before a scan marks, and says on stderr when the target is stopped: to kill the profiler in
/// the middle of a scan and see the target run on.
pub(crate) const HOLD_ENV: &str = "PROFILER_TEST_SCAN_HOLD_MS";

/// Scans target `pid` (see the module's text).
pub(crate) fn scan(
    ebpf: &Ebpf,
    pid: i32,
    hold: Hold,
    max_pause: Duration,
    trigger: Trigger,
) -> Scan {
    scan_blocks(pid, hold, max_pause, trigger, &[], || read_blocks(ebpf))
}

/// Scans target `pid` for the blocks `blocks` reads once the target is stopped (sorted by
/// address, not overlapping: see [`tidy`]); the verdicts are by the blocks' `site`. The
/// writable mappings of the files named `skip` are no roots. The gpu family scans its device
/// blocks so, with its own sites, less the CUDA libraries' own records of them.
pub(crate) fn scan_blocks(
    pid: i32,
    hold: Hold,
    max_pause: Duration,
    trigger: Trigger,
    skip: &[String],
    blocks: impl FnOnce() -> anyhow::Result<Vec<Block>>,
) -> Scan {
    let started = Instant::now();
    let mut out = Scan {
        trigger,
        at_ns: crate::clock::monotonic_ns(),
        pause: 0.0,
        duration: 0.0,
        bytes_scanned: 0,
        root_bytes: 0,
        regions: 0,
        threads: 0,
        blocks: 0,
        sites: None,
        totals: SiteVerdicts::default(),
        complete: false,
        reason: None,
    };
    let deadline = started + max_pause;
    let frozen = match hold {
        Hold::Stop => Frozen::stop(pid, deadline),
        Hold::AtExit => Frozen::at_exit(pid),
    };
    let frozen = match frozen {
        Ok(f) => f,
        Err(e) => {
            out.reason = Some(match e {
                FreezeError::TimedOut => format!(
                    "the target's threads did not all stop within --leak-scan-max-pause ({} ms)",
                    max_pause.as_millis()
                ),
                e => e.to_string(),
            });
            out.duration = started.elapsed().as_secs_f64();
            return out;
        }
    };
    if let Some(ms) = std::env::var(HOLD_ENV)
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
    {
        eprintln!("profiler: leak scan: target {pid} stopped");
        std::thread::sleep(Duration::from_millis(ms));
    }
    out.threads = frozen.threads.len();
    let result = mark(blocks, skip, &frozen, deadline, max_pause, &mut out);
    let pause = frozen.paused();
    drop(frozen);
    out.pause = match hold {
        Hold::Stop => pause.as_secs_f64(),
        // Stopped at its exit anyway: the scan added this long to it.
        Hold::AtExit => started.elapsed().as_secs_f64(),
    };
    match result {
        Ok(sites) => {
            out.totals = totals(&sites);
            out.complete = true;
            out.sites = Some(sites);
        }
        Err(reason) => out.reason = Some(reason),
    }
    out.duration = started.elapsed().as_secs_f64();
    out
}

/// Reads the blocks and marks; the verdicts by site, or why there are none.
fn mark(
    blocks: impl FnOnce() -> anyhow::Result<Vec<Block>>,
    skip: &[String],
    frozen: &Frozen,
    deadline: Instant,
    max_pause: Duration,
    out: &mut Scan,
) -> Result<HashMap<u64, SiteVerdicts>, String> {
    let blocks = blocks().map_err(|e| format!("{e:#}"))?;
    out.blocks = blocks.len() as u64;
    let maps = std::fs::read_to_string(format!("/proc/{}/maps", frozen.pid))
        .map_err(|e| format!("could not read the target's mappings: {e}"))?;
    let sps: Vec<u64> = frozen
        .threads
        .iter()
        .map(|t| t.regs.rsp.saturating_sub(RED_ZONE) & !7)
        .collect();
    let roots = root_ranges(&maps, &sps, skip);
    out.regions = roots.len();
    let mut marker = Marker::new(&blocks, Remote(frozen.pid), deadline);
    let out_of_time = |done: super::reach::Work, out: &mut Scan| {
        out.bytes_scanned = done.bytes;
        out.root_bytes = done.root_bytes;
        format!(
            "the scan reached --leak-scan-max-pause ({} ms) after reading {} bytes, and let the \
             target go",
            max_pause.as_millis(),
            done.bytes
        )
    };
    for t in &frozen.threads {
        marker.words(&t.register_words());
    }
    for r in &roots {
        marker.range(*r).map_err(|e| out_of_time(e.work, out))?;
    }
    marker.follow().map_err(|e| out_of_time(e.work, out))?;
    let (classes, work) = marker.finish().map_err(|e| out_of_time(e.work, out))?;
    out.bytes_scanned = work.bytes;
    out.root_bytes = work.root_bytes;
    let mut sites: HashMap<u64, SiteVerdicts> = HashMap::new();
    for (b, class) in blocks.iter().zip(classes) {
        let v = sites.entry(b.site).or_default();
        match class {
            Class::Reachable => v.reachable.add(b.size),
            Class::IndirectlyLost => v.indirectly_lost.add(b.size),
            Class::DefinitelyLost => v.definitely_lost.add(b.size),
        }
    }
    Ok(sites)
}

/// Bytes below the stack pointer a leaf function may use without moving it (x86-64 System V).
const RED_ZONE: u64 = 128;

/// The writable memory scanned as roots: every readable, writable mapping but devices' (a GPU's
/// memory among them) and the kernel's special ones; a mapping that holds a thread's stack
/// pointer from that pointer up. The mappings of the files named `skip` are left out.
pub(crate) fn root_ranges(maps: &str, stack_pointers: &[u64], skip: &[String]) -> Vec<Range> {
    let mut out = Vec::new();
    for line in maps.lines() {
        let mut parts = line.split_whitespace();
        let (Some(range), Some(perms)) = (parts.next(), parts.next()) else {
            continue;
        };
        let path = parts.nth(3).unwrap_or("");
        let perms = perms.as_bytes();
        if perms.first() != Some(&b'r') || perms.get(1) != Some(&b'w') {
            continue;
        }
        // A shared anonymous mapping reads as /dev/zero; other devices are left alone.
        let device = path.starts_with("/dev/") && !path.starts_with("/dev/zero");
        let file = path.rsplit('/').next().unwrap_or("");
        if device
            || (!file.is_empty() && skip.iter().any(|s| s == file))
            || path.starts_with("anon_inode:")
            || matches!(path, "[vvar]" | "[vvar_vclock]" | "[vsyscall]" | "[vdso]")
        {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let (Ok(mut start), Ok(end)) =
            (u64::from_str_radix(start, 16), u64::from_str_radix(end, 16))
        else {
            continue;
        };
        if let Some(sp) = stack_pointers.iter().find(|&&sp| sp >= start && sp < end) {
            start = *sp;
        }
        out.push(Range { start, end });
    }
    out
}

/// The target's memory, read with `process_vm_readv`.
struct Remote(i32);

impl Memory for Remote {
    fn read(&mut self, addr: u64, buf: &mut [u8]) -> usize {
        if buf.is_empty() {
            return 0;
        }
        let n = tracee::task::vm_read(self.0, addr, buf);
        if n > 0 {
            return n as usize;
        }
        // A range that starts in unreadable memory; or process_vm_readv refused where
        // /proc/PID/mem is not.
        match tracee::task::read_memory(self.0, addr, buf) {
            Ok(()) => buf.len(),
            Err(_) => 0,
        }
    }
}

/// Every outstanding block the kernel tracks, by address, not overlapping.
pub(crate) fn read_blocks(ebpf: &Ebpf) -> anyhow::Result<Vec<Block>> {
    let map = bpf::map(ebpf, maps::MEM_ALLOCS)?;
    let mut blocks = match lookup_batch(map) {
        Some(blocks) => blocks,
        None => {
            // Element by element (a kernel without batch lookups of hash maps).
            let allocs: BpfHashMap<_, u64, AllocInfo> = BpfHashMap::try_from(map)?;
            allocs
                .iter()
                .filter_map(Result::ok)
                .map(|(addr, info)| Block {
                    addr,
                    size: info.size,
                    site: info.site,
                })
                .collect()
        }
    };
    tidy(&mut blocks);
    Ok(blocks)
}

/// Sorts blocks by address, one an address, none overlapping the next.
pub(crate) fn tidy(blocks: &mut Vec<Block>) {
    blocks.sort_unstable_by_key(|b| b.addr);
    blocks.dedup_by_key(|b| b.addr);
    // A block that runs into the next (a mapping partly unmapped and mapped again) ends there.
    for i in 1..blocks.len() {
        let next = blocks[i].addr;
        let b = &mut blocks[i - 1];
        if b.addr.saturating_add(b.size) > next {
            b.size = next - b.addr;
        }
    }
}

/// `BPF_MAP_LOOKUP_BATCH`.
const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// The `batch` member of `union bpf_attr`.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Every block of `MEM_ALLOCS`, read thousands at a system call; `None` where the kernel does
/// not do batch lookups (or the read fails part-way, for the caller to read it again).
fn lookup_batch(map: &Map) -> Option<Vec<Block>> {
    let Map::HashMap(data) = map else {
        return None;
    };
    let fd = data.fd().as_fd().as_raw_fd();
    const COUNT: usize = 4096;
    let mut keys = vec![0u64; COUNT];
    let mut values = vec![
        AllocInfo {
            size: 0,
            site: 0,
            timestamp_ns: 0
        };
        COUNT
    ];
    let mut out = Vec::new();
    let mut token = [0u64; 1];
    let mut next = [0u64; 1];
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { token.as_ptr() as u64 },
            out_batch: next.as_mut_ptr() as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: COUNT as u32,
            map_fd: fd as u32,
            ..Default::default()
        };
        // SAFETY: `attr` is a valid `bpf_attr.batch` whose buffers (`keys`, `values` of COUNT
        // entries of the map's key and value sizes, and the 8-byte tokens) outlive the call.
        let r = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_BATCH,
                &mut attr as *mut BatchAttr,
                size_of::<BatchAttr>(),
            )
        };
        let err = std::io::Error::last_os_error().raw_os_error();
        let done = r < 0 && err == Some(libc::ENOENT);
        if r < 0 && !done {
            return None;
        }
        let n = (attr.count as usize).min(COUNT);
        out.extend(keys[..n].iter().zip(&values[..n]).map(|(&addr, v)| Block {
            addr,
            size: v.size,
            site: v.site,
        }));
        if done {
            return Some(out);
        }
        token = next;
        first = false;
    }
}

/// The verdicts over every site.
fn totals(sites: &HashMap<u64, SiteVerdicts>) -> SiteVerdicts {
    let mut t = SiteVerdicts::default();
    for v in sites.values() {
        t += *v;
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roots_are_writable_memory_but_devices_and_stacks_below_their_pointer() {
        let maps = "\
555555554000-555555555000 r--p 00000000 fe:01 12 /usr/bin/victim
555555557000-555555558000 rw-p 00003000 fe:01 12 /usr/bin/victim
555555558000-555555579000 rw-p 00000000 00:00 0 [heap]
7f0000000000-7f0000100000 rw-s 00000000 00:05 9 /dev/nvidia0
7f0000100000-7f0000200000 rw-s 00000000 00:01 10 /dev/zero (deleted)
7f0000200000-7f0000201000 ---p 00000000 00:00 0 
7f0000201000-7f0000a01000 rw-p 00000000 00:00 0 
7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]
7ffd00100000-7ffd00104000 r--p 00000000 00:00 0 [vvar]
ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]
";
        let got = root_ranges(maps, &[0x7ffd_0001_0000, 0x7f00_0090_0000], &[]);
        let r = |start, end| Range { start, end };
        // The files named are left out (the CUDA libraries' own records of their blocks).
        let less = root_ranges(maps, &[0x7ffd_0001_0000], &["victim".into()]);
        assert_eq!(less[0], r(0x5555_5555_8000, 0x5555_5557_9000));
        assert_eq!(
            got,
            [
                r(0x5555_5555_7000, 0x5555_5555_8000),
                r(0x5555_5555_8000, 0x5555_5557_9000),
                r(0x7f00_0010_0000, 0x7f00_0020_0000),
                r(0x7f00_0090_0000, 0x7f00_00a0_1000),
                r(0x7ffd_0001_0000, 0x7ffd_0002_1000),
            ]
        );
    }

    #[test]
    fn verdicts_add_up() {
        let mut sites = HashMap::new();
        let mut a = SiteVerdicts::default();
        a.definitely_lost.add(10);
        a.reachable.add(5);
        let mut b = SiteVerdicts::default();
        b.definitely_lost.add(7);
        b.indirectly_lost.add(3);
        sites.insert(1, a);
        sites.insert(2, b);
        let t = totals(&sites);
        assert_eq!(
            t.definitely_lost,
            Tally {
                bytes: 17,
                count: 2
            }
        );
        assert_eq!(t.indirectly_lost, Tally { bytes: 3, count: 1 });
        assert_eq!(t.reachable, Tally { bytes: 5, count: 1 });
    }
}
