//! The `gpu` section: the NVIDIA devices as NVML sees them over the run, and the GPU memory the
//! target's processes hold (see docs/report-schema.md).

use serde::{Deserialize, Serialize};

use super::memory::Tally;

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
    /// Why NVML gave nothing (no NVIDIA driver); null when it ran (added in 3.4).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub nvml_unavailable: Option<String>,
    /// The CUDA probes; null when the target maps no CUDA library (added in 3.4).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub cuda: Option<CudaSection>,
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
    /// PCIe throughput, bytes per second, sent and received: average over the readings (one
    /// every 5 samples: a reading takes about 20 ms). Null where the device does not say.
    /// Added in 3.4, as the fields below.
    #[serde(default)]
    pub pcie_tx_average: Option<f64>,
    #[serde(default)]
    pub pcie_rx_average: Option<f64>,
    /// Percent of the samples in which the clocks were throttled (power, thermal, slowdowns;
    /// not idle), and the reasons seen over the run.
    #[serde(default)]
    pub throttled_share: Option<f64>,
    #[serde(default)]
    pub throttle_reasons: Vec<String>,
    /// Uncorrected ECC errors during the run (null: ECC is off or not reported).
    #[serde(default)]
    pub ecc_uncorrected_errors: Option<u64>,
    /// Critical XID errors NVML reported during the run.
    #[serde(default)]
    pub xid_errors: Vec<XidError>,
}

/// An XID error: the driver's code for a GPU fault (13: graphics engine exception, 79: fallen
/// off the bus, ...).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct XidError {
    pub xid: u64,
    /// Seconds since profiling started.
    pub at: f64,
}

/// The seed's `gpu_memory`: what the target holds on its GPUs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct GpuMemory {
    /// Bytes at the last sample, and the most at any sample.
    pub allocated: u64,
    pub peak: u64,
    /// "increasing", "stable" or "decreasing" over the run.
    pub trend: String,
    /// Where the numbers come from: `nvml` (the driver's per-process accounting) or `cuda`
    /// (the outstanding allocations the CUDA probes saw, without a driver). Added in 3.4.
    #[serde(default = "nvml")]
    pub source: String,
}

fn nvml() -> String {
    "nvml".into()
}

/// What the CUDA probes saw: the target's calls into the CUDA runtime and driver libraries it
/// maps, from the host side (added in 3.4).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaSection {
    /// The libraries probed, in the order they were.
    pub libraries: Vec<CudaLibrary>,
    pub allocations: CudaAllocations,
    /// Allocation sites (a function of the library called from one host stack), most
    /// outstanding bytes first, at most 50.
    pub sites: Vec<CudaSite>,
    /// Copies per (call, direction, site), most bytes first, at most 50.
    pub copies: Vec<CudaCopy>,
    /// Launches per kernel, most launched first, at most 100.
    pub kernels: Vec<CudaKernel>,
    /// Synchronization waits per (call, site), longest first, at most 50.
    pub syncs: Vec<CudaSync>,
    /// Failed calls per (call, result code, site), counted exactly, most frequent first.
    pub errors: Vec<CudaFailure>,
    /// What the numbers are and are not (launches are asynchronous; times are the host's).
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaLibrary {
    /// `runtime` or `driver`.
    pub api: String,
    /// File name and path as the target maps it.
    pub module: String,
    pub path: String,
    /// Seconds since profiling started when it was probed (0: at the start; later: mapped by
    /// the target while profiled, as by dlopen).
    pub probed_at: f64,
    pub functions: Vec<CudaFunction>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaFunction {
    pub name: String,
    /// Calls counted (outermost: a driver call made inside a runtime call is the runtime
    /// call's), and of them failed.
    pub calls: u64,
    pub errors: u64,
    /// Probe hits (entries and returns, nested calls included) and their estimated cost to the
    /// target, seconds.
    pub hits: u64,
    pub estimated_cost: f64,
    /// Where the entry probe sits, as for traced functions.
    pub probe_offset: u64,
    pub probe_class: String,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaAllocations {
    /// Successful allocations and what they asked for; releases that succeeded and what they
    /// released (of blocks allocated while profiled).
    pub allocated: Tally,
    pub freed: Tally,
    /// Blocks allocated while profiled and not released at the end, by space: `device`
    /// (device and managed memory), `host` (page-locked host memory), `physical` (cuMemCreate).
    pub outstanding: Tally,
    pub outstanding_by_space: std::collections::BTreeMap<String, Tally>,
    /// `reachability` (the target was stopped and its memory scanned for the blocks'
    /// addresses, as for host memory) or `outstanding` (no scan: see `scan_reason`).
    pub method: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub scan_reason: Option<String>,
    /// Under `reachability`: outstanding blocks whose address no word of the target's memory
    /// holds, and those only such memory holds.
    pub definitely_lost: Tally,
    pub indirectly_lost: Tally,
    pub reachable: Tally,
    /// Whether any bytes were definitely or indirectly lost.
    pub detected: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaSite {
    /// The CUDA function called (`cudaMalloc`, `cuMemAlloc_v2`, ...) and the memory space.
    pub call: String,
    pub space: String,
    /// The host function charged: the first frame outside the CUDA libraries (and PyTorch's
    /// caching allocator).
    pub function: String,
    pub allocated: Tally,
    pub freed: Tally,
    pub outstanding: Tally,
    /// `definitely_lost`, `indirectly_lost` or `reachable` (the worst of its blocks), or
    /// `outstanding`/`freed` without a scan.
    pub verdict: String,
    /// Age of its oldest outstanding block, seconds.
    pub oldest_age: f64,
    /// Symbolized, innermost first.
    pub stack: Vec<super::Frame>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaCopy {
    pub call: String,
    /// `host_to_device`, `device_to_host`, `device_to_device`, `host_to_host` or `default`
    /// (unified addressing: the pointers say).
    pub direction: String,
    pub function: String,
    pub calls: u64,
    pub errors: u64,
    pub bytes: u64,
    /// Host-side time in the calls, seconds (an async copy returns before the GPU copies).
    pub seconds: f64,
    pub stack: Vec<super::Frame>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaKernel {
    /// The kernel: the host stub's symbol (`cudaLaunchKernel`) or the name
    /// `cuModuleGetFunction` gave its handle (`cuLaunchKernel`); `0x...` when unknown.
    pub name: String,
    pub call: String,
    pub launches: u64,
    pub errors: u64,
    /// Host-side time in the launch calls, seconds (not the kernel's GPU time).
    pub seconds: f64,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaSync {
    pub call: String,
    pub function: String,
    pub calls: u64,
    /// Seconds the host thread waited for the GPU.
    pub seconds: f64,
    pub stack: Vec<super::Frame>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub(crate) struct CudaFailure {
    pub call: String,
    /// The result code and its name (`cudaErrorMemoryAllocation`, `CUDA_ERROR_OUT_OF_MEMORY`).
    pub code: u32,
    pub error: String,
    pub count: u64,
    pub function: String,
    pub stack: Vec<super::Frame>,
}
