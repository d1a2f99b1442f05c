//! The gpu section from NVML's samples (pure, unit-tested).

use crate::report::gpu::{GpuDevice, GpuMemory, GpuSection, XidError};

/// What one NVML reading of a device gave (None: the device does not say).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeviceSample {
    pub memory_used: u64,
    pub utilization_gpu: Option<u32>,
    pub utilization_memory: Option<u32>,
    pub temperature_c: Option<u32>,
    pub power_mw: Option<u32>,
    pub sm_clock_mhz: Option<u32>,
    pub memory_clock_mhz: Option<u32>,
    /// The target's processes' memory on the device, bytes.
    pub target_memory: u64,
    /// The target's processes' SM utilization, percent, when NVML had a newer sample.
    pub target_sm: Option<u32>,
    /// PCIe throughput, KB/s, sent and received (read every few rounds: a read takes ~20 ms).
    pub pcie_tx_kbps: Option<u32>,
    pub pcie_rx_kbps: Option<u32>,
    /// NVML's clock throttle reasons bits (`nvmlClocksThrottleReason*`).
    pub throttle: Option<u64>,
    /// Uncorrected ECC errors since the driver loaded (volatile counter).
    pub ecc_uncorrected: Option<u64>,
}

/// The clock throttle reasons NVML reports, by bit, as the report names them. Idle and the
/// applications' clock setting are not throttling.
const THROTTLE: [(u64, &str); 8] = [
    (0x4, "sw_power_cap"),
    (0x8, "hw_slowdown"),
    (0x10, "sync_boost"),
    (0x20, "sw_thermal_slowdown"),
    (0x40, "hw_thermal_slowdown"),
    (0x80, "hw_power_brake_slowdown"),
    (0x100, "display_clock_setting"),
    (0x2, "applications_clocks_setting"),
];

/// An XID error NVML reported (a critical event of the driver's: a GPU fault, a fallen bus).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Xid {
    pub device: u32,
    pub xid: u64,
    /// Seconds since profiling started.
    pub at: f64,
}

/// A device's fixed facts.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct DeviceInfo {
    pub index: u32,
    pub name: String,
    pub uuid: String,
    pub memory_total: u64,
}

/// One sampling round: the seconds since profiling started, and each device's reading (in the
/// order of `DeviceInfo`; None where the reading failed).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct Round {
    pub at: f64,
    pub devices: Vec<Option<DeviceSample>>,
}

fn average(values: impl Iterator<Item = f64>) -> Option<f64> {
    let (sum, n) = values.fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    (n > 0).then(|| sum / n as f64)
}

