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

fn errors() -> ErrorsSection {
    let context = ErrorContext {
        syscall: Some("openat".into()),
        errno: Some("ENOENT".into()),
        errno_code: Some(2),
        path: Some("/models/model.pt".into()),
        arg: Some("3".into()),
        flags: Some("O_RDONLY|O_CLOEXEC".into()),
        signal: Some("SIGSEGV".into()),
        signal_code: Some("SEGV_MAPERR (address not mapped)".into()),
        fault_addr: Some("0x0".into()),
        core_dumped: Some(false),
        caught: Some(true),
        exit_code: Some(1),
        exception: Some("FileNotFoundError".into()),
        chain: vec![ChainedException {
            exception: "KeyError".into(),
            message: "'model'".into(),
        }],
        frames: vec![errors::Frame {
            file: "serve.py".into(),
            line: Some(12),
            function: Some("load".into()),
            code: Some("open(path)".into()),
        }],
        kind: Some("python_traceback".into()),
        level: Some("error".into()),
        thread: Some("main".into()),
        location: Some("src/main.rs:3:5".into()),
        lines: vec!["Traceback (most recent call last):".into()],
        stack: vec!["load (app+0x10)".into()],
        function: Some("load_model".into()),
        preceding: vec!["read(3) = 10".into()],
    };
    ErrorsSection {
        total: 2,
        exact: true,
        events: vec![
            ErrorEvent {
                id: 1,
                caused_by: None,
                led_to: vec![2],
                error_type: "ENOENT".into(),
                category: Category::ModelLoading,
                severity: Severity::High,
                pattern: Some("MODEL_NOT_FOUND".into()),
                description: Some("A model file could not be found.".into()),
                message: "openat(\"/models/model.pt\") = -1 ENOENT".into(),
                solutions: vec!["Check the path.".into()],
                prevention: vec!["Check paths at start-up.".into()],
                timestamp: 1.087,
                tid: 7,
                pid: 7,
                command: vec!["serve".into()],
                source: Source::Syscall,
                context,
            },
            ErrorEvent {
                id: 2,
                caused_by: Some(1),
                led_to: Vec::new(),
                error_type: "exit(1)".into(),
                category: Category::System,
                severity: Severity::Medium,
                pattern: None,
                description: None,
                message: "exited with status 1".into(),
                solutions: Vec::new(),
                prevention: Vec::new(),
                timestamp: 1.348,
                tid: 7,
                pid: 7,
                command: Vec::new(),
                source: Source::Exit,
                context: ErrorContext::default(),
            },
        ],
        dropped: 0,
        patterns: vec![PatternStat {
            id: "MODEL_NOT_FOUND".into(),
            category: Category::ModelLoading,
            severity: Severity::High,
            count: 1,
            occurrences: 2,
            exact: true,
            first_seen: 1.087,
            last_seen: 1.087,
            trend: Trend::Single,
        }],
        by_category: BTreeMap::from([("model_loading".into(), 1)]),
        by_severity: BTreeMap::from([("high".into(), 1)]),
        by_source: BTreeMap::from([("syscall".into(), 1), ("exit".into(), 1)]),
        benign: vec![BenignCount {
            syscall: "openat".into(),
            errno: "ENOENT".into(),
            pattern: "LOADER_PROBE".into(),
            count: 12,
        }],
        benign_signals: vec![SignalCount {
            signal: "SIGCHLD".into(),
            count: 1,
        }],
        syscall_failures: vec![FailureCount {
            syscall: "openat".into(),
            errno: "ENOENT".into(),
            count: 13,
        }],
        python_exceptions: vec![PythonExceptionCount {
            exception: "KeyError".into(),
            function: "lookup".into(),
            file: Some("serve.py".into()),
            line: Some(17),
            raised: 10,
            uncaught: 0,
            pattern: None,
            category: Category::Unknown,
            severity: Severity::Low,
        }],
    }
}

