//! Which CUDA libraries the target maps, and which of their functions are probed.
//!
//! The runtime is any `libcudart*.so*` (PyTorch and other wheels bundle their own, under
//! `site-packages/nvidia/cuda_runtime/lib` or `torch/lib`, with a hash in the name), or an
//! executable that defines `cudaMalloc` (a statically linked runtime); the driver is
//! `libcuda.so*`. The driver's versioned symbols are probed under the name the headers map to
//! (`cuMemAlloc_v2`, not the 32-bit `cuMemAlloc` kept for old binaries).

use blazesym::inspect::{Inspector, source::Elf};
use profiler_common::gpu::CudaClass;

use crate::{
    placement::{self, Placement},
    tracee::Module,
};

/// Which API a library provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Api {
    Runtime,
    Driver,
}

impl Api {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Api::Runtime => "runtime",
            Api::Driver => "driver",
        }
    }
}

/// The runtime's functions probed, and how each takes its arguments. The `_ptsz`/`_ptds`
/// forms are what code built with `--default-stream per-thread` calls.
const RUNTIME: [(&str, CudaClass); 22] = [
    ("cudaMalloc", CudaClass::DeviceAlloc),
    ("cudaMallocAsync", CudaClass::DeviceAlloc),
    ("cudaMallocAsync_ptsz", CudaClass::DeviceAlloc),
    ("cudaMallocFromPoolAsync", CudaClass::DeviceAlloc),
    ("cudaMallocManaged", CudaClass::DeviceAlloc),
    ("cudaMallocHost", CudaClass::HostAlloc),
    ("cudaHostAlloc", CudaClass::HostAlloc),
    ("cudaFree", CudaClass::DeviceFree),
    ("cudaFreeAsync", CudaClass::DeviceFree),
    ("cudaFreeAsync_ptsz", CudaClass::DeviceFree),
    ("cudaFreeHost", CudaClass::HostFree),
    ("cudaMemcpy", CudaClass::CopyKind),
    ("cudaMemcpy_ptds", CudaClass::CopyKind),
    ("cudaMemcpyAsync", CudaClass::CopyKind),
    ("cudaMemcpyAsync_ptsz", CudaClass::CopyKind),
    ("cudaLaunchKernel", CudaClass::Launch),
    ("cudaLaunchKernel_ptsz", CudaClass::Launch),
    ("cudaDeviceSynchronize", CudaClass::Sync),
    ("cudaStreamSynchronize", CudaClass::Sync),
    ("cudaStreamSynchronize_ptsz", CudaClass::Sync),
    ("cudaEventSynchronize", CudaClass::Sync),
    ("cudaStreamWaitEvent", CudaClass::Sync),
];

/// The driver's functions probed.
const DRIVER: [(&str, CudaClass); 27] = [
    ("cuMemAlloc_v2", CudaClass::DeviceAlloc),
    ("cuMemAllocManaged", CudaClass::DeviceAlloc),
    ("cuMemAllocAsync", CudaClass::DeviceAlloc),
    ("cuMemAllocAsync_ptsz", CudaClass::DeviceAlloc),
    ("cuMemAllocHost_v2", CudaClass::HostAlloc),
    ("cuMemHostAlloc", CudaClass::HostAlloc),
    ("cuMemFree_v2", CudaClass::DeviceFree),
    ("cuMemFreeAsync", CudaClass::DeviceFree),
    ("cuMemFreeAsync_ptsz", CudaClass::DeviceFree),
    ("cuMemFreeHost", CudaClass::HostFree),
    ("cuMemCreate", CudaClass::HandleCreate),
    ("cuMemRelease", CudaClass::HandleRelease),
    ("cuMemMap", CudaClass::Map),
    ("cuMemcpyHtoD_v2", CudaClass::CopyHtoD),
    ("cuMemcpyHtoDAsync_v2", CudaClass::CopyHtoD),
    ("cuMemcpyDtoH_v2", CudaClass::CopyDtoH),
    ("cuMemcpyDtoHAsync_v2", CudaClass::CopyDtoH),
    ("cuMemcpyDtoD_v2", CudaClass::CopyDtoD),
    ("cuMemcpyDtoDAsync_v2", CudaClass::CopyDtoD),
    ("cuMemcpy", CudaClass::CopyAny),
    ("cuMemcpyAsync", CudaClass::CopyAny),
    ("cuLaunchKernel", CudaClass::Launch),
    ("cuLaunchKernel_ptsz", CudaClass::Launch),
    ("cuCtxSynchronize", CudaClass::Sync),
    ("cuStreamSynchronize", CudaClass::Sync),
    ("cuEventSynchronize", CudaClass::Sync),
    ("cuModuleGetFunction", CudaClass::GetFunction),
];