/// The section, from the devices and the rounds in time order.
pub(crate) fn section(
    driver_version: String,
    interval: f64,
    devices: &[DeviceInfo],
    rounds: &[Round],
    xids: &[Xid],
) -> GpuSection {
    let of = |i: usize| {
        rounds
            .iter()
            .filter_map(move |r| r.devices.get(i)?.as_ref())
    };
    let devices: Vec<GpuDevice> = devices
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let last = of(i).next_back();
            GpuDevice {
                index: info.index,
                name: info.name.clone(),
                uuid: info.uuid.clone(),
                memory_total: info.memory_total,
                memory_used: last.map_or(0, |s| s.memory_used),
                memory_used_peak: of(i).map(|s| s.memory_used).max().unwrap_or(0),
                utilization_gpu_average: average(
                    of(i).filter_map(|s| s.utilization_gpu.map(f64::from)),
                )
                .unwrap_or(0.0),
                utilization_gpu_peak: of(i)
                    .filter_map(|s| s.utilization_gpu)
                    .max()
                    .map_or(0.0, f64::from),
                utilization_memory_average: average(
                    of(i).filter_map(|s| s.utilization_memory.map(f64::from)),
                )
                .unwrap_or(0.0),
                temperature_c: last.and_then(|s| s.temperature_c),
                power_watts: last.and_then(|s| s.power_mw).map(|mw| f64::from(mw) / 1e3),
                sm_clock_mhz: last.and_then(|s| s.sm_clock_mhz),
                memory_clock_mhz: last.and_then(|s| s.memory_clock_mhz),
                target_memory: last.map_or(0, |s| s.target_memory),
                target_memory_peak: of(i).map(|s| s.target_memory).max().unwrap_or(0),
                target_sm_utilization: average(of(i).filter_map(|s| s.target_sm.map(f64::from))),
                pcie_tx_average: average(of(i).filter_map(|s| s.pcie_tx_kbps.map(f64::from)))
                    .map(|kb| kb * 1024.0),
                pcie_rx_average: average(of(i).filter_map(|s| s.pcie_rx_kbps.map(f64::from)))
                    .map(|kb| kb * 1024.0),
                throttled_share: {
                    let read: Vec<u64> = of(i).filter_map(|s| s.throttle).collect();
                    let mask = THROTTLE.iter().take(7).fold(0, |m, (b, _)| m | b);
                    (!read.is_empty()).then(|| {
                        let n = read.iter().filter(|r| *r & mask != 0).count();
                        100.0 * n as f64 / read.len() as f64
                    })
                },
                throttle_reasons: THROTTLE
                    .iter()
                    .filter(|(bit, _)| of(i).any(|s| s.throttle.is_some_and(|t| t & bit != 0)))
                    .map(|(_, name)| name.to_string())
                    .collect(),
                ecc_uncorrected_errors: {
                    let first = of(i).find_map(|s| s.ecc_uncorrected);
                    let last = of(i).filter_map(|s| s.ecc_uncorrected).next_back();
                    first.zip(last).map(|(f, l)| l.saturating_sub(f))
                },
                xid_errors: xids
                    .iter()
                    .filter(|x| x.device == info.index)
                    .map(|x| XidError {
                        xid: x.xid,
                        at: x.at,
                    })
                    .collect(),
            }
        })
        .collect();
    // The target's memory on all devices together, per round.
    let totals: Vec<(f64, u64)> = rounds
        .iter()
        .map(|r| {
            let bytes = r.devices.iter().flatten().map(|s| s.target_memory).sum();
            (r.at, bytes)
        })
        .collect();
    GpuSection {
        driver_version,
        interval,
        samples: rounds.len(),
        devices,
        gpu_memory: gpu_memory(&totals, "nvml"),
        nvml_unavailable: None,
        cuda: None,
    }
}

/// The seed's `gpu_memory` from the target's bytes over time (seconds, bytes), as `source`
/// (`nvml`, `cuda`) measured them.
pub(crate) fn gpu_memory(totals: &[(f64, u64)], source: &str) -> GpuMemory {
    GpuMemory {
        allocated: totals.last().map_or(0, |t| t.1),
        peak: totals.iter().map(|t| t.1).max().unwrap_or(0),
        trend: trend(totals).into(),
        source: source.into(),
    }
}