fn cpu() -> CpuSection {
    CpuSection {
        samples: 19,
        frequency: 99,
        complete_stacks_percent: 100.0,
        unwind_failures: UnwindFailures {
            no_table: 1,
            unsupported_rule: 2,
            depth_cut: 3,
            stack_read_failed: 4,
            bad_frame: 5,
            frame_pointer_end: 6,
            no_user_registers: 7,
            stack_map_full: 8,
            sample_map_full: 9,
            kernel_stack_failed: 10,
        },
        frames: FrameCounts {
            by_table: 100,
            by_frame_pointer_no_table: 2,
            by_frame_pointer_unsupported: 1,
            signal_frames: 0,
            copied_stacks: 3,
            copy_failed: 1,
        },
        tables: TablesInfo {
            objects: 3,
            rows: 5000,
            capacity: 1 << 20,
            from_cache: 2,
            compiled: 1,
            compile_time: 0.012,
            without_table: vec!["[vdso]".into()],
        },
        top_self: vec![FunctionShare {
            function: "burn".into(),
            module: "app".into(),
            file: Some("app.c".into()),
            line: Some(9),
            samples: 16,
            percent: 84.210_526_315_789_47,
        }],
        top_total: vec![FunctionShare {
            function: "irqentry_exit_to_user_mode".into(),
            module: "[kernel]".into(),
            file: None,
            line: None,
            samples: 1,
            percent: 5.263_157_894_736_842,
        }],
        threads: vec![ThreadCpu {
            tid: 7,
            name: "app".into(),
            samples: 19,
            percent: 100.0,
            current_cpu: 25.2,
            peak_cpu: 30.0,
            average_cpu: 16.5,
            cpu_trend: "stable".into(),
        }],
        current_cpu: 25.2,
        peak_cpu: 30.0,
        average_cpu: 16.5,
        cpu_trend: "increasing".into(),
        cpu_cores: 2,
        outputs: vec![OutputFile {
            format: "svg".into(),
            path: "/tmp/flame.svg".into(),
        }],
        stacks: vec![FoldedStack {
            frames: vec!["app-7".into(), "main".into(), "burn".into()],
            samples: 16,
        }],
        stacks_omitted_samples: 3,
    }
}

fn memory() -> MemorySection {
    let allocator = AllocatorInfo {
        name: "glibc".into(),
        module: "libc.so.6".into(),
        path: "/lib/libc.so.6".into(),
        functions: vec![AllocatorFunction {
            name: "malloc".into(),
            calls: 183,
            probe_offset: 0,
            probe_class: "single_stepped".into(),
            probe_instruction: "endbr64".into(),
            probe_reason: "the entry".into(),
            hits: 366,
            estimated_cost: 3.66e-4,
        }],
    };
    MemorySection {
        mode: "exact".into(),
        allocator: Some(allocator.clone()),
        allocators: vec![allocator],
        no_allocator: Some("not used".into()),
        current_memory: 1 << 21,
        peak_memory: 3 << 20,
        virtual_memory: 1 << 30,
        memory_trend: "increasing".into(),
        memory_trend_slope: -186_163.2,
        samples: 7,
        interval: 0.2,
        allocations: AllocationSummary {
            allocations: 183,
            allocated_bytes: 85_811,
            frees: 160,
            freed_bytes: 10_240,
            outstanding: 23,
            outstanding_bytes: 75_571,
            untracked: 1,
            unknown_frees: 2,
            mmap_calls: 3,
            munmap_calls: 1,
            sites: 4,
            by_function: vec![FunctionAllocations {
                function: "drop_blocks".into(),
                module: "app".into(),
                allocations: 20,
                allocated_bytes: 2000,
                frees: 1,
                freed_bytes: 100,
                outstanding: 19,
                outstanding_bytes: 1900,
            }],
            top_sites: vec![SiteAllocations {
                function: "drop_blocks".into(),
                allocations: 20,
                allocated_bytes: 2000,
                frees: 1,
                freed_bytes: 100,
                outstanding: 19,
                outstanding_bytes: 1900,
                stack: vec![frame("drop_blocks")],
            }],
        },
        memory_leak_detection: LeakDetection {
            method: "reachability".into(),
            detected: true,
            definitely_lost: tally(1900, 19),
            indirectly_lost: tally(0, 0),
            reachable: tally(73_600, 4),
            leaked_bytes: 1900,
            leaked_count: 19,
            retained_bytes: 73_600,
            retained_count: 4,
            thresholds: LeakThresholds {
                min_growth: 1024.0,
                warmup: 0.1,
            },
            scans: vec![LeakScan {
                trigger: "exit".into(),
                at: 1.348,
                pause: 0.043_86,
                duration: 0.05,
                complete: true,
                reason: Some("stopped early".into()),
                threads: 1,
                regions: 12,
                bytes_scanned: 1 << 21,
                root_bytes: 1 << 16,
                blocks: 23,
                definitely_lost: tally(1900, 19),
                indirectly_lost: tally(0, 0),
                reachable: tally(73_600, 4),
            }],
            sites: vec![LeakSite {
                verdict: "definitely_lost".into(),
                trend: "flat".into(),
                definitely_lost: Some(tally(1900, 19)),
                indirectly_lost: Some(tally(0, 0)),
                reachable: Some(tally(0, 0)),
                bytes: 1900,
                count: 19,
                oldest_age: 1.2,
                growth: 0.0,
                allocations: 20,
                allocated_bytes: 2000,
                function: "drop_blocks".into(),
                stack: vec![frame("drop_blocks")],
            }],
            notes: vec!["a note".into()],
        },
        growth: GrowthSummary {
            faults: 28,
            bytes: 28 * 4096,
            sites: 21,
            detached_at: Some(0.5),
        },
        growth_sites: vec![GrowthSite {
            function: "scrub_stack".into(),
            bytes: 24_576,
            pages: 6,
            growth: 1.5,
            trend: "flat".into(),
            series: vec![(0.0, 0), (1.25, 24_576)],
            stack: vec![frame("scrub_stack")],
        }],
    }
}

