//! The `gpu` family: what NVML says of the NVIDIA devices and of the target's GPU memory
//! (`nvml.rs`), and the target's calls into the CUDA libraries it maps, seen by uprobes
//! (`cuda.rs` finds them, `kernel.rs` probes them, `section.rs` makes the section): allocations
//! and releases with their host stacks and a leak verdict, copies, kernel launches,
//! synchronization waits, and every failed call, which the errors family classifies
//! (`errors.rs`). Nothing is injected into the target.
//!
//! Without an NVIDIA driver and without a CUDA library in the target the family is
//! `not_available`, with the reason. A CUDA library the target maps while profiled (PyTorch
//! loads its runtime with dlopen) is probed when it appears.

pub(crate) mod analyze;
pub(crate) mod cuda;
pub(crate) mod errors;
pub(crate) mod kernel;
mod nvml;
pub(crate) mod section;

use std::{
    collections::{HashMap, HashSet},
    path::{Path, PathBuf},
    time::Duration,
};

use anyhow::Context as _;
use aya::Ebpf;
use profiler_common::{
    event::{EventHeader, EventKind},
    gpu::{CudaErrorEvent, GpuKey, Space, block_addr},
};

use crate::{
    clock::monotonic_ns,
    families::memory::{
        reach::Block,
        scan::{self, Hold, Scan, SiteVerdicts, Trigger},
    },
    family::{Family, Flow, ProbeLoad, ReportContext, TargetContext, TickContext},
    level::FamilyId,
    overhead,
    report::{
        CostModel, MachineGpu, Report,
        gpu::{CudaFunction, CudaLibrary, CudaSection, GpuSection},
        text::human_bytes,
    },
    tracee::{self, Module},
};
use cuda::CudaLib;
use errors::{CudaCallFailure, ErrorsFeed};
use kernel::{Probes, RawCuda};
use section::{CudaInput, Meta};

/// Most failed calls kept in detail for the errors family (every one is counted exactly in the
/// gpu section's `cuda.errors`).
const MAX_FAILURES: usize = 4096;

/// A failed call as the ring buffer delivered it.
#[derive(Debug, Clone, Copy)]
struct Failed {
    tid: u32,
    timestamp_ns: u64,
    function: u32,
    code: u32,
    site: u64,
    bytes: u64,
}

#[derive(Default)]
pub(crate) struct Gpu {
    nvml: nvml::NvmlPart,
    pid: i32,
    /// The CUDA libraries found before attaching.
    found: Vec<CudaLib>,
    probes: Probes,
    /// The mapped files already looked at for CUDA (canonical paths).
    seen: HashSet<PathBuf>,
    started_ns: u64,
    failed: Vec<Failed>,
    failed_dropped: u64,
    /// What the maps held when read (at the end, or when the probes were shed).
    raw: Option<RawCuda>,
    shed_ns: Option<u64>,
    /// The last reachability scan, with its sites (`Block::site` indexes `scan_keys`; a
    /// physical handle is a site of its own, with its size).
    scan: Option<Scan>,
    scan_keys: Vec<(GpuKey, Option<u64>)>,
    /// The target's outstanding device bytes over the run (seconds since the start, bytes):
    /// `gpu_memory` without NVML.
    series: Vec<(f64, u64)>,
    /// Where the failed calls go for the errors family.
    feed: Option<ErrorsFeed>,
    /// `--leak-scan-max-pause`: the longest a scan holds the target.
    max_pause: Duration,
    attach_warnings: Vec<String>,
}

impl Gpu {
    pub(crate) fn new(feed: Option<ErrorsFeed>, max_pause: Duration) -> Self {
        Self {
            feed,
            max_pause,
            ..Self::default()
        }
    }

    /// Probes a CUDA library, once per file.
    fn probe(&mut self, ebpf: &Ebpf, lib: CudaLib, now_ns: u64) -> anyhow::Result<()> {
        if !self.seen.insert(file_key(&lib.module.open_path)) {
            return Ok(());
        }
        let name = lib.module.file_name();
        self.probes
            .attach(ebpf, lib, self.pid as u32, now_ns)
            .with_context(|| format!("gpu: could not probe {name}"))
    }

