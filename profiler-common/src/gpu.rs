//! The `gpu` family's CUDA probes: allocations, copies, kernel launches, synchronization waits
//! and failed calls of the CUDA runtime (`libcudart`) and driver (`libcuda`) libraries that the
//! target maps, seen from outside the process by uprobes.
//!
//! One entry program and one return program serve every probed function; the attach cookie
//! says which function and how it takes its arguments ([`CudaClass`]). Entry notes the call's
//! arguments per thread; return, which has the result code, records it: an allocation's block
//! (read through its out-parameter) in `GPU_ALLOCS` and its site's totals in `GPU_SITES`, a
//! release only when it succeeded, per-(site, function, detail) call statistics in
//! `GPU_STATS`, and every failed call (a non-zero `cudaError_t` or `CUresult`) in `GPU_ERRORS`
//! and as a [`CudaErrorEvent`] record. Sites are the memory family's (`MEM_STACKS`). Only the
//! outermost probed call on a thread is counted: the runtime calls the driver.

use crate::event::EventHeader;

/// How a probed CUDA function takes its arguments and what it does; the low byte of the attach
/// cookie (the function id is above it, see [`cookie`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CudaClass {
    /// `cudaMalloc(void **ptr, size_t size, ...)`, `cuMemAlloc_v2(CUdeviceptr *ptr, size)`, the
    /// managed and stream-ordered ones: a device block, written through the first argument.
    DeviceAlloc = 0,
    /// `cudaMallocHost(void **ptr, size)`, `cudaHostAlloc`, `cuMemAllocHost_v2`: page-locked
    /// host memory, written through the first argument.
    HostAlloc = 1,
    /// `cuMemCreate(CUmemGenericAllocationHandle *handle, size, ...)`: physical memory of the
    /// virtual memory management API (PyTorch's expandable segments), a handle written through
    /// the first argument.
    HandleCreate = 2,
    /// `cudaFree(ptr)`, `cudaFreeAsync`, `cuMemFree_v2`: releases a device block.
    DeviceFree = 3,
    /// `cudaFreeHost(ptr)`, `cuMemFreeHost`.
    HostFree = 4,
    /// `cuMemRelease(handle)`.
    HandleRelease = 5,
    /// `cuMemMap(ptr, size, offset, handle, flags)`: maps physical memory (counted, `size`
    /// bytes).
    Map = 6,
    /// `cudaMemcpy(dst, src, count, kind)`, `cudaMemcpyAsync`: the direction is the fourth
    /// argument ([`Direction`] values).
    CopyKind = 7,
    /// `cuMemcpyHtoD_v2(dst, src, count)` and its async form.
    CopyHtoD = 8,
    /// `cuMemcpyDtoH_v2` and its async form.
    CopyDtoH = 9,
    /// `cuMemcpyDtoD_v2` and its async form.
    CopyDtoD = 10,
    /// `cuMemcpy(dst, src, count)`, `cuMemcpyAsync`: unified addressing, direction not said.
    CopyAny = 11,
    /// `cudaLaunchKernel(func, ...)` (the host stub's address), `cuLaunchKernel(f, ...)` (a
    /// `CUfunction` handle).
    Launch = 12,
    /// `cudaDeviceSynchronize`, `cudaStreamSynchronize`, `cuCtxSynchronize`,
    /// `cuStreamSynchronize`, the event waits: the host thread waits for the GPU.
    Sync = 13,
    /// `cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name)`: names a handle that
    /// `cuLaunchKernel` launches (`GPU_KERNEL_NAMES`).
    GetFunction = 14,
}

/// Number of [`CudaClass`] values.
pub const CUDA_CLASSES: u8 = 15;

impl CudaClass {
    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => CudaClass::DeviceAlloc,
            1 => CudaClass::HostAlloc,
            2 => CudaClass::HandleCreate,
            3 => CudaClass::DeviceFree,
            4 => CudaClass::HostFree,
            5 => CudaClass::HandleRelease,
            6 => CudaClass::Map,
            7 => CudaClass::CopyKind,
            8 => CudaClass::CopyHtoD,
            9 => CudaClass::CopyDtoH,
            10 => CudaClass::CopyDtoD,
            11 => CudaClass::CopyAny,
            12 => CudaClass::Launch,
            13 => CudaClass::Sync,
            14 => CudaClass::GetFunction,
            _ => return None,
        })
    }

    /// The memory space of an allocating or releasing class.
    pub const fn space(self) -> Option<Space> {
        match self {
            CudaClass::DeviceAlloc | CudaClass::DeviceFree => Some(Space::Device),
            CudaClass::HostAlloc | CudaClass::HostFree => Some(Space::Host),
            CudaClass::HandleCreate | CudaClass::HandleRelease => Some(Space::Physical),
            _ => None,
        }
    }

    /// Whether the class allocates (a block comes back through the first argument).
    pub const fn allocates(self) -> bool {
        matches!(
            self,
            CudaClass::DeviceAlloc | CudaClass::HostAlloc | CudaClass::HandleCreate
        )
    }

    /// Whether the class copies (`count` is the third argument).
    pub const fn copies(self) -> bool {
        matches!(
            self,
            CudaClass::CopyKind
                | CudaClass::CopyHtoD
                | CudaClass::CopyDtoH
                | CudaClass::CopyDtoD
                | CudaClass::CopyAny
        )
    }
}

