//! The `memory` family: outstanding allocations tracked in the kernel, per allocation site.
//!
//! Entry probes on the allocator's functions note the call (its arguments and the caller's user
//! stack) per thread; return probes record the returned block in `ALLOCS` (address -> size, time,
//! site) and add it to the site's totals. `free` (and the other release functions) removes the
//! block and subtracts it from the site that allocated it; a block allocated before the probes
//! were attached is unknown and its release is only counted. Anonymous `mmap`/`munmap` are
//! tracked the same way from the syscall tracepoints.
//!
//! An allocator function called from inside another one (glibc's `realloc(NULL, n)` calls
//! `malloc`, `realloc(p, 0)` calls `free`; a large `malloc` calls `mmap`) is not counted again:
//! the outermost call accounts for the block.

/// How a probed allocator function takes its arguments and what it does; the low byte of the
/// attach cookie (the function id is above it, see [`cookie`]).
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AllocClass {
    /// `malloc(size)` and the functions with the size first: `valloc`, `pvalloc`, `mallocx`,
    /// C++ `operator new`.
    SizeFirst = 0,
    /// `calloc(n, size)`: `n * size` bytes.
    Calloc = 1,
    /// `aligned_alloc(align, size)`, `memalign(align, size)`: the size second.
    SizeSecond = 2,
    /// `realloc(ptr, size)`, `rallocx(ptr, size, flags)`.
    Realloc = 3,
    /// `reallocarray(ptr, n, size)`.
    ReallocArray = 4,
    /// `posix_memalign(&ptr, align, size)`: the block is written through the first argument
    /// and the call returns 0 on success.
    PosixMemalign = 5,
    /// `free(ptr)` and the other release functions with the pointer first (`sdallocx`,
    /// `free_sized`, C++ `operator delete`).
    Free = 6,
}

/// Number of [`AllocClass`] values.
pub const ALLOC_CLASSES: u8 = 7;

impl AllocClass {
    /// Whether the function returns a block (and so needs a return probe).
    pub const fn returns_block(self) -> bool {
        !matches!(self, AllocClass::Free)
    }

    pub const fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            0 => AllocClass::SizeFirst,
            1 => AllocClass::Calloc,
            2 => AllocClass::SizeSecond,
            3 => AllocClass::Realloc,
            4 => AllocClass::ReallocArray,
            5 => AllocClass::PosixMemalign,
            6 => AllocClass::Free,
            _ => return None,
        })
    }
}

/// The attach cookie of allocator function `id` of class `class`.
pub const fn cookie(id: u32, class: AllocClass) -> u64 {
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

/// Slot of `mmap` in the per-function call counts (the allocator functions come first).
pub const MMAP_SLOT: u32 = MAX_ALLOC_FUNCTIONS;
/// Slot of `munmap` in the per-function call counts.
pub const MUNMAP_SLOT: u32 = MAX_ALLOC_FUNCTIONS + 1;
/// Slot of the target's write faults (the growth attribution's hits) in the call counts.
pub const FAULT_SLOT: u32 = MAX_ALLOC_FUNCTIONS + 2;
/// Most allocator functions probed in one run (several allocators may be in one process).
pub const MAX_ALLOC_FUNCTIONS: u32 = 125;
/// Slots of the `MEM_CALLS` per-CPU array: the allocator functions, then `mmap`, `munmap` and
/// the write faults.
pub const CALL_SLOTS: u32 = MAX_ALLOC_FUNCTIONS + 3;

/// `error_code` bit of a page fault made by a write (x86 `X86_PF_WRITE`).
pub const PF_WRITE: u64 = 1 << 1;
/// `error_code` bit of a page fault made by an instruction fetch (`X86_PF_INSTR`).
pub const PF_INSTR: u64 = 1 << 4;

/// An allocator call in progress on one thread (map value keyed by thread id), noted at entry
/// and completed by the return probe.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingAlloc {
    /// Stack pointer at entry (the slot of the return address): tells a nested call, which runs
    /// deeper, and finds the matching return.
    pub ret_slot: u64,
    /// Allocation site of the call (see [`MemStack`]).
    pub site: u64,
    /// Bytes asked for.
    pub size: u64,
    /// `realloc`: the block being resized; `posix_memalign`: where the block is written.
    pub arg: u64,
    /// `bpf_ktime_get_ns()` at entry.
    pub start_ns: u64,
    /// Cookie of the probe (function id and [`AllocClass`]).
    pub cookie: u64,
}

