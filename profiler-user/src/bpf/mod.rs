//! Loading the kernel programs and the checks that come before: privileges, kernel features,
//! tracefs; the loss counters every family shares. Each family's attach and read code is in its
//! own `families/<name>/kernel.rs`.

pub(crate) mod btf;
pub(crate) mod multi;

use std::{collections::BTreeMap, path::Path};

use anyhow::Context as _;
use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, PerCpuArray},
};
use profiler_common::{
    TARGET_TGID_GLOBAL,
    control::{self, STOPPED},
    counters::{self, COUNTER_SLOTS, Counter},
};

use crate::error::ProfilerError;

/// The kernel programs, built from profiler-ebpf by build.rs.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/profiler"));

const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

/// Root, or CAP_BPF and CAP_PERFMON (or CAP_SYS_ADMIN), in the effective set.
pub(crate) fn check_privileges() -> Result<(), ProfilerError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        return Ok(());
    }
    let caps = crate::tracee::own_capabilities();
    let has = |cap: u32| caps & (1 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        Ok(())
    } else {
        Err(ProfilerError::NotPrivileged)
    }
}

/// Kernel features, checked before anything is loaded. `PROFILER_ASSUME_MISSING` (a comma list
/// of `uprobes`, `btf`, `tracefs`) makes the check act as if a feature were absent, so the
/// error path itself can be tested on a kernel that has everything.
pub(crate) fn check_kernel(need_uprobes: bool) -> Result<(), ProfilerError> {
    let assumed_missing = std::env::var("PROFILER_ASSUME_MISSING").unwrap_or_default();
    let missing = |what: &str| assumed_missing.split(',').any(|m| m.trim() == what);
    if need_uprobes
        && (missing("uprobes") || !Path::new("/sys/bus/event_source/devices/uprobe/type").exists())
    {
        return Err(ProfilerError::KernelFeature {
            what: "uprobes",
            hint: "a kernel built with CONFIG_UPROBE_EVENTS=y is required",
        });
    }
    if missing("btf") || !Path::new("/sys/kernel/btf/vmlinux").exists() {
        return Err(ProfilerError::KernelFeature {
            what: "BTF (/sys/kernel/btf/vmlinux)",
            hint: "a kernel built with CONFIG_DEBUG_INFO_BTF=y is required",
        });
    }
    if missing("tracefs") || !ensure_tracefs() {
        return Err(ProfilerError::KernelFeature {
            what: "tracefs",
            hint: "mount it: mount -t tracefs nodev /sys/kernel/tracing",
        });
    }
    Ok(())
}

/// Tracepoints are found through tracefs; mount it where it is missing (we are privileged).
fn ensure_tracefs() -> bool {
    let mounted = |p: &str| Path::new(p).join("events").is_dir();
    if mounted("/sys/kernel/tracing") || mounted("/sys/kernel/debug/tracing") {
        return true;
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; mount has no other memory preconditions.
    let rc = unsafe {
        libc::mount(
            c"nodev".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    rc == 0 && mounted("/sys/kernel/tracing")
}

/// Drops (detaches) links from several threads at once. Detaching a tracepoint or uprobe
/// waits for an RCU grace period; concurrent waits share grace periods, so a hundred links go in
/// about the time of one instead of one after another (seconds).
pub(crate) fn release_in_parallel<L: Send>(links: Vec<L>) {
    const THREADS: usize = 32;
    if links.len() <= 1 {
        drop(links);
        return;
    }
    let per_thread = links.len().div_ceil(THREADS);
    let mut links = links;
    std::thread::scope(|scope| {
        while !links.is_empty() {
            let chunk: Vec<L> = links.drain(..per_thread.min(links.len())).collect();
            scope.spawn(move || drop(chunk));
        }
    });
}

/// What the families ask of the loader: values of the programs' globals and sizes of maps.
#[derive(Debug, Clone, Default)]
pub(crate) struct LoadOptions {
    globals: Vec<(&'static str, u32)>,
    map_sizes: Vec<(&'static str, u32)>,
}

impl LoadOptions {
    /// Sets global `name` (a `u32` the loader writes before the programs are verified).
    pub(crate) fn global(&mut self, name: &'static str, value: u32) -> &mut Self {
        self.globals.push((name, value));
        self
    }

    /// Sizes map `name` to `entries`.
    pub(crate) fn map_size(&mut self, name: &'static str, entries: u32) -> &mut Self {
        self.map_sizes.push((name, entries));
        self
    }

    /// The size asked for map `name`, if any (the last one asked).
    #[cfg(test)]
    pub(crate) fn size_of(&self, name: &str) -> Option<u32> {
        self.map_sizes
            .iter()
            .rev()
            .find(|(n, _)| *n == name)
            .map(|(_, e)| *e)
    }
}

/// Environment variable that makes the kernel time every program run (`BPF_ENABLE_STATS`) and
/// the profiler print each program's mean run time at the end: how the per-hit costs of the
/// tracepoint programs were measured (see BENCHMARKS.md).
pub(crate) const RUN_STATS_ENV: &str = "PROFILER_BPF_STATS";

/// Keeps the kernel's run-time statistics on while it is held.
static RUN_STATS: std::sync::OnceLock<Option<std::os::fd::OwnedFd>> = std::sync::OnceLock::new();

/// Prints each loaded program's runs and mean run time, when [`RUN_STATS_ENV`] is set.
pub(crate) fn print_run_stats(ebpf: &Ebpf) {
    if !matches!(RUN_STATS.get(), Some(Some(_))) {
        return;
    }
    for (name, program) in ebpf.programs() {
        if let Ok(info) = program.info()
            && info.run_count() > 0
        {
            eprintln!(
                "bpf-stats {name}: {} runs, {:.0} ns mean",
                info.run_count(),
                info.run_time().as_nanos() as f64 / info.run_count() as f64
            );
        }
    }
}

/// Loads the programs for target `tgid`, with the globals and map sizes the families asked for.
pub(crate) fn load(tgid: u32, options: &LoadOptions) -> anyhow::Result<Ebpf> {
    raise_memlock_limit();
    RUN_STATS.get_or_init(|| {
        std::env::var_os(RUN_STATS_ENV)
            .and_then(|_| aya::sys::enable_stats(aya::sys::Stats::RunTime).ok())
    });
    let mut loader = EbpfLoader::new();
    loader.override_global(TARGET_TGID_GLOBAL, &tgid, true);
    for (name, value) in &options.globals {
        loader.override_global(name, value, true);
    }
    for (name, entries) in &options.map_sizes {
        loader.map_max_entries(name, *entries);
    }
    loader
        .load(EBPF_OBJECT)
        .context("failed to load the eBPF programs")
}

/// Map `name` of the loaded object.
pub(crate) fn map<'a>(ebpf: &'a Ebpf, name: &str) -> anyhow::Result<&'a aya::maps::Map> {
    ebpf.map(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))
}

/// Map `name` of the loaded object, to write.
pub(crate) fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &str,
) -> anyhow::Result<&'a mut aya::maps::Map> {
    ebpf.map_mut(name)
        .with_context(|| format!("map {name} missing from the eBPF object"))
}