/// Where an allocated block lives: the detail of its `GPU_SITES` key, and the top byte of its
/// `GPU_ALLOCS` key (device pointers, host pointers and handles are separate name spaces).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Space {
    /// Device memory (and managed memory, which `cudaFree` releases too).
    Device = 0,
    /// Page-locked host memory.
    Host = 1,
    /// Physical memory of the virtual memory management API, by handle.
    Physical = 2,
}

impl Space {
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Space::Device,
            1 => Space::Host,
            2 => Space::Physical,
            _ => return None,
        })
    }
}

/// The `GPU_ALLOCS` key of a block: its address (or handle) with its space in the top byte.
pub const fn block_key(space: Space, addr: u64) -> u64 {
    ((space as u64) << 56) ^ addr
}

/// The address (or handle) of a `GPU_ALLOCS` key: [`block_key`] undone (user addresses and
/// handles leave the top byte clear).
pub const fn block_addr(key: u64) -> u64 {
    key & ((1 << 56) - 1)
}

/// The direction of a copy: the detail of its `GPU_STATS` key; `cudaMemcpyKind`'s values.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    HostToHost = 0,
    HostToDevice = 1,
    DeviceToHost = 2,
    DeviceToDevice = 3,
    /// `cudaMemcpyDefault`, or a driver copy by unified address: the pointers say.
    Default = 4,
}

impl Direction {
    pub const fn from_u32(v: u32) -> Option<Self> {
        Some(match v {
            0 => Direction::HostToHost,
            1 => Direction::HostToDevice,
            2 => Direction::DeviceToHost,
            3 => Direction::DeviceToDevice,
            4 => Direction::Default,
            _ => return None,
        })
    }
}

/// The attach cookie of CUDA function `id` of class `class`.
pub const fn cookie(id: u32, class: CudaClass) -> u64 {
    ((id as u64) << 8) | class as u64
}

/// The function id of a cookie.
pub const fn cookie_function(cookie: u64) -> u32 {
    (cookie >> 8) as u32
}

/// The class byte of a cookie.
pub const fn cookie_class(cookie: u64) -> u8 {
    cookie as u8
}

/// Most CUDA functions probed in one run (over every CUDA library the target maps).
pub const MAX_CUDA_FUNCTIONS: u32 = 256;

/// A CUDA call in progress on one thread (`GPU_PENDING`, by thread id), noted at entry and
/// completed by the return probe.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub struct CudaPending {
    /// Stack pointer at entry (the slot of the return address): tells a nested call, which runs
    /// deeper, and finds the matching return.
    pub ret_slot: u64,
    /// The return address (in the caller): the site is hashed from it at return.
    pub ret_addr: u64,
    /// The first argument (an out-parameter, a pointer, a handle, a kernel).
    pub arg0: u64,
    /// Bytes asked for, copied or mapped; `GetFunction`: the name's address.
    pub bytes: u64,
    /// A copy's [`Direction`]; 0 otherwise.
    pub detail: u64,
    /// `bpf_ktime_get_ns()` at entry.
    pub start_ns: u64,
    pub cookie: u64,
}

const _: () = assert!(core::mem::size_of::<CudaPending>() == 56);

/// Key of `GPU_STATS`, `GPU_SITES` and `GPU_ERRORS`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct GpuKey {
    /// The call's site (a `MEM_STACKS` key); a launch's: the kernel (the host stub's address,
    /// or the `CUfunction` handle).
    pub site: u64,
    /// The probed function's id.
    pub function: u32,
    /// A copy's [`Direction`]; an allocation's or release's [`Space`]; `GPU_ERRORS`: the
    /// result code; 0 otherwise.
    pub detail: u32,
}

const _: () = assert!(core::mem::size_of::<GpuKey>() == 16);

/// Calls of one function at one site (value of `GPU_STATS`), updated atomically.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuStats {
    pub calls: u64,
    /// Of them, those that returned an error.
    pub errors: u64,
    /// Bytes asked for (allocations), released (releases), copied or mapped, by the calls that
    /// succeeded.
    pub bytes: u64,
    /// Host-side time in the calls, ns (entry to return).
    pub ns: u64,
}

const _: () = assert!(core::mem::size_of::<GpuStats>() == 32);

/// One outstanding block (value of `GPU_ALLOCS`, keyed by [`block_key`]).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GpuBlock {
    pub size: u64,
    /// Allocation site (a `MEM_STACKS` key).
    pub site: u64,
    /// `bpf_ktime_get_ns()` when it was allocated (at the call's entry).
    pub timestamp_ns: u64,
    /// The function that allocated it.
    pub function: u32,
    /// Its [`Space`].
    pub space: u32,
}