const _: () = assert!(core::mem::size_of::<PendingAlloc>() == 48);

/// A thread's slot for its allocator call in progress (`MEM_THREADS`, slot `tid % MEM_THREAD_SLOTS`):
/// an array slot costs a few instructions where a hash-map insert, lookup and delete cost
/// hundreds of nanoseconds per call.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct ThreadPending {
    /// The thread the slot belongs to (0: free; once taken, a slot keeps its owner).
    pub tid: u64,
    /// Whether `call` is in progress.
    pub active: u64,
    pub call: PendingAlloc,
}

const _: () = assert!(core::mem::size_of::<ThreadPending>() == 64);

/// Slots of `MEM_THREADS` (a power of two). A thread whose slot another holds keeps its pending
/// call in the `MEM_PENDING` hash map instead.
pub const MEM_THREAD_SLOTS: u32 = 8192;

/// An anonymous `mmap` in progress on one thread.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct PendingMmap {
    pub len: u64,
    pub site: u64,
}

const _: () = assert!(core::mem::size_of::<PendingMmap>() == 16);

/// One outstanding block (value of `ALLOCS`, keyed by its address).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocInfo {
    /// Bytes asked for.
    pub size: u64,
    /// Allocation site.
    pub site: u64,
    /// `bpf_ktime_get_ns()` when it was allocated (at the allocator's entry).
    pub timestamp_ns: u64,
}

const _: () = assert!(core::mem::size_of::<AllocInfo>() == 24);

/// Totals of one allocation site (value of `SITES`, keyed by site), updated atomically.
///
/// Outstanding blocks of the site: `allocs - untracked - frees` (and the same for bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SiteStats {
    /// Blocks allocated here while attached.
    pub allocs: u64,
    pub alloc_bytes: u64,
    /// Of those, blocks released since.
    pub frees: u64,
    pub free_bytes: u64,
    /// Of those, blocks that could not be tracked (`ALLOCS` was full): their release is not seen.
    pub untracked: u64,
    pub untracked_bytes: u64,
}

const _: () = assert!(core::mem::size_of::<SiteStats>() == 48);

/// Most user frames kept per allocation site.
pub const MEM_STACK_DEPTH: usize = 64;

/// The user stack of an allocation site (value of `MEM_STACKS`, keyed by site).
///
/// A site is a 64-bit hash of the return address of the allocator call and the frames walked
/// from the caller's frame pointer (the probed instruction itself is skipped). At a function's
/// entry the frame pointer still belongs to the caller, so the walk may miss the immediate caller:
/// the return address supplies it.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct MemStack {
    /// Return address of the allocator call (in the immediate caller); 0 when unreadable.
    pub ret_addr: u64,
    /// Valid entries in `ips`.
    pub len: u32,
    /// [`STACK_FIRST_IS_PC`] and the like.
    pub flags: u32,
    /// Walked frames, innermost first.
    pub ips: [u64; MEM_STACK_DEPTH],
}

const _: () = assert!(core::mem::size_of::<MemStack>() == 16 + 8 * MEM_STACK_DEPTH);

