//! The gpu family on this machine. NVML: with no NVIDIA driver it says why, and with no CUDA
//! library in the target the family is `not_available`, attaches nothing and leaves no section.
//! The CUDA probes: real uprobes on stub libraries that export the symbols of `libcudart.so.12`
//! and `libcuda.so.1` (`tests/victims/cuda/`), linked (the runtime) and loaded by dlopen while
//! profiled (the driver), by a victim with known allocations, releases, copies, launches, waits
//! and failing calls (`tests/victims/gpu_victim.c`), in `run` and in `attach` mode. No GPU is
//! needed; what real hardware adds is said in docs/gpu.md.

use profiler_tests::{
    Report, TempDir, Victim, attach_through_done,
    live::{attach_live, next_snapshot},
    require_root, run_reported,
};
use serde_json::Value;

/// `tests/victims/gpu_victim.c` and the stub libraries, built by build.rs.
const VICTIM: &str = env!("VICTIM_GPU");
/// The same victim with the runtime stub linked into the executable.
const VICTIM_STATIC: &str = env!("VICTIM_GPU_STATIC");

const MIB: u64 = 1 << 20;
const KIB: u64 = 1 << 10;

/// Whether the loader can find NVML's library here (a driver is installed).
fn have_nvml() -> bool {
    std::process::Command::new("ldconfig")
        .arg("-p")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("libnvidia-ml.so.1"))
}

#[test]
fn the_memory_level_says_whether_the_gpu_family_can_run_here() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run_reported(&dir, &["--level", "memory"], &["/bin/sleep", "1.5"], &[]);
    let gpu = report.family("gpu");
    // No family of any level is unbuilt any more.
    assert!(
        !outcome.stderr.contains("not built yet"),
        "{}",
        outcome.stderr
    );
    if have_nvml() {
        assert_eq!(gpu.status(), "attached", "{gpu}");
        let devices = report.at("/gpu/devices").as_array().expect("devices");
        assert!(!devices.is_empty(), "{}", report.at("/gpu"));
        assert!(report.at("/gpu/samples").as_u64() >= Some(1));
    } else {
        assert_eq!(gpu.status(), "not_available", "{gpu}");
        assert_eq!(
            gpu.note(),
            Some(
                "no NVIDIA driver on this machine (libnvidia-ml.so.1 could not be loaded), and \
                 the target maps no CUDA library"
            ),
            "{gpu}"
        );
        assert!(
            report.at("").get("gpu").is_none(),
            "no gpu section without NVML"
        );
        assert!(
            !outcome.stdout.contains("\ngpu:"),
            "no gpu block in the summary:\n{}",
            outcome.stdout
        );
    }
    // The memory family ran as before.
    assert_eq!(report.family("memory").status(), "attached");
}

/// The `gpu.cuda` section, looked at through accessors that panic with context.
struct Cuda<'a>(&'a Value);

impl<'a> Cuda<'a> {
    fn of(report: &'a Report) -> Self {
        Self(report.at("/gpu/cuda"))
    }

