//! The `gpu` section: the NVIDIA devices as NVML sees them over the run, and the GPU memory the
//! target's processes hold (see docs/report-schema.md).

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GpuSection {
    /// NVML's driver version.
    pub driver_version: String,
    /// Seconds between two NVML samples, and how many were taken.
    pub interval: f64,
    pub samples: usize,
    pub devices: Vec<GpuDevice>,
    /// The GPU memory of the target and its followed children, all devices together.
    pub gpu_memory: GpuMemory,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GpuDevice {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    /// Bytes.
    pub memory_total: u64,
    /// Bytes used on the device by every process, at the last sample and at most.
    pub memory_used: u64,
    pub memory_used_peak: u64,
    /// Percent of the time a kernel ran (GPU) or memory was read or written, over the run's
    /// samples: average and peak.
    pub utilization_gpu_average: f64,
    pub utilization_gpu_peak: f64,
    pub utilization_memory_average: f64,
    /// Degrees Celsius and watts at the last sample; null where the device does not say.
    pub temperature_c: Option<u32>,
    pub power_watts: Option<f64>,
    /// MHz at the last sample.
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    /// The target's processes' memory on this device, bytes: last sample and peak.
    pub target_memory: u64,
    pub target_memory_peak: u64,
    /// The target's processes' share of the device's SM time (NVML's per-process samples),
    /// percent: average over the samples that had one.
    pub target_sm_utilization: Option<f64>,
}

/// The seed's `gpu_memory`: what the target holds on its GPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GpuMemory {
    /// Bytes at the last sample, and the most at any sample.
    pub allocated: u64,
    pub peak: u64,
    /// "increasing", "stable" or "decreasing" over the run.
    pub trend: String,
}
