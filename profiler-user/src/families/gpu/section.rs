//! The `cuda` part of the gpu section, from what the CUDA probes counted (pure, unit-tested).

use std::collections::{BTreeMap, HashMap};

use profiler_common::gpu::{CudaClass, Direction, GpuKey, Space};

use super::{cuda::api_of_name, errors::error_name, kernel::RawCuda};
use crate::{
    families::memory::{analyze::charged_frame, scan::SiteVerdicts},
    report::{
        Frame,
        gpu::{
            CudaAllocations, CudaCopy, CudaFailure, CudaKernel, CudaLibrary, CudaSection, CudaSite,
            CudaSync,
        },
        memory::Tally,
    },
};

/// Most sites, copies and waits listed; most kernels.
const MAX_LISTED: usize = 50;
const MAX_KERNELS: usize = 100;

/// Modules whose frames are not charged, with the CUDA libraries: PyTorch's caching allocator,
/// so that a site is charged to the code that wanted the memory.
const WRAPPER_MODULES: [&str; 2] = ["libc10_cuda", "libtorch_cuda"];

/// A probed function, by function id.
#[derive(Debug, Clone)]
pub(crate) struct Meta {
    pub name: &'static str,
    pub class: CudaClass,
}

/// What the section is made from.
#[derive(Debug, Default)]
pub(crate) struct CudaInput {
    /// The libraries, their functions listed in function-id order (the first library's, then
    /// the next one's) with their hits and cost filled in (the calls and errors are filled
    /// here).
    pub libraries: Vec<CudaLibrary>,
    pub functions: Vec<Meta>,
    pub raw: RawCuda,
    /// Site -> symbolized stack, innermost first.
    pub frames: HashMap<u64, Vec<Frame>>,
    /// A launch's kernel (its `GpuKey::site`) -> name.
    pub kernels: HashMap<u64, String>,
    /// The reachability scan's verdicts by allocation site; None: no scan (`scan_reason`).
    pub verdicts: Option<HashMap<GpuKey, SiteVerdicts>>,
    pub scan_reason: Option<String>,
    /// When the maps were read, CLOCK_MONOTONIC ns (for the blocks' ages).
    pub end_ns: u64,
}

fn space_name(space: u32) -> &'static str {
    match Space::from_u32(space) {
        Some(Space::Device) => "device",
        Some(Space::Host) => "host",
        Some(Space::Physical) => "physical",
        None => "unknown",
    }
}

fn direction_name(detail: u32) -> &'static str {
    match Direction::from_u32(detail) {
        Some(Direction::HostToHost) => "host_to_host",
        Some(Direction::HostToDevice) => "host_to_device",
        Some(Direction::DeviceToHost) => "device_to_host",
        Some(Direction::DeviceToDevice) => "device_to_device",
        Some(Direction::Default) => "default",
        // A `cudaMemcpyKind` the runtime refuses.
        None => "invalid",
    }
}

/// The host function a stack is charged to: the first frame outside the CUDA libraries and the
/// wrappers, `??` when none.
pub(crate) fn charged(frames: &[Frame]) -> String {
    // A runtime linked into the executable is not skipped: the first frame of a site is the
    // caller's already (the outermost CUDA call is the one recorded).
    let skip: Vec<String> = frames
        .iter()
        .filter(|f| {
            api_of_name(&f.module).is_some()
                || WRAPPER_MODULES.iter().any(|w| f.module.starts_with(w))
        })
        .map(|f| f.module.clone())
        .collect();
    charged_frame(frames, &skip).map_or_else(|| "??".to_string(), |f| f.function.clone())
}