const _: () = assert!(core::mem::size_of::<GpuBlock>() == 32);

/// Bytes of a kernel's name kept (`GPU_KERNEL_NAMES`), NUL-terminated when shorter.
pub const KERNEL_NAME_BYTES: usize = 96;

/// The name `cuModuleGetFunction` gave a `CUfunction` handle.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct KernelName {
    pub name: [u8; KERNEL_NAME_BYTES],
}

const _: () = assert!(core::mem::size_of::<KernelName>() == KERNEL_NAME_BYTES);

/// A CUDA call that returned an error (ring-buffer record, [`crate::event::EventKind::CudaError`]).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct CudaErrorEvent {
    pub header: EventHeader,
    /// The probed function's id.
    pub function: u32,
    /// The `cudaError_t` or `CUresult`.
    pub code: u32,
    /// The call's site (a `MEM_STACKS` key).
    pub site: u64,
    /// Bytes the call asked for (an allocation), copied or mapped; 0 otherwise.
    pub bytes: u64,
}

const _: () = assert!(core::mem::size_of::<CudaErrorEvent>() == 48);

/// Map capacities (none preallocated).
pub const GPU_ALLOCS_MAX: u32 = 1 << 18;
pub const GPU_STATS_MAX: u32 = 1 << 14;
pub const GPU_SITES_MAX: u32 = 1 << 14;
pub const GPU_ERRORS_MAX: u32 = 1 << 12;
pub const GPU_PENDING_MAX: u32 = 1 << 14;
pub const GPU_KERNEL_NAMES_MAX: u32 = 1 << 14;

/// Map names in the eBPF object (see [`crate::names`]).
pub mod maps {
    /// [`super::CudaPending`] by thread id.
    pub const GPU_PENDING: &str = "GPU_PENDING";
    /// Outstanding blocks: [`super::GpuBlock`] by [`super::block_key`].
    pub const GPU_ALLOCS: &str = "GPU_ALLOCS";
    /// [`crate::memory::SiteStats`] of the allocation sites, by [`super::GpuKey`] (detail: the
    /// space).
    pub const GPU_SITES: &str = "GPU_SITES";
    /// [`super::GpuStats`] by [`super::GpuKey`].
    pub const GPU_STATS: &str = "GPU_STATS";
    /// Failed calls, counted by [`super::GpuKey`] (detail: the result code).
    pub const GPU_ERRORS: &str = "GPU_ERRORS";
    /// Per-CPU probe hits (entries) by function id: what the probes cost.
    pub const GPU_HITS: &str = "GPU_HITS";
    /// [`super::KernelName`] by `CUfunction` handle.
    pub const GPU_KERNEL_NAMES: &str = "GPU_KERNEL_NAMES";
}

/// Program names in the eBPF object (see [`crate::names`]).
pub mod programs {
    /// Entry uprobe of every CUDA function.
    pub const GPU_ENTRY: &str = "gpu_entry";
    /// Return uprobe of every CUDA function.
    pub const GPU_RETURN: &str = "gpu_return";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[
    maps::GPU_PENDING,
    maps::GPU_ALLOCS,
    maps::GPU_SITES,
    maps::GPU_STATS,
    maps::GPU_ERRORS,
    maps::GPU_HITS,
    maps::GPU_KERNEL_NAMES,
];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[programs::GPU_ENTRY, programs::GPU_RETURN];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for CudaPending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for GpuKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for GpuStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for GpuBlock {}
    // SAFETY: as above.
    unsafe impl aya::Pod for KernelName {}
    // SAFETY: as above.
    unsafe impl aya::Pod for CudaErrorEvent {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_and_classes_round_trip() {
        let c = cookie(200, CudaClass::GetFunction);
        assert_eq!(cookie_function(c), 200);
        assert_eq!(
            CudaClass::from_u8(cookie_class(c)),
            Some(CudaClass::GetFunction)
        );
        for v in 0..CUDA_CLASSES {
            assert_eq!(CudaClass::from_u8(v).map(|c| c as u8), Some(v));
        }
        assert_eq!(CudaClass::from_u8(CUDA_CLASSES), None);
    }

    #[test]
    fn spaces_do_not_share_keys() {
        assert_ne!(
            block_key(Space::Device, 0x1000),
            block_key(Space::Physical, 0x1000)
        );
        assert_eq!(block_key(Space::Device, 0x7f00_0000_1000), 0x7f00_0000_1000);
        assert_eq!(block_addr(block_key(Space::Physical, 0x1010)), 0x1010);
        for (class, space) in [
            (CudaClass::DeviceAlloc, Space::Device),
            (CudaClass::HostFree, Space::Host),
            (CudaClass::HandleRelease, Space::Physical),
        ] {
            assert_eq!(class.space(), Some(space));
        }
        assert_eq!(CudaClass::Launch.space(), None);
    }
}
