//! The `cpu` family: the target's threads sampled at `--frequency` Hz of their CPU time, their user
//! stacks unwound in the kernel from the objects' `.eh_frame` tables (no frame pointers needed),
//! their kernel stacks, and the samples counted in the kernel; reported as shares per function
//! and thread, and written as folded stacks, a flame graph, pprof or speedscope (`--output`).

pub(crate) mod analyze;
pub(crate) mod cache;
pub(crate) mod kernel;
mod objects;
mod raw;
pub(crate) mod tables;
#[cfg(test)]
mod testing;
pub(crate) mod walk;

use std::{collections::HashMap, fmt::Write as _, path::PathBuf, time::Instant};

use aya::Ebpf;
use profiler_common::{
    cpu::{CPU_SAMPLES_MAX, CPU_STACKS_MAX, CPU_THREADS_MAX, SampleKey, count, globals, maps},
    event::EventKind,
};

use crate::families::python::{SharedHandle, code::Named};
use crate::{
    bpf::LoadOptions,
    family::{
        CHILDREN_NOT_COVERED, Family, Flow, ProbeLoad, ReportContext, TargetContext, TickContext,
    },
    level::FamilyId,
    report::{
        CostModel, Frame, Report,
        cpu::{CpuSection, OutputFile},
        profile::{Profile, ProfileFrame, ProfileSample},
        text::human_time,
    },
    symbols::{kernel::KernelSymbols, symbolize::AddrSymbolizer, symbolize::MappingSnapshot},
    tracee,
};
use analyze::{Resolve, Stacked};
use kernel::{Harvest, Links};
use objects::{Objects, Vdso};

/// Estimated cost of a sample to the target, ns: the timer interrupt that takes it, measured on
/// the development VM (`cargo xtask bench --only cpu`: 16 µs, what perf's own samples cost
/// there too; much less on bare metal), and the sampling program's mean run time the kernel
/// measured (`PROFILER_BPF_STATS=1`, 999 Hz): about 300 ns, plus 150 to 350 ns a frame unwound
/// by table (a 70/30 C victim, 8 frames: 1.4 µs; CPython, 11 frames in a bigger table: 2.5 µs).
const INTERRUPT_NS: f64 = 16_000.0;
const SAMPLE_NS: f64 = 300.0;
const FRAME_NS: f64 = 200.0;
/// Of a sample of a child process (the events are inherited across fork; the program drops
/// them at its first check).
const OTHER_NS: f64 = INTERRUPT_NS + 200.0;

/// How long after an exec the target's mappings are followed at every fast tick.
const EXEC_SETTLE: std::time::Duration = std::time::Duration::from_secs(1);

/// Family options from the command line.
#[derive(Debug, Clone)]
pub(crate) struct Options {
    /// `--frequency`, Hz.
    pub frequency: u64,
    /// `--output`: files written from the samples, by extension.
    pub outputs: Vec<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            frequency: 99,
            outputs: Vec::new(),
        }
    }
}

pub(crate) struct Cpu {
    options: Options,
    pid: i32,
    objects: Objects,
    capacity: u32,
    links: Option<Links>,
    /// Threads the events were opened on.
    threads: usize,
    harvest: Option<Harvest>,
    counts: [u64; count::SLOTS as usize],
    started: Instant,
    /// Each thread's CPU time from /proc, `(seconds since start, CPU seconds)`, per tick.
    thread_cpu: HashMap<u32, Vec<(f64, f64)>>,
    /// The target's executable, and when it was last seen to change (an exec).
    exe: Option<PathBuf>,
    exec_at: Instant,
    /// Samples the kernel sent whole, to unwind here.
    deferred: raw::Deferred,
    /// The python family's Python stacks and code objects, where it runs.
    python: Option<SharedHandle>,
    /// Kernel addresses' names, kept from one live snapshot to the next and for the final
    /// report, so that kallsyms is read once.
    kernel_symbols: Option<KernelSymbols>,
}