/// The section.
pub(crate) fn section(input: CudaInput) -> CudaSection {
    let CudaInput {
        mut libraries,
        functions,
        raw,
        frames,
        kernels,
        verdicts,
        scan_reason,
        end_ns,
    } = input;
    let stack = |site: u64| frames.get(&site).cloned().unwrap_or_default();
    let function = |site: u64| charged(&stack(site));
    let meta = |id: u32| functions.get(id as usize);
    let name = |id: u32| meta(id).map_or("?", |m| m.name).to_string();
    let class = |id: u32| meta(id).map(|m| m.class);

    // Calls and errors per function.
    let mut per_function: HashMap<u32, (u64, u64)> = HashMap::new();
    for (key, s) in &raw.stats {
        let e = per_function.entry(key.function).or_default();
        e.0 += s.calls;
        e.1 += s.errors;
    }
    // The libraries' functions are in function-id order, library after library.
    let listed = libraries.iter_mut().flat_map(|l| l.functions.iter_mut());
    for (id, f) in (0u32..).zip(listed) {
        (f.calls, f.errors) = per_function.get(&id).copied().unwrap_or_default();
    }

    // Allocations, per site, with their verdicts.
    let mut allocations = CudaAllocations {
        method: if verdicts.is_some() {
            "reachability"
        } else {
            "outstanding"
        }
        .into(),
        scan_reason: if verdicts.is_some() {
            None
        } else {
            scan_reason
        },
        ..CudaAllocations::default()
    };
    let mut oldest: HashMap<GpuKey, u64> = HashMap::new();
    for (_, b) in &raw.blocks {
        let key = GpuKey {
            site: b.site,
            function: b.function,
            detail: b.space,
        };
        let t = oldest.entry(key).or_insert(b.timestamp_ns);
        *t = (*t).min(b.timestamp_ns);
    }
    let mut sites = Vec::new();
    for (key, s) in &raw.sites {
        let outstanding = Tally {
            bytes: s
                .alloc_bytes
                .saturating_sub(s.free_bytes + s.untracked_bytes),
            count: s.allocs.saturating_sub(s.frees + s.untracked),
        };
        let space = space_name(key.detail);
        allocations.allocated += Tally {
            bytes: s.alloc_bytes,
            count: s.allocs,
        };
        allocations.freed += Tally {
            bytes: s.free_bytes,
            count: s.frees,
        };
        allocations.outstanding += outstanding;
        *allocations
            .outstanding_by_space
            .entry(space.to_string())
            .or_default() += outstanding;
        let v = verdicts
            .as_ref()
            .map(|v| v.get(key).copied().unwrap_or_default());
        // A site whose blocks were all freed after the scan holds nothing to judge.
        if let Some(v) = v.as_ref().filter(|_| outstanding.count > 0) {
            allocations.definitely_lost += v.definitely_lost;
            allocations.indirectly_lost += v.indirectly_lost;
            allocations.reachable += v.reachable;
        }
        let verdict = match v {
            _ if outstanding.count == 0 => "freed",
            Some(v) if v.definitely_lost.count > 0 => "definitely_lost",
            Some(v) if v.indirectly_lost.count > 0 => "indirectly_lost",
            Some(_) => "reachable",
            None => "outstanding",
        };
        sites.push(CudaSite {
            call: name(key.function),
            space: space.into(),
            function: function(key.site),
            allocated: Tally {
                bytes: s.alloc_bytes,
                count: s.allocs,
            },
            freed: Tally {
                bytes: s.free_bytes,
                count: s.frees,
            },
            outstanding,
            verdict: verdict.into(),
            oldest_age: oldest
                .get(key)
                .map_or(0.0, |t| end_ns.saturating_sub(*t) as f64 * 1e-9),
            stack: stack(key.site),
        });
    }
    allocations.detected =
        allocations.definitely_lost.bytes + allocations.indirectly_lost.bytes > 0;
    sites.sort_by(|a, b| {
        (b.outstanding.bytes, b.allocated.bytes, &a.function, &a.call).cmp(&(
            a.outstanding.bytes,
            a.allocated.bytes,
            &b.function,
            &b.call,
        ))
    });
    sites.truncate(MAX_LISTED);

    // Copies, launches and waits.
    let mut copies = Vec::new();
    let mut by_kernel: BTreeMap<(String, String), CudaKernel> = BTreeMap::new();
    let mut syncs = Vec::new();
    for (key, s) in &raw.stats {
        match class(key.function) {
            Some(c) if c.copies() => copies.push(CudaCopy {
                call: name(key.function),
                direction: direction_name(key.detail).into(),
                function: function(key.site),
                calls: s.calls,
                errors: s.errors,
                bytes: s.bytes,
                seconds: s.ns as f64 * 1e-9,
                stack: stack(key.site),
            }),
            Some(CudaClass::Launch) => {
                let kernel = kernels
                    .get(&key.site)
                    .cloned()
                    .unwrap_or_else(|| format!("{:#x}", key.site));
                let call = name(key.function);
                let k = by_kernel
                    .entry((kernel.clone(), call.clone()))
                    .or_insert_with(|| CudaKernel {
                        name: kernel,
                        call,
                        ..CudaKernel::default()
                    });
                k.launches += s.calls;
                k.errors += s.errors;
                k.seconds += s.ns as f64 * 1e-9;
            }
            Some(CudaClass::Sync) => syncs.push(CudaSync {
                call: name(key.function),
                function: function(key.site),
                calls: s.calls,
                seconds: s.ns as f64 * 1e-9,
                stack: stack(key.site),
            }),
            _ => {}
        }
    }
    copies.sort_by(|a, b| {
        (b.bytes, b.calls, &a.call, &a.function).cmp(&(a.bytes, a.calls, &b.call, &b.function))
    });
    copies.truncate(MAX_LISTED);
    let mut kernels: Vec<CudaKernel> = by_kernel.into_values().collect();
    kernels.sort_by(|a, b| b.launches.cmp(&a.launches).then(a.name.cmp(&b.name)));
    kernels.truncate(MAX_KERNELS);
    syncs.sort_by(|a, b| {
        b.seconds
            .total_cmp(&a.seconds)
            .then(a.function.cmp(&b.function))
    });
    syncs.truncate(MAX_LISTED);

    let mut errors: Vec<CudaFailure> = raw
        .errors
        .iter()
        .map(|(key, count)| {
            let call = name(key.function);
            CudaFailure {
                error: error_name(&call, key.detail),
                call,
                code: key.detail,
                count: *count,
                function: function(key.site),
                stack: stack(key.site),
            }
        })
        .collect();
    errors.sort_by(|a, b| {
        (b.count, &a.call, a.code, &a.function).cmp(&(a.count, &b.call, b.code, &b.function))
    });

    CudaSection {
        libraries,
        allocations,
        sites,
        copies,
        kernels,
        syncs,
        errors,
        notes: NOTES.iter().map(|n| n.to_string()).collect(),
    }
}