    /// Probes the CUDA libraries the target has mapped since the last look.
    fn look_for_libraries(&mut self, ebpf: &Ebpf) {
        let Ok(mappings) = tracee::mappings(self.pid) else {
            return;
        };
        let mut paths: Vec<PathBuf> = mappings
            .into_iter()
            .filter(|m| m.executable)
            .map(|m| m.path)
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| cuda::api_of_name(n).is_some())
            })
            .collect();
        paths.dedup();
        for path in paths {
            let open_path = tracee::host_path(self.pid, &path);
            let key = file_key(&open_path);
            if self.seen.contains(&key) {
                continue;
            }
            match cuda::in_library(Module { path, open_path }) {
                Some(lib) => {
                    if let Err(e) = self.probe(ebpf, lib, monotonic_ns()) {
                        self.attach_warnings.push(format!("{e:#}"));
                    }
                }
                None => {
                    self.seen.insert(key);
                }
            }
        }
    }

    /// Scans the target for the outstanding blocks' addresses (see the memory family).
    fn scan(&mut self, ebpf: &Ebpf, hold: Hold, trigger: Trigger) {
        if !self.probes.attached() {
            return;
        }
        // Scan site i is `keys[i]`: a site of the family, or one handle of physical memory
        // (with its size: the scan looks for the handle's value alone).
        let mut keys: Vec<(GpuKey, Option<u64>)> = Vec::new();
        // The libraries' own records of the blocks are no references of the program's.
        // (A runtime linked into the executable keeps its records with the program's.)
        let skip: Vec<String> = (self.probes.libs.iter())
            .map(|(l, _)| l.module.file_name())
            .filter(|name| cuda::api_of_name(name).is_some())
            .collect();
        let scan = scan::scan_blocks(self.pid, hold, self.max_pause, trigger, &skip, || {
            let mut index: HashMap<GpuKey, u64> = HashMap::new();
            let mut blocks: Vec<Block> = Vec::new();
            for (key, b) in kernel::read_blocks(ebpf)? {
                let site_key = GpuKey {
                    site: b.site,
                    function: b.function,
                    detail: b.space,
                };
                let addr = block_addr(key);
                let (site, size) = if b.space == Space::Physical as u32 {
                    keys.push((site_key, Some(b.size)));
                    (keys.len() as u64 - 1, 1)
                } else {
                    let n = keys.len() as u64;
                    let site = *index.entry(site_key).or_insert_with(|| {
                        keys.push((site_key, None));
                        n
                    });
                    (site, b.size)
                };
                blocks.push(Block { addr, size, site });
            }
            scan::tidy(&mut blocks);
            Ok(blocks)
        });
        if scan.blocks > 0 || scan.reason.is_some() {
            self.scan = Some(scan);
            self.scan_keys = keys;
        }
    }

    /// Reads the maps, and hands the failed calls to the errors family.
    fn read(&mut self, ebpf: &Ebpf) -> anyhow::Result<()> {
        let functions = self.probes.functions().count();
        // The failed calls' stacks too, for the errors family.
        let failed = self.failed.iter().map(|f| f.site);
        self.raw = Some(kernel::read(ebpf, functions, failed)?);
        Ok(())
    }

    fn feed_errors(&self) {
        let (Some(feed), Some(raw)) = (&self.feed, &self.raw) else {
            return;
        };
        let metas = self.metas();
        let failures = self.failed.iter().map(|f| {
            let call = metas.get(f.function as usize).map_or("?", |m| m.name);
            CudaCallFailure {
                tid: f.tid,
                timestamp_ns: f.timestamp_ns,
                call: call.into(),
                code: f.code,
                error: errors::error_name(call, f.code),
                bytes: f.bytes,
                stack: raw.stacks.get(&f.site).cloned().unwrap_or_default(),
            }
        });
        if let Ok(mut feed) = feed.lock() {
            feed.extend(failures);
        }
    }

    fn metas(&self) -> Vec<Meta> {
        self.probes
            .functions()
            .map(|f| Meta {
                name: f.name,
                class: f.class,
            })
            .collect()
    }

    /// The probe hits of each function (entries and returns) and their cost, from `hits`.
    fn loads(&self, hits: &[u64], model: &CostModel) -> Vec<ProbeLoad> {
        self.probes
            .functions()
            .enumerate()
            .map(|(id, f)| {
                let n = hits.get(id).copied().unwrap_or(0);
                ProbeLoad {
                    hits: 2 * n,
                    cost_ns: overhead::probe_cost_ns(model, f.placement.class, n, n),
                }
            })
            .collect()
    }

    /// The cuda part of the section, from `raw`.
    fn cuda_section(
        &self,
        raw: RawCuda,
        verdicts: Option<HashMap<GpuKey, SiteVerdicts>>,
        scan_reason: Option<String>,
        end_ns: u64,
        ctx: &mut ReportContext<'_>,
    ) -> CudaSection {
        let loads = self.loads(&raw.hits, ctx.cost_model);
        let mut loads = loads.iter();
        let libraries = (self.probes.libs.iter())
            .map(|(lib, at)| CudaLibrary {
                api: lib.api.name().into(),
                module: lib.module.file_name(),
                path: lib.module.path.display().to_string(),
                probed_at: (at.saturating_sub(ctx.start_ktime_ns) as f64 * 1e-9).max(0.0),
                functions: (lib.functions.iter())
                    .map(|f| {
                        let load = loads.next().copied().unwrap_or_default();
                        CudaFunction {
                            name: f.name.into(),
                            hits: load.hits,
                            estimated_cost: load.cost_ns * 1e-9,
                            probe_offset: f.placement.offset,
                            probe_class: f.placement.class.name().into(),
                            ..CudaFunction::default()
                        }
                    })
                    .collect(),
            })
            .collect();
        let metas = self.metas();
        let mut frames = HashMap::new();
        for (site, ips) in &raw.stacks {
            // Return addresses: the call is the byte before.
            let f = ips
                .iter()
                .map(|ip| ctx.symbolizer.frame(ctx.maps, ip.saturating_sub(1)))
                .collect();
            frames.insert(*site, f);
        }
        let mut kernels = HashMap::new();
        for (key, _) in &raw.stats {
            let launch = metas.get(key.function as usize).map(|m| m.name);
            let name = match launch {
                Some(n) if n.starts_with("cudaLaunchKernel") => {
                    // The host stub's address: a function's own.
                    Some(ctx.symbolizer.frame(ctx.maps, key.site).function).filter(|f| f != "??")
                }
                Some(n) if n.starts_with("cuLaunchKernel") => {
                    raw.kernel_names.get(&key.site).cloned()
                }
                _ => None,
            };
            if let Some(name) = name {
                kernels.insert(key.site, name);
            }
        }
        section::section(CudaInput {
            libraries,
            functions: metas,
            raw,
            frames,
            kernels,
            verdicts,
            scan_reason,
            end_ns,
        })
    }

    /// The whole section: NVML's, with the CUDA probes' part.
    fn section(&self, cuda: Option<CudaSection>, duration: f64) -> Option<GpuSection> {
        let mut section = match self.nvml.section(duration) {
            Some(s) => s,
            None => {
                let cuda = cuda.as_ref()?;
                let mut totals = self.series.clone();
                let device = cuda
                    .allocations
                    .outstanding_by_space
                    .get("device")
                    .map_or(0, |t| t.bytes);
                totals.push((duration, device));
                GpuSection {
                    interval: nvml::INTERVAL.as_secs_f64(),
                    gpu_memory: analyze::gpu_memory(&totals, "cuda"),
                    nvml_unavailable: self.nvml.unavailable.clone(),
                    ..GpuSection::default()
                }
            }
        };
        section.cuda = cuda;
        Some(section)
    }

    /// The verdicts of the last scan by site, or why there are none.
    fn verdicts(&self) -> (Option<HashMap<GpuKey, SiteVerdicts>>, Option<String>) {
        match &self.scan {
            Some(s) => match &s.sites {
                Some(sites) => {
                    let mut by_key: HashMap<GpuKey, SiteVerdicts> = HashMap::new();
                    for (i, v) in sites {
                        let Some((key, size)) = self.scan_keys.get(*i as usize) else {
                            continue;
                        };
                        let mut v = *v;
                        if let Some(size) = size {
                            // A handle was scanned as one byte: its block has its size.
                            for t in [
                                &mut v.definitely_lost,
                                &mut v.indirectly_lost,
                                &mut v.reachable,
                            ] {
                                t.bytes = t.count * size;
                            }
                        }
                        *by_key.entry(*key).or_default() += v;
                    }
                    (Some(by_key), None)
                }
                None => (None, s.reason.clone()),
            },
            None if self.shed_ns.is_some() => (
                None,
                Some("the CUDA probes were detached by the overhead budget".into()),
            ),
            None => (None, Some("no block was outstanding to scan".into())),
        }
    }
}