fn threads() -> ThreadsSection {
    let thread = DeadlockedThread {
        tid: 8,
        name: "worker".into(),
        waits_for: "0x2000".into(),
        waits_for_symbol: Some("LOCK_A".into()),
        lock_kind: "pthread_mutex".into(),
        held_by: 9,
        evidence: "owner_field".into(),
        waiting_for: 2.5,
        blocked_stack: vec![frame("lock_a")],
        acquired_stack: Vec::new(),
    };
    ThreadsSection {
        min_block: 1e-5,
        deadlock_after: 1.0,
        lock_probes: LockProbes {
            attached: true,
            module: Some("libc.so.6".into()),
            functions: vec![LockFunction {
                name: "pthread_mutex_lock".into(),
                probe_offset: 4,
                probe_class: "emulated".into(),
                probe_instruction: "push rbp".into(),
                probe_reason: "the entry".into(),
                hits: 10,
                estimated_cost: 1e-5,
            }],
            note: Some("a note".into()),
        },
        threads: vec![ThreadEntry {
            tid: 7,
            name: "app".into(),
            exited: false,
            on_cpu_time: 0.2,
            off_cpu_time: 1.15,
            blocked_time: 0.445,
            blocked: BlockedBreakdown {
                lock: 0.001,
                io: 0.002,
                sleep: 0.401,
                other: 0.041,
            },
            runnable_time: 0.705,
            runq_latency_p50: 0.004,
            runq_latency_p99: 0.0335,
            voluntary_switches: 40,
            involuntary_switches: 12,
            migrations: 3,
            blocks: 40,
            short_blocks: 30,
            top_blocking_stacks: vec![BlockingStack {
                reason: "sleep".into(),
                count: 20,
                total_time: 0.4,
                max_time: 0.02,
                stack: vec![bare_frame("nanosleep")],
            }],
        }],
        locks: vec![LockEntry {
            address: "0x2000".into(),
            kind: "pthread_mutex".into(),
            symbol: Some("LOCK_A".into()),
            allocated_at: vec![frame("make_lock")],
            acquisitions: Some(10),
            contended: 2,
            eagain: 1,
            wait_time: 0.01,
            max_wait: 0.008,
            p99_wait: 0.016,
            hold_time: Some(0.02),
            max_hold: Some(0.01),
            holders: vec![Holder {
                tid: 9,
                thread: "holder".into(),
                evidence: "waker".into(),
                waits: 2,
                wait_time: 0.01,
                stack: vec![frame("hold")],
            }],
            top_waiting_stacks: vec![WaitingStack {
                count: 2,
                total_time: 0.01,
                max_time: 0.008,
                stack: vec![frame("wait")],
            }],
        }],
        waits: vec![WaitSite {
            kind: "condvar".into(),
            address: "0xa".into(),
            waits: 4,
            wait_time: 4e-5,
            stack: vec![frame("pthread_cond_wait")],
        }],
        deadlocks: Deadlocks {
            potential: vec![PotentialDeadlock {
                locks: vec!["0x1000".into(), "0x2000".into()],
                edges: vec![LockOrderEdge {
                    from: "0x1000".into(),
                    to: "0x2000".into(),
                    from_kind: "pthread_mutex".into(),
                    to_kind: "rwlock".into(),
                    tid: 8,
                    thread: "worker".into(),
                    count: 3,
                    from_stack: vec![frame("lock_b")],
                    to_stack: vec![frame("lock_a")],
                }],
            }],
            live: vec![LiveDeadlock {
                detected_at: 2.0,
                found_by: "probes".into(),
                threads: vec![thread],
            }],
        },
    }
}