impl MemStack {
    /// The stack's addresses, innermost first: the return address, then the frames walked from
    /// the caller's frame pointer (the return address once, should the walk start with it).
    pub fn frames(&self) -> impl Iterator<Item = u64> + '_ {
        let walked = &self.ips[..(self.len as usize).min(self.ips.len())];
        let ret =
            (self.ret_addr != 0 && walked.first() != Some(&self.ret_addr)).then_some(self.ret_addr);
        ret.into_iter()
            .chain(walked.iter().copied().filter(|ip| *ip != 0))
    }
}

/// [`MemStack::flags`]: `ret_addr` is the instruction that faulted (a growth site), not a return
/// address (symbolized as is, not one byte back).
pub const STACK_FIRST_IS_PC: u32 = 1;
/// [`MemStack::flags`]: `ips` are the raw top words of the stack, not yet sorted from data (the
/// target's code ranges were not known yet, as while a program's loader maps its libraries):
/// the user side keeps those that point into code.
pub const STACK_RAW_WORDS: u32 = 2;

/// Words of the user stack scanned for return addresses at a write fault.
pub const SCAN_WORDS: usize = 32;
/// Most frames the scan takes from them.
pub const SCAN_FRAMES: usize = 6;
/// Most executable ranges in [`TextRanges`].
pub const TEXT_RANGES_MAX: usize = 64;

/// The target's executable mappings, sorted and merged (`MEM_TEXT`, entry 0), written by the
/// user side: a word of the stack that points into one of them is taken for a return address.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct TextRanges {
    pub count: u32,
    pub _pad: u32,
    /// `[start, end)` pairs.
    pub ranges: [[u64; 2]; TEXT_RANGES_MAX],
}

const _: () = assert!(core::mem::size_of::<TextRanges>() == 8 + 16 * TEXT_RANGES_MAX);