/// What a file is known by: its canonical path (one file mapped under two names is one).
fn file_key(path: &Path) -> PathBuf {
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf())
}

impl Family for Gpu {
    fn id(&self) -> FamilyId {
        FamilyId::Gpu
    }

    fn priced(&self) -> bool {
        true
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        self.nvml.open();
        self.pid = ctx.pid;
        self.found = cuda::detect(ctx.modules);
        Ok(())
    }

    fn unavailable(&self) -> Option<String> {
        let why = self.nvml.unavailable.as_ref()?;
        (self.found.is_empty() && self.probes.libs.is_empty())
            .then(|| format!("{why}, and the target maps no CUDA library"))
    }

    fn attach(&mut self, ebpf: &mut Ebpf, _ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        self.nvml.start(self.pid)?;
        self.started_ns = monotonic_ns();
        for lib in std::mem::take(&mut self.found) {
            self.probe(ebpf, lib, self.started_ns)?;
        }
        Ok(self.probes.count())
    }

    fn note(&self) -> Option<String> {
        let (devices, driver) = self.nvml.facts();
        let nvml = match &self.nvml.unavailable {
            Some(why) => format!("NVML: {why}"),
            None => format!(
                "NVML every {} s, {devices} device(s), driver {driver}",
                nvml::INTERVAL.as_secs()
            ),
        };
        let libs: Vec<String> = (self.probes.libs.iter())
            .map(|(l, _)| {
                format!(
                    "{} ({}, {} functions)",
                    l.module.file_name(),
                    l.api.name(),
                    l.functions.len()
                )
            })
            .collect();
        let cuda = if libs.is_empty() {
            "no CUDA library probed (one the target maps later is probed when it appears)".into()
        } else {
            format!(
                "CUDA probes (entry and return) on {}; a CUDA library mapped later is probed \
                 when it appears",
                libs.join(", ")
            )
        };
        Some(format!(
            "{nvml}; {cuda}; {}",
            crate::family::CHILDREN_NOT_COVERED
        ))
    }