    fn list(&self, name: &str) -> &'a [Value] {
        self.0[name]
            .as_array()
            .unwrap_or_else(|| panic!("no cuda.{name}:\n{:#}", self.0))
    }

    /// The calls counted of function `name` of library `module`.
    fn calls(&self, module: &str, name: &str) -> u64 {
        let lib = self
            .list("libraries")
            .iter()
            .find(|l| l["module"] == module)
            .unwrap_or_else(|| panic!("{module} not probed:\n{:#}", self.0["libraries"]));
        let f = lib["functions"]
            .as_array()
            .and_then(|fs| fs.iter().find(|f| f["name"] == name))
            .unwrap_or_else(|| panic!("{name} not probed in {module}:\n{lib:#}"));
        f["calls"].as_u64().expect("a count")
    }

    /// The allocation sites of `call` charged to `function`: (allocated, freed, outstanding)
    /// as (count, bytes) each, summed, and their verdicts.
    fn site(&self, call: &str, function: &str) -> ([(u64, u64); 3], Vec<&'a str>) {
        let mut sums = [(0, 0); 3];
        let mut verdicts = Vec::new();
        for s in self
            .list("sites")
            .iter()
            .filter(|s| s["call"] == call && s["function"] == function)
        {
            for (i, k) in ["allocated", "freed", "outstanding"].iter().enumerate() {
                sums[i].0 += s[k]["count"].as_u64().unwrap();
                sums[i].1 += s[k]["bytes"].as_u64().unwrap();
            }
            verdicts.push(s["verdict"].as_str().unwrap());
        }
        assert!(
            !verdicts.is_empty(),
            "no site of {call} in {function}:\n{:#}",
            self.0["sites"]
        );
        (sums, verdicts)
    }

    /// The copies of `call` in `function`, summed: (calls, bytes) by direction.
    fn copies(&self, call: &str, function: &str) -> Vec<(&'a str, u64, u64)> {
        let mut out: Vec<(&str, u64, u64)> = Vec::new();
        for c in self
            .list("copies")
            .iter()
            .filter(|c| c["call"] == call && c["function"] == function)
        {
            let d = c["direction"].as_str().unwrap();
            let (calls, bytes) = (c["calls"].as_u64().unwrap(), c["bytes"].as_u64().unwrap());
            match out.iter_mut().find(|(x, _, _)| *x == d) {
                Some(e) => {
                    e.1 += calls;
                    e.2 += bytes;
                }
                None => out.push((d, calls, bytes)),
            }
        }
        out
    }

    /// The waits of `call`: (calls, seconds), summed over its sites.
    fn waits(&self, call: &str) -> (u64, f64) {
        self.list("syncs")
            .iter()
            .filter(|s| s["call"] == call)
            .fold((0, 0.0), |(n, t), s| {
                (
                    n + s["calls"].as_u64().unwrap(),
                    t + s["seconds"].as_f64().unwrap(),
                )
            })
    }
}