fn python() -> PythonSection {
    let probe = python::ProbeSite {
        function: "_PyErr_SetObject".into(),
        instruction: "push r15".into(),
        cost_class: "emulated".into(),
    };
    PythonSection {
        interpreter: Some(InterpreterInfo {
            path: "/usr/lib/libpython3.11.so.1.0".into(),
            version: "3.11.7".into(),
            offsets: "built-in table".into(),
            raise_probe: Some(probe.clone()),
            uncaught_probes: vec![probe.clone()],
        }),
        unsupported: Some("3.99".into()),
        threads: 1,
        walks: WalkStats {
            stacks: 140_710,
            frames: 500_000,
            depth_cut: 1,
            read_failed: 2,
            samples_without_thread_state: 3,
            distinct_stacks: 40,
            code_objects: 90,
            stack_map_full: 0,
        },
        exceptions: ExceptionStats {
            raised: 11_464,
            uncaught: 1,
            sites: vec![RaiseSite {
                exception: "KeyError".into(),
                function: "lookup".into(),
                file: Some("py_raise.py".into()),
                line: Some(17),
                raised: 10_000,
                uncaught: 0,
                caught: 10_000,
                message: Some("missing".into()),
                stack: vec![frame("lookup")],
            }],
            sites_dropped: 2,
            map_full: 0,
            events_lost: 1,
            detached: false,
        },
        allocations: Some(AllocationStats {
            probes: vec![probe],
            allocations: 137_159,
            frees: 136_688,
            free_calls: 137_000,
            untracked: 0,
            unattributed: 3,
            outstanding_bytes: -7_782,
            sites: vec![AllocSite {
                function: "ForwardRef.__init__".into(),
                file: Some("typing.py".into()),
                line: Some(864),
                peak_bytes: 220_364,
                outstanding_bytes: -64,
                outstanding_blocks: -1,
                allocated_bytes: 300_000,
                allocations: 4000,
                stack: vec![frame("ForwardRef.__init__")],
            }],
            sites_dropped: 1,
            detached: true,
            partial: Some("few frees seen".into()),
            note: "what the numbers mean".into(),
        }),
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

/// A cuda part with one of each entry.
fn cuda() -> super::gpu::CudaSection {
    use super::{gpu::*, memory::Tally};
    let frame = || Frame {
        function: "keep_buffers".into(),
        module: "gpu_victim".into(),
        offset: "0x1234".into(),
        file: None,
        line: None,
    };
    let tally = |count, bytes| Tally { bytes, count };
    CudaSection {
        libraries: vec![CudaLibrary {
            api: "runtime".into(),
            module: "libcudart.so.12".into(),
            path: "/opt/cuda/libcudart.so.12".into(),
            probed_at: 0.5,
            functions: vec![CudaFunction {
                name: "cudaMalloc".into(),
                calls: 36,
                errors: 1,
                hits: 72,
                estimated_cost: 7.2e-5,
                probe_offset: 4,
                probe_class: "emulated".into(),
            }],
        }],
        allocations: CudaAllocations {
            allocated: tally(35, 11 << 20),
            freed: tally(20, 1 << 20),
            outstanding: tally(15, 10 << 20),
            outstanding_by_space: [("device".to_string(), tally(15, 10 << 20))].into(),
            method: "reachability".into(),
            scan_reason: None,
            definitely_lost: tally(5, 5 << 18),
            indirectly_lost: Tally::default(),
            reachable: tally(10, 10 << 20),
            detected: true,
        },
        sites: vec![CudaSite {
            call: "cudaMalloc".into(),
            space: "device".into(),
            function: "keep_buffers".into(),
            allocated: tally(10, 10 << 20),
            freed: Tally::default(),
            outstanding: tally(10, 10 << 20),
            verdict: "reachable".into(),
            oldest_age: 1.5,
            stack: vec![frame()],
        }],
        copies: vec![CudaCopy {
            call: "cudaMemcpy".into(),
            direction: "host_to_device".into(),
            function: "copy_in".into(),
            calls: 8,
            errors: 0,
            bytes: 8 << 20,
            seconds: 0.001,
            stack: vec![frame()],
        }],
        kernels: vec![CudaKernel {
            name: "vector_add".into(),
            call: "cudaLaunchKernel".into(),
            launches: 100,
            errors: 0,
            seconds: 0.0002,
        }],
        syncs: vec![CudaSync {
            call: "cudaDeviceSynchronize".into(),
            function: "synchronize".into(),
            calls: 3,
            seconds: 0.06,
            stack: vec![frame()],
        }],
        errors: vec![CudaFailure {
            call: "cudaMalloc".into(),
            code: 2,
            error: "cudaErrorMemoryAllocation".into(),
            count: 1,
            function: "too_big".into(),
            stack: vec![frame()],
        }],
        notes: vec!["host-side times".into()],
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
