//! The `gpu` family's CUDA probes: every allocation, release, copy, kernel launch,
//! synchronization wait and failed call of the CUDA libraries the target maps.
//!
//! One entry program and one return program serve every probed function; the attach cookie says
//! which function and how it takes its arguments ([`CudaClass`]). Entry only notes the call
//! (arguments, return address, time) per thread: a launch, the hottest call, costs no more.
//! Return has the result code: it hashes the call's site (the memory family's sites and
//! stacks, from the return address and the caller's frame pointer, which the callee has
//! restored), records the block an allocation wrote through its out-parameter, releases a block
//! only when the release succeeded, adds the call to its statistics, and counts and sends every
//! failed call. Only the outermost probed call on a thread counts: the runtime calls the
//! driver.

use aya_ebpf::{
    EbpfContext,
    bindings::{BPF_ANY, BPF_NOEXIST},
    helpers::{
        bpf_get_attach_cookie, bpf_ktime_get_ns, bpf_probe_read_user, bpf_probe_read_user_str_bytes,
    },
    macros::{map, uprobe, uretprobe},
    maps::{HashMap, PerCpuArray},
    programs::{ProbeContext, RetProbeContext},
};
use profiler_common::{
    counters::Counter,
    event::{EventHeader, EventKind},
    gpu::{
        CudaClass, CudaErrorEvent, CudaPending, Direction, GPU_ALLOCS_MAX, GPU_ERRORS_MAX,
        GPU_KERNEL_NAMES_MAX, GPU_PENDING_MAX, GPU_SITES_MAX, GPU_STATS_MAX, GpuBlock, GpuKey,
        GpuStats, KERNEL_NAME_BYTES, KernelName, MAX_CUDA_FUNCTIONS, Space, block_key,
        cookie_class, cookie_function,
    },
    memory::SiteStats,
};

use crate::common::{
    EVENTS, count, current_ids, fetch_add, named_as_in_common, stack_pointer, target_tgid,
};
use crate::memory::{frame_pointer, site_of};

named_as_in_common!(
    gpu,
    maps: [
        GPU_PENDING,
        GPU_ALLOCS,
        GPU_SITES,
        GPU_STATS,
        GPU_ERRORS,
        GPU_HITS,
        GPU_KERNEL_NAMES,
    ],
    programs: [gpu_entry => GPU_ENTRY, gpu_return => GPU_RETURN]
);

#[map]
static GPU_PENDING: HashMap<u32, CudaPending> = HashMap::with_max_entries(GPU_PENDING_MAX, 0);

#[map]
static GPU_ALLOCS: HashMap<u64, GpuBlock> =
    HashMap::with_max_entries(GPU_ALLOCS_MAX, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map]
static GPU_SITES: HashMap<GpuKey, SiteStats> =
    HashMap::with_max_entries(GPU_SITES_MAX, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map]
static GPU_STATS: HashMap<GpuKey, GpuStats> =
    HashMap::with_max_entries(GPU_STATS_MAX, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map]