/// What the CUDA numbers are and are not.
pub(crate) const NOTES: [&str; 3] = [
    "Kernel launches and async copies are asynchronous: their times are the host thread's time \
     in the call, not the GPU's; the time the host waited for the GPU is in the synchronization \
     waits.",
    "Allocations are what the target asked the CUDA libraries for: a caching allocator (PyTorch's) \
     asks for large segments and hands out tensors inside them, so a site's bytes are reserved \
     memory, not tensors.",
    "A call the CUDA runtime makes into the driver is counted once, as the runtime call.",
];

#[cfg(test)]
mod tests {
    use profiler_common::{
        gpu::{GpuBlock, GpuStats},
        memory::SiteStats,
    };

    use super::*;
    use crate::{family_testing::frame, report::gpu::CudaFunction};

    fn key(site: u64, function: u32, detail: u32) -> GpuKey {
        GpuKey {
            site,
            function,
            detail,
        }
    }

    fn input() -> CudaInput {
        let functions = vec![
            Meta {
                name: "cudaMalloc",
                class: CudaClass::DeviceAlloc,
            },
            Meta {
                name: "cudaMemcpy",
                class: CudaClass::CopyKind,
            },
            Meta {
                name: "cudaLaunchKernel",
                class: CudaClass::Launch,
            },
            Meta {
                name: "cuMemAlloc_v2",
                class: CudaClass::DeviceAlloc,
            },
        ];
        let library = |module: &str, names: &[&str]| CudaLibrary {
            module: module.into(),
            functions: names
                .iter()
                .map(|n| CudaFunction {
                    name: n.to_string(),
                    ..CudaFunction::default()
                })
                .collect(),
            ..CudaLibrary::default()
        };
        let site = |allocs, bytes, frees, free_bytes| SiteStats {
            allocs,
            alloc_bytes: bytes,
            frees,
            free_bytes,
            untracked: 0,
            untracked_bytes: 0,
        };
        let stats = |calls, errors, bytes, ns| GpuStats {
            calls,
            errors,
            bytes,
            ns,
        };
        CudaInput {
            libraries: vec![
                library(
                    "libcudart.so.12",
                    &["cudaMalloc", "cudaMemcpy", "cudaLaunchKernel"],
                ),
                library("libcuda.so.1", &["cuMemAlloc_v2"]),
            ],
            functions,
            raw: RawCuda {
                stats: vec![
                    (key(1, 0, 0), stats(11, 1, 10 << 20, 1000)),
                    (key(2, 0, 0), stats(20, 0, 20 << 16, 1000)),
                    (key(3, 1, 1), stats(8, 0, 8 << 20, 4_000_000)),
                    (key(0xabc, 2, 0), stats(100, 0, 0, 2_000_000)),
                    (key(0xdef, 2, 0), stats(50, 0, 0, 1_000_000)),
                ],
                sites: vec![
                    (key(1, 0, 0), site(10, 10 << 20, 0, 0)),
                    (key(2, 0, 0), site(20, 20 << 16, 20, 20 << 16)),
                    (key(4, 3, 0), site(2, 2 << 20, 0, 0)),
                ],
                errors: vec![(key(5, 0, 2), 1), (key(6, 3, 2), 3)],
                blocks: vec![(
                    0x7000,
                    GpuBlock {
                        size: 1 << 20,
                        site: 1,
                        timestamp_ns: 1_000_000_000,
                        function: 0,
                        space: 0,
                    },
                )],
                hits: vec![31, 8, 150, 2],
                ..RawCuda::default()
            },
            frames: HashMap::from([
                (
                    1,
                    vec![frame("keep_buffers", "victim"), frame("main", "victim")],
                ),
                (2, vec![frame("scratch", "victim")]),
                (3, vec![frame("copy_in", "victim")]),
                (
                    4,
                    vec![
                        frame("c10::cuda::CUDACachingAllocator::malloc", "libc10_cuda.so"),
                        frame("forward", "model.so"),
                    ],
                ),
                (
                    6,
                    vec![frame("cuMemAlloc_v2", "libcuda.so.1"), frame("grow", "v")],
                ),
            ]),
            kernels: HashMap::from([(0xabc, "vector_add".to_string())]),
            verdicts: None,
            scan_reason: Some("no scan".into()),
            end_ns: 3_000_000_000,
        }
    }