impl Cpu {
    pub(crate) fn new(options: Options, python: Option<SharedHandle>) -> Self {
        Self {
            python,
            options,
            pid: 0,
            objects: Objects::new(0),
            capacity: 0,
            links: None,
            threads: 0,
            harvest: None,
            counts: [0; count::SLOTS as usize],
            started: Instant::now(),
            thread_cpu: HashMap::new(),
            exe: None,
            exec_at: Instant::now(),
            deferred: raw::Deferred::default(),
            kernel_symbols: None,
        }
    }

    fn load(&self) -> ProbeLoad {
        let c = &self.counts;
        let samples = c[count::SAMPLES as usize];
        let frames = c[count::FRAMES_TABLE as usize]
            + c[count::FP_NO_TABLE as usize]
            + c[count::FP_UNSUPPORTED as usize];
        let other = c[count::OTHER as usize];
        ProbeLoad {
            hits: samples,
            cost_ns: samples as f64 * SAMPLE_NS
                + frames as f64 * FRAME_NS
                + other as f64 * OTHER_NS,
        }
    }

    fn sample_threads(&mut self) {
        let at = self.started.elapsed().as_secs_f64();
        for tid in tracee::task::thread_ids(self.pid) {
            if let Some(cpu) = tracee::thread_cpu_time(self.pid, tid as u32) {
                self.thread_cpu
                    .entry(tid as u32)
                    .or_default()
                    .push((at, cpu));
            }
        }
    }
}

/// Symbols for the analyzer: the target's objects (kept after it exits), its `[vdso]`, and the
/// kernel's.
struct Resolver<'a> {
    symbolizer: &'a mut AddrSymbolizer,
    maps: &'a MappingSnapshot,
    vdso: Option<&'a Vdso>,
    trampolines: &'a [(u64, u64)],
    kernel: &'a mut KernelSymbols,
    python: Option<&'a SharedHandle>,
}

/// The name of a signal trampoline's frame where the object has no symbol for it.
const SIGNAL_TRAMPOLINE: &str = "__restore_rt";

impl Resolve for Resolver<'_> {
    fn user_frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        ips.iter()
            .enumerate()
            .flat_map(|(i, &ip)| {
                // Return addresses point past the call: look up the call itself.
                let addr = if i == 0 { ip } else { ip.saturating_sub(1) };
                match self.vdso {
                    Some(v) if (v.start..v.end).contains(&addr) => {
                        vec![crate::symbols::kernel::image_frame(
                            &v.image,
                            addr - v.start,
                            tables::VDSO,
                        )]
                    }
                    _ => {
                        let mut frames = self.symbolizer.frames_inlined(self.maps, addr);
                        let trampoline = self
                            .trampolines
                            .iter()
                            .any(|&(a, b)| (a..b).contains(&addr));
                        if let Some(f) = frames
                            .last_mut()
                            .filter(|f| f.function == "??" && trampoline)
                        {
                            f.function = SIGNAL_TRAMPOLINE.into();
                        }
                        frames
                    }
                }
            })
            .collect()
    }

    fn kernel_frames(&mut self, ips: &[u64]) -> Vec<Frame> {
        ips.iter().map(|&ip| self.kernel.frame(ip)).collect()
    }

    fn python_frames(&mut self, hash: u64) -> Vec<Named> {
        self.python
            .map(|p| p.lock().expect("python state").frames(hash))
            .unwrap_or_default()
    }
}

impl Family for Cpu {
    fn id(&self) -> FamilyId {
        FamilyId::Cpu
    }

    fn priced(&self) -> bool {
        true
    }

    fn note(&self) -> Option<String> {
        Some(format!(
            "software cpu-clock perf event at {} Hz on each of the target's {} thread(s), \
             inherited by the threads they start; user stacks unwound in the kernel from the \
             .eh_frame tables of {} object(s), kernel stacks by the kernel; \
             {CHILDREN_NOT_COVERED}",
            self.options.frequency, self.threads, self.objects.info.objects
        ))
    }