/// The site hash of a return address and walked frames (both sides compute it the same way, so
/// the user side can check a stack against its key).
#[inline(always)]
pub const fn site_hash_step(h: u64, v: u64) -> u64 {
    (h.rotate_left(23) ^ v).wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// Seed of [`site_hash_step`].
pub const SITE_HASH_SEED: u64 = 0x243f_6a88_85a3_08d3;

/// Map capacities. `ALLOCS`, `SITES` and `MEM_STACKS` are not preallocated: memory is taken as
/// entries are made.
pub const ALLOCS_MAX: u32 = 1 << 21;
pub const SITES_MAX: u32 = 1 << 16;
pub const MEM_STACKS_MAX: u32 = 1 << 16;
/// Sites of new resident memory (`MEM_GROWTH`).
pub const GROWTH_SITES_MAX: u32 = 1 << 14;
pub const PENDING_MAX: u32 = 1 << 14;

/// `mmap` flags (x86-64).
pub const MAP_ANONYMOUS: u64 = 0x20;

/// Map names in the eBPF object (see [`crate::names`]): profiler-ebpf names each map static
/// exactly so.
pub mod maps {
    /// Outstanding blocks: [`super::AllocInfo`] by address; sized by the loader
    /// (`map_max_entries`).
    pub const MEM_ALLOCS: &str = "MEM_ALLOCS";
    /// [`super::SiteStats`] by site.
    pub const MEM_SITES: &str = "MEM_SITES";
    /// [`super::MemStack`] by site.
    pub const MEM_STACKS: &str = "MEM_STACKS";
    /// The threads' [`super::ThreadPending`]s, one slot per thread id modulo
    /// [`super::MEM_THREAD_SLOTS`].
    pub const MEM_THREADS: &str = "MEM_THREADS";
    /// [`super::PendingAlloc`] of threads whose slot another holds, by thread id.
    pub const MEM_PENDING: &str = "MEM_PENDING";
    /// Anonymous `mmap` calls in progress: [`super::PendingMmap`] by thread id.
    pub const MEM_PENDING_MMAP: &str = "MEM_PENDING_MMAP";
    /// Per-CPU call counts, by function id, then [`super::MMAP_SLOT`] and [`super::MUNMAP_SLOT`].
    pub const MEM_CALLS: &str = "MEM_CALLS";
    /// Per-CPU scratch [`super::MemStack`] (kernel side only).
    pub const MEM_STACK_SCRATCH: &str = "MEM_STACK_SCRATCH";
    /// Write faults (pages the target was given) by site (the faulting instruction and its
    /// frame-pointer chain, stacks in `MEM_STACKS`).
    pub const MEM_GROWTH: &str = "MEM_GROWTH";
    /// The target's executable ranges ([`super::TextRanges`]), for the stack scan.
    pub const MEM_TEXT: &str = "MEM_TEXT";
    /// Per-CPU scratch of the stack scan (kernel side only).
    pub const MEM_SCAN_SCRATCH: &str = "MEM_SCAN_SCRATCH";
}

/// Program names in the eBPF object (see [`crate::names`]): profiler-ebpf names each program
/// function exactly so.
pub mod programs {
    /// Entry uprobe of every allocator function.
    pub const MEM_ENTRY: &str = "mem_entry";
    /// Return uprobe of the allocator functions that return a block.
    pub const MEM_RETURN: &str = "mem_return";
    /// On the `syscalls/sys_enter_mmap` tracepoint.
    pub const MEM_MMAP_ENTER: &str = "mem_mmap_enter";
    /// On the `syscalls/sys_exit_mmap` tracepoint.
    pub const MEM_MMAP_EXIT: &str = "mem_mmap_exit";
    /// On the `syscalls/sys_enter_munmap` tracepoint.
    pub const MEM_MUNMAP: &str = "mem_munmap";
    /// On the `exceptions/page_fault_user` tracepoint: the growth attribution.
    pub const MEM_PAGE_FAULT: &str = "mem_page_fault";
}

/// Every map of the module, in `maps`.
pub const MAPS: &[&str] = &[
    maps::MEM_ALLOCS,
    maps::MEM_SITES,
    maps::MEM_STACKS,
    maps::MEM_THREADS,
    maps::MEM_PENDING,
    maps::MEM_PENDING_MMAP,
    maps::MEM_CALLS,
    maps::MEM_STACK_SCRATCH,
    maps::MEM_GROWTH,
    maps::MEM_TEXT,
    maps::MEM_SCAN_SCRATCH,
];
/// Every program of the module, in `programs`.
pub const PROGRAMS: &[&str] = &[
    programs::MEM_ENTRY,
    programs::MEM_RETURN,
    programs::MEM_MMAP_ENTER,
    programs::MEM_MMAP_EXIT,
    programs::MEM_MUNMAP,
    programs::MEM_PAGE_FAULT,
];

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: each type is #[repr(C)] plain old data of fixed-width integers with explicit
    // padding; any bit pattern is valid.
    unsafe impl aya::Pod for PendingAlloc {}
    // SAFETY: as above.
    unsafe impl aya::Pod for ThreadPending {}
    // SAFETY: as above.
    unsafe impl aya::Pod for PendingMmap {}
    // SAFETY: as above.
    unsafe impl aya::Pod for AllocInfo {}
    // SAFETY: as above.
    unsafe impl aya::Pod for SiteStats {}
    // SAFETY: as above.
    unsafe impl aya::Pod for MemStack {}
    // SAFETY: as above.
    unsafe impl aya::Pod for TextRanges {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn map_anonymous_is_the_libc_value() {
        assert_eq!(MAP_ANONYMOUS, libc::MAP_ANONYMOUS as u64);
    }

    #[test]
    fn cookies_round_trip() {
        let c = cookie(77, AllocClass::PosixMemalign);
        assert_eq!(cookie_function(c), 77);
        assert_eq!(
            AllocClass::from_u8(cookie_class(c)),
            Some(AllocClass::PosixMemalign)
        );
        for v in 0..ALLOC_CLASSES {
            assert_eq!(AllocClass::from_u8(v).map(|c| c as u8), Some(v));
        }
        assert_eq!(AllocClass::from_u8(ALLOC_CLASSES), None);
    }
}