    fn handles(&self, kind: u16) -> bool {
        kind == EventKind::CudaError as u16
    }

    fn on_event(&mut self, _kind: u16, bytes: &[u8]) -> Flow {
        if bytes.len() < std::mem::size_of::<CudaErrorEvent>() {
            return Flow::Continue;
        }
        // SAFETY: the record is at least one CudaErrorEvent long (checked above), which is
        // plain old data of any bit pattern; read unaligned from the ring buffer.
        let e: CudaErrorEvent = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
        let EventHeader {
            tid, timestamp_ns, ..
        } = e.header;
        if self.failed.len() < MAX_FAILURES {
            self.failed.push(Failed {
                tid,
                timestamp_ns,
                function: e.function,
                code: e.code,
                site: e.site,
                bytes: e.bytes,
            });
        } else {
            self.failed_dropped += 1;
        }
        Flow::Continue
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.shed_ns.is_some() {
            return;
        }
        self.look_for_libraries(ebpf);
        if self.probes.attached()
            && let Ok(sites) = kernel::read_sites(ebpf)
        {
            let device: u64 = (sites.iter())
                .filter(|(k, _)| k.detail == Space::Device as u32)
                .map(|(_, s)| {
                    s.alloc_bytes
                        .saturating_sub(s.free_bytes + s.untracked_bytes)
                })
                .sum();
            let at = monotonic_ns().saturating_sub(self.started_ns) as f64 * 1e-9;
            self.series.push((at, device));
        }
    }