    fn prepare(&mut self, ctx: &TargetContext<'_>) -> anyhow::Result<()> {
        self.pid = ctx.pid;
        self.objects = Objects::new(ctx.pid);
        let started = Instant::now();
        self.objects.prepare(ctx.modules);
        if started.elapsed().as_secs_f64() > 1.0 {
            eprintln!(
                "profiler: cpu: compiled the unwind tables of {} object(s) in {:.1} s (cached \
                 for the next run)",
                self.objects.info.compiled,
                started.elapsed().as_secs_f64()
            );
        }
        self.capacity = self.objects.capacity();
        Ok(())
    }

    fn load_options(&self, options: &mut LoadOptions) {
        options.map_size(maps::UNWIND_ROWS, self.capacity.max(1));
        options.map_size(maps::CPU_SAMPLES, CPU_SAMPLES_MAX);
        options.map_size(maps::CPU_STACKS, CPU_STACKS_MAX);
        options.map_size(maps::CPU_THREADS, CPU_THREADS_MAX);
        options.global(globals::KERNEL_STACKS, 1);
    }

    fn attach(&mut self, ebpf: &mut Ebpf, ctx: &TargetContext<'_>) -> anyhow::Result<usize> {
        self.objects.attach(ebpf, self.capacity.max(1))?;
        if !ctx.run_mode {
            // A running process's mappings hold still: written at once.
            self.objects.refresh(ebpf, true);
        }
        let (links, threads) = kernel::attach(ebpf, ctx.pid, self.options.frequency)?;
        self.threads = threads;
        self.links = Some(links);
        self.started = Instant::now();
        // What the target runs now: a running process's (its mappings were written above,
        // and are followed at the ticks), or under `run` a copy of the profiler that has not
        // executed the command yet (its exec is then the first one seen).
        self.exe = std::fs::read_link(format!("/proc/{}/exe", ctx.pid)).ok();
        self.exec_at = self
            .started
            .checked_sub(EXEC_SETTLE)
            .unwrap_or(self.started);
        self.sample_threads();
        Ok(self.threads)
    }