/// "increasing", "stable" or "decreasing": the least-squares slope of the bytes over time,
/// against 1% of the peak per second (or 1 MiB/s, whichever is more).
fn trend(points: &[(f64, u64)]) -> &'static str {
    if points.len() < 2 {
        return "stable";
    }
    let n = points.len() as f64;
    let (mx, my) = (
        points.iter().map(|p| p.0).sum::<f64>() / n,
        points.iter().map(|p| p.1 as f64).sum::<f64>() / n,
    );
    let (mut sxy, mut sxx) = (0.0, 0.0);
    for &(x, y) in points {
        sxy += (x - mx) * (y as f64 - my);
        sxx += (x - mx) * (x - mx);
    }
    if sxx == 0.0 {
        return "stable";
    }
    let slope = sxy / sxx;
    let peak = points.iter().map(|p| p.1).max().unwrap_or(0) as f64;
    let threshold = (0.01 * peak).max(1024.0 * 1024.0);
    if slope > threshold {
        "increasing"
    } else if slope < -threshold {
        "decreasing"
    } else {
        "stable"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn sample(used: u64, target: u64, util: u32) -> DeviceSample {
        DeviceSample {
            memory_used: used,
            utilization_gpu: Some(util),
            utilization_memory: Some(util / 2),
            temperature_c: Some(60),
            power_mw: Some(250_500),
            sm_clock_mhz: Some(1980),
            memory_clock_mhz: Some(2619),
            target_memory: target,
            target_sm: Some(util),
            ..DeviceSample::default()
        }
    }

    fn info(index: u32) -> DeviceInfo {
        DeviceInfo {
            index,
            name: "NVIDIA H100 80GB HBM3".into(),
            uuid: format!("GPU-{index}"),
            memory_total: 80 * GIB,
        }
    }

    #[test]
    fn a_growing_target_on_two_devices() {
        let rounds: Vec<Round> = (0..5)
            .map(|i| Round {
                at: i as f64,
                devices: vec![
                    Some(sample((10 + i) * GIB, (2 + i) * GIB, 50 + 10 * i as u32)),
                    // The second device's reading failed once.
                    (i != 2).then(|| sample(GIB, GIB / 2, 0)),
                ],
            })
            .collect();
        let s = section("550.54".into(), 1.0, &[info(0), info(1)], &rounds, &[]);
        assert_eq!(s.samples, 5);
        let d = &s.devices[0];
        assert_eq!((d.memory_used, d.memory_used_peak), (14 * GIB, 14 * GIB));
        assert_eq!((d.target_memory, d.target_memory_peak), (6 * GIB, 6 * GIB));
        assert_eq!(d.utilization_gpu_average, 70.0);
        assert_eq!(d.utilization_gpu_peak, 90.0);
        assert_eq!(d.utilization_memory_average, 35.0);
        assert_eq!(d.power_watts, Some(250.5));
        assert_eq!(d.target_sm_utilization, Some(70.0));
        assert_eq!(s.devices[1].target_sm_utilization, Some(0.0));
        // All devices: the last round 6 GiB + 0.5 GiB; the failed reading counts as nothing.
        assert_eq!(s.gpu_memory.allocated, 6 * GIB + GIB / 2);
        assert_eq!(s.gpu_memory.peak, 6 * GIB + GIB / 2);
        assert_eq!(s.gpu_memory.trend, "increasing");
    }

    #[test]
    fn flat_and_falling_memory_and_no_samples() {
        let flat: Vec<Round> = (0..4)
            .map(|i| Round {
                at: i as f64,
                devices: vec![Some(sample(GIB, GIB + (i % 2) * 4096, 0))],
            })
            .collect();
        assert_eq!(
            section(String::new(), 1.0, &[info(0)], &flat, &[])
                .gpu_memory
                .trend,
            "stable"
        );
        let falling: Vec<Round> = (0..4)
            .map(|i| Round {
                at: i as f64,
                devices: vec![Some(sample(GIB, (4 - i) * GIB, 0))],
            })
            .collect();
        let s = section(String::new(), 1.0, &[info(0)], &falling, &[]);
        assert_eq!(s.gpu_memory.trend, "decreasing");
        assert_eq!((s.gpu_memory.allocated, s.gpu_memory.peak), (GIB, 4 * GIB));
        let none = section(String::new(), 1.0, &[info(0)], &[], &[]);
        assert_eq!(none.devices[0].memory_used, 0);
        assert_eq!(none.devices[0].target_sm_utilization, None);
        assert_eq!(none.gpu_memory.trend, "stable");
    }

    #[test]
    fn pcie_throttling_ecc_and_xid() {
        let reading = |i: u64| DeviceSample {
            // PCIe read every other round.
            pcie_tx_kbps: i.is_multiple_of(2).then_some(1000),
            pcie_rx_kbps: i.is_multiple_of(2).then_some(3000),
            // Idle, then the power cap, then thermal and the power cap.
            throttle: Some([0x1, 0x4, 0x24, 0x0][i as usize]),
            ecc_uncorrected: Some(7 + i / 2),
            ..sample(GIB, GIB, 10)
        };
        let rounds: Vec<Round> = (0..4)
            .map(|i| Round {
                at: i as f64,
                devices: vec![Some(reading(i))],
            })
            .collect();
        let xids = [
            Xid {
                device: 0,
                xid: 79,
                at: 2.5,
            },
            Xid {
                device: 1,
                xid: 13,
                at: 1.0,
            },
        ];
        let d = &section(String::new(), 1.0, &[info(0)], &rounds, &xids).devices[0];
        assert_eq!(d.pcie_tx_average, Some(1000.0 * 1024.0));
        assert_eq!(d.pcie_rx_average, Some(3000.0 * 1024.0));
        assert_eq!(d.throttled_share, Some(50.0));
        assert_eq!(d.throttle_reasons, ["sw_power_cap", "sw_thermal_slowdown"]);
        assert_eq!(d.ecc_uncorrected_errors, Some(1));
        assert_eq!(d.xid_errors, [XidError { xid: 79, at: 2.5 }]);
        // A device that says nothing of these.
        let quiet = section(String::new(), 1.0, &[info(0)], &[], &[]);
        let q = &quiet.devices[0];
        assert_eq!((q.pcie_tx_average, q.throttled_share), (None, None));
        assert!(q.throttle_reasons.is_empty() && q.xid_errors.is_empty());
    }
}