    fn on_exit_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        self.scan(ebpf, Hold::AtExit, Trigger::Exit);
    }

    fn before_stop(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        self.scan(ebpf, Hold::Stop, Trigger::End);
    }

    fn budget_units(&mut self, ebpf: &Ebpf, model: &CostModel) -> Vec<f64> {
        let hits = match &self.raw {
            Some(raw) if !self.probes.attached() => raw.hits.clone(),
            _ => kernel::read_hits(ebpf, self.probes.functions().count()).unwrap_or_default(),
        };
        vec![self.loads(&hits, model).iter().map(|l| l.cost_ns).sum()]
    }

    fn unit_name(&self, _unit: usize) -> String {
        "gpu CUDA probes".into()
    }

    fn shed(&mut self, ebpf: &mut Ebpf, _unit: usize) -> anyhow::Result<()> {
        if !self.probes.attached() {
            return Ok(());
        }
        // The last moment the outstanding blocks are exact.
        self.scan(ebpf, Hold::Stop, Trigger::Budget);
        self.probes.detach();
        self.shed_ns = Some(monotonic_ns());
        self.read(ebpf)
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        self.nvml.stop();
        warnings.append(&mut self.attach_warnings);
        if self.probes.attached()
            && let Err(e) = self.read(ebpf)
        {
            warnings.push(format!("gpu: could not read the CUDA maps: {e:#}"));
        }
        if self.failed_dropped > 0 {
            warnings.push(format!(
                "gpu: {} failed CUDA calls were counted but not detailed (more than {MAX_FAILURES})",
                self.failed_dropped
            ));
        }
        self.feed_errors();
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        self.probes.detach();
    }

    fn probe_load(&self, model: &CostModel) -> ProbeLoad {
        let mut total = ProbeLoad::default();
        if let Some(raw) = &self.raw {
            for l in self.loads(&raw.hits, model) {
                total += l;
            }
        }
        total
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        if let Some(at) = self.shed_ns {
            report.warnings.push(format!(
                "gpu: the CUDA probes were detached after {:.1} s to stay within \
                 --max-overhead; the cuda section covers the run up to then",
                at.saturating_sub(ctx.start_ktime_ns) as f64 * 1e-9
            ));
        }
        let cuda = match self.raw.take() {
            Some(raw) if !self.probes.libs.is_empty() => {
                let (verdicts, reason) = self.verdicts();
                let end = self.shed_ns.unwrap_or(ctx.end_ktime_ns);
                Some(self.cuda_section(raw, verdicts, reason, end, ctx))
            }
            _ => None,
        };
        report.gpu = self.section(cuda, ctx.duration);
        // The machine's facts name its GPUs (the system family reported first).
        if let (Some(system), Some(gpu)) = (&mut report.system, &report.gpu) {
            system.machine.gpus = (gpu.devices.iter())
                .map(|d| MachineGpu {
                    index: d.index,
                    name: d.name.clone(),
                    memory: d.memory_total,
                })
                .collect();
        }
    }

    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let cuda = match (self.probes.attached(), self.raw.clone()) {
            (true, _) => kernel::read(ebpf, self.probes.functions().count(), [])
                .ok()
                .map(|raw| {
                    let reason = Some("live: the leak scan runs at the end".to_string());
                    self.cuda_section(raw, None, reason, monotonic_ns(), ctx)
                }),
            (false, Some(raw)) => Some(self.cuda_section(raw, None, None, monotonic_ns(), ctx)),
            (false, None) => None,
        };
        report.gpu = self.section(cuda, ctx.duration);
    }
}

/// The family's block of the printed summary (see `families::summary`).
pub(crate) fn summary_block(report: &Report, out: &mut String) {
    let Some(g) = &report.gpu else { return };
    use std::fmt::Write as _;
    match &g.nvml_unavailable {
        None => {
            let _ = writeln!(
                out,
                "\ngpu: {} device(s), driver {}; the target holds {} (peak {}, {})",
                g.devices.len(),
                g.driver_version,
                human_bytes(g.gpu_memory.allocated),
                human_bytes(g.gpu_memory.peak),
                g.gpu_memory.trend
            );
        }
        Some(why) => {
            let _ = writeln!(
                out,
                "\ngpu: NVML: {why}; the CUDA probes saw {} outstanding on the device (peak {}, \
                 {})",
                human_bytes(g.gpu_memory.allocated),
                human_bytes(g.gpu_memory.peak),
                g.gpu_memory.trend
            );
        }
    }
    for d in &g.devices {
        let _ = writeln!(
            out,
            "  gpu {} {}: memory {} of {} (peak {}), utilization {:.0}% average, {:.0}% peak",
            d.index,
            d.name,
            human_bytes(d.memory_used),
            human_bytes(d.memory_total),
            human_bytes(d.memory_used_peak),
            d.utilization_gpu_average,
            d.utilization_gpu_peak
        );
        let mut more = Vec::new();
        if let (Some(tx), Some(rx)) = (d.pcie_tx_average, d.pcie_rx_average) {
            more.push(format!(
                "PCIe {}/s out, {}/s in",
                human_bytes(tx as u64),
                human_bytes(rx as u64)
            ));
        }
        if let Some(share) = d.throttled_share.filter(|s| *s > 0.0) {
            more.push(format!(
                "throttled {share:.0}% of the time ({})",
                d.throttle_reasons.join(", ")
            ));
        }
        if let Some(n) = d.ecc_uncorrected_errors.filter(|n| *n > 0) {
            more.push(format!("{n} uncorrected ECC errors"));
        }
        for x in &d.xid_errors {
            more.push(format!("XID {} at {:.1}s", x.xid, x.at));
        }
        if !more.is_empty() {
            let _ = writeln!(out, "    {}", more.join("; "));
        }
    }
    if let Some(c) = &g.cuda {
        cuda_summary(c, out);
    }
}