    fn on_fast_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        // Every sample a freshly executed program takes before its objects' tables are in place
        // unwinds by frame pointer only: for a second after each exec (the `run` command's,
        // or one a wrapper script makes), every change of its mappings is written at once. A
        // list written while the loader is still mapping is right for what it holds, and the
        // next change rewrites it. Otherwise the check is one readlink.
        if self.links.is_none() {
            return;
        }
        let exe = std::fs::read_link(format!("/proc/{}/exe", self.pid)).ok();
        if exe != self.exe {
            self.exe = exe;
            self.exec_at = Instant::now();
            // For the next one.
            self.objects.arm_raw();
        }
        if self.exec_at.elapsed() < EXEC_SETTLE {
            self.objects.refresh(ebpf, true);
        }
        let (mappings, rows) = self.objects.layout();
        self.deferred.unwind(self.pid, mappings, rows, false);
    }

    fn handles(&self, kind: u16) -> bool {
        kind == EventKind::CpuRawSample as u16
    }

    fn on_event(&mut self, _kind: u16, bytes: &[u8]) -> Flow {
        self.deferred.push(bytes);
        Flow::Continue
    }

    fn on_tick(&mut self, ebpf: &mut Ebpf, _ctx: &TickContext) {
        if self.links.is_none() {
            return;
        }
        self.objects.refresh(ebpf, false);
        self.sample_threads();
    }

    fn budget_units(&mut self, ebpf: &Ebpf, _model: &CostModel) -> Vec<f64> {
        if self.links.is_some()
            && let Ok(counts) = kernel::read_counts(ebpf)
        {
            self.counts = counts;
        }
        vec![self.load().cost_ns]
    }

    fn unit_name(&self, _unit: usize) -> String {
        "cpu family".into()
    }

    fn shed(&mut self, ebpf: &mut Ebpf, _unit: usize) -> anyhow::Result<()> {
        let Some(links) = self.links.take() else {
            return Ok(());
        };
        links.detach();
        let mut h = kernel::read(ebpf)?;
        self.counts = h.counts;
        self.merge_deferred(&mut h);
        self.harvest = Some(h);
        Ok(())
    }

    fn harvest(&mut self, ebpf: &mut Ebpf, warnings: &mut Vec<String>) {
        if self.links.is_none() {
            return;
        }
        self.sample_threads();
        match kernel::read(ebpf) {
            Ok(mut h) => {
                self.counts = h.counts;
                self.merge_deferred(&mut h);
                self.harvest = Some(h);
            }
            Err(e) => warnings.push(format!("cpu: cannot read the maps: {e:#}")),
        }
    }

    fn detach(&mut self, _ebpf: &mut Ebpf) {
        if let Some(links) = self.links.take() {
            links.detach();
        }
    }

    fn probe_load(&self, _model: &CostModel) -> ProbeLoad {
        self.load()
    }

    fn report(&mut self, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let Some(harvest) = self.harvest.take() else {
            return;
        };
        let mut ksyms = self
            .kernel_symbols
            .take()
            .unwrap_or_else(KernelSymbols::new);
        let (mut section, profile) = self.analyze(&harvest, &mut ksyms, report, ctx);
        self.kernel_symbols = Some(ksyms);
        self.write_outputs(&profile, &mut section, &mut report.warnings);
        let lost = section.unwind_failures.stack_map_full + section.unwind_failures.sample_map_full;
        if lost > 0 {
            report.warnings.push(format!(
                "cpu: {lost} sample(s) lost to full kernel maps: see the schema"
            ));
        }
        report.cpu = Some(section);
    }

    fn live(&mut self, ebpf: &mut Ebpf, report: &mut Report, ctx: &mut ReportContext<'_>) {
        let mut ksyms = self
            .kernel_symbols
            .take()
            .unwrap_or_else(KernelSymbols::new);
        let read;
        let harvest = if self.links.is_some() {
            // The same read as `harvest`, kept here: the kernel's maps only grow while the
            // events run, and the final report reads them again at the end.
            match kernel::read(ebpf) {
                Ok(mut h) => {
                    self.add_unwound_copy(&mut h);
                    read = h;
                    Some(&read)
                }
                // The next snapshot tries again; `harvest` says it when it fails at the end.
                Err(_) => None,
            }
        } else {
            // Shed by the overhead budget: the maps were read then, and the final report
            // takes that harvest.
            self.harvest.as_ref()
        };
        if let Some(harvest) = harvest {
            // No `write_outputs` (a snapshot writes no file) and no warnings (the final
            // report's: a snapshot has the counts they come from, in `unwind_failures`).
            let (section, _) = self.analyze(harvest, &mut ksyms, report, ctx);
            report.cpu = Some(section);
        }
        self.kernel_symbols = Some(ksyms);
    }

    fn summary(&self, report: &Report, out: &mut String) {
        if let Some(c) = &report.cpu {
            summary(out, c);
        }
    }
}

impl Cpu {
    /// Unwinds the samples sent whole that are left, and adds them to what the kernel counted.
    fn merge_deferred(&mut self, h: &mut Harvest) {
        let (mappings, rows) = self.objects.layout();
        self.deferred.unwind(self.pid, mappings, rows, true);
        let d = std::mem::take(&mut self.deferred);
        add_samples(h, d.samples, d.stacks);
    }