static GPU_ERRORS: HashMap<GpuKey, u64> =
    HashMap::with_max_entries(GPU_ERRORS_MAX, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

#[map]
static GPU_HITS: PerCpuArray<u64> = PerCpuArray::with_max_entries(MAX_CUDA_FUNCTIONS, 0);

#[map]
static GPU_KERNEL_NAMES: HashMap<u64, KernelName> =
    HashMap::with_max_entries(GPU_KERNEL_NAMES_MAX, aya_ebpf::bindings::BPF_F_NO_PREALLOC);

/// A call noted longer ago than this is taken for one whose return was never seen (the thread
/// left it by `longjmp` or the probes came during it): it does not hide the calls after it.
const STALE_NS: u64 = 10_000_000_000;

#[uprobe]
pub fn gpu_entry(ctx: ProbeContext) -> u32 {
    let _ = try_entry(&ctx);
    0
}

#[uretprobe]
pub fn gpu_return(ctx: RetProbeContext) -> u32 {
    let _ = try_return(&ctx);
    0
}

fn try_entry(ctx: &ProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY: the helper only reads the cookie of the link that ran this program.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    if let Some(hits) = GPU_HITS.get_ptr_mut(cookie_function(cookie)) {
        // SAFETY: a valid, aligned u64 in this CPU's map value.
        unsafe { fetch_add(hits, 1) };
    }
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // Entry probes sit where the return address is still on top of the stack.
    let ret_slot = stack_pointer(ctx.regs);
    if let Some(outer) = GPU_PENDING.get_ptr(tid) {
        // SAFETY: this thread's own map value, copied out.
        let outer = unsafe { *outer };
        if outer.ret_slot >= ret_slot && now.wrapping_sub(outer.start_ns) < STALE_NS {
            // Inside a probed call: the runtime calling the driver.
            return Ok(());
        }
    }
    let arg = |n: usize| ctx.arg::<u64>(n).unwrap_or(0);
    let Some(class) = CudaClass::from_u8(cookie_class(cookie)) else {
        return Ok(());
    };
    let (bytes, detail) = match class {
        CudaClass::DeviceAlloc
        | CudaClass::HostAlloc
        | CudaClass::HandleCreate
        | CudaClass::Map => (arg(1), 0),
        CudaClass::CopyKind => (arg(2), arg(3)),
        CudaClass::CopyHtoD => (arg(2), Direction::HostToDevice as u64),
        CudaClass::CopyDtoH => (arg(2), Direction::DeviceToHost as u64),
        CudaClass::CopyDtoD => (arg(2), Direction::DeviceToDevice as u64),
        CudaClass::CopyAny => (arg(2), Direction::Default as u64),
        // The name's address.
        CudaClass::GetFunction => (arg(2), 0),
        _ => (0, 0),
    };
    let pending = CudaPending {
        ret_slot,
        // SAFETY: reads 8 bytes of the target's stack through the checked helper.
        ret_addr: unsafe { bpf_probe_read_user(ret_slot as *const u64) }.unwrap_or(0),
        arg0: arg(0),
        bytes,
        detail,
        start_ns: now,
        cookie,
    };
    if GPU_PENDING.insert(tid, pending, BPF_ANY as u64).is_err() {
        count(Counter::GpuPendingMapFull);
    }
    Ok(())
}

fn try_return(ctx: &RetProbeContext) -> Result<(), ()> {
    let (tid, tgid) = current_ids();
    if tgid != target_tgid() {
        return Ok(());
    }
    // SAFETY: as in entry.
    let cookie = unsafe { bpf_get_attach_cookie(ctx.as_ptr()) };
    // `ret` has popped the return address: its slot is just below the stack pointer.
    let ret_slot = stack_pointer(ctx.regs).wrapping_sub(8);
    // SAFETY: this thread's own map value, copied out.
    let call = unsafe { *GPU_PENDING.get_ptr(tid).ok_or(())? };
    if call.ret_slot != ret_slot || call.cookie != cookie {
        // The return of a nested call (or of one that began before attach).
        return Ok(());
    }
    let _ = GPU_PENDING.remove(tid);
    // SAFETY: the helper takes no arguments.
    let now = unsafe { bpf_ktime_get_ns() };
    // `cudaError_t` and `CUresult` are C enums: 32 bits.
    let code = ctx.ret::<u64>() as u32;
    let failed = code != 0;
    let Some(class) = CudaClass::from_u8(cookie_class(cookie)) else {
        return Ok(());
    };
    let function = cookie_function(cookie);
    let launch = class == CudaClass::Launch;
    // The caller's frame pointer, restored by the callee: the same chain as at entry. A launch
    // is keyed by its kernel; its site is needed only for an error.
    let site = if launch && !failed {
        0
    } else {
        site_of(call.ret_addr, frame_pointer(ctx.regs))
    };
    let mut key = GpuKey {
        site,
        function,
        detail: call.detail as u32,
    };
    // `GetFunction` keeps the name's address where the others keep their bytes.
    let asked = if class == CudaClass::GetFunction {
        0
    } else {
        call.bytes
    };
    let mut bytes = if failed { 0 } else { asked };
    match class.space() {
        Some(space) => {
            key.detail = space as u32;
            if !failed && class.allocates() {
                // SAFETY: reads the block the call wrote through its out-parameter, through the
                // checked helper.
                let block = unsafe { bpf_probe_read_user(call.arg0 as *const u64) }.unwrap_or(0);
                record_block(space, block, &call, site, function);
            } else if !failed {
                // A release (the other classes with a space).
                bytes = release(space, call.arg0);
            }
        }
        None if launch => key.site = call.arg0,
        None if class == CudaClass::GetFunction && !failed => name_kernel(&call),
        None => {}
    }
    add_stats(&key, bytes, now.wrapping_sub(call.start_ns), failed);
    if failed {
        failure(tid, now, function, code, site, asked);
    }
    Ok(())
}

/// Records a block the call allocated and adds it to its site.
#[inline(always)]
fn record_block(space: Space, addr: u64, call: &CudaPending, site: u64, function: u32) {
    if addr == 0 {
        return;
    }
    let key = block_key(space, addr);
    // A block still recorded here was released without our seeing it.
    if let Some(old) = GPU_ALLOCS.get_ptr(key) {
        // SAFETY: a map value, copied before the entry is removed.
        let old = unsafe { *old };
        if GPU_ALLOCS.remove(key).is_ok() {
            site_released(&old);
        }
    }
    let site_key = GpuKey {
        site,
        function,
        detail: space as u32,
    };
    let Some(stats) = site_stats(&site_key) else {
        count(Counter::GpuMapFull);
        return;
    };
    // SAFETY (all blocks below): valid, aligned u64s in a map value.
    unsafe {
        fetch_add(&raw mut (*stats).allocs, 1);
        fetch_add(&raw mut (*stats).alloc_bytes, call.bytes);
    }
    let block = GpuBlock {
        size: call.bytes,
        site,
        timestamp_ns: call.start_ns,
        function,
        space: space as u32,
    };
    if GPU_ALLOCS.insert(key, block, BPF_NOEXIST as u64).is_err() {
        count(Counter::GpuMapFull);
        // SAFETY: as above.
        unsafe {
            fetch_add(&raw mut (*stats).untracked, 1);
            fetch_add(&raw mut (*stats).untracked_bytes, call.bytes);
        }
    }
}

/// Releases the block at `addr` (a successful release); returns its bytes (0 for a block not
/// known here: allocated before the probes).
#[inline(always)]
fn release(space: Space, addr: u64) -> u64 {
    let key = block_key(space, addr);
    let Some(block) = GPU_ALLOCS.get_ptr(key) else {
        return 0;
    };
    // SAFETY: a map value, copied before the entry is removed.
    let block = unsafe { *block };
    // Only the release that removes the entry counts it.
    if GPU_ALLOCS.remove(key).is_ok() {
        site_released(&block);
        return block.size;
    }
    0
}

#[inline(always)]
fn site_released(block: &GpuBlock) {
    let key = GpuKey {
        site: block.site,
        function: block.function,
        detail: block.space,
    };
    if let Some(stats) = GPU_SITES.get_ptr_mut(key) {
        // SAFETY: valid, aligned u64s in a map value.
        unsafe {
            fetch_add(&raw mut (*stats).frees, 1);
            fetch_add(&raw mut (*stats).free_bytes, block.size);
        }
    }
}

/// The totals of an allocation site, created on first use.
#[inline(always)]
fn site_stats(key: &GpuKey) -> Option<*mut SiteStats> {
    if let Some(stats) = GPU_SITES.get_ptr_mut(key) {
        return Some(stats);
    }
    // An insert that races with another CPU's insert of the same key fails harmlessly.
    let _ = GPU_SITES.insert(key, SiteStats::default(), BPF_NOEXIST as u64);
    GPU_SITES.get_ptr_mut(key)
}

/// Adds a call to its statistics.
#[inline(always)]
fn add_stats(key: &GpuKey, bytes: u64, ns: u64, failed: bool) {
    let mut stats = GPU_STATS.get_ptr_mut(key);
    if stats.is_none() {
        let _ = GPU_STATS.insert(key, GpuStats::default(), BPF_NOEXIST as u64);
        stats = GPU_STATS.get_ptr_mut(key);
    }
    let Some(stats) = stats else {
        count(Counter::GpuMapFull);
        return;
    };
    // SAFETY: valid, aligned u64s in a map value.
    unsafe {
        fetch_add(&raw mut (*stats).calls, 1);
        fetch_add(&raw mut (*stats).errors, u64::from(failed));
        fetch_add(&raw mut (*stats).bytes, bytes);
        fetch_add(&raw mut (*stats).ns, ns);
    }
}

/// Notes the name `cuModuleGetFunction` gave the handle it wrote.
#[inline(always)]
fn name_kernel(call: &CudaPending) {
    // SAFETY: reads the handle the call wrote through its out-parameter, checked.
    let Ok(handle) = (unsafe { bpf_probe_read_user(call.arg0 as *const u64) }) else {
        return;
    };
    let mut name = KernelName {
        name: [0; KERNEL_NAME_BYTES],
    };
    // SAFETY: reads the target's NUL-terminated string through the checked helper, into a
    // buffer of this program's stack.
    if unsafe { bpf_probe_read_user_str_bytes(call.bytes as *const u8, &mut name.name) }.is_ok() {
        let _ = GPU_KERNEL_NAMES.insert(handle, name, BPF_ANY as u64);
    }
}

/// Counts a failed call exactly and sends it, with its site, for the errors family.
#[inline(always)]
fn failure(tid: u32, now: u64, function: u32, code: u32, site: u64, bytes: u64) {
    let key = GpuKey {
        site,
        function,
        detail: code,
    };
    match GPU_ERRORS.get_ptr_mut(key) {
        Some(n) => {
            // SAFETY: a valid, aligned u64 map value.
            unsafe { fetch_add(n, 1) };
        }
        None => {
            if GPU_ERRORS.insert(key, 1, BPF_NOEXIST as u64).is_err()
                && let Some(n) = GPU_ERRORS.get_ptr_mut(key)
            {
                // SAFETY: as above (another CPU made the entry first).
                unsafe { fetch_add(n, 1) };
            }
        }
    }
    let Some(mut entry) = EVENTS.reserve::<CudaErrorEvent>(0) else {
        count(Counter::RingBufferFull);
        return;
    };
    let event = entry.as_mut_ptr();
    let (_, tgid) = current_ids();
    // SAFETY: `event` points at a reserved record, written in full before it is submitted.
    unsafe {
        (*event).header = EventHeader {
            kind: EventKind::CudaError as u16,
            _pad: 0,
            tid,
            timestamp_ns: now,
            tgid,
            _pad2: 0,
        };
        (*event).function = function;
        (*event).code = code;
        (*event).site = site;
        (*event).bytes = bytes;
    }
    entry.submit(0);
}
