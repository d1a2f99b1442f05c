//! The NVML part of the gpu family: the NVIDIA devices (memory, utilization, temperature,
//! power, clocks) and the GPU memory and SM share of the target's processes, sampled by NVML on
//! a thread of its own (a device read can take milliseconds; the collection loop does not wait
//! for it). Nothing in the target is touched.

use std::{
    ffi::OsStr,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use nvml_wrapper::{
    Nvml,
    bitmasks::event::EventTypes,
    enum_wrappers::device::{Clock, EccCounter, MemoryError, PcieUtilCounter, TemperatureSensor},
    enums::{device::UsedGpuMemory, event::XidError},
    error::NvmlError,
};

use super::analyze::{self, DeviceInfo, DeviceSample, Round, Xid};
use crate::{report::gpu::GpuSection, tracee};

/// How often NVML is read.
pub(crate) const INTERVAL: Duration = Duration::from_secs(1);

/// PCIe throughput is read every this many rounds (a reading takes about 20 ms: the driver
/// samples the bus for it).
const PCIE_EVERY: u64 = 5;

/// NVML's library as the driver installs it (the unversioned name is in development
/// packages only).
const NVML_LIB: &str = "libnvidia-ml.so.1";

/// What the sampler thread has gathered.
#[derive(Debug, Default)]
struct Gathered {
    driver_version: String,
    devices: Vec<DeviceInfo>,
    rounds: Vec<Round>,
    xids: Vec<Xid>,
}

struct Sampler {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
}

/// NVML, from `open` to `stop`.
#[derive(Default)]
pub(crate) struct NvmlPart {
    /// NVML, from `open` until the sampler takes it.
    nvml: Option<Nvml>,
    /// Why there is no NVML.
    pub unavailable: Option<String>,
    gathered: Arc<Mutex<Gathered>>,
    sampler: Option<Sampler>,
}

/// Why NVML is not there, in one line.
pub(crate) fn why(e: &NvmlError) -> String {
    match e {
        NvmlError::LibloadingError(_) | NvmlError::LibraryNotFound => {
            format!("no NVIDIA driver on this machine ({NVML_LIB} could not be loaded)")
        }
        NvmlError::DriverNotLoaded => "the NVIDIA driver is not loaded".into(),
        NvmlError::NoPermission => "NVML refused: no permission to talk to the driver".into(),
        other => format!("NVML could not start: {other}"),
    }
}

/// Reads one device now (its PCIe throughput too with `pcie`). `pids`: the target's processes.
fn read(
    nvml: &Nvml,
    index: u32,
    pids: &[u32],
    last_seen: &mut u64,
    pcie: bool,
) -> Option<DeviceSample> {
    let d = nvml.device_by_index(index).ok()?;
    let pcie_kbps = |counter| pcie.then(|| d.pcie_throughput(counter).ok()).flatten();
    let utilization = d.utilization_rates().ok();
    let target_memory = d
        .running_compute_processes()
        .unwrap_or_default()
        .iter()
        .filter(|p| pids.contains(&p.pid))
        .map(|p| match p.used_gpu_memory {
            UsedGpuMemory::Used(bytes) => bytes,
            UsedGpuMemory::Unavailable => 0,
        })
        .sum();
    // The samples newer than the last one seen; none newer: the last value stands.
    let samples = d.process_utilization_stats(*last_seen).unwrap_or_default();
    *last_seen = samples
        .iter()
        .map(|s| s.timestamp)
        .max()
        .unwrap_or(*last_seen);
    let target: Vec<u32> = samples
        .iter()
        .filter(|s| pids.contains(&s.pid))
        .map(|s| s.sm_util)
        .collect();
    Some(DeviceSample {
        memory_used: d.memory_info().map_or(0, |m| m.used),
        utilization_gpu: utilization.as_ref().map(|u| u.gpu),
        utilization_memory: utilization.as_ref().map(|u| u.memory),
        temperature_c: d.temperature(TemperatureSensor::Gpu).ok(),
        power_mw: d.power_usage().ok(),
        sm_clock_mhz: d.clock_info(Clock::SM).ok(),
        memory_clock_mhz: d.clock_info(Clock::Memory).ok(),
        target_memory,
        target_sm: (!target.is_empty()).then(|| target.iter().sum()),
        pcie_tx_kbps: pcie_kbps(PcieUtilCounter::Send),
        pcie_rx_kbps: pcie_kbps(PcieUtilCounter::Receive),
        throttle: d.current_throttle_reasons().ok().map(|r| r.bits()),
        ecc_uncorrected: d
            .total_ecc_errors(MemoryError::Uncorrected, EccCounter::Volatile)
            .ok(),
    })
}

/// The XID errors NVML has for `set` now (waits for none), with their device's index.
fn xids(set: &nvml_wrapper::EventSet<'_>, uuids: &[String], at: f64) -> Vec<Xid> {
    let mut out = Vec::new();
    while let Ok(e) = set.wait(0) {
        let device = e
            .device
            .uuid()
            .ok()
            .and_then(|u| uuids.iter().position(|x| *x == u))
            .unwrap_or(0) as u32;
        if let Some(XidError::Value(xid)) = e.event_data {
            out.push(Xid { device, xid, at });
        }
    }
    out
}

impl NvmlPart {
    /// Loads NVML and reads the devices' fixed facts; without it, says why.
    pub(crate) fn open(&mut self) {
        match Nvml::builder().lib_path(OsStr::new(NVML_LIB)).init() {
            Ok(nvml) => {
                let mut g = self.gathered.lock().expect("not shared yet");
                g.driver_version = nvml.sys_driver_version().unwrap_or_default();
                for index in 0..nvml.device_count().unwrap_or(0) {
                    if let Ok(d) = nvml.device_by_index(index) {
                        g.devices.push(DeviceInfo {
                            index,
                            name: d.name().unwrap_or_default(),
                            uuid: d.uuid().unwrap_or_default(),
                            memory_total: d.memory_info().map_or(0, |m| m.total),
                        });
                    }
                }
                drop(g);
                self.nvml = Some(nvml);
            }
            Err(e) => self.unavailable = Some(why(&e)),
        }
    }

    /// Starts the sampler thread for process `pid` and its descendants.
    pub(crate) fn start(&mut self, pid: i32) -> anyhow::Result<()> {
        let Some(nvml) = self.nvml.take() else {
            return Ok(());
        };
        let (stop, gathered) = (Arc::new(AtomicBool::new(false)), Arc::clone(&self.gathered));
        let stopping = Arc::clone(&stop);
        let count = gathered.lock().map_or(0, |g| g.devices.len()) as u32;
        let thread = std::thread::Builder::new()
            .name("nvml".into())
            .spawn(move || {
                let start = Instant::now();
                let mut last_seen = vec![0u64; count as usize];
                // The critical XID events of every device that reports them.
                let uuids: Vec<String> = (0..count)
                    .map(|i| {
                        nvml.device_by_index(i)
                            .and_then(|d| d.uuid())
                            .unwrap_or_default()
                    })
                    .collect();
                // One event set a device: a device that refuses takes its set with it.
                let events: Vec<_> = (0..count)
                    .filter_map(|i| {
                        let set = nvml.create_event_set().ok()?;
                        let d = nvml.device_by_index(i).ok()?;
                        d.register_events(EventTypes::CRITICAL_XID_ERROR, set).ok()
                    })
                    .collect();
                let mut n = 0u64;
                while !stopping.load(Ordering::SeqCst) {
                    let mut pids = vec![pid as u32];
                    pids.extend(tracee::descendants(pid).into_iter().map(|(c, _)| c));
                    let at = start.elapsed().as_secs_f64();
                    let pcie = n.is_multiple_of(PCIE_EVERY);
                    n += 1;
                    let round = Round {
                        at,
                        devices: (0..count)
                            .map(|i| read(&nvml, i, &pids, &mut last_seen[i as usize], pcie))
                            .collect(),
                    };
                    let new: Vec<Xid> = events.iter().flat_map(|e| xids(e, &uuids, at)).collect();
                    if let Ok(mut g) = gathered.lock() {
                        g.rounds.push(round);
                        g.xids.extend(new);
                    }
                    // Sleep in short steps, to stop soon when asked.
                    let next = start.elapsed() + INTERVAL;
                    while !stopping.load(Ordering::SeqCst) && start.elapsed() < next {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            })?;
        self.sampler = Some(Sampler { stop, thread });
        Ok(())
    }

    /// Stops the sampler thread.
    pub(crate) fn stop(&mut self) {
        if let Some(s) = self.sampler.take() {
            s.stop.store(true, Ordering::SeqCst);
            let _ = s.thread.join();
        }
    }

    /// Devices and the driver's version, for the family's note.
    pub(crate) fn facts(&self) -> (usize, String) {
        self.gathered.lock().map_or((0, String::new()), |g| {
            (g.devices.len(), g.driver_version.clone())
        })
    }

    /// The section from the samples of the first `duration` seconds; None without NVML.
    pub(crate) fn section(&self, duration: f64) -> Option<GpuSection> {
        if self.unavailable.is_some() {
            return None;
        }
        let g = self.gathered.lock().ok()?;
        let rounds: Vec<Round> = g
            .rounds
            .iter()
            .filter(|r| r.at <= duration)
            .cloned()
            .collect();
        Some(analyze::section(
            g.driver_version.clone(),
            INTERVAL.as_secs_f64(),
            &g.devices,
            &rounds,
            &g.xids,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_driver_is_said_plainly() {
        let e = NvmlError::LibraryNotFound;
        assert_eq!(
            why(&e),
            "no NVIDIA driver on this machine (libnvidia-ml.so.1 could not be loaded)"
        );
        assert_eq!(
            why(&NvmlError::DriverNotLoaded),
            "the NVIDIA driver is not loaded"
        );
    }
}