    #[test]
    fn allocations_per_site_with_totals_and_ages() {
        let s = section(input());
        let a = &s.allocations;
        assert_eq!(a.allocated.count, 32);
        assert_eq!(a.freed.count, 20);
        assert_eq!(a.outstanding.count, 12);
        assert_eq!(a.outstanding.bytes, 12 << 20);
        assert_eq!(a.method, "outstanding");
        assert_eq!(a.scan_reason.as_deref(), Some("no scan"));
        assert!(!a.detected);
        let first = &s.sites[0];
        assert_eq!(
            (first.call.as_str(), first.function.as_str()),
            ("cudaMalloc", "keep_buffers")
        );
        assert_eq!(first.verdict, "outstanding");
        assert!((first.oldest_age - 2.0).abs() < 1e-9);
        // PyTorch's caching allocator is not charged.
        assert_eq!(s.sites[1].function, "forward");
        assert_eq!(s.sites[2].verdict, "freed");
        // Per-function counts land on each library's functions.
        assert_eq!(s.libraries[0].functions[0].calls, 31);
        assert_eq!(s.libraries[0].functions[0].errors, 1);
        assert_eq!(s.libraries[0].functions[2].calls, 150);
    }

    #[test]
    fn verdicts_come_from_the_scan() {
        let mut i = input();
        let lost = SiteVerdicts {
            definitely_lost: Tally {
                bytes: 10 << 20,
                count: 10,
            },
            ..SiteVerdicts::default()
        };
        i.verdicts = Some(HashMap::from([(key(1, 0, 0), lost)]));
        let s = section(i);
        assert_eq!(s.allocations.method, "reachability");
        assert_eq!(s.allocations.scan_reason, None);
        assert!(s.allocations.detected);
        assert_eq!(s.allocations.definitely_lost.count, 10);
        assert_eq!(s.sites[0].verdict, "definitely_lost");
        // An outstanding site the scan did not judge (its blocks gone since) reads reachable.
        assert_eq!(s.sites[1].verdict, "reachable");
    }

    #[test]
    fn copies_kernels_and_errors() {
        let s = section(input());
        assert_eq!(s.copies.len(), 1);
        let c = &s.copies[0];
        assert_eq!(
            (c.direction.as_str(), c.bytes, c.calls, c.function.as_str()),
            ("host_to_device", 8 << 20, 8, "copy_in")
        );
        assert!((c.seconds - 0.004).abs() < 1e-12);
        let k: Vec<(&str, u64)> = s
            .kernels
            .iter()
            .map(|k| (k.name.as_str(), k.launches))
            .collect();
        assert_eq!(k, [("vector_add", 100), ("0xdef", 50)]);
        let e: Vec<(&str, &str, u64, &str)> = s
            .errors
            .iter()
            .map(|e| {
                (
                    e.call.as_str(),
                    e.error.as_str(),
                    e.count,
                    e.function.as_str(),
                )
            })
            .collect();
        assert_eq!(
            e,
            [
                ("cuMemAlloc_v2", "CUDA_ERROR_OUT_OF_MEMORY", 3, "grow"),
                ("cudaMalloc", "cudaErrorMemoryAllocation", 1, "??"),
            ]
        );
    }
}
