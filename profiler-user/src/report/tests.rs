//! The model reads back what it writes: a report with every section, and every optional field
//! set, through JSON and back.

use std::collections::BTreeMap;

use super::{
    cpu::{
        CpuSection, FoldedStack, FrameCounts, FunctionShare, OutputFile, TablesInfo, ThreadCpu,
        UnwindFailures,
    },
    errors::{
        self, BenignCount, Category, ChainedException, ErrorContext, ErrorEvent, ErrorsSection,
        FailureCount, PatternStat, PythonExceptionCount, Severity, SignalCount, Source, Trend,
    },
    functions::{
        CallStack, Caller, FunctionMemory, FunctionProfile, HistBucket, Percentiles, ProbeSite,
        SkippedFunction, ThreadBreakdown,
    },
    memory::{
        AllocationSummary, AllocatorFunction, AllocatorInfo, FunctionAllocations, GrowthSite,
        GrowthSummary, LeakDetection, LeakScan, LeakSite, LeakThresholds, MemorySection,
        SiteAllocations, Tally,
    },
    python::{
        self, AllocSite, AllocationStats, ExceptionStats, InterpreterInfo, PythonSection,
        RaiseSite, WalkStats,
    },
    threads::{
        BlockedBreakdown, BlockingStack, DeadlockedThread, Deadlocks, FunctionCpuSplit, Holder,
        LiveDeadlock, LockEntry, LockFunction, LockOrderEdge, LockProbes, PotentialDeadlock,
        ThreadEntry, ThreadsSection, WaitSite, WaitingStack,
    },
    *,
};

mod sections;
use sections::{cpu, cuda, errors, memory, python, threads};

fn frame(function: &str) -> Frame {
    Frame {
        function: function.into(),
        module: "app".into(),
        offset: "0x1a2b".into(),
        file: Some("/src/app.c".into()),
        line: Some(42),
    }
}

/// A frame without its optional fields.
fn bare_frame(function: &str) -> Frame {
    Frame {
        function: function.into(),
        module: "libc.so.6".into(),
        offset: "0x10".into(),
        file: None,
        line: None,
    }
}

fn tally(bytes: u64, count: u64) -> Tally {
    Tally { bytes, count }
}

fn function(
    name: &str,
    cpu: Option<FunctionCpuSplit>,
    memory: Option<FunctionMemory>,
) -> FunctionProfile {
    FunctionProfile {
        function_name: name.into(),
        module: "app".into(),
        address: "0x1000".into(),
        total_calls: 3,
        timed_calls: 3,
        total_time: 0.1 + 0.2,
        average_time: 0.1,
        min_time: 1.0 / 3.0,
        max_time: 2.5e-7,
        std_dev_time: 1e-300,
        net_total_time: 0.25,
        net_average_time: 0.083_333_333_333_333_33,
        probe_share_percent: 16.666_666_666_666_668,
        probe_dominated: true,
        probe_hits_within: 6,
        percentiles: Percentiles {
            p50: 0.1,
            p90: 0.15,
            p99: 0.199,
        },
        histogram: vec![HistBucket {
            low: 0.0625,
            high: 0.125,
            count: 3,
        }],
        in_flight: 1,
        abandoned: 0,
        threads: vec![ThreadBreakdown {
            tid: 7,
            calls: 3,
            total_time: 0.3,
        }],
        callers: vec![Caller {
            frame: frame("main"),
            calls: 3,
        }],
        call_stacks: vec![CallStack {
            frames: vec![frame("main"), bare_frame("__libc_start_main")],
            samples: 2,
        }],
        probe: ProbeSite {
            offset: 4,
            instruction: "push rbp".into(),
            class: "emulated".into(),
            reason: "the first instruction".into(),
            hits: 6,
            estimated_cost: 6e-6,
        },
        cpu,
        memory,
    }
}