/// The CUDA lines of the summary.
fn cuda_summary(c: &CudaSection, out: &mut String) {
    use std::fmt::Write as _;
    let libs: Vec<&str> = c.libraries.iter().map(|l| l.module.as_str()).collect();
    let a = &c.allocations;
    let _ = writeln!(
        out,
        "  cuda ({}): {} allocations ({}), {} freed; {} outstanding in {} blocks",
        libs.join(", "),
        a.allocated.count,
        human_bytes(a.allocated.bytes),
        a.freed.count,
        human_bytes(a.outstanding.bytes),
        a.outstanding.count
    );
    if a.method == "reachability" {
        let _ = writeln!(
            out,
            "    leak scan: {} definitely lost in {} blocks, {} indirectly, {} reachable",
            human_bytes(a.definitely_lost.bytes),
            a.definitely_lost.count,
            human_bytes(a.indirectly_lost.bytes),
            human_bytes(a.reachable.bytes)
        );
    }
    for s in c.sites.iter().filter(|s| s.outstanding.count > 0).take(5) {
        let _ = writeln!(
            out,
            "    {} {} in {} blocks: {} from {} ({})",
            s.verdict,
            human_bytes(s.outstanding.bytes),
            s.outstanding.count,
            s.call,
            s.function,
            s.space
        );
    }
    let copied: u64 = c.copies.iter().map(|x| x.bytes).sum();
    let launches: u64 = c.kernels.iter().map(|k| k.launches).sum();
    let waited = c.syncs.iter().fold(0.0, |t, s| t + s.seconds);
    let _ = writeln!(
        out,
        "    {} copied in {} calls; {launches} kernel launches ({} kernels); {waited:.3} s \
         waiting for the GPU",
        human_bytes(copied),
        c.copies.iter().map(|x| x.calls).sum::<u64>(),
        c.kernels.len()
    );
    for e in c.errors.iter().take(5) {
        let _ = writeln!(
            out,
            "    failed: {} = {} ({}) x{} in {}",
            e.call, e.error, e.code, e.count, e.function
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The summary block of a run with NVML and the CUDA probes: the device, its health, and
    /// what the probes saw, each in one line.
    #[test]
    fn the_summary_block_has_the_devices_and_the_cuda_lines() {
        let report = crate::report::tests::sample();
        let mut out = String::new();
        summary_block(&report, &mut out);
        let lines: Vec<&str> = out.lines().collect();
        for want in [
            "gpu: 1 device(s), driver 550.54.15; the target holds 5.0 GiB (peak 6.0 GiB, \
             increasing)",
            "    PCIe 1.4 GiB/s out, 238.4 MiB/s in; throttled 25% of the time (sw_power_cap); \
             XID 79 at 3.5s",
            "  cuda (libcudart.so.12): 35 allocations (11.0 MiB), 20 freed; 10.0 MiB outstanding \
             in 15 blocks",
            "    leak scan: 1.2 MiB definitely lost in 5 blocks, 0.0 B indirectly, 10.0 MiB \
             reachable",
            "    reachable 10.0 MiB in 10 blocks: cudaMalloc from keep_buffers (device)",
            "    8.0 MiB copied in 8 calls; 100 kernel launches (1 kernels); 0.060 s waiting for \
             the GPU",
            "    failed: cudaMalloc = cudaErrorMemoryAllocation (2) x1 in too_big",
        ] {
            assert!(lines.contains(&want), "no {want:?} in:\n{out}");
        }
        // Without NVML: the reason, and the probes' view of the device memory.
        let mut report = report;
        let gpu = report.gpu.as_mut().expect("a gpu section");
        gpu.nvml_unavailable = Some("no NVIDIA driver".into());
        gpu.devices.clear();
        let mut out = String::new();
        summary_block(&report, &mut out);
        assert!(
            out.starts_with("\ngpu: NVML: no NVIDIA driver; the CUDA probes saw 5.0 GiB"),
            "{out}"
        );
    }
}