    /// The live view's [`Cpu::merge_deferred`]: adds a copy of the samples sent whole that are
    /// unwound so far to what the kernel counted, and leaves them here for the final report.
    /// Those still waiting for their object's table are left out of the snapshot rather than
    /// walked early without it (which the final report would not undo): the fast ticks unwind
    /// them within a second, and the next snapshot has them.
    fn add_unwound_copy(&self, h: &mut Harvest) {
        let d = &self.deferred;
        let samples = d.samples.iter().map(|(key, n)| (*key, *n));
        let stacks = d.stacks.iter().map(|(hash, ips)| (*hash, ips.clone()));
        add_samples(h, samples, stacks);
    }

    /// The family's section from `harvest`: the one analysis of the final report and of the
    /// live view, and the samples as the output files take them. Writes no file and pushes no
    /// warning; `report` is read for the system family's core count.
    fn analyze(
        &self,
        harvest: &Harvest,
        kernel: &mut KernelSymbols,
        report: &Report,
        ctx: &mut ReportContext<'_>,
    ) -> (CpuSection, Profile) {
        let mut names = harvest.threads.clone();
        for tid in tracee::task::thread_ids(self.pid) {
            if let Some(name) = tracee::task::thread_name(self.pid, tid) {
                names.entry(tid as u32).or_insert(name);
            }
        }
        let input = analyze::Input {
            samples: &harvest.samples,
            stacks: &harvest.stacks,
            thread_names: &names,
            counts: &harvest.counts,
            frequency: self.options.frequency,
        };
        let mut resolver = Resolver {
            symbolizer: ctx.symbolizer,
            maps: ctx.maps,
            vdso: self.objects.vdso.as_ref(),
            trampolines: &self.objects.trampolines,
            kernel,
            python: self.python.as_ref(),
        };
        let stacked = analyze::symbolize(&input, &mut resolver);
        let mut section = analyze::section(&stacked, &input);
        section.tables = self.objects.info.clone();
        let points: Vec<(f64, f64)> = ctx.samples.iter().map(|s| (s.at, s.cpu_time)).collect();
        let usage = analyze::usage(&points);
        section.current_cpu = usage.current;
        section.peak_cpu = usage.peak;
        section.average_cpu = usage.average;
        section.cpu_trend = usage.trend;
        // The system family's count (it reports first), or the same count made here.
        section.cpu_cores = report.system.as_ref().map_or_else(
            || crate::families::process::machine().cores,
            |s| s.cpu_cores,
        );
        for t in &mut section.threads {
            if let Some(points) = self.thread_cpu.get(&t.tid) {
                let u = analyze::usage(points);
                (t.current_cpu, t.peak_cpu, t.average_cpu, t.cpu_trend) =
                    (u.current, u.peak, u.average, u.trend);
            }
        }
        let profile = profile_of(&stacked, self.pid, self.options.frequency, ctx.duration);
        (section.stacks, section.stacks_omitted_samples) =
            crate::report::profile::folded_stacks(&profile);
        (section, profile)
    }

    fn write_outputs(
        &self,
        profile: &Profile,
        section: &mut CpuSection,
        warnings: &mut Vec<String>,
    ) {
        for path in &self.options.outputs {
            match crate::report::profile::write_output(path, profile) {
                Ok(format) => section.outputs.push(OutputFile {
                    format: format.name(),
                    path: path.display().to_string(),
                }),
                Err(e) => warnings.push(format!("cpu: cannot write {}: {e:#}", path.display())),
            }
        }
    }
}

/// Adds samples unwound here (by key) and their stacks (by hash) to what the kernel counted.
fn add_samples(
    h: &mut Harvest,
    samples: impl IntoIterator<Item = (SampleKey, u64)>,
    stacks: impl IntoIterator<Item = (u64, Vec<u64>)>,
) {
    for (key, n) in samples {
        match h.samples.iter_mut().find(|(k, _)| *k == key) {
            Some((_, total)) => *total += n,
            None => h.samples.push((key, n)),
        }
    }
    for (hash, ips) in stacks {
        h.stacks.entry(hash).or_insert(ips);
    }
}