/// A report with every section, and every optional field set somewhere.
pub(crate) fn sample() -> Report {
    let exit = ExitStatus {
        code: None,
        signal: Some("SIGSEGV".into()),
        core_dumped: true,
    };
    let cpu_split = FunctionCpuSplit {
        on_cpu_time: 0.1,
        off_cpu_time: 0.2,
        average_cpu_peak: 33.3,
        peak_cpu: 99.9,
    };
    let memory_split = FunctionMemory {
        allocations: 3,
        allocated_bytes: 300,
        frees: 4,
        freed_bytes: 400,
        net_bytes_per_call: -33.333_333_333_333_336,
        average_memory_peak: 100.0,
        max_memory_peak: 100,
    };
    Report {
        schema_version: SCHEMA_VERSION.into(),
        profiler: ProfilerInfo {
            version: "0.1.0".into(),
            debug_level: Level::Full,
            mode: "run".into(),
            // One of the numbers serde_json reads back a bit off without its `float_roundtrip`.
            duration: 0.948_157_035_989_573_3,
            started_at: 1_765_000_000.123_456,
            end_reason: "target_exited".into(),
        },
        target: TargetSection {
            pid: 7,
            exe: "/usr/bin/serve".into(),
            cmdline: vec!["serve".into(), "--port".into(), "8080".into()],
            exited: true,
            exit_status: Some(exit.clone()),
        },
        processes: vec![
            ProcessEntry {
                pid: 7,
                parent_pid: Some(1),
                command: vec!["serve".into()],
                exit_status: Some(exit),
                followed: true,
                forked_at: None,
                exited_at: Some(9.25),
            },
            ProcessEntry {
                pid: 8,
                parent_pid: None,
                command: Vec::new(),
                exit_status: None,
                followed: false,
                forked_at: Some(0.125),
                exited_at: None,
            },
        ],
        families: vec![
            FamilyStatus {
                name: "functions".into(),
                status: "attached".into(),
                probes: 70,
                note: Some("added by --func".into()),
            },
            FamilyStatus {
                name: "gpu".into(),
                status: "not_available".into(),
                probes: 0,
                note: None,
            },
        ],
        functions: vec![
            function("burn", Some(cpu_split), Some(memory_split)),
            function("tidy", None, None),
        ],
        skipped_functions: vec![SkippedFunction {
            function_name: "go_func".into(),
            module: "app".into(),
            address: "0x2000".into(),
            reason: "Go code".into(),
        }],
        overhead: Overhead {
            probes_attached: 70,
            probe_hits: 886,
            cost_model: CostModel {
                emulated_entry_ns: 1234.5,
                single_stepped_entry_ns: 15_000.25,
                return_ns: 900.0,
                in_call_ns: 1100.125,
                source: "calibrated".into(),
            },
            estimated_cost: 6.557e-4,
            target_cpu_time: 0.2,
            estimated_slowdown_percent: 0.329_018_4,
            probe_share_percent: 0.327_939_1,
            dominated: false,
            budget: Some(BudgetSection {
                max_percent: 5.0,
                detached: vec![Detached {
                    function: "memory family".into(),
                    at: 0.814_447_841,
                    window_slowdown_percent: 321.784_898_705_361_9,
                }],
            }),
            lost: BTreeMap::from([("events".into(), 3)]),
            notes: BTreeMap::from([("calls_before_attach".into(), 1)]),
        },
        system: Some(SystemSection {
            interval: 0.2,
            samples: 7,
            current_cpu: 25.2,
            peak_cpu: 25.2,
            average_cpu: 16.5,
            current_rss: 1 << 20,
            peak_rss: 3 << 19,
            cpu_cores: 2,
            machine: Machine {
                cores: 2,
                physical_cores: Some(1),
                cpu_model: "Intel(R) Xeon(R)".into(),
                memory: 1 << 33,
                kernel: "6.18.0".into(),
                gpus: vec![super::MachineGpu {
                    index: 0,
                    name: "NVIDIA H100 80GB HBM3".into(),
                    memory: 85_520_809_984,
                }],
            },
            timeline: vec![
                SystemPoint {
                    at: 0.0,
                    cpu: 0.0,
                    rss: 1 << 20,
                },
                SystemPoint {
                    at: 0.2,
                    cpu: 25.2,
                    rss: 3 << 19,
                },
            ],
        }),
        errors: Some(errors()),
        cpu: Some(cpu()),
        memory: Some(memory()),
        threads: Some(threads()),
        python: Some(python()),
        gpu: Some(super::gpu::GpuSection {
            driver_version: "550.54.15".into(),
            interval: 1.0,
            samples: 12,
            devices: vec![super::gpu::GpuDevice {
                index: 0,
                name: "NVIDIA H100 80GB HBM3".into(),
                uuid: "GPU-5f1e".into(),
                memory_total: 85_520_809_984,
                memory_used: 6 << 30,
                memory_used_peak: 7 << 30,
                utilization_gpu_average: 41.5,
                utilization_gpu_peak: 97.0,
                utilization_memory_average: 12.25,
                temperature_c: Some(61),
                power_watts: Some(250.5),
                sm_clock_mhz: Some(1980),
                memory_clock_mhz: None,
                target_memory: 5 << 30,
                target_memory_peak: 6 << 30,
                target_sm_utilization: Some(38.0),
                pcie_tx_average: Some(1.5e9),
                pcie_rx_average: Some(2.5e8),
                throttled_share: Some(25.0),
                throttle_reasons: vec!["sw_power_cap".into()],
                ecc_uncorrected_errors: Some(0),
                xid_errors: vec![super::gpu::XidError { xid: 79, at: 3.5 }],
            }],
            gpu_memory: super::gpu::GpuMemory {
                allocated: 5 << 30,
                peak: 6 << 30,
                trend: "increasing".into(),
                source: "nvml".into(),
            },
            nvml_unavailable: None,
            cuda: Some(cuda()),
        }),
        warnings: vec!["level full selects families not built yet: gpu".into()],
    }
}