/// Everything the victim did, exactly, in the report of a run that saw all of it.
fn assert_victim_seen(report: &Report) {
    let gpu = report.family("gpu");
    assert_eq!(gpu.status(), "attached", "{gpu}");
    let cuda = Cuda::of(report);
    // The runtime, linked, probed from the start; the driver, loaded by dlopen, when it
    // appeared.
    let libs = cuda.list("libraries");
    let api: Vec<(&str, &str)> = libs
        .iter()
        .map(|l| (l["module"].as_str().unwrap(), l["api"].as_str().unwrap()))
        .collect();
    assert_eq!(
        api,
        [("libcudart.so.12", "runtime"), ("libcuda.so.1", "driver")]
    );
    assert!(
        libs[1]["probed_at"].as_f64().unwrap() > 0.0,
        "{:#}",
        libs[1]
    );

    // Calls, exactly (a failing one counts).
    let runtime = [
        ("cudaMalloc", 10 + 5 + 20 + 1),
        ("cudaFree", 20 + 1),
        ("cudaMallocHost", 3),
        ("cudaFreeHost", 1),
        ("cudaMallocManaged", 2),
        ("cudaMallocAsync", 4),
        ("cudaFreeAsync", 4),
        ("cudaMemcpy", 8 + 4 + 2 + 1),
        ("cudaMemcpyAsync", 16),
        ("cudaLaunchKernel", 150),
        ("cudaDeviceSynchronize", 3),
        ("cudaStreamSynchronize", 2),
    ];
    for (name, n) in runtime {
        assert_eq!(cuda.calls("libcudart.so.12", name), n, "{name}");
    }
    let driver = [
        ("cuMemAlloc_v2", 4 + 2 + 1),
        ("cuMemFree_v2", 2),
        ("cuMemCreate", 2),
        ("cuMemRelease", 1),
        ("cuMemMap", 2),
        ("cuMemcpyHtoD_v2", 5),
        ("cuMemcpyDtoH_v2", 3),
        ("cuModuleGetFunction", 2),
        ("cuLaunchKernel", 40),
        ("cuCtxSynchronize", 1),
    ];
    for (name, n) in driver {
        assert_eq!(cuda.calls("libcuda.so.1", name), n, "{name}");
    }

    // Allocation sites, with the reachability verdict of the scan.
    let a = &cuda.0["allocations"];
    assert_eq!(a["method"], "reachability", "{a:#}");
    let site = |call, function| cuda.site(call, function);
    assert_eq!(
        site("cudaMalloc", "keep_buffers"),
        ([(10, 10 * MIB), (0, 0), (10, 10 * MIB)], vec!["reachable"])
    );
    assert_eq!(
        site("cudaMalloc", "leak_buffers"),
        (
            [(5, 5 * 256 * KIB), (0, 0), (5, 5 * 256 * KIB)],
            vec!["definitely_lost"]
        )
    );
    assert_eq!(
        site("cudaMalloc", "scratch_buffers").0,
        [(20, 20 * 64 * KIB), (20, 20 * 64 * KIB), (0, 0)]
    );
    assert_eq!(
        site("cudaMallocHost", "pinned_buffers").0,
        [(3, 3 * 4096), (1, 4096), (2, 2 * 4096)],
        "the free is charged to the allocating site"
    );
    let pinned: Vec<&Value> = cuda
        .list("sites")
        .iter()
        .filter(|s| s["call"] == "cudaMallocHost")
        .collect();
    assert_eq!(pinned.len(), 1);
    assert_eq!(pinned[0]["space"], "host");
    assert_eq!(
        site("cudaMallocManaged", "managed_buffers").0,
        [(2, 256 * KIB), (1, 128 * KIB), (1, 128 * KIB)]
    );
    assert_eq!(
        site("cudaMallocAsync", "async_buffers").0,
        [(4, 128 * KIB), (4, 128 * KIB), (0, 0)]
    );
    assert_eq!(
        site("cuMemAlloc_v2", "driver_keep"),
        ([(4, 4 * MIB), (0, 0), (4, 4 * MIB)], vec!["reachable"])
    );
    assert_eq!(
        site("cuMemAlloc_v2", "driver_scratch").0,
        [(2, 4 * MIB), (2, 4 * MIB), (0, 0)]
    );
    let (physical, verdict) = site("cuMemCreate", "driver_vmm");
    assert_eq!(physical, [(2, 4 * MIB), (1, 2 * MIB), (1, 2 * MIB)]);
    // The handle kept is held; the released one's site (if apart) is freed.
    assert!(
        verdict.contains(&"reachable")
            && verdict.iter().all(|v| ["reachable", "freed"].contains(v)),
        "{verdict:?}"
    );
    assert_eq!(a["definitely_lost"]["count"], 5, "{a:#}");
    assert_eq!(a["definitely_lost"]["bytes"], 5 * 256 * KIB, "{a:#}");
    assert_eq!(a["indirectly_lost"]["count"], 0, "{a:#}");
    // 10 + 4 device blocks, 1 managed, 2 pinned and 1 physical are still held.
    assert_eq!(a["reachable"]["count"], 18, "{a:#}");
    assert_eq!(
        a["reachable"]["bytes"],
        14 * MIB + 128 * KIB + 2 * 4096 + 2 * MIB
    );
    assert_eq!(a["detected"], true);
    let device = 10 * MIB + 5 * 256 * KIB + 128 * KIB + 4 * MIB;
    assert_eq!(a["outstanding_by_space"]["device"]["bytes"], device);
    // Without NVML, the seed's gpu_memory is what the probes saw outstanding on the device.
    if !have_nvml() {
        assert_eq!(report.at("/gpu/gpu_memory/source"), "cuda");
        assert_eq!(report.at("/gpu/gpu_memory/allocated"), device);
    }

    // Copies by direction, exactly.
    assert_eq!(
        cuda.copies("cudaMemcpy", "copy_in"),
        [("host_to_device", 8, 8 * MIB)]
    );
    assert_eq!(
        cuda.copies("cudaMemcpyAsync", "copy_in"),
        [("host_to_device", 16, 16 * 4096)]
    );
    assert_eq!(
        cuda.copies("cudaMemcpy", "copy_out"),
        [("device_to_host", 4, 2 * MIB)]
    );
    assert_eq!(
        cuda.copies("cudaMemcpy", "copy_device"),
        [("device_to_device", 2, 512 * KIB)]
    );
    assert_eq!(
        cuda.copies("cuMemcpyHtoD_v2", "driver_copy"),
        [("host_to_device", 5, 5 * 64 * KIB)]
    );
    assert_eq!(
        cuda.copies("cuMemcpyDtoH_v2", "driver_copy"),
        [("device_to_host", 3, 3 * 64 * KIB)]
    );

    // Launches per kernel: named from the host stub's symbol, or from the name
    // cuModuleGetFunction gave the handle.
    let kernels: Vec<(&str, &str, u64)> = cuda
        .list("kernels")
        .iter()
        .map(|k| {
            (
                k["name"].as_str().unwrap(),
                k["call"].as_str().unwrap(),
                k["launches"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kernels,
        [
            ("vector_add", "cudaLaunchKernel", 100),
            ("reduce_sum", "cudaLaunchKernel", 50),
            ("matmul_kernel", "cuLaunchKernel", 30),
            ("softmax_kernel", "cuLaunchKernel", 10),
        ]
    );

    // Waits, with the time the stub slept in them at least.
    let (n, seconds) = cuda.waits("cudaDeviceSynchronize");
    assert_eq!(n, 3);
    assert!(seconds >= 0.060, "{seconds}");
    let (n, seconds) = cuda.waits("cudaStreamSynchronize");
    assert_eq!(n, 2);
    assert!(seconds >= 0.010, "{seconds}");
    let (n, seconds) = cuda.waits("cuCtxSynchronize");
    assert_eq!(n, 1);
    assert!(seconds >= 0.010, "{seconds}");

    // Failed calls, exactly, with their names and the host function.
    let failed: Vec<(&str, u64, &str, u64, &str)> = cuda
        .list("errors")
        .iter()
        .map(|e| {
            (
                e["call"].as_str().unwrap(),
                e["code"].as_u64().unwrap(),
                e["error"].as_str().unwrap(),
                e["count"].as_u64().unwrap(),
                e["function"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        failed,
        [
            (
                "cuMemAlloc_v2",
                2,
                "CUDA_ERROR_OUT_OF_MEMORY",
                1,
                "driver_too_big"
            ),
            ("cudaMalloc", 2, "cudaErrorMemoryAllocation", 1, "too_big"),
            (
                "cudaMemcpy",
                21,
                "cudaErrorInvalidMemcpyDirection",
                1,
                "bad_copy"
            ),
        ]
    );

    // The errors family classified them, though the program printed none of them.
    let errors = report.at("/errors");
    assert_eq!(errors["by_source"]["cuda"], 3, "{:#}", errors["by_source"]);
    let oom = errors["patterns"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "CUDA_OUT_OF_MEMORY")
        .unwrap_or_else(|| panic!("no CUDA_OUT_OF_MEMORY:\n{:#}", errors["patterns"]));
    assert_eq!(
        (&oom["category"], &oom["severity"], &oom["occurrences"]),
        (&"memory".into(), &"critical".into(), &2.into())
    );
    let events: Vec<(&str, &str, &str, &str)> = errors["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["source"] == "cuda")
        .map(|e| {
            (
                e["pattern"].as_str().unwrap_or("-"),
                e["severity"].as_str().unwrap(),
                e["message"].as_str().unwrap(),
                e["context"]["function"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        events,
        [
            (
                "CUDA_OUT_OF_MEMORY",
                "critical",
                "cudaMalloc(4294967296 bytes) = cudaErrorMemoryAllocation (2)",
                "too_big"
            ),
            (
                "CUDA_ERROR",
                "high",
                "cudaMemcpy(4096 bytes) = cudaErrorInvalidMemcpyDirection (21)",
                "bad_copy"
            ),
            (
                "CUDA_OUT_OF_MEMORY",
                "critical",
                "cuMemAlloc_v2(8589934592 bytes) = CUDA_ERROR_OUT_OF_MEMORY (2)",
                "driver_too_big"
            ),
        ]
    );
    let with_solutions = errors["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["pattern"] == "CUDA_OUT_OF_MEMORY")
        .unwrap();
    assert!(
        !with_solutions["solutions"].as_array().unwrap().is_empty(),
        "{with_solutions:#}"
    );
}

/// `profiler run --level memory`: every call from the first instruction; the driver appears
/// by dlopen and is probed then; the scan runs at the target's exit.
#[test]
fn run_mode_sees_every_cuda_call_of_the_linked_and_the_dlopened_library() {
    require_root!();
    let dir = TempDir::new();
    let (outcome, report) = run_reported(&dir, &["--level", "memory"], &[VICTIM], &[]);
    assert_victim_seen(&report);
    let summary = &outcome.stdout;
    for line in [
        "  cuda (libcudart.so.12, libcuda.so.1): 52 allocations (24.9 MiB), 29 freed; 17.4 MiB \
         outstanding in 23 blocks",
        "    definitely_lost 1.2 MiB in 5 blocks: cudaMalloc from leak_buffers (device)",
        "    failed: cudaMalloc = cudaErrorMemoryAllocation (2) x1 in too_big",
    ] {
        assert!(
            summary.lines().any(|l| l == line),
            "no line {line:?} in:\n{summary}"
        );
    }
}

/// `profiler attach --level memory` to a victim that has mapped the runtime and waits: the
/// same, the driver probed once the victim loads it, the scan at the end.
#[test]
fn attach_mode_probes_the_mapped_runtime_and_the_driver_loaded_later() {
    require_root!();
    let dir = TempDir::new();
    let json = dir.json();
    let mut victim = Victim::ready(VICTIM, [] as [&str; 0]);
    attach_through_done(
        &mut victim,
        &["--level", "memory", "--json", json.to_str().unwrap()],
    );
    let report = Report::read(&json);
    assert_victim_seen(&report);
    let note = report.family("gpu").note().unwrap_or_default().to_string();
    assert!(
        note.contains("libcudart.so.12 (runtime,") && note.contains("libcuda.so.1 (driver,"),
        "{note}"
    );
}

/// The overhead budget prices the CUDA probes: on a target that does nothing but allocate and
/// free through the runtime, a budget of 2% detaches them ("gpu CUDA probes"), says so, and the
/// section covers the calls seen until then.
#[test]
fn the_budget_detaches_the_cuda_probes_of_a_hot_allocation_loop() {
    require_root!();
    let dir = TempDir::new();
    let rounds = 300_000;
    let (outcome, report) = run_reported(
        &dir,
        &[
            "--level",
            "memory",
            "--without",
            "memory",
            "--max-overhead",
            "2",
        ],
        &[VICTIM, "loop", &rounds.to_string()],
        &[],
    );
    let detached = report.at("/overhead/budget/detached");
    assert_eq!(
        detached[0]["function"], "gpu CUDA probes",
        "{detached:#}\n{}",
        outcome.stderr
    );
    assert!(
        outcome.stderr.contains("detached gpu CUDA probes after"),
        "{}",
        outcome.stderr
    );
    let warnings = report.at("/warnings").to_string();
    assert!(
        warnings.contains("gpu: the CUDA probes were detached after"),
        "{warnings}"
    );
    let cuda = Cuda::of(&report);
    let mallocs = cuda.calls("libcudart.so.12", "cudaMalloc");
    assert!(mallocs > 0 && mallocs < rounds, "{mallocs}");
    // The probes' cost is priced per function.
    let f = &cuda.list("libraries")[0]["functions"][0];
    assert_eq!(f["name"], "cudaMalloc");
    assert!(f["hits"].as_u64() >= Some(2 * mallocs), "{f:#}");
    assert!(f["estimated_cost"].as_f64() > Some(0.0), "{f:#}");
}

/// A runtime linked into the executable (nvcc's default, `cudart_static`): the executable is
/// probed as the runtime, its calls counted and charged to the program's functions.
#[test]
fn a_runtime_linked_into_the_executable_is_probed_there() {
    require_root!();
    let dir = TempDir::new();
    let (_, report) = run_reported(&dir, &["--level", "memory"], &[VICTIM_STATIC], &[]);
    let cuda = Cuda::of(&report);
    let api: Vec<(&str, &str)> = cuda
        .list("libraries")
        .iter()
        .map(|l| (l["module"].as_str().unwrap(), l["api"].as_str().unwrap()))
        .collect();
    assert_eq!(
        api,
        [("gpu_victim_static", "runtime"), ("libcuda.so.1", "driver")]
    );
    assert_eq!(cuda.calls("gpu_victim_static", "cudaMalloc"), 36);
    assert_eq!(cuda.calls("gpu_victim_static", "cudaLaunchKernel"), 150);
    assert_eq!(cuda.calls("libcuda.so.1", "cuMemAlloc_v2"), 7);
    assert_eq!(
        cuda.site("cudaMalloc", "keep_buffers").0,
        [(10, 10 * MIB), (0, 0), (10, 10 * MIB)]
    );
    assert_eq!(
        cuda.copies("cudaMemcpy", "copy_in"),
        [("host_to_device", 8, 8 * MIB)]
    );
    let failed: Vec<&str> = cuda
        .list("errors")
        .iter()
        .map(|e| e["function"].as_str().unwrap())
        .collect();
    assert_eq!(failed, ["driver_too_big", "too_big", "bad_copy"]);
}

/// The live view while the target waits after its last call: a snapshot has every call so far,
/// read from the kernel without a scan (`outstanding`), and the report at the end the verdicts.
#[test]
fn a_live_snapshot_has_the_cuda_calls_so_far() {
    require_root!();
    let dir = TempDir::new();
    let (json, live) = (dir.json(), dir.path().join("live.json"));
    let mut victim = Victim::ready(VICTIM, [] as [&str; 0]);
    let profiler = attach_live(
        &victim,
        &["--level", "memory", "--json", json.to_str().unwrap()],
        &live,
    );
    victim.proceed();
    victim.expect_line("done");
    let snapshot = next_snapshot(&live);
    assert_eq!(snapshot.end_reason(), "running");
    let cuda = Cuda::of(&snapshot);
    assert_eq!(cuda.calls("libcudart.so.12", "cudaMalloc"), 36);
    assert_eq!(cuda.calls("libcuda.so.1", "cuLaunchKernel"), 40);
    assert_eq!(cuda.0["allocations"]["method"], "outstanding");
    assert_eq!(
        cuda.site("cudaMalloc", "leak_buffers"),
        (
            [(5, 5 * 256 * KIB), (0, 0), (5, 5 * 256 * KIB)],
            vec!["outstanding"]
        )
    );
    assert_eq!(cuda.list("errors").len(), 3);
    profiler.interrupt();
    profiler.finish().expect_success();
    assert!(victim.release().success());
    let report = Report::read(&json);
    assert_eq!(
        Cuda::of(&report).site("cudaMalloc", "leak_buffers").1,
        ["definitely_lost"]
    );
}