/// Program `name` of the loaded object, as program type `P`.
pub(crate) fn program<'a, P>(ebpf: &'a mut Ebpf, name: &str) -> anyhow::Result<&'a mut P>
where
    &'a mut P: TryFrom<&'a mut aya::programs::Program>,
{
    let program = ebpf
        .program_mut(name)
        .with_context(|| format!("program {name} missing from the eBPF object"))?;
    let kind = format!("{:?}", program.prog_type());
    program
        .try_into()
        .map_err(|_| anyhow::anyhow!("program {name} is of another kind ({kind})"))
}

/// Kernels before 5.11 charge BPF memory to RLIMIT_MEMLOCK; lift it (harmless elsewhere).
fn raise_memlock_limit() {
    let unlimited = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: passes a valid rlimit struct.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &unlimited) };
}

/// Ends the window in the kernel: from now on every program returns at its first check, though
/// the probes stay attached until they are taken down. Idempotent.
pub(crate) fn stop(ebpf: &mut Ebpf) -> anyhow::Result<()> {
    let mut flags: Array<_, u32> = Array::try_from(map_mut(ebpf, control::maps::CONTROL)?)?;
    flags
        .set(STOPPED, 1, 0)
        .context("could not stop the kernel programs")
}

/// Slots `slots` of the per-CPU `u64` array `name`, each summed over the CPUs (0 for a slot that
/// cannot be read).
pub(crate) fn per_cpu_sums(
    ebpf: &Ebpf,
    name: &str,
    slots: impl Iterator<Item = u32>,
) -> anyhow::Result<Vec<u64>> {
    let array: PerCpuArray<_, u64> = PerCpuArray::try_from(map(ebpf, name)?)?;
    Ok(slots
        .map(|slot| array.get(&slot, 0).map(|v| v.iter().sum()).unwrap_or(0))
        .collect())
}

/// The loss counters summed over the CPUs, by name; zero counters left out.
pub(crate) fn read_counters(ebpf: &Ebpf) -> anyhow::Result<BTreeMap<Counter, u64>> {
    let counters: PerCpuArray<_, u64> =
        PerCpuArray::try_from(map(ebpf, counters::maps::COUNTERS)?)?;
    let mut out = BTreeMap::new();
    for counter in Counter::ALL {
        debug_assert!((counter as u32) < COUNTER_SLOTS);
        let total: u64 = counters.get(&(counter as u32), 0)?.iter().sum();
        if total > 0 {
            out.insert(counter, total);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use object::{Object as _, ObjectSection as _, ObjectSymbol as _, SymbolKind};
    use profiler_common::names;

    use super::EBPF_OBJECT;

    /// The maps and programs of the built object, by name.
    fn object_names() -> (BTreeSet<String>, BTreeSet<String>) {
        let file = object::File::parse(EBPF_OBJECT).expect("the eBPF object parses");
        let (mut maps, mut programs) = (BTreeSet::new(), BTreeSet::new());
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            let section = sym
                .section_index()
                .and_then(|i| file.section_by_index(i).ok())
                .and_then(|s| s.name().ok().map(str::to_string))
                .unwrap_or_default();
            if section == "maps" {
                maps.insert(name.to_string());
            } else if sym.kind() == SymbolKind::Text && sym.is_global() && section != ".text" {
                programs.insert(name.to_string());
            }
        }
        (maps, programs)
    }

    #[test]
    fn every_name_the_user_side_uses_is_in_the_object_and_no_other() {
        let (maps, programs) = object_names();
        let want_maps: BTreeSet<String> = names::all_maps().map(str::to_string).collect();
        let want_programs: BTreeSet<String> = names::all_programs().map(str::to_string).collect();
        assert_eq!(maps, want_maps, "maps");
        assert_eq!(programs, want_programs, "programs");
    }
}