/// The JSON the report file holds.
fn json(report: &Report) -> String {
    serde_json::to_string_pretty(report).expect("a report serializes")
}

/// Asserts that `again` is `first`, naming the first line that differs.
fn assert_same(again: &str, first: &str) {
    let mut lines = again.lines().zip(first.lines()).enumerate();
    if let Some((n, (a, b))) = lines.find(|(_, (a, b))| a != b) {
        panic!("line {}: read back as {a:?}, written as {b:?}", n + 1);
    }
    assert_eq!(again, first);
}

#[test]
fn a_report_reads_back_into_the_same_report() {
    let first = json(&sample());
    let read: Report = serde_json::from_str(&first).expect("the report reads back");
    assert_same(&json(&read), &first);
    // Every optional part was there to read back.
    for field in [
        "\"on_cpu_time\"",
        "\"net_bytes_per_call\"",
        "\"allocated_at\"",
        "\"chain\"",
        "\"budget\"",
        "\"detached_at\"",
        "\"partial\"",
        "\"stacks_omitted_samples\"",
    ] {
        assert!(first.contains(field), "{field} is not in the sample");
    }
}

#[test]
fn a_report_without_its_optional_parts_reads_back_without_them() {
    let report = Report {
        schema_version: SCHEMA_VERSION.into(),
        ..Report::default()
    };
    let first = json(&report);
    let read: Report = serde_json::from_str(&first).expect("the report reads back");
    assert_same(&json(&read), &first);
    assert!(read.system.is_none() && read.errors.is_none() && read.python.is_none());
}

#[test]
fn a_3_0_report_reads_with_the_fields_3_1_added_empty() {
    let mut value = serde_json::to_value(sample()).expect("a report serializes");
    value["schema_version"] = "3.0".into();
    let mut remove = |at: &str, field: &str| {
        let object = value.pointer_mut(at).and_then(|v| v.as_object_mut());
        let removed = object.expect(at).remove(field);
        assert!(removed.is_some(), "no {at}/{field} in the sample");
    };
    remove("/system", "timeline");
    remove("/cpu", "stacks");
    remove("/cpu", "stacks_omitted_samples");
    remove("/functions/0", "histogram");
    remove("/functions/1", "histogram");
    let read: Report = serde_json::from_value(value).expect("a 3.0 report reads");
    assert_eq!(read.system.expect("system").timeline, []);
    let cpu = read.cpu.expect("cpu");
    assert_eq!((cpu.stacks, cpu.stacks_omitted_samples), (Vec::new(), 0));
    assert_eq!(read.functions[0].histogram, []);
}