/// One probed CUDA function.
#[derive(Debug, Clone)]
pub(crate) struct CudaFn {
    pub name: &'static str,
    pub class: CudaClass,
    /// File offset of the probe (symbol start plus the placement offset).
    pub probe_offset: u64,
    pub placement: Placement,
}

/// A CUDA library (or an executable with the runtime linked in) found in the target.
#[derive(Debug, Clone)]
pub(crate) struct CudaLib {
    pub api: Api,
    pub module: Module,
    pub functions: Vec<CudaFn>,
}

/// The API a module's file name says it provides, if any.
pub(crate) fn api_of_name(file: &str) -> Option<Api> {
    if file.starts_with("libcudart") && file.contains(".so") {
        Some(Api::Runtime)
    } else if file == "libcuda.so" || file.starts_with("libcuda.so.") {
        Some(Api::Driver)
    } else {
        None
    }
}

/// The CUDA libraries among `modules` (the executable first): those named as one, and the
/// executable when it defines the runtime's functions itself.
pub(crate) fn detect(modules: &[Module]) -> Vec<CudaLib> {
    let inspector = Inspector::new();
    modules
        .iter()
        .enumerate()
        .filter_map(|(i, m)| {
            let api = match api_of_name(&m.file_name()) {
                Some(api) => api,
                // A statically linked runtime.
                None if i == 0 => Api::Runtime,
                None => return None,
            };
            in_module(&inspector, m, api)
        })
        .collect()
}

/// The CUDA library `module` (named as one), if it defines the functions of its API.
pub(crate) fn in_library(module: Module) -> Option<CudaLib> {
    let api = api_of_name(&module.file_name())?;
    in_module(&Inspector::new(), &module, api)
}

/// The functions of `api` that `module` defines; None when it defines none.
fn in_module(inspector: &Inspector, module: &Module, api: Api) -> Option<CudaLib> {
    let table: &[(&'static str, CudaClass)] = match api {
        Api::Runtime => &RUNTIME,
        Api::Driver => &DRIVER,
    };
    let mut src = Elf::new(&module.open_path);
    src.debug_syms = false;
    let names: Vec<&str> = table.iter().map(|(n, _)| *n).collect();
    let found = inspector.lookup(&src.into(), &names).ok()?;
    let placed = placement::place_symbols(&module.open_path, found, |_| placement::Role::Plain);
    let functions: Vec<CudaFn> = (table.iter().zip(placed))
        .filter_map(|((name, class), p)| {
            let p = p.filter(|p| p.placement.refused.is_none())?;
            Some(CudaFn {
                name,
                class: *class,
                probe_offset: p.probe_offset,
                placement: p.placement,
            })
        })
        .collect();
    (!functions.is_empty()).then(|| CudaLib {
        api,
        module: module.clone(),
        functions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libraries_are_told_by_name() {
        assert_eq!(api_of_name("libcudart.so.12"), Some(Api::Runtime));
        assert_eq!(
            api_of_name("libcudart-9335f6a2.so.12.1.105"),
            Some(Api::Runtime)
        );
        assert_eq!(api_of_name("libcudart_static.a"), None);
        assert_eq!(api_of_name("libcuda.so.1"), Some(Api::Driver));
        assert_eq!(api_of_name("libcuda.so.550.54.15"), Some(Api::Driver));
        assert_eq!(api_of_name("libcudnn.so.9"), None);
        assert_eq!(api_of_name("libcublas.so.12"), None);
    }

    #[test]
    fn tables_name_each_function_once_and_the_versioned_driver_symbols() {
        for table in [&RUNTIME[..], &DRIVER[..]] {
            for (i, (name, _)) in table.iter().enumerate() {
                assert!(!table[..i].iter().any(|(n, _)| n == name), "{name} twice");
            }
        }
        let driver = |n: &str| DRIVER.iter().find(|(d, _)| *d == n).map(|(_, c)| *c);
        assert_eq!(driver("cuMemAlloc_v2"), Some(CudaClass::DeviceAlloc));
        assert_eq!(driver("cuMemAlloc"), None, "the 32-bit legacy symbol");
        assert_eq!(driver("cuMemFree_v2"), Some(CudaClass::DeviceFree));
    }

    #[test]
    fn a_library_without_cuda_functions_is_not_one() {
        let libc = Module {
            path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
            open_path: "/lib/x86_64-linux-gnu/libc.so.6".into(),
        };
        let found = in_module(&Inspector::new(), &libc, Api::Runtime);
        assert!(found.is_none());
    }
}