/// The samples as the output writers take them.
fn profile_of(stacked: &[Stacked], pid: i32, frequency: u64, duration: f64) -> Profile {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "target".into());
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        .saturating_sub((duration * 1e9) as u64);
    Profile {
        target: format!("{exe} (pid {pid})"),
        frequency_hz: frequency,
        duration_s: duration,
        start_unix_ns: started,
        samples: stacked
            .iter()
            .map(|s| ProfileSample {
                tid: s.tid,
                thread: s.thread.clone(),
                count: s.count,
                frames: s
                    .frames
                    .iter()
                    .map(|f| ProfileFrame {
                        function: f.frame.function.clone(),
                        module: f.frame.module.clone(),
                        file: f.frame.file.clone(),
                        line: f.frame.line,
                        address: f.address,
                        inlined: f.frame.offset == analyze::INLINED,
                        kernel: f.kernel,
                        python: f.frame.offset == crate::families::python::code::PYTHON_OFFSET,
                    })
                    .collect(),
            })
            .collect(),
    }
}

/// Functions shown in the printed summary.
const SUMMARY_ROWS: usize = 5;

fn summary(out: &mut String, c: &CpuSection) {
    let _ = writeln!(
        out,
        "cpu: {} sample(s) at {} Hz ({} of CPU), {:.1}% of stacks complete",
        c.samples,
        c.frequency,
        human_time(c.samples as f64 / c.frequency.max(1) as f64),
        c.complete_stacks_percent
    );
    let row = |f: &crate::report::cpu::FunctionShare| {
        let at = match (&f.file, f.line) {
            (Some(file), Some(line)) => format!(
                " ({}:{line})",
                std::path::Path::new(file)
                    .file_name()
                    .map_or(file.clone(), |n| n.to_string_lossy().into_owned())
            ),
            _ => String::new(),
        };
        format!("{:5.1}%  {} [{}]{at}", f.percent, f.function, f.module)
    };
    if !c.top_self.is_empty() {
        let _ = writeln!(out, "hottest functions (self):");
        for f in c.top_self.iter().take(SUMMARY_ROWS) {
            let _ = writeln!(out, "  {}", row(f));
        }
        let _ = writeln!(out, "hottest functions (total, callees included):");
        for f in c.top_total.iter().take(SUMMARY_ROWS) {
            let _ = writeln!(out, "  {}", row(f));
        }
    }
    for o in &c.outputs {
        let _ = writeln!(out, "{}: {}", o.format, o.path);
    }
    if c.outputs.is_empty() && c.samples > 0 {
        let _ = writeln!(
            out,
            "(a flame graph of these stacks: --output FILE.svg; pprof: --output FILE.pb.gz)"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The live view adds a copy of the samples unwound here and leaves them: the final report
    /// still adds every one of them, once.
    #[test]
    fn live_snapshots_leave_the_unwound_samples_to_the_final_report() {
        let mut cpu = Cpu::new(Options::default(), None);
        let key = |tid| SampleKey {
            tid,
            user: 0xabc,
            ..SampleKey::default()
        };
        cpu.deferred.samples.insert(key(7), 5);
        cpu.deferred.stacks.insert(0xabc, vec![0x1010, 0x1150]);
        // The kernel counted 2 samples of the same key, and one of another thread.
        let read = || Harvest {
            samples: vec![(key(7), 2), (key(8), 1)],
            ..Harvest::default()
        };
        for _ in 0..2 {
            let mut live = read();
            cpu.add_unwound_copy(&mut live);
            assert_eq!(live.samples, [(key(7), 7), (key(8), 1)]);
            assert_eq!(live.stacks[&0xabc], [0x1010, 0x1150]);
        }
        let mut last = read();
        cpu.merge_deferred(&mut last);
        assert_eq!(last.samples, [(key(7), 7), (key(8), 1)]);
        assert_eq!(last.stacks[&0xabc], [0x1010, 0x1150]);
        assert!(
            cpu.deferred.samples.is_empty(),
            "the final report takes them"
        );
    }
}
